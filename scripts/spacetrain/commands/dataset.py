"""``spacetrain dataset validate`` and ``spacetrain dataset push``.

``validate`` prints one ``path:line: severity: message [code]`` line per finding
and a summary (stdout), and exits 1 when there is an error. ``push`` validates
first, then commits the file to a dataset repo and prints the commit sha that
training must pin (the only thing on stdout, so ``$(spacetrain dataset push …)``
captures it); an unchanged file makes no commit and prints the current head.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spacetrain.dataset import DatasetReport, load_tokenizer, push_dataset, validate_file
from spacetrain.errors import EXIT_FAILED, EXIT_OK, UsageError
from spacetrain.evaluate.gate import load_gate
from spacetrain.evaluate.suite import load_suite


def _validate(args: argparse.Namespace, *, gate: str | None, suite: str | None) -> DatasetReport:
    policy = load_gate(gate)
    prompts = [(c.id, c.prompt) for c in load_suite(suite).cases] if suite else []
    max_length = getattr(args, "max_length", None)
    if max_length is not None and max_length < 1:
        raise UsageError(f"--max-length must be at least 1, not {max_length}")
    tokenizer_name = getattr(args, "tokenizer", None)
    tokenizer = load_tokenizer(tokenizer_name) if tokenizer_name else None
    return validate_file(
        args.file,
        attribution_patterns=policy.attribution_patterns,
        suite_prompts=prompts,
        tokenizer=tokenizer,
        max_length=max_length,
    )


def _print_report(report: DatasetReport, stream: Any) -> None:
    for issue in report.issues:
        print(issue.render(report.path), file=stream)
    print(report.summary(), file=stream)


def validate(args: argparse.Namespace) -> int:
    """Check a JSONL training file: exit 1 on errors, 0 with warnings only."""
    report = _validate(args, gate=args.gate, suite=args.suite)
    _print_report(report, sys.stdout)
    return EXIT_FAILED if report.errors else EXIT_OK


def push(args: argparse.Namespace) -> int:
    """Validate, then upload FILE to the dataset repo ``--repo``; print the commit sha."""
    report = _validate(args, gate=None, suite=None)
    if report.errors:
        _print_report(report, sys.stderr)
        print(f"{args.file}: not uploaded: fix the errors above first", file=sys.stderr)
        return EXIT_FAILED
    for issue in report.warnings:
        print(issue.render(report.path), file=sys.stderr)
    from spacetrain.hub import Hub

    result = push_dataset(
        Hub.from_env(),
        args.file,
        args.repo,
        examples=len(report.examples),
        private=args.private,
        path_in_repo=args.path_in_repo,
    )
    if result.changed:
        print(f"{result.repo}: committed {result.path_in_repo} as {result.sha}", file=sys.stderr)
    else:
        print(f"{result.repo}: {result.path_in_repo} unchanged, no commit made", file=sys.stderr)
    print(result.sha)
    return EXIT_OK
