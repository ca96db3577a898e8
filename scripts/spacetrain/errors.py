"""Every error spacetrain raises on purpose, and the exit code each one means.

One root, :class:`SpacetrainError`, so the CLI has a single boundary that turns an
expected failure into one line on stderr and the exit code of the architecture's contract.
Subclasses mix in the stdlib base that fits (``ValueError``, ``TimeoutError``) so
plain ``except`` clauses keep working for library users.
"""

from __future__ import annotations

from pathlib import Path

# Exit codes (contract): docs/architecture.md "Exit codes".
EXIT_OK = 0
EXIT_FAILED = 1  # the check ran and said no: lint errors, gate failed, build/training failed
EXIT_USAGE = 2  # bad input or usage: unreadable or malformed file, bad argument, rejected token
EXIT_INFRA = 3  # infrastructure: Hub unreachable after retries, timeout


class SpacetrainError(Exception):
    """Root of every expected failure; ``exit_code`` is what the CLI returns."""

    exit_code: int = EXIT_FAILED


# ---------------------------------------------------------------- BAD INPUT (2)


class UsageError(SpacetrainError, ValueError):
    """A bad argument or a bad input the user can fix."""

    exit_code = EXIT_USAGE


class InputFileError(UsageError):
    """A file that cannot be read or parsed; the message names the file and line.

    Attributes:
        path: the offending file.
        line: 1-based line number, when one is known.
        detail: what is wrong and, ideally, what to do.
    """

    def __init__(self, path: str | Path, detail: str, *, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.detail = detail
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {detail}")


class AuthError(UsageError):
    """The Hub rejected the token (401) or it lacks the rights needed (403)."""


# ------------------------------------------------------- CHECK SAID NO (1)


class CheckFailed(SpacetrainError):
    """A check ran and failed: lint errors, a failed gate, a failed build or training."""

    exit_code = EXIT_FAILED


class SpaceBuildFailed(CheckFailed):
    """The Space reached BUILD_ERROR, CONFIG_ERROR, NO_APP_FILE or RUNTIME_ERROR."""


class TrainingFailed(CheckFailed):
    """The training run in the Space ended in failure."""


class GateFailed(CheckFailed):
    """The evaluation report is below the thresholds of policy/gate.yaml."""


# ------------------------------------------------------ INFRASTRUCTURE (3)


class InfraError(SpacetrainError):
    """The Hub, the Space or the network did not answer as it should."""

    exit_code = EXIT_INFRA


class HubUnreachable(InfraError, ConnectionError):
    """The Hub kept failing (connection errors, 429 or 5xx) until the retry deadline."""


class StageTimeout(InfraError, TimeoutError):
    """A pipeline stage did not finish before its deadline."""


__all__ = [
    "EXIT_FAILED",
    "EXIT_INFRA",
    "EXIT_OK",
    "EXIT_USAGE",
    "AuthError",
    "CheckFailed",
    "GateFailed",
    "HubUnreachable",
    "InfraError",
    "InputFileError",
    "SpaceBuildFailed",
    "SpacetrainError",
    "StageTimeout",
    "TrainingFailed",
    "UsageError",
]
