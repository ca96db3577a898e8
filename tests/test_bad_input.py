"""Issue 9, "the small ones": bad input is exit 2 with one line naming it, found at once.

Each test runs the real command (a subprocess, as a user or a CI step does) and checks
the exit code first, then that stderr is one line naming the file (or flag, or
variable) and that no traceback and no token was printed. Where the point is that
the mistake is found *before* expensive work, the command is pointed at a localhub
that must see no request at all, or at a base model that does not exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spacetrain.localhub import LocalHub

REPO = Path(__file__).resolve().parent.parent
SHA = "0123456789abcdef0123456789abcdef01234567"
DEEP = "[" * 100_000 + "]" * 100_000

pytestmark = pytest.mark.e2e  # every test runs the real command in a subprocess


def project(tmp_path: Path) -> Path:
    """A throwaway project: its own pyproject.toml and policy files, the real space/."""
    root = tmp_path / "project"
    (root / "policy" / "evals").mkdir(parents=True)
    for name in ("policy/gate.yaml", "policy/space.yaml", "policy/evals/kwanzaa.yaml"):
        (root / name).write_bytes((REPO / name).read_bytes())
    (root / "space").symlink_to(REPO / "space", target_is_directory=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.spacetrain]
            space = "alice/trainer"
            [tool.spacetrain.adapters.kwanzaa]
            base_model = "alice/base"
            dataset = "alice/data"
            output_repo = "alice/adapter"
            """
        )
    )
    return root


