"""train, fetch and promote end to end: the real space/ folder as a Space on localhub.

One module fixture builds the world once: a localhub that accepts one token, a tiny
Llama and a small chat dataset pushed to it, the REAL ``space/`` folder uploaded as a
Docker Space (its variables: the runs folder and one OpenMP thread; its secret: the
token), and a project folder whose ``[tool.spacetrain]`` names them. It then trains
ONCE with ``spacetrain train`` in a subprocess, with the Space's address failing (503)
for a few seconds in the middle of the run, so the follower must reconnect to keep
following the same run. (Restarting the Space would not do: as on the Hub, it ends the
run with the container.)
Every other test reuses that run: following it again, fetching its adapter, promoting
it. Commands run as CI runs them: subprocesses with HF_ENDPOINT and HF_TOKEN set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi, ModelCard

from spacetrain.evaluate.gate import load_gate
from spacetrain.evaluate.report import build_report
from spacetrain.evaluate.scoring import CaseResult
from spacetrain.localhub import LocalHub

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hf_adapterStagesE2eTokenQwErTyUiOp"
SPACE, MODEL, DATA, ADAPTER = "me/trainer", "me/tiny-llama", "me/qa", "me/qa-adapter"
RUN_ID = "run-1"
QA = [
    ("What does Umoja mean?", "Unity."),
    ("What does Nia mean?", "Purpose."),
    ("What does Kuumba mean?", "Creativity."),
    ("What does Imani mean?", "Faith."),
    ("How many days does Kwanzaa last?", "Seven days."),
    ("When does Kwanzaa begin?", "On December 26."),
    ("What is the kinara?", "The candle holder."),
    ("What is the mkeka?", "A straw mat."),
]
# A suite every output passes (no output has 1000 words): the tiny model learns
# nothing in three epochs, and these tests are about promotion, not about quality.
SUITE = """\
name: qa
generation: {max_new_tokens: 8, batch_size: 4}
cases:
  - {id: umoja, category: principles, prompt: "What does Umoja mean?", checks: [{max_words: 1000}]}
  - {id: nia, category: principles, prompt: "What does Nia mean?", checks: [{max_words: 1000}]}
  - {id: kinara, category: symbols, prompt: "What is the kinara?", checks: [{max_words: 1000}]}
"""
PYPROJECT = f"""\
[project]
name = "adapter-stages-e2e"
version = "0"

[tool.spacetrain]
space = "{SPACE}"
after_training = "pause"
gate = "gate.yaml"

