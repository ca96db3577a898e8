"""``spacetrain pipeline``: every stage in one process, against the configured Space."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from spacetrain.config import load_config
from spacetrain.hub import Hub
from spacetrain.inputs import append_github_file, github_file
from spacetrain.pipeline import PipelineOptions, render_summary, run_pipeline
from spacetrain.redact import mask
from spacetrain.stages.params import TrainingOverrides
from spacetrain.stages.state import PipelineState
from spacetrain.stages.target import resolve_target


def run(args: argparse.Namespace) -> int:
    """Run preflight → … → promote, release the Space, print the stage table."""
    overrides = TrainingOverrides.from_args(args)  # before the config, the Hub, the Space
    config = load_config()
    github_file("GITHUB_STEP_SUMMARY")  # written at the end: a bad one must fail first
    config = replace(config, space=resolve_target(args.space, config).space)
    options = PipelineOptions(
        overrides=overrides,
        report_dir=Path(args.report_dir),
        promote=not args.no_promote,
        backend=args.backend,
    )
    result = run_pipeline(config, Hub.from_env(), PipelineState.load(args.state), options)
    summary = mask(render_summary(result))  # stage details carry error messages
    sys.stdout.write(summary)
    append_github_file("GITHUB_STEP_SUMMARY", summary)
    if result.error:
        print(f"spacetrain pipeline: error: {mask(result.error)}", file=sys.stderr)
    return result.exit_code
