"""`[tool.spacetrain]`: the repo's own config loads, and a broken one says what to fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from spacetrain.config import load_config
from spacetrain.errors import InputFileError, UsageError

REPO = Path(__file__).resolve().parent.parent

GOOD = """
[tool.spacetrain]
space = "me/trainer"
[tool.spacetrain.adapters.kwanzaa]
base_model = "me/base"
dataset = "me/data"
output_repo = "me/adapter"
train = { epochs = 4, learning_rate = 2e-4 }
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(text))
    return tmp_path


def test_the_repository_config_loads() -> None:
    config = load_config(REPO)
    adapter = config.adapter(None)
    assert config.space_dir == REPO / "space" and config.after_training == "pause"
    assert adapter.suite.is_file() and config.gate.is_file() and config.lint_policy.is_file()
    assert adapter.train["lora_r"] == 16 and adapter.train["lora_alpha"] == 32


def test_defaults_and_the_only_adapter(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    adapter = config.adapter(None)
    assert (config.hardware, config.after_training) == ("a10g-small", "pause")
    assert adapter.suite == tmp_path / "policy" / "evals" / "kwanzaa.yaml"
    assert adapter.train == {"epochs": 4.0, "learning_rate": 2e-4}
    with pytest.raises(UsageError, match=r"no adapter 'other'.*configured: kwanzaa"):
        config.adapter("other")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'space = "me/trainer"',
            'space = "trainer"',
            r"toml:3: \[tool.spacetrain\] space: must be a repo id like owner/name, not 'trainer'",
        ),
        (
            'dataset = "me/data"\n',
            "",
            r"toml:4: \[tool.spacetrain.adapters.kwanzaa\]: missing 'dataset'; add dataset = ",
        ),
        (
            "epochs = 4",
            "epoch = 4",
            r"toml:8: \[tool.spacetrain.adapters.kwanzaa\] train: unknown key 'epoch' "
            r"\(did you mean 'epochs'\?\); expected one of .*epochs",
        ),
        ("epochs = 4", 'epochs = "4"', r"train.epochs: must be a number > 0 and <= 1000, got '4'"),
        ("epochs = 4", "epochs = true", r"train.epochs: must be a number > 0 .*, got True"),
        ("epochs = 4", "epochs = 0", r"toml:8: .* train.epochs: must be a number > 0"),
        ("epochs = 4", 'packing = "sometimes"', r"train.packing: must be auto, on or off"),
        ("epochs = 4", "lora_dropout = 5", r"train.lora_dropout: must be a number >= 0 and < 1"),
        ("epochs = 4", "grad_accum = 0", r"train.grad_accum: must be an integer >= 1"),
        (
            'space = "me/trainer"',
            'space = "me/trainer"\nhardware = "a10g"',
            r"toml:4: \[tool.spacetrain\] hardware: must be a Space flavor, not 'a10g' "
            r"\(did you mean '.*a10g.*'\?\); see huggingface_hub.SpaceHardware",
        ),
        (
            'space = "me/trainer"',
            'space = "me/trainer"\nafter_training = "stop"',
            r"after_training: must be 'pause' or a Space flavor, not 'stop'",
        ),
        (
            'space = "me/trainer"',
            'space = "me/trainer"\nspace_dirr = "x"',
            r"toml:4: \[tool.spacetrain\]: unknown key 'space_dirr' "
            r"\(did you mean 'space_dir'\?\)",
        ),
        (
            'space = "me/trainer"',
            'space = "me/trainer"\nprivate = "yes"',
            r"toml:4: \[tool.spacetrain\] private: must be true or false, not 'yes'",
        ),
        (
            'space = "me/trainer"',
            'space = "me/trainer"\nsleep_time = 0',
            r"sleep_time: must be seconds \(>= 1\) or -1 for never, not 0",
        ),
        (
            'space = "me/trainer"',
            'space = "me/trainer"\nvariables = {"1X" = "a"}',
            r"toml:4: \[tool.spacetrain\] variables.1X: the key must be a NAME of letters",
        ),
        (
            'space = "me/trainer"',
            'space = "me/trainer"\nvariables = {X = 1}',
            r"variables.X: must be \"text\", not 1",
        ),
        (
            'space = "me/trainer"',
            'space = "me/trainer"\nvariables = {HF_TOKEN = "hf_x"}',
            r"variables.HF_TOKEN: the key must be a NAME .*not a token's",
        ),
        (
            'space = "me/trainer"',
            f'space = "me/trainer"\nsleep_time = {"9" * 5000}',
            "invalid TOML",
        ),
        ('space = "me/trainer"\n', "", r"toml:2: \[tool.spacetrain\]: missing 'space'"),
        ("tool.spacetrain", "tool.other", r"has no \[tool.spacetrain\] table"),
        ('space = "me/trainer"', 'space = "me/trainer', r"invalid TOML"),
    ],
)
def test_a_broken_config_is_one_line_naming_the_file(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    root = write(tmp_path, GOOD.replace(old, new, 1 if old != "tool.spacetrain" else -1))
    with pytest.raises(InputFileError, match=message) as caught:
        load_config(root)
    assert str(caught.value).startswith(str(root / "pyproject.toml"))
    assert "\n" not in str(caught.value)


def test_a_float_setting_takes_an_integer(tmp_path: Path) -> None:
    root = write(tmp_path, GOOD.replace("learning_rate = 2e-4", "learning_rate = 1"))
    assert load_config(root).adapter("kwanzaa").train["learning_rate"] == 1


def test_the_backend_defaults_to_the_space_and_an_adapter_may_choose_jobs(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    adapter = config.adapter(None)
    assert (config.backend, adapter.backend) == ("space", "space")
    assert (adapter.job_flavor, adapter.job_timeout) == ("a10g-small", 6 * 3600)
    text = GOOD.replace(
        'space = "me/trainer"', 'space = "me/trainer"\njob_flavor = "l4x1"\njob_timeout = 600'
    ).replace('output_repo = "me/adapter"', 'output_repo = "me/adapter"\nbackend = "job"')
    config = load_config(write(tmp_path, text))
    adapter = config.adapter(None)
    assert config.backend == "space"  # the project's; the adapter chose jobs
    assert (adapter.backend, adapter.job_flavor, adapter.job_timeout) == ("job", "l4x1", 600)
    text = text.replace('backend = "job"', 'backend = "job"\njob_flavor = "h200"')
    assert load_config(write(tmp_path, text)).adapter(None).job_flavor == "h200"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('backend = "jobs"', r"\[tool.spacetrain\] backend: must be 'space' or 'job', not 'jobs'"),
        (
            'job_flavor = "a10g"',
            r"\[tool.spacetrain\] job_flavor: must be a Jobs flavor, not 'a10g'",
        ),
        ("job_timeout = 0", r"\[tool.spacetrain\] job_timeout: must be whole seconds, 1 to 604800"),
        ("job_timeout = 604801", r"job_timeout: must be whole seconds, 1 to 604800, not 604801"),
        (f"job_timeout = 0x{'f' * 4000}", r"job_timeout: must be .*not an integer of about"),
        ('job_timeout = "1h"', r"\[tool.spacetrain\] job_timeout: must be whole seconds"),
        ("job_timeout = true", r"\[tool.spacetrain\] job_timeout: must be whole seconds"),
        ("job_timeout = 1.5", r"\[tool.spacetrain\] job_timeout: must be whole seconds"),
    ],
)
def test_a_bad_backend_setting_is_one_line(tmp_path: Path, setting: str, message: str) -> None:
    root = write(tmp_path, GOOD.replace('space = "me/trainer"', f'space = "me/trainer"\n{setting}'))
    with pytest.raises(InputFileError, match=message):
        load_config(root)
    repo = 'output_repo = "me/adapter"'
    adapter_level = GOOD.replace(repo, f"{repo}\n{setting}")
    message = message.replace(r"\[tool.spacetrain\]", r"\[tool.spacetrain.adapters.kwanzaa\]")
    with pytest.raises(InputFileError, match=message):
        load_config(write(tmp_path, adapter_level))
