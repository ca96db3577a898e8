"""pins-unresolvable: pip's real resolver, offline against tiny wheels the tests build."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_wheel

from spacetrain.cli import main
from spacetrain.dockerfile import Dockerfile
from spacetrain.errors import InfraError
from spacetrain.lint import Policy, lint_folder
from spacetrain.lint.resolver import explain, image_python, platform_tags, resolve_pins

SEED_WHEELS = [
    # The seed's pins, with the dependency that makes them conflict (PyPI metadata).
    ("torch", "2.1.0", []),
    ("torchvision", "0.16.0", ["torch==2.1.0"]),
    ("torchaudio", "2.1.0", ["torch==2.1.0"]),
    ("transformers", "4.36.0", ["huggingface-hub<1.0,>=0.19.3"]),
    ("datasets", "2.16.0", ["huggingface-hub>=0.19.4"]),
    ("peft", "0.7.1", ["huggingface-hub>=0.17.0", "torch>=1.13.0"]),
    ("bitsandbytes", "0.41.3", []),
    ("trl", "0.7.4", ["torch>=1.4.0", "transformers>=4.18.0"]),
    ("accelerate", "0.25.0", ["huggingface-hub", "torch>=1.10.0"]),
    ("huggingface-hub", "0.20.0", []),
    ("huggingface-hub", "0.26.0", []),
    ("gradio", "5.10.0", ["huggingface-hub>=0.25.1"]),
]


def dockerfile(text: str) -> Dockerfile:
    return Dockerfile.parse(text.encode(), path="space/Dockerfile")


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    for name, version, requires in SEED_WHEELS:
        write_wheel(folder, name, version, requires)
    return folder


@pytest.mark.e2e
def test_a_conflict_names_the_pin_and_pips_reason(wheels: Path) -> None:
    doc = dockerfile(
        "FROM python:3.11-slim\nRUN pip install gradio==5.10.0 \\\n    huggingface_hub==0.20.0\n"
    )
    result = resolve_pins(doc, Policy.defaults(), find_links=[str(wheels)])
    assert not result.ok
    assert result.python_version == "3.11"
    assert result.culprits[0] == "huggingface-hub"
    assert "The user requested huggingface-hub==0.20.0" in result.reason
    assert "gradio 5.10.0 depends on huggingface-hub>=0.25.1" in result.reason


@pytest.mark.e2e
def test_a_resolvable_set_is_ok_and_counts_packages(wheels: Path) -> None:
    doc = dockerfile("FROM python:3.11-slim\nRUN pip install gradio==5.10.0 peft==0.7.1\n")
    result = resolve_pins(doc, Policy.defaults(), find_links=[str(wheels)])
    assert result.ok, result.reason
    assert result.installed == 4  # gradio, peft, huggingface-hub 0.26.0, torch
    assert result.requirements == ("gradio==5.10.0", "peft==0.7.1")


@pytest.mark.e2e
def test_a_missing_version_is_unresolvable(wheels: Path) -> None:
    doc = dockerfile("FROM python:3.11-slim\nRUN pip install trl==9.9.9\n")
    result = resolve_pins(doc, Policy.defaults(), find_links=[str(wheels)])
    assert not result.ok
    assert result.culprits == ("trl",)
    assert result.reason.startswith("no wheel matches trl==9.9.9")


@pytest.mark.e2e
def test_one_package_pinned_twice_conflicts(wheels: Path) -> None:
    doc = dockerfile(
        "FROM python:3.11-slim\nRUN pip install peft==0.7.1\nRUN pip install peft==0.7.2\n"
    )
    result = resolve_pins(doc, Policy.defaults(), find_links=[str(wheels)])
    assert not result.ok
    assert "peft" in result.culprits


@pytest.mark.e2e
def test_seed_fixture_with_resolve_reports_the_seed_conflict(
    wheels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = Path(__file__).parent / "fixtures" / "seed"
    code = main(["lint", str(seed), "--resolve", "--find-links", str(wheels), "--format", "json"])
    assert code == 1
    import json

    report = json.loads(capsys.readouterr().out)
    [finding] = [f for f in report["findings"] if f["rule"] == "pins-unresolvable"]
    lines = (seed / "Dockerfile").read_text().splitlines()
    assert lines[finding["line"] - 1].strip() == "huggingface_hub==0.20.0 \\"
    # nvidia/cuda:...-ubuntu22.04 brings Python 3.10, the seed's "Python 3.10".
    assert finding["message"].startswith(
        "the pinned set does not install (Python 3.10, manylinux_2_28_x86_64): cannot install"
    )
    assert "gradio 5.10.0 depends on huggingface-hub>=0.25.1" in finding["message"]


@pytest.mark.e2e
def test_find_links_alone_turns_resolve_on(tmp_path: Path, wheels: Path, space) -> None:
    root = space(
        Dockerfile=(Path(__file__).parent / "fixtures/base/Dockerfile")
        .read_text()
        .replace("huggingface_hub==2.4.0", "huggingface_hub==0.20.0")
        .replace("gradio==6.31.0", "gradio==5.10.0")
        .replace("torch==2.13.0", "torch==2.1.0")
    )
    assert main(["lint", str(root)]) == 0
    assert main(["lint", str(root), "--find-links", str(wheels)]) == 1


def test_off_in_the_policy_skips_the_resolver(tmp_path: Path, space) -> None:
    root = space()
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  pins-unresolvable: 'off'\n")
    # With the rule off, pip is never run: an unreachable index cannot fail the lint.
    assert main(["lint", str(root), "--resolve", "--policy", str(policy)]) == 0


# ------------------------------------------------------------ online: a loopback index


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def loopback_index(tmp_path: Path, wheels: Path) -> Iterator[str]:
    """A PEP 503 simple index on 127.0.0.1 serving the tiny wheels: "PyPI" for pip."""
    root = tmp_path / "index"
    files = root / "files"
    shutil.copytree(wheels, files)
    projects: dict[str, list[str]] = {}
    for wheel in files.iterdir():
        projects.setdefault(wheel.name.split("-")[0].replace("_", "-"), []).append(wheel.name)
    for project, names in projects.items():
        page = root / "simple" / project
        page.mkdir(parents=True)
        links = "".join(f'<a href="../../files/{n}">{n}</a>\n' for n in names)
        (page / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.e2e
def test_unreachable_torch_index_leaves_torch_out(
    loopback_index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", loopback_index)
    dead = f"http://127.0.0.1:{_closed_port()}/whl/cu126"
    doc = dockerfile(
        "FROM python:3.11-slim\n"
        f"RUN pip install torch==2.1.0+cu126 --index-url {dead}\n"
        "RUN pip install gradio==5.10.0 huggingface_hub==0.26.0\n"
    )
    result = resolve_pins(doc, Policy.defaults())
    assert result.ok, result.reason
    assert result.left_out == ("torch",)
    assert dead in result.note and "unreachable" in result.note
    assert result.requirements == ("gradio==5.10.0", "huggingface-hub==0.26.0")


@pytest.mark.e2e
def test_unreachable_index_is_infrastructure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{_closed_port()}/simple")
    doc = dockerfile("FROM python:3.11-slim\nRUN pip install gradio==5.10.0\n")
    with pytest.raises(InfraError, match="could not reach the package index"):
        resolve_pins(doc, Policy.defaults())


@pytest.mark.e2e
def test_unreachable_index_is_exit_3_on_the_cli(
    space, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{_closed_port()}/simple")
    root = space(
        Dockerfile="FROM python:3.11-slim\nRUN pip install gradio==5.10.0\n"
        "HEALTHCHECK CMD true\nUSER 1000\n"
    )
    assert main(["lint", str(root), "--resolve"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("spacetrain lint: error: pip could not reach the package index")
    assert len(err.splitlines()) == 1


# ------------------------------------------------------------ pure helpers


def test_platform_tags_include_older_manylinux() -> None:
    tags = platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64"
    assert "manylinux_2_17_x86_64" in tags and "manylinux_2_5_x86_64" in tags
    assert tags[-3:] == ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    assert platform_tags("win_amd64") == ["win_amd64"]


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("FROM python:3.11-slim-bookworm\n", "3.11"),
        ("FROM python:3.12\n", "3.12"),
        ("FROM nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04\n", "3.10"),
        ("FROM nvidia/cuda:13.2.1-base-ubuntu24.04\n", "3.12"),
        ("FROM ubuntu:22.04\n", "3.10"),
        ("FROM debian:bookworm-slim\n", "3.11"),
        ("FROM ubuntu:22.04\nRUN apt-get update && apt-get install -y python3.11\n", "3.11"),
        ("FROM busybox:1.36\n", None),
        # A base without Python: uv installs a standalone CPython (space/Dockerfile).
        ("FROM nvidia/cuda:12.6.3-base-ubuntu24.04\nRUN uv python install 3.11.14\n", "3.11"),
        ("FROM ubuntu:24.04\nRUN uv venv --seed --python 3.13 /opt/venv\n", "3.13"),
        ("FROM ubuntu:24.04\nRUN uv venv --python=cpython-3.11.9 /v\n", "3.11"),
        ("FROM ubuntu:24.04\nRUN uv python list\n", "3.12"),
    ],
)
def test_image_python(text: str, version: str | None) -> None:
    assert image_python(dockerfile(text)) == version


def test_explain_reads_pips_conflict_block() -> None:
    output = (
        "INFO: pip is looking at multiple versions\n\nThe conflict is caused by:\n"
        "    The user requested huggingface_hub==0.20.0\n"
        "    gradio 5.10.0 depends on huggingface-hub>=0.25.1\n\nTo fix this you could try to:\n"
        "ERROR: Cannot install gradio==5.10.0 and huggingface_hub==0.20.0 because these package"
        " versions have conflicting dependencies.\n"
    )
    reason, culprits = explain(output)
    assert culprits == ("huggingface-hub", "gradio")
    assert reason == (
        "cannot install gradio==5.10.0 and huggingface_hub==0.20.0 together: The user requested"
        " huggingface_hub==0.20.0; gradio 5.10.0 depends on huggingface-hub>=0.25.1"
    )


def test_lint_folder_without_resolve_never_runs_pip(space) -> None:
    report = lint_folder(space(), Policy.defaults())
    assert "pins-unresolvable" not in report.rules_run


@pytest.mark.e2e
def test_unreachable_torch_index_with_the_version_elsewhere_is_a_note(
    loopback_index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", loopback_index)
    dead = f"http://127.0.0.1:{_closed_port()}/whl/cu126"
    doc = dockerfile(
        "FROM python:3.11-slim\n"
        f"RUN pip install torch==2.1.0 --index-url {dead}\n"
        "RUN pip install peft==0.7.1\n"
    )
    result = resolve_pins(doc, Policy.defaults())
    assert result.ok, result.reason
    assert result.left_out == ()
    assert result.note == f"{dead} unreachable; its packages were taken from the other index"
