"""train, fetch and promote end to end: the real space/ folder as a Space on localhub.

The module's world (tests/stages/adapter_world.py) trains ONCE with ``spacetrain train``
in a subprocess, with the Space's address failing (503) for a few seconds in the middle of
the run, so the follower must reconnect to keep following the same run. (Restarting the
Space would not do: as on the Hub, it ends the run with the container.) Every other test
reuses that run: following it again, fetching its adapter, promoting it. Runs that end
early (a deadline, a cancel, someone else's run) are test_adapter_runs_e2e.py's.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import ModelCard

from spacetrain.evaluate.gate import load_gate
from spacetrain.evaluate.report import build_report
from spacetrain.evaluate.scoring import CaseResult

from .adapter_world import ADAPTER, MODEL, REPO, RUN_ID, SPACE, TOKEN, World

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Trained:
    proc: subprocess.CompletedProcess
    state: dict[str, Any]
    state_path: Path
    seconds: float
    outage_while: str  # the run's state when the Space's address began failing


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
