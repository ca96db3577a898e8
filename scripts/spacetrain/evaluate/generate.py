"""Loading a base model (+ adapter) and answering a suite's prompts, greedily and in batches.

The gate must give the same verdict on every run, so generation is built for
reproducibility first and speed second (measurements: reference/train-eval.md §7):

- greedy decoding, a fixed ``max_new_tokens``, the KV cache on;
- on CPU: fp32 with the adapter merged into the weights (``merge_and_unload``),
  which is exact to ~1e-5 and so batch-invariant; on a GPU: bf16;
- left padding in fixed-size batches, prompts sorted by length (less padding),
  answers returned in the suite's order;
- prompts rendered by the tokenizer's chat template with the generation prompt;
  only the new tokens are decoded, special tokens stripped.

Models come from a local folder or a Hub id at a revision, downloaded through
:class:`spacetrain.hub.Hub` (``HF_ENDPOINT``, ``HF_TOKEN``, retries).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spacetrain.errors import InputFileError, UsageError
from spacetrain.inputs import parse_json, read_text

if TYPE_CHECKING:
    from spacetrain.hub import Hub

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class ModelSource:
    """Where a model or adapter was read from: a local folder, or a Hub repo at a commit."""

    ref: str  # as the user wrote it
    path: Path  # the local folder with the files
    revision: str | None = None  # the exact commit, for a Hub repo
    local: bool = True

    def to_json(self) -> dict[str, Any]:
        """``{"repo", "revision"}`` (the report's ``adapter`` shape), plus provenance."""
        out: dict[str, Any] = {"repo": self.ref, "revision": self.revision}
        if self.local:
            out["path"] = str(self.path)
        return out


def resolve(
    ref: str, revision: str | None = None, *, adapter: bool = False, hub: Hub | None = None
) -> ModelSource:
    """A local folder as is, or a Hub repo downloaded at ``revision`` (resolved to a commit)
    through ``hub`` (default: ``Hub.from_env()``).

    Raises:
        InputFileError: a local path that does not exist or lacks the expected files.
        UsageError / AuthError / HubUnreachable: from the Hub (see :mod:`spacetrain.hub`).
    """
    what = "adapter" if adapter else "base model"
    local = Path(ref).expanduser()
    # "out/adapter" with a local "out/" folder is a path with a typo, not a Hub id.
    looks_local = local.exists() or not _HUB_ID.match(ref) or local.parent.is_dir()
    if looks_local:
        if not local.is_dir():
            raise InputFileError(
                local, f"no such {what} folder (give a folder or a Hub id like owner/name)"
            )
        if revision is not None:
            raise UsageError(
                f"--{'adapter' if adapter else 'base'}-revision needs a Hub id, "
                f"not the local folder {ref}"
            )
        source = ModelSource(ref, local.resolve(), None, True)
    else:
        if hub is None:
            from spacetrain.hub import Hub

            hub = Hub.from_env()
        try:
            info = hub.call(f"find the {what} {ref}", hub.api.model_info, ref, revision=revision)
        except UsageError as exc:
            raise type(exc)(f"{exc} (and there is no local folder {ref!r})") from exc
        sha = info.sha or revision
        path = hub.call(
            f"download the {what} {ref}@{sha}",
            hub.api.snapshot_download,
            repo_id=ref,
            revision=sha,
        )
        source = ModelSource(ref, Path(path), sha, False)
    _require_files(source, adapter=adapter)
    return source


def _require_files(source: ModelSource, *, adapter: bool) -> None:
    if adapter:
        if not (source.path / "adapter_config.json").is_file():
            raise InputFileError(
                source.path, "not a PEFT adapter: no adapter_config.json (did training finish?)"
            )
        if not any((source.path / w).is_file() for w in _ADAPTER_WEIGHTS):
            raise InputFileError(source.path, "the adapter has no adapter_model.safetensors")
    elif not (source.path / "config.json").is_file():
        raise InputFileError(source.path, "not a transformers model: no config.json")


def adapter_fingerprint(source: ModelSource) -> dict[str, Any]:
    """The adapter's weights digest, the base it was trained on and its training run id."""
    out: dict[str, Any] = {}
    for name in _ADAPTER_WEIGHTS:
        weights = source.path / name
        if weights.is_file():
            out["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
            break
    try:
        config = parse_json(read_text(source.path / "adapter_config.json"))
    except ValueError:  # InputFileError too: a FIFO, a folder, not UTF-8
        config = {}
    if isinstance(config, dict) and config.get("base_model_name_or_path"):
        out["trained_on"] = config["base_model_name_or_path"]
    run = source.path / "run.json"
    if run.is_file():
        try:
            data = parse_json(read_text(run))
        except ValueError:
            data = {}
        if isinstance(data, dict) and data.get("run_id"):
            out["run_id"] = data["run_id"]
    return out


def pick_device(requested: str | None) -> str:
    """``cuda`` when available unless told otherwise; ``cpu`` otherwise."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested not in {"cpu", "cuda"} and not requested.startswith("cuda:"):
        raise UsageError(f"--device must be cpu or cuda, not {requested!r}")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no GPU")
    return requested


@dataclass
class Generator:
    """A loaded model and tokenizer that answer chats greedily, in fixed-size batches."""

    model: Any
    tokenizer: Any
    device: str
    dtype: str
    merged: bool = False
    adapter: bool = False

    @classmethod
    def load(
        cls, base: ModelSource, *, device: str = "cpu", tokenizer_from: ModelSource | None = None
    ) -> Generator:
        """Load the base model (fp32 on CPU, bf16 on a GPU) and its tokenizer.

        ``tokenizer_from`` (an adapter folder that ships a tokenizer) wins over the base's.
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = torch.float32 if device == "cpu" else torch.bfloat16
        tok_dir = base.path
        if tokenizer_from is not None and (tokenizer_from.path / "tokenizer_config.json").is_file():
            tok_dir = tokenizer_from.path
        try:
            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
            model = AutoModelForCausalLM.from_pretrained(base.path, dtype=dtype)
        except (OSError, ValueError, KeyError) as exc:
            raise InputFileError(
                base.path, f"cannot load the model: {' '.join(str(exc).split())[:300]}"
            ) from None
        if not getattr(tokenizer, "chat_template", None):
            raise InputFileError(
                tok_dir, "the tokenizer has no chat template, so prompts cannot be rendered"
            )
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.to(device)
        model.eval()
        return cls(model, tokenizer, device, str(dtype).removeprefix("torch."))

    def apply_adapter(self, adapter: ModelSource, *, merge: bool = True) -> None:
        """Put the LoRA adapter on the model; merged into the weights unless ``merge=False``."""
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(self.model, str(adapter.path))
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InputFileError(
                adapter.path, f"cannot load the adapter: {' '.join(str(exc).split())[:300]}"
            ) from None
        # merge_and_unload is not in place: it returns the base model with merged weights.
        self.model = model.merge_and_unload() if merge else model
        self.model.eval()
        self.merged = merge
        self.adapter = True

    def encode(self, conversation: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of the chat-templated prompt, ready for the assistant's answer."""
        enc = self.tokenizer.apply_chat_template(
            list(conversation), add_generation_prompt=True, tokenize=True
        )
        ids = enc["input_ids"] if hasattr(enc, "keys") else enc
        return list(ids)

    def generate(
        self,
        conversations: Sequence[Sequence[dict[str, str]]],
        *,
        max_new_tokens: int,
        batch_size: int,
        sort_by_length: bool = True,
    ) -> list[str]:
        """Greedy answers to ``conversations``, in their order."""
        import torch
        from transformers import GenerationConfig

        if batch_size < 1:
            raise UsageError("batch size must be at least 1")
        encoded = [self.encode(c) for c in conversations]
        order = list(range(len(encoded)))
        if sort_by_length:
            order.sort(key=lambda i: (len(encoded[i]), i))
        eos = {self.tokenizer.eos_token_id}
        model_eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos.update(model_eos if isinstance(model_eos, list) else [model_eos])
        eos.discard(None)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(eos),
        )
        answers: list[str] = [""] * len(encoded)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = self.tokenizer.pad(
                    {"input_ids": [encoded[i] for i in idx]},
                    padding=True,
                    return_tensors="pt",
                ).to(self.device)
                out = self.model.generate(**batch, generation_config=config)
                new = out[:, batch["input_ids"].shape[1] :]
                texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
                for i, text in zip(idx, texts, strict=True):
                    answers[i] = text.strip()
        return answers


def library_versions() -> dict[str, str]:
    """Versions that decide the numbers, recorded with them."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("spacetrain", "torch", "transformers", "peft", "tokenizers", "huggingface_hub"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


__all__ = [
    "Generator",
    "ModelSource",
    "adapter_fingerprint",
    "library_versions",
    "pick_device",
    "resolve",
]
