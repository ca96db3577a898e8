"""Drift test: the test environment runs the versions space/Dockerfile pins.

`make setup` installs with `spacetrain pins space/Dockerfile` as constraints; this test
fails when the installed packages no longer match (someone bumped a pin and the venv was
not rebuilt, or installed something by hand). torch is compared by version number: the
Space runs a CUDA build, the tests a `+cpu` build of the same release.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "space" / "Dockerfile"
# What the Space trains and serves with; each must be pinned in the Dockerfile.
STACK = {
    "torch",
    "transformers",
    "peft",
    "trl",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "huggingface-hub",
    "gradio",
    "gradio-client",
}


def pins_of(dockerfile: Path) -> dict[str, str]:
    """Run `spacetrain pins` as a user would and read its constraints."""
    out = subprocess.run(
        [sys.executable, "-m", "spacetrain", "pins", str(dockerfile)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = {}
    for line in out.splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, version = requirement.split("==")
            pins[name.strip()] = version.strip()
    return pins


def drift(pins: dict[str, str]) -> list[str]:
    """One sentence per package whose installed version differs from its pin."""
    problems = []
    for name, pinned in sorted(pins.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}=={pinned} is pinned but not installed")
            continue
        # Drop the local label (+cpu, +cu126): same release, different build.
        if Version(installed).public != Version(pinned).public:
            problems.append(f"{name}: installed {installed}, space/Dockerfile pins {pinned}")
    return problems


def test_installed_versions_match_the_dockerfile() -> None:
    pins = pins_of(DOCKERFILE)
    assert set(pins) >= STACK, f"not pinned in space/Dockerfile: {sorted(STACK - set(pins))}"
    problems = drift(pins)
    assert not problems, "rebuild the venv (make clean setup):\n" + "\n".join(problems)


def test_a_drifted_pin_is_reported(tmp_path: Path) -> None:
    text = DOCKERFILE.read_text()
    assert "transformers==5.24.0" in text and "torch==2.13.0" in text
    drifted = tmp_path / "Dockerfile"
    drifted.write_text(text.replace("transformers==5.24.0", "transformers==5.23.0"))
    problems = drift(pins_of(drifted))
    assert problems == ["transformers: installed 5.24.0, space/Dockerfile pins 5.23.0"]
