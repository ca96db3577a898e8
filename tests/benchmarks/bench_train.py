"""Benchmark: space/train.py, packed and unpacked, against a plain TRL SFTTrainer.

Run it by hand (it is not collected by pytest)::

    PYTHONPATH=scripts .venv/bin/python tests/benchmarks/bench_train.py
        [--hidden 256 --layers 4 --examples 160 --epochs 1 --batch-size 8
         --max-length 512 --rounds 3 --threads 1]
        [--variants train-off,train-on,sft-off,sft-on] [--json results.json]

It builds a random Llama with ``build_tiny_llama`` and a chat dataset whose answers
vary from a few words to a few hundred tokens (the case packing is for), then, once per
round, runs each variant in a fresh process, rotating the order from round to round
(the machine is shared and noisy; a ratio taken inside one round is steadier than
rates taken minutes apart):

- ``train-off`` / ``train-on``: space/train.py with ``--packing off`` / ``on`` (the baseline
  is ``train-off``);
- ``train-on1``: packing on, but one packed row per micro-batch (``--batch-size 1
  --grad-accum`` the batch size: the same rows per optimizer step). TRL's padding-free
  collator joins a batch's rows into one sequence; this keeps each one ``--max-length``
  long, so a dense block mask costs max-length squared, not (batch x max-length) squared;
- ``sft-off`` / ``sft-on``: ``sft_baseline.py``, a plain TRL SFTTrainer with the same base,
  4-bit NF4 + LoRA r=16 alpha=32, data, epochs, lr, batch and max length;
- ``sft32-off`` / ``sft32-on``: the same with the LoRA weights cast back to fp32 after
  TRL made them bf16, as train.py does on the CPU (optional: isolates that one change).

Every run counts tokens the same way, per micro-batch as trained: processed = the
``input_ids`` elements (padding included), real = the attention mask's ones, or every
element of a padding-free (packed) batch. Rates divide by the Trainer's own
``train_runtime`` (model loading and tokenizing excluded, identical for every variant);
``real/s warm`` divides by the time from the first logged step to the last one, so the
first step's one-off costs are excluded for every variant alike. Every step is logged
(``--logging-steps 1`` for both), so the final loss is the last step's loss in both, and
the mean loss is the Trainer's ``training_loss``. The table gives medians over rounds
with min-max, the ratio of each variant to ``train-off`` taken within each round, and
for a packed variant its ratio to the same runner unpacked, within each round.

Measured (2 shared CPU cores, load 12-17, defaults, 1 thread): packed/unpacked real
tokens/s 0.59 (0.47-0.65, 5 rounds) for train.py and 0.49 (0.37-0.73) for plain TRL;
``train-on1`` 1.98 (1.93-2.04) x ``train-off``. train.py unpacked and ``sft32-off`` end
at the same loss to the last digit (6.381): only the adapter dtype separates train.py
from plain TRL, and no rate difference between them stands out of the noise.
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
from typing import Any

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from spacetrain.tinymodel import build_tiny_llama

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TRAIN_PY = REPO / "space" / "train.py"
SFT_BASELINE = HERE / "sft_baseline.py"
EVENT_PREFIX = "@@spacetrain "
VARIANTS = ("train-off", "train-on", "train-on1", "sft-off", "sft-on", "sft32-off", "sft32-on")
BASELINE = "train-off"
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


def _run(cmd: list[str], threads: int) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{Path(cmd[1]).name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def _warm_rate(log: list[list[float]]) -> float | None:
    """Real tokens per second from the first logged step to the last: ``[step, t, tokens]``."""
    if len(log) < 2 or log[-1][1] <= log[0][1]:
        return None
    return (log[-1][2] - log[0][2]) / (log[-1][1] - log[0][1])


def run_train_py(
    model: Path, data: Path, out: Path, packing: str, args: argparse.Namespace
) -> dict:
    batch, accum = (1, args.batch_size) if packing == "on1" else (args.batch_size, 1)
    packing = packing.removesuffix("1")
    cmd = [
        sys.executable, str(TRAIN_PY), "--base-model", str(model), "--dataset", str(data),
        "--output-dir", str(out), "--no-push", "--epochs", str(args.epochs),
        "--batch-size", str(batch), "--grad-accum", str(accum),
        "--max-length", str(args.max_length), "--learning-rate", str(args.learning_rate),
        "--packing", packing, "--seed", "0", "--logging-steps", str(args.logging_steps),
    ]  # fmt: skip
    stdout = _run(cmd, args.threads)
    events = [
        json.loads(line[len(EVENT_PREFIX) :])
        for line in stdout.splitlines()
        if line.startswith(EVENT_PREFIX)
    ]
    steps = [e for e in events if e["event"] == "step"]
    manifest = json.loads((out / "run.json").read_text())
    return {
        "steps": manifest["steps"],
        "train_runtime_s": manifest["train_runtime_s"],
        "real": manifest["tokens"]["real"],
        "processed": manifest["tokens"]["processed"],
        "trl_num_tokens": steps[-1]["tokens"] if steps else None,
        "final_loss": manifest["final_loss"],
        "train_loss": manifest["train_loss"],
        "loss_mode": manifest["loss_mode"],
        "packing": manifest["packing"]["enabled"],
        "adapter_dtype": "float32",  # train.py casts the adapters to fp32 on the CPU
        "log": [[s["step"], s["elapsed_s"], s["tokens"]] for s in steps],
    }


def run_sft(model: Path, data: Path, out: Path, variant: str, args: argparse.Namespace) -> dict:
    result = out / "result.json"
    cmd = [
        sys.executable, str(SFT_BASELINE), "--base-model", str(model), "--dataset", str(data),
        "--output-dir", str(out), "--result", str(result), "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
        "--learning-rate", str(args.learning_rate), "--seed", "0",
        "--logging-steps", str(args.logging_steps), "--packing", variant.rsplit("-", 1)[1],
    ]  # fmt: skip
    if variant.startswith("sft32"):
        cmd.append("--fp32-adapters")
    _run(cmd, args.threads)
    raw = json.loads(result.read_text())
    return {
        "steps": raw["steps"],
        "train_runtime_s": raw["train_runtime_s"],
        "real": raw["tokens"]["real"],
        "processed": raw["tokens"]["processed"],
        "trl_num_tokens": raw["tokens"]["trl_num_tokens"],
        "final_loss": raw["final_loss"],
        "train_loss": raw["train_loss"],
        "loss_mode": "assistant_only",
        "packing": raw["packing"],
        "adapter_dtype": raw["adapter_dtype"],
        "attn_implementation": raw["attn_implementation"],
        "log": raw["log"],
    }


def run_variant(model: Path, data: Path, out: Path, variant: str, args: argparse.Namespace) -> dict:
    if variant.startswith("train-"):
        run = run_train_py(model, data, out, variant.removeprefix("train-"), args)
    else:
        run = run_sft(model, data, out, variant, args)
    runtime = run["train_runtime_s"]
    run["real_per_s"] = run["real"] / runtime
    run["processed_per_s"] = run["processed"] / runtime
    run["real_per_s_warm"] = _warm_rate(run["log"])
    return run


def _spread(cell: dict[str, float | None]) -> str:
    """``median (min-max)`` of a summary cell, or ``-`` when it has no value."""
    if cell["median"] is None:
        return "-"
    return f"{cell['median']:,.0f} ({cell['min']:,.0f}-{cell['max']:,.0f})"


def _ratios(ratios: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "per_round": ratios,
    }


def summarize(results: dict[str, list[dict]]) -> dict[str, Any]:
    """Medians, min-max and the within-round ratio to the baseline, per variant."""
    summary: dict[str, Any] = {}
    for variant, runs in results.items():
        row: dict[str, Any] = {"runs": len(runs)}
        for key in ("real_per_s", "processed_per_s", "real_per_s_warm", "train_runtime_s"):
            values = [r[key] for r in runs if r[key] is not None]
            row[key] = {
                "median": statistics.median(values) if values else None,
                "min": min(values, default=None),
                "max": max(values, default=None),
            }
        first = runs[0]
        for key in ("steps", "real", "processed", "adapter_dtype", "packing", "loss_mode"):
            row[key] = first[key]
        row["final_loss"] = [r["final_loss"] for r in runs]
        row["train_loss"] = [r["train_loss"] for r in runs]
        if BASELINE in results:
            ratios = [
                r["real_per_s"] / b["real_per_s"]
                for r, b in zip(runs, results[BASELINE], strict=False)
            ]
            row["ratio_real_per_s"] = _ratios(ratios)
        unpacked = variant.rstrip("1").removesuffix("-on") + "-off"
        if variant.rstrip("1").endswith("-on") and unpacked in results:
            ratios = [
                r["real_per_s"] / b["real_per_s"]
                for r, b in zip(runs, results[unpacked], strict=False)
            ]
            row["packing_ratio_real_per_s"] = _ratios(ratios)
        summary[variant] = row
    return summary


def _ratio_text(ratio: dict[str, Any] | None) -> str:
    if not ratio:
        return "-"
    return f"{ratio['median']:.2f} ({', '.join(f'{x:.2f}' for x in ratio['per_round'])})"


def markdown(summary: dict[str, Any], args: argparse.Namespace, facts: dict[str, Any]) -> str:
    lines = [
        f"{args.examples} chats, {facts['real_per_epoch']} real tokens an epoch, hidden "
        f"{args.hidden} x {args.layers} layers, batch {args.batch_size}, max length "
        f"{args.max_length}, {args.epochs:g} epoch(s), {args.threads} thread(s); "
        f"median (min-max) of {args.rounds} round(s)",
        "",
        "| variant | packing | adapters | steps | real tok | processed tok | real tok/s "
        "| processed tok/s | real tok/s warm | x train-off (per round) "
        "| x same runner unpacked (per round) | final loss "
        "| mean loss | train s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, row in summary.items():
        lines.append(
            f"| {variant} | {'on' if row['packing'] else 'off'} | {row['adapter_dtype']} "
            f"| {row['steps']} | {row['real']:,} | {row['processed']:,} "
            f"| {_spread(row['real_per_s'])} | {_spread(row['processed_per_s'])} "
            f"| {_spread(row['real_per_s_warm'])} | {_ratio_text(row.get('ratio_real_per_s'))} "
            f"| {_ratio_text(row.get('packing_ratio_real_per_s'))} "
            f"| {statistics.median(row['final_loss']):.3f} "
            f"| {statistics.median(row['train_loss']):.3f} "
            f"| {row['train_runtime_s']['median']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--examples", type=int, default=160)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--logging-steps", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--variants",
        default="train-off,train-on,sft-off,sft-on",
        help=f"comma-separated, of {', '.join(VARIANTS)}",
    )
    parser.add_argument("--json", type=Path, help="also write the runs and the summary here")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        parser.error(f"--variants: unknown {', '.join(unknown) or '(none)'}; use {VARIANTS}")

    results: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "train.jsonl"
        corpus = make_dataset(data, args.examples, seed=0)
        model = build_tiny_llama(
            root / "model", corpus, hidden_size=args.hidden, num_layers=args.layers
        )
        for round_ in range(args.rounds):
            shift = round_ % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                run = run_variant(model, data, root / f"{variant}{round_}", variant, args)
                results[variant].append(run)
                print(
                    f"round {round_} {variant:10}: {run['real_per_s']:8.0f} real tok/s "
                    f"({run['real']} real / {run['processed']} processed), "
                    f"{run['steps']} steps, {run['train_runtime_s']:.1f}s, "
                    f"final loss {run['final_loss']:.3f}",
                    flush=True,
                )

    real_counts = {v: runs[0]["real"] for v, runs in results.items()}
    facts = {
        "real_per_epoch": round(next(iter(real_counts.values())) / args.epochs),
        "same_real_tokens": len(set(real_counts.values())) == 1,
    }
    summary = summarize(results)
    print("\n" + markdown(summary, args, facts))
    if not facts["same_real_tokens"]:
        print(f"\nwarning: the variants trained on different real token counts: {real_counts}")
    if args.json:
        payload = {"args": vars(args) | {"json": str(args.json)}, "facts": facts}
        payload |= {"summary": summary, "runs": results}
        args.json.write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
