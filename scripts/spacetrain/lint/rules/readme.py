"""README.md front matter: the Space's configuration, read by the Hub before anything runs."""

from __future__ import annotations

from collections.abc import Iterator

from spacetrain.lint.model import Hit, Severity
from spacetrain.lint.registry import rule
from spacetrain.lint.space_folder import SpaceFolder

README = "README.md"
_CONFIG_URL = "https://huggingface.co/docs/hub/spaces-config-reference"
_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


@rule(
    "readme-front-matter",
    Severity.ERROR,
    fix_title="Start README.md with a --- YAML block holding sdk: docker and app_port",
    url=_CONFIG_URL,
)
def readme_front_matter(space: SpaceFolder) -> Iterator[Hit]:
    """README.md's YAML front matter is missing, invalid, or not a Docker Space's.

    ## What it does
    Parses the `---` block at the top of `README.md` (reporting YAML errors at their
    line) and checks: `sdk` is `readme.sdk` (docker), every key of
    `readme.required_keys` is present, `app_port` is a port number, `colorFrom`/`colorTo`
    are one of the eight colours the Hub accepts and `short_description` has at most
    60 characters.

    ## Why is this bad?
    The Hub reads this block before it builds anything: broken YAML or a wrong `sdk`
    gives a configuration error (or a Gradio Space that ignores the Dockerfile), and a
    wrong `app_port` leaves the Space "not healthy" after 30 minutes.

    ## Example
    ```yaml
    ---
    title: Trainer
    sdk: gradio
    ---
    ```
    Use instead:
    ```yaml
    ---
    title: Trainer
    sdk: docker
    app_port: 7860
    ---
    ```
    """
    fm = space.front_matter
    if fm is None:
        return
    if fm.problem is not None:
        line, detail = fm.problem
        yield Hit(README, line, f"README.md {detail}")
        return
    data = fm.data or {}
    want_sdk = space.policy["readme"]["sdk"]
    for key in space.policy["readme"]["required_keys"]:
        if key not in data:
            yield Hit(README, fm.first_line, f"front matter has no {key}:")
    sdk = data.get("sdk")
    if "sdk" in data and sdk != want_sdk:
        yield Hit(README, fm.line_of("sdk"), f"sdk is {sdk!r}; this Space must be sdk: {want_sdk}")
    if "app_port" in data:
        port = data["app_port"]
        if not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
            yield Hit(README, fm.line_of("app_port"), f"app_port {port!r} is not a port number")
    for key in ("colorFrom", "colorTo"):
        if key in data and data[key] not in _COLORS:
            yield Hit(
                README,
                fm.line_of(key),
                f"{key} {data[key]!r} is not one of {', '.join(sorted(_COLORS))}",
            )
    short = data.get("short_description")
    if isinstance(short, str) and len(short) > 60:
        yield Hit(
            README,
            fm.line_of("short_description"),
            f"short_description has {len(short)} characters; the Hub accepts at most 60",
        )