def spacetrain(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI; a hang is a failure (``timeout``), not a stuck test run."""
    return subprocess.run(
        [sys.executable, "-m", "spacetrain", *args],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, one line on stderr holding every needle, no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def hub(tmp_path: Path):
    """A localhub that must see no request: the mistake is found before the Hub is asked."""
    with LocalHub(root=tmp_path / "hub", port=0) as server:
        yield server
        assert server.requests == [], server.requests


# ------------------------------------------------------------ 1. pyproject.toml


@pytest.mark.parametrize("command", [["preflight"], ["status"], ["sync"]])
def test_a_pyproject_that_is_not_utf8_is_one_line_with_its_line(
    tmp_path: Path, command: list[str]
) -> None:
    root = project(tmp_path)
    (root / "pyproject.toml").write_bytes(b'[tool.spacetrain]\nspace = "a/b"\n# caf\xe9\n')
    line = one_line(spacetrain(*command, cwd=root), "pyproject.toml:3:", "not UTF-8")
    assert "save it as UTF-8" in line


def test_a_pyproject_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "pyproject.toml").write_text(f"[tool.spacetrain]\nx = {DEEP}\n")
    one_line(spacetrain("preflight", cwd=root), "pyproject.toml", "nested too deeply")


# ------------------------------------------------- 2, 3. outputs checked up front


@pytest.mark.parametrize("flag", ["--report", "--markdown"])
def test_evaluate_refuses_a_folder_as_output_before_evaluating(tmp_path: Path, flag: str) -> None:
    root = project(tmp_path)
    (root / "out").mkdir()
    # The base model does not exist: reaching it would be a different error.
    proc = spacetrain(
        "evaluate", "--base-model", str(tmp_path / "no-model"),
        "--suite", "policy/evals/kwanzaa.yaml", flag, "out", cwd=root,
    )  # fmt: skip
    one_line(proc, f"{flag} out is a folder")


def test_evaluate_refuses_an_output_under_a_file(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "reports").write_text("a file\n")
    proc = spacetrain(
        "evaluate", "--base-model", str(tmp_path / "no-model"),
        "--suite", "policy/evals/kwanzaa.yaml", "--report", "reports/eval.json", cwd=root,
    )  # fmt: skip
    one_line(proc, "--report reports/eval.json", "reports is a file")


def test_pipeline_refuses_a_report_dir_that_is_a_file_before_preflight(
    tmp_path: Path, hub: LocalHub
) -> None:
    root = project(tmp_path)
    (root / "reports").write_text("a file\n")
    proc = spacetrain("pipeline", cwd=root, env={"HF_ENDPOINT": hub.url})
    one_line(proc, "--report-dir reports is a file")
    assert proc.stdout == ""


@pytest.mark.parametrize("variable", ["GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"])
def test_pipeline_refuses_a_github_file_that_is_a_folder_before_preflight(
    tmp_path: Path, hub: LocalHub, variable: str
) -> None:
    root = project(tmp_path)
    (tmp_path / "gh").mkdir()
    proc = spacetrain(
        "pipeline", cwd=root, env={"HF_ENDPOINT": hub.url, variable: str(tmp_path / "gh")}
    )
    one_line(proc, f"{variable}={tmp_path / 'gh'} is a folder")


def test_rehearse_refuses_bad_outputs_before_starting(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x\n")
    (tmp_path / "folder").mkdir()
    one_line(spacetrain("rehearse", "--workdir", str(tmp_path / "afile"), cwd=REPO), "--workdir")
    one_line(spacetrain("rehearse", "--report", str(tmp_path / "folder"), cwd=REPO), "--report")
    proc = spacetrain("rehearse", "--markdown", str(tmp_path / "afile" / "x.md"), cwd=REPO)
    one_line(proc, "--markdown", "is a file, so nothing can be created under it")


# ---------------------------------------------------------- 4, 5. --dest, --workdir


def test_fetch_dest_under_a_file_is_one_line_before_any_download(
    tmp_path: Path, hub: LocalHub
) -> None:
    (tmp_path / "afile").write_text("x\n")
    proc = spacetrain(
        "fetch", "--state", str(tmp_path / "s.json"), "--repo", "alice/adapter",
        "--revision", SHA, "--run-id", "r1", "--dest", "afile/adapter",
        cwd=tmp_path, env={"HF_ENDPOINT": hub.url},
    )  # fmt: skip
    one_line(proc, "--dest afile/adapter", "afile is a file")
    assert not (tmp_path / "s.json").exists()


def test_rehearse_workdir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x\n")
    proc = spacetrain("rehearse", "--workdir", str(tmp_path / "afile"), cwd=REPO)
    one_line(proc, "--workdir", "is a file, not a folder")


# ------------------------------------------------------------ 7. too-deep JSON


def test_too_deep_json_is_one_line_everywhere(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "deep.json").write_text(DEEP)
    (root / "deep.jsonl").write_text('{"messages": []}\n' + DEEP + "\n")
    (root / "state.json").write_text(DEEP)
    one_line(spacetrain("gate", "deep.json", cwd=root), "deep.json:1:", "nested more than")
    one_line(spacetrain("dataset", "validate", "deep.jsonl", cwd=root), "deep.jsonl:2:", "nested")
    one_line(spacetrain("fetch", "--state", "state.json", cwd=root), "state.json:1:", "nested")
    proc = spacetrain("localhub", "serve", "--port", "0", "--faults", DEEP[:20_000], cwd=root)
    one_line(proc, "--faults: not JSON (nested more than")
    proc = spacetrain(
        "localhub", "serve", "--port", "0", cwd=root, env={"LOCALHUB_FAULTS": DEEP[:20_000]}
    )
    one_line(proc, "LOCALHUB_FAULTS", "nested more than")
    (root / "faults.json").write_text(DEEP)
    proc = spacetrain("localhub", "serve", "--port", "0", "--faults", "@faults.json", cwd=root)
    one_line(proc, "faults.json:1:", "nested")


def test_too_deep_yaml_is_one_line(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "deep.yaml").write_text(f"cases: {DEEP}\n")
    one_line(spacetrain("gate", "r.json", "--gate", "deep.yaml", cwd=root), "deep.yaml")
    one_line(spacetrain("lint", "space", "--policy", "deep.yaml", cwd=root), "deep.yaml")


# ------------------------------------------------------------ 8. GITHUB_OUTPUT


def test_github_output_that_is_a_folder_is_one_line_before_fetching(
    tmp_path: Path, hub: LocalHub
) -> None:
    (tmp_path / "gh").mkdir()
    proc = spacetrain(
        "fetch", "--state", str(tmp_path / "s.json"), "--repo", "alice/adapter",
        "--revision", SHA, "--run-id", "r1", "--dest", "adapter",
        cwd=tmp_path, env={"HF_ENDPOINT": hub.url, "GITHUB_OUTPUT": str(tmp_path / "gh")},
    )  # fmt: skip
    one_line(proc, f"GITHUB_OUTPUT={tmp_path / 'gh'} is a folder")


def test_a_state_file_that_is_a_folder_is_one_line(tmp_path: Path, hub: LocalHub) -> None:
    (tmp_path / "state").mkdir()
    proc = spacetrain(
        "fetch", "--state", "state", "--repo", "alice/adapter", "--revision", SHA,
        "--run-id", "r1", cwd=tmp_path, env={"HF_ENDPOINT": hub.url},
    )  # fmt: skip
    one_line(proc, "state")


# ----------------------------------------------------- 9. FIFOs and other non-files


@pytest.mark.parametrize(
    "command",
    [
        ["dataset", "validate", "{fifo}"],
        ["dataset", "push", "{fifo}", "--repo", "alice/data"],
        ["gate", "{fifo}"],
        ["evaluate", "--base-model", "x", "--suite", "{fifo}"],
        ["lint", "space", "--policy", "{fifo}"],
        ["fetch", "--state", "{fifo}"],
    ],
)
def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path, command: list[str]) -> None:
    root = project(tmp_path)
    fifo = tmp_path / "data.fifo"
    os.mkfifo(fifo)
    args = [part.format(fifo=fifo) for part in command]
    one_line(spacetrain(*args, cwd=root, timeout=60), str(fifo), "FIFO")


def test_a_folder_given_as_the_dataset_is_one_line(tmp_path: Path) -> None:
    one_line(spacetrain("dataset", "validate", str(tmp_path), cwd=tmp_path), "is a folder")


# --------------------------------------------------- 10. HF_ENDPOINT and tokens


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("htp://x", "must start with http:// or https://"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("not a url", "whitespace"),
        ("http://", "has no host"),
        ("http://localhost:99999", "out of range"),
    ],
)
def test_a_malformed_endpoint_is_exit_2_at_once(tmp_path: Path, endpoint: str, why: str) -> None:
    proc = spacetrain("status", "--space", "a/b", cwd=tmp_path, env={"HF_ENDPOINT": endpoint})
    one_line(proc, "HF_ENDPOINT=", why)


@pytest.mark.parametrize("variable", ["HF_TOKEN", "SPACE_HF_TOKEN"])
@pytest.mark.parametrize("bad", ["\n", "\r", "\t", "\x1b", " ", "\u00e9"])
def test_a_token_with_a_control_character_is_exit_2_never_printed(
    tmp_path: Path, hub: LocalHub, variable: str, bad: str
) -> None:
    token = f"hf_secretPart1{bad}secretPart2"
    proc = spacetrain(
        "space", "setup", "--space", "alice/trainer",
        cwd=tmp_path, env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_good", variable: token},
    )  # fmt: skip
    one_line(proc, variable, "control character")
    assert "secretPart" not in proc.stdout + proc.stderr


# ------------------------------------------------ the same class, other commands


def test_lint_output_under_a_file_is_named_before_linting(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "afile").write_text("x\n")
    one_line(spacetrain("lint", "space", "-o", "afile/x.sarif", cwd=root), "--output afile/x")


def test_pins_names_a_fifo_as_not_a_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "Dockerfile")
    one_line(spacetrain("pins", "Dockerfile", cwd=tmp_path), "is not a regular file")


def test_lint_refuses_a_step_summary_that_is_a_folder_before_linting(tmp_path: Path) -> None:
    """`lint --format github` writes the step summary: a folder there is exit 2 at once, as
    for every other command (it was a note after the lint, with exit 0)."""
    (tmp_path / "gh").mkdir()
    proc = spacetrain(
        "lint", "space", "--format", "github", cwd=REPO,
        env={"GITHUB_STEP_SUMMARY": str(tmp_path / "gh")},
    )  # fmt: skip
    one_line(proc, f"GITHUB_STEP_SUMMARY={tmp_path / 'gh'} is a folder")
    assert proc.stdout == ""
