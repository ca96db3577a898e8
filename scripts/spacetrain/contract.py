"""The CLI <-> Space contract, taken from the Space's own ``train.py``: one definition.

``space/`` is uploaded to the Space alone, so it cannot import this package. This module
goes the other way: it loads ``space/train.py`` (whose top level imports only the
stdlib) and re-exports the table of training parameters and its checker, the event
prefix, the run-id pattern, the dataset formats and roles, and the environment variable
names. The config, the CLI flags, the retrain form, ``app.py`` and ``train.py`` all read
these; ``tests/test_contract.py`` fails on any copy that drifts.

    from spacetrain import contract
    contract.check_param("epochs", 2.5)          # 2.5
    contract.check_param("epochs", 0)            # ParamError: epochs must be a number > 0 ...
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# This repository's Space folder: the package lives in scripts/spacetrain/.
SPACE_DIR = Path(__file__).resolve().parents[2] / "space"
TRAIN_PY = SPACE_DIR / "train.py"
_MODULE = "spacetrain._space_train"


def _load(path: Path) -> ModuleType:
    """``space/train.py`` as a module (cheap: heavy imports happen inside functions)."""
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    spec = importlib.util.spec_from_file_location(_MODULE, path) if path.is_file() else None
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{path} is missing: spacetrain runs from a checkout of its project")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


trainer = _load(TRAIN_PY)

Param = trainer.Param
ParamError: type[ValueError] = trainer.ParamError
PARAMS: dict[str, Any] = trainer.PARAMS
HYPERPARAMETERS: tuple[str, ...] = trainer.HYPERPARAMETERS
EVENT_PREFIX: str = trainer.EVENT_PREFIX
RUN_ID_RE = trainer.RUN_ID_RE
RUN_ID_HINT: str = trainer.RUN_ID_HINT
ROLES: tuple[str, ...] = trainer.ROLES
FORMATS: tuple[str, ...] = trainer.FORMATS
ENV_TOKEN: str = trainer.ENV_TOKEN
ENV_RUNS_DIR: str = trainer.ENV_RUNS_DIR
ENV_HUB_DEADLINE: str = trainer.ENV_HUB_DEADLINE
ENV_EXPECT_GPU: str = trainer.ENV_EXPECT_GPU
# What a Space's API serves (README "Who may drive the Space"), decided by its configuration.
ENV_OUTPUT_REPOS: str = trainer.ENV_OUTPUT_REPOS
ENV_ALLOW_LOCAL_PATHS: str = trainer.ENV_ALLOW_LOCAL_PATHS
ENV_TRIGGER: str = trainer.ENV_TRIGGER
TRIGGER_KEY: str = trainer.TRIGGER_KEY


def check_param(name: str, value: Any, *, text: bool = False, source: str | None = None) -> Any:
    """``train.check_param``: the value checked against the table and coerced (see there)."""
    return trainer.check_param(name, value, text=text, source=source)


def space_variables(values: dict[str, Any]) -> dict[str, str]:
    """Space variables (``EPOCHS``: ``"4.0"``) for the parameters in ``values`` that have one."""
    out = {}
    for name, value in values.items():
        variable = PARAMS[name].variable
        if variable and value is not None:
            out[variable] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


__all__ = [
    "ENV_ALLOW_LOCAL_PATHS",
    "ENV_EXPECT_GPU",
    "ENV_HUB_DEADLINE",
    "ENV_OUTPUT_REPOS",
    "ENV_RUNS_DIR",
    "ENV_TOKEN",
    "ENV_TRIGGER",
    "EVENT_PREFIX",
    "FORMATS",
    "HYPERPARAMETERS",
    "PARAMS",
    "ROLES",
    "RUN_ID_HINT",
    "RUN_ID_RE",
    "SPACE_DIR",
    "TRIGGER_KEY",
    "Param",
    "ParamError",
    "check_param",
    "space_variables",
    "trainer",
]
