"""``spacetrain train``, ``fetch`` and ``promote``: the pipeline stages about the adapter.

Each handler turns flags, ``[tool.spacetrain]`` and the pipeline state into the
stage's inputs, runs the stage, and prints its results as ``key=value`` lines on
stdout (progress went to stderr); the same values land in the state file and, on
GitHub Actions, in ``$GITHUB_OUTPUT``.
"""

from __future__ import annotations

import argparse

from spacetrain.config import load_config
from spacetrain.errors import EXIT_OK
from spacetrain.stages.state import PipelineState


def _print(**values: object) -> None:
    for key, value in values.items():
        print(f"{key}={'' if value is None else value}")


def train(args: argparse.Namespace) -> int:
    """Start training (the Space's API, or an HF Job), follow it, record the adapter revision."""
    from spacetrain.hub import Hub
    from spacetrain.stages.job_backend import choose_backend, job_backend
    from spacetrain.stages.params import TrainingOverrides, train_options
    from spacetrain.stages.progress import progress_for
    from spacetrain.stages.release import untouched
    from spacetrain.stages.train import check_release_rights, run_training

    overrides = TrainingOverrides.from_args(args)  # exit 2 before anything is touched
    state = PipelineState.load(args.state)
    state.check_writable()  # the stage records its result at the end
    # SIGTERM (a cancelled CI job) is an interrupt here (cli.main): from run_training on
    # the GPU is released; before it, the Space was not touched and that is said.
    space: str | None = None
    try:
        config = load_config()
        options = train_options(
            config,
            state,
            overrides,
            space=args.space,
            timeout=args.timeout,
            poll_interval=args.poll_interval,
            keep_running=args.keep_running,
        )
        space = options.space
        hub = Hub.from_env()
        backend = None
        if choose_backend(config, args.adapter, args.backend) == "job":
            # an HF Job in the Space's image: cancelled on every way out (its release)
            chosen = config.adapter(args.adapter) if config.adapters or args.adapter else None
            backend = job_backend(
                hub, config, chosen, state, space=space, progress=progress_for("train")
            )
        else:  # The pipeline's preflight asks this; `train` alone asks it before the Space.
            check_release_rights(hub, space)
    except KeyboardInterrupt:
        untouched(space, "before training started")
        raise
    result = run_training(hub, options, state, backend=backend)
    _print(
        run_id=result.run_id,
        adapter_repo=result.adapter_repo,
        adapter_revision=result.adapter_revision,
        released=result.released,
    )
    return EXIT_OK


def fetch(args: argparse.Namespace) -> int:
    """Download the adapter at the recorded revision and check its run.json."""
    from spacetrain.hub import Hub
    from spacetrain.stages.fetch import FetchOptions, fetch_adapter

    state = PipelineState.load(args.state)
    state.check_writable()  # the stage records its result at the end
    options = FetchOptions.build(  # fetch_adapter checks dest first
        state, repo=args.repo, revision=args.revision, run_id=args.run_id, dest=args.dest
    )
    result = fetch_adapter(Hub.from_env(), options, state)
    _print(
        adapter_repo=result.repo,
        adapter_revision=result.revision,
        adapter_dir=result.path.resolve(),
    )
    return EXIT_OK


def promote(args: argparse.Namespace) -> int:
    """Tag the adapter revision a passing report judged, and publish the evaluation."""
    from spacetrain.hub import Hub
    from spacetrain.stages.promote import PromoteOptions, promote_adapter

    state = PipelineState.load(args.state)
    state.check_writable()  # the stage records its result at the end
    report = args.report or state.require("report", stage="evaluate")
    options = PromoteOptions.build(
        state, report=report, gate=args.gate or load_config().gate, tag=args.tag
    )
    result = promote_adapter(Hub.from_env(), options, state)
    _print(
        promoted_tag=result.tag,
        adapter_repo=result.repo,
        adapter_revision=result.revision,
        card_commit=result.card_commit,
    )
    return EXIT_OK
