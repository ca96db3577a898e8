"""Fixtures shared by the pipeline-stage tests: one localhub per session, reset per test.

Kept generic on purpose (the Space stages and the training stages both use them):
a hub, the environment a stage command sees (``HF_ENDPOINT``, ``HF_TOKEN``), and an
``HfApi`` to arrange and inspect what the stages did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from spacetrain.localhub import LocalHub
from spacetrain.localhub.auth import Token

from .adapter_world import QA, World, running_world

TOKEN = "hf_stagestesttokenAbCdEfGhIjKlMnOpQr"  # what tests check never leaks into output
SPACE_TOKEN = "hf_spaceowntokenZyXwVuTsRqPoNmLkJi"  # SPACE_HF_TOKEN: the Space's own secret
USER = "alice"
ADMIN_TOKEN = "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"  # /_localhub/* (strict mode)
READ_TOKEN = "hf_stagesReadOnlyTokenOfAliceXyZwVu"  # alice's read token: reads, never writes


@pytest.fixture(scope="session")
def localhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    """A LocalHub on a free port for the session; ``TOKEN`` is user ``alice``.

    Builds take 0.1 s so a test can see BUILDING; everything else is real.
    """
    hub = LocalHub(
        root=tmp_path_factory.mktemp("stages-hub"),
        port=0,
        build_delay=0.1,
        tokens={TOKEN: USER, SPACE_TOKEN: USER, READ_TOKEN: Token(USER, "read")},
        admin_token=ADMIN_TOKEN,
    ).start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def hub(localhub: LocalHub) -> LocalHub:
    """The session hub, wiped clean (repos, Spaces, faults, billing, request log)."""
    localhub.reset()
    return localhub


@pytest.fixture
def hub_env(hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> LocalHub:
    """The hub, with ``HF_ENDPOINT``, ``HF_TOKEN`` and ``SPACE_HF_TOKEN`` set as a CI job
    would set them."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("SPACE_HF_TOKEN", SPACE_TOKEN)
    monkeypatch.setenv("SPACETRAIN_HUB_DEADLINE", "20")
    return hub


@pytest.fixture
def api(hub: LocalHub) -> HfApi:
    """A real HfApi on the hub with the accepted token, to arrange and inspect."""
    return HfApi(endpoint=hub.url, token=TOKEN)


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_llama: Callable[[list[str]], Path],
) -> Iterator[World]:
    """tests/stages/adapter_world.py's world, one per module that asks (a module may
    define its own ``world`` instead, as test_train_preflight_e2e.py does)."""
    root = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    with running_world(root, tiny_llama([f"{q} {a}" for q, a in QA])) as w:
        yield w
