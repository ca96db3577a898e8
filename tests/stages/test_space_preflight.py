"""`preflight`: a checklist before any GPU time; the exit code is the worst outcome."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from spacetrain.config import load_config
from spacetrain.hub import Hub
from spacetrain.localhub import LocalHub
from spacetrain.stages.preflight import preflight
from spacetrain.stages.state import PipelineState

from .conftest import TOKEN
from .space_support import REPO, cli, cli_env, write_project

pytestmark = pytest.mark.e2e

ADAPTER = """\
gate = "policy/gate.yaml"

[tool.spacetrain.adapters.qa]
base_model = "alice/tiny-base"
dataset = "alice/qa-data"
output_repo = "alice/qa-adapter"
suite = "policy/evals/qa.yaml"
"""


def _project(tmp_path: Path, *, space: str = "alice/trainer", extra: str = "") -> Path:
    project = write_project(tmp_path / "p", space=space, extra=ADAPTER + extra)
    (project / "policy" / "evals").mkdir()
    shutil.copyfile(REPO / "policy" / "evals" / "kwanzaa.yaml", project / "policy/evals/qa.yaml")
    shutil.copyfile(REPO / "policy" / "gate.yaml", project / "policy" / "gate.yaml")
    return project


def _publish(api: HfApi) -> tuple[str, str]:
    """A base model and a dataset on the hub; their head commits."""
    api.create_repo("alice/tiny-base")
    base = api.upload_file(
        path_or_fileobj=b'{"model_type": "llama"}\n', path_in_repo="config.json",
        repo_id="alice/tiny-base",
    )  # fmt: skip
    api.create_repo("alice/qa-data", repo_type="dataset")
    data = api.upload_file(
        path_or_fileobj=b'{"messages": []}\n', path_in_repo="train.jsonl",
        repo_id="alice/qa-data", repo_type="dataset",
    )  # fmt: skip
    return base.oid, data.oid


def _lines(stdout: str) -> dict[str, tuple[str, str]]:
    out = {}
    for line in stdout.splitlines():
        status, name, detail = line.split(maxsplit=2)
        out[name] = (status, detail)
    return out


def test_everything_ready_is_exit_0_and_pins_the_revisions(
    hub_env: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    base, data = _publish(api)
    project = _project(tmp_path)
    config = load_config(project)
    state = PipelineState.load(tmp_path / "state.json")

    result = preflight(Hub.from_env(), config, config.adapter("qa"), state)

    assert [(c.name, c.status) for c in result.checks] == [
        ("token", "ok"),
        ("space", "ok"),
        ("output-repo", "ok"),
        ("base-model", "ok"),
        ("dataset", "ok"),
        ("space-lint", "ok"),
        ("suite", "ok"),
        ("gate", "ok"),
    ]
    assert result.exit_code == 0
    assert "user alice (role write)" in result.checks[0].detail
    assert "does not exist yet (it will be created)" in result.checks[1].detail
    assert state.get("base_revision") == base and state.get("dataset_revision") == data
    assert json.loads((tmp_path / "state.json").read_text())["dataset_revision"] == data


def test_a_pinned_revision_that_is_not_there_is_exit_2(
    hub_env: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    _publish(api)
    project = _project(tmp_path)
    text = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(
        text.replace('output_repo = "alice/qa-adapter"', 'output_repo = "alice/qa-adapter"\n'
                     'dataset_revision = "v9"')
    )  # fmt: skip
    config = load_config(project)

    result = preflight(Hub.from_env(), config, config.adapter("qa"))

    dataset = next(c for c in result.checks if c.name == "dataset")
    assert (dataset.status, dataset.exit_code) == ("FAIL", 2)
    assert "cannot find dataset alice/qa-data at v9: no such revision" in dataset.detail
    assert result.exit_code == 2 and "dataset_revision" not in result.recorded


def test_a_namespace_the_token_cannot_write_is_exit_2(
    hub_env: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    _publish(api)
    config = load_config(_project(tmp_path, space="bob/trainer"))

    result = preflight(Hub.from_env(), config, config.adapter("qa"))

    space = next(c for c in result.checks if c.name == "space")
    assert (space.status, space.exit_code) == ("FAIL", 2)
    assert "has no namespace 'bob'" in space.detail


def test_lint_errors_and_a_bad_suite_are_reported_with_the_worst_code(
    hub_env: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    _publish(api)
    project = _project(tmp_path)
    (project / "space" / "requirements.txt").write_text("torch\n")
    (project / "policy" / "evals" / "qa.yaml").write_text("name: qa\ncases:\n  - id: x\n")
    config = load_config(project)

    result = preflight(Hub.from_env(), config, config.adapter("qa"))

    by_name = {c.name: c for c in result.checks}
    assert (by_name["space-lint"].status, by_name["space-lint"].exit_code) == ("FAIL", 1)
    assert "requirements.txt" in by_name["space-lint"].detail
    assert (by_name["suite"].status, by_name["suite"].exit_code) == ("FAIL", 2)
    assert "qa.yaml" in by_name["suite"].detail
    assert result.exit_code == 2


def test_cli_ready(hub: LocalHub, tmp_path: Path) -> None:
    _publish(HfApi(endpoint=hub.url, token=TOKEN))
    project = _project(tmp_path)

    done = cli(["preflight", "--adapter", "qa"], cwd=project, env=cli_env(hub.url, TOKEN))

    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(done.stdout)
    assert list(lines) == [
        "token", "space", "output-repo", "base-model", "dataset", "space-lint", "suite", "gate",
    ]  # fmt: skip
    assert all(status == "ok" for status, _ in lines.values())
    assert "8 checks, ready to train" in done.stderr
    assert TOKEN not in done.stdout + done.stderr


def test_cli_rejected_token_is_exit_2_naming_hf_token(hub: LocalHub, tmp_path: Path) -> None:
    project = _project(tmp_path)
    bad = "hf_notTheRightTokenNotTheRightToken"

    done = cli(["preflight"], cwd=project, env=cli_env(hub.url, bad))

    assert done.returncode == 2
    lines = _lines(done.stdout)
    assert lines["token"][0] == "FAIL"
    assert "rejected the token in HF_TOKEN (401)" in lines["token"][1]
    assert lines["space"] == ("skip", "needs an accepted token")
    assert lines["base-model"] == ("skip", "needs an accepted token")
    assert lines["space-lint"][0] == "ok"  # local checks still run
    assert bad not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_cli_without_a_token_still_checks_public_repos(hub: LocalHub, tmp_path: Path) -> None:
    _publish(HfApi(endpoint=hub.url, token=TOKEN))
    project = _project(tmp_path)

    done = cli(["preflight"], cwd=project, env=cli_env(hub.url, None))

    assert done.returncode == 2
    lines = _lines(done.stdout)
    assert lines["token"] == (
        "FAIL",
        "HF_TOKEN is not set: sync, train and promote need a token with write access",
    )
    assert lines["space"][0] == "skip"
    assert lines["base-model"][0] == "ok" and lines["dataset"][0] == "ok"


def test_cli_hub_unreachable_is_exit_3(hub: LocalHub, tmp_path: Path) -> None:
    project = _project(tmp_path)
    hub.add_faults({"status_codes": [503], "paths": "/api/*"})

    done = cli(
        ["preflight"],
        cwd=project,
        env=cli_env(hub.url, TOKEN, SPACETRAIN_HUB_DEADLINE="1"),
    )

    assert done.returncode == 3
    lines = _lines(done.stdout)
    assert lines["token"][0] == "FAIL" and "unreachable (HTTP 503)" in lines["token"][1]
    assert lines["space"] == ("skip", "the Hub is unreachable")
    assert lines["gate"][0] == "ok"


WHOAMI = {
    "name": "alice",
    "orgs": [{"name": "team", "roleInOrg": "write"}, {"name": "viewers", "roleInOrg": "read"}],
    "auth": {"accessToken": {"role": "write"}},
}


@pytest.mark.parametrize(
    ("repo", "whoami", "status"),
    [
        ("alice/x", WHOAMI, "ok"),
        ("team/x", WHOAMI, "ok"),
        ("viewers/x", WHOAMI, "FAIL"),  # a read-only member of the org
        ("bob/x", WHOAMI, "FAIL"),
        (
            "team/x",
            {**WHOAMI, "auth": {"accessToken": {"role": "fineGrained", "fineGrained": {
                "scoped": [{"entity": {"type": "org", "name": "team"},
                            "permissions": ["repo.content.read"]}]}}}},
            "FAIL",
        ),
        (
            "team/x",
            {**WHOAMI, "auth": {"accessToken": {"role": "fineGrained", "fineGrained": {
                "scoped": [{"entity": {"type": "space", "name": "team/x"},
                            "permissions": ["repo.write"]}]}}}},
            "ok",
        ),
        (
            "team/x",
            {**WHOAMI, "auth": {"accessToken": {"role": "fineGrained", "fineGrained": {}}}},
            "warn",
        ),
    ],
)  # fmt: skip
def test_write_access_reads_the_whoami_answer(
    hub_env: LocalHub, tmp_path: Path, repo: str, whoami: dict, status: str
) -> None:
    """The parts of a real Hub's whoami localhub does not produce (orgs, fine-grained)."""
    from spacetrain.stages.preflight import _Preflight

    config = load_config(_project(tmp_path))
    check = _Preflight(Hub.from_env(), config, None)
    check.whoami = whoami
    result = check.write_access("space", "space", repo, exists=True)
    assert result.status == status, result.detail
    assert result.exit_code == (2 if status == "FAIL" else 0)
