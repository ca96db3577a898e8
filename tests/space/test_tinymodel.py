"""spacetrain.tinymodel: deterministic, round-trips its corpus, marks assistant turns, 4-bit."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from spacetrain.tinymodel import build_tiny_llama

from .support import QA

CORPUS = [f"{q} {a}" for q, a in QA]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.e2e  # imports torch or gradio in this process: the model stack
def test_same_seed_same_files_other_seed_other_weights(tmp_path: Path) -> None:
    start = time.monotonic()
    a = build_tiny_llama(tmp_path / "a", CORPUS, seed=3)
    print(f"\nbuild_tiny_llama: {time.monotonic() - start:.2f}s (first call includes imports)")
    b = build_tiny_llama(tmp_path / "b", CORPUS, seed=3)
    c = build_tiny_llama(tmp_path / "c", CORPUS, seed=4)
    assert a == tmp_path / "a"
    assert _digests(a) == _digests(b)
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(
        _digests(a)
    )
    assert _digests(a)["model.safetensors"] != _digests(c)["model.safetensors"]
    assert _digests(a)["tokenizer.json"] == _digests(c)["tokenizer.json"]  # seed: weights only


def test_tokenizer_round_trips_and_marks_assistant_turns(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert len(tok) <= 512
    for text in [*CORPUS, "Ünïcode ✓ and text it never saw: 12345"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text

    answer = QA[0][1]
    messages = [{"role": "user", "content": QA[0][0]}, {"role": "assistant", "content": answer}]
    out = tok.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    # Exactly the answer and the end-of-turn token: the model learns what to say and to stop.
    assert tok.decode(masked) == answer + "</s>"

    prompt = tok.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=False)
    assert tok.apply_chat_template(messages, tokenize=False).startswith(prompt)


def test_linear_layers_load_in_4bit(tiny_model: Path) -> None:
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model = AutoModelForCausalLM.from_pretrained(
        tiny_model,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        ),
    )
    linears = {n: type(m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    four_bit = [n for n, t in linears.items() if issubclass(t, bnb.nn.Linear4bit)]
    assert len(four_bit) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    assert set(linears) - set(four_bit) == {"lm_head"}
    with torch.no_grad():
        logits = model(torch.tensor([[1, 5, 9]])).logits
    assert logits.shape[-1] == model.config.vocab_size
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"corpus": []}, "corpus must hold at least one text"),
        ({"corpus": ["x"], "hidden_size": 40}, "hidden_size must be a multiple of 16"),
        ({"corpus": ["x"], "num_layers": 0}, "num_layers must be at least 1"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_tiny_llama(tmp_path / "m", **kwargs)
