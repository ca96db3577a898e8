"""``spacetrain build``: the image smoke of a Space folder (needs a Docker engine).

Exit codes: 0 the app answered 200; 1 the build failed, the app never answered or its
container exited; 2 a bad PATH or ``app_port``; 3 no docker CLI or no engine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spacetrain.build import smoke
from spacetrain.errors import EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Build, run as uid 1000, wait for 200; progress to stderr, the verdict to stdout."""
    result = smoke(Path(args.path), tag=args.tag, timeout=args.timeout)
    print(result.summary())
    return EXIT_OK
