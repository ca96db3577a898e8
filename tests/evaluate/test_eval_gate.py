"""Scoring and the gate: means, boundaries, attribution, regressions, gate files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from spacetrain.errors import InputFileError
from spacetrain.evaluate.gate import (
    BUILTIN_ATTRIBUTION_PATTERNS,
    Thresholds,
    decide,
    default_policy,
    fmt,
    load_gate,
)
from spacetrain.evaluate.scoring import CaseResult, aggregate, at_least, score_case
from spacetrain.evaluate.suite import load_suite

REPO = Path(__file__).resolve().parents[2]


def result(cid: str, category: str, score: float, output: str = "ok") -> CaseResult:
    patterns = default_policy().attribution_patterns
    from spacetrain.evaluate.scoring import attribution_hits

    return CaseResult(
        cid, category, score, output, attribution=tuple(attribution_hits(output, patterns))
    )


def test_case_score_is_passed_over_total(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            cases:
              - id: a
                category: c
                prompt: q
                checks:
                  - contains: unity
                  - contains: umoja
                  - max_words: 3
            """
        )
    )
    case = load_suite(path).cases[0]
    patterns = default_policy().attribution_patterns
    full = score_case(case, "Umoja: unity.", patterns)
    assert full.score == 1.0 and full.failed_checks == ()
    two_of_three = score_case(case, "Unity is what Umoja means", patterns)
    assert two_of_three.score == pytest.approx(2 / 3)
    assert two_of_three.failed_checks == ("max_words: 3",)
    none = score_case(case, "purpose and faith and more words", patterns)
    assert none.score == 0.0 and len(none.failed_checks) == 3


def test_category_is_mean_of_cases_and_overall_is_mean_of_all_cases() -> None:
    results = [
        result("a", "x", 1.0),
        result("b", "x", 0.5),
        result("c", "y", 0.0),
        result("d", "y", 0.0),
        result("e", "y", 1.0),
    ]
    scores = aggregate(results)
    assert scores.categories == {"x": 0.75, "y": pytest.approx(1 / 3)}
    # overall weighs cases, not categories: (1 + .5 + 0 + 0 + 1) / 5
    assert scores.overall == pytest.approx(0.5)
    assert scores.counts == {"x": 2, "y": 3}
    assert scores.attribution_clean == 1.0


def test_aggregate_of_nothing_refuses() -> None:
    with pytest.raises(ValueError, match="no cases"):
        aggregate([])


@pytest.mark.parametrize(
    ("value", "threshold", "passes"),
    [
        (0.75, 0.75, True),
        (0.7499, 0.75, False),
        (0.74999, 0.75, False),
        (0.7500001, 0.75, True),
        (0.7499999999, 0.75, True),  # float noise below the 6th decimal is not a failure
        (0.70, 0.70, True),
        (0.6999, 0.70, False),
        (1.0, 1.0, True),
        (0.999999, 1.0, False),
        (0.1 + 0.2 + 0.4, 0.7, True),  # 0.7000000000000001
        (0.7 - 1e-16, 0.7, True),
    ],
)
def test_threshold_boundaries(value: float, threshold: float, passes: bool) -> None:
    assert at_least(value, threshold) is passes


def test_exactly_075_overall_passes_and_07499_fails() -> None:
    t = Thresholds(overall=0.75, category=0.70, attribution_clean=1.0)
    # 3 of 4 cases fully right: exactly 0.75 overall; categories 1.0 and 0.5 → use one category
    results = [result(str(i), "only", s) for i, s in enumerate([1, 1, 1, 0])]
    assert decide(aggregate(results), t) == []
    # the same spread with 7499/10000: fails, and says so with enough digits
    results = [result("a", "only", 0.7499)]
    failures = decide(aggregate(results), t)
    assert failures == ["overall 0.7499 < 0.75"]


def test_category_below_threshold_fails_even_when_overall_passes() -> None:
    results = [result(f"a{i}", "good", 1.0) for i in range(9)]
    results += [result("b0", "weak", 1.0), result("b1", "weak", 0.0), result("b2", "weak", 0.0)]
    scores = aggregate(results)
    assert scores.overall == pytest.approx(10 / 12)
    failures = decide(scores, Thresholds())
    assert failures == ["category weak 0.3333 < 0.70"]


def test_attribution_fails_the_gate_even_with_perfect_scores() -> None:
    results = [result(f"c{i}", "x", 1.0) for i in range(9)]
    results.append(result("dirty", "x", 1.0, "Umoja means unity. 🤖 Generated with Claude Code"))
    scores = aggregate(results)
    assert scores.overall == 1.0
    assert scores.attribution_clean == pytest.approx(0.9)
    assert scores.attributed == ("dirty",)
    failures = decide(scores, Thresholds())
    assert len(failures) == 1
    assert failures[0].startswith("attribution_clean 0.90 < 1.00 (1 output(s)")
    assert "dirty" in failures[0]


@pytest.mark.parametrize(
    "text",
    [
        "Generated with Claude",
        "generated WITH claude code",
        "Co-Authored-By: Claude <noreply@anthropic.com>",
        "🤖 Generated with [Claude Code](https://claude.ai/code)",
        "As an AI language model, I cannot",
        "as an AI model I think",
        "Generated by ChatGPT",
    ],
)
def test_builtin_attribution_patterns_catch(text: str) -> None:
    assert result("x", "c", 1.0, text).attribution


