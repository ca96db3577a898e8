"""HF Jobs on localhub, through the real huggingface_hub client: run_job from a Space's
image, inspect_job, fetch_job_logs, cancel_job, list_jobs, list_jobs_hardware; what a
timeout and a cancel end (the whole tree) and stop (the meter); who may do what."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, JobHardware, JobStage
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    JobNotFoundError,
    RepositoryNotFoundError,
)

from spacetrain.localhub import LocalHub
from spacetrain.localhub.auth import READ, Scope, Token

pytestmark = pytest.mark.e2e  # every test starts localhub
ALICE, ALICE_READ, BOB, SCOPED, ADMIN = (
    "hf_jobsAlice",
    "hf_jobsAliceRead",
    "hf_jobsBob",
    "hf_jobsAliceScoped",
    "hf_jobsAdmin",
)
TOKENS = {
    ALICE: "alice",
    ALICE_READ: Token("alice", "read"),
    BOB: Token("bob"),
    SCOPED: Token(
        "alice", "fineGrained", (Scope("space", "alice/trainer"), Scope("user", "alice", (READ,)))
    ),
}
SPACE = "alice/trainer"
IMAGE = f"hf.co/spaces/{SPACE}"
SECRET = "hf_jobSecretValue123"  # a test value: what must never come back

# Prints from the Space's own files (the checkout is the image), then exits with $CODE.
RUN_PY = """\
import os, sys
print(open("version.txt").read().strip())
print("endpoint", os.environ["HF_ENDPOINT"])
print("x", os.environ.get("X"))
print("secret set", os.environ.get("HF_TOKEN") == os.environ.get("EXPECT"))
sys.exit(int(os.environ.get("CODE", "0")))
"""
# Starts a detached child (as space/app.py starts training), says where, then waits.
TREE_PY = """\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         start_new_session=True)
open(os.environ["PIDS"], "w").write(f"{os.getpid()} {child.pid}")
print("started", flush=True)
time.sleep(120)
"""


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    root = tmp_path_factory.mktemp("jobs")
    with LocalHub(root=root, tokens=TOKENS, admin_token=ADMIN) as hub:
        alice = HfApi(endpoint=hub.url, token=ALICE)
        alice.create_repo(SPACE, repo_type="space", space_sdk="docker", private=True)
        for name, text in (("run.py", RUN_PY), ("tree.py", TREE_PY), ("version.txt", "v1\n")):
            alice.upload_file(
                path_or_fileobj=text.encode(), path_in_repo=name, repo_id=SPACE, repo_type="space"
            )
        yield hub


@pytest.fixture
def alice(strict: LocalHub) -> HfApi:
    return HfApi(endpoint=strict.url, token=ALICE)


def _api(hub: LocalHub, token: str | None) -> HfApi:
    return HfApi(endpoint=hub.url, token=token or False)  # type: ignore[arg-type]


def _wait(api: HfApi, job_id: str) -> object:
    return api.wait_for_job(job_id, namespace="alice", poll_interval=0.05, timeout=30)


def _meter(hub: LocalHub, job_id: str) -> dict:
    return hub.billing()["jobs"].get(job_id, {})


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.02)
    return path.read_text()


def _tree_job(api: HfApi, pids: Path, **kwargs: object) -> tuple[str, list[int]]:
    job = api.run_job(image=IMAGE, command=["python", "tree.py"], env={"PIDS": str(pids)}, **kwargs)
    started = [int(p) for p in _wait_for(pids).split()]
    assert all(_alive(p) for p in started)
    return job.id, started


def test_a_job_runs_in_a_checkout_of_its_space_commit_and_streams_its_logs(
    strict: LocalHub, alice: HfApi
) -> None:
    job = alice.run_job(
        image=IMAGE,
        command=["python", "run.py"],
        env={"X": "1", "EXPECT": SECRET},
        secrets={"HF_TOKEN": SECRET},
        flavor="a10g-small",
        timeout="10m",
    )
    assert job.space_id == SPACE and job.docker_image is None
    assert job.status.stage in (JobStage.SCHEDULING, JobStage.RUNNING)
    assert job.owner.name == "alice" and job.flavor == "a10g-small"
    logs = list(alice.fetch_job_logs(job_id=job.id, namespace="alice", follow=True))
    assert logs == ["v1", f"endpoint {strict.url}", "x 1", "secret set True"]
    done = alice.inspect_job(job_id=job.id, namespace="alice")
    assert done.status.stage == JobStage.COMPLETED and done.status.message is None
    assert done.created_at <= done.started_at <= done.finished_at
    assert done.durations is not None and done.durations.total_secs is not None
    meter = _meter(strict, job.id)
    assert meter["billing"] is None and meter["namespace"] == "alice"
    assert meter["flavors"]["a10g-small"]["seconds"] > 0
    # No follow on an ended Job: everything, at once; tail: the last lines.
    assert list(alice.fetch_job_logs(job_id=job.id, namespace="alice")) == logs
    assert list(alice.fetch_job_logs(job_id=job.id, namespace="alice", tail=1)) == logs[-1:]


def test_an_image_names_a_space_revision_and_defaults_to_main(
    strict: LocalHub, alice: HfApi
) -> None:
    first = alice.space_info(SPACE).sha
    alice.upload_file(path_or_fileobj=b"v2\n", path_in_repo="version.txt", repo_id=SPACE,
                      repo_type="space")  # fmt: skip
    try:
        head = alice.run_job(image=IMAGE, command=["python", "run.py"], namespace="alice")
        pinned = alice.run_job(
            image=f"{IMAGE}@{first}", command=["python", "run.py"], namespace="alice"
        )
        assert pinned.space_id == f"{SPACE}@{first}"
        for job_id, version in ((head.id, "v2"), (pinned.id, "v1")):
            assert _wait(alice, job_id).status.stage == JobStage.COMPLETED
            assert next(iter(alice.fetch_job_logs(job_id=job_id, namespace="alice"))) == version
    finally:
        alice.upload_file(path_or_fileobj=b"v1\n", path_in_repo="version.txt", repo_id=SPACE,
                          repo_type="space")  # fmt: skip


def test_a_failing_job_is_error_with_its_exit_code(strict: LocalHub, alice: HfApi) -> None:
    job = alice.run_job(image=IMAGE, command=["python", "run.py"], env={"CODE": "3"})
    done = _wait(alice, job.id)
    assert done.status.stage == JobStage.ERROR
    assert "exit code: 3" in done.status.message
    assert _meter(strict, job.id)["billing"] is None


def test_a_job_past_its_timeout_loses_its_whole_tree_and_stops_billing(
    strict: LocalHub, alice: HfApi, tmp_path: Path
) -> None:
    job_id, pids = _tree_job(alice, tmp_path / "pids", timeout=1, flavor="t4-small")
    started = time.monotonic()
    done = _wait(alice, job_id)
    assert done.status.stage == JobStage.ERROR
    assert "timed out" in done.status.message
    assert 0.9 <= time.monotonic() - started < 10
    assert not any(_alive(p) for p in pids)  # the detached child too
    meter = _meter(strict, job_id)
    assert meter["billing"] is None
    seconds = meter["flavors"]["t4-small"]["seconds"]
    assert 1.0 <= seconds < 10
    time.sleep(0.3)
    assert _meter(strict, job_id)["flavors"]["t4-small"]["seconds"] == seconds  # stopped


def test_cancel_ends_the_whole_tree_and_the_meter(
    strict: LocalHub, alice: HfApi, tmp_path: Path
) -> None:
    job_id, pids = _tree_job(alice, tmp_path / "pids")
    assert alice.inspect_job(job_id=job_id, namespace="alice").status.stage == JobStage.RUNNING
    assert _meter(strict, job_id)["billing"] == "cpu-basic"
    alice.cancel_job(job_id=job_id, namespace="alice")
    # cancel_job answers once the tree is gone: no waiting here.
    assert not any(_alive(p) for p in pids)
    info = alice.inspect_job(job_id=job_id, namespace="alice")
    assert info.status.stage == JobStage.CANCELED and info.finished_at is not None
    seconds = _meter(strict, job_id)["flavors"]["cpu-basic"]["seconds"]
    assert _meter(strict, job_id)["billing"] is None
    time.sleep(0.3)
    assert _meter(strict, job_id)["flavors"]["cpu-basic"]["seconds"] == seconds
    assert list(alice.fetch_job_logs(job_id=job_id, namespace="alice", follow=True)) == ["started"]
    alice.cancel_job(job_id=job_id, namespace="alice")  # again: nothing changes
    assert alice.inspect_job(job_id=job_id, namespace="alice").status.stage == JobStage.CANCELED


def test_jobs_need_a_token_with_rights_on_the_namespace(strict: LocalHub, alice: HfApi) -> None:
    ran = alice.run_job(image=IMAGE, command=["python", "run.py"], namespace="alice")
    _wait(alice, ran.id)
    run = {"image": IMAGE, "command": ["python", "run.py"], "namespace": "alice"}
    with pytest.raises(HfHubHTTPError, match="401"):
        _api(strict, None).run_job(**run)
    with pytest.raises(HfHubHTTPError, match="401"):
        _api(strict, None).inspect_job(job_id=ran.id, namespace="alice")
    reader = _api(strict, ALICE_READ)
    with pytest.raises(HfHubHTTPError, match="403") as caught:
        reader.run_job(**run)
    assert "read token" in str(caught.value)
    assert reader.inspect_job(job_id=ran.id, namespace="alice").id == ran.id  # reading is fine
    assert next(iter(reader.fetch_job_logs(job_id=ran.id, namespace="alice"))) == "v1"
    with pytest.raises(HfHubHTTPError, match="403"):
        reader.cancel_job(job_id=ran.id, namespace="alice")
    bob = _api(strict, BOB)
    for call in (
        lambda: bob.run_job(**run),
        lambda: bob.inspect_job(job_id=ran.id, namespace="alice"),
        lambda: bob.cancel_job(job_id=ran.id, namespace="alice"),
        lambda: list(bob.list_jobs(namespace="alice")),
    ):
        with pytest.raises(HfHubHTTPError, match="403"):
            call()
    with pytest.raises(RepositoryNotFoundError):  # alice's Space is private: not bob's image
        bob.run_job(image=IMAGE, command=["python", "run.py"], namespace="bob")
    with pytest.raises(JobNotFoundError):  # and bob's namespace has no such Job
        bob.inspect_job(job_id=ran.id, namespace="bob")
    scoped = _api(strict, SCOPED)  # a repo scope does not reach Jobs, a read scope reads
    with pytest.raises(HfHubHTTPError, match="403"):
        scoped.run_job(**run)
    assert scoped.inspect_job(job_id=ran.id, namespace="alice").id == ran.id
    with pytest.raises(HfHubHTTPError, match="403"):
        scoped.cancel_job(job_id=ran.id, namespace="alice")
    # The meter over HTTP: a user sees the Jobs of namespaces it may read.
    seen = httpx.get(f"{strict.url}/_localhub/billing", headers={"authorization": f"Bearer {BOB}"})
    assert seen.status_code == 200 and ran.id not in seen.json()["jobs"]
    seen = httpx.get(
        f"{strict.url}/_localhub/billing", headers={"authorization": f"Bearer {ALICE_READ}"}
    )
    assert ran.id in seen.json()["jobs"]


def test_secrets_reach_the_process_and_nothing_else(
    strict: LocalHub, alice: HfApi, tmp_path: Path
) -> None:
    job = alice.run_job(
        image=IMAGE,
        command=["python", "run.py"],
        env={"EXPECT": "x"},  # the process compares; only True/False is printed
        secrets={"HF_TOKEN": SECRET},
    )
    _wait(alice, job.id)
    info = alice.inspect_job(job_id=job.id, namespace="alice")
    assert info.secrets == {"HF_TOKEN": None}  # its name, never its value
    raw = httpx.get(
        f"{strict.url}/api/jobs/alice/{job.id}", headers={"authorization": f"Bearer {ALICE}"}
    )
    assert raw.status_code == 200 and SECRET not in raw.text
    assert raw.json()["timeoutSeconds"] == 30 * 60  # none sent: the Hub's default applies
    for listed in alice.list_jobs(namespace="alice"):
        assert SECRET not in json.dumps(listed.secrets)
    assert SECRET not in "".join(alice.fetch_job_logs(job_id=job.id, namespace="alice"))
    for path in strict.root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_faults_a_job_that_cannot_start_a_killed_job_and_5xx(
    strict: LocalHub, alice: HfApi, tmp_path: Path
) -> None:
    strict.add_faults({"job_start_error": {"namespace": "alice", "message": "no capacity"}})
    job = alice.run_job(image=IMAGE, command=["python", "run.py"], namespace="alice")
    failed = _wait(alice, job.id)
    assert failed.status.stage == JobStage.ERROR and failed.status.message == "no capacity"
    assert failed.started_at is None and job.id not in strict.billing()["jobs"]  # never billed
    job_id, pids = _tree_job(alice, tmp_path / "pids")
    strict.add_faults({"kill_job": job_id})  # an out-of-memory kill
    killed = _wait(alice, job_id)
    assert killed.status.stage == JobStage.ERROR and "SIGKILL" in killed.status.message
    assert not any(_alive(p) for p in pids)
    strict.add_faults({"status_codes": [503], "paths": "/api/jobs/*", "count": 1})
    with pytest.raises(HfHubHTTPError, match="503"):
        alice.run_job(image=IMAGE, command=["python", "run.py"], namespace="alice")
    assert _wait(alice, job_id).status.stage == JobStage.ERROR  # the rule is spent
    strict.faults.clear()


def test_list_jobs_and_the_hardware_list(strict: LocalHub, alice: HfApi) -> None:
    job = alice.run_job(
        image=IMAGE, command=["python", "run.py"], namespace="alice", labels={"adapter": "a1"}
    )
    _wait(alice, job.id)
    listed = list(alice.list_jobs(namespace="alice", labels={"adapter": "a1"}))
    assert [j.id for j in listed] == [job.id]
    assert listed[0].labels["adapter"] == "a1"
    assert job.id in [j.id for j in alice.list_jobs(namespace="alice", status="COMPLETED")]
    assert job.id not in [j.id for j in alice.list_jobs(namespace="alice", status="RUNNING")]
    hardware = alice.list_jobs_hardware()
    assert [h.name for h in hardware] == [h.value for h in JobHardware]
    basic = next(h for h in hardware if h.name == "cpu-basic")
    assert basic.unit_cost_usd > 0 and basic.ephemeral_storage == "50 GB"  # not free for a Job
    with pytest.raises(JobNotFoundError):
        alice.inspect_job(job_id="0" * 24, namespace="alice")
    with pytest.raises(BadRequestError, match="Invalid flavor"):
        alice.run_job(image=IMAGE, command=["python"], flavor="tpu-v9", namespace="alice")
    with pytest.raises(HfHubHTTPError, match="422"):  # no Docker here: Space images only
        alice.run_job(image="python:3.12", command=["python"], namespace="alice")


def test_stopping_the_hub_ends_running_jobs(tmp_path: Path) -> None:
    hub = LocalHub(root=tmp_path / "hub").start()
    try:
        api = HfApi(endpoint=hub.url, token="hf_any")
        api.create_repo("localhub-user/sp", repo_type="space", space_sdk="docker")
        api.upload_file(path_or_fileobj=TREE_PY.encode(), path_in_repo="tree.py",
                        repo_id="localhub-user/sp", repo_type="space")  # fmt: skip
        job = api.run_job(
            image="hf.co/spaces/localhub-user/sp",
            command=[sys.executable, "tree.py"],
            env={"PIDS": str(tmp_path / "pids")},
        )
        pids = [int(p) for p in _wait_for(tmp_path / "pids").split()]
        assert job.owner.name == "localhub-user"
        with pytest.raises(HfHubHTTPError, match="401"):  # open server, still no anonymous Jobs
            HfApi(endpoint=hub.url, token=False).inspect_job(
                job_id=job.id, namespace="localhub-user"
            )
    finally:
        hub.stop()
    assert not any(_alive(p) for p in pids)
    assert os.environ.get("LOCALHUB_CONTAINER_ID") is None  # nothing leaked into this process
