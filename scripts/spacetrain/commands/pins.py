"""``spacetrain pins``: print the Dockerfile's pins as a pip constraints file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spacetrain.dockerfile import Dockerfile
from spacetrain.errors import EXIT_OK, InputFileError
from spacetrain.pins import render_constraints


def run(args: argparse.Namespace) -> int:
    """Print the constraints to stdout; notes on unpinned packages go to stderr."""
    path = Path(args.path)
    if path.is_dir():
        path = path / "Dockerfile"
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "no such file"
        raise InputFileError(path, f"{what}; pass the Space's Dockerfile")
    text, notes = render_constraints(Dockerfile.read(path))
    for note in notes:
        print(note, file=sys.stderr)
    sys.stdout.write(text)
    return EXIT_OK
