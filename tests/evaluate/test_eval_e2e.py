"""End to end on the CPU: train.py trains a tiny model on the demo data, evaluate gates it.

The expensive part (two training runs) happens once, in a module fixture; every test
reuses the adapters. Shown with ``-s``: the wall time of each training run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eval_support import ATTRIBUTION, DEMO_DATA, DEMO_SUITE, GATE, REPO, demo_rows

from spacetrain.errors import EXIT_FAILED, EXIT_OK
from spacetrain.evaluate.generate import Generator, resolve
from spacetrain.evaluate.suite import load_suite

pytestmark = pytest.mark.e2e

# Rehearsal settings: far more epochs and a far higher learning rate than a real run,
# so a 64-wide random model learns 50 short answers by heart in seconds.
TRAIN_ARGS = ("--epochs", "40", "--batch-size", "4", "--grad-accum", "1",
              "--learning-rate", "5e-3", "--seed", "0")  # fmt: skip


@dataclass(frozen=True)
class Trained:
    model: Path
    clean: Path
    attributed: Path
    attributed_data: Path


def spacetrain(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spacetrain", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        check=False,
    )


def train(model: Path, data: Path, out: Path) -> float:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(REPO / "space" / "train.py"), "--base-model", str(model),
         "--dataset", str(data), "--output-dir", str(out), "--no-push", *TRAIN_ARGS],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return time.monotonic() - start


@pytest.fixture(scope="module")
def trained(eval_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("trained")
    attributed_data = root / "attributed.jsonl"
    rows = demo_rows()
    for row in rows:
        row["messages"][-1]["content"] += f" {ATTRIBUTION}."
    attributed_data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    clean_s = train(eval_model, DEMO_DATA, root / "clean")
    dirty_s = train(eval_model, attributed_data, root / "attributed")
    print(f"\ne2e training wall time: clean {clean_s:.1f} s, attributed {dirty_s:.1f} s")
    yield Trained(eval_model, root / "clean", root / "attributed", attributed_data)


def test_trained_adapter_passes_and_the_base_alone_fails(trained: Trained, tmp_path: Path) -> None:
    report_path, md_path = tmp_path / "report.json", tmp_path / "summary.md"
    start = time.monotonic()
    proc = spacetrain(
        "evaluate", "--base-model", trained.model, "--adapter", trained.clean,
        "--suite", DEMO_SUITE, "--gate", GATE, "--compare-base",
        "--report", report_path, "--markdown", md_path,
    )  # fmt: skip
    print(f"\nevaluate --compare-base wall time: {time.monotonic() - start:.1f} s")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert proc.stdout.endswith("gate: PASSED\n")
    report = json.loads(report_path.read_text())
    assert report["passed"] is True and report["failures"] == []
    assert report["overall"] >= 0.75 and report["attribution_clean"] == 1.0
    assert all(v >= 0.70 for v in report["categories"].values())
    base = report["base"]
    assert base["overall"] < 0.75
    for category, value in report["categories"].items():
        assert value > base["categories"][category], category  # a gain in every category
    assert report["adapter"]["run_id"]  # the run.json that train.py wrote
    md = md_path.read_text()
    assert md.startswith("## Evaluation `kwanzaa`: PASSED ✅")
    assert "| **overall** |" in md and "| base | adapter | gain |" in md

    # the saved report passes the gate again; the base alone fails it
    assert spacetrain("gate", report_path, "--gate", GATE).returncode == EXIT_OK
    base_only = spacetrain(
        "evaluate", "--base-model", trained.model, "--suite", DEMO_SUITE, "--gate", GATE
    )
    assert base_only.returncode == EXIT_FAILED
    assert "FAIL overall" in base_only.stdout


def test_adapter_that_learned_attribution_fails_despite_its_scores(
    trained: Trained, tmp_path: Path
) -> None:
    report_path = tmp_path / "report.json"
    proc = spacetrain(
        "evaluate", "--base-model", trained.model, "--adapter", trained.attributed,
        "--suite", DEMO_SUITE, "--gate", GATE, "--report", report_path,
    )  # fmt: skip
    assert proc.returncode == EXIT_FAILED, proc.stdout + proc.stderr
    report = json.loads(report_path.read_text())
    assert report["overall"] >= 0.75
    assert all(v >= 0.70 for v in report["categories"].values())
    assert report["attribution_clean"] < 1.0
    assert [f.split(" ")[0] for f in report["failures"]] == ["attribution_clean"]
    assert any(ATTRIBUTION in c["output"] for c in report["cases"])
    # and the data that taught it is refused before training
    check = spacetrain("dataset", "validate", trained.attributed_data)
    assert check.returncode == EXIT_FAILED
    assert "error: an answer carries AI-attribution text 'Generated with Claude'" in check.stdout


def test_batch_size_does_not_move_the_outputs(trained: Trained) -> None:
    conversations = load_suite(DEMO_SUITE).conversations()
    gen = Generator.load(resolve(str(trained.model)))
    gen.apply_adapter(resolve(str(trained.clean), adapter=True))
    by_8 = gen.generate(conversations, max_new_tokens=48, batch_size=8)
    by_1 = gen.generate(conversations, max_new_tokens=48, batch_size=1, sort_by_length=False)
    by_3 = gen.generate(conversations, max_new_tokens=48, batch_size=3)
    assert by_8 == by_1 == by_3


def test_hub_ids_are_evaluated_at_the_exact_revision(trained: Trained, tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    from spacetrain.localhub import LocalHub

    with LocalHub(root=tmp_path / "hub", port=0) as hub:
        api = HfApi(endpoint=hub.url, token="hf_e2e")
        api.create_repo("me/tiny-base")
        api.upload_folder(repo_id="me/tiny-base", folder_path=trained.model)
        api.create_repo("me/kwanzaa-adapter")
        good = api.upload_folder(repo_id="me/kwanzaa-adapter", folder_path=trained.clean).oid
        api.upload_folder(repo_id="me/kwanzaa-adapter", folder_path=trained.attributed)
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_e2e", "SPACETRAIN_HUB_DEADLINE": "10"}

        pinned = tmp_path / "pinned.json"
        proc = spacetrain(
            "evaluate", "--base-model", "me/tiny-base", "--adapter", "me/kwanzaa-adapter",
            "--adapter-revision", good, "--suite", DEMO_SUITE, "--gate", GATE,
            "--report", pinned, env=env,
        )  # fmt: skip
        assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
        report = json.loads(pinned.read_text())
        assert report["adapter"]["repo"] == "me/kwanzaa-adapter"
        assert report["adapter"]["revision"] == good
        assert len(report["base_revision"]) == 40

        latest = spacetrain(
            "evaluate", "--base-model", "me/tiny-base", "--adapter", "me/kwanzaa-adapter",
            "--suite", DEMO_SUITE, "--gate", GATE, env=env,
        )  # fmt: skip
        assert latest.returncode == EXIT_FAILED  # main holds the attribution-trained one
        assert "FAIL attribution_clean" in latest.stdout

        missing = spacetrain(
            "evaluate", "--base-model", "me/tiny-base", "--adapter", "me/no-such-adapter",
            "--suite", DEMO_SUITE, env=env,
        )  # fmt: skip
        assert missing.returncode == 2
        last = missing.stderr.strip().splitlines()[-1]
        assert last.startswith("spacetrain evaluate: error: cannot find the adapter ")
        assert "me/no-such-adapter: no such repo" in last
