"""Fixtures for the evaluation tests: a tiny model built on the demo data, a random adapter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from eval_support import ATTRIBUTION, demo_rows


@pytest.fixture(scope="session")
def eval_model(tiny_llama: Callable[[Sequence[str]], Path]) -> Path:
    """A tiny random Llama whose tokenizer learned the demo data's text (and one attribution);
    built once per run, read-only."""
    corpus = [m["content"] for row in demo_rows() for m in row["messages"]]
    corpus += [f"{ATTRIBUTION}."] * 3
    return tiny_llama(corpus)


@pytest.fixture(scope="session")
def random_adapter(eval_model: Path, build_once: Callable[..., Path]) -> Path:
    """An untrained LoRA adapter with non-zero weights, so merging really changes the model
    (built once per run, read-only)."""

    def build(out: Path) -> None:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(eval_model, dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            config = LoraConfig(
                r=8,
                lora_alpha=16,
                target_modules="all-linear",
                init_lora_weights=False,
                task_type="CAUSAL_LM",
            )
            get_peft_model(model, config).save_pretrained(out)

    return build_once(f"random-adapter-of-{eval_model.name}", build)
