"""The pipeline's table of stages, the one rule for the target Space, the override bag."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import pytest

from spacetrain.config import ProjectConfig
from spacetrain.errors import UsageError
from spacetrain.pipeline import STAGES
from spacetrain.stages.params import TrainingOverrides
from spacetrain.stages.state import PipelineState
from spacetrain.stages.target import resolve_target


def test_the_table_runs_the_stages_in_the_designed_order_and_needs_only_earlier_ones() -> None:
    names = [stage.name for stage in STAGES]
    assert names == ["preflight", "sync", "wait", "train", "fetch", "evaluate", "promote"]
    for index, stage in enumerate(STAGES):
        assert set(stage.needs) <= set(names[:index]), stage.name
    # The bill starts at sync: from there on every way out releases the Space.
    assert [stage.name for stage in STAGES if stage.bills] == ["sync"]


def _config(tmp_path: Path, space: str = "me/configured") -> ProjectConfig:
    return ProjectConfig(
        root=tmp_path, space=space, space_dir=tmp_path / "space", hardware="a10g-small",
        after_training="pause", gate=tmp_path / "gate.yaml", lint_policy=tmp_path / "p.yaml",
        adapters={},
    )  # fmt: skip


def test_the_target_is_the_flag_else_the_synced_space_else_the_config(tmp_path: Path) -> None:
    config = _config(tmp_path)
    state = PipelineState(tmp_path / "s.json", {"space": "me/synced", "run_id": "r1"})
    assert resolve_target(None, config).space == "me/configured"  # no state: the config
    synced = resolve_target(None, config, state)
    assert (synced.space, synced.recorded, synced.ours) == ("me/synced", True, "r1")
    other = resolve_target("me/other", config, state)
    assert (other.space, other.recorded, other.ours) == ("me/other", False, None)
    fresh = resolve_target("me/other", config, PipelineState(tmp_path / "n.json", {"run_id": "r2"}))
    assert fresh.ours == "r2"  # a state about no Space in particular
    with pytest.raises(UsageError, match="name the Space with --space"):
        resolve_target(None, None)


def test_the_override_bag_is_checked_once_from_flags_or_the_form() -> None:
    flags = Namespace(epochs=2.0, learning_rate=None, run_id="r-1", adapter="qa", timeout=5)
    overrides = TrainingOverrides.from_args(flags)
    assert (overrides.adapter, overrides.run_id, overrides.epochs) == ("qa", "r-1", 2.0)
    assert overrides.base_model is None and overrides.hyperparameters() == {"epochs": 2.0}
    with pytest.raises(UsageError, match="--learning-rate"):
        TrainingOverrides.from_args(Namespace(learning_rate=5.0))
    with pytest.raises(UsageError, match="run id"):
        TrainingOverrides.from_args(Namespace(run_id="no spaces allowed"))
    form = TrainingOverrides.from_form({"epochs": "0", "learning_rate": " 3e-4 "})
    assert (form.epochs, form.learning_rate) == (None, 3e-4)  # 0: the configured value
    with pytest.raises(UsageError, match="input epochs"):
        TrainingOverrides.from_form({"epochs": "-1"})
