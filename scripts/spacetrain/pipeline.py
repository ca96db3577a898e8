"""The whole pipeline in one process: preflight, sync, wait, train, fetch, evaluate, promote.

`spacetrain pipeline` and `spacetrain rehearse` run this; the GitHub workflow runs the
same stages as separate steps (so its log shows where a run stopped). Whatever
happens after `sync`, the Space is released at the end: the GPU bill stops even when
the Space never came up, training failed or the gate said no.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spacetrain.config import AdapterConfig, ProjectConfig
from spacetrain.errors import EXIT_FAILED, EXIT_OK, CheckFailed, SpacetrainError
from spacetrain.evaluate.report import EvaluationReport
from spacetrain.hub import Hub
from spacetrain.inputs import writable_dir, writable_file
from spacetrain.stages.params import TrainingOverrides
from spacetrain.stages.progress import Progress, ProgressFactory, progress_for
from spacetrain.stages.release import untouched
from spacetrain.stages.state import PipelineState


@dataclass(frozen=True)
class PipelineOptions:
    """Overrides of one pipeline run (the flags of ``spacetrain pipeline``)."""

    overrides: TrainingOverrides = field(default_factory=TrainingOverrides)
    report_dir: Path = Path("reports")
    work_dir: Path = Path(".spacetrain")  # the fetched adapter goes under it
    promote: bool = True
    wait_timeout: float = 3600.0
    train_timeout: float = 6 * 3600.0
    poll_interval: float = 5.0
    backend: str | None = None  # "space" | "job"; default: the adapter's


@dataclass
class StageRecord:
    """One stage as it ran: for the summary and the rehearsal report."""

    name: str
    seconds: float = 0.0
    outcome: str = "skipped"  # ok | failed | skipped
    detail: str = ""


@dataclass
class PipelineResult:
    """What the run did: ``exit_code`` is the architecture's (0 only when the gate passed)."""

    passed: bool = False
    exit_code: int = EXIT_FAILED
    stages: list[StageRecord] = field(default_factory=list)
    report: EvaluationReport | None = None
    report_path: Path | None = None
    markdown_path: Path | None = None
    promoted_tag: str | None = None
    released: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A summary for ``rehearse --report`` and the job summary."""
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "error": self.error,
            "stages": [s.__dict__ for s in self.stages],
            "promoted_tag": self.promoted_tag,
            "released": self.released,
            "report": str(self.report_path) if self.report_path else None,
        }


class _Runner:
    """Runs stages in order, timing each, stopping at the first failure."""

    def __init__(self, result: PipelineResult, say: Progress) -> None:
        self.result = result
        self.say = say

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        record = StageRecord(name)
        self.result.stages.append(record)
        self.say(f"---- {name} ----")
        started = time.perf_counter()
        try:
            yield record
        except BaseException as exc:
            record.outcome = "failed"
            record.detail = record.detail or str(exc) or type(exc).__name__
            raise
        else:
            record.outcome = "ok" if record.outcome == "skipped" else record.outcome
        finally:
            record.seconds = round(time.perf_counter() - started, 3)
            self.say(f"{name}: {record.outcome} in {record.seconds:.1f} s")


@dataclass
class _Run:
    """What the stages of one pipeline run share: inputs, the state, the result so far."""

    config: ProjectConfig
    hub: Hub
    state: PipelineState
    options: PipelineOptions
    adapter: AdapterConfig
    result: PipelineResult
    progress_for: ProgressFactory
    say: Progress
    fetched: Any = None  # FetchResult: the adapter evaluate judges

    def progress(self, stage: str) -> Progress:
        return self.progress_for(stage)

    @property
    def backend(self) -> str:
        """Where training runs: ``--backend``, else the adapter's."""
        return self.options.backend or self.adapter.backend


def _preflight(run: _Run, record: StageRecord) -> None:
    from spacetrain.stages.params import build_params
    from spacetrain.stages.preflight import preflight

    # The training parameters first, by the contract: a value the Space would refuse
    # stops the run here (exit 2), before anything is synced or billed.
    ov = run.options.overrides
    params = build_params(
        run_id=ov.run_id or "preflight",
        adapter=run.adapter,
        base_model=ov.base_model,
        dataset=ov.dataset,
        dataset_revision=ov.dataset_revision,
        output_repo=ov.output_repo,
        overrides=ov.hyperparameters(),
    )
    if run.backend == "job":  # the job's token, image and command, before any sync
        from spacetrain.stages.job_backend import preflight_job

        preflight_job(run.config.space, params)
    checks = preflight(run.hub, run.config, run.adapter, run.state)
    for check in checks.checks:
        run.say(check.line())
    if checks.failed:
        names = ", ".join(c.name for c in checks.failed)
        record.detail = f"failed: {names}"
        raise _preflight_error(checks.exit_code, names)


