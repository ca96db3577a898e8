"""``spacetrain lint`` and ``spacetrain rule``: the policy check of a Space folder."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from spacetrain.errors import EXIT_OK, InputFileError, UsageError
from spacetrain.inputs import append_github_file, github_file, writable_file
from spacetrain.lint import exit_code, lint_folder, load_policy, load_rules
from spacetrain.lint.reporters import REPORTERS, explain_rule, render_markdown


def run(args: argparse.Namespace) -> int:
    """Lint ``args.path``; the report goes to stdout (or ``--output``), notes to stderr."""
    if args.output and args.output != "-":
        writable_file(args.output, "--output")  # one sentence for every command's outputs
    if args.format == "github":
        github_file("GITHUB_STEP_SUMMARY")  # a folder there is exit 2 before any linting
    policy = load_policy(args.policy)
    find_links = [str(d) for d in args.find_links]
    for folder in find_links:
        if not Path(folder).is_dir():
            raise InputFileError(folder, "--find-links needs a folder of wheels")
    report = lint_folder(
        args.path, policy, find_links=find_links or None, resolve=args.resolve or bool(find_links)
    )
    text = REPORTERS[args.format](report)
    for note in report.notes:
        print(f"spacetrain lint: note: {note}", file=sys.stderr)
    if args.output and args.output != "-":  # -o - is stdout
        out = Path(args.output)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputFileError(out, f"cannot write the report: {exc.strerror or exc}") from None
        print(f"spacetrain lint: {report.summary()} -> {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.format == "github":
        append_github_file("GITHUB_STEP_SUMMARY", render_markdown(report))
    return exit_code(report, exit_zero=args.exit_zero)


def explain(args: argparse.Namespace) -> int:
    """Print one rule's documentation, or a table of every rule."""
    registry = load_rules()
    if not args.rule_id:
        width = max(len(r) for r in registry)
        for meta in registry.values():
            opt = " (opt-in: --resolve)" if meta.opt_in else ""
            print(f"{meta.id:<{width}}  {meta.severity:<7}  {meta.summary}{opt}")
        return EXIT_OK
    meta = registry.get(args.rule_id)
    if meta is None:
        close = difflib.get_close_matches(args.rule_id, list(registry), n=1)
        maybe = f"; did you mean {close[0]}?" if close else "; `spacetrain rule` lists them"
        raise UsageError(f"unknown rule {args.rule_id!r}{maybe}")
    sys.stdout.write(explain_rule(meta))
    return EXIT_OK
