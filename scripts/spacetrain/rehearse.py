"""The whole pipeline, offline: localhub plays the Hub, a tiny model plays the base.

`spacetrain rehearse` starts localhub, builds a tiny Llama whose tokenizer is trained
on the demo data, pushes it and the demo dataset, and runs the real pipeline against
them: the real ``space/`` folder is synced to a local Docker-Space stand-in, its real
``app.py`` starts the real ``train.py`` (4-bit QLoRA on the CPU), the adapter is
fetched at its exact revision, evaluated on the real suite, gated and promoted, and
the Space is paused. The same code runs against huggingface.co: only ``HF_ENDPOINT``
differs. It takes about a minute, where a real run costs an A10G hour.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spacetrain import contract
from spacetrain.config import AdapterConfig, ProjectConfig, find_root, load_config
from spacetrain.inputs import writable_dir, writable_file
from spacetrain.stages.params import TrainingOverrides
from spacetrain.stages.progress import progress_for

if TYPE_CHECKING:
    from spacetrain.pipeline import PipelineResult

OWNER = "rehearsal"
SPACE = f"{OWNER}/kwanzaa-training"
BASE_REPO = f"{OWNER}/tiny-llama"
DATASET_REPO = f"{OWNER}/kwanzaa-data"
ADAPTER_REPO = f"{OWNER}/kwanzaa-adapter"

# What makes the tiny model learn the demo data by heart (measured in tests/space and
# tests/evaluate: every answer reproduced, the gate passed); the real defaults are
# 4 epochs at 2e-4 on a real base model.
REHEARSAL_TRAIN = {"epochs": 40, "learning_rate": 5e-3, "batch_size": 4, "grad_accum": 1}


@dataclass
class RehearsalOptions:
    """Flags of ``spacetrain rehearse``."""

    overrides: TrainingOverrides = field(default_factory=TrainingOverrides)
    workdir: Path | None = None
    report: Path | None = None
    markdown: Path | None = None
    backend: str = "space"  # "job": train as an HF Job on localhub's Jobs API


@dataclass
class Rehearsal:
    """What the rehearsal set up on localhub, for the pipeline to run against."""

    workdir: Path
    endpoint: str
    config: ProjectConfig
    base_revision: str
    dataset_revision: str
    timings: dict[str, float] = field(default_factory=dict)


_say = progress_for("rehearse")


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the rehearsal and put the old values back after."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def demo_corpus(path: Path) -> list[str]:
    """Every text of the demo data: the tiny tokenizer must spell all of it."""
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            texts += [m["content"] for m in json.loads(line)["messages"]]
    return texts


def rehearsal_config(
    root: Path, options: RehearsalOptions, workdir: Path | None = None
) -> ProjectConfig:
    """The project's config with every repo moved to localhub's ``rehearsal/`` owner.

    The Space variables it adds are what a laptop needs: run folders under ``workdir``,
    one thread per process, and no GPU expected (localhub runs the app on this CPU).
    """
    project = load_config(root)
    demo = project.adapters.get("kwanzaa")
    suite = demo.suite if demo else root / "policy" / "evals" / "kwanzaa.yaml"
    train: dict[str, Any] = dict(REHEARSAL_TRAIN)
    train.update(options.overrides.checked().hyperparameters())
    adapter = AdapterConfig(
        name="kwanzaa",
        base_model=BASE_REPO,
        dataset=DATASET_REPO,
        output_repo=ADAPTER_REPO,
        suite=suite,
        train=train,
        backend=options.backend,
        job_flavor="cpu-basic",  # localhub runs the job on this CPU
        job_timeout=1800,
    )
    return ProjectConfig(
        root=root,
        space=SPACE,
        space_dir=project.space_dir,
        hardware=project.hardware,
        after_training="pause",
        gate=project.gate,
        lint_policy=project.lint_policy,
        adapters={"kwanzaa": adapter},
        private=True,
        variables={
            **({contract.ENV_RUNS_DIR: str(workdir / "space-runs")} if workdir else {}),
            "OMP_NUM_THREADS": "1",
            contract.ENV_EXPECT_GPU: "0",
        },
        backend=options.backend,
        job_flavor="cpu-basic",
        job_timeout=1800,
    )


def prepare(hub: Any, workdir: Path, config: ProjectConfig) -> Rehearsal:
    """Push the tiny base model and the demo dataset (what a team has before day one).

    ``hub`` is a :class:`spacetrain.hub.Hub` pointed at localhub. The Space is NOT made
    here: the pipeline's set-up creates it from ``SPACE_HF_TOKEN``, as on a first deploy.
    """
    from spacetrain.dataset import demo_dataset_path, push_dataset, validate_file
    from spacetrain.tinymodel import build_tiny_llama

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = demo_dataset_path()
    base_dir = build_tiny_llama(workdir / "tiny-llama", demo_corpus(data), seed=0)
    hub.call(f"create {BASE_REPO}", hub.api.create_repo, BASE_REPO, exist_ok=True)
    base = hub.call(
        f"upload the tiny base model to {BASE_REPO}",
        hub.api.upload_folder,
        repo_id=BASE_REPO,
        folder_path=str(base_dir),
        commit_message="Tiny Llama for the offline rehearsal",
    )
    _say(f"tiny base model {BASE_REPO}@{base.oid[:12]} ({time.perf_counter() - t0:.1f} s)")
    timings["base_model_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    report = validate_file(data)
    pushed = push_dataset(hub, data, DATASET_REPO, examples=len(report.examples))
    _say(f"demo dataset {DATASET_REPO}@{pushed.sha[:12]} ({len(report.examples)} examples)")
    timings["dataset_s"] = round(time.perf_counter() - t0, 3)

    return Rehearsal(
        workdir=workdir,
        endpoint=hub.endpoint,
        config=config,
        base_revision=base.oid,
        dataset_revision=pushed.sha,
        timings=timings,
    )


def run_rehearsal(options: RehearsalOptions, *, root: Path | None = None) -> dict[str, Any]:
    """Set up localhub, run the pipeline against it, and say how it went.

    Returns the rehearsal report (``exit_code`` is the pipeline's, or 1 when the Space
    was left billing); writes it to ``options.report`` and a Markdown page to
    ``options.markdown`` when given.
    """
    from spacetrain.hub import Hub
    from spacetrain.pipeline import PipelineOptions, render_summary, run_pipeline
    from spacetrain.stages.state import PipelineState

    root = root or find_root()
    check_outputs(options)
    started = time.perf_counter()
    with workdir_for(options) as workdir, localhub_session(workdir) as server:
        _say(f"localhub on {server.url}, work folder {workdir}")
        hub = Hub.from_env()
        config = rehearsal_config(root, options, workdir)
        setup = prepare(hub, workdir, config)
        state = PipelineState(workdir / "state.json")
        try:
            result = run_pipeline(
                config,
                hub,
                state,
                PipelineOptions(
                    overrides=TrainingOverrides(adapter="kwanzaa"),
                    report_dir=workdir / "reports",
                    work_dir=workdir / ".spacetrain",
                    wait_timeout=600.0,
                    train_timeout=1800.0,
                    poll_interval=1.0,  # each poll is two Gradio calls (~60 ms of CPU each)
                    backend=options.backend,
                ),
            )
        except KeyboardInterrupt:  # SIGINT or SIGTERM: the pipeline released the Space
            _interrupted(hub, server, config.space, options.report, started)
            raise
        runtime = hub.call("read the Space", hub.api.get_space_runtime, config.space)
        billing = server.billing()
        report = _rehearsal_report(result, setup, runtime.stage, billing, config.space)
        report["seconds"] = round(time.perf_counter() - started, 1)
        markdown = render_summary(result)
        if result.markdown_path and result.markdown_path.exists():
            markdown += "\n" + result.markdown_path.read_text(encoding="utf-8")
    if options.report:
        options.report.parent.mkdir(parents=True, exist_ok=True)
        options.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if options.markdown:
        options.markdown.parent.mkdir(parents=True, exist_ok=True)
        options.markdown.write_text(markdown, encoding="utf-8")
    return report


def _interrupted(hub: Any, server: Any, space: str, report: Path | None, started: float) -> None:
    """Say (and write to ``--report``) what an interrupt left: the pipeline's ``finally``
    released the Space; localhub's meter shows whether it still bills."""
    from spacetrain.errors import SpacetrainError

    try:
        stage = str(hub.call("read the Space", hub.api.get_space_runtime, space).stage)
    except SpacetrainError:
        stage = "none"  # interrupted before the Space existed: nothing to release
    billing = server.billing()
    metered = (billing.get("spaces") or {}).get(space) or {}
    still = metered.get("billing") is not None or bool(billing_jobs(billing))
    _say(
        f"interrupted: the Space is {stage}; "
        + ("it would still be billing" if still else "nothing is billed any more")
    )
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "exit_code": 130,
            "error": "interrupted (SIGINT or SIGTERM)",
            "problems": ["the Space or a job was left billing"] if still else [],
            "space": {"id": space, "stage_after": stage},
            "billing": billing,
            "seconds": round(time.perf_counter() - started, 1),
        }
        report.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _rehearsal_report(
    result: PipelineResult, setup: Rehearsal, stage: str, billing: dict[str, Any], space: str
) -> dict[str, Any]:
    """The pipeline's summary plus what only a stand-in can tell: was the GPU released?"""
    exit_code = result.exit_code
    problems = []
    if stage not in {"PAUSED", "SLEEPING", "STOPPED"} and result.released not in {
        "downgraded",
        "already-downgraded",
    }:
        problems.append(f"the Space was left {stage}: it would still be billing")
        exit_code = exit_code or 1
    for job in billing_jobs(billing):
        problems.append(f"job {job} was left running: it would still be billing")
        exit_code = exit_code or 1
    evaluation = result.report.to_json() if result.report else {}
    return {
        **result.to_json(),
        "exit_code": exit_code,
        "problems": problems,
        "space": {"id": space, "stage_after": stage},
        "base_model": {"repo": BASE_REPO, "revision": setup.base_revision},
        "dataset": {"repo": DATASET_REPO, "revision": setup.dataset_revision},
        "setup_timings": setup.timings,
        "scores": {
            key: evaluation.get(key) for key in ("overall", "categories", "attribution_clean")
        },
        "base_scores": evaluation.get("base"),
        "billing": billing,
    }


