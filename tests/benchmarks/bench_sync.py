"""Benchmark: `spacetrain sync` against ``HfApi.upload_folder`` (the baseline), on localhub.

Run it by hand (it is not collected by pytest)::

    .venv/bin/python tests/benchmarks/bench_sync.py [--rounds 5]

Three cases on the real ``space/`` folder (5 files): the first upload to a new Space,
a re-sync of the unchanged folder, and a sync after one file changed. Both sides end
with the same files on the Space. Each number is the median of ``--rounds`` (a fresh
Space per round), with the requests each side made; ratios are sync / upload_folder in
the same process. What matters most is the unchanged row: the number of requests, and
that neither side commits (no rebuild of the Space).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from huggingface_hub import HfApi

from spacetrain.hub import Hub
from spacetrain.localhub import LocalHub
from spacetrain.stages.sync import SyncOptions, sync

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hf_benchmark"


def _timed(hub: LocalHub, fn: Callable[[], object]) -> tuple[float, int, int]:
    before = len(hub.requests)
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    made = hub.requests[before:]
    commits = sum(1 for r in made if r["method"] == "POST" and "/commit/" in r["path"])
    return elapsed, len(made), commits


def _run(hub: LocalHub, folder: Path, space: str, side: str) -> list[tuple[float, int, int]]:
    api = HfApi(endpoint=hub.url, token=TOKEN)
    if side == "sync":
        options = SyncOptions(space=space, space_dir=folder, source="0" * 40)

        def push() -> object:
            return sync(Hub(api), options)

    else:

        def push() -> object:
            api.create_repo(space, repo_type="space", space_sdk="docker", exist_ok=True)
            return api.upload_folder(
                repo_id=space,
                repo_type="space",
                folder_path=folder,
                delete_patterns="*",
                commit_message="upload",
            )

    rows = [_timed(hub, push), _timed(hub, push)]
    app = folder / "app.py"
    app.write_text(app.read_text() + "\n# changed\n")
    rows.append(_timed(hub, push))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    names = ("first upload", "unchanged re-sync", "one file changed")
    results: dict[str, list[list[tuple[float, int, int]]]] = {"upload_folder": [], "sync": []}
    with tempfile.TemporaryDirectory() as tmp, LocalHub(root=Path(tmp) / "hub", port=0) as hub:
        for i in range(args.rounds):
            for side in ("upload_folder", "sync"):  # interleaved: the same machine load
                folder = Path(tmp) / f"{side}-{i}"
                shutil.copytree(REPO / "space", folder)
                sys.stderr.flush()
                results[side].append(_run(hub, folder, f"bench/{side}-{i}", side))
                hub.reset()
    print(f"{'case':<20} {'upload_folder s':>16} {'req':>4} {'commits':>7} "
          f"{'sync s':>8} {'req':>4} {'commits':>7} {'time ratio':>10}")  # fmt: skip
    for index, name in enumerate(names):
        row = []
        for side in ("upload_folder", "sync"):
            runs = [r[index] for r in results[side]]
            row.append(
                (
                    statistics.median(t for t, _, _ in runs),
                    statistics.median(n for _, n, _ in runs),
                    statistics.median(c for _, _, c in runs),
                )
            )
        (bt, bn, bc), (st, sn, sc) = row
        print(
            f"{name:<20} {bt:>16.3f} {bn:>4.0f} {bc:>7.0f} {st:>8.3f} {sn:>4.0f} {sc:>7.0f} "
            f"{st / bt:>10.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
