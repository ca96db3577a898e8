"""``spacetrain localhub serve`` as a user runs it: a real subprocess, signals, exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

pytestmark = pytest.mark.e2e


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spacetrain",
            "localhub",
            "serve",
            "--root",
            str(tmp_path / "hub"),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_serve_prints_the_endpoint_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = _serve(
        tmp_path,
        "--port",
        "0",
        "--token",
        "hf_r:alice:read",
        "--token",
        "hf_f:alice:fine=model/alice/out+user/carol",
        env={"LOCALHUB_TOKENS": "hf_a:alice,hf_b", "LOCALHUB_ADMIN_TOKEN": "hf_admin"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("HF_ENDPOINT=http://127.0.0.1:")
        url = line.split("=", 1)[1]
        assert HfApi(endpoint=url, token="hf_a").whoami()["name"] == "alice"
        assert HfApi(endpoint=url, token="hf_b").whoami()["name"] == "localhub-user"
        with pytest.raises(HfHubHTTPError):
            HfApi(endpoint=url, token="hf_c").whoami()
        HfApi(endpoint=url, token="hf_a").create_repo("alice/m")
        with pytest.raises(HfHubHTTPError, match="403"):
            HfApi(endpoint=url, token="hf_r").create_repo("alice/r")
        assert HfApi(endpoint=url, token="hf_r").whoami()["auth"]["accessToken"]["role"] == "read"
        fine = HfApi(endpoint=url, token="hf_f")
        fine.create_repo("alice/out")
        with pytest.raises(HfHubHTTPError, match="403"):
            fine.create_repo("alice/other")
        # the control plane: the admin token only
        reset = f"{url}/_localhub/reset"
        assert httpx.post(reset).status_code == 401
        assert httpx.post(reset, headers={"Authorization": "Bearer hf_a"}).status_code == 403
        assert httpx.get(f"{url}/_localhub/health").status_code == 200
        assert httpx.post(reset, headers={"Authorization": "Bearer hf_admin"}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not (tmp_path / "hub" / "models" / "alice" / "m.git").exists()  # reset by the admin


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "{bad"], "spacetrain localhub: error: --faults: not JSON"),
        (["--faults", '{"nope": 1}'], "fault: unknown keys ['nope']"),
        (["--faults", "@missing.json"], "missing.json: cannot read the faults file"),
        (["--token", ":alice"], "--token / LOCALHUB_TOKENS item 1: empty token"),
        (["--token", "hf_x:bob:admin"], "token role must be one of read, write, fineGrained"),
        (["--token", "hf_x:bob:fine=user/a/b"], "bad fine-grained scope 'user/a/b'"),
        (["--admin-token", "hf_admin"], "--admin-token guards the control plane"),
        # A token no client could send in a header (it is never echoed):
        (["--token", "hf_sp ace:alice"], "item 1: whitespace, a control or a non-ASCII"),
        (["--token", "hf_a\nb:alice"], "item 1: whitespace, a control or a non-ASCII"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = _serve(tmp_path, "--port", "0", *args)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_a_busy_port_exits_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = _serve(tmp_path, "--port", str(busy.getsockname()[1]))
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "cannot listen on 127.0.0.1:" in err and "(try --port 0)" in err


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path, port: str) -> None:
    proc = _serve(tmp_path, "--port", port)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert out == "" and "Traceback" not in err
    assert (
        err.strip().splitlines()[-1].startswith("spacetrain localhub serve: error: argument --port")
    )
    assert not (tmp_path / "hub").exists()


def test_a_root_that_is_a_file_is_named_not_a_listen_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x\n")
    proc = _serve(tmp_path, "--port", "0", "--root", str(tmp_path / "afile"))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "--root" in err and "is a file" in err and "cannot listen" not in err
