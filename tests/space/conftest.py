"""Fixtures for the Space tests: a tiny model and the QA dataset, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from spacetrain.tinymodel import build_tiny_llama

from .support import QA, chat_rows, write_jsonl


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer knows the QA text (built once per session)."""
    corpus = [f"{q} {a}" for q, a in QA]
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", corpus)


@pytest.fixture(scope="session")
def qa_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", chat_rows(QA))
