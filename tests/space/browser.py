"""A real browser for the UI tests: Playwright driving the machine's own Chromium.

Playwright's downloaded browsers are never used (``playwright install`` needs the
internet, and a second Chromium would drift from the one CI installs): the set-up finds
Debian's ``chromium`` or Google Chrome (GitHub's runners) and skips, saying why, when
there is none. ``SPACETRAIN_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ENV_CHROMIUM = "SPACETRAIN_CHROMIUM"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
PATHS = ("/usr/bin/chromium", "/usr/lib/chromium/chromium", "/opt/google/chrome/chrome")
# Headless in a container as root, on a closed network: no sandbox (root), no GPU, and
# none of Chromium's background traffic (its refused connections slow every page down).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def find_chromium(env: dict[str, str] | None = None) -> str | None:
    """The Chromium (or Chrome) binary to drive, or None when the machine has none."""
    env = dict(os.environ) if env is None else env
    configured = env.get(ENV_CHROMIUM, "").strip()
    if configured:
        return configured if Path(configured).is_file() else None
    for name in NAMES:
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return found
    return next((p for p in PATHS if Path(p).is_file()), None)


def why_no_browser(env: dict[str, str] | None = None) -> str:
    """The skip reason: what was looked for, and how to get one."""
    env = dict(os.environ) if env is None else env
    configured = env.get(ENV_CHROMIUM, "").strip()
    if configured:
        return f"{ENV_CHROMIUM}={configured} is not a file"
    return (
        f"no Chromium found (looked for {', '.join(NAMES)} on PATH and {', '.join(PATHS)}); "
        f"install one (Debian: apt-get install chromium) or set {ENV_CHROMIUM}"
    )
