"""`spacetrain changed`: which adapters a push retrains, by backend (the deploy matrix)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from spacetrain.changes import changed_adapters
from spacetrain.cli import main

pytestmark = pytest.mark.e2e  # runs git

PYPROJECT = """
[tool.spacetrain]
space = "me/trainer"

[tool.spacetrain.adapters.alpha]
base_model = "me/base"
dataset = "me/alpha-data"
output_repo = "me/alpha"
train = {epochs = 4}

[tool.spacetrain.adapters.beta]
base_model = "me/base"
dataset = "me/beta-data"
output_repo = "me/beta"
backend = "job"

[tool.spacetrain.adapters.gamma]
base_model = "me/base"
dataset = "me/gamma-data"
output_repo = "me/gamma"
backend = "job"
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(root: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str]:
    git(tmp_path, "init", "-q")
    base = commit(
        tmp_path,
        {
            "pyproject.toml": PYPROJECT,
            "space/app.py": "print(1)\n",
            "policy/gate.yaml": "thresholds: {}\n",
            **{f"policy/evals/{n}.yaml": f"name: {n}\n" for n in ("alpha", "beta", "gamma")},
            "README.md": "hi\n",
        },
    )
    return tmp_path, base


def test_only_the_adapters_whose_inputs_changed_are_trained(project: tuple[Path, str]) -> None:
    root, base = project
    commit(root, {"README.md": "only the readme\n"})
    assert changed_adapters(root, base).to_json() == {"space": [], "job": [], "reasons": {}}
    commit(root, {"policy/evals/beta.yaml": "name: beta\ncases: []\n"})
    changes = changed_adapters(root, base)
    assert (changes.space, changes.job) == ([], ["beta"])
    assert changes.reasons == {"beta": "its suite changed"}
    commit(root, {"pyproject.toml": PYPROJECT.replace("epochs = 4", "epochs = 2")})
    changes = changed_adapters(root, base)
    assert (changes.space, changes.job) == (["alpha"], ["beta"])
    assert changes.reasons["alpha"] == "[tool.spacetrain.adapters.alpha] changed"


def test_a_file_renamed_out_of_space_or_named_in_unicode_retrains_all(
    project: tuple[Path, str],
) -> None:
    """git diff names only a rename's new path and C-quotes non-ASCII names by default."""
    root, _ = project
    commit(root, {"space/helper.py": "x = 1\n"})
    moved = git(root, "rev-parse", "HEAD")
    git(root, "mv", "space/helper.py", "tools_helper.py")
    commit(root, {})
    assert set(changed_adapters(root, moved).reasons.values()) == {"space/ changed"}
    unicode = git(root, "rev-parse", "HEAD")
    commit(root, {"space/café.py": "y = 2\n"})
    assert set(changed_adapters(root, unicode).reasons.values()) == {"space/ changed"}


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"space/app.py": "print(2)\n"}, "space/ changed"),
        ({"policy/gate.yaml": "thresholds: {overall: 1}\n"}, "the gate changed"),
        (
            {"pyproject.toml": PYPROJECT.replace('"me/trainer"', '"me/trainer2"')},
            "the [tool.spacetrain] settings changed",
        ),
    ],
)
def test_what_every_adapter_shares_retrains_them_all(
    project: tuple[Path, str], files: dict[str, str], reason: str
) -> None:
    root, base = project
    commit(root, files)
    changes = changed_adapters(root, base)
    assert (changes.space, changes.job) == (["alpha"], ["beta", "gamma"])
    assert set(changes.reasons.values()) == {reason}


def test_a_new_adapter_is_trained_and_no_base_means_everything(project: tuple[Path, str]) -> None:
    root, base = project
    extra = '\n[tool.spacetrain.adapters.delta]\nbase_model = "me/b"\ndataset = "me/d"\n'
    commit(root, {"pyproject.toml": PYPROJECT + extra + 'output_repo = "me/delta"\n'})
    assert changed_adapters(root, base).reasons == {"delta": "new adapter"}
    for nothing in (None, "0" * 40):
        assert changed_adapters(root, nothing).job == ["beta", "gamma"]
    assert changed_adapters(root, "f" * 40).reasons["alpha"] == f"{'f' * 40} unknown"


def test_the_command_prints_json_and_sets_the_step_outputs(
    project: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root, base = project
    commit(root, {"policy/evals/gamma.yaml": "name: gamma\ncases: []\n"})
    monkeypatch.chdir(root)
    out = root / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    assert main(["changed", "--base", base]) == 0
    assert json.loads(capsys.readouterr().out)["job"] == ["gamma"]
    assert out.read_text() == 'space=[]\njob=["gamma"]\n'
    assert main(["changed", "--base", base, "--head", "nope"]) == 2
    assert "--head 'nope' is not a commit" in capsys.readouterr().err
