"""Inline suppressions: ``# spacetrain: ignore[rule-id, ...] reason`` on or above the line.

README.md takes the HTML form ``<!-- spacetrain: ignore[rule-id] reason -->`` (or the
``#`` form inside its YAML front matter). A comment on a line of its own covers the next
code line and, in a Dockerfile, the whole instruction that starts there, so one comment
above a multi-line ``RUN`` covers it. A suppression must give a reason; one without a
reason, or naming an unknown rule, suppresses nothing and is itself a finding.
Applied after the rules ran, never inside one (hadolint's and ruff's convention).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spacetrain.lint.model import Finding, Suppressed
from spacetrain.lint.policy import Policy

if TYPE_CHECKING:
    from spacetrain.lint.space_folder import SpaceFolder

_HASH = re.compile(r"#\s*spacetrain:\s*ignore\[([^\]]*)\]([^\n]*)")
_HTML = re.compile(r"<!--\s*spacetrain:\s*ignore\[([^\]]*)\](.*?)-->")
_MENTION_HASH = re.compile(r"#\s*spacetrain:")
_MENTION_HTML = re.compile(r"<!--\s*spacetrain:")


@dataclass(frozen=True)
class Suppression:
    """One suppression comment and the lines it covers."""

    rel: str
    line: int
    rules: tuple[str, ...]
    reason: str
    covers: frozenset[int]
    malformed: bool = False  # mentions spacetrain: ignore but not as ignore[ids]


def parse_suppressions(space: SpaceFolder) -> list[Suppression]:
    """Every suppression comment of every text file in the Space."""
    found: list[Suppression] = []
    doc = space.dockerfile
    starts = {i.line: i.end_line for i in doc.instructions} if doc is not None else {}
    for rel, source in space.files.items():
        if source.text is None or "spacetrain" not in source.text:
            continue
        lines = source.lines
        is_md = rel.lower().endswith(".md")
        front_end = space.front_matter.last_line if rel == "README.md" and space.front_matter else 0
        for number, text in enumerate(lines, start=1):
            if "spacetrain" not in text:
                continue
            matches: list[re.Match[str]] = []
            if is_md:
                matches += _HTML.finditer(text)
                if number <= front_end:
                    matches += _HASH.finditer(text)
            else:
                matches += _HASH.finditer(text)
            if not matches:
                mention = _MENTION_HTML if is_md and number > front_end else _MENTION_HASH
                if mention.search(text):
                    found.append(Suppression(rel, number, (), "", frozenset(), malformed=True))
                continue
            for match in matches:
                rules = tuple(r.strip() for r in match.group(1).split(",") if r.strip())
                reason = match.group(2).strip().lstrip("#-:— ").strip()
                standalone = not text[: match.start()].strip()
                covers = {number}
                if standalone:
                    target = _next_code_line(lines, number, markdown=is_md)
                    if target is not None:
                        covers.add(target)
                        if rel == "Dockerfile" and target in starts:
                            covers.update(range(target, starts[target] + 1))
                found.append(Suppression(rel, number, rules, reason, frozenset(covers)))
    return found


def _next_code_line(lines: list[str], number: int, *, markdown: bool) -> int | None:
    """The first line after ``number`` that is not blank and not another comment."""
    for n in range(number + 1, len(lines) + 1):
        stripped = lines[n - 1].strip()
        if not stripped:
            continue
        if stripped.startswith("#") and not markdown:
            continue
        if markdown and stripped.startswith("<!--") and stripped.endswith("-->"):
            continue
        return n
    return None


def apply_suppressions(
    findings: Iterable[Finding],
    suppressions: list[Suppression],
    policy: Policy,
    *,
    space: SpaceFolder,
) -> tuple[list[Finding], list[Suppressed]]:
    """Split findings into kept and suppressed; invalid suppressions silence nothing."""
    from spacetrain.lint.globs import glob_match
    from spacetrain.lint.registry import REGISTRY

    by_file: dict[str, list[Suppression]] = {}
    for s in suppressions:
        if s.reason and s.rules and all(r in REGISTRY for r in s.rules):
            by_file.setdefault(space.shown(s.rel), []).append(s)
    kept: list[Finding] = []
    silenced: list[Suppressed] = []
    for finding in findings:
        if finding.rule.startswith("suppression-"):
            kept.append(finding)
            continue
        reason = None
        source = ""
        if finding.line is not None:
            for s in by_file.get(finding.path, ()):
                if finding.rule in s.rules and finding.line in s.covers:
                    reason, source = s.reason, "inline"
                    break
        if reason is None:
            rel = _relative(finding.path, space)
            for ignore in policy.ignores:
                if ignore.rule == finding.rule and (
                    glob_match(rel, ignore.path) or glob_match(finding.path, ignore.path)
                ):
                    reason, source = ignore.reason, "policy"
                    break
        if reason is None:
            kept.append(finding)
        else:
            silenced.append(Suppressed(finding, reason, source))
    return kept, silenced


def _relative(shown: str, space: SpaceFolder) -> str:
    prefix = space.shown_root + "/"
    return shown[len(prefix) :] if space.shown_root != "." and shown.startswith(prefix) else shown
