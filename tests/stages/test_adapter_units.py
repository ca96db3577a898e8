"""The training stages' pure parts: params, progress, log lines, checks, the model card.

No Hub and no Space here (tests/stages/test_adapter_e2e.py has those); the CLI cases
at the end stop at bad input, before any network call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import EvalResult, ModelCard

from spacetrain import contract
from spacetrain.config import AdapterConfig
from spacetrain.errors import GateFailed, UsageError
from spacetrain.evaluate.gate import load_gate
from spacetrain.evaluate.report import build_report
from spacetrain.evaluate.scoring import CaseResult
from spacetrain.stages.backend import RunStatus
from spacetrain.stages.fetch import StaleAdapter, check_adapter
from spacetrain.stages.follow import _Pace, progress_line, readable
from spacetrain.stages.params import (
    TrainingOverrides,
    build_params,
    check_run_id,
    default_run_id,
    train_options,
)
from spacetrain.stages.promote import (
    SECTION_END,
    SECTION_START,
    StaleReport,
    check_same_adapter,
    passing_report,
    update_card,
)

REPO = Path(__file__).resolve().parents[2]
SHA = "a" * 40
ADAPTER = AdapterConfig(
    name="qa",
    base_model="me/base",
    dataset="me/data",
    output_repo="me/adapter",
    suite=Path("suite.yaml"),
    base_revision="b" * 40,
    dataset_revision="v1",
    train={"epochs": 4, "learning_rate": 2e-4, "lora_r": 16},
)


# ------------------------------------------------------------------ params


def test_params_come_from_the_adapter_config_and_flags_override_them() -> None:
    params = build_params(run_id="r1", adapter=ADAPTER, overrides={"epochs": 2, "seed": None})
    assert params == {
        "run_id": "r1",
        "push": True,
        "base_model": "me/base",
        "model_revision": "b" * 40,
        "dataset": "me/data",
        "dataset_revision": "v1",
        "output_repo": "me/adapter",
        "epochs": 2,
        "learning_rate": 2e-4,
        "lora_r": 16,
    }
    flags = build_params(
        run_id="r1", adapter=ADAPTER, dataset="me/other", dataset_revision="c" * 40
    )
    assert (flags["dataset"], flags["dataset_revision"]) == ("me/other", "c" * 40)
    # v1 is a revision of me/data: another dataset without a revision gets its default.
    elsewhere = build_params(run_id="r1", adapter=ADAPTER, dataset="me/other", base_model="me/b2")
    assert "dataset_revision" not in elsewhere and "model_revision" not in elsewhere


def test_without_config_only_what_is_given_is_sent_and_the_space_variables_decide() -> None:
    assert build_params(run_id="r1") == {"run_id": "r1", "push": True}


def test_bad_run_ids_and_parameters_are_refused_before_asking_the_space() -> None:
    for bad in ("", "-leading-dash", "has space", "x" * 65, "slash/inside"):
        with pytest.raises(UsageError, match="run id"):
            check_run_id(bad)
    with pytest.raises(UsageError, match="unknown training parameter"):
        build_params(run_id="r1", overrides={"lr": 1.0})


@pytest.mark.e2e
def test_default_run_id_names_the_commit_and_the_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
    run_id = default_run_id()
    assert run_id.startswith("0123456789-") and contract.RUN_ID_RE.fullmatch(run_id)
    assert default_run_id() != run_id  # two runs in one second (the deploy matrix) differ
    monkeypatch.delenv("GITHUB_SHA")
    monkeypatch.chdir(tmp_path)  # not a git checkout
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    plain = default_run_id()
    assert plain.startswith("run-") and contract.RUN_ID_RE.fullmatch(plain)


@pytest.mark.e2e
def test_options_take_flags_over_state_over_config(tmp_path: Path) -> None:
    from spacetrain.config import ProjectConfig
    from spacetrain.stages.state import PipelineState

    config = ProjectConfig(
        root=tmp_path, space="me/trainer", space_dir=tmp_path / "space", hardware="a10g-small",
        after_training="cpu-basic", gate=tmp_path / "gate.yaml", lint_policy=tmp_path / "p.yaml",
        adapters={"qa": ADAPTER},
    )  # fmt: skip
    state = PipelineState(tmp_path / "state.json", {
        "space": "me/synced", "dataset_revision": "d" * 40, "base_revision": "e" * 40,
        "run_id": "half-done", "run_state": "running",
    })  # fmt: skip
    options = train_options(config, state, TrainingOverrides(epochs=1))
    assert (options.space, options.run_id, options.after_training) == (
        "me/synced", "half-done", "cpu-basic"
    )  # fmt: skip
    assert options.params["dataset_revision"] == "d" * 40  # preflight's pin
    assert options.params["model_revision"] == "e" * 40
    assert options.params["epochs"] == 1
    named = train_options(
        config, state, TrainingOverrides(run_id="r2", dataset="me/d2"), space="me/other"
    )
    assert (named.space, named.run_id) == ("me/other", "r2")
    assert "dataset_revision" not in named.params  # the pin was for the configured dataset
    state.data["run_state"] = "succeeded"  # a finished run is not rejoined
    assert train_options(config, state).run_id != "half-done"
    with pytest.raises(UsageError, match="--poll-interval must be a positive"):
        train_options(config, state, poll_interval=0)


# ------------------------------------------------------------------ progress and logs


def test_progress_line_says_step_epoch_loss_and_eta() -> None:
    status = {"run_id": "r1", "state": "running", "step": 12, "total": 40, "epoch": 1.2,
              "loss": 2.34561}  # fmt: skip
    assert progress_line(RunStatus.from_json(status), 192) == (
        "run r1 running: step 12/40 (30%), epoch 1.20, loss 2.3456, ETA 3m12s"
    )
    queued = RunStatus.from_json({"run_id": "r1", "state": "queued"})
    assert progress_line(queued, None) == "run r1 queued"


def test_eta_comes_from_the_steps_this_follower_saw() -> None:
    now = [100.0]
    lines: list[str] = []
    progress = _Pace(lines.append, clock=lambda: now[0])
    progress.show(
        RunStatus.from_json({"run_id": "r", "state": "running", "step": 10, "total": 110})
    )
    now[0] = 120.0  # 20 s for 10 steps: 100 steps to go take 200 s
    progress.show(
        RunStatus.from_json({"run_id": "r", "state": "running", "step": 20, "total": 110})
    )
    assert lines == [
        "run r running: step 10/110 (9%)",
        "run r running: step 20/110 (18%), ETA 3m00s",
    ]
    now[0] = 121.0  # too soon for another line about the same state
    progress.show(
        RunStatus.from_json({"run_id": "r", "state": "running", "step": 21, "total": 110})
    )
    assert len(lines) == 2


def test_log_lines_for_people_drop_events_and_mask_tokens() -> None:
    text = (
        "[train] step 1/2 epoch 0.50 loss 3.0\n"
        '@@spacetrain {"event": "step", "step": 1}\n'
        "\n"
        "pushing with hf_abcdefghijklmnopqrstuvwx\n"
    )
    assert readable(text) == ["[train] step 1/2 epoch 0.50 loss 3.0", "pushing with hf_***"]


# ------------------------------------------------------------------ fetch checks


def _adapter_folder(root: Path, run_id: str | None = "r1", weights: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "adapter_config.json").write_text("{}")
    if weights:
        (root / "adapter_model.safetensors").write_bytes(b"weights")
    if run_id is not None:
        (root / "run.json").write_text(json.dumps({"run_id": run_id}))
    return root


def test_an_adapter_folder_must_be_complete_and_name_this_run(tmp_path: Path) -> None:
    assert check_adapter(_adapter_folder(tmp_path / "ok"), "r1", "x")["run_id"] == "r1"
    cases = {
        "foreign": (_adapter_folder(tmp_path / "f", "r0"), "made by run 'r0', not by run 'r1'"),
        "no-run": (_adapter_folder(tmp_path / "n", None), "has no run.json"),
        "no-weights": (_adapter_folder(tmp_path / "w", weights=False), "no adapter weights"),
    }
    for folder, message in cases.values():
        with pytest.raises(StaleAdapter, match=message):
            check_adapter(folder, "r1", str(folder))
    broken = _adapter_folder(tmp_path / "b")
    (broken / "run.json").write_text("{not json")
    with pytest.raises(StaleAdapter, match=r"run\.json is not readable JSON"):
        check_adapter(broken, "r1", "b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StaleAdapter, match=r"no adapter_config\.json"):
        check_adapter(tmp_path / "empty", "r1", "empty")


# ------------------------------------------------------------------ promote checks


def _report(score: float = 1.0, **adapter: Any) -> dict[str, Any]:
    policy = load_gate(REPO / "policy" / "gate.yaml")
    results = [
        CaseResult(id="a", category="principles", score=score, output="Unity."),
        CaseResult(id="b", category="history", score=score, output="In 1966."),
    ]
    meta = {"adapter": {"repo": "me/adapter", "revision": SHA, "run_id": "r1", **adapter},
            "suite": {"name": "qa"}, "base_model": "me/base"}  # fmt: skip
    return build_report(policy=policy, results=results, meta=meta)


def _never() -> str:
    raise AssertionError("the weights digest is only computed for a local-folder report")


def test_a_report_must_be_about_this_repo_commit_and_run() -> None:
    target = {"repo": "me/adapter", "revision": SHA, "run_id": "r1"}
    check_same_adapter(_report()["adapter"], weights_sha256=_never, **target)
    stale = {
        "other commit": {"revision": "c" * 40},
        "other repo": {"repo": "me/other"},
        "other run": {"run_id": "r0"},
        "no adapter": None,
    }
    for change in stale.values():
        adapter = None if change is None else {**_report()["adapter"], **change}
        with pytest.raises(StaleReport, match="stale report"):
            check_same_adapter(adapter, weights_sha256=_never, **target)


def test_a_report_on_a_local_folder_needs_the_run_id_and_the_same_weights() -> None:
    target = {"repo": "me/adapter", "revision": SHA, "run_id": "r1"}
    local = {"repo": ".spacetrain/adapter", "revision": None, "run_id": "r1", "sha256": "d" * 64}
    check_same_adapter(local, weights_sha256=lambda: "d" * 64, **target)
    with pytest.raises(StaleReport, match="weights it judged"):
        check_same_adapter(local, weights_sha256=lambda: "e" * 64, **target)
    with pytest.raises(StaleReport, match="without a run id and weights digest"):
        check_same_adapter({**local, "sha256": None}, weights_sha256=_never, **target)
    with pytest.raises(StaleReport, match="without a run id and weights digest"):
        check_same_adapter({**local, "run_id": None}, weights_sha256=_never, **target)


def test_only_a_report_that_passes_again_is_accepted(tmp_path: Path) -> None:
    policy = load_gate(REPO / "policy" / "gate.yaml")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_report()))
    verdict, raw = passing_report(good, policy)
    assert verdict["passed"] and raw == good.read_bytes()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**_report(0.5), "passed": True, "failures": []}))
    with pytest.raises(GateFailed, match="does not pass the gate"):
        passing_report(forged, policy)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({**_report(0.5), "overall": 0.99}))
    with pytest.raises(UsageError, match="does not match its cases"):
        passing_report(edited, policy)


# ------------------------------------------------------------------ the model card

TRAINED_CARD = """\
---
base_model: me/base
library_name: peft
tags:
- lora
---

