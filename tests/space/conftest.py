"""Fixtures for the Space tests: a tiny model and the QA dataset, built once per session."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from .support import QA, chat_rows, write_jsonl


@pytest.fixture(scope="session")
def tiny_model(tiny_llama: Callable[[Sequence[str]], Path]) -> Path:
    """A tiny Llama whose tokenizer knows the QA text (built once per run; read-only)."""
    return tiny_llama([f"{q} {a}" for q, a in QA])


@pytest.fixture(scope="session")
def qa_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", chat_rows(QA))