[tool.spacetrain.adapters.qa]
base_model = "{MODEL}"
dataset = "{DATA}"
output_repo = "{ADAPTER}"
suite = "suite.yaml"
train = {{ epochs = 3, learning_rate = 5e-3, batch_size = 4, grad_accum = 1, seed = 0 }}
"""


@dataclass
class World:
    hub: LocalHub
    api: HfApi
    project: Path
    runs: Path
    env: dict[str, str]
    app_host: str = ""

    def spacetrain(
        self, *args: str | Path, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "spacetrain", *map(str, args)],
            cwd=self.project,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stage(self) -> str:
        return str(self.api.get_space_runtime(SPACE).stage)

    def ensure_running(self, timeout: float = 120) -> None:
        """Restart the Space if it is not serving (train pauses it) and wait for RUNNING."""
        if self.stage() != "RUNNING":
            self.api.restart_space(SPACE)
        deadline = time.monotonic() + timeout
        while (stage := self.stage()) != "RUNNING":
            assert "ERROR" not in stage, self.api.get_space_runtime(SPACE).raw
            assert time.monotonic() < deadline, stage
            time.sleep(0.2)

    def read(self, name: str, revision: str) -> bytes:
        """A file of the adapter repo at a revision (through the Hub, not the fetch)."""
        path = self.api.hf_hub_download(
            ADAPTER, name, revision=revision, cache_dir=self.project.parent / "read-cache"
        )
        return Path(path).read_bytes()

    def run_folders(self) -> set[str]:
        return {p.name for p in self.runs.iterdir() if (p / "launch.json").is_file()}

    def adapter_commits(self) -> list[Any]:
        return self.api.list_repo_commits(ADAPTER)


@dataclass(frozen=True)
class Trained:
    proc: subprocess.CompletedProcess
    state: dict[str, Any]
    state_path: Path
    seconds: float
    outage_while: str  # the run's state when the Space's address began failing


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, tiny_llama: Callable[[list[str]], Path]
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("adapter-stages")
    model = tiny_llama([f"{q} {a}" for q, a in QA])
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in QA
    ]
    data = _write_jsonl(root / "train.jsonl", rows)
    project = root / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "suite.yaml").write_text(SUITE)
    shutil.copyfile(REPO / "policy" / "gate.yaml", project / "gate.yaml")
    runs = root / "runs"
    env = {
        **os.environ,
        "HF_TOKEN": TOKEN,
        "HF_HOME": str(root / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "SPACETRAIN_HUB_DEADLINE": "30",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("GITHUB_OUTPUT", None)
    with LocalHub(root=root / "hub", tokens={TOKEN: "me"}) as hub:
        env["HF_ENDPOINT"] = hub.url
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo(MODEL)
        api.upload_folder(repo_id=MODEL, folder_path=model)
        api.create_repo(DATA, repo_type="dataset")
        api.upload_file(
            path_or_fileobj=data, path_in_repo="train.jsonl", repo_id=DATA, repo_type="dataset"
        )
        api.create_repo(
            SPACE,
            repo_type="space",
            space_sdk="docker",
            space_variables=[
                {"key": "SPACETRAIN_RUNS_DIR", "value": str(runs)},
                {"key": "OMP_NUM_THREADS", "value": "1"},
                {"key": "OUTPUT_REPO", "value": ADAPTER},  # the repos its API pushes to
                {"key": "SPACETRAIN_OUTPUT_REPOS", "value": "me/timeout-adapter"},
            ],
            space_secrets=[{"key": "HF_TOKEN", "value": TOKEN}],
        )
        api.upload_folder(repo_id=SPACE, repo_type="space", folder_path=REPO / "space")
        w = World(hub, api, project, runs, env)
        w.ensure_running()
        yield w


@pytest.fixture(scope="module")
def trained(world: World) -> Trained:
    """Train once; the Space's address fails for a while as the run goes on."""
    state_path = world.project / "state.json"
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacetrain", "train", "--state", state_path,
         "--run-id", RUN_ID, "--poll-interval", "1", "--timeout", "600"],
        cwd=world.project, env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (state_path.exists() and json.loads(state_path.read_text()).get("run_id")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        outage_while = json.loads(state_path.read_text())["run_state"]
        # 503s from the Space's proxy: the app and its run go on, the follower loses them
        world.hub.add_faults({"app_outage": {"repo": SPACE, "seconds": 3}})
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - start
    print(f"\ntrain (with a 3 s outage) took {seconds:.1f} s")
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    state = json.loads(state_path.read_text())
    return Trained(done, state, state_path, seconds, outage_while)


def _state_copy(trained: Trained, dest: Path, **changes: Any) -> Path:
    data = {**trained.state, **changes}
    dest.write_text(json.dumps(data))
    return dest


# ------------------------------------------------------------------ train


def test_train_follows_the_run_through_an_outage_and_releases_the_gpu(
    world: World, trained: Trained
) -> None:
    proc = trained.proc
    assert proc.returncode == 0, proc.stderr[-4000:]
    head = world.adapter_commits()[0]
    assert f"spacetrain run {RUN_ID}" in head.title
    assert trained.state["run_id"] == RUN_ID
    assert trained.state["run_state"] == "succeeded"
    assert trained.state["adapter_repo"] == ADAPTER
    assert trained.state["adapter_revision"] == head.commit_id
    assert proc.stdout.splitlines() == [
        f"run_id={RUN_ID}",
        f"adapter_repo={ADAPTER}",
        f"adapter_revision={head.commit_id}",
        "released=paused",
    ]
    err = proc.stderr
    assert f"[train] started run {RUN_ID} on {SPACE}" in err
    assert trained.outage_while in ("queued", "running")
    assert "[train] connection to me/trainer lost" in err
    assert "[train] reconnected to me/trainer" in err
    # The Space's log streamed in order, each line once, events left out.
    log = (world.runs / RUN_ID / "train.log").read_text().splitlines()
    people = [line for line in log if line.strip() and not line.startswith("@@spacetrain")]
    shown = [line for line in err.splitlines() if line in set(people)]
    assert shown == people
    assert "@@spacetrain" not in err
    assert any(line.startswith("[train] step 6/6") for line in shown)
    assert f"[train] run {RUN_ID} succeeded" in err
    # The GPU bill stopped: paused, and the meter no longer runs.
    assert world.stage() == "PAUSED"
    assert world.hub.billing()["spaces"][SPACE]["billing"] is None
    assert TOKEN not in proc.stdout + err


def test_train_again_with_the_same_run_id_follows_it_and_starts_nothing(
    world: World, trained: Trained, tmp_path: Path
) -> None:
    world.ensure_running()
    commits, folders = len(world.adapter_commits()), world.run_folders()
    state = _state_copy(trained, tmp_path / "state.json")
    proc = world.spacetrain("train", "--state", state, "--run-id", RUN_ID, "--keep-running",
                            "--poll-interval", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"run {RUN_ID} already exists on {SPACE}" in proc.stderr
    assert "following it, starting nothing" in proc.stderr
    assert f"adapter_revision={trained.state['adapter_revision']}" in proc.stdout
    assert "released=kept running" in proc.stdout
    assert world.run_folders() == folders
    assert len(world.adapter_commits()) == commits
    assert world.stage() == "RUNNING"  # --keep-running
    assert json.loads(state.read_text())["adapter_revision"] == trained.state["adapter_revision"]


def test_a_failing_run_exits_1_with_its_log_tail_and_still_releases(
    world: World, trained: Trained, tmp_path: Path
) -> None:
    # A dataset the Space can read (so its self-check passes) with a malformed line: the
    # run starts and fails. (An unreadable one never starts: test_train_preflight_e2e.py.)
    broken = "me/broken-qa"
    world.api.create_repo(broken, repo_type="dataset", exist_ok=True)
    good = {"messages": [{"role": "user", "content": "Hi?"},
                         {"role": "assistant", "content": "Hello."}]}  # fmt: skip
    lines = json.dumps(good) + '\n{"messages": [}\n'
    world.api.upload_file(
        path_or_fileobj=lines.encode(), path_in_repo="train.jsonl", repo_id=broken,
        repo_type="dataset",
    )  # fmt: skip
    world.ensure_running()
    commits = len(world.adapter_commits())
    state = _state_copy(trained, tmp_path / "state.json")
    proc = world.spacetrain(
        "train", "--state", state, "--run-id", "bad-data", "--dataset", broken,
        "--poll-interval", "1",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"spacetrain train: error: run bad-data failed: {broken}@")
    assert "/train.jsonl:2: malformed JSON" in last
    assert "[train] ---- last " in proc.stderr
    tail = proc.stderr.split("[train] ---- last ", 1)[1]
    assert f"train.py: error: {broken}@" in tail  # its own line
    assert proc.stdout == ""
    recorded = json.loads(state.read_text())
    assert recorded["run_id"] == "bad-data" and recorded["run_state"] == "failed"
    assert recorded["adapter_revision"] is None and recorded["adapter_dir"] is None
    assert len(world.adapter_commits()) == commits
    assert world.stage() == "PAUSED"


def test_a_different_active_run_is_neither_followed_nor_paused(
    world: World, tmp_path: Path
) -> None:
    from gradio_client import Client

    world.ensure_running()
    host = world.api.space_info(SPACE).host
    assert host
    client = Client(host, verbose=False, download_files=False)
    try:
        params = {"run_id": "someone-else", "base_model": MODEL, "dataset": DATA,
                  "push": False, "epochs": 1000, "batch_size": 1, "grad_accum": 1}  # fmt: skip
        started = json.loads(client.predict(json.dumps(params), api_name="/start_training"))
        assert started["created"] is True
        proc = world.spacetrain("train", "--state", tmp_path / "state.json", "--run-id", "mine")
        status = json.loads(client.predict("someone-else", api_name="/training_status"))
        assert status["state"] in ("queued", "running"), "the other run ended too soon"
        assert proc.returncode == 1, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last == (
            "spacetrain train: error: the Space is busy with run someone-else, not run mine; "
            "following neither. Wait until it ends, or follow it with --run-id someone-else"
        )
        assert "another run is active" in proc.stderr
        assert world.stage() == "RUNNING"  # pausing would have killed the other run
        assert "mine" not in world.run_folders()
        # train recorded why it held (the workflow's release step is skipped on it) ...
        recorded = json.loads((tmp_path / "state.json").read_text())
        assert recorded["space_hold"] == "the Space is training run someone-else, not ours"
        # ... and no other entry point pauses it either: `spacetrain release` holds too
        held = world.spacetrain("release", "--state", tmp_path / "state.json")
        assert (held.returncode, held.stdout.strip()) == (0, "held"), held.stderr
        assert "it is training run someone-else" in held.stderr
        bare = world.spacetrain("release", "--state", tmp_path / "none.json")  # no run of ours
        assert bare.stdout.strip() == "held"
        assert world.stage() == "RUNNING"
        # The other run never noticed (it cannot end by itself before this point, however
        # slow the machine): its owner stops it, and the Space is free again.
        status = json.loads(client.predict("someone-else", api_name="/training_status"))
        assert status["state"] == "running", status
        client.predict("someone-else", api_name="/stop_training")
        deadline = time.monotonic() + 60
        while status["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
            status = json.loads(client.predict("someone-else", api_name="/training_status"))
        assert status["state"] == "cancelled", status
    finally:
        client.close()


def _train_processes(run_id: str) -> list[int]:
    """Live train.py processes of ``run_id``, whatever their session or parent."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        # The supervisor runs train.py --params-file RUNS/<run_id>/params.json.
        wanted = f"/{run_id}/params.json".encode()
        ours = any(a.endswith(b"train.py") for a in argv) and any(a.endswith(wanted) for a in argv)
        if ours and state != "Z":
            pids.append(int(proc.name))
    return pids


def _gone(run_id: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while _train_processes(run_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_deadline_ends_the_run_with_the_space_a_sigterm_stops_ours_first(
    world: World, tmp_path: Path
) -> None:
    """A deadline releases (pauses) the Space, which ends the container and the run in it,
    as on the Hub; a SIGTERM stops our run (cancelled) before releasing; the next train
    starts a new run, and only that one ever pushes."""
    world.ensure_running()
    state = tmp_path / "state.json"
    other = "me/timeout-adapter"
    # A run long enough to outlive the command (500 epochs, 1000 steps).
    late = world.spacetrain("train", "--state", state, "--run-id", "slow-1", "--timeout", "1",
                            "--epochs", "500", "--output-repo", other,
                            "--poll-interval", "1")  # fmt: skip
    assert late.returncode == 3, late.stderr[-3000:]
    last = late.stderr.strip().splitlines()[-1]
    assert last.startswith("spacetrain train: error: run slow-1 is still ")
    assert " at the deadline" in last
    assert world.stage() == "PAUSED"  # released all the same ...
    assert _gone("slow-1")  # ... and that ended the run, as a paused Space's container
    recorded = json.loads(state.read_text())
    assert recorded["run_id"] == "slow-1"
    assert recorded["run_state"] in ("queued", "running")

    # A CI cancel (SIGTERM) while following a live run of ours stops it, then releases.
    world.ensure_running()
    follower = subprocess.Popen(
        [sys.executable, "-m", "spacetrain", "train", "--state", state, "--run-id", "slow-2",
         "--epochs", "500", "--output-repo", other, "--poll-interval", "1"],
        cwd=world.project, env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        seen = []
        assert follower.stderr is not None
        for line in follower.stderr:
            seen.append(line)
            if "started run slow-2" in line:
                break
        assert "[train] started run slow-2 on me/trainer" in seen[-1], seen
        deadline = time.monotonic() + 30  # the state names it just after that line
        while json.loads(state.read_text()).get("run_id") != "slow-2":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        while not _train_processes("slow-2"):  # so that _gone below can fail
            assert time.monotonic() < deadline + 60, "train.py of slow-2 never seen"
            time.sleep(0.1)
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=120)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 130, "".join(seen) + err
    # Our run is stopped first (it ends as cancelled, not killed by the pause), then released.
    assert "[train] stopping run slow-2 on me/trainer" in err
    assert "[train] run slow-2 is cancelled" in err
    assert "[train] interrupted while following run slow-2" in err
    assert err.strip().endswith("spacetrain: interrupted")
    assert out == ""
    assert world.stage() == "PAUSED"
    assert _gone("slow-2")
    assert json.loads(state.read_text())["run_state"] == "cancelled"

    # The next train starts a new run: neither the killed nor the cancelled one is rejoined.
    world.ensure_running()
    folders = world.run_folders()
    again = world.spacetrain("train", "--state", state, "--output-repo", other,
                             "--poll-interval", "1")  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    run_id = json.loads(state.read_text())["run_id"]
    assert run_id not in ("slow-1", "slow-2")
    assert f"[train] started run {run_id} on me/trainer" in again.stderr
    assert world.run_folders() == folders | {run_id}
    commits = world.api.list_repo_commits(other)
    pushed = [c.title for c in commits if "spacetrain run" in c.title]
    assert len(pushed) == 1, pushed  # no killed or cancelled run ever pushed
    assert f"spacetrain run {run_id}" in commits[0].title
    assert f"adapter_revision={commits[0].commit_id}" in again.stdout


def test_a_run_stopped_on_the_page_is_exit_1_cancelled_and_released(
    world: World, tmp_path: Path
) -> None:
    """Someone presses Stop (stop_training) while train follows: exit 1, recorded, released."""
    from gradio_client import Client

    world.ensure_running()
    state = tmp_path / "state.json"
    follower = subprocess.Popen(
        [sys.executable, "-m", "spacetrain", "train", "--state", state, "--run-id", "stopped-1",
         "--epochs", "500", "--poll-interval", "1"],
        cwd=world.project, env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    client = Client(str(world.api.space_info(SPACE).host), verbose=False, download_files=False)
    try:
        assert follower.stderr is not None
        for line in follower.stderr:
            if "[train] started run stopped-1" in line:
                break
        stopped = json.loads(client.predict("stopped-1", api_name="/stop_training"))
        assert stopped["state"] == "cancelled", stopped
        out, err = follower.communicate(timeout=120)
    finally:
        client.close()
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 1, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("spacetrain train: error: run stopped-1 was cancelled: cancelled"), err
    assert out == ""
    assert json.loads(state.read_text())["run_state"] == "cancelled"
    assert world.stage() == "PAUSED"


NOT_GRADIO = """\
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello, not a Gradio app")

    do_POST = do_GET

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(os.environ["GRADIO_SERVER_PORT"])), Hello).serve_forever()
"""


def test_a_space_serving_some_other_app_is_given_up_on_and_released(
    world: World, tmp_path: Path
) -> None:
    folder = tmp_path / "space"
    folder.mkdir()
    shutil.copyfile(REPO / "space" / "README.md", folder / "README.md")
    shutil.copyfile(REPO / "space" / "Dockerfile", folder / "Dockerfile")
    (folder / "app.py").write_text(NOT_GRADIO)
    other = "me/not-gradio"
    world.api.create_repo(other, repo_type="space", space_sdk="docker")
    world.api.upload_folder(repo_id=other, repo_type="space", folder_path=folder)
    deadline = time.monotonic() + 60
    while (stage := str(world.api.get_space_runtime(other).stage)) != "RUNNING":
        assert "ERROR" not in stage and time.monotonic() < deadline, stage
        time.sleep(0.2)
    proc = world.spacetrain("train", "--space", other, "--state", tmp_path / "state.json",
                            "--run-id", "w1", env={"SPACETRAIN_DISCONNECT_LIMIT": "2"})  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"spacetrain train: error: the app of {other} has not answered for ")
    assert "is it running this project's space/app.py?" in last
    assert str(world.api.get_space_runtime(other).stage) == "PAUSED"


# ------------------------------------------------------------------ fetch


def test_fetch_downloads_exactly_the_trained_revision(
    world: World, trained: Trained, tmp_path: Path
) -> None:
    state = _state_copy(trained, tmp_path / "state.json")
    dest = tmp_path / "adapter"
    proc = world.spacetrain("fetch", "--state", state, "--dest", dest)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sha = trained.state["adapter_revision"]
    assert proc.stdout.splitlines() == [
        f"adapter_repo={ADAPTER}", f"adapter_revision={sha}", f"adapter_dir={dest.resolve()}"
    ]  # fmt: skip
    remote = set(world.api.list_repo_files(ADAPTER, revision=sha))
    local = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert local == remote | {".spacetrain-fetch.json"}
    for name in remote:
        assert (dest / name).read_bytes() == world.read(name, sha), name
    assert json.loads((dest / "run.json").read_text())["run_id"] == RUN_ID
    assert json.loads(state.read_text())["adapter_dir"] == str(dest.resolve())
    # Fetching again replaces the folder it wrote itself.
    again = world.spacetrain("fetch", "--state", state, "--dest", dest)
    assert again.returncode == 0, again.stderr[-3000:]


def test_fetch_resolves_a_branch_to_its_sha_and_records_the_sha(
    world: World, trained: Trained, tmp_path: Path
) -> None:
    sha = trained.state["adapter_revision"]
    world.api.create_branch(ADAPTER, branch="candidate", revision=sha, exist_ok=True)
    state = _state_copy(trained, tmp_path / "state.json", adapter_revision="candidate")
    proc = world.spacetrain("fetch", "--state", state, "--dest", tmp_path / "a")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{ADAPTER}@candidate is commit {sha}" in proc.stderr
    assert json.loads(state.read_text())["adapter_revision"] == sha


def test_fetch_refuses_an_adapter_of_another_run(
    world: World, trained: Trained, tmp_path: Path
) -> None:
    state = _state_copy(trained, tmp_path / "state.json", run_id="someone-elses-run")
    dest = tmp_path / "adapter"
    proc = world.spacetrain("fetch", "--state", state, "--dest", dest)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"spacetrain fetch: error: {ADAPTER}@{trained.state['adapter_revision']} was made by "
        f"run '{RUN_ID}', not by run 'someone-elses-run': a stale or foreign adapter, "
        "refusing it"
    )
    assert not dest.exists()
    assert not any(p.name.startswith(".adapter.partial") for p in tmp_path.iterdir())
    assert json.loads(state.read_text())["adapter_dir"] is None


def test_fetch_refuses_a_revision_without_an_adapter(
    world: World, trained: Trained, tmp_path: Path
) -> None:
    first = world.adapter_commits()[-1].commit_id  # the repo's initial commit
    state = _state_copy(trained, tmp_path / "state.json")
    proc = world.spacetrain("fetch", "--state", state, "--revision", first,
                            "--dest", tmp_path / "adapter")  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        f"{ADAPTER}@{first} has no adapter_config.json: not a PEFT adapter"
    )
    missing = world.spacetrain("fetch", "--state", state, "--revision", "no-such-branch")
    assert missing.returncode == 2
    assert "no such revision" in missing.stderr


def test_fetch_never_replaces_a_folder_it_did_not_write(
    world: World, trained: Trained, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    state = _state_copy(trained, tmp_path / "state.json")
    proc = world.spacetrain("fetch", "--state", state, "--dest", mine)
    assert proc.returncode == 2
    assert "was not written by spacetrain fetch" in proc.stderr
    assert (mine / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------ promote


def _report(revision: str | None, *, score: float = 1.0, **adapter: Any) -> dict[str, Any]:
    """A report in the evaluate contract's shape, scored by the library from its cases."""
    policy = load_gate(REPO / "policy" / "gate.yaml")
    results = [
        CaseResult(id=f"c{i}", category=cat, score=score, output="Unity.")
        for i, cat in enumerate(["principles", "principles", "symbols"])
    ]
    meta = {
        "base_model": MODEL,
        "adapter": {"repo": ADAPTER, "revision": revision, "run_id": RUN_ID, **adapter},
        "suite": {"name": "qa"},
    }
    return build_report(policy=policy, results=results, meta=meta)


def _write(path: Path, report: dict[str, Any]) -> Path:
    path.write_text(json.dumps(report, indent=2))
    return path


def _tags(world: World) -> dict[str, str]:
    return {t.name: t.target_commit for t in world.api.list_repo_refs(ADAPTER).tags}


def test_promote_tags_the_revision_and_publishes_the_real_evaluation(
    world: World, trained: Trained, tmp_path: Path
) -> None:
    sha = trained.state["adapter_revision"]
    report = tmp_path / "report.json"
    evaluated = world.spacetrain(
        "evaluate", "--base-model", MODEL, "--adapter", ADAPTER, "--adapter-revision", sha,
        "--suite", "suite.yaml", "--gate", "gate.yaml", "--report", report,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    state = _state_copy(trained, tmp_path / "state.json", report=str(report))
    before = len(world.adapter_commits())

    proc = world.spacetrain("promote", "--state", state)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tag = f"promoted-{RUN_ID}"
    assert _tags(world)[tag] == sha
    commits = world.adapter_commits()
    assert len(commits) == before + 1
    head = commits[0].commit_id
    assert proc.stdout.splitlines() == [
        f"promoted_tag={tag}", f"adapter_repo={ADAPTER}", f"adapter_revision={sha}",
        f"card_commit={head}",
    ]  # fmt: skip
    recorded = json.loads(state.read_text())
    assert (recorded["promoted_tag"], recorded["card_commit"]) == (tag, head)

    card = ModelCard(world.read("README.md", head).decode("utf-8"))
    assert card.data.base_model == MODEL  # what train.py wrote is kept
    scores = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert scores == {
        "overall": 1.0,
        "category/principles": 1.0,
        "category/symbols": 1.0,
        "attribution_clean": 1.0,
    }
    assert f"Promoted as tag `{tag}` = commit `{sha}`" in card.text
    assert "## Evaluation `qa`: PASSED" in card.text
    assert world.read("evaluation/report.json", head) == report.read_bytes()
    # The tag names the adapter commit itself, not the card commit on top of it.
    assert json.loads(world.read("run.json", tag))["run_id"] == RUN_ID

    again = world.spacetrain("promote", "--state", state)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"tag {tag} already names {ADAPTER}@{sha}" in again.stderr
    assert "already shows this evaluation (no commit)" in again.stderr
    assert len(world.adapter_commits()) == before + 1
    assert f"card_commit={head}" in again.stdout


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("failing", "does not pass the gate: overall 0.50 < 0.75"),
        ("forged", "does not pass the gate: overall 0.50 < 0.75"),
        ("recorded-failure", "records a failed gate (overall fell by 0.20)"),
        ("other-revision", "stale report: it judged me/qa-adapter@"),
        ("other-run", "stale report: it judged run run-0, the adapter is"),
        ("local-other-weights", "stale report: the weights it judged"),
    ],
)
def test_promote_refuses_and_tags_nothing(
    world: World, trained: Trained, tmp_path: Path, case: str, expected: str
) -> None:
    sha = trained.state["adapter_revision"]
    initial = world.adapter_commits()[-1].commit_id
    report = {
        "failing": lambda: _report(sha, score=0.5),
        "forged": lambda: {**_report(sha, score=0.5), "passed": True, "failures": []},
        "recorded-failure": lambda: {
            **_report(sha),
            "passed": False,
            "failures": ["overall fell by 0.20"],
        },
        "other-revision": lambda: _report(initial),
        "other-run": lambda: _report(sha, run_id="run-0"),
        "local-other-weights": lambda: _report(None, path="/x/adapter", sha256="0" * 64),
    }[case]()
    path = _write(tmp_path / "report.json", report)
    state = _state_copy(trained, tmp_path / "state.json", report=str(path))
    tag = f"never-{case}"
    commits = len(world.adapter_commits())
    proc = world.spacetrain("promote", "--state", state, "--tag", tag)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert expected in proc.stderr.strip().splitlines()[-1]
    assert tag not in _tags(world)
    assert len(world.adapter_commits()) == commits
    assert json.loads(state.read_text()).get("promoted_tag") is None


