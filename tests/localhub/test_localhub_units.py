"""Pieces of localhub tested directly, without HTTP: store, front matter, billing, clients."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import spacetrain.localhub as localhub_pkg
from spacetrain.localhub import use_endpoint
from spacetrain.localhub.billing import FLAVORS, BillingMeter
from spacetrain.localhub.card import FrontMatterError, front_matter, space_config
from spacetrain.localhub.errors import BadRequest, EntryNotFound, PreconditionFailed
from spacetrain.localhub.store import Operation, RepoStore, _gitignore_match, validate_path


def test_exported_names_have_docstrings() -> None:
    for name in localhub_pkg.__all__:
        obj = getattr(localhub_pkg, name)
        assert isinstance(obj, str) or obj.__doc__, name


@pytest.mark.parametrize("path", ["", "/abs", "a//b", "a/../b", ".git/config", "a\nb", "./a"])
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(BadRequest):
        validate_path(path)


@pytest.mark.parametrize(
    ("path", "patterns", "ignored"),
    [
        ("build/x.o", ["build/"], True),
        ("build", ["build/"], False),  # a dir-only pattern never matches a file
        ("src/x.pyc", ["*.pyc"], True),
        ("src/keep.pyc", ["*.pyc", "!keep.pyc"], False),  # unanchored: any level
        ("src/x.pyc", ["*.pyc", "!/x.pyc"], True),
        ("keep.pyc", ["*.pyc", "!keep.pyc"], False),
        ("docs/a.md", ["/a.md"], False),  # anchored to the root
        ("a.md", ["/a.md"], True),
        ("a.md", ["# comment", ""], False),
    ],
)
def test_gitignore_matching(path: str, patterns: list[str], ignored: bool) -> None:
    assert _gitignore_match(path, patterns) is ignored


@pytest.mark.e2e
def test_store_commits_are_real_git_with_history(tmp_path: Path) -> None:
    store = RepoStore(tmp_path)
    repo = store.create("dataset", "alice/d", author="alice")
    root = repo.head()
    sha = repo.apply(
        [Operation("file", "a/b.txt", b"b"), Operation("file", 'odd "name".txt', b"q")],
        summary="add",
        description="more",
        author="alice",
        parent=root,
    )
    assert repo.snapshot(sha).listing("", recursive=False)[0].path == ".gitattributes"
    assert [e.path for e in repo.snapshot(sha).listing("a", recursive=False)] == ["a/b.txt"]
    assert [c.title for c in repo.history(sha)] == ["add", "initial commit"]
    assert repo.commit(sha).message == "more"
    with pytest.raises(PreconditionFailed):
        repo.apply([], summary="late", author="alice", parent=root)
    with pytest.raises(EntryNotFound):
        repo.apply([Operation("deletedFolder", "nope/")], summary="x", author="alice")
    store.close()

    again = RepoStore(tmp_path).get("dataset", "alice/d")
    assert again.resolve("main") == sha
    assert again.file(sha, 'odd "name".txt')[1] == b"q"
    checkout = tmp_path / "checkout"
    again.archive(sha, checkout)
    assert (checkout / "a" / "b.txt").read_bytes() == b"b"
    again.close()


@pytest.mark.parametrize(
    ("readme", "message"),
    [
        (None, "no README.md"),
        ("# no front matter\n", "no YAML front matter"),
        ("---\nsdk: docker\n", "no closing '---'"),
        ("---\nsdk: [docker\n---\n", "not valid YAML (line 2)"),
        ("---\n- a\n---\n", "must be a YAML mapping"),
        ("---\ntitle: x\n---\n", "sdk must be one of"),
        ("---\nsdk: docker\napp_port: true\n---\n", "app_port must be a port number"),
        ("---\nsdk: gradio\napp_file: ''\n---\n", "app_file must be a path"),
    ],
)
def test_space_config_errors_name_the_problem(readme: str | None, message: str) -> None:
    with pytest.raises(FrontMatterError, match=re.escape(message)):
        space_config(readme)


def test_space_config_reads_the_settings() -> None:
    config = space_config("---\ntitle: T\nsdk: gradio\napp_file: main.py\napp_port: 8080\n---\n")
    assert (config.sdk, config.app_file, config.app_port, config.title) == (
        "gradio",
        "main.py",
        8080,
        "T",
    )
    assert front_matter("no header") == {}


def test_billing_meter_counts_per_flavor() -> None:
    now = [0.0]
    meter = BillingMeter(clock=lambda: now[0])
    meter.bill("a/s", "cpu-basic")
    now[0] = 10
    meter.bill("a/s", "a10g-small")
    now[0] = 3610
    meter.bill("a/s", None)
    meter.count_start("a/s", rebuild=True)
    meter.count_start("a/s", rebuild=False)
    meter.count_start("a/s", rebuild=False)
    now[0] = 9999
    snap = meter.snapshot()
    assert snap["spaces"]["a/s"] == {
        "billing": None,
        "flavors": {
            "a10g-small": {"seconds": 3600.0, "usd": 1.0},
            "cpu-basic": {"seconds": 10.0, "usd": 0.0},
        },
        "builds": 1,
        "restarts": 2,
    }
    assert snap["total"] == {"seconds": 3610.0, "usd": 1.0}


def test_the_flavors_are_huggingface_hubs() -> None:
    """request_space_hardware is checked against FLAVORS: the library's list, in order."""
    from huggingface_hub import SpaceHardware

    assert list(FLAVORS) == [h.value for h in SpaceHardware]
    assert (FLAVORS["a10g-small"].gpu, FLAVORS["cpu-basic"].gpu) == ("A10G", None)


def test_use_endpoint_repoints_and_restores() -> None:
    import huggingface_hub.constants as constants
    import huggingface_hub.hf_api as hf_api

    before = (constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE, hf_api.api.endpoint)
    with use_endpoint("http://127.0.0.1:9/"):
        assert constants.ENDPOINT == hf_api.api.endpoint == "http://127.0.0.1:9"
        assert constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith("http://127.0.0.1:9/{repo_id}")
    assert (
        constants.ENDPOINT,
        constants.HUGGINGFACE_CO_URL_TEMPLATE,
        hf_api.api.endpoint,
    ) == before


def test_the_body_reader_reads_both_framings_and_stops_at_its_limit() -> None:
    import io

    from spacetrain.localhub.wire import read_body

    chunked = {"Transfer-Encoding": "chunked"}
    body = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n"
    assert read_body(chunked, io.BytesIO(body)) == b"abcde"
    assert read_body({"Content-Length": "4"}, io.BytesIO(b"abcdef")) == b"abcd"
    assert read_body({}, io.BytesIO(b"ignored")) == b""
    with pytest.raises(ValueError, match="over 4 bytes"):
        read_body({"Content-Length": "5"}, io.BytesIO(b"abcde"), limit=4)
    with pytest.raises(ValueError, match="over 4 bytes"):
        read_body(chunked, io.BytesIO(body), limit=4)


def test_every_handler_is_in_the_url_table_and_every_route_is_a_handler() -> None:
    """A handler is a public ``api_*`` function taking ``req``; none is left unrouted."""
    import importlib
    import inspect
    import pkgutil

    from spacetrain.localhub.urls import ROUTES

    routed = {r.handler for r in ROUTES}
    handlers = set()
    for module in pkgutil.iter_modules(localhub_pkg.__path__):
        if module.name.startswith("api_"):
            api = importlib.import_module(f"spacetrain.localhub.{module.name}")
            public = [getattr(api, name) for name in api.__all__]
            handlers |= {f for f in public if "req" in inspect.signature(f).parameters}
    assert routed == handlers
