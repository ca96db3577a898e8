"""The Dockerfile reader and shell parser over the real-Dockerfile corpus (issue #10).

Not a test (no timed asserts): run it and read the numbers.

    .venv/bin/python tests/benchmarks/bench_lint_corpus.py

It reports the per-file time of ``Dockerfile.parse`` (reader + tree-sitter-bash + pip
grammar) and of a whole in-process lint of the corpus, and, when bashlex is importable
(``pip install bashlex==0.18`` into a scratch target and put it on PYTHONPATH), how
many of the corpus's RUN scripts each parser accepts and how long each takes: the
numbers behind choosing tree-sitter-bash.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from spacetrain import shell
from spacetrain.dockerfile import Dockerfile
from spacetrain.lint import lint_folder, load_policy

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "lint" / "corpus" / "files"
BASE = REPO / "tests" / "lint" / "fixtures" / "base"


def main() -> int:
    files = sorted(CORPUS.iterdir())
    texts = [p.read_bytes() for p in files]
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for raw in texts:
            Dockerfile.parse(raw)
        samples.append((time.perf_counter() - t0) / len(texts))
    print(f"corpus: {len(files)} Dockerfiles, {sum(len(t) for t in texts) / 1024:.0f} KiB")
    print(f"  Dockerfile.parse: {statistics.median(samples) * 1e3:.2f} ms per file (median of 5)")
    policy = load_policy(None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "space"
        shutil.copytree(BASE, root)
        t0 = time.perf_counter()
        for path in files:
            shutil.copyfile(path, root / "Dockerfile")
            lint_folder(root, policy)
        per = (time.perf_counter() - t0) / len(files)
    print(f"  lint_folder (base Space + corpus Dockerfile): {per * 1e3:.2f} ms per file")

    scripts = _shell_texts(files)
    t0 = time.perf_counter()
    errors = sum(shell.parse(s, range(1, s.count("\n") + 2))[1] for s in scripts)
    ts = time.perf_counter() - t0
    print(f"  tree-sitter-bash: {len(scripts)} RUN scripts, {len(scripts) - errors} without an")
    print(f"    error node, {ts * 1e3:.1f} ms in all")
    try:
        import bashlex
    except ImportError:
        print("  bashlex: not importable; skipped")
        return 0
    t0 = time.perf_counter()
    failed = 0
    for script in scripts:
        try:
            bashlex.parse(script)
        except Exception:
            failed += 1
    bl = time.perf_counter() - t0
    print(f"  bashlex: {len(scripts) - failed} parsed, {failed} raised, {bl * 1e3:.1f} ms in all")
    print(f"  ratio bashlex / tree-sitter time: {bl / ts:.1f}x")
    return 0


def _shell_texts(files: list[Path]) -> list[str]:
    """Each RUN's shell text as Dockerfile builds it (flags, blank and comment lines out)."""
    from spacetrain import dockerfile as module

    captured: list[str] = []
    real = module.shell.parse

    def spy(text: str, rows: object) -> object:
        captured.append(text)
        return real(text, rows)  # type: ignore[arg-type]

    module.shell.parse = spy  # type: ignore[assignment]
    try:
        for path in files:
            Dockerfile.read(path)
    finally:
        module.shell.parse = real
    return captured


if __name__ == "__main__":
    sys.exit(main())
