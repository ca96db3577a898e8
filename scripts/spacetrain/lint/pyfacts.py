"""One walk over a Python module's AST, shared by every rule that reads Python.

Rules ask for :func:`facts` of a tree; the walk happens once per module however many
rules look (a 40 KB app.py otherwise costs one full walk per rule).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass


@dataclass
class GradioNames:
    """How a module refers to gradio: ``import gradio as gr``, ``from gradio import Blocks``."""

    modules: set[str]  # local names of the gradio module: {"gr"}
    members: dict[str, str]  # local name -> gradio attribute: {"B": "Blocks"}

    @property
    def imported(self) -> bool:
        """Whether the module imports gradio at all."""
        return bool(self.modules or self.members)


@dataclass(frozen=True)
class ModuleFacts:
    """What the app rules need from one module, gathered in a single walk of its AST."""

    names: GradioNames
    calls: tuple[ast.Call, ...]
    assigned: dict[str, list[ast.AST]]


@functools.lru_cache(maxsize=64)
def facts(tree: ast.Module) -> ModuleFacts:
    """One ``ast.walk`` per module, shared by every rule (a big app.py stays fast)."""
    names = GradioNames(set(), {})
    calls: list[ast.Call] = []
    assigned: dict[str, list[ast.AST]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            calls.append(node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "gradio":
                    names.modules.add(alias.asname or "gradio")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "gradio":
            for alias in node.names:
                if alias.name != "*":
                    names.members[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            _record_assignment(assigned, node.targets[0], node.value, node)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            _record_assignment(assigned, node.target, node.value, node)
    return ModuleFacts(names, tuple(calls), assigned)


def _record_assignment(
    found: dict[str, list[ast.AST]], target: ast.AST, value: ast.AST, node: ast.stmt
) -> None:
    """``name = {...}`` and ``name["key"] = value`` (for ``**name`` splats)."""
    if isinstance(target, ast.Name):
        found.setdefault(target.id, []).append(value)
    elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
        key = target.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            item = ast.Dict(keys=[key], values=[value])
            ast.copy_location(item, node)
            found.setdefault(target.value.id, []).append(item)
