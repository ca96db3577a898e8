"""README front matter: read it, and check a Space's configuration in it.

``validate-yaml`` only refuses what the Hub refuses at upload time (YAML that does not
parse, or is not a mapping); a Space's own settings (``sdk``, ``app_port``,
``app_file``) are checked when it builds, which is where the Hub reports
CONFIG_ERROR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

SPACE_SDKS = ("gradio", "docker", "static", "streamlit")


class FrontMatterError(ValueError):
    """The README's YAML header does not parse or is not a mapping."""


def front_matter(text: str) -> dict[str, Any]:
    """The YAML mapping between the leading ``---`` lines ({} when there is none)."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        raise FrontMatterError("README.md front matter: no closing '---' line") from None
    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise FrontMatterError(
            f"README.md front matter is not valid YAML{where}: {problem}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FrontMatterError("README.md front matter must be a YAML mapping")
    return data


@dataclass(frozen=True)
class SpaceConfig:
    """What a Space's README says about how to run it."""

    sdk: str
    app_file: str | None
    app_port: int
    title: str


def space_config(readme: str | None) -> SpaceConfig:
    """The Space settings in a README, or FrontMatterError naming the bad one."""
    if readme is None:
        raise FrontMatterError("Missing configuration in README.md: the Space has no README.md")
    data = front_matter(readme)
    if not data:
        raise FrontMatterError("Missing configuration in README.md: no YAML front matter")
    sdk = data.get("sdk")
    if sdk not in SPACE_SDKS:
        raise FrontMatterError(
            f"README.md: sdk must be one of {', '.join(SPACE_SDKS)}, got {sdk!r}"
        )
    port = data.get("app_port", 7860)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise FrontMatterError(f"README.md: app_port must be a port number, got {port!r}")
    app_file = data.get("app_file")
    if app_file is not None and (not isinstance(app_file, str) or not app_file.strip()):
        raise FrontMatterError(f"README.md: app_file must be a path, got {app_file!r}")
    title = data.get("title")
    return SpaceConfig(sdk, app_file, port, str(title) if title is not None else "")


__all__ = ["SPACE_SDKS", "FrontMatterError", "SpaceConfig", "front_matter", "space_config"]
