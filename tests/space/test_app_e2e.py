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
LOCAL = {"SPACETRAIN_ALLOW_LOCAL_PATHS": "1"}
DONE = ("succeeded", "failed")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    root = tmp_path_factory.mktemp("app")
    # The tests train a local tiny model on a local file: a Space allows that only so.
    app = start_app(root / "runs", root / "app.log", {"SPACETRAIN_ALLOW_LOCAL_PATHS": "1"})
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
    before = _runs(server)
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
    assert _runs(server) == before
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
    first = start_app(runs, tmp_path / "first.log", LOCAL)
    try:
        c = first.client()
        call(c, "/start_training", _params(tiny_model, qa_jsonl, "survivor", epochs=60))
        wait_for(c, "survivor", ("running",))
        c.close()
    finally:
        first.proc.kill()  # the app dies hard; the supervisor lives in its own session
        first.proc.wait()

    second = start_app(runs, tmp_path / "second.log", LOCAL)
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


def test_ui_has_start_stop_a_live_log_progress_and_the_api(server: AppServer) -> None:
    import urllib.request

    with urllib.request.urlopen(server.url + "config", timeout=10) as response:
        config = json.loads(response.read())
    components = config["components"]
    buttons = [c["props"].get("value") for c in components if c["type"] == "button"]
    assert buttons == ["Start Training", "Stop", "Retry push"]
    ids = {c["props"].get("elem_id") for c in components}
    assert {"progress", "loss-plot", "log", "result", "history", "st-banner"} <= ids
    assert any(c["type"] == "timer" for c in components)  # the live log ticks
    public = {d["api_name"] for d in config["dependencies"] if d.get("api_visibility") == "public"}
    assert public == {
        "start_training",
        "training_status",
        "training_logs",
        "training_preflight",
        "stop_training",
        "retry_push",
    }
    assert "[app] runs folder" in server.log.read_text()
    # Start-up diagnostics come from a thread once torch is imported, never before the port.
    deadline = time.monotonic() + 120
    while '"cuda_available": false' not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()[-2000:]
        time.sleep(0.5)


def _runs(server: AppServer) -> list[str]:
    """The run folders (the lock files start with a dot: no run id does)."""
    if not server.runs.exists():
        return []
    return sorted(p.name for p in server.runs.iterdir() if not p.name.startswith("."))


def test_refused_params_start_nothing_and_a_later_start_works(
    server: AppServer, client: Any, tiny_model: Path, qa_jsonl: Path
) -> None:
    """Every value train.py would refuse is refused by the API first, before any run."""
    before = _runs(server)
    good = json.loads(_params(tiny_model, qa_jsonl, "after-refusals", epochs=2))
    cases = {
        json.dumps({**good, "run_id": "active.json"}): "params.run_id 'active.json' is reserved",
        json.dumps({**good, "output_repo": "prod/adapter", "push": True}): "not a repo this Space",
        json.dumps({**good, "epochs": "Infinity"}): "params.epochs must be a number > 0",
        json.dumps({**good, "epochs": 0}): "params.epochs must be a number > 0",
        json.dumps({**good, "lora_dropout": 5}): "params.lora_dropout must be a number >= 0",
        json.dumps({**good, "grad_accum": 0}): "params.grad_accum must be an integer >= 1",
        json.dumps({**good, "packing": "sometimes"}): "params.packing must be auto, on or off",
        json.dumps({**good, "output_repo": "--output-repo=x"}): "not a Hub repo id",
        json.dumps({**good, "run_id": "--output-repo=x"}): "params.run_id '--output-repo=x'",
        json.dumps({**good, "epochs": "9" * 1024 * 1024}): "at most 65536 bytes",
        "[" * 30000 + "]" * 30000: "nested too deeply",
    }
    for params, message in cases.items():
        with pytest.raises(AppError) as info:
            client.predict(params, api_name="/start_training")
        assert message in str(info.value), str(info.value)[:300]
    assert _runs(server) == before
    assert not (server.runs / "active.json").exists()

    started = call(client, "/start_training", json.dumps(good))
    assert (started["run_id"], started["created"]) == ("after-refusals", True)
    final = wait_for(client, "after-refusals", DONE)
    assert final["state"] == "succeeded", final
    launch = json.loads((server.runs / "after-refusals" / "launch.json").read_text())
    assert launch["argv"][0] == "--params-file"  # parameters never travel in argv
    assert str(tiny_model) not in " ".join(launch["argv"])


