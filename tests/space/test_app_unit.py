"""space/app.py without a server: parameters, the run folder, the lock, log pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from .support import load_app

ENV = {"BASE_MODEL": "org/base", "DATASET": "org/data", "OUTPUT_REPO": "org/adapter"}


@pytest.fixture(scope="module")
def app() -> ModuleType:
    return load_app()


# ------------------------------------------------------------------ parameters


def test_params_default_to_space_variables(app: ModuleType) -> None:
    env = {**ENV, "EPOCHS": "2", "LEARNING_RATE": "1e-4", "PUSH": "true"}
    params = app.require_complete(app.parse_params("", env))
    assert params == {
        "base_model": "org/base",
        "dataset": "org/data",
        "output_repo": "org/adapter",
        "push": True,
        "epochs": 2.0,
        "learning_rate": 1e-4,
    }


def test_params_override_variables_and_become_train_flags(app: ModuleType, tmp_path: Path) -> None:
    text = json.dumps(
        {
            "dataset": "org/other",
            "dataset_revision": "abc123",
            "run_id": "r-1",
            "lora_r": 8,
            "packing": "on",
            "push": False,
        }
    )
    params = app.require_complete(app.parse_params(text, ENV))
    argv = app.train_argv(params, "r-1", tmp_path)
    assert argv == [
        "--output-dir", str(tmp_path), "--run-id", "r-1", "--no-push",
        "--base-model", "org/base", "--dataset", "org/other", "--dataset-revision", "abc123",
        "--lora-r", "8", "--packing", "on",
    ]  # fmt: skip
    parsed = app.trainer.build_parser().parse_args(argv)  # train.py reads what app.py wrote
    assert (parsed.dataset, parsed.lora_r, parsed.packing, parsed.no_push) == (
        "org/other", 8, "on", True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{bad", "params is not valid JSON"),
        ("[1, 2]", "params must be a JSON object, got list"),
        ('{"epoch": 3}', "unknown parameter(s) epoch"),
        ('{"hf_token": "x"}', "tokens are never passed in params"),
        ('{"epochs": "many"}', "params.epochs must be a number > 0 and <= 1000, got 'many'"),
        ('{"epochs": -1}', "params.epochs must be a number > 0"),
        ('{"epochs": 0}', "params.epochs must be a number > 0"),
        ('{"epochs": "Infinity"}', "params.epochs must be a number > 0"),
        ('{"lora_dropout": 5}', "params.lora_dropout must be a number >= 0 and < 1, got 5"),
        ('{"grad_accum": 0}', "params.grad_accum must be an integer >= 1"),
        ('{"output_repo": "%s"}' % ("x" * 300), "params.output_repo is 300 characters long"),
        ('{"lora_r": 2.5}', "params.lora_r must be an integer"),
        ('{"push": "maybe"}', "params.push must be true or false"),
        ('{"base_model": 7}', "params.base_model must be a string, got 7"),
        ('{"run_id": "../escape"}', "params.run_id '../escape'"),
        ('{"packing": "sometimes"}', "packing must be auto, on or off"),
    ],
)
def test_malformed_params_say_what_is_wrong(app: ModuleType, text: str, message: str) -> None:
    with pytest.raises(app.ParamsError) as info:
        app.parse_params(text, ENV)
    assert message in str(info.value)


def test_bad_space_variable_is_named(app: ModuleType) -> None:
    with pytest.raises(app.ParamsError, match="Space variable LORA_R must be an integer"):
        app.parse_params("{}", {**ENV, "LORA_R": "sixteen"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no base_model: pass params.base_model or set the Space variable BASE_MODEL"),
        ({"BASE_MODEL": "a/b"}, "no dataset"),
        ({"BASE_MODEL": "a/b", "DATASET": "c/d"}, "no output_repo"),
    ],
)
def test_a_new_run_needs_model_data_and_destination(
    app: ModuleType, env: dict[str, str], message: str
) -> None:
    with pytest.raises(app.ParamsError, match=message):
        app.require_complete(app.parse_params("{}", env))


# ------------------------------------------------------------------ runs on disk


def _fake_run(root: Path, run_id: str, log: str, state: dict | None) -> None:
    run = root / run_id
    run.mkdir(parents=True)
    (run / "launch.json").write_text(json.dumps({"run_id": run_id, "params": {}, "argv": []}))
    (run / "train.log").write_text(log)
    if state is not None:
        (run / "state.json").write_text(json.dumps(state))


def _events(*events: dict) -> str:
    return "".join(f"[train] line\n@@spacetrain {json.dumps(e)}\n" for e in events)


def test_status_reads_progress_adapter_and_errors(app: ModuleType, tmp_path: Path) -> None:
    runs = app.Runs(tmp_path)
    ok_log = _events(
        {"event": "train_begin", "total": 10},
        {"event": "step", "step": 10, "total": 10, "epoch": 2.0, "loss": 0.5, "tokens_per_s": 9},
        {"event": "pushed", "repo": "o/a", "revision": "f" * 40, "url": "u"},
        {"event": "done", "state": "succeeded"},
    )
    _fake_run(tmp_path, "ok", ok_log, {"returncode": 0, "finished_at": "t"})
    status = runs.status("ok")
    assert (status["state"], status["step"], status["total"], status["loss"]) == (
        "succeeded",
        10,
        10,
        0.5,
    )
    assert status["adapter"] == {"repo": "o/a", "revision": "f" * 40, "url": "u"}
    assert status["error"] is None and status["log_tail"] is None

    bad_log = "Traceback...\n" + _events({"event": "error", "error": "data.jsonl:3: bad"})
    _fake_run(tmp_path, "bad", bad_log, {"returncode": 2})
    status = runs.status("bad")
    assert status["state"] == "failed"
    assert status["error"] == "data.jsonl:3: bad"
    assert "Traceback..." in status["log_tail"]

    # No exit code and no live supervisor: the run died with its process.
    _fake_run(tmp_path, "lost", "[train] step 1/9\n", {"supervisor_pid": 1})
    lost = runs.status("lost")
    assert lost["state"] == "failed"
    assert "without recording a result" in lost["error"]

    with pytest.raises(app.UnknownRun):
        runs.status("nope")
    with pytest.raises(app.UnknownRun):
        runs.status("../ok")


def test_logs_page_by_byte_offsets(app: ModuleType, tmp_path: Path) -> None:
    lines = [f"[train] line {i} ünïcödé\n" for i in range(200)]
    _fake_run(tmp_path, "r", "".join(lines), {"returncode": 0})
    runs = app.Runs(tmp_path)
    text, offset, pages = "", 0, 0
    while True:
        page = runs.logs("r", offset, limit=300)
        assert page["offset"] == offset
        assert page["text"].endswith("\n")  # pages end on whole lines
        text += page["text"]
        offset = page["next_offset"]
        pages += 1
        if page["done"]:
            break
    assert text == "".join(lines)
    assert pages > 10
    assert runs.logs("r", 10**9)["text"] == ""  # past the end: empty, done


def test_partial_last_line_waits_while_running(app: ModuleType, tmp_path: Path) -> None:
    """A line still being written is not handed out until its newline arrives."""
    _fake_run(tmp_path, "r", "[train] one\n[train] tw", {"supervisor_pid": 0})
    runs = app.Runs(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock = {"run_id": "r", "pid": sleeper.pid, "ticks": app._start_ticks(sleeper.pid)}
        (tmp_path / "active.json").write_text(json.dumps(lock))
        page = runs.logs("r", 0)
        assert (page["text"], page["state"], page["done"]) == ("[train] one\n", "running", False)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(app: ModuleType, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "active.json").write_text(json.dumps({"run_id": "old", "pid": dead.pid}))
    _fake_run(tmp_path, "old", "[train] step 3/9\n", {"supervisor_pid": dead.pid})
    runs = app.Runs(tmp_path)
    assert runs.active() is None
    assert runs.status("old")["state"] == "failed"

    # A run that cannot even read its dataset: starts, fails fast, reports why. (The base
    # is a local folder: its self-check would otherwise ask the Hub, which is not here.)
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    params = {"base_model": str(base), "dataset": str(tmp_path / "missing.jsonl"), "push": False}
    status, created = runs.start({**params, "run_id": "new"})
    assert created and status["run_id"] == "new" and status["state"] in ("queued", "running")
    lock = json.loads((tmp_path / "active.json").read_text())
    assert lock["run_id"] == "new" and lock["pid"] != dead.pid
    deadline = time.monotonic() + 120
    while runs.status("new")["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    failed = runs.status("new")
    assert failed["state"] == "failed"
    assert failed["returncode"] == 2
    assert "missing.jsonl" in failed["error"]
    assert not (tmp_path / "active.json").exists()  # the supervisor released the lock


def test_live_lock_is_respected(app: ModuleType, tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _fake_run(tmp_path, "busy", "", None)
        lock = {"run_id": "busy", "pid": sleeper.pid, "ticks": app._start_ticks(sleeper.pid)}
        (tmp_path / "active.json").write_text(json.dumps(lock))
        runs = app.Runs(tmp_path)
        status, created = runs.start({"base_model": "a/b", "dataset": "c/d", "push": False})
        assert (status["run_id"], status["state"], created) == ("busy", "queued", False)
        with pytest.raises(app.ParamsError, match="run busy is still active"):
            runs.start({"base_model": "a/b", "dataset": "c/d", "run_id": "other"})
        assert not (tmp_path / "other").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not app.pid_alive(sleeper.pid, lock["ticks"])  # gone: the lock is stale now
    assert app.pid_alive(os.getpid())
    assert not app.pid_alive(os.getpid(), ticks=1)  # a recycled pid has another start time


def test_app_module_imports_neither_gradio_nor_torch() -> None:
    """The port must answer at once: heavy imports happen after launch or in a thread."""
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1], run_name='space_app'); "
        "print(sorted(m for m in ('gradio', 'torch', 'spacetrain') if m in sys.modules))"
    )
    from .support import APP_PY

    out = subprocess.run(
        [sys.executable, "-c", code, str(APP_PY)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_concurrent_status_calls_keep_the_log_position(app: ModuleType, tmp_path: Path) -> None:
    """Gradio answers in threads: parallel reads must not skip or repeat log lines."""
    from concurrent.futures import ThreadPoolExecutor

    steps = [{"event": "step", "step": i, "total": 5000, "loss": 1.0} for i in range(1, 3001)]
    _fake_run(tmp_path, "r", _events(*steps), {"supervisor_pid": 0})
    runs = app.Runs(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(lambda _: runs.status("r")["step"], range(32)))
    assert seen == [3000] * 32
    with (tmp_path / "r" / "train.log").open("a") as log:
        log.write(_events({"event": "step", "step": 3001, "total": 5000, "loss": 0.5}))
    assert runs.status("r")["step"] == 3001
