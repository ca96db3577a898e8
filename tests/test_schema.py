"""The one YAML reader and the one validator: lines, refusals, and the same error shape for
the config, the lint policy, the gate and evaluation suites."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spacetrain import schema
from spacetrain.config import load_config, toml_lines
from spacetrain.errors import EXIT_USAGE, InputFileError
from spacetrain.evaluate.gate import load_gate
from spacetrain.evaluate.suite import load_suite
from spacetrain.lint.policy import load_policy
from spacetrain.yamlfile import MAX_YAML_DEPTH, LineDict, YamlProblem, parse_yaml

# ------------------------------------------------------------------ the YAML reader


def test_every_mapping_and_list_knows_its_lines() -> None:
    doc = parse_yaml("a: 1\nb:\n  - x\n  - {c: 2,\n     d: 3}\n")
    assert (doc.line, doc.lines) == (1, {"a": 1, "b": 2})
    assert doc["b"].lines == [3, 4]
    assert doc["b"][1].lines == {"c": 4, "d": 5}
    # README front matter starts on the file's line 2: lines are the file's
    assert parse_yaml("a: 1\nb: 2\n", first_line=2).lines == {"a": 2, "b": 3}
    assert parse_yaml("") is None and parse_yaml("# only a comment\n") is None


@pytest.mark.parametrize(
    ("text", "line", "detail"),
    [
        ("a: 1\nb: 2\na: 3\n", 3, "key 'a' appears twice (first at line 1); keep one"),
        ("x:\n  - {k: 1, k: 2}\n", 2, "key 'k' appears twice (first at line 2)"),
        ("on: 1\n", 1, "key 'on' is read as a boolean, not text; quote it: 'on'"),
        ("x:\n  1: a\n", 2, "key '1' is read as a number, not text; quote it: '1'"),
        ("~: a\n", 1, "key '~' is read as null, not text"),
        ("? [a, b]\n: 1\n", 1, "a mapping key must be a plain value, not a list or mapping"),
        ("a: &a [1, *a]\n", 1, "an alias refers to the list or mapping it is inside of"),
    ],
)
def test_yaml_that_is_refused_says_why_and_where(text: str, line: int, detail: str) -> None:
    with pytest.raises(YamlProblem) as caught:
        parse_yaml(text)
    assert caught.value.line == line
    assert detail in caught.value.detail
    assert not caught.value.syntax


def test_keys_may_be_any_scalar_where_asked() -> None:
    assert parse_yaml("2: a\non: b\n", string_keys=False) == {2: "a", True: "b"}


def test_depth_is_limited_without_recursion_errors() -> None:
    ok = "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH
    assert parse_yaml(ok) is not None
    started = time.monotonic()
    for deep in (
        "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1),
        "x: " + "[" * 200_000,  # unclosed too: the limit is met before the end
        "a:\n" + "".join("  " * n + f"k{n}:\n" for n in range(1, 200)),
    ):
        with pytest.raises(YamlProblem, match=f"nested more than {MAX_YAML_DEPTH} levels deep"):
            parse_yaml(deep)
    assert time.monotonic() - started < 5


def test_aliases_within_bounds_work_and_bombs_are_refused_fast() -> None:
    doc = parse_yaml("base: &b {x: 1, y: 2}\nmine:\n  <<: *b\n  y: 3\nsame: *b\n")
    assert doc["mine"] == {"x": 1, "y": 3}  # a merge is not a duplicate; own keys win
    assert doc["same"] == {"x": 1, "y": 2}
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):  # 10**9 values once expanded
        refs = ", ".join([f"*{chr(96 + n)}"] * 10)
        levels.append(f"{chr(97 + n)}: &{chr(97 + n)} [{refs}]")
    started = time.monotonic()
    with pytest.raises(YamlProblem, match="aliases expand to more than"):
        parse_yaml("\n".join(levels) + "\n")
    merges = ["m0: &m0 {k0: 1}"]
    for n in range(1, 40):  # each level merges the one below twice: 2**40 keys
        merges.append(f"m{n}: &m{n} {{<<: [*m{n - 1}, *m{n - 1}], k{n}: 1}}")
    with pytest.raises(YamlProblem, match="aliases expand to more than"):
        parse_yaml("\n".join(merges) + "\n")
    assert time.monotonic() - started < 5


def test_syntax_errors_are_marked_as_such() -> None:
    with pytest.raises(YamlProblem) as caught:
        parse_yaml("a: [1\n")
    assert caught.value.syntax and caught.value.line == 2


# ------------------------------------------------------------------ the validator

SPEC = schema.Table(
    (
        schema.Field("name", schema.Text(), required=True, hint="add name: <text>"),
        schema.Field("size", schema.Number(low=1, high=10, whole=True), default=3),
        schema.Field("mode", schema.Text(choices=("fast", "slow")), default="fast"),
        schema.Field("ratio", schema.Nullable(schema.Number(low=0, high=1))),
        schema.Field("enabled", schema.Flag()),
        schema.Field("pattern", schema.Pattern()),
        schema.Field(
            "items",
            schema.Items(
                schema.Table(
                    (
                        schema.Field("id", schema.Text(), required=True),
                        schema.Field("tags", schema.Items(schema.Text())),
                    )
                ),
                nonempty=True,
            ),
        ),
        schema.Field(
            "env", schema.Mapping(schema.Text(empty=True), key=schema.Text(pattern="[A-Z]+"))
        ),
        schema.Field(
            "either",
            schema.AnyOf(
                (schema.Items(schema.Text()), schema.Mapping(schema.Text())),
                what="a list or a mapping",
            ),
        ),
    ),
    what="a mapping with 'name'",
)


def validate(text: str) -> Any:
    return schema.Document("f.yaml", parse_yaml(text), root="the file").validate(SPEC)


def test_valid_document_comes_back_plain_with_defaults() -> None:
    data = validate("name: x\nitems:\n  - {id: a, tags: [t]}\nratio: null\neither: {k: v}\n")
    assert data == {
        "name": "x",
        "size": 3,
        "mode": "fast",
        "ratio": None,
        "items": [{"id": "a", "tags": ["t"]}],
        "either": {"k": "v"},
    }
    assert type(data) is dict and type(data["items"]) is list


BAD: list[tuple[str, str]] = [
    ("", "f.yaml:1: the file: must be a mapping with 'name', not an empty file"),
    ("- a\n", "f.yaml:1: the file: must be a mapping with 'name', not a list"),
    ("size: 2\n", "f.yaml:1: the file: missing 'name'; add name: <text>"),
    (
        "name: x\nsise: 2\n",
        "f.yaml:2: the file: unknown key 'sise' (did you mean 'size'?); "
        "expected one of either, enabled, env, items, mode, name, pattern, ratio, size",
    ),
    ("name: x\nsize: 11\n", "f.yaml:2: size: must be a whole number from 1 to 10, not 11"),
    ("name: x\nsize: 2.5\n", "f.yaml:2: size: must be a whole number from 1 to 10, not 2.5"),
    ("name: x\nsize: true\n", "f.yaml:2: size: must be a whole number from 1 to 10, not true"),
    ("name: ' '\n", "f.yaml:1: name: must be a non-empty string, not ' '"),
    ("name: x\nmode: fats\n", "f.yaml:2: mode: must be 'fast' or 'slow', not 'fats' (did you "),
    ("name: x\nratio: [1]\n", "f.yaml:2: ratio: must be a number from 0 to 1 or null, not a list"),
    ("name: x\nenabled: 'yes'\n", "f.yaml:2: enabled: must be true or false, not 'yes'"),
    ("name: x\npattern: '(a'\n", "f.yaml:2: pattern: bad regular expression '(a': missing )"),
    ("name: x\nitems: []\n", "f.yaml:2: items: must be a non-empty list, not an empty list"),
    (
        "name: x\nitems:\n  - id: a\n  - id: b\n    tags:\n      - ok\n      - 7\n",
        "f.yaml:7: items[1].tags[1]: must be a non-empty string, not 7",
    ),
    ("name: x\nitems:\n  - tags: []\n", "f.yaml:3: items[0]: missing 'id'"),
    ("name: x\nenv:\n  lower: v\n", "f.yaml:3: env.lower: the key must be a non-empty string"),
    ("name: x\neither: 3\n", "f.yaml:2: either: must be a list or a mapping, not 3"),
    ("name: x\neither: [a, '']\n", "f.yaml:2: either[1]: must be a non-empty string, not ''"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_each_problem_is_one_line_with_file_line_and_place(text: str, message: str) -> None:
    with pytest.raises(InputFileError) as caught:
        validate(text)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == EXIT_USAGE


def test_domain_checks_fail_in_the_same_shape() -> None:
    doc = schema.Document("f.yaml", parse_yaml("a:\n  b: 1\n"), root="the file")
    with pytest.raises(InputFileError, match=r"^f.yaml:2: a.b: is odd; make it even$"):
        doc.fail(("a", "b"), "is odd", "make it even")
    with pytest.raises(InputFileError, match=r"^f.yaml:2: a: lacks c$"):
        doc.fail(("a",), "lacks c", line_at=("a", "c"))  # absent: where its mapping starts


# ----------------------------------------------- each file kind's worst inputs

NESTED_WRONG, UNKNOWN, DUPLICATE, DEEP, EMPTY, NOT_A_MAPPING = (
    "nested-wrong-type",
    "unknown-key",
    "duplicate-key",
    "too-deep",
    "empty",
    "not-a-mapping",
)
DEEP_YAML = "x: " + "[" * 100_000 + "]" * 100_000 + "\n"

# (kind, loader, text, line, message after "FILE:LINE: "); None: loads fine
WORST: list[tuple[str, Callable[[Path], Any], str, int, str | None]] = [
    (
        NESTED_WRONG,
        load_policy,
        "version: 1\nsecrets:\n  token_patterns:\n    - {name: a, regex: 7}\n",
        4,
        "secrets.token_patterns[0].regex: must be a regular expression string, not 7",
    ),
    (
        UNKNOWN,
        load_policy,
        "app:\n  prot: 8080\n",
        2,
        "app: unknown key 'prot' (did you mean 'port'?); expected one of file, listen, port",
    ),
    (DUPLICATE, load_policy, "app:\n  port: 1\n  port: 2\n", 3, "key 'port' appears twice"),
    (DEEP, load_policy, DEEP_YAML, 1, "nested more than 64 levels deep"),
    (EMPTY, load_policy, "", 0, None),  # an empty policy is the defaults
    (NOT_A_MAPPING, load_policy, "just text\n", 1, "the policy: must be a mapping, not 'just"),
    (
        NESTED_WRONG,
        load_gate,
        "thresholds:\n  overall: 0.7\n  category: high\n  attribution_clean: 1\n",
        3,
        "thresholds.category: must be a number from 0 to 1, not 'high'",
    ),
    (
        UNKNOWN,
        load_gate,
        "thresholds: {overall: 1, category: 1, attribution_clean: 1}\nattribution_pattern: []\n",
        2,
        "the gate file: unknown key 'attribution_pattern' (did you mean 'attribution_patterns'?)",
    ),
    (
        DUPLICATE,
        load_gate,
        "thresholds: {overall: 1, category: 1, attribution_clean: 1}\n"
        "thresholds: {overall: 1, category: 1, attribution_clean: 1}\n",
        2,
        "key 'thresholds' appears twice (first at line 1); keep one",
    ),
    (DEEP, load_gate, DEEP_YAML, 1, "nested more than 64 levels deep"),
    (EMPTY, load_gate, "", 1, "the gate file: must be a mapping with 'thresholds', not an empty"),
    (NOT_A_MAPPING, load_gate, "[1, 2]\n", 1, "the gate file: must be a mapping with 'thres"),
    (
        NESTED_WRONG,
        load_suite,
        "cases:\n  - id: a\n    category: c\n    messages:\n      - role: user\n"
        "        content: [hi]\n    checks: [contains: x]\n",
        6,
        "case 'a': messages[0].content: must be a non-empty string, not a list",
    ),
    (
        UNKNOWN,
        load_suite,
        "cases:\n  - id: a\n    category: c\n    prompt: p\n    chekcs: [contains: x]\n",
        5,
        "case 'a': unknown key 'chekcs' (did you mean 'checks'?); expected one of category,",
    ),
    (
        DUPLICATE,
        load_suite,
        "cases:\n  - id: a\n    category: c\n    category: d\n",
        4,
        "key 'category' appears twice (first at line 3); keep one",
    ),
    (DEEP, load_suite, DEEP_YAML, 1, "nested more than 64 levels deep"),
    (EMPTY, load_suite, "", 1, "the suite: must be a mapping with 'cases', not an empty file"),
    (NOT_A_MAPPING, load_suite, "42\n", 1, "the suite: must be a mapping with 'cases', not 42"),
]


@pytest.mark.parametrize(
    ("kind", "loader", "text", "line", "message"),
    WORST,
    ids=[f"{loader.__name__}-{kind}" for kind, loader, *_ in WORST],
)
def test_worst_inputs_of_each_yaml_file(
    tmp_path: Path,
    kind: str,
    loader: Callable[[Path], Any],
    text: str,
    line: int,
    message: str | None,
) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    if message is None:
        assert loader(path) is not None
        return
    with pytest.raises(InputFileError) as caught:
        loader(path)
    assert str(caught.value).startswith(f"{path.as_posix()}:{line}: {message}"), str(caught.value)
    assert "\n" not in str(caught.value)


CONFIG = """\
[tool.other]
x = 1

