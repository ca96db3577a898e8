"""Benchmark: the shipped evaluation path against a naive one, on the same suite.

Run it by hand (it is not collected by pytest)::

    .venv/bin/python tests/benchmarks/bench_evaluate.py [--rounds 3] [--hidden 256 --layers 4]
    .venv/bin/python tests/benchmarks/bench_evaluate.py --base-model DIR --adapter DIR

shipped: fp32, LoRA merged into the weights, left-padded batches of 8 sorted by
length, KV cache (what ``spacetrain evaluate`` does on a CPU).
naive:   fp32, LoRA left unmerged (PEFT wrapper), one prompt at a time, suite order.

Both answer every prompt of ``policy/evals/kwanzaa.yaml`` greedily; the benchmark
fails unless their answers are identical. Every time is the median of ``--rounds``
after one warm-up, in this process, so the ratio compares like with like. Without
``--base-model`` it builds a random Llama with ``build_tiny_llama`` and a random
(non-zero) LoRA adapter r=16 on all linear layers, so every prompt runs the full
``max_new_tokens``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from spacetrain.evaluate.generate import Generator, resolve
from spacetrain.evaluate.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "policy" / "evals" / "kwanzaa.yaml"
DATA = REPO / "scripts" / "spacetrain" / "data" / "kwanzaa.jsonl"


def build_pair(root: Path, hidden: int, layers: int) -> tuple[Path, Path]:
    """A random base model and a random non-zero LoRA adapter for it."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from spacetrain.tinymodel import build_tiny_llama

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    corpus = [m["content"] for r in rows for m in r["messages"]]
    base = build_tiny_llama(root / "base", corpus, hidden_size=hidden, num_layers=layers,
                            vocab_size=2048)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(0)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                        init_lora_weights=False, task_type="CAUSAL_LM")  # fmt: skip
    adapter = root / "adapter"
    get_peft_model(model, config).save_pretrained(adapter)
    return base, adapter


def interleaved(
    configs: list[tuple[str, Callable[[], list[str]]]], rounds: int
) -> dict[str, tuple[float, list[str]]]:
    """Median seconds per config; rounds interleave the configs so that load from other
    processes on a shared machine falls on all of them alike."""
    for _, fn in configs:
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name, _ in configs}
    outputs: dict[str, list[str]] = {}
    for _ in range(rounds):
        for name, fn in configs:
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), outputs[name]) for name, _ in configs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", type=Path)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    suite = load_suite(SUITE)
    conversations = suite.conversations()
    max_new = suite.generation.max_new_tokens
    with tempfile.TemporaryDirectory() as tmp:
        if args.base_model and args.adapter:
            base_dir, adapter_dir = args.base_model, args.adapter
        else:
            base_dir, adapter_dir = build_pair(Path(tmp), args.hidden, args.layers)
        base, adapter = resolve(str(base_dir)), resolve(str(adapter_dir), adapter=True)

        start = time.perf_counter()
        shipped = Generator.load(base)
        shipped.apply_adapter(adapter, merge=True)
        load_merged = time.perf_counter() - start
        start = time.perf_counter()
        naive = Generator.load(base)
        naive.apply_adapter(adapter, merge=False)
        load_unmerged = time.perf_counter() - start

        params = sum(p.numel() for p in shipped.model.parameters())
        configs: list[tuple[str, Callable[[], list[str]]]] = [
            ("naive: unmerged, batch 1", lambda: naive.generate(
                conversations, max_new_tokens=max_new, batch_size=1, sort_by_length=False)),
            ("unmerged, batched", lambda: naive.generate(
                conversations, max_new_tokens=max_new, batch_size=args.batch_size)),
            ("merged, batch 1", lambda: shipped.generate(
                conversations, max_new_tokens=max_new, batch_size=1, sort_by_length=False)),
            ("shipped: merged, batched", lambda: shipped.generate(
                conversations, max_new_tokens=max_new, batch_size=args.batch_size)),
        ]  # fmt: skip
        print(
            f"model: {params / 1e6:.1f}M parameters, {len(conversations)} prompts x "
            f"{max_new} new tokens, batch {args.batch_size}, torch threads "
            f"{torch.get_num_threads()}, median of {args.rounds}"
        )
        print(f"load + merge {load_merged:.2f} s; load unmerged {load_unmerged:.2f} s")
        results = interleaved(configs, args.rounds)
        baseline_s, baseline_out = results[configs[0][0]]
        print(f"{'config':<28} {'seconds':>8} {'speed-up':>9}  outputs")
        ok = True
        for name, (seconds, out) in results.items():
            same = out == baseline_out
            ok &= same
            print(f"{name:<28} {seconds:8.2f} {baseline_s / seconds:8.2f}x  "
                  f"{'identical' if same else 'DIFFERENT'}")  # fmt: skip
        if not ok:
            print("FAIL: the configurations did not give identical answers", file=sys.stderr)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
