"""``spacetrain changed``: the adapters a push changed, as JSON for the deploy matrix."""

from __future__ import annotations

import argparse
import json

from spacetrain.changes import changed_adapters
from spacetrain.config import find_root
from spacetrain.errors import EXIT_OK
from spacetrain.inputs import append_github_file


def run(args: argparse.Namespace) -> int:
    """Print ``{"space": [...], "job": [...], "reasons": {...}}``; also set the step's
    ``space`` and ``job`` outputs (JSON lists) when ``$GITHUB_OUTPUT`` is set."""
    changes = changed_adapters(find_root(), args.base, args.head)
    print(json.dumps(changes.to_json(), indent=2))
    append_github_file(
        "GITHUB_OUTPUT",
        f"space={json.dumps(changes.space)}\njob={json.dumps(changes.job)}\n",
    )
    return EXIT_OK
