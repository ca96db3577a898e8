"""``spacetrain localhub serve``: run the offline Hub in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from spacetrain.errors import EXIT_OK, InputFileError, UsageError
from spacetrain.inputs import parse_json, read_text, writable_dir
from spacetrain.localhub import LocalHub
from spacetrain.localhub.auth import Token, parse_token
from spacetrain.localhub.errors import HubError

TOKENS_ENV = "LOCALHUB_TOKENS"
ADMIN_ENV = "LOCALHUB_ADMIN_TOKEN"


def _tokens(cli: list[str]) -> dict[str, Token] | None:
    """``TOKEN[:USER[:ROLE]]`` items from --token and LOCALHUB_TOKENS; None = open."""
    items = [t for t in os.environ.get(TOKENS_ENV, "").split(",") if t.strip()] + list(cli)
    if not items:
        return None
    tokens = {}
    for number, item in enumerate(items, 1):
        try:
            token, info = parse_token(item)
        except ValueError as exc:  # never echo the item: it holds a token
            raise UsageError(f"--token / {TOKENS_ENV} item {number}: {exc}") from None
        tokens[token] = info
    return tokens


def _admin_token(cli: str | None, tokens: dict[str, Token] | None) -> str | None:
    """--admin-token or LOCALHUB_ADMIN_TOKEN; only meaningful with tokens."""
    admin = cli or os.environ.get(ADMIN_ENV, "").strip() or None
    if admin and tokens is None:
        raise UsageError(
            "--admin-token guards the control plane of a server with --token; without "
            "--token everything is open"
        )
    return admin


def _faults(value: str | None) -> Any:
    if not value:
        return None
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = read_text(path)
        except InputFileError as exc:
            raise InputFileError(path, f"cannot read the faults file: {exc.detail}") from None
        try:
            return parse_json(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(path, f"not JSON: {exc.msg}", line=exc.lineno) from None
    try:
        return parse_json(value)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--faults: not JSON ({exc.msg} at column {exc.colno})") from None


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; print ``HF_ENDPOINT=<url>`` on stdout once ready."""
    tokens = _tokens(args.token)
    writable_dir(args.root, "--root")  # else the store's mkdir fails as "cannot listen"
    if not args.build_delay >= 0:
        raise UsageError(f"--build-delay must be 0 or more seconds, not {args.build_delay}")
    hub = LocalHub(
        root=args.root,
        port=args.port,
        tokens=tokens,
        admin_token=_admin_token(args.admin_token, tokens),
        host=args.host,
        python=args.python,
        build_delay=args.build_delay,
        faults=_faults(args.faults),
    )
    try:
        hub.start()
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc} (try --port 0)"
        ) from None
    except HubError as exc:  # start() left nothing running
        raise UsageError(f"--faults / LOCALHUB_FAULTS: {exc.message}") from None
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print(f"HF_ENDPOINT={hub.url}", flush=True)
    print(
        f"localhub: serving {Path(args.root).resolve()} at {hub.url}; Ctrl-C stops", file=sys.stderr
    )
    try:
        done.wait()
    finally:
        hub.stop()
    return EXIT_OK
