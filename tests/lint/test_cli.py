"""`spacetrain lint` / `spacetrain rule` as a user runs them: exit code first, then output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, assemble

from spacetrain.cli import main
from spacetrain.lint import REGISTRY

REPO = Path(__file__).resolve().parents[2]
CONTRACT_KEYS = ["rule", "severity", "path", "line", "message", "hint"]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess (what CI and pre-commit run)."""
    return subprocess.run(
        [sys.executable, "-m", "spacetrain", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def case_space(tmp_path: Path, rule: str, kind: str = "bad") -> Path:
    root = tmp_path / "space"
    assemble(FIXTURES / "rules" / rule / kind, root)
    return root


@pytest.mark.e2e
def test_clean_space_exits_0(tmp_path: Path) -> None:
    case_space(tmp_path, "missing-file", "good")
    done = cli("lint", "space", "--policy", str(REPO / "policy/space.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("0 errors, 0 warnings, 0 suppressed in space/")
    assert done.stderr == ""


@pytest.mark.e2e
def test_default_path_is_space_and_default_policy_applies(tmp_path: Path) -> None:
    case_space(tmp_path, "forbidden-file")  # no policy/ here: the built-in defaults apply
    done = cli("lint", cwd=tmp_path)
    assert done.returncode == 1
    assert "space/requirements.txt: error [forbidden-file] requirements.txt must not be" in (
        done.stdout
    )
    assert done.stderr == ""


@pytest.mark.e2e
def test_errors_exit_1_with_file_line_rule_and_hint(tmp_path: Path) -> None:
    case_space(tmp_path, "pip-unpinned")
    done = cli("lint", "space/", cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert (
        "space/Dockerfile:14: error [pip-unpinned] gradio>=5 is a range, not an exact == pin"
        in (lines)
    )
    assert "    hint: write gradio==<version>" in lines
    assert lines[-1].startswith("8 errors, 0 warnings, 0 suppressed in space/")


@pytest.mark.e2e
def test_warnings_alone_exit_0_and_exit_zero_forces_0(tmp_path: Path) -> None:
    case_space(tmp_path, "user-not-1000")
    done = cli("lint", "space", cwd=tmp_path)
    assert done.returncode == 0
    assert "warning [user-not-1000]" in done.stdout
    (tmp_path / "space" / "requirements.txt").write_text("x\n")
    assert cli("lint", "space", cwd=tmp_path).returncode == 1
    assert cli("lint", "space", "--exit-zero", cwd=tmp_path).returncode == 0


@pytest.mark.e2e
def test_absolute_path_inside_cwd_is_shown_relative(tmp_path: Path) -> None:
    root = case_space(tmp_path, "forbidden-file")
    done = cli("lint", str(root), "--format", "json", cwd=tmp_path)
    assert done.returncode == 1
    assert json.loads(done.stdout)["findings"][0]["path"] == "space/requirements.txt"


# ------------------------------------------------------------------ bad usage: exit 2


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["lint", "nope"], "spacetrain lint: error: nope: does not exist; pass the Space"),
        ("file", ["lint", "afile"], "spacetrain lint: error: afile: is not a folder"),
        (None, ["lint", "space", "--policy", "missing.yaml"], "missing.yaml: cannot read policy"),
        (
            "yaml",
            ["lint", "space", "--policy", "p.yaml"],
            "spacetrain lint: error: p.yaml:3: invalid YAML:",
        ),
        (
            "unknown-rule",
            ["lint", "space", "--policy", "p.yaml"],
            "spacetrain lint: error: p.yaml:3: rules: unknown rule id 'pip-unpined' "
            "(did you mean 'pip-unpinned'?); `spacetrain rule` lists them",
        ),
        (
            "unknown-key",
            ["lint", "space", "--policy", "p.yaml"],
            "spacetrain lint: error: p.yaml:2: files: unknown key 'forbiden' "
            "(did you mean 'forbidden'?)",
        ),
        (
            "bad-type",
            ["lint", "space", "--policy", "p.yaml"],
            "spacetrain lint: error: p.yaml:2: app.port: must be a port number from 1 to 65535 or "
            "null, not 'seventy'",
        ),
        (
            "bad-regex",
            ["lint", "space", "--policy", "p.yaml"],
            "spacetrain lint: error: p.yaml:2: pip.cuda_index: bad regular expression '(unclosed'",
        ),
        (
            "bad-severity",
            ["lint", "space", "--policy", "p.yaml"],
            "spacetrain lint: error: p.yaml:2: rules.user-not-1000: must be 'error', 'warning' or "
            "'off', not 'fatal'",
        ),
        (
            "ignore-without-reason",
            ["lint", "space", "--policy", "p.yaml"],
            "spacetrain lint: error: p.yaml:2: ignore[0].reason: must be a non-empty reason, "
            "not ' '",
        ),
        (
            "duplicate-key",
            ["lint", "space", "--policy", "p.yaml"],
            "spacetrain lint: error: p.yaml:3: key 'user-not-1000' appears twice (first at line 2)",
        ),
        (
            "list",
            ["lint", "space", "--policy", "p.yaml"],
            "p.yaml:1: the policy: must be a mapping, not a list",
        ),
        (None, ["lint", "space", "--find-links", "nowheels"], "nowheels: --find-links needs"),
    ],
)
@pytest.mark.e2e
def test_bad_usage_is_exit_2_with_one_line(
    tmp_path: Path, setup: str | None, args: list[str], message: str
) -> None:
    case_space(tmp_path, "missing-file", "good")
    policies = {
        "yaml": "files:\n  required: [a\n  allowed: []\n",
        "unknown-rule": "version: 1\nrules:\n  pip-unpined: warning\n",
        "unknown-key": "files:\n  forbiden: [x]\n",
        "bad-type": "app:\n  port: seventy\n",
        "bad-regex": "pip:\n  cuda_index: '(unclosed'\n",
        "bad-severity": "rules:\n  user-not-1000: fatal\n",
        "ignore-without-reason": "ignore:\n  - {rule: unexpected-file, path: x, reason: ' '}\n",
        "duplicate-key": "rules:\n  user-not-1000: warning\n  user-not-1000: error\n",
        "list": "- files\n",
    }
    if setup == "file":
        (tmp_path / "afile").write_text("x")
    elif setup:
        (tmp_path / "p.yaml").write_text(policies[setup])
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(message) or message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------ bad files: findings


BAD_FILES: list[tuple[str, dict[str, str | bytes], str, int | None, str]] = [
    ("empty Dockerfile", {"Dockerfile": b""}, "dockerfile-invalid", None, "is empty"),
    ("blank Dockerfile", {"Dockerfile": b"\n  \n"}, "dockerfile-invalid", None, "is empty"),
    (
        "binary Dockerfile",
        {"Dockerfile": b"\x7fELF\x00\x01\x02"},
        "dockerfile-invalid",
        None,
        "is a binary file",
    ),
    (
        "non-UTF-8 Dockerfile",
        {"Dockerfile": b"FROM python:3.11-slim\nRUN echo caf\xe9\n"},
        "dockerfile-invalid",
        2,
        "is not valid UTF-8",
    ),
    (
        "Dockerfile without FROM",
        {"Dockerfile": b"ARG X=1\nRUN echo hi\n"},
        "dockerfile-invalid",
        1,
        "has no FROM",
    ),
    (
        "unterminated quote in RUN",
        {"Dockerfile": b'FROM python:3.11-slim\nRUN pip install "trl==1.16.0\nCMD ["x"]\n'},
        "dockerfile-invalid",
        2,
        "cannot be parsed as shell",
    ),
    (
        "README with broken YAML",
        {"README.md": "---\ntitle: x\nsdk: [docker\napp_port: 7860\n---\n"},
        "readme-front-matter",
        4,
        "front matter is not valid YAML",
    ),
    (
        "README with a tab-indented key",
        {"README.md": "---\ntitle: x\n\tsdk: docker\n---\n"},
        "readme-front-matter",
        3,
        "front matter is not valid YAML",
    ),
    (
        "README without front matter",
        {"README.md": "# Title\n\nsdk: docker\n"},
        "readme-front-matter",
        1,
        "has no YAML front matter",
    ),
    (
        "README front matter never closed",
        {"README.md": "---\ntitle: x\nsdk: docker\n"},
        "readme-front-matter",
        1,
        "never closed",
    ),
    (
        "README front matter is a list",
        {"README.md": "---\n- sdk\n- docker\n---\n"},
        "readme-front-matter",
        2,
        "must be a YAML mapping",
    ),
    (
        "README with a duplicated key",
        {"README.md": "---\ntitle: a\nsdk: docker\napp_port: 7860\ntitle: b\n---\n"},
        "readme-front-matter",
        5,
        "key 'title' appears twice (first at line 2); keep one (the Hub rejects it)",
    ),
    (
        "non-UTF-8 README",
        {"README.md": b"---\ntitle: caf\xe9\n---\n"},
        "readme-front-matter",
        2,
        "is not valid UTF-8",
    ),
    (
        "non-UTF-8 app.py",
        {"app.py": b"import gradio as gr\nTITLE = 'caf\xe9'\n"},
        "python-syntax",
        2,
        "is not valid UTF-8",
    ),
    ("app.py with NUL bytes", {"app.py": b"x = 1\x00\n"}, "python-syntax", None, "is a binary"),
    (
        "app.py that does not parse",
        {"app.py": "import gradio as gr\n\nwith gr.Blocks() as demo\n    pass\n"},
        "python-syntax",
        3,
        "does not parse as Python",
    ),
]


@pytest.mark.parametrize(
    ("files", "rule", "line", "text"),
    [case[1:] for case in BAD_FILES],
    ids=[case[0] for case in BAD_FILES],
)
def test_bad_files_are_findings_not_crashes(
    space,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str | bytes],
    rule: str,
    line: int | None,
    text: str,
) -> None:
    root = space(**files)
    code = main(["lint", str(root), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err == ""
    hits = [f for f in json.loads(out)["findings"] if f["rule"] == rule]
    assert len(hits) == 1, out
    assert hits[0]["line"] == line
    assert text in hits[0]["message"]


def test_big_binary_file_is_read_only_in_part_and_reported(
    space, capsys: pytest.CaptureFixture[str]
) -> None:
    root = space(**{"model.bin": bytes(range(256)) * (50 << 12)})  # 50 MiB
    assert main(["lint", str(root), "--format", "json"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [(f["rule"], f["path"].rsplit("/", 1)[-1]) for f in findings] == [
        ("unexpected-file", "model.bin")
    ]


# ------------------------------------------------------------------ formats


@pytest.mark.e2e
def test_json_matches_the_contract(tmp_path: Path) -> None:
    case_space(tmp_path, "suppression-without-reason")
    done = cli("lint", "space", "--format", "json", cwd=tmp_path)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["schema_version"] == 1
    assert report["path"] == "space"
    assert report["errors"] == 2 and report["warnings"] == 0 and report["suppressed"] == 0
    for finding in report["findings"]:
        assert list(finding) == CONTRACT_KEYS
        assert finding["severity"] in {"error", "warning"}
        assert finding["path"].startswith("space/")
        assert finding["line"] is None or isinstance(finding["line"], int)
    assert {f["rule"] for f in report["findings"]} == {
        "suppression-without-reason",
        "healthcheck-missing",
    }
    assert sorted(report["files"]) == sorted(
        f"space/{n}" for n in (".gitattributes", "Dockerfile", "README.md", "app.py", "train.py")
    )


@pytest.mark.e2e
def test_sarif_is_2_1_0_with_rules_and_suppressions(tmp_path: Path) -> None:
    root = case_space(tmp_path, "suppression-without-reason", "good")
    (root / "requirements.txt").write_text("x\n")
    done = cli("lint", "space", "--format", "sarif", cwd=tmp_path)
    assert done.returncode == 1
    sarif = json.loads(done.stdout)
    assert sarif["version"] == "2.1.0"
    assert sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "spacetrain"
    ids = [r["id"] for r in driver["rules"]]
    assert ids == list(REGISTRY)
    for described in driver["rules"]:
        assert described["shortDescription"]["text"]
        assert described["fullDescription"]["text"]
        assert described["help"]["text"] and described["help"]["markdown"]
        assert described["helpUri"].startswith("https://")
        assert described["defaultConfiguration"]["level"] in {"error", "warning"}
    results = run["results"]
    assert len(results) == 2
    for result in results:
        assert ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in {"error", "warning"}
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"].startswith("space/")
    suppressed = [r for r in results if r.get("suppressions")]
    assert [r["ruleId"] for r in suppressed] == ["healthcheck-missing"]
    assert suppressed[0]["suppressions"][0] == {
        "kind": "inSource",
        "justification": "the Space probes app_port itself",
    }
    assert suppressed[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 3


@pytest.mark.e2e
def test_github_annotations_escape_and_summarise(tmp_path: Path) -> None:
    odd = tmp_path / "odd,dir:x" / "space"
    assemble(FIXTURES / "rules" / "user-not-1000" / "bad", odd)
    (odd / "notes.md").write_text("x\n")
    summary = tmp_path / "summary.md"
    summary.write_text("before\n")
    done = cli(
        "lint",
        "odd,dir:x/space",
        "--format",
        "github",
        cwd=tmp_path,
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[-1] == (
        "spacetrain lint: 1 error, 2 warnings, 0 suppressed in odd,dir:x/space/ (6 files, 22 rules)"
    )
    error = next(line for line in lines if line.startswith("::error"))
    assert error == (
        "::error file=odd%2Cdir%3Ax/space/notes.md,title=unexpected-file::notes.md is not one of"
        " the Space's expected files%0Ahint: Remove it, or list it under files.allowed in"
        " policy/space.yaml"
    )
    warnings = [line for line in lines if line.startswith("::warning")]
    assert len(warnings) == 2
    assert warnings[0].startswith(
        "::warning file=odd%2Cdir%3Ax/space/Dockerfile,line=2,title=user-not-1000::"
    )
    text = summary.read_text()
    assert text.startswith("before\n### spacetrain lint")
    assert "| severity | rule | where | message |" in text
    assert "`odd,dir:x/space/Dockerfile:2`" in text


@pytest.mark.e2e
def test_output_file_gets_the_report_and_stderr_the_summary(tmp_path: Path) -> None:
    case_space(tmp_path, "forbidden-file")
    done = cli("lint", "space", "--format", "sarif", "-o", "reports/x.sarif", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("spacetrain lint: 1 error, 0 warnings")
    assert json.loads((tmp_path / "reports/x.sarif").read_text())["version"] == "2.1.0"


# ------------------------------------------------------------------ spacetrain rule


def test_rule_lists_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rule"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(REGISTRY)


def test_rule_explains_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rule", "pip-unpinned"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# pip-unpinned (error)\n")
    for heading in ("## What it does", "## Why is this bad?", "## Example"):
        assert heading in out


def test_unknown_rule_is_exit_2_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rule", "pip-unpined"]) == 2
    err = capsys.readouterr().err
    assert err == "spacetrain rule: error: unknown rule 'pip-unpined'; did you mean pip-unpinned?\n"