def _sync(run: _Run, record: StageRecord) -> None:
    from spacetrain.stages.setup import SetupOptions
    from spacetrain.stages.sync import SyncOptions, sync

    config = run.config
    options = SyncOptions.from_checkout(
        config.root,
        space=config.space,
        space_dir=config.space_dir,
        policy=config.lint_policy,
        setup=SetupOptions.from_config(config, run.adapter),
    )
    record.detail = sync(run.hub, options, run.state, progress=run.progress("sync")).commit


def _wait(run: _Run, record: StageRecord) -> None:
    from spacetrain.stages.wait import wait

    commit = str(run.state.require("space_commit", stage="sync"))
    wait(
        run.hub,
        run.config.space,
        commit,
        timeout=run.options.wait_timeout,
        progress=run.progress("wait"),
    )
    record.detail = f"running {commit[:12]}"


def _train(run: _Run, record: StageRecord) -> None:
    from spacetrain.stages.params import train_options
    from spacetrain.stages.train import run_training

    options = train_options(
        run.config,
        run.state,
        replace(run.options.overrides, adapter=run.adapter.name),
        timeout=run.options.train_timeout,
        poll_interval=run.options.poll_interval,
    )
    backend = None
    if run.backend == "job":  # an HF Job in the image `wait` saw running this commit
        from spacetrain.stages.job_backend import job_backend
        from spacetrain.stages.release import release

        # The job needs the Space's image, not its hardware: stop that bill first.
        release(
            run.hub,
            run.config.space,
            after_training=run.config.after_training,
            progress=run.progress("release"),
        )
        backend = job_backend(
            run.hub,
            run.config,
            run.adapter,
            run.state,
            space=options.space,
            progress=run.progress("train"),
        )
    trained = run_training(
        run.hub, options, run.state, progress=run.progress("train"), backend=backend
    )
    run.result.released = trained.released
    record.detail = f"run {trained.run_id}: {trained.adapter_repo}@{trained.adapter_revision}"


def _fetch(run: _Run, record: StageRecord) -> None:
    from spacetrain.stages.fetch import FetchOptions, fetch_adapter

    options = FetchOptions.build(run.state, dest=run.options.work_dir / "adapter")
    run.fetched = fetch_adapter(run.hub, options, run.state, progress=run.progress("fetch"))
    record.detail = str(run.fetched.path)


def _evaluate(run: _Run, record: StageRecord) -> None:
    from spacetrain.evaluate.runner import EvaluateOptions, evaluate

    options, adapter, result = run.options, run.adapter, run.result
    options.report_dir.mkdir(parents=True, exist_ok=True)
    result.report_path, result.markdown_path = report_paths(options, adapter)
    report = evaluate(
        run.hub,
        EvaluateOptions(
            base_model=options.overrides.base_model or adapter.base_model,
            base_revision=run.state.get("base_revision") or adapter.base_revision,
            adapter=run.fetched.repo,
            adapter_revision=run.fetched.revision,
            suite=adapter.suite,
            gate=run.config.gate,
            report=result.report_path,
            markdown=result.markdown_path,
            compare_base=True,
        ),
        progress=run.progress("evaluate"),
    )
    run.state.update(report=str(result.report_path))
    result.report, result.passed = report, report.passed
    record.detail = _scores(report)
    if not result.passed:
        record.outcome = "failed"
        run.say("the gate said no: " + "; ".join(report.failures))


def _promote(run: _Run, record: StageRecord) -> None:
    from spacetrain.stages.promote import PromoteOptions, promote_adapter

    options = PromoteOptions.build(run.state, report=run.result.report_path, gate=run.config.gate)
    promoted = promote_adapter(run.hub, options, run.state, progress=run.progress("promote"))
    run.result.promoted_tag = promoted.tag
    record.detail = f"{promoted.repo}@{promoted.revision[:12]} tagged {promoted.tag}"


@dataclass(frozen=True)
class Stage:
    """One row of the pipeline: a stage, what it needs of the earlier ones, when it runs.

    Attributes:
        name: the stage's name (its progress tag and its row in the summary).
        run: does the stage; records what the next ones need in the state (or the run).
        needs: the earlier stages whose results it reads (documentation for people; the
            state says which key is missing when one did not record it).
        bills: from this stage on the Space may run (and bill): release on every way out.
        when: whether it runs at all (promotion only after a passing gate).
    """

    name: str
    run: Callable[[_Run, StageRecord], None]
    needs: tuple[str, ...] = ()
    bills: bool = False
    when: Callable[[_Run], bool] = lambda _run: True


STAGES: tuple[Stage, ...] = (
    Stage("preflight", _preflight),
    Stage("sync", _sync, needs=("preflight",), bills=True),
    Stage("wait", _wait, needs=("sync",)),
    Stage("train", _train, needs=("preflight", "wait")),
    Stage("fetch", _fetch, needs=("train",)),
    Stage("evaluate", _evaluate, needs=("preflight", "fetch")),
    Stage(
        "promote",
        _promote,
        needs=("train", "evaluate"),
        when=lambda run: run.result.passed and run.options.promote,
    ),
)


