"""The linter's result model: one Finding shape feeds every reporter and the exit code."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(enum.StrEnum):
    """How bad a finding is; ``off`` exists only in policy overrides (the rule does not run)."""

    ERROR = "error"
    WARNING = "warning"
    OFF = "off"


@dataclass(frozen=True)
class Hit:
    """What a rule yields: where and what. The registry adds the rule id and severity."""

    path: str  # relative to the Space folder, posix separators ("Dockerfile")
    line: int | None
    message: str
    hint: str | None = None  # overrides the rule's fix_title when the fix is specific


@dataclass(frozen=True)
class Finding:
    """One policy violation, as the JSON contract of docs/architecture.md spells it."""

    rule: str
    severity: Severity
    path: str  # as shown to the user: relative to the working directory ("space/Dockerfile")
    line: int | None
    message: str
    hint: str | None

    def to_json(self) -> dict[str, object]:
        """The contract's six keys, in the contract's order."""
        return {
            "rule": self.rule,
            "severity": str(self.severity),
            "path": self.path,
            "line": self.line,
            "message": self.message,
            "hint": self.hint,
        }

    @property
    def sort_key(self) -> tuple[str, int, str, str]:
        """File order, then line (file-level findings first), then rule."""
        return (self.path, self.line or 0, self.rule, self.message)


@dataclass(frozen=True)
class Suppressed:
    """A finding that a suppression comment or the policy's ``ignore`` list silenced."""

    finding: Finding
    reason: str
    source: str  # "inline" or "policy"


@dataclass
class LintReport:
    """Everything one lint run found; reporters render it, :func:`exit_code` judges it."""

    root: str  # the Space folder as shown ("space")
    findings: list[Finding] = field(default_factory=list)
    suppressed: list[Suppressed] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # files read, as shown
    rules_run: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for stderr: what a check left out

    @property
    def errors(self) -> int:
        """Unsuppressed findings of error severity."""
        return sum(1 for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        """Unsuppressed findings of warning severity."""
        return sum(1 for f in self.findings if f.severity is Severity.WARNING)

    def summary(self) -> str:
        """``2 errors, 1 warning, 3 suppressed in space/`` (the line every format ends with)."""

        def n(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"

        return (
            f"{n(self.errors, 'error')}, {n(self.warnings, 'warning')}, "
            f"{len(self.suppressed)} suppressed in {self.root.rstrip('/')}/ "
            f"({len(self.checked)} files, {len(self.rules_run)} rules)"
        )


def exit_code(report: LintReport, *, exit_zero: bool = False) -> int:
    """0 clean or warnings only; 1 any error-severity finding (the architecture's contract)."""
    if exit_zero:
        return 0
    return 1 if report.errors else 0
