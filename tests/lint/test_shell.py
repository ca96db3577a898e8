"""The Dockerfile reader, the shell parser and pip's grammar, unit by unit (issue #10)."""

from __future__ import annotations

import pytest

from spacetrain import pipcli
from spacetrain.dockerfile import Dockerfile, expand
from spacetrain.pipcli import pip_install
from spacetrain.shell import Word, parse, unwrap


def commands(text: str, first: int = 1) -> list[list[tuple[str, int]]]:
    found, _error = parse(text, range(first, first + text.count("\n") + 1))
    return [[(w.text, w.line) for w in c.words] for c in found]


def argv(words: str) -> list[Word]:
    return [Word(w, 1) for w in words.split()]


def installed(line: str) -> list[str] | None:
    """Requirement texts of the single install in ``line``; None when it is no install."""
    [command] = parse(line, [1])[0]
    install = pip_install(command.words)
    return None if install is None else [r.text for r in install.requirements]


def test_control_flow_subshells_and_nested_shells_yield_every_command() -> None:
    text = (
        "if true; then uv pip install a; else pip install b; fi\n"
        "for p in c d; do pip install $p; done; case x in x) pip install e ;; esac\n"
        "(pip install f) && { pip install g; } || bash -c 'pip install h'\n"
        "echo $(pip install i) | tee log\n"
    )
    heads = [c for c in commands(text, 10) if "install" in [t for t, _ in c]]
    assert [c[-1] for c in heads] == [
        ("a", 10), ("b", 10), ("$p", 11), ("e", 11), ("f", 12), ("g", 12), ("h", 12),
        ("i", 13),
    ]  # fmt: skip


def test_redirections_are_not_words_but_what_follows_them_is() -> None:
    assert commands("pip install a 2>&1 b > /dev/null c") == [
        [("pip", 1), ("install", 1), ("a", 1), ("b", 1), ("c", 1)]
    ]


def test_quotes_are_removed_and_each_word_keeps_its_physical_line() -> None:
    text = "pip install \\\n  'trl[peft]' \\\n  \"gradio>=5\" x\\>=1"
    assert commands(text, 5) == [
        [("pip", 5), ("install", 5), ("trl[peft]", 6), ("gradio>=5", 7), ("x>=1", 7)]
    ]


def test_a_heredoc_body_is_data_for_cat_and_a_script_for_bash() -> None:
    found, error = parse("cat <<EOF > f\nit's\nEOF\nbash <<EOT\npip install z\nEOT\n", range(1, 8))
    assert not error
    assert [w.text for w in found[0].stdin] == ["it's"]
    assert [(w.text, w.line) for w in found[-1].words] == [("pip", 5), ("install", 5), ("z", 5)]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("A=1 sudo -H -u me env -i B=2 exec pip install x", "pip install x"),
        ("timeout 60 nice -n 5 pip install x", "pip install x"),
        ("pip install x", "pip install x"),
    ],
)
def test_unwrap_strips_env_prefixes_and_wrappers(words: str, expected: str) -> None:
    assert " ".join(w.text for w in unwrap(argv(words))) == expected


@pytest.mark.parametrize(
    "line",
    [
        "pip install trl",
        "pip3 install trl",
        "pip3.11 install trl",
        "/opt/venv/bin/pip install trl",
        "python -m pip install trl",
        "python3 -B -m pip install trl",
        "python3.11 -W ignore -X utf8 -m pip install trl",
        "/usr/bin/python3 -Bm pip install trl",
        "pip --no-cache-dir install trl",
        "pip --timeout 60 -q install trl",
        "sudo -H pip install trl",
        "uv pip install --system trl",
        "uv --no-cache pip install trl",
        "python -m uv pip install trl",
        "PIP_NO_CACHE_DIR=1 pip install trl",
    ],
)
def test_every_spelling_of_pip_is_an_install(line: str) -> None:
    assert installed(line) == ["trl"]


@pytest.mark.parametrize(
    "line",
    [
        "pip install --root-user-action ignore trl",
        "pip install --progress-bar off --upgrade-strategy eager trl",
        "pip install --root-user ignore trl",  # optparse's unique-prefix abbreviation
        "pip install -qc constraints.txt trl",
        "pip install --config-settings editable_mode=compat trl",
        "pip install -i https://pypi.org/simple --extra-index-url https://x trl",
    ],
)
def test_option_values_come_from_pips_grammar(line: str) -> None:
    assert installed(line) == ["trl"]


