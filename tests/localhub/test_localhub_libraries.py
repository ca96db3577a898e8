"""The libraries the pipeline drives load from localhub as they would from the Hub.

datasets, transformers and peft resolve ``owner/name`` through huggingface_hub's
module-level endpoint, read when it was imported; ``use_endpoint`` re-points it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from spacetrain.localhub import LocalHub, use_endpoint

from .conftest import TOKEN

pytestmark = pytest.mark.e2e

WORDS = ["<unk>", "<pad>", "<s>", "</s>", "hello", "world", "umoja", "means", "unity"]


def _tiny_model_dir(root: Path) -> Path:
    """A random 1-layer LlamaForCausalLM and a word-level tokenizer, saved as on the Hub."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    model = LlamaForCausalLM(config)
    tokenizer.save_pretrained(root)
    model.save_pretrained(root)
    return root


def test_datasets_load_dataset_from_a_dataset_repo(
    api: HfApi, hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "ds-cache"))
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(5)]
    api.create_repo("alice/ds", repo_type="dataset")
    api.upload_file(
        path_or_fileobj="".join(json.dumps(r) + "\n" for r in rows).encode(),
        path_in_repo="train.jsonl",
        repo_id="alice/ds",
        repo_type="dataset",
    )
    with use_endpoint(hub.url):
        ds = datasets.load_dataset("alice/ds", split="train", token=TOKEN)
    assert ds.num_rows == 5
    assert ds[3]["messages"][0]["content"] == "q3"


def test_transformers_and_peft_load_from_pinned_revisions(
    api: HfApi, hub: LocalHub, tmp_path: Path
) -> None:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = _tiny_model_dir(tmp_path / "tiny")
    api.create_repo("alice/tiny")
    base_sha = api.upload_folder(repo_id="alice/tiny", folder_path=local).oid

    with use_endpoint(hub.url):
        tokenizer = AutoTokenizer.from_pretrained("alice/tiny", revision=base_sha, token=TOKEN)
        base = AutoModelForCausalLM.from_pretrained("alice/tiny", revision=base_sha, token=TOKEN)
    assert tokenizer("umoja means unity")["input_ids"] == [6, 7, 8]
    saved = AutoModelForCausalLM.from_pretrained(local)
    for (name, theirs), ours in zip(
        base.state_dict().items(), saved.state_dict().values(), strict=True
    ):
        assert torch.equal(theirs, ours), name

    # Two adapter revisions: loading at the first sha must give the first weights.
    api.create_repo("alice/adapter")
    shas, weights = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        lora = get_peft_model(
            AutoModelForCausalLM.from_pretrained(local),
            LoraConfig(
                r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False
            ),
        )
        out = tmp_path / f"adapter-{seed}"
        lora.save_pretrained(out)
        shas.append(api.upload_folder(repo_id="alice/adapter", folder_path=out).oid)
        weights.append({k: v.clone() for k, v in lora.state_dict().items() if "lora_" in k})
    assert shas[0] != shas[1]

    with use_endpoint(hub.url):
        tuned = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(local),
            "alice/adapter",
            revision=shas[0],
            token=TOKEN,
        )
    loaded = {k: v for k, v in tuned.state_dict().items() if "lora_" in k}
    assert loaded.keys() == weights[0].keys()
    assert all(torch.equal(loaded[k], weights[0][k]) for k in loaded)
    assert not all(torch.equal(loaded[k], weights[1][k]) for k in loaded)
