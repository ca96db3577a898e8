"""The CLI <-> Space contract has one definition (space/train.py), and nothing drifts from it.

Every surface that takes a training parameter is asked the same questions: the
``[tool.spacetrain]`` config, the CLI's ``build_params``, ``app.py``'s ``start_training``
params, ``train.py``'s flags, the retrain form and the Space's README. They must accept
and refuse the same values, and coerce them alike; names and constants must not be
copied anywhere else.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from spacetrain import contract, dataset, hub
from spacetrain.config import load_config
from spacetrain.errors import InputFileError, UsageError
from spacetrain.stages.params import build_params

from .support import load_app

REPO = Path(__file__).resolve().parents[2]
# Literals of the contract: only space/train.py may spell them out.
CONTRACT_LITERALS = (
    "@@spacetrain",
    "[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    "SPACETRAIN_HUB_DEADLINE",
    "SPACETRAIN_RUNS_DIR",
    "SPACETRAIN_EXPECT_GPU",
    "SPACETRAIN_OUTPUT_REPOS",
    "SPACETRAIN_ALLOW_LOCAL_PATHS",
    "SPACETRAIN_TRIGGER",
    "prompt-completion",
    "prompt_completion",
)

PYPROJECT = """\
[tool.spacetrain]
space = "o/space"

[tool.spacetrain.adapters.a]
base_model = "o/base"
dataset = "o/data"
output_repo = "o/adapter"
train = {{ {key} = {value} }}
"""


@pytest.fixture(scope="module")
def app() -> ModuleType:
    return load_app()


def _probes(spec: Any) -> list[Any]:
    """Values on and around each bound, and the usual troublemakers."""
    if spec.choices:
        return [*spec.choices, "sometimes", "", 1, True]
    values: list[Any] = [0, 1, -1, 2.5, 1e9, math.inf, math.nan, True, "4"]
    for bound in (spec.low, spec.high):
        if bound is not None:
            values += [bound, bound - 1, bound + 1, bound - 0.001, bound + 0.001]
    return values


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return json.dumps(value)


def _outcome(fn: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn())
    except (ValueError, InputFileError, UsageError, SystemExit) as exc:  # ParamError: a ValueError
        return ("refused", type(exc).__name__)


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a == pytest.approx(b))


@pytest.mark.parametrize("name", contract.HYPERPARAMETERS)
def test_config_cli_app_and_train_py_agree_on_every_value(
    name: str, app: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = contract.PARAMS[name]
    parser = app.trainer.build_parser()
    base = ["--base-model", "o/b", "--dataset", "o/d", "--output-dir", str(tmp_path), "--no-push"]
    for i, value in enumerate(_probes(spec)):
        root = tmp_path / f"p{i}"
        root.mkdir()
        (root / "pyproject.toml").write_text(PYPROJECT.format(key=name, value=_toml(value)))
        config = _outcome(lambda root=root: load_config(root).adapters["a"].train[name])
        cli = _outcome(lambda v=value: build_params(run_id="r", overrides={name: v})[name])
        space = _outcome(lambda v=value: app.parse_params(json.dumps({name: v}), {})[name])
        argv = [spec.flag, str(value).lower() if isinstance(value, bool) else str(value)]
        script = _outcome(lambda argv=argv: getattr(parser.parse_args([*base, *argv]), name))
        capsys.readouterr()  # argparse's usage lines
        typed = {"config": config, "cli": cli}
        # JSON and flags are text: "4" and 4 are the same there, a bool is "true"/"false".
        texty = {"app.py": space, "train.py": script}
        verdicts = {k: v[0] for k, v in {**typed, **texty}.items()}
        if isinstance(value, bool | str):
            assert len({v[0] for v in typed.values()}) == 1, (name, value, verdicts)
            continue
        assert len(set(verdicts.values())) == 1, (name, value, verdicts)
        if config[0] == "ok":
            results = [config[1], cli[1], space[1], script[1]]
            assert all(_same(r, results[0]) for r in results), (name, value, results)
            assert all(type(r) is spec.type for r in results), (name, value, results)


def test_fractional_epochs_and_lora_dropout_are_accepted_everywhere(
    app: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        PYPROJECT.format(key="epochs", value="2.5").replace(
            "epochs = 2.5", "epochs = 2.5, lora_dropout = 0.1"
        )
    )
    assert load_config(tmp_path).adapters["a"].train == {"epochs": 2.5, "lora_dropout": 0.1}
    assert build_params(run_id="r", overrides={"epochs": 2.5})["epochs"] == 2.5
    assert app.parse_params('{"epochs": 2.5, "lora_dropout": 0.1}', {})["epochs"] == 2.5


def test_app_py_takes_its_table_from_train_py(app: ModuleType) -> None:
    assert app.PARAMS is app.trainer.PARAMS
    # The rules of what the API serves live beside the table, not in app.py.
    for name in ("check_served", "check_trigger", "read_params", "is_hub_id"):
        assert not hasattr(app, name) and callable(getattr(app.trainer, name))
    assert app.EVENT_PREFIX == contract.EVENT_PREFIX
    assert issubclass(app.ParamsError, app.trainer.ParamError)
    assert list(app.PARAMS) == list(contract.PARAMS)
    for name, spec in contract.PARAMS.items():  # two loads of train.py: compare the fields
        assert vars(app.PARAMS[name]) == vars(spec)


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """String literals in code (docstrings, which may name the contract, left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_copy_of_the_contract_outside_train_py() -> None:
    sources = [REPO / "space" / "app.py", *sorted((REPO / "scripts" / "spacetrain").rglob("*.py"))]
    copies = [
        f"{path.relative_to(REPO)}:{line}: {literal!r}"
        for path in sources
        for line, text in _string_constants(path)
        for literal in CONTRACT_LITERALS
        if literal in text
    ]
    assert copies == []


def test_roles_formats_and_environment_names_are_the_contracts(tmp_path: Path) -> None:
    assert dataset.CHAT_ROLES == contract.ROLES
    assert hub._DEADLINE_ENV == contract.ENV_HUB_DEADLINE
    rows = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "What is six times seven?"},
                    {"role": "assistant", "content": "Let me compute it."},
                    {"role": "tool", "content": "42"},
                    {"role": "assistant", "content": "42."},
                ]
            }
        ),
        '{"prompt": "q", "completion": "a"}',
    ]
    formats = set()
    for i, row in enumerate(rows):
        (tmp_path / f"{i}.jsonl").write_text(row + "\n")
        report = dataset.validate_file(tmp_path / f"{i}.jsonl")
        errors = [issue for issue in report.issues if issue.severity == "error"]
        assert errors == []
        formats |= report.formats
        fmt, _ = contract.trainer.validate_example(json.loads(row), "d.jsonl:1")
        formats.add(fmt)
    assert formats == set(contract.FORMATS)


