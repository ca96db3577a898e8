"""The job backend's pure parts: train.py's command line, the log's events, the secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spacetrain import contract
from spacetrain.config import AdapterConfig, load_config
from spacetrain.errors import UsageError
from spacetrain.stages.job_backend import (
    JobLog,
    JobSettings,
    choose_backend,
    flavor_gpus,
    job_command,
    job_env,
    job_secret,
    space_image,
)
from spacetrain.stages.params import build_params

REPO = Path(__file__).resolve().parents[2]


def params(**train: object) -> dict:
    adapter = AdapterConfig(
        name="k",
        base_model="me/base",
        dataset="me/data",
        output_repo="me/adapter",
        suite=REPO / "policy" / "evals" / "kwanzaa.yaml",
        base_revision="a" * 40,
        train=dict(train),
    )
    return build_params(run_id="run-1", adapter=adapter, dataset_revision="b" * 40)


def test_the_command_is_train_py_with_flags_train_py_reads_back_as_the_same_params() -> None:
    given = params(epochs=40, learning_rate=5e-3, batch_size=4, packing="off", lora_dropout=0.0)
    command = job_command(given)
    assert command[:4] == ["python", "train.py", "--output-dir", "spacetrain-run"]
    args = contract.trainer.parse_args(command[2:])  # train.py's own parser, flags path
    for name, value in given.items():
        if name == "push":
            assert args.no_push is False and args.output_repo == "me/adapter"
        elif name == "model_revision":
            assert args.model_revision == "a" * 40
        else:
            assert getattr(args, name) == value, name
    assert args.epochs == 40.0 and args.learning_rate == 5e-3


def test_a_run_that_does_not_push_says_no_push_and_names_no_repo() -> None:
    given = {**params(), "push": False}
    command = job_command(given)
    assert "--no-push" in command and "--output-repo" not in command
    assert contract.trainer.parse_args(command[2:]).no_push is True


def test_a_multi_gpu_flavor_runs_train_py_under_torchrun_one_process_per_gpu() -> None:
    assert [flavor_gpus(f) for f in ("a10g-small", "a10g-largex2", "l40sx4", "h200x8")] == [
        1,
        2,
        4,
        8,
    ]
    command = job_command(params(), gpus=4)
    assert command[:6] == [
        "python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=4",
        "train.py",
    ]
    assert str(contract.trainer.parse_args(command[6:]).output_dir) == "spacetrain-run"


def test_no_base_model_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="needs base_model"):
        job_command({"run_id": "r", "dataset": "me/data"})


def test_the_image_is_the_spaces_own_and_a_url_is_refused() -> None:
    assert space_image("me/trainer") == "hf.co/spaces/me/trainer"
    with pytest.raises(UsageError, match="Space id like owner/name"):
        space_image("http://127.0.0.1:7860")


def test_the_job_gets_the_spaces_token_as_its_secret_never_the_pipelines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_pipelinetokenpipelinetoken")
    monkeypatch.delenv("SPACE_HF_TOKEN", raising=False)
    with pytest.raises(UsageError, match="set SPACE_HF_TOKEN") as caught:
        job_secret()
    assert "hf_pipeline" not in str(caught.value)
    monkeypatch.setenv("SPACE_HF_TOKEN", "hf_spacetokenspacetokenspace")
    assert job_secret() == {"HF_TOKEN": "hf_spacetokenspacetokenspace"}


def test_the_env_expects_a_gpu_on_gpu_flavors_and_carries_the_space_variables() -> None:
    gpu = job_env(JobSettings(flavor="a10g-small", timeout=60, env={"OMP_NUM_THREADS": "1"}))
    assert gpu[contract.ENV_EXPECT_GPU] == "1" and gpu["OMP_NUM_THREADS"] == "1"
    cpu = job_env(JobSettings(flavor="cpu-basic", timeout=60))
    assert cpu[contract.ENV_EXPECT_GPU] == "0"
    variables = {"SPACETRAIN_EXPECT_GPU": "0"}
    forced = job_env(JobSettings(flavor="a10g-small", timeout=60, env=variables))
    assert forced[contract.ENV_EXPECT_GPU] == "0"  # the project's variables decide last


def event(name: str, **fields: object) -> str:
    return contract.EVENT_PREFIX + json.dumps({"event": name, **fields})


def test_the_log_is_parsed_into_the_same_events_the_space_follows() -> None:
    log = JobLog()
    first = ["[train] start", event("train_begin", total=8), event("step", step=2, total=8)]
    log.replace(first)
    assert (log.total, log.last_step["step"], log.done) == (8, 2, None)
    rest = [
        event("step", step=8, total=8, loss=0.5),
        "@@spacetrain {not json",
        event("pushed", repo="me/adapter", revision="c" * 40),
        event("done", state="succeeded", steps=8),
    ]
    log.replace(first + rest)
    assert log.last_step["loss"] == 0.5 and log.pushed["revision"] == "c" * 40
    assert log.done["steps"] == 8 and len(log.lines) == 7
    log.replace(first)  # a shorter answer loses nothing
    assert len(log.lines) == 7 and log.error is None
    log.replace([*log.lines, event("error", state="failed", error="boom")])
    assert log.error["error"] == "boom"


def test_the_backend_is_the_flag_else_the_adapters_else_the_projects(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.spacetrain]\nspace = "me/t"\nbackend = "job"\n'
        '[tool.spacetrain.adapters.a]\nbase_model = "me/b"\ndataset = "me/d"\n'
        'output_repo = "me/o"\nbackend = "space"\n'
        '[tool.spacetrain.adapters.b]\nbase_model = "me/b"\ndataset = "me/d"\n'
        'output_repo = "me/p"\n'
    )
    config = load_config(tmp_path)
    assert choose_backend(config, "a") == "space" and choose_backend(config, "b") == "job"
    assert choose_backend(config, "a", "job") == "job"
    assert choose_backend(config, None) == "job"  # two adapters, none named: the project's


def test_train_as_a_job_without_the_spaces_token_is_exit_2_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from spacetrain.cli import main

    (tmp_path / "pyproject.toml").write_text(
        '[tool.spacetrain]\nspace = "me/t"\n[tool.spacetrain.adapters.a]\n'
        'base_model = "me/b"\ndataset = "me/d"\noutput_repo = "me/o"\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no call made
    monkeypatch.setenv("HF_TOKEN", "hf_pipelinetokenpipelinetoken")
    monkeypatch.delenv("SPACE_HF_TOKEN", raising=False)
    assert main(["train", "--backend", "job", "--run-id", "r1"]) == 2
    err = capsys.readouterr().err
    assert "spacetrain train: error: the job backend gives the job SPACE_HF_TOKEN" in err
    assert "hf_pipeline" not in err and "Traceback" not in err
    with pytest.raises(SystemExit) as caught:
        main(["train", "--backend", "jobs"])
    assert caught.value.code == 2
