"""Fixtures for the localhub conformance tests: one server per session, reset per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from spacetrain.localhub import LocalHub

TOKEN = "hf_localhub_test_token"


@pytest.fixture(scope="session")
def localhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    """A LocalHub on a free port for the whole session (open: any token works).

    Builds take 0.2 s so tests can see BUILDING before APP_STARTING.
    """
    hub = LocalHub(root=tmp_path_factory.mktemp("localhub"), port=0, build_delay=0.2).start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def hub(localhub: LocalHub) -> LocalHub:
    """The session hub, wiped clean for this test."""
    localhub.reset()
    return localhub


@pytest.fixture
def api(hub: LocalHub) -> HfApi:
    """A real HfApi pointed at the hub explicitly (huggingface_hub read HF_ENDPOINT at import)."""
    return HfApi(endpoint=hub.url, token=TOKEN)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A small folder to upload: a README, a config and files in a subfolder."""
    root = tmp_path / "upload"
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text("---\nlicense: mit\ntags: [demo]\n---\n# demo\n")
    (root / "config.json").write_text('{"a": 1}\n')
    for i in range(3):
        (root / "data" / f"part-{i}.txt").write_text(f"line {i}\n")
    return root
