"""space/app.py without a server: parameters, the run folder, the lock, log pages."""

from __future__ import annotations

import contextlib
import json
import os
import signal
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


def test_params_override_variables_and_reach_train_py_in_a_file(
    app: ModuleType, tmp_path: Path
) -> None:
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
    file = tmp_path / "params.json"
    file.write_text(json.dumps(params))
    parsed = app.trainer.parse_args(["--params-file", str(file), "--output-dir", str(tmp_path)])
    assert (parsed.dataset, parsed.lora_r, parsed.packing, parsed.no_push) == (
        "org/other", 8, "on", True,
    )  # fmt: skip
    assert (parsed.base_model, parsed.output_repo, parsed.epochs) == ("org/base", None, 4.0)
    assert parsed.local_paths is False  # a Space's run reads Hub ids only


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


def _sleeper() -> subprocess.Popen[bytes]:
    """A stand-in supervisor: a session (and process group) leader, as app.py starts one."""
    code = "import time; time.sleep(30)"
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


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


@pytest.mark.e2e
def test_partial_last_line_waits_while_running(app: ModuleType, tmp_path: Path) -> None:
    """A line still being written is not handed out until its newline arrives."""
    _fake_run(tmp_path, "r", "[train] one\n[train] tw", {"supervisor_pid": 0})
    runs = app.Runs(tmp_path)
    sleeper = _sleeper()
    try:
        lock = {"run_id": "r", "pid": sleeper.pid, "ticks": app._start_ticks(sleeper.pid)}
        (tmp_path / app.LOCK_NAME).write_text(json.dumps(lock))
        page = runs.logs("r", 0)
        assert (page["text"], page["state"], page["done"]) == ("[train] one\n", "running", False)
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.e2e
def test_stale_lock_of_a_dead_process_is_taken_over(
    app: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / app.LOCK_NAME).write_text(json.dumps({"run_id": "old", "pid": dead.pid}))
    _fake_run(tmp_path, "old", "[train] step 3/9\n", {"supervisor_pid": dead.pid})
    runs = app.Runs(tmp_path)
    assert runs.active() is None
    assert runs.status("old")["state"] == "failed"

    # A run that cannot even read its dataset: starts, fails fast, reports why. (The base
    # is a local folder: its self-check would otherwise ask the Hub, which is not here.)
    monkeypatch.setenv("SPACETRAIN_ALLOW_LOCAL_PATHS", "1")  # the supervisor's environment
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    params = {"base_model": str(base), "dataset": str(tmp_path / "missing.jsonl"), "push": False}
    status, created = runs.start({**params, "run_id": "new"})
    assert created and status["run_id"] == "new" and status["state"] in ("queued", "running")
    lock = json.loads((tmp_path / app.LOCK_NAME).read_text())
    assert lock["run_id"] == "new" and lock["pid"] != dead.pid
    deadline = time.monotonic() + 120
    while runs.status("new")["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    failed = runs.status("new")
    assert failed["state"] == "failed"
    assert failed["returncode"] == 2
    assert "missing.jsonl" in failed["error"]
    assert not (tmp_path / app.LOCK_NAME).exists()  # the supervisor released the lock


@pytest.mark.e2e
def test_live_lock_is_respected(app: ModuleType, tmp_path: Path) -> None:
    sleeper = _sleeper()
    try:
        _fake_run(tmp_path, "busy", "", None)
        lock = {"run_id": "busy", "pid": sleeper.pid, "ticks": app._start_ticks(sleeper.pid)}
        (tmp_path / app.LOCK_NAME).write_text(json.dumps(lock))
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


@pytest.mark.e2e
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


@pytest.mark.e2e  # a real Gradio Blocks: the model stack
def test_the_queue_polls_for_work_every_20_ms_not_every_1_ms(app: ModuleType) -> None:
    """An idle app spent about 5% of a core polling its queue (1.4% after; measured with
    the real app here). The knobs are Gradio's own attributes: an upgrade that renames
    them fails this test instead of silently spinning again."""
    import gradio as gr

    demo = gr.Blocks().queue()
    assert demo._queue.sleep_when_free < app.QUEUE_IDLE_POLL_S  # Gradio's default spins
    assert app.quiet_queue(demo) is True
    assert demo._queue.sleep_when_free == app.QUEUE_IDLE_POLL_S == 0.02
    assert demo._queue.progress_update_sleep_when_free == app.QUEUE_PROGRESS_POLL_S


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


# ------------------------------------------------------------------ who may drive the Space


def test_output_repo_only_from_the_space_configuration(app: ModuleType) -> None:
    """An anonymous caller must not move a repo the Space's token can write."""
    with pytest.raises(app.ParamsError, match="'prod/adapter' is not a repo this Space pushes"):
        app.parse_params('{"output_repo": "prod/adapter"}', ENV)
    with pytest.raises(app.ParamsError, match="configured: none"):
        app.parse_params('{"output_repo": "org/adapter"}', {"BASE_MODEL": "a/b"})
    assert app.parse_params('{"output_repo": "org/adapter"}', ENV)["output_repo"] == "org/adapter"
    listed = {**ENV, "SPACETRAIN_OUTPUT_REPOS": " org/one , org/two,"}
    assert app.parse_params('{"output_repo": "org/two"}', listed)["output_repo"] == "org/two"
    # Not pushing: the repo is never written, so it does not matter.
    assert app.parse_params('{"output_repo": "x/y", "push": false}', ENV)["push"] is False


# Paths, URLs and tricks an attacker tried as base_model or dataset (or output_repo).
PATH_TRICKS = [
    "/etc",
    "/proc/self/environ",
    "../etc/passwd",
    "./x",
    "~",
    "~/.ssh",
    "file:///etc/passwd",
    "hf.co/org/model",
    "https://huggingface.co/org/model",
    "org/../etc",
    "org/model/../../x",
    "org//model",
    "/org/model",
    "org/model/",
    "org/.hidden",
    ".org/model",
    "org/mo--del",
    "org/model.git",
    "org/model\n",  # stripped to a Hub id: accepted below, as the Hub would
    "org/mo del",
    "org/mødel",
    "C:\\Windows",
    "org\\model",
    "a" * 60 + "/" + "b" * 60,
    "-rf/x",
    "org/model;rm",
    "$HOME/x",
]


@pytest.mark.parametrize("ref", PATH_TRICKS)
def test_model_and_dataset_are_hub_ids_unless_the_space_allows_paths(
    app: ModuleType, ref: str
) -> None:
    for name in ("base_model", "dataset"):
        text = json.dumps({name: ref})
        if ref.strip() == "org/model":
            assert app.parse_params(text, ENV)[name] == "org/model"
            continue
        with pytest.raises(app.ParamsError, match=f"{name}|not a Hub id"):
            app.parse_params(text, ENV)
    output = json.dumps({"output_repo": ref, "push": True})
    if ref.strip() != "org/model":
        with pytest.raises(app.ParamsError):
            app.parse_params(output, {**ENV, "SPACETRAIN_OUTPUT_REPOS": ref})


def test_local_paths_only_with_the_space_variable(app: ModuleType, tmp_path: Path) -> None:
    text = json.dumps({"base_model": str(tmp_path), "dataset": str(tmp_path / "d.jsonl")})
    with pytest.raises(app.ParamsError, match="SPACETRAIN_ALLOW_LOCAL_PATHS=1"):
        app.parse_params(text, ENV)
    with pytest.raises(app.ParamsError, match="base_model '/etc'"):  # a variable obeys it too
        app.parse_params("{}", {**ENV, "BASE_MODEL": "/etc"})
    allowed = app.parse_params(text, {**ENV, "SPACETRAIN_ALLOW_LOCAL_PATHS": "1"})
    assert allowed["base_model"] == str(tmp_path)


def test_a_space_with_a_trigger_answers_only_callers_that_carry_it(app: ModuleType) -> None:
    env = {**ENV, "SPACETRAIN_TRIGGER": "s3cret-trigger"}
    for text in ("", "{}", '{"trigger": ""}', '{"trigger": "guess"}', '{"trigger": 1}', "[]"):
        with pytest.raises(app.ParamsError, match="needs its trigger") as info:
            app.parse_params(text, env)
        assert "s3cret-trigger" not in str(info.value)
    params = app.parse_params('{"trigger": "s3cret-trigger", "epochs": 2}', env)
    assert "trigger" not in params and params["epochs"] == 2.0
    # Without the secret the key is ignored (and never kept).
    assert "trigger" not in app.parse_params('{"trigger": "x"}', ENV)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"epochs": "%s"}' % ("9" * (1024 * 1024)), "at most 65536 bytes"),
        ("[" * 60000 + "]" * 60000, "at most 65536 bytes"),
        ("[" * 30000 + "]" * 30000, "nested too deeply"),
        ('{"run_id": "active.json"}', "params.run_id 'active.json' is reserved"),
        ('{"run_id": "ACTIVE.JSON"}', "is reserved"),
        ('{"run_id": ".active.json"}', "params.run_id '.active.json'"),
        ('{"run_id": ".lock"}', "params.run_id '.lock'"),
        ('{"run_id": "a/b"}', "params.run_id 'a/b'"),
        ('{"run_id": ".."}', "params.run_id '..'"),
        ('{"run_id": "%s"}' % ("r" * 65), "params.run_id"),
        ('{"run_id": "--output-repo=x"}', "params.run_id '--output-repo=x'"),
        ('{"output_repo": "--output-repo=x"}', "not a Hub repo id"),
        ('{"dataset": "--output-repo=x"}', "not a Hub id"),
        ('{"epochs": "Infinity"}', "params.epochs must be a number > 0"),
        ('{"epochs": NaN}', "params.epochs must be a number > 0"),
        ('{"epochs": 1e309}', "params.epochs must be a number > 0"),
        ('{"epochs": [4]}', "params.epochs must be a number"),
        ('{"epochs": {"a": 1}}', "params.epochs must be a number"),
        ('{"lora_dropout": 5}', "params.lora_dropout must be a number >= 0 and < 1"),
        ('{"grad_accum": 0}', "params.grad_accum must be an integer >= 1"),
        ('{"seed": -1}', "params.seed must be an integer >= 0"),
        ('{"packing": "sometimes"}', "params.packing must be auto, on or off"),
        ('{"push": 1}', "params.push must be true or false"),
        ('{"": 1}', "unknown parameter(s) ; known"),
        ('{"__proto__": {}}', "unknown parameter(s) __proto__"),
        ('{"HF_TOKEN": "hf_x"}', "HF_TOKEN: tokens are never passed"),
    ],
)
def test_attacker_params_are_refused_before_any_run(
    app: ModuleType, tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(app.ParamsError) as info:
        app.parse_params(text, ENV)
    assert message in str(info.value)
    assert len(str(info.value)) < 600 and "\n" not in str(info.value)


def test_a_run_id_cannot_name_a_file_of_the_runs_folder(app: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("not a run")
    runs = app.Runs(tmp_path)
    with pytest.raises(app.ParamsError, match="names a file of the runs folder"):
        runs.start({"base_model": "a/b", "dataset": "c/d", "push": False, "run_id": "notes"})
    assert (tmp_path / "notes").read_text() == "not a run"
    assert not runs.lock_path.exists()


def test_train_py_checks_its_params_file_with_the_same_rules(
    app: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = app.trainer
    file = tmp_path / "params.json"

    def args(params: object) -> object:
        file.write_text(params if isinstance(params, str) else json.dumps(params))
        return train.parse_args(["--params-file", str(file), "--output-dir", str(tmp_path)])

    base = {"base_model": "a/b", "dataset": "c/d", "push": False}
    assert args({**base, "epochs": 2.5}).epochs == 2.5
    for bad, message in [
        ({**base, "epochs": 0}, "epochs must be a number > 0"),
        ({**base, "packing": "sometimes"}, "packing must be auto, on or off"),
        ({**base, "base_model": "/etc"}, "not a Hub id"),
        ({**base, "push": True, "output_repo": "prod/adapter"}, "not a repo this Space"),
        ({"dataset": "c/d", "push": False}, "no base_model"),
        ("{" + '"epochs": 1,' * 20000 + "}", "at most 65536 bytes"),
    ]:
        with pytest.raises(train.BadInput, match=message):
            args(bad)
    monkeypatch.setenv("SPACETRAIN_ALLOW_LOCAL_PATHS", "1")
    assert args({**base, "base_model": str(tmp_path)}).local_paths is True
    with pytest.raises(SystemExit):
        train.parse_args(["--params-file", str(file), "--output-dir", "x", "--epochs", "3"])


@pytest.mark.e2e
def test_the_lock_follows_the_whole_process_group(app: ModuleType, tmp_path: Path) -> None:
    """A killed supervisor leaves train.py running: still active, no second start."""
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "time.sleep(60)"
    )
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while len(_group(leader.pid)) < 2:  # the "trainer" joined the group
            assert time.monotonic() < deadline
            time.sleep(0.05)
        _fake_run(tmp_path, "busy", "[train] step 1/9\n", {"supervisor_pid": leader.pid})
        lock = {"run_id": "busy", "pid": leader.pid, "pgid": leader.pid}
        lock["ticks"] = app._start_ticks(leader.pid)
        (tmp_path / app.LOCK_NAME).write_text(json.dumps(lock))
        runs = app.Runs(tmp_path)
        leader.kill()  # SIGKILL: the supervisor records nothing and releases nothing
        leader.wait()
        assert runs.active() is not None
        assert runs.status("busy")["state"] == "running"
        with pytest.raises(app.ParamsError, match="run busy is still active"):
            runs.start({"base_model": "a/b", "dataset": "c/d", "push": False, "run_id": "two"})
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
    deadline = time.monotonic() + 20
    while app.group_alive(leader.pid, lock["ticks"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert runs.active() is None
    assert runs.status("busy")["state"] == "failed"  # no exit code, no "done" event


def test_a_run_whose_supervisor_died_is_judged_by_its_last_event(
    app: ModuleType, tmp_path: Path
) -> None:
    _fake_run(tmp_path, "r", _events({"event": "done", "state": "succeeded"}), {"train_pid": 1})
    assert app.Runs(tmp_path).status("r")["state"] == "succeeded"


def _group(pgid: int) -> list[int]:
    """The live members of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] not in "ZX":
                    members.append(int(entry.name))
    return members


# ------------------------------------------------------------------ cancelled, retried, shown


def test_cancelled_retried_and_the_last_step_of_a_success(app: ModuleType, tmp_path: Path) -> None:
    runs = app.Runs(tmp_path)
    steps = [{"event": "step", "step": s, "total": 13, "loss": 2.0 / s} for s in (1, 10)]
    done = {"event": "done", "steps": 13, "train_loss": 0.4}
    _fake_run(tmp_path, "ok", _events(*steps, done), {"returncode": 0, "started_at": None})
    ok = runs.status("ok")
    assert (ok["step"], ok["total"]) == (13, 13)  # not the last logged step, 10/13
    assert runs.summary("ok").points == [(1, 2.0), (10, 0.2)]

    stopped = _events(*steps, {"event": "error", "state": "cancelled", "error": "cancelled: x"})
    _fake_run(tmp_path, "stopped", stopped, {"returncode": 1})
    status = runs.status("stopped")
    assert (status["state"], status["error"], status["step"]) == ("cancelled", "cancelled: x", 10)

    # Asked to stop, killed before train.py could say so (a queued run): still cancelled.
    _fake_run(tmp_path, "asked", "", None)
    (tmp_path / "asked" / app.CANCEL_NAME).write_text("{}")
    assert runs.status("asked")["state"] == "cancelled"

    # A failed push retried with success: the run reads as succeeded, with that commit.
    _fake_run(
        tmp_path,
        "pushed",
        _events({"event": "error", "error": "Hub unreachable"}),
        {"returncode": 3},
    )
    assert runs.status("pushed")["state"] == "failed"
    retried = {"repo": "o/a", "revision": "c" * 40, "url": "u"}
    (tmp_path / "pushed" / app.PUSH_NAME).write_text(json.dumps(retried))
    status = runs.status("pushed")
    assert (status["state"], status["adapter"]) == ("succeeded", retried)
    assert [s["run_id"] for s in runs.history()] == ["pushed", "asked", "stopped", "ok"]


def test_retry_push_needs_a_failed_run_with_a_saved_adapter(
    app: ModuleType, tmp_path: Path
) -> None:
    runs = app.Runs(tmp_path)
    _fake_run(tmp_path, "early", _events({"event": "error", "error": "boom"}), {"returncode": 1})
    launch = tmp_path / "early" / "launch.json"
    launch.write_text(json.dumps({"run_id": "early", "params": {"output_repo": "o/a"}}))
    with pytest.raises(app.ParamsError, match="saved no complete adapter"):
        runs.retry_push("early")
    launch.write_text(json.dumps({"run_id": "early", "params": {"push": False}}))
    with pytest.raises(app.ParamsError, match="without an output repo"):
        runs.retry_push("early")
    _fake_run(tmp_path, "fine", "", {"returncode": 0})
    with pytest.raises(app.ParamsError, match="run fine is succeeded: only a failed push"):
        runs.retry_push("fine")


@pytest.mark.e2e  # imports the model stack (gradio renders the page)
def test_a_page_tick_reads_the_lock_once_and_offers_retry_as_retry_push_decides(
    app: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPACETRAIN_RUNS_DIR", str(tmp_path))
    app.runs.cache_clear()
    scans: list[tuple] = []
    real = app.group_alive
    monkeypatch.setattr(app, "group_alive", lambda *a: scans.append(a) or real(*a))
    sleeper = _sleeper()
    try:
        for run_id in ("a", "b", "busy"):  # no exit code yet: each one asks about the lock
            _fake_run(tmp_path, run_id, "", {"started_at": None})
        lock = {"run_id": "busy", "pid": sleeper.pid, "ticks": app._start_ticks(sleeper.pid)}
        (tmp_path / app.LOCK_NAME).write_text(json.dumps(lock))
        shown = app.page("a")
        assert len(scans) == 1  # one /proc scan per tick, however many runs it shows
        assert shown["active"] and "Run busy is active" in shown["reason"]
    finally:
        sleeper.kill()
        sleeper.wait()
    failed = _events({"event": "error", "error": "Hub unreachable"})
    _fake_run(tmp_path, "push-failed", failed, {"returncode": 3})
    run = tmp_path / "push-failed"
    (run / "launch.json").write_text(
        json.dumps({"run_id": "push-failed", "params": {"output_repo": "o/a"}, "argv": []})
    )
    assert app.page("push-failed")["retry"] is False  # no saved adapter: nothing to push
    for name in (*app.trainer.ADAPTER_FILES, "run.json", "README.md"):
        (run / "adapter").mkdir(exist_ok=True)
        (run / "adapter" / name).write_text("{}")
    assert app.runs().retry_refusal("push-failed") is None
    assert app.page("push-failed")["retry"] is True
    app.runs.cache_clear()


def test_stop_of_a_run_that_is_not_active_changes_nothing(app: ModuleType, tmp_path: Path) -> None:
    runs = app.Runs(tmp_path)
    _fake_run(tmp_path, "old", _events({"event": "done"}), {"returncode": 0})
    status = runs.stop("old", wait_s=0)
    assert (status["state"], status["stopping"]) == ("succeeded", False)
    assert not (tmp_path / "old" / app.CANCEL_NAME).exists()


def test_stop_requests_carry_the_trigger_and_name_a_run(app: ModuleType) -> None:
    env = {"SPACETRAIN_TRIGGER": "s3cret"}
    assert app.run_request("r-1", {}) == ("r-1", {"run_id": "r-1"})
    assert app.run_request('{"run_id": "r-1", "wait": 3}', {}) == (
        "r-1",
        {"run_id": "r-1", "wait": 3},
    )
    for text in ("r-1", '{"run_id": "r-1"}', '{"run_id": "r-1", "trigger": "nope"}'):
        with pytest.raises(app.ParamsError, match="needs its trigger") as info:
            app.run_request(text, env)
        assert "s3cret" not in str(info.value)
    run_id, rest = app.run_request('{"run_id": "r-1", "trigger": "s3cret"}', env)
    assert (run_id, rest) == ("r-1", {"run_id": "r-1"})  # the trigger goes no further
    with pytest.raises(app.ParamsError, match="not valid JSON"):
        app.run_request("{oops", {})
    with pytest.raises(app.ParamsError, match="run_id must be a string"):
        app.run_request('{"run_id": 7}', {})


def test_the_form_sends_typed_values_and_advanced_json_wins(app: ModuleType) -> None:
    values = {"base_model": " org/base ", "dataset": "", "epochs": 3.0, "lora_r": 8.0}
    sent = json.loads(app.form_params(values, '{"batch_size": 2, "epochs": 5}', "t"))
    assert sent == {
        "base_model": "org/base",
        "epochs": 5,
        "lora_r": 8,
        "batch_size": 2,
        "trigger": "t",
    }
    assert isinstance(sent["lora_r"], int)
    assert json.loads(app.form_params({"epochs": None}, "", "")) == {}
    for advanced, message in (("[1]", "must be a JSON object"), ("{x", "not valid JSON")):
        with pytest.raises(app.ParamsError, match=message):
            app.form_params({}, advanced)


def test_the_form_shows_where_each_default_comes_from(app: ModuleType) -> None:
    defaults = app.form_defaults({"EPOCHS": "2", "LORA_R": "lots", "BASE_MODEL": "org/base"})
    assert defaults["epochs"] == (2.0, "from the Space variable EPOCHS")
    assert defaults["base_model"] == ("org/base", "from the Space variable BASE_MODEL")
    assert defaults["lora_r"] == (16, "train.py's default (LORA_R not set)")  # unreadable
    assert defaults["dataset"] == (None, "DATASET is not set: required")


def test_renderers_say_progress_losses_and_escape_the_log(app: ModuleType, tmp_path: Path) -> None:
    assert [app.duration(s) for s in (None, 4.4, 185, 7440)] == ["\u2013", "4s", "3m 05s", "2h 04m"]
    status = {
        "run_id": "r-1", "state": "running", "step": 25, "total": 100, "epoch": 1.25,
        "loss": 0.5, "elapsed_s": 30.0, "eta_s": 90.0, "tokens_per_s": 1234.5, "params": {},
    }  # fmt: skip
    header = app.render_progress(status, None)
    assert 'aria-valuenow="25"' in header and "25%" in header
    assert "step 25/100" in header and "ETA 1m 30s" in header and "1234 tok/s" in header
    assert 'data-state="none"' in app.render_progress(None, None)

    plot = app.render_plot([(1, 2.0), (10, 1.0), (20, 0.5)])
    assert 'data-points="3"' in plot and plot.count("<circle") == 3 and "<polyline" in plot
    assert 'data-points="0"' in app.render_plot([])
    assert 'data-points="1"' in app.render_plot([(1, 2.0)])  # one point: no division by zero

    log = app.render_log("<script>x</script>\n[train] done", tmp_path / "train.log")
    assert "&lt;script&gt;" in log and "<script>" not in log
    assert f'href="gradio_api/file={tmp_path}/train.log"' in log

    pushed = {**status, "state": "succeeded", "adapter": {"repo": "o/a", "revision": "c" * 40}}
    card = app.render_result(pushed, None, None)
    assert 'class="st-repo" href="https://huggingface.co/o/a"' in card
    assert f"https://huggingface.co/o/a/commit/{'c' * 40}" in card
    assert f"&quot;o/a&quot;, revision=&quot;{'c' * 40}&quot;" in card
    failed = {**status, "state": "failed", "error": "Hub unreachable", "adapter": None}
    card = app.render_result(failed, None, tmp_path)
    assert "Retry push" in card and "adapter_model.safetensors" in card
    assert app.render_result(status, None, None) == ""  # no card while running
    table = app.render_history([pushed, failed])
    assert table.count("<tr data-run=") == 2 and "o/a@ccccccc" in table
    assert app.render_banner({"warning": "no <GPU>"}).count("&lt;GPU&gt;") == 1
    assert app.render_banner({}) == ""
