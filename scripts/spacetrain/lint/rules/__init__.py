"""Every rule family; importing this package fills REGISTRY in documentation order."""

# isort: off
from spacetrain.lint.rules import files
from spacetrain.lint.rules import dockerfile
from spacetrain.lint.rules import readme
from spacetrain.lint.rules import app
from spacetrain.lint.rules import secrets
from spacetrain.lint.rules import resolve
from spacetrain.lint.rules import suppression
# isort: on

__all__ = ["app", "dockerfile", "files", "readme", "resolve", "secrets", "suppression"]