def run_pipeline(
    config: ProjectConfig,
    hub: Hub,
    state: PipelineState,
    options: PipelineOptions,
    *,
    progress_for: ProgressFactory = progress_for,
) -> PipelineResult:
    """Run :data:`STAGES` against ``config.space``; release the Space whatever happens.

    A stage that fails stops the run: its message is ``result.error`` and its exit
    code (docs/architecture.md) is ``result.exit_code``. The gate saying no is exit 1 and skips
    promotion. Only bugs and interrupts propagate, and the Space is released even then.
    """
    adapter: AdapterConfig = config.adapter(options.overrides.adapter)
    check_outputs(options, adapter, state)  # not after an hour of training
    result = PipelineResult()
    run = _Run(config, hub, state, options, adapter, result, progress_for, progress_for("pipeline"))
    runner = _Runner(result, run.say)
    state.reset(space=config.space, adapter=adapter.name)
    synced = False
    try:
        for stage in STAGES:
            if not stage.when(run):
                continue
            synced = synced or stage.bills  # from here on: always release
            with runner.stage(stage.name) as record:
                stage.run(run, record)
        result.exit_code = EXIT_OK if result.passed else EXIT_FAILED
    except SpacetrainError as exc:
        result.error = str(exc)
        result.exit_code = exc.exit_code
    except KeyboardInterrupt:  # SIGINT, or SIGTERM (a cancelled CI job: cli.main)
        if not synced:
            untouched(config.space, "before sync", progress=progress_for("release"))
        raise
    finally:
        if synced:
            _release(
                runner,
                hub,
                config,
                result,
                ours=state.get("run_id"),
                progress=progress_for("release"),
            )
    return result


def report_paths(options: PipelineOptions, adapter: AdapterConfig) -> tuple[Path, Path]:
    """Where the evaluate stage writes its JSON report and its Markdown page."""
    stem = f"{adapter.name}-eval"  # not with_suffix: an adapter name may hold a dot
    return options.report_dir / f"{stem}.json", options.report_dir / f"{stem}.md"


def check_outputs(options: PipelineOptions, adapter: AdapterConfig, state: PipelineState) -> None:
    """Everything the run writes can be written: checked before preflight, so a bad
    ``--report-dir`` or ``$GITHUB_OUTPUT`` is exit 2 at once, not after training.

    Raises:
        UsageError: a report folder that is a file, an adapter folder fetch may not
            replace, a state file or ``$GITHUB_OUTPUT`` that cannot be written (exit 2).
    """
    from spacetrain.stages.fetch import check_dest

    writable_dir(options.report_dir, "--report-dir")
    for path in report_paths(options, adapter):
        writable_file(path, "--report-dir")
    check_dest(options.work_dir / "adapter")
    state.check_writable()


def _release(
    runner: _Runner,
    hub: Hub,
    config: ProjectConfig,
    result: PipelineResult,
    *,
    ours: str | None,
    progress: Progress,
) -> None:
    """Stop the GPU bill, unless the Space trains a run that is not ``ours`` (the release
    stage decides and says why); a failure here is reported, never hidden."""
    from spacetrain.stages.release import release

    try:
        with runner.stage("release") as record:
            released = release(
                hub,
                config.space,
                after_training=config.after_training,
                ours=ours,
                progress=progress,
            )
            result.released = released.action
            record.detail = f"{released.action} ({released.reason or released.stage})"
    except SpacetrainError as exc:
        result.released = "failed"
        message = f"could not release {config.space}, it may still bill GPU time: {exc}"
        result.error = f"{result.error}; {message}" if result.error else message
        if result.exit_code == EXIT_OK:
            result.exit_code = exc.exit_code


class PreflightFailed(CheckFailed):
    """Preflight found a problem before any GPU time was spent."""


def _preflight_error(exit_code: int, names: str) -> SpacetrainError:
    error = PreflightFailed(f"preflight failed ({names}); nothing was synced or trained")
    error.exit_code = exit_code or error.exit_code
    return error


def _scores(report: EvaluationReport) -> str:
    categories = ", ".join(f"{k} {v:.2f}" for k, v in sorted((report.categories or {}).items()))
    clean, overall = report.attribution_clean or 0.0, report.overall or 0.0
    return f"overall {overall:.2f} ({categories}), attribution clean {clean:.2f}"


def render_summary(result: PipelineResult) -> str:
    """A Markdown table of the stages (for the terminal and ``$GITHUB_STEP_SUMMARY``)."""
    lines = ["| stage | outcome | seconds | detail |", "|---|---|---:|---|"]
    for stage in result.stages:
        detail = stage.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {stage.name} | {stage.outcome} | {stage.seconds:.1f} | {detail} |")
    verdict = "passed" if result.passed else "did not pass"
    if result.error:
        verdict = f"stopped: {result.error}"
    return "\n".join([*lines, "", f"Pipeline {verdict}."]) + "\n"


__all__ = [
    "STAGES",
    "PipelineOptions",
    "PipelineResult",
    "PreflightFailed",
    "Stage",
    "StageRecord",
    "check_outputs",
    "render_summary",
    "report_paths",
    "run_pipeline",
]
