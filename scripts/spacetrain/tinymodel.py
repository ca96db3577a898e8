"""A tiny random-weight Llama and a tokenizer trained on a given corpus.

Tests and the offline rehearsal need a real ``LlamaForCausalLM`` that loads in
4-bit NF4 through bitsandbytes, trains with TRL and generates in about a second,
without downloading anything. Its tokenizer is byte-level BPE trained on the
caller's text (so any answer round-trips exactly) and carries a chat template
with ``{% generation %}`` markers, so ``assistant_only_loss`` works.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)

# Each turn is "<|role|>\n{content}</s>\n". The assistant's content *and* its end token
# sit inside {% generation %}, so assistant-only loss also teaches the model to stop.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}"
    "{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# The final RMSNorm gives hidden states of RMS 1, so with the default init (std 0.02)
# and a frozen lm_head no logit can exceed about 0.02 * hidden_size: a LoRA adapter
# could never make this model confident of anything. A 10x larger lm_head lets a
# rehearsal adapter memorise its answers (20 Q/A pairs reproduced greedily).
_LM_HEAD_GAIN = 10.0


def build_tiny_llama(
    out_dir: Path,
    corpus: Sequence[str],
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on ``corpus``, build a random tiny Llama, save both to ``out_dir``.

    ``vocab_size`` is an upper bound: a small corpus yields fewer BPE merges. The
    result is deterministic for a given ``corpus`` and ``seed``. Returns ``out_dir``.
    """
    if not corpus:
        raise ValueError("corpus must hold at least one text")
    # Heads of 16 dims; every Linear weight is then a whole number of bitsandbytes'
    # 64-value 4-bit blocks, so each one really becomes a Linear4bit.
    if hidden_size % 16 or hidden_size < 32:
        raise ValueError("hidden_size must be a multiple of 16 and at least 32")
    if num_layers < 1:
        raise ValueError("num_layers must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(corpus, vocab_size)
    tokenizer.save_pretrained(out_dir)
    model = _build_model(tokenizer, hidden_size=hidden_size, num_layers=num_layers, seed=seed)
    _save_quietly(model, out_dir)
    _write_readme(out_dir, len(tokenizer), hidden_size, num_layers, seed)
    return out_dir


def _train_tokenizer(corpus: Sequence[str], vocab_size: int) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # trim_offsets=False keeps character offsets exact, which the assistant mask needs.
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, 256 + len(SPECIAL_TOKENS)),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    backend.train_from_iterator(list(corpus), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=2048,
    )


def _build_model(tokenizer: object, *, hidden_size: int, num_layers: int, seed: int) -> object:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    heads = max(2, hidden_size // 16)
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        dtype="float32",
    )
    # The CPU generator alone: weights are initialised on the CPU, and the caller's
    # global random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        with torch.no_grad():
            model.lm_head.weight.mul_(_LM_HEAD_GAIN)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    return model


def _save_quietly(model: object, out_dir: Path) -> None:
    """save_pretrained without its progress bar (noise in every test log)."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        model.save_pretrained(out_dir)  # type: ignore[attr-defined]
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def _write_readme(out_dir: Path, vocab: int, hidden: int, layers: int, seed: int) -> None:
    facts = {"vocab_size": vocab, "hidden_size": hidden, "num_layers": layers, "seed": seed}
    (out_dir / "README.md").write_text(
        "# tiny-llama (random weights)\n\n"
        "Generated by `spacetrain.tinymodel.build_tiny_llama` for tests; it knows nothing.\n\n"
        f"```json\n{json.dumps(facts, indent=2)}\n```\n",
        encoding="utf-8",
    )


__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "build_tiny_llama"]
