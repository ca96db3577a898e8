"""Every package's ``__all__`` imports, and every exported callable says what it is for."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = ["spacetrain", "spacetrain.lint", "spacetrain.localhub", "spacetrain.evaluate"]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_import_and_are_documented(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__doc__, f"{package} has no docstring"
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{package}.{name} has no docstring"


@pytest.mark.e2e
def test_light_imports_do_not_load_the_model_stack() -> None:
    """`spacetrain lint` and `spacetrain gate` must start fast: no torch at import."""
    import subprocess
    import sys

    code = (
        "import sys, spacetrain.cli, spacetrain.lint, spacetrain.evaluate, spacetrain.localhub;"
        "print(sorted(m for m in ('torch', 'transformers', 'gradio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
