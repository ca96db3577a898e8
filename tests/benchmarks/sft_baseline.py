"""Plain TRL ``SFTTrainer`` QLoRA run: the baseline ``bench_train.py`` holds train.py to.

Nothing of spacetrain: transformers + bitsandbytes + peft + TRL as their docs show
(``BitsAndBytesConfig``, ``LoraConfig``, ``SFTConfig``, ``SFTTrainer``), with the
hyper-parameters train.py uses on the CPU spelled out (fp32 compute, no bf16, no
activation checkpointing, cosine schedule, 3% warm-up, LoRA r=16 alpha=32 dropout 0.05
on all linear layers, assistant-only loss). What it adds only measures: the collator
is wrapped to count processed and real tokens per batch (train.py counts the same way,
in ``compute_loss``), and a callback stamps the time of each logged step. It writes
one JSON object to ``--result``. Run it through ``bench_train.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--dataset", required=True, help="a JSONL file of chats")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--logging-steps", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--packing", choices=("on", "off"), default="off")
    parser.add_argument(
        "--fp32-adapters",
        action="store_true",
        help="cast the LoRA weights back to fp32 as train.py does on the CPU "
        "(plain TRL leaves them in bf16 on a quantized base)",
    )
    args = parser.parse_args()

    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        TrainerCallback,
        set_seed,
    )
    from trl import SFTConfig, SFTTrainer

    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    model = AutoModelForCausalLM.from_pretrained(
        args.base_model,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        ),
        dtype=torch.float32,
    )
    dataset = load_dataset("json", data_files=args.dataset, split="train")
    config = SFTConfig(
        output_dir=str(args.output_dir),
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        warmup_steps=0.03,
        lr_scheduler_type="cosine",
        max_length=args.max_length,
        packing=args.packing == "on",
        assistant_only_loss=True,
        gradient_checkpointing=False,
        bf16=False,
        use_cpu=True,
        seed=args.seed,
        data_seed=args.seed,
        logging_steps=args.logging_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    peft_config = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        target_modules="all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )

    stamps: list[tuple[int, float, int, float]] = []  # step, time, TRL's num_tokens, loss

    class Stamp(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                point = (state.global_step, time.monotonic(), int(logs.get("num_tokens", 0)))
                stamps.append((*point, float(logs["loss"])))

    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[Stamp()],
    )
    if args.fp32_adapters:
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    adapter_dtype = str(next(p for p in trainer.model.parameters() if p.requires_grad).dtype)

    counts = {"processed": 0, "real": 0}
    collate = trainer.data_collator

    def counting_collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(examples)
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        counts["processed"] += int(ids.numel())
        counts["real"] += int(mask.sum()) if mask is not None else int(ids.numel())
        return batch

    trainer.data_collator = counting_collate
    t0 = time.monotonic()
    result = trainer.train()
    runtime = float(result.metrics["train_runtime"])
    out = {
        "runner": "sft",
        "packing": args.packing == "on",
        "padding_free": bool(trainer.padding_free),
        "attn_implementation": trainer.model.config._attn_implementation,
        "adapter_dtype": adapter_dtype.removeprefix("torch."),
        "steps": int(result.global_step),
        "train_loss": float(result.training_loss),
        "final_loss": stamps[-1][3] if stamps else None,
        "train_runtime_s": round(runtime, 2),
        "tokens": {
            "real": counts["real"],
            "processed": counts["processed"],
            "trl_num_tokens": stamps[-1][2] if stamps else None,
        },
        # step, seconds since train() was called, TRL's running num_tokens
        "log": [[s, round(t - t0, 3), n] for s, t, n, _ in stamps],
    }
    args.result.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
