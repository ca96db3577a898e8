"""Suppression comments are checked too: a reason is required and the rule must exist."""

from __future__ import annotations

from collections.abc import Iterator

from spacetrain.lint.model import Hit, Severity
from spacetrain.lint.registry import REGISTRY, rule
from spacetrain.lint.space_folder import SpaceFolder

_URL = "https://github.com/hadolint/hadolint#inline-ignores"


@rule(
    "suppression-without-reason",
    Severity.ERROR,
    fix_title="Say why after the bracket: # spacetrain: ignore[rule-id] because ...",
    url=_URL,
)
def suppression_without_reason(space: SpaceFolder) -> Iterator[Hit]:
    """A `spacetrain: ignore[...]` comment gives no reason (and so suppresses nothing).

    ## What it does
    Reports every suppression comment with nothing after `ignore[...]`. Such a comment
    does not suppress the finding it names.

    ## Why is this bad?
    A suppression is a decision someone made; without the reason, the next person can
    neither trust it nor know when it may go. Suppressed findings are still counted.

    ## Example
    ```dockerfile
    # spacetrain: ignore[user-not-1000]
    ```
    Use instead:
    ```dockerfile
    # spacetrain: ignore[user-not-1000] the base image already switches to uid 1000
    ```
    """
    for s in space.suppressions:
        if not s.malformed and s.rules and not s.reason:
            yield Hit(s.rel, s.line, f"suppression of {', '.join(s.rules)} gives no reason")


@rule(
    "suppression-invalid",
    Severity.ERROR,
    fix_title="Write # spacetrain: ignore[rule-id] reason, with an id from `spacetrain rule`",
    url=_URL,
)
def suppression_invalid(space: SpaceFolder) -> Iterator[Hit]:
    """A `spacetrain:` comment is malformed or names a rule that does not exist.

    ## What it does
    Reports `spacetrain:` comments that are not `ignore[rule-id, ...] reason`, empty
    brackets, and rule ids that are not registered (a typo would otherwise silently
    suppress nothing).

    ## Why is this bad?
    The author believes a finding is suppressed while it is not, or the other way
    round after a rule is renamed.

    ## Example
    ```python
    demo.launch()  # spacetrain: ignore[app-listen-adress] set by the platform
    ```
    """
    for s in space.suppressions:
        if s.malformed or not s.rules:
            yield Hit(
                s.rel, s.line, "malformed suppression: write spacetrain: ignore[rule-id] reason"
            )
            continue
        unknown = [r for r in s.rules if r not in REGISTRY]
        if unknown:
            yield Hit(s.rel, s.line, f"suppression names unknown rule {', '.join(unknown)}")
