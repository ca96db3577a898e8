"""``spacetrain train``, ``fetch`` and ``promote``: the pipeline stages about the adapter.

Each handler turns flags, ``[tool.spacetrain]`` and the pipeline state into the
stage's inputs, runs the stage, and prints its results as ``key=value`` lines on
stdout (progress went to stderr); the same values land in the state file and, on
GitHub Actions, in ``$GITHUB_OUTPUT``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spacetrain.config import load_config
from spacetrain.errors import EXIT_OK, UsageError
from spacetrain.stages.state import PipelineState


def _print(**values: object) -> None:
    for key, value in values.items():
        print(f"{key}={'' if value is None else value}")


def check_flags(args: argparse.Namespace) -> None:
    """The training flags checked by the contract (``space/train.py`` PARAMS), first thing:
    a bad value is exit 2 with one line before anything is synced, started or billed.

    Raises:
        UsageError: the first flag outside the contract, named as typed.
    """
    from spacetrain import contract

    for name in ("epochs", "learning_rate", "run_id"):
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = "run id" if name == "run_id" else "--" + name.replace("_", "-")
        try:
            contract.check_param(name, value, text=True, source=flag)
        except contract.ParamError as exc:
            raise UsageError(str(exc)) from None


def train(args: argparse.Namespace) -> int:
    """Start training (the Space's API, or an HF Job), follow it, record the adapter revision."""
    from spacetrain.hub import Hub
    from spacetrain.stages.job_backend import choose_backend, run_job_training, settings_for
    from spacetrain.stages.release import untouched
    from spacetrain.stages.train import check_release_rights, run_training, train_options

    check_flags(args)
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
            adapter=args.adapter,
            space=args.space,
            run_id=args.run_id,
            base_model=args.base_model,
            dataset=args.dataset,
            dataset_revision=args.dataset_revision,
            output_repo=args.output_repo,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            timeout=args.timeout,
            poll_interval=args.poll_interval,
            keep_running=args.keep_running,
        )
        space = options.space
        hub = Hub.from_env()
        backend = choose_backend(config, args.adapter, args.backend)
        if backend == "space":
            # The pipeline's preflight asks this; `train` alone asks it here, before the Space.
            check_release_rights(hub, space)
    except KeyboardInterrupt:
        untouched(space, "before training started")
        raise
    if backend == "job":  # an HF Job in the Space's image; cancelled on every way out
        chosen = config.adapter(args.adapter) if config.adapters or args.adapter else None
        settings = settings_for(config, chosen, state)
        result = run_job_training(options, settings, hub, state)
    else:
        result = run_training(options, hub, state)
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
    from spacetrain.stages.fetch import DEFAULT_DEST, fetch_adapter

    state = PipelineState.load(args.state)
    state.check_writable()  # the stage records its result at the end
    result = fetch_adapter(
        Hub.from_env(),
        state,
        repo=args.repo or state.require("adapter_repo", stage="train"),
        revision=args.revision or state.require("adapter_revision", stage="train"),
        run_id=args.run_id or state.require("run_id", stage="train"),
        dest=Path(args.dest) if args.dest else DEFAULT_DEST,  # fetch_adapter checks it first
    )
    _print(
        adapter_repo=result.repo,
        adapter_revision=result.revision,
        adapter_dir=result.path.resolve(),
    )
    return EXIT_OK


def promote(args: argparse.Namespace) -> int:
    """Tag the adapter revision a passing report judged, and publish the evaluation."""
    from spacetrain.evaluate.gate import load_gate
    from spacetrain.hub import Hub
    from spacetrain.stages.promote import promote_adapter

    state = PipelineState.load(args.state)
    state.check_writable()  # the stage records its result at the end
    report = args.report or state.require("report", stage="evaluate")
    policy = load_gate(args.gate or load_config().gate)
    result = promote_adapter(
        Hub.from_env(), state, report_path=Path(report), policy=policy, tag=args.tag
    )
    _print(
        promoted_tag=result.tag,
        adapter_repo=result.repo,
        adapter_revision=result.revision,
        card_commit=result.card_commit,
    )
    return EXIT_OK
