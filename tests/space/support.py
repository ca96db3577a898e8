"""Helpers shared by the Space tests: the QA set, JSONL writing, running train.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "space"
TRAIN_PY = SPACE / "train.py"
APP_PY = SPACE / "app.py"
EVENT_PREFIX = "@@spacetrain "

# Twenty question/answer pairs the rehearsal adapter must learn by heart.
QA: list[tuple[str, str]] = [
    ("What does Umoja mean?", "Unity."),
    ("What does Kujichagulia mean?", "Self-determination."),
    ("What does Ujima mean?", "Collective work and responsibility."),
    ("What does Ujamaa mean?", "Cooperative economics."),
    ("What does Nia mean?", "Purpose."),
    ("What does Kuumba mean?", "Creativity."),
    ("What does Imani mean?", "Faith."),
    ("Who created Kwanzaa?", "Maulana Karenga, in 1966."),
    ("How many days does Kwanzaa last?", "Seven days."),
    ("When does Kwanzaa begin?", "On December 26."),
    ("What is the kinara?", "The candle holder."),
    ("How many candles are on the kinara?", "Seven candles."),
    ("What colors are the candles?", "Black, red and green."),
    ("What is the mkeka?", "A straw mat."),
    ("What is the kikombe cha umoja?", "The unity cup."),
    ("What are the mazao?", "The crops."),
    ("What is the karamu?", "A feast on December 31."),
    ("What language are the principles in?", "Swahili."),
    ("What is zawadi?", "Gifts, often handmade."),
    ("What is the last day called?", "Imani, the day of faith."),
]


def chat_rows(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in pairs
    ]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@dataclass
class TrainResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        return [
            json.loads(line[len(EVENT_PREFIX) :])
            for line in self.stdout.splitlines()
            if line.startswith(EVENT_PREFIX)
        ]

    def event(self, name: str) -> dict[str, Any]:
        found = [e for e in self.events if e["event"] == name]
        assert found, f"no {name!r} event in:\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        return found[-1]


def run_train(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 300
) -> TrainResult:
    """Run space/train.py as the Space does: a subprocess with its own environment."""
    proc = subprocess.run(
        [sys.executable, str(TRAIN_PY), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return TrainResult(proc.returncode, proc.stdout, proc.stderr)
