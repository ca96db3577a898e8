"""spacetrain.inputs: the one place that checks files to read, places to write and JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from spacetrain.errors import InputFileError, UsageError
from spacetrain.inputs import (
    MAX_JSON_DEPTH,
    append_github_file,
    check_endpoint,
    parse_json,
    read_bytes,
    read_text,
    writable_dir,
    writable_file,
)
from spacetrain.stages.state import PipelineState, export_outputs


def test_parse_json_turns_a_too_deep_document_into_a_decode_error_with_a_place() -> None:
    text = '{"a": "[[[[", "b":\n' + "[" * 50_000 + "]" * 50_000 + "}"
    with pytest.raises(json.JSONDecodeError) as caught:
        parse_json(text)
    assert f"more than {MAX_JSON_DEPTH} levels" in caught.value.msg
    assert caught.value.lineno == 2  # the "[[[[" inside a string does not count
    assert caught.value.colno == MAX_JSON_DEPTH  # the 513th level, counting the {
    assert parse_json("[" * 100 + "]" * 100) is not None  # deep, but fine


def test_read_text_names_the_line_of_a_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"ok\nalso ok\nbad \xff here\n")
    with pytest.raises(InputFileError) as caught:
        read_text(path)
    assert caught.value.line == 3 and "byte 5 of the line" in caught.value.detail


def test_read_bytes_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    for path, words in (
        (tmp_path / "fifo", "FIFO"),
        (tmp_path, "is a folder"),
        (tmp_path / "missing", "no such file"),
        (Path("/dev/null"), "character device"),
    ):
        with pytest.raises(InputFileError, match=words):
            read_bytes(path)
    (tmp_path / "f").write_bytes(b"abcdef")
    assert read_bytes(tmp_path / "f", limit=3) == b"abc"


def test_writable_checks_create_nothing(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    assert writable_file(tmp_path / "new" / "deeper" / "r.json", "--report")
    assert writable_dir(tmp_path / "new" / "folder", "--dest")
    assert not (tmp_path / "new").exists()
    with pytest.raises(UsageError, match="is a folder; name a file"):
        writable_file(tmp_path, "--report")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        writable_dir(tmp_path / "afile", "--dest")
    with pytest.raises(UsageError, match="afile is a file, so nothing can be created"):
        writable_file(tmp_path / "afile" / "a" / "b.json", "--report")


def test_github_files_name_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path))
    with pytest.raises(UsageError, match=f"GITHUB_OUTPUT={tmp_path} is a folder"):
        export_outputs({"a": 1})
    with pytest.raises(UsageError, match="GITHUB_OUTPUT"):
        PipelineState(tmp_path / "s.json").check_writable()
    out = tmp_path / "out.txt"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    export_outputs({"a": 1, "b": "two\nlines"})
    text = out.read_text()
    assert text.startswith("a=1\nb<<ghadelimiter_") and "\ntwo\nlines\n" in text
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    append_github_file("GITHUB_STEP_SUMMARY", "# hi\n")
    append_github_file("GITHUB_STEP_SUMMARY", "more\n")
    assert (tmp_path / "summary.md").read_text() == "# hi\nmore\n"


@pytest.mark.parametrize(
    "url", ["https://huggingface.co", "http://127.0.0.1:8765", "http://[::1]:80/prefix"]
)
def test_good_endpoints_pass(url: str) -> None:
    assert check_endpoint(url) == url