[tool.spacetrain]
space = "me/trainer"
variables = {A = "1"}

[tool.spacetrain.adapters.demo]
base_model = "me/base"
dataset = "me/data"
output_repo = "me/adapter"
train = { epochs = 4 }
"""


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        (
            "train = { epochs = 4 }",
            "train = { epochs = 4, lora_r = [1] }",
            12,
            "[tool.spacetrain.adapters.demo] train.lora_r: must be",
        ),
        (
            'space = "me/trainer"',
            'space = "me/trainer"\nhardwre = "t4-small"',
            6,
            "[tool.spacetrain]: unknown key 'hardwre' (did you mean 'hardware'?)",
        ),
        (
            'variables = {A = "1"}',
            "[tool.spacetrain.variables]\nA = 1",
            7,
            '[tool.spacetrain] variables.A: must be "text", not 1',
        ),
        (
            'output_repo = "me/adapter"\n',
            'output_repo = "me/adapter"\nsuite = ""\n',
            12,
            "[tool.spacetrain.adapters.demo] suite: must be a non-empty string, not ''",
        ),
        (
            "[tool.spacetrain.adapters.demo]",
            "[tool.spacetrain.adapters]\ndemo = 3",
            9,
            "[tool.spacetrain.adapters.demo]: must be a table, not 3",
        ),
    ],
)
def test_config_errors_name_the_toml_line(
    tmp_path: Path, old: str, new: str, line: int, message: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(CONFIG.replace(old, new))
    with pytest.raises(InputFileError) as caught:
        load_config(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'pyproject.toml'}:{line}: {message}"), str(
        caught.value
    )


def test_toml_lines_skip_multiline_values() -> None:
    text = textwrap.dedent(
        '''\
        [a]
        x = [
          [1, 2],
          "y = 3",
        ]
        s = """
        [not.a.table]
        k = 1
        """
        "quoted.key" = 1
        b.c = 2
        [[d]]
        e = 1
        '''
    )
    assert toml_lines(text) == {
        ("a",): 1,
        ("a", "x"): 2,
        ("a", "s"): 6,
        ("a", "quoted.key"): 10,
        ("a", "b", "c"): 11,
        ("d",): 12,
        ("d", "e"): 13,
    }


def test_yaml_line_of_an_absent_entry_is_where_its_mapping_starts() -> None:
    doc = parse_yaml("top: 1\nsub:\n  a: 1\n  b: 2\n")
    assert isinstance(doc, LineDict)
    assert schema.yaml_line(doc, ("sub", "b")) == 4
    assert schema.yaml_line(doc, ("sub", "zzz")) == 3
    assert schema.yaml_line(doc, ("nope", "deeper")) == 1


def test_the_policy_defaults_satisfy_the_policy_schema() -> None:
    """DEFAULTS and POLICY_SCHEMA describe the same keys: a default the schema refused
    could never be restated in policy/space.yaml."""
    from spacetrain.lint.policy import DEFAULTS, POLICY_SCHEMA

    checked = schema.Document("<defaults>", DEFAULTS, root="the policy").validate(POLICY_SCHEMA)
    assert checked == DEFAULTS
