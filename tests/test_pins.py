"""`spacetrain pins` and the Dockerfile reader it stands on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from spacetrain.cli import main
from spacetrain.dockerfile import Dockerfile
from spacetrain.errors import InputFileError
from spacetrain.pins import collect_pins

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Dockerfile"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_pins_of_the_space_dockerfile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pins", str(REPO / "space" / "Dockerfile")]) == 0
    out = capsys.readouterr().out
    pinned = dict(
        line.split("  #")[0].split("==") for line in out.splitlines() if not line.startswith("#")
    )
    assert pinned["torch"] == "2.13.0"
    for name in ("transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets"):
        assert name in pinned
    assert "huggingface-hub" in pinned and "gradio-client" in pinned


def test_words_keep_their_physical_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        FROM python:3.11-slim
        RUN pip install --no-cache-dir \\
            # a comment line Docker drops
            "trl==1.16.0" \\
            'peft[extras]==0.21.2' && \\
            FOO=bar python -m pip install accelerate==1.15.0; echo done
        """,
    )
    pins, notes = collect_pins(Dockerfile.read(path))
    assert [(p.name, p.version, p.line) for p in pins] == [
        ("accelerate", "1.15.0", 6),
        ("peft", "0.21.2", 5),
        ("trl", "1.16.0", 4),
    ]
    assert notes == []


def test_heredoc_and_exec_form_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        FROM python:3.11-slim
        RUN ["pip", "install", "gradio==6.31.0"]
        RUN <<EOF
        uv pip install --system datasets==5.2.0
        pip3 install "trl>=1"
        EOF
        CMD ["python", "app.py"]
        """,
    )
    doc = Dockerfile.read(path)
    pins, notes = collect_pins(doc)
    assert [(p.name, p.line) for p in pins] == [("datasets", 4), ("gradio", 2)]
    assert notes == [f"{path}:5: trl>=1 is not pinned with ==; left out of the constraints"]
    assert [i.keyword for i in doc.instructions] == ["FROM", "RUN", "RUN", "CMD"]


def test_conflicting_pins_name_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        FROM python:3.11-slim
        RUN pip install trl==1.0.0
        RUN pip install trl==1.16.0
        """,
    )
    with pytest.raises(
        InputFileError, match=r":3: trl is pinned to 1.16.0 here and to 1.0.0 on line 2"
    ):
        collect_pins(Dockerfile.read(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01binary", "is a binary file"),
        (b"FROM python:3.11\n\xff\xfe", ":2: is not valid UTF-8"),
    ],
)
def test_bad_bytes_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    path = tmp_path / "Dockerfile"
    path.write_bytes(content)
    assert main(["pins", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
