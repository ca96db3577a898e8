"""pins-unresolvable: pip's verdict (computed before the rules by lint.resolver), reported."""

from __future__ import annotations

from collections.abc import Iterator

from spacetrain.lint.model import Hit, Severity
from spacetrain.lint.registry import rule
from spacetrain.lint.space_folder import SpaceFolder


@rule(
    "pins-unresolvable",
    Severity.ERROR,
    fix_title="Choose versions that agree (pip's reason names them); check with --resolve",
    url="https://pip.pypa.io/en/stable/topics/dependency-resolution/",
    opt_in=True,
)
def pins_unresolvable(space: SpaceFolder) -> Iterator[Hit]:
    """The Dockerfile's exact pins cannot be installed together.

    ## What it does
    With `spacetrain lint --resolve`, asks pip's resolver for a dry run of every exact
    pin of the Dockerfile, binary wheels only, for the Python version of the base image
    (`python:3.11-…` gives 3.11, `nvidia/cuda:…-ubuntu22.04` gives 3.10; or
    `resolve.python_version`) and `resolve.platform`, and reports pip's reason at the
    line of a package it blames. `--find-links DIR` resolves offline against a folder
    of wheels. When only the PyTorch index is unreachable, torch is left out and the
    rest is still checked (the note says so).

    ## Why is this bad?
    Every pin can look right and the set still be impossible: the seed pinned
    `gradio==5.10.0` with `huggingface_hub==0.20.0`, but gradio 5.10.0 needs
    `huggingface-hub>=0.25.1`, so the Space failed to build with `ResolutionImpossible`
    after a long wait.

    ## Example
    ```dockerfile
    RUN pip install gradio==5.10.0 huggingface_hub==0.20.0
    ```
    Use instead:
    ```dockerfile
    RUN pip install gradio==6.31.0 gradio_client==2.7.2 huggingface_hub==2.4.0
    ```
    """
    result = space.resolution
    doc = space.dockerfile
    if result is None or result.ok or doc is None:
        return
    lines: dict[str, int] = {}
    for install in doc.pip_installs():
        for req in install.requirements:
            if req.name and req.pinned_version:
                lines.setdefault(req.name, req.line)
    line = next((lines[n] for n in result.culprits if n in lines), None)
    if line is None:
        installs = doc.pip_installs()
        line = installs[0].line if installs else doc.stages[-1].line
    where = f"Python {result.python_version}, {result.platform}"
    yield Hit("Dockerfile", line, f"the pinned set does not install ({where}): {result.reason}")
