"""Command-line parsing and the one error boundary: nothing else lives here.

Each command is a ``module:function`` string, imported only when it runs, so
``spacetrain lint`` never pays for torch or gradio. A handler takes the parsed
arguments and returns an exit code; it raises :class:`SpacetrainError` for an
expected failure, which :func:`main` turns into one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from spacetrain import __version__
from spacetrain.errors import SpacetrainError
from spacetrain.inputs import check_environment
from spacetrain.signals import sigterm_as_interrupt

Handler = Callable[[argparse.Namespace], int]


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535 (exit 2 otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535; 0 picks a free one)")
    return value


def _handler(parser: argparse.ArgumentParser, target: str) -> None:
    parser.set_defaults(handler=target)


def _add_lint(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lint", help="check a Space folder against policy/space.yaml")
    p.add_argument("path", nargs="?", default="space", metavar="PATH", help="Space folder")
    p.add_argument("--policy", default=None, help="policy file (default: policy/space.yaml)")
    p.add_argument(
        "--format",
        choices=("text", "github", "json", "sarif"),
        default="text",
        help="output format (default: text)",
    )
    p.add_argument("--output", "-o", default=None, help="write the report here, not stdout")
    p.add_argument(
        "--resolve",
        action="store_true",
        help="also ask pip's resolver whether the pins install together (pins-unresolvable)",
    )
    p.add_argument(
        "--find-links",
        action="append",
        default=[],
        metavar="DIR",
        help="with --resolve: resolve offline against these wheel folders (pip --no-index)",
    )
    p.add_argument("--exit-zero", action="store_true", help="exit 0 even with findings")
    _handler(p, "spacetrain.commands.lint:run")

    r = sub.add_parser("rule", help="explain a lint rule (or list them all)")
    r.add_argument("rule_id", nargs="?", metavar="RULE", help="rule id, e.g. pip-unpinned")
    _handler(r, "spacetrain.commands.lint:explain")


def _add_pins(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pins", help="print the Dockerfile's pins as a pip constraints file")
    p.add_argument("path", nargs="?", default="space/Dockerfile", metavar="PATH")
    _handler(p, "spacetrain.commands.pins:run")


def _add_localhub(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("localhub", help="the offline stand-in for the Hub and Spaces")
    lsub = p.add_subparsers(dest="localhub_command", required=True, metavar="COMMAND")
    s = lsub.add_parser("serve", help="run localhub in the foreground")
    s.add_argument("--root", default=".localhub", help="where repos live (default: .localhub)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=port, default=8765, help="0 picks a free port")
    s.add_argument(
        "--token",
        action="append",
        default=[],
        help="accept only this token (repeatable), as TOKEN[:USER[:ROLE]]: ROLE is write "
        "(default), read, or fine=SCOPE+SCOPE with SCOPE model|dataset|space/NS/NAME or "
        "user/NAME, @read for read-only (a fine-grained token that reads and writes only those); "
        "a token writes "
        "only its user's namespace. Default: any token, anonymous too. LOCALHUB_TOKENS "
        "(comma-separated) keeps tokens off the command line",
    )
    s.add_argument(
        "--admin-token",
        default=None,
        metavar="TOKEN",
        help="with --token: the token the control plane (/_localhub/*: reset, faults, billing, "
        "requests; not health) needs, else 401/403; none closes it. Also LOCALHUB_ADMIN_TOKEN",
    )
    s.add_argument(
        "--faults",
        default=None,
        metavar="JSON|@FILE",
        help="fault rules/actions to apply at start (also: LOCALHUB_FAULTS)",
    )
    s.add_argument(
        "--build-delay", type=float, default=0.0, help="seconds a Space build takes (default 0)"
    )
    s.add_argument("--python", default=None, help="interpreter for Space apps (default: this one)")
    _handler(s, "spacetrain.commands.localhub:serve")


def _add_dataset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="check or upload training data (JSONL)")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    v = dsub.add_parser("validate", help="check a JSONL training file")
    v.add_argument("file", metavar="FILE")
    v.add_argument(
        "--tokenizer", default=None, help="count tokens with this tokenizer (path or id)"
    )
    v.add_argument("--max-length", type=int, default=None, help="flag examples longer than this")
    v.add_argument("--suite", default=None, help="flag eval prompts that leak into the data")
    v.add_argument("--gate", default=None, help="attribution patterns (default: policy/gate.yaml)")
    _handler(v, "spacetrain.commands.dataset:validate")
    u = dsub.add_parser("push", help="validate, then upload as a dataset repo")
    u.add_argument("file", metavar="FILE")
    u.add_argument("--repo", required=True, metavar="ID", help="dataset repo id, e.g. me/kwanzaa")
    u.add_argument("--private", action="store_true")
    u.add_argument("--path-in-repo", default=None, help="file name in the repo (default: FILE's)")
    _handler(u, "spacetrain.commands.dataset:push")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a model (+ adapter) on a suite and apply the gate")
    p.add_argument("--base-model", required=True, metavar="M", help="local dir or Hub id")
    p.add_argument("--base-revision", default=None, metavar="R")
    p.add_argument("--adapter", default=None, metavar="A", help="local dir or Hub id")
    p.add_argument("--adapter-revision", default=None, metavar="R")
    p.add_argument("--suite", required=True, metavar="FILE", help="policy/evals/<adapter>.yaml")
    p.add_argument("--gate", default=None, metavar="FILE", help="default: policy/gate.yaml")
    p.add_argument("--report", default=None, metavar="OUT.json")
    p.add_argument("--markdown", default=None, metavar="OUT.md")
    p.add_argument("--compare-base", action="store_true", help="also score the base alone")
    p.add_argument("--baseline-report", default=None, metavar="FILE")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    _handler(p, "spacetrain.commands.evaluate:run")

    g = sub.add_parser("gate", help="re-apply the thresholds to a saved report")
    g.add_argument("report", metavar="REPORT.json")
    g.add_argument("--gate", default=None, metavar="FILE", help="default: policy/gate.yaml")
    g.add_argument("--baseline-report", default=None, metavar="FILE")
    _handler(g, "spacetrain.commands.evaluate:gate")


def _space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default=None, metavar="ID", help="default: [tool.spacetrain] space")


def _setup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--adapter", default=None, metavar="NAME", help="whose defaults become Space variables"
    )
    p.add_argument(
        "--public", action="store_true", help="create the Space public (default: private)"
    )
    p.add_argument("--private", action="store_true", help=argparse.SUPPRESS)  # the default now


def _state_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state",
        default=None,
        metavar="FILE",
        help="what stages hand on to each other (default: .spacetrain/state.json)",
    )


def _train_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--adapter", default=None, metavar="NAME", help="from [tool.spacetrain.adapters]"
    )
    p.add_argument("--base-model", default=None, metavar="M")
    p.add_argument("--dataset", default=None, metavar="ID")
    p.add_argument("--dataset-revision", default=None, metavar="R")
    p.add_argument("--output-repo", default=None, metavar="ID")
    p.add_argument("--epochs", type=float, default=None, help="checked by space/train.py's rules")
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--run-id", default=None, help="default: a new id (commit sha + time)")
    _backend_arg(p)


def _backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=("space", "job"),
        default=None,
        help="train on the Space's API or as an HF Job in the Space's image "
        "(default: the adapter's backend in [tool.spacetrain])",
    )


def _add_stages(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preflight", help="check token, repos, dataset and space/ before any GPU")
    _space_args(p)
    _state_arg(p)
    p.add_argument("--adapter", default=None, metavar="NAME")
    _handler(p, "spacetrain.commands.space:preflight")

    p = sub.add_parser("space", help="manage the Space itself (space setup)")
    ssub = p.add_subparsers(dest="space_command", required=True, metavar="COMMAND")
    s = ssub.add_parser(
        "setup",
        help="create the Space or settle its secret (SPACE_HF_TOKEN), variables, hardware",
    )
    _space_args(s)
    _setup_args(s)
    _handler(s, "spacetrain.commands.space:setup")

    p = sub.add_parser("sync", help="set up the Space, upload space/ in one commit (or none)")
    _space_args(p)
    _state_arg(p)
    _setup_args(p)
    p.add_argument("--space-dir", default=None, metavar="DIR", help="default: space/")
    _handler(p, "spacetrain.commands.space:sync")

    p = sub.add_parser("wait", help="wait until the Space runs the synced commit")
    _space_args(p)
    _state_arg(p)
    p.add_argument("--commit", default=None, metavar="SHA", help="default: the one sync pushed")
    p.add_argument("--timeout", type=float, default=3600.0, metavar="S")
    _handler(p, "spacetrain.commands.space:wait")

    p = sub.add_parser("train", help="start training through the Space's API and follow it")
    _space_args(p)
    _state_arg(p)
    _train_overrides(p)
    p.add_argument("--timeout", type=float, default=6 * 3600.0, metavar="S")
    p.add_argument("--keep-running", action="store_true", help="do not release the GPU after")
    p.add_argument(
        "--poll-interval", type=float, default=5.0, metavar="S", help="status poll (default 5)"
    )
    _handler(p, "spacetrain.commands.adapter:train")

    p = sub.add_parser("fetch", help="download the adapter at the exact revision training made")
    _state_arg(p)
    p.add_argument("--repo", default=None, metavar="ID", help="default: from the state")
    p.add_argument("--revision", default=None, metavar="SHA", help="default: from the state")
    p.add_argument("--run-id", default=None, help="the run.json it must carry")
    p.add_argument("--dest", default=None, metavar="DIR", help="default: .spacetrain/adapter")
    _handler(p, "spacetrain.commands.adapter:fetch")

    p = sub.add_parser("promote", help="tag the gated adapter revision and publish its report")
    _state_arg(p)
    p.add_argument("--report", default=None, metavar="REPORT.json", help="a passing report")
    p.add_argument("--gate", default=None, metavar="FILE", help="default: policy/gate.yaml")
    p.add_argument("--tag", default=None, help="default: a tag named after the run")
    _handler(p, "spacetrain.commands.adapter:promote")

    p = sub.add_parser(
        "release", help="stop the GPU bill: pause the Space (held while it trains a run not ours)"
    )
    _space_args(p)
    _state_arg(p)
    p.add_argument(
        "--force", action="store_true", help="pause even while it trains a run (that run ends)"
    )
    _handler(p, "spacetrain.commands.space:release")

    p = sub.add_parser("status", help="the Space's stage, commit, files, hardware and billing")
    _space_args(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    _handler(p, "spacetrain.commands.space:status")

    p = sub.add_parser("logs", help="the Space's run (or build) logs")
    _space_args(p)
    p.add_argument("--build", action="store_true", help="build logs instead of run logs")
    p.add_argument("--follow", "-f", action="store_true")
    _handler(p, "spacetrain.commands.space:logs")

    p = sub.add_parser("pipeline", help="preflight, sync, wait, train, fetch, evaluate, promote")
    _space_args(p)
    _state_arg(p)
    _train_overrides(p)
    p.add_argument("--report-dir", default="reports", metavar="DIR")
    p.add_argument("--no-promote", action="store_true", help="stop after the gate")
    _handler(p, "spacetrain.commands.pipeline:run")

    p = sub.add_parser(
        "rehearse", help="the whole pipeline offline, on localhub, with a tiny model"
    )
    p.add_argument("--epochs", type=float, default=None, help="checked by space/train.py's rules")
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--report", default=None, metavar="OUT.json")
    p.add_argument("--markdown", default=None, metavar="OUT.md")
    p.add_argument("--workdir", default=None, metavar="DIR", help="keep everything here")
    _backend_arg(p)
    _handler(p, "spacetrain.commands.rehearse:run")

    p = sub.add_parser(
        "changed", help="the adapters whose inputs changed since a commit (JSON, by backend)"
    )
    p.add_argument("--base", default=None, metavar="SHA", help="default: none (every adapter)")
    p.add_argument("--head", default="HEAD", metavar="REF", help="default: HEAD")
    _handler(p, "spacetrain.commands.changes:run")

    p = sub.add_parser("build", help="docker build + run + health check of space/ (needs Docker)")
    p.add_argument("path", nargs="?", default="space", metavar="PATH")
    p.add_argument("--tag", default="spacetrain-space:smoke")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="health wait")
    _handler(p, "spacetrain.commands.build:run")


def build_parser() -> argparse.ArgumentParser:
    """The whole CLI contract of docs/architecture.md, in one place."""
    parser = argparse.ArgumentParser(
        prog="spacetrain",
        description="CI/CD for QLoRA adapters trained on Hugging Face Docker Spaces.",
    )
    parser.add_argument("--version", action="version", version=f"spacetrain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_lint,
        _add_pins,
        _add_dataset,
        _add_evaluate,
        _add_stages,
        _add_localhub,
    ):
        add(sub)
    return parser


def _resolve(target: str) -> Handler:
    module_name, _, func = target.partition(":")
    return getattr(importlib.import_module(module_name), func)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (only the console script exits)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_environment()  # before a handler's import reads HF_ENDPOINT
        with sigterm_as_interrupt():  # a cancelled CI job still runs every `finally`
            return _resolve(args.handler)(args)
    except SpacetrainError as exc:
        if os.environ.get("SPACETRAIN_DEBUG") == "1":
            traceback.print_exc()
        from spacetrain.redact import mask  # loads space/train.py: only on an error

        print(f"spacetrain {args.command}: error: {mask(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("spacetrain: interrupted", file=sys.stderr)
        return 130


def console_main() -> None:  # pragma: no cover - the console-script shim
    """Entry point of the ``spacetrain`` console script (and ``python -m spacetrain``)."""
    try:
        code = main()
    except KeyboardInterrupt:  # one that lands outside main's boundary: still 130, not -2
        print("spacetrain: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