# QLoRA adapter — run `r1`

| | |
|---|---|
| run id | r1 |
"""


def _card(text: str) -> ModelCard:
    return ModelCard(text)


def test_the_card_gets_model_index_results_and_a_section_and_keeps_the_rest() -> None:
    args = {"repo": "me/adapter", "revision": SHA, "run_id": "r1", "tag": "promoted-r1"}
    once = update_card(TRAINED_CARD, _report(), **args)
    card = _card(once)
    assert card.data.base_model == "me/base" and card.data.tags == ["lora"]
    assert card.data.model_name == "adapter"
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {
        "overall": 1.0,
        "category/history": 1.0,
        "category/principles": 1.0,
        "attribution_clean": 1.0,
    }
    assert all(r.dataset_type == "spacetrain-suite/qa" for r in card.data.eval_results)
    assert "# QLoRA adapter — run `r1`" in card.text
    assert card.text.count(SECTION_START) == card.text.count(SECTION_END) == 1
    assert "## Evaluation `qa`: PASSED" in card.text
    # Idempotent: the same report gives the same card, byte for byte.
    assert update_card(once, _report(), **args) == once
    # A newer report replaces the section and our results; others' results stay.
    other = _card(once)
    glue = {"dataset_type": "glue", "dataset_name": "GLUE", "metric_type": "accuracy"}
    other.data.eval_results.append(
        EvalResult(task_type="text-generation", metric_value=0.5, **glue)
    )
    newer = _card(update_card(str(other), _report(0.8), **args))
    values = {(r.dataset_type, r.metric_type): r.metric_value for r in newer.data.eval_results}
    assert values[("glue", "accuracy")] == 0.5
    assert values[("spacetrain-suite/qa", "overall")] == 0.8
    assert newer.text.count(SECTION_START) == 1
    assert "0.80" in newer.text


def test_a_card_without_front_matter_or_text_still_gets_the_results() -> None:
    args = {"repo": "me/adapter", "revision": SHA, "run_id": "r1", "tag": "t"}
    for text in ("", "# Just a title\n"):
        card = _card(update_card(text, _report(), **args))
        assert card.data.eval_results and SECTION_START in card.text
        assert text.strip() in card.text


# ------------------------------------------------------------------ the CLI on bad input


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    return subprocess.run(
        [sys.executable, "-m", "spacetrain", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.spacetrain]\nspace = "me/trainer"\n\n[tool.spacetrain.adapters.qa]\n'
        'base_model = "me/base"\ndataset = "me/data"\noutput_repo = "me/adapter"\n'
    )
    return tmp_path


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fetch"], "state.json has no adapter_repo: run `spacetrain train` first"),
        (["promote"], "state.json has no report: run `spacetrain evaluate` first"),
        (["train", "--run-id", "no spaces"], "run id 'no spaces': use 1-64 letters"),
        (["train", "--timeout", "0"], "--timeout must be a positive number of seconds"),
        (["train", "--adapter", "nope"], "no adapter 'nope' in [tool.spacetrain.adapters]"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_network(
    project: Path, args: list[str], message: str
) -> None:
    proc = _cli(project, *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert lines[0].startswith(f"spacetrain {args[0]}: error: ")


@pytest.mark.e2e
def test_fetch_never_replaces_the_working_folder(project: Path) -> None:
    (project / "state.json").write_text(
        json.dumps({"adapter_repo": "me/a", "adapter_revision": SHA, "run_id": "r1"})
    )
    for dest in (".", "..", str(project)):
        proc = _cli(project, "fetch", "--state", "state.json", "--dest", dest)
        assert proc.returncode == 2, proc.stderr
        assert "is the working folder or above it" in proc.stderr
    assert (project / "pyproject.toml").is_file()


@pytest.mark.e2e
def test_a_broken_state_file_names_itself(project: Path) -> None:
    (project / "state.json").write_text('{"run_id": ')
    proc = _cli(project, "fetch", "--state", "state.json")
    assert proc.returncode == 2
    assert "state.json:1: is not JSON" in proc.stderr
