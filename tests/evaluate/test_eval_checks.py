"""Every check type: what passes, what fails, and which arguments are refused."""

from __future__ import annotations

import pytest

from spacetrain.evaluate.checks import REGISTRY, count_words, fold

# (check type, argument, output, expected)
CASES = [
    ("contains", "unity", "Umoja means unity.", True),
    ("contains", "Unity", "UMOJA MEANS UNITY", True),
    ("contains", "unity", "Umoja means oneness.", False),
    ("contains", "self-determination", "It means  self-determination", True),
    ("contains", "collective work", "collective\n  work and responsibility", True),
    ("contains", "\uff55\uff4e\uff49\uff54\uff59", "unity", True),  # full-width letters fold
    ("contains_any", ["unity", "oneness"], "it means oneness", True),
    ("contains_any", ["unity", "oneness"], "it means purpose", False),
    ("contains_any", "unity", "UNITY", True),
    ("contains_all", ["red", "black", "green"], "Three red, one black, three green.", True),
    ("contains_all", ["red", "black", "green"], "Three red and one black.", False),
    ("not_contains", "purpose", "Umoja means unity.", True),
    ("not_contains", "purpose", "Nia means Purpose.", False),
    ("not_contains", ["imani", "kuumba"], "Umoja, unity.", True),
    ("not_contains", ["imani", "kuumba"], "Kuumba, creativity.", False),
    ("regex", r"(?i)\bunity\b", "It is UNITY.", True),
    ("regex", r"\bunity\b", "It is UNITY.", False),  # regex is case-sensitive as written
    ("regex", r"december\s+26", "begins on december 26", True),
    ("regex", r"^Umoja", "It is Umoja", False),  # searched, anchors still mean anchors
    ("not_regex", r"(?i)as an ai", "As an AI, I think", False),
    ("not_regex", r"(?i)as an ai", "Umoja means unity.", True),
    ("max_words", 3, "Umoja means unity.", True),
    ("max_words", 2, "Umoja means unity.", False),
    ("max_words", 0, "", True),
    ("min_words", 3, "Umoja means unity.", True),
    ("min_words", 4, "Umoja means unity.", False),
    ("equals", "Umoja means unity.", "  umoja means unity ", True),
    ("equals", "unity", "unity and more", False),
    ("starts_with", "umoja", "  Umoja means unity.", True),
    ("starts_with", "unity", "Umoja means unity.", False),
]


@pytest.mark.parametrize(("kind", "arg", "output", "expected"), CASES)
def test_check(kind: str, arg: object, output: str, expected: bool) -> None:
    check = REGISTRY[kind]
    assert check.test(output, check.parse(arg)) is expected


def test_every_check_type_is_covered_both_ways() -> None:
    seen = {(kind, expected) for kind, _, _, expected in CASES}
    for kind in REGISTRY:
        assert (kind, True) in seen and (kind, False) in seen, kind


def test_the_required_check_types_exist() -> None:
    required = {"contains", "contains_any", "not_contains", "regex", "not_regex", "max_words"}
    assert required <= set(REGISTRY)


BAD_ARGS = [
    ("contains", ""),
    ("contains", "   "),
    ("contains", 3),
    ("contains", ["a"]),
    ("contains_any", []),
    ("contains_any", ["ok", ""]),
    ("contains_any", {"a": 1}),
    ("regex", "(unclosed"),
    ("regex", ""),
    ("not_regex", "[z-a]"),
    ("max_words", -1),
    ("max_words", "10"),
    ("max_words", True),
    ("max_words", 2.5),
]


@pytest.mark.parametrize(("kind", "arg"), BAD_ARGS)
def test_bad_argument_is_refused(kind: str, arg: object) -> None:
    with pytest.raises(ValueError, match=r"expects|bad regular expression"):
        REGISTRY[kind].parse(arg)


def test_every_check_type_documents_itself() -> None:
    for meta in REGISTRY.values():
        assert meta.doc, meta.name


def test_fold_and_word_count() -> None:
    assert fold("  UMOJA\n\tMeans  Unity ") == "umoja means unity"
    assert count_words("one two\nthree\t four") == 4
    assert count_words("") == 0
