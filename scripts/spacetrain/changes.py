"""Which adapters a push changed: the deploy workflow's matrix.

An adapter is retrained when one of its inputs changed between two commits: its table
in ``[tool.spacetrain.adapters]`` (base model, dataset and revisions, training
parameters, backend), its evaluation suite, or something every adapter shares (the
Space folder, the gate, the project's own settings). A new adapter counts as changed;
a removed one is not trained. Without a usable base commit (the first push, a force
push) every adapter is.

The answer is grouped by backend, because the workflow trains ``space`` adapters one at
a time (one Space) and ``job`` adapters in parallel (one HF Job each).
"""

from __future__ import annotations

import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacetrain.config import ProjectConfig, load_config, read_pyproject
from spacetrain.errors import UsageError

_NO_COMMIT = frozenset({"", "0" * 40})  # GitHub's `before` on a branch's first push


@dataclass(frozen=True)
class Changes:
    """The adapters to train, by backend, and why each one is."""

    space: list[str] = field(default_factory=list)
    job: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"space": [...], "job": [...], "reasons": {...}}`` for the workflow."""
        return {"space": self.space, "job": self.job, "reasons": self.reasons}


def _git(root: Path, *args: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def _relative(config: ProjectConfig, path: Path) -> str:
    try:
        return path.resolve().relative_to(config.root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _touched(files: list[str], target: str) -> bool:
    target = target.rstrip("/")
    return any(f == target or f.startswith(target + "/") for f in files)


def changed_adapters(root: Path, base: str | None, head: str = "HEAD") -> Changes:
    """The configured adapters (as checked out at ``head``) whose inputs differ from ``base``.

    Raises:
        UsageError: ``head`` is not a commit of the repository at ``root``.
        InputFileError: the current pyproject.toml is bad (exit 2).
    """
    config = load_config(root)
    names = sorted(config.adapters)
    if _git(root, "rev-parse", "--verify", "--quiet", f"{head}^{{commit}}") is None:
        raise UsageError(f"--head {head!r} is not a commit of {root}")
    reasons: dict[str, str] = {}
    files = None
    known = (base or "") not in _NO_COMMIT and _git(
        root, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"
    )
    if known:
        # Both sides of a rename, and paths as they are (not C-quoted): NUL-separated.
        diff = _git(root, "diff", "--name-only", "--no-renames", "-z", str(base), head)
        files = [f for f in diff.split("\0") if f] if diff is not None else None
    if files is None:
        why = "no base commit to compare with" if (base or "") in _NO_COMMIT else f"{base} unknown"
        reasons = dict.fromkeys(names, why)
        return _grouped(config, reasons)
    new = _section(read_pyproject(root / "pyproject.toml"))
    try:
        old = _section(tomllib.loads(_git(root, "show", f"{base}:pyproject.toml") or ""))
    except tomllib.TOMLDecodeError:
        old = {}
    shared = {
        "space/": _relative(config, config.space_dir),
        "the gate": _relative(config, config.gate),
    }
    everyone = next((what for what, path in shared.items() if _touched(files, path)), None)
    if everyone is None and _project(old) != _project(new):
        everyone = "the [tool.spacetrain] settings"
    old_adapters = old.get("adapters") if isinstance(old.get("adapters"), dict) else {}
    for name in names:
        adapter = config.adapters[name]
        if everyone:
            reasons[name] = f"{everyone} changed"
        elif name not in old_adapters:
            reasons[name] = "new adapter"
        elif old_adapters[name] != new["adapters"][name]:
            reasons[name] = f"[tool.spacetrain.adapters.{name}] changed"
        elif _touched(files, _relative(config, adapter.suite)):
            reasons[name] = "its suite changed"
    return _grouped(config, reasons)


def _section(document: dict[str, Any]) -> dict[str, Any]:
    tool = document.get("tool") if isinstance(document.get("tool"), dict) else {}
    section = tool.get("spacetrain")
    return section if isinstance(section, dict) else {}


def _project(section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k != "adapters"}


def _grouped(config: ProjectConfig, reasons: dict[str, str]) -> Changes:
    space = [n for n in sorted(reasons) if config.adapters[n].backend == "space"]
    job = [n for n in sorted(reasons) if config.adapters[n].backend == "job"]
    return Changes(space=space, job=job, reasons=reasons)


__all__ = ["Changes", "changed_adapters"]
