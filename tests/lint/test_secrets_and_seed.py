"""hardcoded-token's placeholder and redaction logic, and the seed's own Space."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, SUBSTITUTIONS, fake_secret

from spacetrain.cli import main
from spacetrain.lint import lint_folder, load_policy
from spacetrain.lint.reporters import render_github, render_json, render_sarif, render_text
from spacetrain.lint.rules.secrets import is_placeholder, redact, shannon_entropy

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "value",
    [
        "hf_" + "x" * 34,
        "hf_abcdefghijklmnopqrstuvwxyzabcdefgh",
        "hf_YOURTOKENHEREYOURTOKENHEREYOURTOK",
        "changeme-changeme",
        "<your-token>",
        "aaaaaaaaaaaa",
    ],
)
def test_placeholders_are_not_secrets(value: str) -> None:
    assert is_placeholder(value, 3.0)


@pytest.mark.parametrize("seed", range(20))
def test_random_tokens_are_secrets(seed: int) -> None:
    token = fake_secret("hf_", 34, seed)
    assert shannon_entropy(token[3:]) > 3.5
    assert not is_placeholder(token, 3.0)


def test_redaction_keeps_only_a_prefix() -> None:
    token = SUBSTITUTIONS["@@HF_TOKEN@@"]
    shown = redact(token)
    assert shown == f"{token[:5]}… (37 chars)"
    assert token[5:12] not in shown


def test_no_format_ever_prints_the_token(space) -> None:
    token = SUBSTITUTIONS["@@HF_TOKEN@@"]
    secret = SUBSTITUTIONS["@@SECRET@@"]
    root = space(
        **{
            "train.py": f'TOKEN = "{token}"\n',
            "README.md": f"---\nsdk: docker\ntitle: x\napp_port: 7860\n---\nHF_TOKEN={secret}\n",
        }
    )
    report = lint_folder(root, load_policy(None))
    assert [f.rule for f in report.findings] == ["hardcoded-token", "hardcoded-token"]
    for render in (render_text, render_json, render_sarif, render_github):
        text = render(report)
        assert token not in text and token[3:] not in text
        assert secret not in text


def test_token_in_a_non_utf8_file_is_found(space) -> None:
    token = SUBSTITUTIONS["@@HF_TOKEN@@"].encode()
    root = space(**{"train.py": b"# caf\xe9\nTOKEN = '" + token + b"'\n"})
    report = lint_folder(root, load_policy(None))
    hits = [(f.rule, f.path.rsplit("/", 1)[-1], f.line) for f in report.findings]
    assert ("hardcoded-token", "train.py", 2) in hits
    assert ("python-syntax", "train.py", 1) in hits


# ------------------------------------------------------------------ the seed


def test_the_seed_space_reports_what_the_seed_gets_wrong(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The seed's documented Dockerfile and README (tests/lint/fixtures/seed), linted.

    Right in the seed: an nvidia/cuda base pinned by tag (allowed; this repository's
    policy also wants its digest, an error here), ==-pins everywhere, the CUDA
    index for torch in its own RUN, a health check, EXPOSE 7860 and app_port 7860, sdk
    docker, no tokens (HF_TOKEN=$(grep ...) is a reference). Wrong: the "Pin ALL
    Dependencies" RUN installs torch again without the CUDA index; no USER (Spaces run as
    uid 1000) and a COPY without --chown. The pin conflict needs --resolve (test_resolver).
    """
    seed = FIXTURES / "seed"
    policy = str(REPO / "policy/space.yaml")
    assert main(["lint", str(seed), "--policy", policy, "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    lines = (seed / "Dockerfile").read_text().splitlines()
    found = [(f["rule"], f["severity"], lines[f["line"] - 1].strip()) for f in report["findings"]]
    assert found == [
        ("base-image-digest", "error", "FROM nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04"),
        ("user-not-1000", "warning", "FROM nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04"),
        ("torch-cpu-wheel", "error", "torch==2.1.0 \\"),
        ("user-not-1000", "warning", "COPY app.py train.py ./"),
    ]
    torch_line = report["findings"][2]["line"]
    assert lines[torch_line - 2].startswith("RUN pip3 install")  # the second RUN, not the first
