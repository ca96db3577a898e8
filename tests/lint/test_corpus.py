"""Real Dockerfiles (tests/lint/corpus/, sources in SOURCES.yaml) through every rule.

Each is linted as the Dockerfile of the base fixture Space. It must not crash or be
called unparsable, and its findings must equal the reviewed snapshot
(corpus/expected.json), so a parser change shows its effect as a diff to review.
Regenerate after reviewing: ``SPACETRAIN_UPDATE_CORPUS=1 pytest tests/lint/test_corpus.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import BASE

from spacetrain.lint import lint_folder, load_policy

CORPUS = Path(__file__).resolve().parent / "corpus"
FILES = sorted((CORPUS / "files").iterdir())
EXPECTED = CORPUS / "expected.json"
# Findings about the Dockerfile that depend on it alone (the other files are the base's).
POLICY = load_policy(None)


def findings(dockerfile: Path, tmp: Path) -> list[str]:
    root = tmp / "space"
    shutil.copytree(BASE, root)
    shutil.copyfile(dockerfile, root / "Dockerfile")
    report = lint_folder(root, POLICY, shown_root="space")
    return [
        f"{f.line}: {f.rule}: {f.message}"
        for f in sorted(report.findings, key=lambda f: (f.line or 0, f.rule, f.message))
        if f.path == "space/Dockerfile"
    ]


def test_corpus_is_at_least_50_files_with_sources() -> None:
    sources = yaml.safe_load((CORPUS / "SOURCES.yaml").read_text())["files"]
    assert len(FILES) >= 50
    assert {s["file"] for s in sources} == {p.name for p in FILES}
    for source in sources:
        assert len(source["commit"]) == 40 and "/" in source["repo"], source


def test_corpus_matches_the_reviewed_snapshot(tmp_path: Path) -> None:
    got = {}
    for index, path in enumerate(FILES):
        got[path.name] = findings(path, tmp_path / str(index))
    invalid = {n: [x for x in f if ": dockerfile-invalid: " in x] for n, f in got.items()}
    assert {n: f for n, f in invalid.items() if f} == {}, "valid Dockerfiles called invalid"
    if os.environ.get("SPACETRAIN_UPDATE_CORPUS"):
        EXPECTED.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip("snapshot rewritten: review the diff")
    expected = json.loads(EXPECTED.read_text())
    for name in sorted(got):
        assert got[name] == expected.get(name), name
