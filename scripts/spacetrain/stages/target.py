"""Which Space, which commit: one rule for every command.

A command acts on the Space named by ``--space``; else, when it reads a pipeline state
(the commands after `sync`: wait, train, release), on the Space that state's `sync`
recorded; else on ``[tool.spacetrain] space``. The commit is ``--commit`` (a branch,
tag or sha, resolved on the Hub), else the one `sync` recorded for *that* Space. The
run that is "ours" on it (what release may end) is the state's run, and only when the
state is about that Space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spacetrain.config import ProjectConfig
from spacetrain.errors import UsageError
from spacetrain.hub import Hub
from spacetrain.stages.state import PipelineState

_FULL_SHA = re.compile(r"^[0-9a-fA-F]{40}$")


@dataclass(frozen=True)
class Target:
    """The Space a command acts on.

    Attributes:
        space: the Space id (``owner/name``), or an app URL where a command takes one.
        recorded: whether the state's `sync` was about this Space.
        ours: the run the state started there (``None`` when the state is about another
            Space, or has no run).
    """

    space: str
    recorded: bool = False
    ours: str | None = None


def resolve_target(
    space: str | None, config: ProjectConfig | None, state: PipelineState | None = None
) -> Target:
    """``space`` (the flag), else the Space ``state`` recorded, else the config's.

    Raises:
        UsageError: none of the three names a Space (exit 2).
    """
    recorded = state.get("space") if state is not None else None
    chosen = space or recorded or (config.space if config is not None else None)
    if not chosen:
        raise UsageError("name the Space with --space owner/name (no [tool.spacetrain] found)")
    chosen = str(chosen)
    same = state is not None and recorded in (None, chosen)
    return Target(
        space=chosen,
        recorded=recorded == chosen,
        ours=state.get("run_id") if same and state is not None else None,
    )


def target_commit(hub: Hub, target: Target, state: PipelineState, commit: str | None) -> str:
    """The commit to wait for: ``commit`` (a branch, tag or full sha, as the runtime
    reports it), else the one `sync` recorded for ``target.space``.

    Raises:
        UsageError: the state records a sync of another Space, or none (exit 2).
    """
    if commit:
        if _FULL_SHA.match(commit):
            return commit.lower()
        info = hub.call(
            f"resolve {commit!r} in Space {target.space}",
            hub.api.repo_info,
            target.space,
            repo_type="space",
            revision=commit,
        )
        return str(info.sha)
    recorded = state.get("space")
    if recorded and recorded != target.space:
        raise UsageError(
            f"{state.path} records a sync of {recorded}, not {target.space}: "
            "pass --commit SHA or run `spacetrain sync` for this Space"
        )
    return str(state.require("space_commit", stage="sync"))


__all__ = ["Target", "resolve_target", "target_commit"]
