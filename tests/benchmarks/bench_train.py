"""Benchmark: space/train.py with and without packing, real tokens per second on the CPU.

Run it by hand (it is not collected by pytest)::

    .venv/bin/python tests/benchmarks/bench_train.py [--hidden 256 --layers 4]
        [--examples 160 --batch-size 8 --max-length 512 --rounds 3 --threads 1]

It builds a random Llama with ``build_tiny_llama`` and a chat dataset whose answers
vary from a few words to a few hundred tokens (the case packing is for), then runs
train.py (4-bit NF4 base, LoRA r=16 on all linear layers) once per round with
``--packing off`` (the baseline) and ``--packing on``, alternating the order. It reports
the median of real tokens per second of training (``run.json`` ``tokens.real_per_s``),
processed tokens (real + padding), steps and the ratio to the baseline. Both runs see
the same examples, epochs and seed; packing changes the number of optimizer steps
(rows are fuller), which is why the comparison is per real token, not per step.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from spacetrain.tinymodel import build_tiny_llama

REPO = Path(__file__).resolve().parents[2]
TRAIN_PY = REPO / "space" / "train.py"
WORDS = [
    "unity", "self", "determination", "collective", "work", "responsibility", "cooperative",
    "economics", "purpose", "creativity", "faith", "candle", "kinara", "harvest", "community",
    "family", "village", "history", "language", "principle", "celebration", "gift", "feast",
    "light", "seven", "days", "december", "first", "fruits",
]  # fmt: skip


def make_dataset(path: Path, examples: int, seed: int) -> list[str]:
    """Chats whose answer lengths spread over two orders of magnitude."""
    rng = random.Random(seed)
    corpus, lines = [], []
    for i in range(examples):
        question = f"Question {i}: tell me about {rng.choice(WORDS)}?"
        answer = " ".join(rng.choice(WORDS) for _ in range(int(rng.lognormvariate(3.5, 0.9))))
        corpus.append(f"{question} {answer}")
        chat = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        lines.append(json.dumps({"messages": chat}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return corpus


def train_once(model: Path, data: Path, out: Path, packing: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, str(TRAIN_PY), "--base-model", str(model), "--dataset", str(data),
        "--output-dir", str(out), "--no-push", "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--grad-accum", "1",
        "--max-length", str(args.max_length), "--packing", packing, "--seed", "0",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"train.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads((out / "run.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--examples", type=int, default=160)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "train.jsonl"
        corpus = make_dataset(data, args.examples, seed=0)
        model = build_tiny_llama(
            root / "model", corpus, hidden_size=args.hidden, num_layers=args.layers
        )
        results: dict[str, list[dict]] = {"off": [], "on": []}
        for round_ in range(args.rounds):
            order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
            for packing in order:
                run = train_once(model, data, root / f"{packing}{round_}", packing, args)
                results[packing].append(run)
                print(
                    f"round {round_} packing {packing:3}: {run['tokens']['real_per_s']:8.0f} "
                    f"real tok/s, {run['steps']} steps, {run['train_runtime_s']:.1f}s",
                    flush=True,
                )

    def median(packing: str, key: str) -> float:
        return statistics.median(r["tokens"][key] for r in results[packing])

    first = results["off"][0]
    print(
        f"\n{args.examples} chats, {first['tokens']['per_epoch']} real tokens an epoch, "
        f"hidden {args.hidden} x {args.layers} layers, batch {args.batch_size}, "
        f"max length {args.max_length}, {args.threads} thread(s), median of {args.rounds}"
    )
    base = median("off", "real_per_s")
    for packing in ("off", "on"):
        run = results[packing][0]
        real, processed = run["tokens"]["real"], run["tokens"]["processed"]
        rate = median(packing, "real_per_s")
        print(
            f"packing {packing:3}: {rate:8.0f} real tok/s  x{rate / base:4.2f}  "
            f"processed {processed} for {real} real ({1 - real / processed:.0%} padding), "
            f"{run['steps']} steps, final loss {run['final_loss']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
