"""Token masking: real token shapes (with ``-`` and ``_``) and every token given in env."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from spacetrain import cli
from spacetrain.errors import UsageError
from spacetrain.redact import mask
from spacetrain.stages.follow import readable


@pytest.mark.parametrize(
    "token",
    [
        "hf_" + "aB3dE" * 7,  # hf_ and 34 characters, as huggingface.co issues them
        "hf_abc-DEF_ghi-JKL_mno-PQR_stu-VWX",  # - and _ inside
        # what rehearse makes: - and _ likely (a fixed id: xdist workers must agree on ids)
        pytest.param("hf_" + secrets.token_urlsafe(24), id="hf_token_urlsafe"),
        "hf_abcdefghijklmnopqrst-uvwxyz",  # lower case only, but long
        "api_org_AbCdEfGh-1234_5678",
    ],
)
def test_token_shapes_are_masked_whole(token: str) -> None:
    for text in (f"push with {token} now", f"Authorization: Bearer {token}", f"x={token}\n"):
        masked = mask(text)
        assert token not in masked
        assert token[3:] not in masked and token[-6:] not in masked, masked
        assert "_***" in masked


def test_any_token_from_the_environment_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "plain-token_without-prefix")
    monkeypatch.setenv("SPACE_HF_TOKEN", "another_SECRET-value")
    text = "a plain-token_without-prefix b another_SECRET-value c"
    assert mask(text) == "a *** b *** c"


def test_names_that_look_like_hf_stay_readable() -> None:
    text = "hf_hub_download failed; hf_transfer and hf_xet are off; HF_TOKEN is set"
    assert mask(text) == text


def test_the_training_log_masks_tokens_with_dashes(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "hf_Ab-cD_eF-gH_iJ-kL"
    assert readable(f"pushing with {token}\n") == ["pushing with hf_***"]
    monkeypatch.setenv("HF_TOKEN", "s3cr3t-with_no-prefix")
    assert readable("token s3cr3t-with_no-prefix\n") == ["token ***"]


def test_space_logs_and_error_lines_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import spacetrain.stages.status as status

    token = "hf_Log-token_With-Dashes_1234"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(status, "stream_logs", lambda *a, **k: iter([f"login {token}\n"]))
    assert cli.main(["logs", "--space", "a/b"]) == 0
    assert capsys.readouterr().out == "login hf_***\n"

    def failing(*_a: object, **_k: object) -> None:
        raise UsageError(f"the Space said: bad token {token}")

    monkeypatch.setattr(status, "stream_logs", failing)
    assert cli.main(["logs", "--space", "a/b"]) == 2
    err = capsys.readouterr().err
    assert token not in err and "bad token hf_***" in err
