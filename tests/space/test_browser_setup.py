"""How the browser tests find a browser (no browser needed for these)."""

from __future__ import annotations

from pathlib import Path

from .browser import ENV_CHROMIUM, find_chromium, why_no_browser


def _exe(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_variable_wins_then_path_then_none(tmp_path: Path) -> None:
    chrome = _exe(tmp_path / "google-chrome")
    own = _exe(tmp_path / "my-chromium")
    assert find_chromium({ENV_CHROMIUM: str(own), "PATH": str(tmp_path)}) == str(own)
    assert find_chromium({"PATH": str(tmp_path)}) == str(chrome)  # google-chrome, as on GitHub
    missing = {ENV_CHROMIUM: str(tmp_path / "nope")}
    assert find_chromium(missing) is None
    assert why_no_browser(missing) == f"{ENV_CHROMIUM}={tmp_path / 'nope'} is not a file"
    assert "apt-get install chromium" in why_no_browser({})