def test_promote_accepts_a_report_on_the_fetched_folder_by_its_weights(
    world: World, trained: Trained, tmp_path: Path
) -> None:
    sha = trained.state["adapter_revision"]
    digest = hashlib.sha256(world.read("adapter_model.safetensors", sha)).hexdigest()
    report = _report(None, path=str(tmp_path / "adapter"), sha256=digest)
    path = _write(tmp_path / "report.json", report)
    state = _state_copy(trained, tmp_path / "state.json", report=str(path))
    proc = world.spacetrain("promote", "--state", state, "--tag", "local-ok")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _tags(world)["local-ok"] == sha


def test_promote_refuses_a_tag_that_names_another_commit(
    world: World, trained: Trained, tmp_path: Path
) -> None:
    initial = world.adapter_commits()[-1].commit_id
    world.api.create_tag(ADAPTER, tag="taken", revision=initial, exist_ok=True)
    path = _write(tmp_path / "report.json", _report(trained.state["adapter_revision"]))
    state = _state_copy(trained, tmp_path / "state.json", report=str(path))
    proc = world.spacetrain("promote", "--state", state, "--tag", "taken")
    assert proc.returncode == 1
    assert f"tag taken of {ADAPTER} already names commit {initial}" in proc.stderr
    assert _tags(world)["taken"] == initial
    no_report = world.spacetrain("promote", "--state", _state_copy(trained, tmp_path / "s2.json"))
    assert no_report.returncode == 2
    assert "has no report: run `spacetrain evaluate` first" in no_report.stderr


def test_promote_tags_but_leaves_the_card_alone_once_main_holds_another_run(
    world: World, trained: Trained, tmp_path: Path
) -> None:
    # Runs last: a newer run's commit lands on main (only its run.json matters here).
    sha = trained.state["adapter_revision"]
    newer = json.dumps({"run_id": "run-2"}).encode()
    world.api.upload_file(path_or_fileobj=newer, path_in_repo="run.json", repo_id=ADAPTER)
    commits = len(world.adapter_commits())
    path = _write(tmp_path / "report.json", _report(sha))
    state = _state_copy(trained, tmp_path / "state.json", report=str(path))
    proc = world.spacetrain("promote", "--state", state, "--tag", "late")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _tags(world)["late"] == sha
    assert "main of me/qa-adapter now holds run run-2's adapter, not run run-1's" in proc.stderr
    assert "card_commit=" in proc.stdout.splitlines()
    assert len(world.adapter_commits()) == commits
    recorded = json.loads(state.read_text())
    assert (recorded["promoted_tag"], recorded["card_commit"]) == ("late", None)
