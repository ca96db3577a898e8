"""``spacetrain pipeline``: every stage in one process, against the configured Space."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from spacetrain.commands.adapter import check_flags
from spacetrain.config import load_config
from spacetrain.hub import Hub
from spacetrain.pipeline import PipelineOptions, render_summary, run_pipeline
from spacetrain.stages.state import PipelineState


def run(args: argparse.Namespace) -> int:
    """Run preflight → … → promote, release the Space, print the stage table."""
    check_flags(args)  # before the config, the Hub or the Space: exit 2 with one line
    config = load_config()
    if args.space:
        config = replace(config, space=args.space)
    options = PipelineOptions(
        adapter=args.adapter,
        run_id=args.run_id,
        base_model=args.base_model,
        dataset=args.dataset,
        dataset_revision=args.dataset_revision,
        output_repo=args.output_repo,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        report_dir=Path(args.report_dir),
        promote=not args.no_promote,
    )
    result = run_pipeline(config, Hub.from_env(), PipelineState.load(args.state), options)
    summary = render_summary(result)
    sys.stdout.write(summary)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with Path(step_summary).open("a", encoding="utf-8") as handle:
            handle.write(summary)
    if result.error:
        print(f"spacetrain pipeline: error: {result.error}", file=sys.stderr)
    return result.exit_code
