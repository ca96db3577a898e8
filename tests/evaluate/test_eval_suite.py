"""Suite files: the shipped one loads; malformed ones are exit 2 naming file, line, case, field."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spacetrain.cli import main
from spacetrain.errors import EXIT_FAILED, EXIT_USAGE, InputFileError
from spacetrain.evaluate.suite import EmptySuite, load_suite

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "policy" / "evals" / "kwanzaa.yaml"

GOOD = """\
name: tiny
generation: {max_new_tokens: 16, system_prompt: "Answer briefly.", batch_size: 4}
cases:
  - id: umoja
    category: principles
    prompt: "What does Umoja mean?"
    checks:
      - contains: "unity"
      - max_words: 10
  - id: chat
    category: days
    messages:
      - {role: system, content: "You know Kwanzaa."}
      - {role: user, content: "When does Kwanzaa begin?"}
    checks:
      - regex: "(?i)december\\\\s+26"
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_demo_suite_loads_with_four_categories() -> None:
    suite = load_suite(DEMO)
    assert suite.name == "kwanzaa"
    assert set(suite.categories) == {"principles", "days", "symbols", "history"}
    assert len(suite.cases) >= 20
    assert suite.generation.max_new_tokens == 48
    assert len(suite.sha256) == 64


def test_good_suite_parses_prompts_messages_and_settings(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, GOOD))
    assert suite.generation.max_new_tokens == 16 and suite.generation.batch_size == 4
    umoja, chat = suite.cases
    assert umoja.messages == ({"role": "user", "content": "What does Umoja mean?"},)
    assert [c.kind for c in umoja.checks] == ["contains", "max_words"]
    assert umoja.checks[0].line == 8
    assert chat.prompt == "When does Kwanzaa begin?"
    convs = suite.conversations()
    # the suite's system prompt goes first unless the case brings its own
    assert convs[0][0] == {"role": "system", "content": "Answer briefly."}
    assert convs[1][0] == {"role": "system", "content": "You know Kwanzaa."}
    assert len(convs[1]) == 2


# (suite text, expected line, words the message must contain)
MALFORMED = [
    ("cases: [\n  {id: a\n", 3, ["invalid YAML"]),
    ("- just\n- a list\n", 1, ["mapping with 'cases'"]),
    ("name: x\ncase:\n  - id: a\n", 2, ["unknown key 'case'"]),
    (
        "cases:\n  - id: a\n    category: c\n    prompt: p\n    checks:\n      - regex: '(oops'\n",
        6,
        ["case 'a': checks[0].regex: bad regular expression '(oops'"],
    ),
    (
        "cases:\n  - id: a\n    category: c\n    prompt: p\n    checks:\n"
        "      - contains: x\n      - sounds_like: y\n",
        7,
        ["case 'a': checks[1]: unknown check type 'sounds_like'; expected one of contains,"],
    ),
    (
        "cases:\n  - id: a\n    category: c\n    prompt: p\n    checks:\n"
        "      - {contains: x, max_words: 3}\n",
        6,
        ["case 'a': checks[0]: must be a one-key mapping", "not 2 keys"],
    ),
    (
        "cases:\n  - id: a\n    category: c\n    prompt: p\n    checks:\n      - max_words: many\n",
        6,
        ["case 'a': checks[0].max_words: expects a whole number"],
    ),
    (
        "cases:\n  - id: a\n    category: c\n    prompt: p\n    checks: []\n",
        5,
        ["case 'a'", "checks:"],
    ),
    (
        "cases:\n  - id: a\n    prompt: p\n    checks:\n      - contains: x\n",
        2,
        ["case 'a'", "category"],
    ),
    (
        "cases:\n  - category: c\n    prompt: p\n    checks:\n      - contains: x\n",
        2,
        ["case #1", "'id'"],
    ),
    (
        "cases:\n  - id: a\n    category: c\n    checks:\n      - contains: x\n",
        2,
        ["case 'a'", "exactly one of 'prompt' or 'messages'"],
    ),
    (
        "cases:\n  - id: a\n    category: c\n    prompt: p\n    checks: [contains: x]\n"
        "  - id: a\n    category: c\n    prompt: q\n    checks: [contains: y]\n",
        6,
        ["case 'a'", "duplicate id (first at line 2)"],
    ),
    (
        "cases:\n  - id: a\n    category: c\n    messages:\n      - {role: user, content: hi}\n"
        "      - {role: assistant, content: hello}\n    checks: [contains: x]\n",
        6,
        ["case 'a'", "messages", "last message must be the user's"],
    ),
    (
        "cases:\n  - id: a\n    category: c\n    messages:\n      - {role: bot, content: hi}\n"
        "    checks: [contains: x]\n",
        5,
        ["case 'a': messages[0].role: must be 'system', 'user' or 'assistant', not 'bot'"],
    ),
    (
        "generation:\n  max_new_tokens: 0\ncases:\n  - id: a\n",
        2,
        ["generation.max_new_tokens", "from 1 to"],
    ),
    ("generation:\n  temperature: 0.7\ncases: []\n", 2, ["generation", "unknown key"]),
    ("cases:\n  - id: a\n    id: b\n", 3, ["key 'id' appears twice (first at line 2); keep one"]),
    ("cases: {a: 1}\n", 1, ["cases: must be a list of cases, not a mapping"]),
    (
        "cases:\n  - id: a\n    category: c\n    prompt: ''\n    checks: [contains: x]\n",
        4,
        ["case 'a'", "prompt", "non-empty"],
    ),
]


@pytest.mark.parametrize(("text", "line", "words"), MALFORMED)
def test_malformed_suite_names_file_and_line(
    tmp_path: Path, text: str, line: int, words: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputFileError) as info:
        load_suite(path)
    err = info.value
    assert err.line == line, str(err)
    assert str(err).startswith(f"{path}:{line}: ")
    for word in words:
        assert word in str(err)
    assert "\n" not in str(err)


@pytest.mark.parametrize("text", ["cases: []\n", "name: x\n", "cases:\n"])
def test_suite_without_cases_fails_closed_with_exit_1(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(EmptySuite) as info:
        load_suite(path)
    assert info.value.exit_code == EXIT_FAILED
    assert str(path) in str(info.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        load_suite(tmp_path / "nope.yaml")
    with pytest.raises(InputFileError, match="mapping with 'cases'"):
        load_suite(write(tmp_path, ""))


def test_cli_malformed_suite_is_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, MALFORMED[3][0])
    code = main(["evaluate", "--base-model", str(tmp_path), "--suite", str(path)])
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(
        f"spacetrain evaluate: error: {path}:6: case 'a': checks[0].regex: bad regular expression"
    )


@pytest.mark.e2e
def test_cli_subprocess_empty_suite_exit_1_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "name: empty\ncases: []\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacetrain",
            "evaluate",
            "--base-model",
            str(tmp_path),
            "--adapter",
            str(tmp_path),
            "--suite",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == EXIT_FAILED
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"spacetrain evaluate: error: {path}: the suite has no cases, so there is nothing to "
        "gate on"
    ]
