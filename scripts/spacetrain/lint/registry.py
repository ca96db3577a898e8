"""``@rule`` and REGISTRY: one record per rule feeds messages, docs, SARIF and the README.

A rule is a plain function over a parsed :class:`~spacetrain.lint.space_folder.SpaceFolder`
that yields :class:`~spacetrain.lint.model.Hit` objects; its docstring is its user
documentation (ruff's convention), checked here so ``spacetrain rule ID`` never prints
half a page.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spacetrain.lint.model import Hit, Severity

if TYPE_CHECKING:
    from spacetrain.lint.space_folder import SpaceFolder

RuleFunc = Callable[["SpaceFolder"], Iterable[Hit]]

_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_HEADINGS = ("## What it does", "## Why is this bad?", "## Example")
DOCKER_DOCS = "https://huggingface.co/docs/hub/spaces-sdks-docker"


@dataclass(frozen=True)
class RuleMeta:
    """Everything known about a rule apart from its findings."""

    id: str
    severity: Severity
    summary: str  # first docstring line: one sentence
    doc: str  # the rest of the docstring, Markdown
    fix_title: str  # the default hint
    url: str  # helpUri: the documentation the rule stands on
    family: str  # "files", "dockerfile", ... (the module it lives in)
    opt_in: bool  # runs only when asked (pins-unresolvable needs --resolve)
    check: RuleFunc

    def section(self, heading: str) -> str:
        """The text under ``## heading`` in the docstring, without the heading."""
        match = re.search(
            rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", self.doc, flags=re.M | re.S
        )
        return match.group(1).strip() if match else ""


REGISTRY: dict[str, RuleMeta] = {}


def rule(
    rule_id: str,
    severity: Severity,
    *,
    fix_title: str,
    url: str = DOCKER_DOCS,
    opt_in: bool = False,
) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule function under a stable kebab-case id.

    Raises:
        ValueError: a bad or duplicate id, or a docstring without the three headings.
    """

    def register(func: RuleFunc) -> RuleFunc:
        if not _ID.match(rule_id):
            raise ValueError(f"rule id {rule_id!r} is not kebab-case")
        if rule_id in REGISTRY:
            raise ValueError(f"rule id {rule_id!r} is registered twice")
        if any(meta.check.__name__ == func.__name__ for meta in REGISTRY.values()):
            raise ValueError(f"rule function name {func.__name__!r} is used twice")
        if severity is Severity.OFF:
            raise ValueError(f"{rule_id}: a rule's default severity cannot be off")
        text = inspect.cleandoc(func.__doc__ or "")
        summary, _, doc = text.partition("\n")
        missing = [h for h in _HEADINGS if h not in doc]
        if not summary or missing:
            raise ValueError(f"{rule_id}: docstring needs a summary line and {missing}")
        REGISTRY[rule_id] = RuleMeta(
            id=rule_id,
            severity=severity,
            summary=summary.strip(),
            doc=doc.strip(),
            fix_title=fix_title,
            url=url,
            family=func.__module__.rsplit(".", 1)[-1],
            opt_in=opt_in,
            check=func,
        )
        return func

    return register


def load_rules() -> dict[str, RuleMeta]:
    """Import every rule module (registration is an import side effect) and return REGISTRY."""
    from spacetrain.lint import rules  # noqa: F401  (imports all rule families)

    return REGISTRY
