"""What one training run is: its overrides, run id, parameters and options.

The override bag (:class:`TrainingOverrides`) is the one definition of what a person may
change for one run over ``[tool.spacetrain.adapters.X]``: the flags of ``train``,
``pipeline`` and ``rehearse``, the retrain form's inputs (the workflow's plan step) and
the pipeline's options all carry it. :func:`build_params` turns it, the adapter's
config and preflight's pins into ``start_training``'s JSON object, checked by the
Space's own rules (``space/train.py`` PARAMS through :mod:`spacetrain.contract`) before
any GPU time; :func:`train_options` adds the Space, the run id and the deadlines.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spacetrain import contract
from spacetrain.config import AdapterConfig, ProjectConfig
from spacetrain.errors import UsageError
from spacetrain.stages.state import PipelineState
from spacetrain.stages.sync import source_commit
from spacetrain.stages.target import resolve_target

# start_training's keys (space/train.py PARAMS) that come from [tool.spacetrain.adapters.X.train].
HYPERPARAMETERS = contract.HYPERPARAMETERS
# A run the Space is still busy with (rejoined by an interrupted train, never restarted).
ACTIVE = ("queued", "running")
# The overrides the contract checks at once (exit 2 before anything is synced or billed).
_CHECKED = ("epochs", "learning_rate", "run_id")


@dataclass(frozen=True)
class TrainingOverrides:
    """One run's overrides of the adapter's configuration; ``None`` keeps the configured
    value (or, when nothing is configured, the Space variable's).

    Attributes:
        adapter: which ``[tool.spacetrain.adapters.NAME]`` (the only one when omitted).
        run_id: the run to start or rejoin (default: a new id, see :func:`default_run_id`).
        base_model, dataset, dataset_revision, output_repo: repos instead of the configured.
        epochs, learning_rate: hyper-parameters over the adapter's ``train`` table.
    """

    adapter: str | None = None
    run_id: str | None = None
    base_model: str | None = None
    dataset: str | None = None
    dataset_revision: str | None = None
    output_repo: str | None = None
    epochs: float | None = None
    learning_rate: float | None = None

    @classmethod
    def from_args(cls, args: Any) -> TrainingOverrides:
        """From parsed flags (a flag a command lacks is ``None``), checked first thing:
        a bad value is exit 2 with one line naming the flag as typed."""
        overrides = cls(**{f.name: getattr(args, f.name, None) for f in fields(cls)})
        return overrides.checked()

    @classmethod
    def from_form(cls, values: Mapping[str, str]) -> TrainingOverrides:
        """From the retrain form's text inputs (``epochs``, ``learning_rate``, ...): an
        empty value or ``0`` keeps the configured one. Checked, naming ``input NAME``."""
        kept = {
            name: text.strip()
            for name, text in values.items()
            if text is not None and text.strip() not in ("", "0")
        }
        unknown = sorted(set(kept) - {f.name for f in fields(cls)})
        if unknown:
            raise UsageError(f"unknown input(s): {', '.join(unknown)}")
        checked = {name: _check(name, value, f"input {name}") for name, value in kept.items()}
        return cls(**checked)

    def checked(self) -> TrainingOverrides:
        """The contract's rules for the values it has rules for (exit 2, one line).

        Raises:
            UsageError: the first value outside the contract, named as a flag.
        """
        for name in _CHECKED:
            value = getattr(self, name)
            if value is not None:
                flag = "run id" if name == "run_id" else "--" + name.replace("_", "-")
                _check(name, value, flag)
        return self

    def hyperparameters(self) -> dict[str, Any]:
        """The hyper-parameters set here (over the adapter's ``train`` table)."""
        pairs = (("epochs", self.epochs), ("learning_rate", self.learning_rate))
        return {name: value for name, value in pairs if value is not None}


def _check(name: str, value: Any, source: str) -> Any:
    try:
        return contract.check_param(name, value, text=True, source=source)
    except contract.ParamError as exc:
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class TrainOptions:
    """What to train where, and how long to follow it.

    Attributes:
        space: the Space id (``owner/name``) or the app's URL.
        run_id: the run to start or follow.
        params: ``start_training``'s JSON object (``run_id`` included); missing keys
            fall back to the Space variables.
        timeout: seconds from the start until the stage gives up (exit 3).
        poll_interval: seconds between ``training_status`` calls.
        after_training: ``"pause"`` or a CPU flavor to move the Space to afterwards.
        keep_running: leave the Space (and its hardware) as it is.
    """

    space: str
    run_id: str
    params: dict[str, Any]
    timeout: float = 6 * 3600.0
    poll_interval: float = 5.0
    after_training: str = "pause"
    keep_running: bool = False


def default_run_id(now: datetime | None = None) -> str:
    """``<commit>-<UTC time>-<6 hex>``: the commit from ``GITHUB_SHA`` or git, else ``run``.

    The random tail keeps apart the runs the deploy matrix starts from one commit in the
    same second (a job backend rejoins a job by its run id)."""
    sha = source_commit(Path.cwd()) or ""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    prefix = sha[:10] if re.fullmatch(r"[0-9a-f]{7,64}", sha) else "run"
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    """The Space's run-id rule (the contract's), said before asking it."""
    if not contract.RUN_ID_RE.fullmatch(run_id):
        raise UsageError(f"run id {run_id!r}: {contract.RUN_ID_HINT}")
    return run_id


def build_params(
    *,
    run_id: str,
    adapter: AdapterConfig | None = None,
    base_model: str | None = None,
    base_revision: str | None = None,
    dataset: str | None = None,
    dataset_revision: str | None = None,
    output_repo: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``start_training``'s params: explicit values over the adapter's config.

    A value that is neither given nor configured is left out, so the Space variable
    (BASE_MODEL, DATASET, EPOCHS, ...) decides it; a configured revision is dropped with
    the repo it belongs to. The adapter is always pushed.
    """
    cfg = adapter
    # A configured revision belongs to the configured repo, not to one named instead.
    own_base = cfg.base_revision if cfg and base_model in (None, cfg.base_model) else None
    own_data = cfg.dataset_revision if cfg and dataset in (None, cfg.dataset) else None
    params: dict[str, Any] = {
        "run_id": check_run_id(run_id),
        "push": True,
        "base_model": base_model or (cfg.base_model if cfg else None),
        "model_revision": base_revision or own_base,
        "dataset": dataset or (cfg.dataset if cfg else None),
        "dataset_revision": dataset_revision or own_data,
        "output_repo": output_repo or (cfg.output_repo if cfg else None),
    }
    hyper = dict(cfg.train) if cfg else {}
    hyper.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(hyper) - set(HYPERPARAMETERS))
    if unknown:
        raise UsageError(f"unknown training parameter(s): {', '.join(unknown)}")
    params.update(hyper)
    try:  # the Space's own rules, before any GPU time: the Space would refuse the same
        return {k: contract.check_param(k, v, source=k) for k, v in params.items() if v is not None}
    except contract.ParamError as exc:
        raise UsageError(str(exc)) from None


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise UsageError(f"{name} must be a positive number of seconds, not {value}")
    return value


def train_options(
    config: ProjectConfig,
    state: PipelineState,
    overrides: TrainingOverrides | None = None,
    *,
    space: str | None = None,
    timeout: float = 6 * 3600.0,
    poll_interval: float = 5.0,
    keep_running: bool = False,
) -> TrainOptions:
    """The options of one training run (flags over state over ``[tool.spacetrain]``).

    The Space: :func:`~spacetrain.stages.target.resolve_target`'s (``space``, else the
    one `sync` recorded, else the config's). The run id:
    ``overrides.run_id``, else the run an interrupted train left queued or running
    (rejoined, not restarted), else :func:`default_run_id`. Revisions `preflight`
    pinned are used for the configured base model and dataset, not for ones named here.

    Raises:
        UsageError: unknown adapter, bad run id or parameter, a non-positive timeout or
            interval.
    """
    ov = overrides or TrainingOverrides()
    if not config.adapters and ov.adapter is None:
        chosen: AdapterConfig | None = None  # everything from flags and the Space variables
    else:
        chosen = config.adapter(ov.adapter)
    run_id = ov.run_id
    if not run_id:
        previous = state.get("run_id")
        run_id = previous if previous and state.get("run_state") in ACTIVE else default_run_id()
    run_id = check_run_id(str(run_id))
    configured_base = chosen.base_model if chosen else None
    configured_data = chosen.dataset if chosen else None
    params = build_params(
        run_id=run_id,
        adapter=chosen,
        base_model=ov.base_model,
        base_revision=state.get("base_revision")
        if ov.base_model in (None, configured_base)
        else None,
        dataset=ov.dataset,
        dataset_revision=ov.dataset_revision
        or (state.get("dataset_revision") if ov.dataset in (None, configured_data) else None),
        output_repo=ov.output_repo,
        overrides=ov.hyperparameters(),
    )
    return TrainOptions(
        space=resolve_target(space, config, state).space,
        run_id=run_id,
        params=params,
        timeout=_positive("--timeout", timeout),
        poll_interval=_positive("--poll-interval", poll_interval),
        after_training=config.after_training,
        keep_running=keep_running,
    )


__all__ = [
    "ACTIVE",
    "HYPERPARAMETERS",
    "TrainOptions",
    "TrainingOverrides",
    "build_params",
    "check_run_id",
    "default_run_id",
    "train_options",
]