def test_the_space_readme_documents_every_variable_and_parameter() -> None:
    readme = (REPO / "space" / "README.md").read_text(encoding="utf-8")
    for name, spec in contract.PARAMS.items():
        assert f"`{name}`" in readme, name
        if spec.variable:
            assert f"`{spec.variable}`" in readme, spec.variable
    for env in (
        contract.ENV_TOKEN,
        contract.ENV_RUNS_DIR,
        contract.ENV_EXPECT_GPU,
        contract.ENV_OUTPUT_REPOS,
        contract.ENV_ALLOW_LOCAL_PATHS,
        contract.ENV_TRIGGER,
    ):
        assert f"`{env}`" in readme, env


def test_the_retrain_form_offers_only_contract_parameters() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "retrain.yml").read_text())
    inputs = workflow[True]["workflow_dispatch"]["inputs"]  # pyyaml reads `on:` as True
    numbers = {k.replace("-", "_") for k, v in inputs.items() if v["type"] == "number"}
    assert numbers and numbers <= set(contract.HYPERPARAMETERS)
    for name in numbers:
        assert contract.PARAMS[name].type in (int, float)


def test_an_unknown_parameter_names_the_known_ones() -> None:
    with pytest.raises(contract.ParamError, match=re.escape("known: base_model, ")):
        contract.check_param("epoch", 3)


def test_a_number_beyond_pythons_digit_limit_is_one_line_naming_params() -> None:
    """json.loads refuses integers of more than 4300 digits with Python's own advice
    (sys.set_int_max_str_digits); the reader says which input instead."""
    trainer = contract.trainer
    with pytest.raises(trainer.ParamError, match=r"^params is not usable JSON: Exceeds the"):
        trainer.read_params('{"epochs": ' + "9" * 5000 + "}", "params")