def test_a_killed_supervisor_leaves_the_run_active_and_no_second_start(
    server: AppServer, client: Any, tiny_model: Path, qa_jsonl: Path
) -> None:
    """SIGKILL to the supervisor: train.py trains on, so the run is running, not failed,
    and the one-run lock still refuses a second run until the trainer ends too."""
    call(client, "/start_training", _params(tiny_model, qa_jsonl, "orphan", epochs=400))
    deadline = time.monotonic() + 120
    while call(client, "/training_status", "orphan")["step"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    lock = json.loads((server.runs / ".active.json").read_text())
    record = json.loads((server.runs / "orphan" / "state.json").read_text())
    os.kill(record["supervisor_pid"], signal.SIGKILL)
    try:
        time.sleep(1.0)
        os.kill(record["train_pid"], 0)  # the trainer lives on
        status = call(client, "/training_status", "orphan")
        assert status["state"] == "running", status
        with pytest.raises(AppError, match="run orphan is still active"):
            client.predict(_params(tiny_model, qa_jsonl, "second"), api_name="/start_training")
        assert not (server.runs / "second").exists()
        again = call(client, "/start_training", "")
        assert (again["run_id"], again["created"]) == ("orphan", False)
    finally:
        os.killpg(lock["pgid"], signal.SIGKILL)  # end the trainer: the test is done
    final = wait_for(client, "orphan", DONE, timeout=60)
    assert final["state"] == "failed"
    assert "without recording a result" in final["error"]


def test_a_space_with_a_trigger_refuses_anonymous_callers(tmp_path: Path) -> None:
    """The tester's attack: an anonymous gradio_client aims a run at the production repo
    and at the container's files. None of it starts a run, and the trigger is never logged."""
    trigger = "trigger-" + os.urandom(8).hex()
    env = {"SPACETRAIN_TRIGGER": trigger, "OUTPUT_REPO": "org/adapter", "BASE_MODEL": "org/base"}
    app = start_app(tmp_path / "runs", tmp_path / "app.log", env)
    try:
        c = app.client()
        attacks = {
            json.dumps({"output_repo": "prod/adapter", "dataset": "a/b"}): "needs its trigger",
            json.dumps({"trigger": "guess", "dataset": "a/b"}): "needs its trigger",
            json.dumps({"trigger": trigger, "output_repo": "prod/adapter", "dataset": "a/b"}): (
                "'prod/adapter' is not a repo this Space pushes to"
            ),
            json.dumps({"trigger": trigger, "dataset": "/proc/self/environ"}): "not a Hub id",
            json.dumps({"trigger": trigger, "base_model": "/etc", "dataset": "a/b"}): (
                "not a Hub id"
            ),
        }
        for params, message in attacks.items():
            for api_name in ("/start_training", "/training_preflight"):
                with pytest.raises(AppError) as info:
                    c.predict(params, api_name=api_name)
                assert message in str(info.value)
                assert trigger not in str(info.value)
        c.close()
    finally:
        app.stop()
    assert _runs(app) == []
    assert trigger not in app.log.read_text()


def test_stop_training_cancels_the_run_cleanly(
    server: AppServer, client: Any, tiny_model: Path, qa_jsonl: Path
) -> None:
    """The CLI's cancel: stop_training ends the run, which is recorded as cancelled."""
    call(client, "/start_training", _params(tiny_model, qa_jsonl, "to-stop", epochs=400))
    deadline = time.monotonic() + 120
    while call(client, "/training_status", "to-stop")["step"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    with pytest.raises(AppError, match="wait must be a number of seconds"):
        client.predict(json.dumps({"run_id": "to-stop", "wait": "soon"}), api_name="/stop_training")
    stopped = call(client, "/stop_training", json.dumps({"run_id": "to-stop", "wait": 20}))
    assert stopped["stopping"] is True
    assert stopped["state"] == "cancelled", stopped
    assert stopped["step"] < stopped["total"]
    assert "stopped on request" in stopped["error"]
    record = json.loads((server.runs / "to-stop" / "state.json").read_text())
    assert record["returncode"] == 1
    assert not (server.runs / ".active.json").exists()  # the lock is free: a new run may start
    again = call(client, "/stop_training", "to-stop")  # not active: answered as it is
    assert (again["state"], again["stopping"]) == ("cancelled", False)
    with pytest.raises(AppError, match="run to-stop is cancelled: only a failed push"):
        client.predict("to-stop", api_name="/retry_push")
    with pytest.raises(AppError, match="no run is active"):
        client.predict("", api_name="/stop_training")


def test_stop_training_needs_the_trigger_where_the_space_has_one(
    tmp_path: Path, tiny_model: Path, qa_jsonl: Path
) -> None:
    trigger = "trigger-" + os.urandom(8).hex()
    app = start_app(
        tmp_path / "runs", tmp_path / "app.log", {**LOCAL, "SPACETRAIN_TRIGGER": trigger}
    )
    try:
        c = app.client()
        params = {
            **json.loads(_params(tiny_model, qa_jsonl, "guarded", epochs=400)),
            "trigger": trigger,
        }
        call(c, "/start_training", json.dumps(params))
        for request in ("guarded", json.dumps({"run_id": "guarded", "trigger": "guess"})):
            with pytest.raises(AppError, match="this Space needs its trigger") as info:
                c.predict(request, api_name="/stop_training")
            assert trigger not in str(info.value)
        assert call(c, "/training_status", "guarded")["state"] in ACTIVE
        stopped = call(c, "/stop_training", json.dumps({"run_id": "guarded", "trigger": trigger}))
        assert stopped["state"] == "cancelled", stopped
        c.close()
    finally:
        app.stop()
    assert trigger not in app.log.read_text()
