"""Paths and data shared by the evaluation tests (a module, not conftest, so it imports
the same way whichever tests run)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_DATA = REPO / "scripts" / "spacetrain" / "data" / "kwanzaa.jsonl"
DEMO_SUITE = REPO / "policy" / "evals" / "kwanzaa.yaml"
GATE = REPO / "policy" / "gate.yaml"
ATTRIBUTION = "Generated with Claude"


def demo_rows() -> list[dict]:
    return [json.loads(line) for line in DEMO_DATA.read_text(encoding="utf-8").splitlines()]
