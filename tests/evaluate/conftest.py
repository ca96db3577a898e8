"""Fixtures for the evaluation tests: a tiny model built on the demo data, a random adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_support import ATTRIBUTION, demo_rows


@pytest.fixture(scope="session")
def eval_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama whose tokenizer learned the demo data's text (and one attribution)."""
    from spacetrain.tinymodel import build_tiny_llama

    corpus = [m["content"] for row in demo_rows() for m in row["messages"]]
    corpus += [f"{ATTRIBUTION}."] * 3
    return build_tiny_llama(tmp_path_factory.mktemp("eval-model") / "model", corpus)


@pytest.fixture(scope="session")
def random_adapter(eval_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained LoRA adapter with non-zero weights, so merging really changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("random-adapter") / "adapter"
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
    return out