def test_not_installs() -> None:
    assert installed("pip download trl") is None
    assert installed("python app.py install") is None
    assert installed("uv add trl") is None


@pytest.mark.e2e
def test_the_generated_tables_equal_the_installed_pips_options() -> None:
    tables = pipcli.options_from_pip()
    assert tables["PIP_GENERAL_VALUE"] == pipcli.PIP_GENERAL_VALUE
    assert tables["PIP_INSTALL_VALUE"] == pipcli.PIP_INSTALL_VALUE
    assert tables["PIP_INSTALL_FLAGS"] == pipcli.PIP_INSTALL_FLAGS


# ---------------------------------------------------------------- Dockerfile reader

DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG BASE_SUFFIX=""
FROM python:3.11-slim${BASE_SUFFIX} AS base
ARG UID=1000
RUN --mount=type=cache,target=/root/.cache \\
    --mount=type=bind,source=x,target=/x \\
    pip install \\

    # a comment inside the continuation
    trl
COPY <<EOF /app/notes.txt
USER root
EOF
RUN <<EOF
pip install \\
    peft
EOF
USER $UID
"""


def test_docker_reads_flags_blank_and_comment_lines_and_heredocs() -> None:
    doc = Dockerfile.parse(DOCKERFILE)
    assert [(i.keyword, i.line, i.end_line) for i in doc.instructions] == [
        ("ARG", 2, 2), ("FROM", 3, 3), ("ARG", 4, 4), ("RUN", 5, 10), ("COPY", 11, 13),
        ("RUN", 14, 17), ("USER", 18, 18),
    ]  # fmt: skip
    assert doc.instructions[3].flags == (
        "--mount=type=cache,target=/root/.cache",
        "--mount=type=bind,source=x,target=/x",
    )
    installs = doc.pip_installs()
    assert [(r.text, r.line) for i in installs for r in i.requirements] == [
        ("trl", 10),
        ("peft", 16),
    ]
    assert doc.problems == []


def test_arg_values_and_expansion() -> None:
    doc = Dockerfile.parse(DOCKERFILE)
    assert doc.global_args() == {"BASE_SUFFIX": ""}
    assert expand("python:3.11-slim${BASE_SUFFIX}", doc.global_args()) == "python:3.11-slim"
    assert doc.scope(18)["UID"] == "1000"
    assert expand("${X:-a}${Y-b}${Z:+c}", {"X": "", "Y": "", "Z": "1"}) == "ac"
    assert expand("$MISSING", {}) is None
    assert expand("$NODEFAULT", {"NODEFAULT": None}) is None


def test_escape_directive_and_unclosed_quote() -> None:
    doc = Dockerfile.parse("# escape=`\nFROM python:3.11-slim\nRUN pip install `\n    trl\n")
    assert [(r.text, r.line) for r in doc.pip_installs()[0].requirements] == [("trl", 4)]
    bad = Dockerfile.parse('FROM python:3.11-slim\nRUN pip install "trl\n')
    assert bad.problems and "no closing quotation" in bad.problems[0][1]
    unclosed = Dockerfile.parse("FROM python:3.11-slim\nRUN cat <<EOF\nx\n")
    assert unclosed.problems == [(2, "heredoc is never closed")]


def test_run_heredoc_before_its_command_is_the_commands_script() -> None:
    text = "FROM python:3.11-slim\nRUN <<EOT bash\n  set -e\n  pip install trl\nEOT\n"
    doc = Dockerfile.parse(text)
    assert [(r.text, r.line) for r in doc.pip_installs()[0].requirements] == [("trl", 4)]
    assert doc.problems == []


def test_pipx_install_is_an_install() -> None:
    assert installed("pipx install --include-deps --python python3.11 transformers") == [
        "transformers"
    ]


def test_shifts_and_here_strings_are_no_heredocs() -> None:
    doc = Dockerfile.parse(
        "FROM python:3.11-slim\nRUN echo $((1<<2)) && cat <<<x\nRUN pip install trl\n"
    )
    assert [i.keyword for i in doc.instructions] == ["FROM", "RUN", "RUN"]
    assert doc.problems == []
