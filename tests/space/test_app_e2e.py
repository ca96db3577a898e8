"""space/app.py as a subprocess, driven through gradio_client over loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client.exceptions import AppError

from .support import AppServer, call, start_app, wait_for

pytestmark = pytest.mark.e2e

ACTIVE = ("queued", "running")
DONE = ("succeeded", "failed")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    root = tmp_path_factory.mktemp("app")
    app = start_app(root / "runs", root / "app.log")
    print(f"\napp.py answered on its port after {app.startup_s:.1f}s")
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def client(server: AppServer) -> Iterator[Any]:
    c = server.client()
    # One run at a time: let a previous test's run finish first.
    status = call(c, "/training_status", "")
    if status["state"] in ACTIVE:
        wait_for(c, status["run_id"], DONE)
    yield c
    c.close()


def _params(tiny_model: Path, data: Path, run_id: str, epochs: int = 30) -> str:
    return json.dumps(
        {
            "base_model": str(tiny_model),
            "dataset": str(data),
            "push": False,
            "run_id": run_id,
            "epochs": epochs,
            "batch_size": 4,
            "grad_accum": 1,
            "learning_rate": 5e-3,
        }
    )


def test_start_is_idempotent_status_succeeds_logs_page(
    server: AppServer, client: Any, tiny_model: Path, qa_jsonl: Path
) -> None:
    params = _params(tiny_model, qa_jsonl, "api-1")
    first = call(client, "/start_training", params)
    assert (first["run_id"], first["created"]) == ("api-1", True)
    assert first["state"] in ACTIVE

    again = call(client, "/start_training", params)
    assert (again["run_id"], again["created"]) == ("api-1", False)
    plain = call(client, "/start_training", "")  # no params: "the active run, please"
    assert (plain["run_id"], plain["created"]) == ("api-1", False)
    with pytest.raises(AppError, match="run api-1 is still active"):
        client.predict(_params(tiny_model, qa_jsonl, "api-2"), api_name="/start_training")
    assert not (server.runs / "api-2").exists()

    status = wait_for(client, "api-1", DONE)
    assert status["state"] == "succeeded", status
    assert status["step"] == status["total"] == 150
    assert status["epoch"] == 30
    assert isinstance(status["loss"], float)
    assert status["returncode"] == 0 and status["error"] is None
    assert status["loss_mode"] == "assistant_only"
    adapter = Path(status["adapter"]["path"])
    assert json.loads((adapter / "run.json").read_text())["run_id"] == "api-1"
    # A retried start of a finished run reports it and starts nothing.
    retried = call(client, "/start_training", params)
    assert retried["run_id"] == "api-1"
    assert (retried["state"], retried["created"]) == ("succeeded", False)

    log = (server.runs / "api-1" / "train.log").read_text(encoding="utf-8")
    text, offset, pages = "", 0, 0
    while True:
        page = call(client, "/training_logs", "api-1", offset, 2000)
        assert page["offset"] == offset
        text += page["text"]
        offset = page["next_offset"]
        pages += 1
        if page["done"]:
            break
        assert pages < 1000
    assert text == log
    assert pages > 3
    assert "[train] step 150/150" in text


def test_malformed_params_give_a_clear_error_and_start_nothing(
    server: AppServer, client: Any
) -> None:
    before = sorted(p.name for p in server.runs.iterdir())
    cases = {
        "{not json": "params is not valid JSON",
        '{"epochs": "lots"}': "params.epochs must be a number",
        '{"learning_rte": 1}': "unknown parameter(s) learning_rte",
        '{"push": false}': "no base_model",
    }
    for params, message in cases.items():
        with pytest.raises(AppError) as info:
            client.predict(params, api_name="/start_training")
        assert message in str(info.value)
    assert sorted(p.name for p in server.runs.iterdir()) == before
    with pytest.raises(AppError, match="no run 'nope'"):
        client.predict("nope", api_name="/training_status")


CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from gradio_client import Client

    client = Client(sys.argv[1], verbose=False)
    started = json.loads(client.predict(sys.argv[2], api_name="/start_training"))
    while True:
        status = json.loads(client.predict(started["run_id"], api_name="/training_status"))
        if status["state"] == "running" and status["step"] >= 1:
            print("RUNNING", flush=True)
        time.sleep(0.2)
    """
)


def test_training_survives_the_client_process_dying(
    server: AppServer, client: Any, tiny_model: Path, qa_jsonl: Path, tmp_path: Path
) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    params = _params(tiny_model, qa_jsonl, "detached-1", epochs=60)
    proc = subprocess.Popen(
        [sys.executable, str(script), server.url, params],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the run is training
        assert line.strip() == "RUNNING", line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    mid = call(client, "/training_status", "detached-1")
    assert mid["state"] == "running" and mid["step"] < mid["total"], mid

    final = wait_for(client, "detached-1", DONE)
    assert final["state"] == "succeeded", final
    assert final["step"] == final["total"] == 300
    assert (Path(final["adapter"]["path"]) / "adapter_model.safetensors").is_file()


def test_a_restarted_app_still_reports_the_run(
    tmp_path: Path, tiny_model: Path, qa_jsonl: Path
) -> None:
    runs = tmp_path / "runs"
    first = start_app(runs, tmp_path / "first.log")
    try:
        c = first.client()
        call(c, "/start_training", _params(tiny_model, qa_jsonl, "survivor", epochs=60))
        wait_for(c, "survivor", ("running",))
        c.close()
    finally:
        first.proc.kill()  # the app dies hard; the supervisor lives in its own session
        first.proc.wait()

    second = start_app(runs, tmp_path / "second.log")
    try:
        c = second.client()
        status = call(c, "/training_status", "survivor")
        assert status["state"] in ("running", "succeeded"), status
        if status["state"] == "running":  # the lock outlived the app: same run, no new one
            again = call(c, "/start_training", _params(tiny_model, qa_jsonl, "survivor"))
            assert (again["run_id"], again["created"]) == ("survivor", False)
        final = wait_for(c, "survivor", DONE)
        assert final["state"] == "succeeded", final
        assert final["returncode"] == 0
        c.close()
    finally:
        second.stop()


def test_ui_has_the_single_start_button_a_live_log_and_a_status_panel(server: AppServer) -> None:
    import urllib.request

    with urllib.request.urlopen(server.url + "config", timeout=10) as response:
        config = json.loads(response.read())
    components = config["components"]
    buttons = [c["props"].get("value") for c in components if c["type"] == "button"]
    assert buttons == ["Start Training"]
    labels = {c["props"].get("label") for c in components}
    assert {"Log", "Status"} <= labels
    assert any(c["type"] == "timer" for c in components)  # the live log ticks
    public = {d["api_name"] for d in config["dependencies"] if d.get("api_visibility") == "public"}
    assert public == {"start_training", "training_status", "training_logs", "training_preflight"}
    assert "[app] runs folder" in server.log.read_text()
    # Start-up diagnostics come from a thread once torch is imported, never before the port.
    deadline = time.monotonic() + 120
    while '"cuda_available": false' not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()[-2000:]
        time.sleep(0.5)