@pytest.mark.parametrize(
    "text",
    [
        "Umoja means unity.",
        "The Karamu is generated with love by the family.",
        "Claude Monet painted water lilies.",
        "Maulana Karenga created Kwanzaa.",
    ],
)
def test_builtin_attribution_patterns_spare(text: str) -> None:
    assert not result("x", "c", 1.0, text).attribution


def test_regression_against_baseline() -> None:
    t = Thresholds(overall=0.5, category=0.5, attribution_clean=1.0, max_regression=0.05)
    baseline = aggregate([result("a", "x", 1.0), result("b", "y", 1.0)])
    ok = aggregate([result("a", "x", 1.0), result("b", "y", 0.95)])
    assert decide(ok, t, baseline=baseline) == []  # a drop of exactly 0.05 is allowed
    worse = aggregate([result("a", "x", 1.0), result("b", "y", 0.9)])
    failures = decide(worse, t, baseline=baseline)
    assert failures == [
        "category y fell 0.10 from the baseline's 1.00 to 0.90 (max_regression 0.05)"
    ]
    # without max_regression, a baseline is informational only
    assert decide(worse, Thresholds(0.5, 0.5, 1.0), baseline=baseline) == []


def test_no_adapter_never_passes() -> None:
    scores = aggregate([result("a", "x", 1.0)])
    assert decide(scores, Thresholds(), adapter_present=False) == [
        "no adapter was evaluated: the gate only passes an adapter"
    ]


def test_fmt_shows_enough_digits_to_differ() -> None:
    assert fmt(0.66) == "0.66"
    assert fmt(0.7499, 0.75) == "0.7499"
    assert fmt(0.749999, 0.75) == "0.749999"
    assert fmt(0.75, 0.7499) == "0.75"
    assert fmt(1.0) == "1.00"


# ------------------------------------------------------------------ gate files


def test_shipped_gate_file() -> None:
    policy = load_gate(REPO / "policy" / "gate.yaml")
    t = policy.thresholds
    assert (t.overall, t.category, t.attribution_clean) == (0.75, 0.70, 1.0)
    assert t.max_regression == 0.10
    sources = [p.pattern for p in policy.attribution_patterns]
    assert sources[: len(BUILTIN_ATTRIBUTION_PATTERNS)] == list(BUILTIN_ATTRIBUTION_PATTERNS)
    assert len(sources) > len(BUILTIN_ATTRIBUTION_PATTERNS)


def test_gate_file_extends_builtin_patterns(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(
        "thresholds: {overall: 0.5, category: 0.5, attribution_clean: 1.0}\n"
        "attribution_patterns: ['made by robots']\n"
    )
    policy = load_gate(path)
    assert any(p.search("MADE BY ROBOTS") for p in policy.attribution_patterns)
    assert any(p.search("Generated with Claude") for p in policy.attribution_patterns)


def test_default_gate_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    policy = load_gate(None)
    assert policy.path is None
    assert policy.thresholds == Thresholds()


MALFORMED_GATES = [
    ("thresholds: {overall: 0.75, category: 0.7\n", 2, "invalid YAML"),
    (
        "thresholds:\n  overall: 75\n  category: 0.7\n  attribution_clean: 1\n",
        2,
        "thresholds.overall: must be a number from 0 to 1, not 75",
    ),
    ("thresholds:\n  overall: 0.75\n  category: 0.7\n", 2, "missing 'attribution_clean'"),
    ("thresholds:\n  overall: 0.75\n  categroy: 0.7\n", 3, "unknown key 'categroy'"),
    ("threshold: {overall: 0.75}\n", 1, "unknown key 'threshold'"),
    (
        "thresholds: {overall: 0.75, category: 0.7, attribution_clean: 1}\n"
        "attribution_patterns:\n  - ok\n  - '(broken'\n",
        4,
        "attribution_patterns[1]: bad regular expression",
    ),
    ("thresholds: [0.75]\n", 1, "thresholds: must be a mapping, not a list; e.g. {overall:"),
    ("thresholds:\n  overall: 0.75\n  categroy: 0.7\n", 3, "(did you mean 'category'?)"),
    (
        "thresholds:\n  overall: 0.75\n  overall: 0.8\n",
        3,
        "key 'overall' appears twice (first at line 2); keep one",
    ),
    ("", 1, "the gate file: must be a mapping with 'thresholds', not an empty file"),
    ("- 0.75\n", 1, "the gate file: must be a mapping with 'thresholds', not a list"),
    ("attribution_patterns: []\n", 1, "the gate file: missing 'thresholds'; add thresholds:"),
    ("thresholds: " + "[" * 100 + "]" * 100 + "\n", 1, "nested more than 64 levels deep"),
    (
        "thresholds: {overall: 0.75, category: 0.7, attribution_clean: 1}\n"
        "attribution_patterns: 'one'\n",
        2,
        "attribution_patterns: must be a list of regular expressions, not 'one'",
    ),
]


@pytest.mark.parametrize(("text", "line", "words"), MALFORMED_GATES)
def test_malformed_gate_names_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(text)
    with pytest.raises(InputFileError) as info:
        load_gate(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert words in str(info.value)


def test_named_gate_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        load_gate(tmp_path / "missing.yaml")
