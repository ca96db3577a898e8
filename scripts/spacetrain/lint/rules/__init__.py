"""Every rule family; importing this package fills REGISTRY (order = documentation order)."""

from spacetrain.lint.rules import (
    app,
    dockerfile,
    files,
    readme,
    resolve,
    secrets,
    suppression,
)

__all__ = ["app", "dockerfile", "files", "readme", "resolve", "secrets", "suppression"]
