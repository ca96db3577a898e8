"""Drift test: the test environment runs the versions space/Dockerfile pins.

`make setup` installs with `spacetrain pins space/Dockerfile` as constraints; this test
fails when the installed packages no longer match (someone bumped a pin and the venv was
not rebuilt, or installed something by hand). torch is compared by version number: the
Space runs a CUDA build, the tests a `+cpu` build of the same release.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
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


@pytest.mark.e2e
def test_installed_versions_match_the_dockerfile() -> None:
    pins = pins_of(DOCKERFILE)
    assert set(pins) >= STACK, f"not pinned in space/Dockerfile: {sorted(STACK - set(pins))}"
    problems = drift(pins)
    assert not problems, "rebuild the venv (make clean setup):\n" + "\n".join(problems)


@pytest.mark.e2e
def test_a_drifted_pin_is_reported(tmp_path: Path) -> None:
    text = DOCKERFILE.read_text()
    assert "transformers==5.24.0" in text and "torch==2.13.0" in text
    drifted = tmp_path / "Dockerfile"
    drifted.write_text(text.replace("transformers==5.24.0", "transformers==5.23.0"))
    problems = drift(pins_of(drifted))
    assert problems == ["transformers: installed 5.24.0, space/Dockerfile pins 5.23.0"]


def test_the_image_runs_the_python_minor_the_tests_and_workflows_run() -> None:
    """space/Dockerfile's Python (uv installs it on the CUDA base), the Python running
    these tests and every workflow's setup-python: one minor, or a test here passes on a
    Python the Space never runs."""
    from spacetrain.dockerfile import Dockerfile
    from spacetrain.lint.resolver import image_python

    image = image_python(Dockerfile.parse(DOCKERFILE.read_text()))
    tests = f"{sys.version_info.major}.{sys.version_info.minor}"
    workflows = REPO / ".github" / "workflows"
    pinned = {
        f"{path.name}: {version}"
        for path in sorted(workflows.glob("*.yml"))
        for version in re.findall(r'python-version:\s*"?([0-9.]+)"?', path.read_text())
    }
    assert pinned, "no workflow sets python-version"
    assert image == tests, f"space/Dockerfile installs Python {image}, the tests run {tests}"
    wrong = sorted(p for p in pinned if p.rsplit(": ", 1)[1] != image)
    assert not wrong, f"space/Dockerfile installs Python {image}; workflows set {wrong}"


def test_the_base_image_is_cuda_pinned_by_digest_matching_torchs_cuda() -> None:
    """The seed's rule (a pinned nvidia/cuda base) and the driver rule: the image's CUDA
    minor is torch's wheel's (cu126 -> 12.6), never newer."""
    from spacetrain.dockerfile import Dockerfile

    doc = Dockerfile.parse(DOCKERFILE.read_text())
    final = doc.stages[-1]
    assert final.image == "nvidia/cuda" and final.digest and final.digest.startswith("sha256:")
    assert final.tag and "-base-" in final.tag, "the smallest flavor: base"
    cuda = re.match(r"(\d+)\.(\d+)", final.tag)
    index = re.search(r"download\.pytorch\.org/whl/cu(\d+)(\d)\b", DOCKERFILE.read_text())
    assert cuda and index, "a CUDA tag and torch's cuXYZ index"
    assert cuda.groups() == index.groups(), f"image CUDA {final.tag} vs torch cu{index.group(0)}"
