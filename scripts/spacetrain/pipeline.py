"""The whole pipeline in one process: preflight, sync, wait, train, fetch, evaluate, promote.

`spacetrain pipeline` and `spacetrain rehearse` run this; the GitHub workflow runs the
same stages as separate steps (so its log shows where a run stopped). Whatever
happens after `sync`, the Space is released at the end: the GPU bill stops even when
the Space never came up, training failed or the gate said no.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacetrain.config import AdapterConfig, ProjectConfig
from spacetrain.errors import EXIT_FAILED, EXIT_OK, CheckFailed, SpacetrainError
from spacetrain.hub import Hub
from spacetrain.inputs import writable_dir, writable_file
from spacetrain.stages.release import untouched
from spacetrain.stages.state import PipelineState


@dataclass(frozen=True)
class PipelineOptions:
    """Overrides of one pipeline run (the flags of ``spacetrain pipeline``)."""

    adapter: str | None = None
    run_id: str | None = None
    base_model: str | None = None
    dataset: str | None = None
    dataset_revision: str | None = None
    output_repo: str | None = None
    epochs: float | None = None
    learning_rate: float | None = None
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
    """What the run did: ``exit_code`` is DESIGN.md's (0 only when the gate passed)."""

    passed: bool = False
    exit_code: int = EXIT_FAILED
    stages: list[StageRecord] = field(default_factory=list)
    report: dict[str, Any] | None = None
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


def _say(message: str) -> None:
    print(f"[pipeline] {message}", file=sys.stderr, flush=True)


class _Runner:
    """Runs stages in order, timing each, stopping at the first failure."""

    def __init__(self, result: PipelineResult, say: Callable[[str], None]) -> None:
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


