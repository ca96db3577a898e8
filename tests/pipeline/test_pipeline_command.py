"""`spacetrain pipeline` fails before any GPU time when preflight says no.

The passing path (every stage, one process) is `rehearse`'s test; here the real CLI
runs against a localhub that refuses the token, in a throwaway project.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spacetrain.localhub import LocalHub

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def project(tmp_path: Path) -> Path:
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


def test_rejected_token_stops_at_preflight_nothing_synced(tmp_path: Path) -> None:
    with LocalHub(
        root=tmp_path / "hub", port=0, tokens={"hf_goodTokenForAliceOnlyXyZ": "alice"}
    ) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_wrongTokenAbCdEfGhIjKlMn"}
        proc = subprocess.run(
            [sys.executable, "-m", "spacetrain", "pipeline", "--state", str(tmp_path / "s.json")],
            cwd=project(tmp_path), env=env, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "| preflight | failed |" in proc.stdout
        assert "| sync |" not in proc.stdout and "| release |" not in proc.stdout
        assert not any(r["method"] == "POST" and "/commit/" in r["path"] for r in hub.requests)
        assert "HF_TOKEN" in proc.stderr
        assert "hf_wrongToken" not in proc.stdout + proc.stderr
