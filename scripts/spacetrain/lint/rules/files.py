"""Which files the Space holds: the seed's five, nothing forbidden, nothing else."""

from __future__ import annotations

from collections.abc import Iterator

from spacetrain.lint.globs import glob_match
from spacetrain.lint.model import Hit, Severity
from spacetrain.lint.registry import rule
from spacetrain.lint.space_folder import SpaceFolder

_DEPS_URL = "https://huggingface.co/docs/hub/spaces-dependencies"


def _forbidden(space: SpaceFolder, rel: str) -> bool:
    return any(glob_match(rel, p) for p in space.policy["files"]["forbidden"])


@rule(
    "forbidden-file",
    Severity.ERROR,
    fix_title="Delete the file; the Dockerfile installs everything",
    url=_DEPS_URL,
)
def forbidden_file(space: SpaceFolder) -> Iterator[Hit]:
    """A file the policy forbids is in the Space (requirements.txt above all).

    ## What it does
    Reports every file that matches `files.forbidden` in policy/space.yaml:
    `requirements.txt`, `pre-requirements.txt`, `packages.txt` and `.env` by default.

    ## Why is this bad?
    A Docker Space installs only what its Dockerfile installs. A `requirements.txt`
    next to it is at best dead weight that drifts from the real pins, and the seed
    process saw it cause dependency conflicts; a `.env` file is a secret waiting to
    be published with the Space.

    ## Example
    ```text
    space/requirements.txt      <- forbidden
    ```
    Use instead: pin the packages in the Dockerfile's `pip install`.
    """
    for rel in space.files:
        if _forbidden(space, rel):
            yield Hit(rel, None, f"{rel} must not be in a Docker Space")


@rule(
    "unexpected-file",
    Severity.ERROR,
    fix_title="Remove it, or list it under files.allowed in policy/space.yaml",
)
def unexpected_file(space: SpaceFolder) -> Iterator[Hit]:
    """A file beyond the Space's required five (and the policy's allowed list).

    ## What it does
    Reports every file that is neither in `files.required` (`.gitattributes`,
    `README.md`, `Dockerfile`, `app.py`, `train.py`) nor in `files.allowed`, and not
    already reported as forbidden. Files matching `files.ignore` (`.git/`,
    `__pycache__/`) are not looked at.

    ## Why is this bad?
    Every file in `space/` is uploaded to the Space and every upload rebuilds it. A
    stray notebook, log or data file slows builds, can leak data, and has in the past
    been the file that broke the build.

    ## Example
    ```text
    space/notes.ipynb           <- not one of the five
    ```
    """
    known = set(space.policy["files"]["required"])
    allowed = space.policy["files"]["allowed"]
    for rel in space.files:
        if rel in known or _forbidden(space, rel):
            continue
        if any(glob_match(rel, p) for p in allowed):
            continue
        yield Hit(rel, None, f"{rel} is not one of the Space's expected files")


@rule(
    "missing-file",
    Severity.ERROR,
    fix_title="Add the file (see the README's Space layout)",
)
def missing_file(space: SpaceFolder) -> Iterator[Hit]:
    """A file the Space needs is missing.

    ## What it does
    Reports every name in `files.required` that the folder does not have.

    ## Why is this bad?
    Without a `Dockerfile` there is nothing to build; without `README.md` the Space has
    no `sdk: docker` configuration; without `app.py` there is no UI and without
    `train.py` nothing to train; `.gitattributes` keeps large files out of plain git.

    ## Example
    ```text
    space/ has Dockerfile README.md app.py   <- train.py and .gitattributes missing
    ```
    """
    for rel in space.policy["files"]["required"]:
        if rel not in space.files:
            yield Hit(rel, None, f"{rel} is missing")
