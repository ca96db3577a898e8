"""The Space checks itself: train.py's ``preflight`` checks, app.py's ``training_preflight``.

Each check is real: local folders and files, a localhub for the token, whoami, the
output repo and the model and dataset at their revisions, torch for the GPU (there is
none here, so "expected but absent" is what runs). The CLI side, through a real Space on
localhub, is tests/stages/test_train_preflight_e2e.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from spacetrain.localhub import LocalHub
from spacetrain.localhub.auth import READ, Scope, Token
from spacetrain.localhub.clients import use_endpoint

from .support import QA, TRAIN_PY, chat_rows, free_port, load_app, load_module, run_train
from .support import write_jsonl as _write_jsonl

TOKEN = "hf_spacetrainSelfCheckTestTokenXyZ"
READ_TOKEN = "hf_spacetrainSelfCheckReadOnlyTokenXyZ"
SCOPED_TOKEN = "hf_spacetrainSelfCheckScopedTokenXyZ"
REORDERED_TOKEN = "hf_spacetrainSelfCheckReorderedTokenXyZ"  # the same scopes, user first
MODEL, DATA, OUTPUT = "me/tiny-base", "me/qa", "me/qa-adapter"


@pytest.fixture(scope="module")
def train() -> ModuleType:
    return load_module(TRAIN_PY, "space_train_preflight")


@pytest.fixture(scope="module")
def app() -> ModuleType:
    return load_app()


def _by_name(checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    assert all(set(c) - {"facts"} == {"name", "ok", "detail", "exit_code"} for c in checks), checks
    return {c["name"]: c for c in checks}


def _local(tmp_path: Path, tiny: bool = True) -> dict[str, Any]:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    if tiny:
        (model / "config.json").write_text('{"model_type": "llama"}\n')
    data = _write_jsonl(tmp_path / "train.jsonl", chat_rows(QA[:2]))
    return {"base_model": str(model), "dataset": str(data)}


# ------------------------------------------------------------------ no Hub needed


def test_a_missing_token_when_pushing_names_space_hf_token(
    train: ModuleType, tmp_path: Path
) -> None:
    params = {**_local(tmp_path), "output_repo": OUTPUT, "push": True}
    checks = train.preflight(params, env={})
    by_name = _by_name(checks)
    assert [c["name"] for c in checks] == [
        "token", "whoami", "output-repo", "dataset", "base-model", "gpu",
    ]  # fmt: skip
    token = by_name["token"]
    assert (token["ok"], token["exit_code"]) == (False, 2)
    assert token["detail"] == (
        f"the Space has no HF_TOKEN secret, so it cannot push to {OUTPUT}: set SPACE_HF_TOKEN "
        f"(a fine-grained token that can write {OUTPUT}) where the pipeline runs, then "
        "`spacetrain space setup`"
    )
    assert by_name["whoami"] == {
        "name": "whoami", "ok": True, "detail": "skipped: no HF_TOKEN", "exit_code": 0,
    }  # fmt: skip
    assert by_name["output-repo"]["detail"] == "skipped: needs an accepted token"
    assert by_name["dataset"]["ok"] and by_name["base-model"]["ok"]
    summary = train.preflight_summary(checks)
    assert (summary["ok"], summary["exit_code"], summary["error"]) == (
        False, 2, token["detail"],
    )  # fmt: skip


@pytest.mark.e2e
def test_without_push_no_token_is_needed_and_nothing_asks_the_hub(
    train: ModuleType, tmp_path: Path
) -> None:
    checks = _by_name(train.preflight({**_local(tmp_path), "push": False}, env={}))
    assert all(c["ok"] and c["exit_code"] == 0 for c in checks.values()), checks
    assert checks["output-repo"]["detail"] == "not pushing"
    # A token that is there is not sent anywhere when model and data are local.
    env = {"HF_TOKEN": TOKEN, "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    checks = _by_name(train.preflight({**_local(tmp_path), "push": False}, env=env))
    assert checks["whoami"]["detail"] == "skipped: nothing on the Hub"
    assert TOKEN not in json.dumps(checks)


def test_missing_local_paths_are_exit_2(train: ModuleType, tmp_path: Path) -> None:
    params = {
        "base_model": str(tmp_path / "no" / "model"),
        "dataset": str(tmp_path / "missing" / "data.jsonl"),
        "push": False,
    }
    checks = _by_name(train.preflight(params, env={}))
    assert (checks["dataset"]["ok"], checks["dataset"]["exit_code"]) == (False, 2)
    assert "is neither an existing local path nor a Hub id" in checks["dataset"]["detail"]
    assert (checks["base-model"]["ok"], checks["base-model"]["exit_code"]) == (False, 2)
    assert "is neither an existing local path nor a Hub id" in checks["base-model"]["detail"]

    empty = tmp_path / "empty"
    empty.mkdir()
    checks = _by_name(
        train.preflight({"base_model": str(empty), "dataset": str(empty), "push": False}, env={})
    )
    assert checks["base-model"]["detail"] == f"{empty}: not a model folder (no config.json)"
    assert checks["dataset"]["detail"] == f"{empty}: no .jsonl files in this folder"
    assert train.preflight_summary(list(checks.values()))["exit_code"] == 2


@pytest.mark.e2e  # imports torch or gradio in this process: the model stack
def test_an_expected_gpu_that_is_absent_is_exit_2(train: ModuleType) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    check = train.check_gpu({"SPACETRAIN_EXPECT_GPU": "1"})
    assert (check["name"], check["ok"], check["exit_code"]) == ("gpu", False, 2)
    assert check["detail"].startswith("SPACETRAIN_EXPECT_GPU=1 but no CUDA: ")
    assert check["detail"].endswith(
        "request GPU hardware for the Space, or unset the Space variable SPACETRAIN_EXPECT_GPU"
    )
    assert train.check_gpu({}) == {
        "name": "gpu", "ok": True, "detail": "no GPU expected (SPACETRAIN_EXPECT_GPU is not 1)",
        "exit_code": 0,
    }  # fmt: skip


WHOAMI = {
    "name": "alice",
    "orgs": [{"name": "team", "roleInOrg": "write"}, {"name": "viewers", "roleInOrg": "read"}],
    "auth": {"accessToken": {"role": "write"}},
}


def _grained(*scoped: dict[str, Any]) -> dict[str, Any]:
    token = {"role": "fineGrained", "fineGrained": {"scoped": list(scoped)}}
    return {**WHOAMI, "auth": {"accessToken": token}}


@pytest.mark.parametrize(
    ("repo", "whoami", "can", "why"),
    [
        ("alice/x", WHOAMI, True, "alice is writable with this token"),
        ("team/x", WHOAMI, True, "team is writable with this token"),
        ("viewers/x", WHOAMI, False, "the account has only the read role in viewers"),
        ("bob/x", WHOAMI, False,
         "the token's account (alice, team, viewers) has no namespace 'bob'"),
        ("alice/x", {**WHOAMI, "auth": {"accessToken": {"role": "read"}}}, False,
         "the token is a 'read' token"),
        ("alice/x", _grained({"entity": {"type": "model", "name": "alice/x"},
                              "permissions": ["repo.content.read", "repo.write"]}), True,
         "alice is writable with this token"),
        ("alice/y", _grained({"entity": {"type": "model", "name": "alice/x"},
                              "permissions": ["repo.write"]}), None,
         "the fine-grained token's write access is not listed"),
        ("team/x", _grained({"entity": {"type": "org", "name": "team"},
                             "permissions": ["repo.content.read"]}), False,
         "the fine-grained token may not write to it"),
    ],
)  # fmt: skip
def test_write_access_reads_the_whoami_answer(
    train: ModuleType, repo: str, whoami: dict[str, Any], can: bool | None, why: str
) -> None:
    assert train.write_access(whoami, "model", repo) == (can, why)


def test_the_package_uses_the_spaces_write_access_rule() -> None:
    """One definition: the CLI's preflight reads space/train.py's function, not a copy."""
    import spacetrain.stages.preflight as cli_preflight
    from spacetrain import contract

    source = Path(cli_preflight.__file__).read_text(encoding="utf-8")
    assert "contract.trainer.write_access(" in source
    for gone in ("_namespaces", "_org_role", "_fine_grained_can_write"):
        assert gone not in source
    assert contract.trainer.write_access(WHOAMI, "model", "team/x")[0] is True


# ------------------------------------------------------------------ against localhub


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    root = tmp_path_factory.mktemp("selfcheck")
    tokens = {
        TOKEN: "me",
        READ_TOKEN: Token("me", "read"),
        # what SPACE_HF_TOKEN should be: write the output repo, read the rest of "me"
        SCOPED_TOKEN: Token(
            "me", "fineGrained", (Scope("model", OUTPUT), Scope("user", "me", (READ,)))
        ),
        REORDERED_TOKEN: Token(
            "me", "fineGrained", (Scope("user", "me", (READ,)), Scope("model", OUTPUT))
        ),
    }
    with LocalHub(root=root / "hub", tokens=tokens) as running:
        api = HfApi(endpoint=running.url, token=TOKEN)
        api.create_repo(MODEL)
        api.upload_file(path_or_fileobj=b'{"model_type": "llama"}\n', path_in_repo="config.json",
                        repo_id=MODEL)  # fmt: skip
        api.create_repo(DATA, repo_type="dataset")
        data = _write_jsonl(root / "train.jsonl", chat_rows(QA[:2]))
        api.upload_file(path_or_fileobj=data, path_in_repo="data/train.jsonl", repo_id=DATA,
                        repo_type="dataset")  # fmt: skip
        with use_endpoint(running.url):
            yield running


HUB_PARAMS = {"base_model": MODEL, "dataset": DATA, "output_repo": OUTPUT, "push": True}


@pytest.mark.e2e
def test_everything_readable_and_writable_passes(train: ModuleType, hub: LocalHub) -> None:
    checks = train.preflight(HUB_PARAMS, env={"HF_TOKEN": TOKEN})
    by_name = _by_name(checks)
    assert all(c["ok"] for c in checks), checks
    assert by_name["whoami"]["detail"] == "HF_TOKEN accepted: user me (role write)"
    assert by_name["output-repo"]["detail"] == (
        f"output repo {OUTPUT} does not exist yet (it will be created); me is writable with "
        "this token"
    )
    assert by_name["dataset"]["detail"].startswith(f"dataset {DATA} at main = ")
    assert by_name["dataset"]["detail"].endswith(": data/train.jsonl")
    assert by_name["base-model"]["detail"].startswith(f"base model {MODEL} at main = ")
    assert TOKEN not in json.dumps(checks)


@pytest.mark.e2e
def test_a_rejected_token_names_space_hf_token(train: ModuleType, hub: LocalHub) -> None:
    bad = "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"
    checks = train.preflight(HUB_PARAMS, env={"HF_TOKEN": bad})
    whoami = _by_name(checks)["whoami"]
    assert (whoami["ok"], whoami["exit_code"]) == (False, 2)
    assert whoami["detail"].startswith(
        "the Hub rejected the token (HTTP 401): the Space's HF_TOKEN secret is not a usable "
        "token; set SPACE_HF_TOKEN"
    )
    assert _by_name(checks)["output-repo"]["detail"] == "skipped: needs an accepted token"
    assert bad not in json.dumps(checks)


@pytest.mark.e2e
def test_unreadable_repos_and_foreign_namespaces_are_exit_2(
    train: ModuleType, hub: LocalHub
) -> None:
    env = {"HF_TOKEN": TOKEN}
    cases = [
        ({"dataset_revision": "no-such-branch"}, "dataset", f"dataset {DATA}: no such revision"),
        ({"dataset": "me/no-such-data"}, "dataset", "dataset me/no-such-data: no such repo"),
        ({"model_revision": "v9"}, "base-model", f"base model {MODEL}: no such revision"),
        ({"output_repo": "bob/adapter"}, "output-repo",
         "output repo bob/adapter does not exist yet (it will be created), but the token's "
         "account (me) has no namespace 'bob': give SPACE_HF_TOKEN write access to it"),
    ]  # fmt: skip
    for change, name, expected in cases:
        checks = train.preflight({**HUB_PARAMS, **change}, env=env)
        failed = [c for c in checks if not c["ok"]]
        assert [c["name"] for c in failed] == [name], (change, checks)
        assert failed[0]["exit_code"] == 2
        assert failed[0]["detail"].startswith(expected), failed[0]["detail"]

    HfApi(endpoint=hub.url, token=TOKEN).create_repo("me/no-data", repo_type="dataset")
    checks = train.preflight({**HUB_PARAMS, "dataset": "me/no-data"}, env=env)
    detail = _by_name(checks)["dataset"]["detail"]
    assert detail.startswith("dataset me/no-data at main = ")
    assert detail.endswith(" has no .jsonl or .parquet file")


@pytest.mark.e2e
def test_a_read_only_token_is_refused_naming_space_hf_token(
    train: ModuleType, hub: LocalHub
) -> None:
    checks = train.preflight(HUB_PARAMS, env={"HF_TOKEN": READ_TOKEN})
    by_name = _by_name(checks)
    assert by_name["whoami"]["detail"] == "HF_TOKEN accepted: user me (role read)"
    output = by_name["output-repo"]
    assert (output["ok"], output["exit_code"]) == (False, 2)
    assert output["detail"] == (
        f"output repo {OUTPUT} does not exist yet (it will be created), but the token is a "
        "'read' token: give SPACE_HF_TOKEN write access to it, then `spacetrain space setup`"
    )
    assert by_name["dataset"]["ok"] and by_name["base-model"]["ok"]  # reading is fine
    # and localhub refuses the push the check predicted
    with pytest.raises(HfHubHTTPError, match="403"):
        HfApi(endpoint=hub.url, token=READ_TOKEN).create_repo(OUTPUT)
    assert READ_TOKEN not in json.dumps(checks)


@pytest.mark.e2e
def test_a_scoped_token_is_accepted_for_its_repo_and_refused_for_another(
    train: ModuleType, hub: LocalHub
) -> None:
    env = {"HF_TOKEN": SCOPED_TOKEN}
    checks = train.preflight(HUB_PARAMS, env=env)
    assert all(c["ok"] for c in checks), checks
    by_name = _by_name(checks)
    assert by_name["whoami"]["detail"] == "HF_TOKEN accepted: user me (role fineGrained)"
    assert by_name["output-repo"]["detail"] == (
        f"output repo {OUTPUT} does not exist yet (it will be created); me is writable with "
        "this token"
    )
    other = "me/other-adapter"
    refused = _by_name(train.preflight({**HUB_PARAMS, "output_repo": other}, env=env))
    assert (refused["output-repo"]["ok"], refused["output-repo"]["exit_code"]) == (False, 2)
    assert refused["output-repo"]["detail"] == (
        f"output repo {other} does not exist yet (it will be created), but the fine-grained "
        "token may not write to it: give SPACE_HF_TOKEN write access to it, then "
        "`spacetrain space setup`"
    )
    scoped = HfApi(endpoint=hub.url, token=SCOPED_TOKEN)
    with pytest.raises(HfHubHTTPError, match="403"):  # the Hub agrees: no push there
        scoped.create_repo(other)
    scoped.create_repo(OUTPUT)  # and there, yes
    try:
        scoped.upload_file(path_or_fileobj=b"{}", path_in_repo="adapter_config.json",
                           repo_id=OUTPUT)  # fmt: skip
    finally:
        HfApi(endpoint=hub.url, token=TOKEN).delete_repo(OUTPUT)


@pytest.mark.e2e
def test_the_order_of_a_fine_grained_tokens_scopes_does_not_matter(
    train: ModuleType, hub: LocalHub
) -> None:
    checks = train.preflight(HUB_PARAMS, env={"HF_TOKEN": REORDERED_TOKEN})
    assert _by_name(checks)["output-repo"]["ok"], _by_name(checks)["output-repo"]


@pytest.mark.e2e
def test_an_unreachable_hub_is_exit_3_and_skips_the_rest(train: ModuleType, hub: LocalHub) -> None:
    hub.add_faults({"status_codes": [503], "paths": "/api/*"})
    try:
        checks = train.preflight(HUB_PARAMS, env={"HF_TOKEN": TOKEN}, hub_deadline_s=1)
    finally:
        hub.faults.clear()
    by_name = _by_name(checks)
    assert (by_name["whoami"]["ok"], by_name["whoami"]["exit_code"]) == (False, 3)
    assert "Hub unreachable at" in by_name["whoami"]["detail"]
    for name in ("output-repo", "dataset", "base-model"):
        assert by_name[name]["detail"] == "skipped: the Hub is unreachable", name
    assert train.preflight_summary(checks)["exit_code"] == 3


# ------------------------------------------------------------------ train.py and app.py


@pytest.mark.e2e
def test_train_py_stops_before_loading_anything(tmp_path: Path) -> None:
    params = _local(tmp_path)
    out = tmp_path / "out"
    res = run_train(
        "--base-model", params["base_model"], "--dataset", params["dataset"],
        "--output-dir", out, "--output-repo", OUTPUT, "--run-id", "no-token",
        env={"HF_TOKEN": "", "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"},
    )  # fmt: skip
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("train.py: error: the Space has no HF_TOKEN")
    assert "SPACE_HF_TOKEN" in lines[0]
    assert "[train] self-check FAIL token: the Space has no HF_TOKEN secret" in res.stdout
    names = [e["event"] for e in res.events]
    assert names == ["start", "preflight", "error"]  # no dataset, model or step event
    assert res.event("preflight")["ok"] is False
    assert res.event("error")["exit_code"] == 2
    assert not out.exists()


@pytest.mark.e2e  # imports torch or gradio in this process: the model stack
def test_training_preflight_answers_like_start_training_reads(
    app: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gradio as gr

    monkeypatch.setenv("SPACETRAIN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("SPACETRAIN_EXPECT_GPU", raising=False)
    app.runs.cache_clear()
    local = _local(tmp_path)
    monkeypatch.setenv("SPACETRAIN_ALLOW_LOCAL_PATHS", "1")  # the model and data are folders
    for name, value in {"BASE_MODEL": local["base_model"], "OUTPUT_REPO": OUTPUT}.items():
        monkeypatch.setenv(name, value)
    try:
        answer = json.loads(app.training_preflight(json.dumps({"dataset": local["dataset"]})))
        assert set(answer) == {"ok", "exit_code", "checks", "error", "active_run"}
        assert (answer["ok"], answer["exit_code"], answer["active_run"]) == (False, 2, None)
        assert answer["error"].startswith("the Space has no HF_TOKEN secret")
        assert "SPACE_HF_TOKEN" in answer["error"]
        assert [c["name"] for c in answer["checks"] if not c["ok"]] == ["token"]

        fine = json.loads(app.training_preflight(json.dumps({**local, "push": False})))
        assert (fine["ok"], fine["exit_code"], fine["error"]) == (True, 0, None)
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

        for bad, message in [
            ('{"epochs": 0}', "params.epochs must be a number > 0"),
            ('{"hf_token": "x"}', "tokens are never passed in params"),
        ]:
            with pytest.raises(gr.Error, match=re.escape(message)):
                app.training_preflight(bad)
        monkeypatch.delenv("BASE_MODEL")
        with pytest.raises(gr.Error, match=re.escape("no base_model: pass params.base_model")):
            app.training_preflight(json.dumps({"dataset": local["dataset"]}))
    finally:
        app.runs.cache_clear()


@pytest.mark.e2e
def test_the_apps_gpu_check_runs_in_a_child_and_says_why(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app never holds a CUDA context of its own: the check runs in a child process."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("SPACETRAIN_EXPECT_GPU", "1")
    check = app._gpu_check_in_child()
    assert (check["name"], check["ok"], check["exit_code"]) == ("gpu", False, 2)
    assert "SPACETRAIN_EXPECT_GPU=1 but no CUDA: " in check["detail"]
    assert check["facts"]["cuda_available"] is False and check["facts"]["torch"]


@pytest.mark.e2e  # imports torch or gradio in this process: the model stack
def test_the_start_button_checks_first_and_shows_the_failing_line(
    app: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UI's own Start handler: a failed check is said next to the button, and no run
    folder appears."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("SPACETRAIN_RUNS_DIR", str(runs))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("SPACETRAIN_EXPECT_GPU", raising=False)
    monkeypatch.setenv("SPACETRAIN_ALLOW_LOCAL_PATHS", "1")
    monkeypatch.setenv("OUTPUT_REPO", OUTPUT)
    app.runs.cache_clear()
    try:
        demo = app.build_ui()
        start = next(f.fn for f in demo.fns.values() if f.name == "ui_start")
        params = json.dumps({**_local(tmp_path), "output_repo": OUTPUT, "run_id": "ui-1"})
        empty_form = [None] * len(app.FORM)  # the form left empty, the params under Advanced
        shown, message = start(*empty_form, params, "")
        assert shown is not None and not isinstance(shown, str)  # gr.skip(): no run shown
        # Said next to the button (escaped for HTML), the failing line first:
        assert "the Space&#x27;s self-check failed: the Space has no HF_TOKEN" in message
        assert "SPACE_HF_TOKEN" in message
        assert not (runs / "ui-1").exists()
    finally:
        app.runs.cache_clear()