def billing_jobs(billing: dict[str, Any]) -> list[str]:
    """The jobs localhub's meter still bills (none, once every job has ended)."""
    jobs = billing.get("jobs") or {}
    return sorted(job for job, meter in jobs.items() if (meter or {}).get("billing") is not None)


@contextlib.contextmanager
def localhub_session(workdir: Path) -> Iterator[Any]:
    """A strict localhub (two accepted tokens), the clients pointed at it, and the two
    tokens in the environment as a CI job has them: ``HF_TOKEN`` (the pipeline's) and
    ``SPACE_HF_TOKEN`` (the Space's own secret, which set-up gives the Space)."""
    from spacetrain.localhub import LocalHub, use_endpoint
    from spacetrain.stages.setup import SPACE_TOKEN_ENV

    token, space_token = ("hf_" + secrets.token_urlsafe(24) for _ in range(2))
    with (
        LocalHub(root=workdir / "hub", port=0, tokens={token: OWNER, space_token: OWNER}) as server,
        use_endpoint(server.url),
        _environment(
            HF_TOKEN=token,
            **{SPACE_TOKEN_ENV: space_token},
            OMP_NUM_THREADS="1",
            HF_HUB_DISABLE_TELEMETRY="1",
        ),
    ):
        yield server


def check_outputs(options: RehearsalOptions) -> None:
    """``--workdir``, ``--report`` and ``--markdown`` can be written: checked before
    localhub starts, not after the rehearsal's minute of training.

    Raises:
        UsageError: a folder given as a file, a file given as a folder, or a path
            under a file or in an unwritable folder (exit 2).
    """
    if options.workdir is not None:
        writable_dir(options.workdir, "--workdir")
    if options.report is not None:
        writable_file(options.report, "--report")
    if options.markdown is not None:
        writable_file(options.markdown, "--markdown")


def workdir_for(options: RehearsalOptions) -> contextlib.AbstractContextManager[Path]:
    """``--workdir`` (kept) or a temporary folder (removed after)."""
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
        return contextlib.nullcontext(options.workdir.resolve())
    return _temporary()


@contextlib.contextmanager
def _temporary() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="spacetrain-rehearse-") as tmp:
        yield Path(tmp)


__all__ = [
    "REHEARSAL_TRAIN",
    "Rehearsal",
    "RehearsalOptions",
    "billing_jobs",
    "check_outputs",
    "demo_corpus",
    "localhub_session",
    "prepare",
    "rehearsal_config",
    "run_rehearsal",
    "workdir_for",
]