def run_pipeline(
    config: ProjectConfig,
    hub: Hub,
    state: PipelineState,
    options: PipelineOptions,
    *,
    say: Callable[[str], None] = _say,
) -> PipelineResult:
    """Run every stage against ``config.space``; release the Space whatever happens.

    A stage that fails stops the run: its message is ``result.error`` and its exit
    code (DESIGN.md) is ``result.exit_code``. The gate saying no is exit 1 and skips
    promotion. Only bugs and interrupts propagate, and the Space is released even then.
    """
    from spacetrain.evaluate.gate import load_gate
    from spacetrain.evaluate.runner import EvaluateOptions, evaluate
    from spacetrain.stages.fetch import fetch_adapter
    from spacetrain.stages.job_backend import preflight_job, run_job_training, settings_for
    from spacetrain.stages.preflight import preflight
    from spacetrain.stages.promote import promote_adapter
    from spacetrain.stages.setup import SetupOptions
    from spacetrain.stages.sync import SyncOptions, sync
    from spacetrain.stages.train import build_params, run_training, train_options
    from spacetrain.stages.wait import wait

    adapter: AdapterConfig = config.adapter(options.adapter)
    backend = options.backend or adapter.backend
    check_outputs(options, adapter, state)  # not after an hour of training
    result = PipelineResult()
    runner = _Runner(result, say)
    state.reset(space=config.space, adapter=adapter.name)
    synced = False
    try:
        with runner.stage("preflight") as record:
            # The training parameters first, by the contract: a value the Space would
            # refuse stops the run here (exit 2), before anything is synced or billed.
            params = build_params(
                run_id=options.run_id or "preflight",
                adapter=adapter,
                base_model=options.base_model,
                dataset=options.dataset,
                dataset_revision=options.dataset_revision,
                output_repo=options.output_repo,
                overrides={"epochs": options.epochs, "learning_rate": options.learning_rate},
            )
            if backend == "job":  # the job's token, image and command, before any sync
                preflight_job(config.space, params)
            checks = preflight(hub, config, adapter, state)
            for check in checks.checks:
                say(check.line())
            if checks.failed:
                names = ", ".join(c.name for c in checks.failed)
                record.detail = f"failed: {names}"
                raise _preflight_error(checks.exit_code, names)

        with runner.stage("sync") as record:
            synced = True  # from here on the Space may start (and bill): always release
            done = sync(
                hub,
                SyncOptions.from_checkout(
                    config.root,
                    space=config.space,
                    space_dir=config.space_dir,
                    policy=config.lint_policy,
                    setup=SetupOptions.from_config(config, adapter),
                ),
                state,
            )
            record.detail = done.commit

        with runner.stage("wait") as record:
            commit = str(state.require("space_commit", stage="sync"))
            wait(hub, config.space, commit, timeout=options.wait_timeout)
            record.detail = f"running {commit[:12]}"

        with runner.stage("train") as record:
            chosen = train_options(
                config,
                state,
                adapter=adapter.name,
                run_id=options.run_id,
                base_model=options.base_model,
                dataset=options.dataset,
                dataset_revision=options.dataset_revision,
                output_repo=options.output_repo,
                epochs=options.epochs,
                learning_rate=options.learning_rate,
                timeout=options.train_timeout,
                poll_interval=options.poll_interval,
            )
            if backend == "job":  # an HF Job in the image `wait` saw running this commit
                # The job needs the Space's image, not its hardware: stop that bill first.
                from spacetrain.stages.release import release

                release(hub, config.space, after_training=config.after_training)
                settings = settings_for(config, adapter, state)
                trained = run_job_training(chosen, settings, hub, state)
            else:
                trained = run_training(chosen, hub, state)
            result.released = trained.released
            record.detail = (
                f"run {trained.run_id}: {trained.adapter_repo}@{trained.adapter_revision}"
            )

        with runner.stage("fetch") as record:
            fetched = fetch_adapter(
                hub,
                state,
                repo=str(state.require("adapter_repo", stage="train")),
                revision=str(state.require("adapter_revision", stage="train")),
                run_id=str(state.require("run_id", stage="train")),
                dest=options.work_dir / "adapter",
            )
            record.detail = str(fetched.path)

        with runner.stage("evaluate") as record:
            options.report_dir.mkdir(parents=True, exist_ok=True)
            result.report_path, result.markdown_path = report_paths(options, adapter)
            report = evaluate(
                EvaluateOptions(
                    base_model=options.base_model or adapter.base_model,
                    base_revision=state.get("base_revision") or adapter.base_revision,
                    adapter=fetched.repo,
                    adapter_revision=fetched.revision,
                    suite=adapter.suite,
                    gate=config.gate,
                    report=result.report_path,
                    markdown=result.markdown_path,
                    compare_base=True,
                )
            )
            state.update(report=str(result.report_path))
            result.report = report
            result.passed = bool(report["passed"])
            record.detail = _scores(report)
            if not result.passed:
                record.outcome = "failed"
                say("the gate said no: " + "; ".join(report.get("failures") or []))

        if result.passed and options.promote:
            with runner.stage("promote") as record:
                promoted = promote_adapter(
                    hub, state, report_path=result.report_path, policy=load_gate(config.gate)
                )
                result.promoted_tag = promoted.tag
                record.detail = f"{promoted.repo}@{promoted.revision[:12]} tagged {promoted.tag}"
        result.exit_code = EXIT_OK if result.passed else EXIT_FAILED
    except SpacetrainError as exc:
        result.error = str(exc)
        result.exit_code = exc.exit_code
    except KeyboardInterrupt:  # SIGINT, or SIGTERM (a cancelled CI job: cli.main)
        if not synced:
            untouched(config.space, "before sync")
        raise
    finally:
        if synced:
            _release(runner, hub, config, result, ours=state.get("run_id"))
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
    runner: _Runner, hub: Hub, config: ProjectConfig, result: PipelineResult, *, ours: str | None
) -> None:
    """Stop the GPU bill, unless the Space trains a run that is not ``ours`` (the release
    stage decides and says why); a failure here is reported, never hidden."""
    from spacetrain.stages.release import release

    try:
        with runner.stage("release") as record:
            released = release(hub, config.space, after_training=config.after_training, ours=ours)
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


def _scores(report: dict[str, Any]) -> str:
    categories = ", ".join(f"{k} {v:.2f}" for k, v in sorted(report["categories"].items()))
    clean = report["attribution_clean"]
    return f"overall {report['overall']:.2f} ({categories}), attribution clean {clean:.2f}"


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
    "PipelineOptions",
    "PipelineResult",
    "PreflightFailed",
    "StageRecord",
    "check_outputs",
    "render_summary",
    "report_paths",
    "run_pipeline",
]
