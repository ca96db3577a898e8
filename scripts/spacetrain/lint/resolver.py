"""Ask pip's resolver whether the Dockerfile's pins install together (``lint --resolve``).

This is the only part of the linter that runs a program and may use the network, so it
runs before the rules and hands them a :class:`Resolution`; the ``pins-unresolvable``
rule only reads it. pip is asked for a dry run for the image's Python version and a
manylinux platform, binary wheels only, so nothing is built or installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name

from spacetrain.dockerfile import Dockerfile, split_reference
from spacetrain.errors import InfraError, StageTimeout
from spacetrain.lint.policy import Policy

_NETWORK = re.compile(
    r"Failed to establish a new connection|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|Connection refused|Could not fetch URL|"
    r"ProxyError|Max retries exceeded|Read timed out|ConnectTimeout|SSLError",
)
_UBUNTU_PYTHON = {"20.04": "3.8", "22.04": "3.10", "24.04": "3.12", "26.04": "3.14"}
_DEBIAN_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}


_INDEX_VARIABLES = {
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CERT", "PIP_CLIENT_CERT",
    "PIP_PROXY", "PIP_DEFAULT_TIMEOUT",
}  # fmt: skip
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}


def platform_tags(platform: str) -> list[str]:
    """``manylinux_2_28_x86_64`` and every older manylinux tag a glibc-2.28 system runs.

    pip (23.x) takes ``--platform`` literally, so without this a ``manylinux1`` wheel
    (torch 2.1.0's) would look uninstallable on a ``manylinux_2_28`` platform.
    """
    match = _MANYLINUX.match(platform)
    if not match:
        return [platform]
    major, minor, arch = int(match.group(1)), int(match.group(2)), match.group(3)
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)] if major == 2 else []
    tags = tags or [platform]
    for legacy, (lmajor, lminor) in _LEGACY.items():
        if (major, minor) >= (lmajor, lminor) and arch in {"x86_64", "i686", "aarch64"}:
            tags.append(f"{legacy}_{arch}")
    return tags


@dataclass(frozen=True)
class Resolution:
    """pip's verdict on the pinned set."""

    ok: bool
    reason: str  # pip's words, one line; empty when ok
    culprits: tuple[str, ...]  # canonical names pip blamed
    python_version: str
    platform: str
    requirements: tuple[str, ...]  # what was asked
    installed: int  # packages in the resolved set (0 when not ok)
    left_out: tuple[str, ...] = ()  # torch packages whose index was unreachable
    note: str = ""


def image_python(doc: Dockerfile) -> str | None:
    """The Python the final stage runs: its base image's, an ``apt-get install python3.X``
    or a ``uv python install 3.X.Y`` (a base without Python, such as nvidia/cuda)."""
    version = None
    stage = doc.stages[-1]
    image, tag, _ = split_reference(stage.reference)
    name = image.rsplit("/", 1)[-1]
    if name == "python" and tag:
        match = re.match(r"(\d+\.\d+)", tag)
        version = match.group(1) if match else None
    elif tag:
        for release, py in _UBUNTU_PYTHON.items():
            if f"ubuntu{release}" in tag or (name == "ubuntu" and tag.startswith(release)):
                version = py
        for codename, py in _DEBIAN_PYTHON.items():
            if codename in tag:
                version = version or py
    for command in doc.commands:
        if command.stage != stage.index:
            continue
        texts = [w.text for w in command.argv]
        if texts[:1] in (["apt-get"], ["apt"]) and "install" in texts:
            for text in texts:
                match = re.fullmatch(r"python(3\.\d+)(-dev|-venv)?", text)
                if match:
                    version = match.group(1)
        elif texts[:1] == ["uv"]:
            version = _uv_python(texts) or version
    return version


def _uv_python(texts: list[str]) -> str | None:
    """``uv python install 3.11.14`` / ``uv venv --python 3.11.14``: the minor, "3.11"."""
    wanted = None
    if texts[1:3] == ["python", "install"]:
        wanted = next((t for t in texts[3:] if not t.startswith("-")), None)
    elif texts[1:2] == ["venv"]:
        for i, text in enumerate(texts):
            if text in ("--python", "-p") and i + 1 < len(texts):
                wanted = texts[i + 1]
            elif text.startswith("--python="):
                wanted = text.partition("=")[2]
    match = re.match(r"(?:cpython-|python)?(3\.\d+)", wanted or "")
    return match.group(1) if match else None


def _pins(doc: Dockerfile) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(requirements, index URLs, name -> index URLs of its install)."""
    requirements: list[str] = []
    urls: list[str] = []
    by_name: dict[str, list[str]] = {}
    for install in doc.pip_installs():
        own = [w.text for w in (*install.index_urls, *install.extra_index_urls)]
        urls += [u for u in own if u not in urls]
        for req in install.requirements:
            if req.kind != "requirement" or req.pinned_version is None or req.name is None:
                continue  # pip-unpinned reports these; the resolver checks the exact pins
            extras = f"[{','.join(req.extras)}]" if req.extras else ""
            text = f"{req.name}{extras}=={req.pinned_version}"
            if text not in requirements:  # two versions of one name: pip says it conflicts
                requirements.append(text)
            by_name.setdefault(req.name, own)
    return requirements, urls, by_name


def resolve_pins(
    doc: Dockerfile,
    policy: Policy,
    *,
    find_links: list[str] | None = None,
    python: str = sys.executable,
) -> Resolution:
    """Run pip's resolver over the Dockerfile's exact pins.

    With ``find_links`` the run is offline (``--no-index``) and ignores pip's own
    configuration, so the answer depends only on those folders. Online, pip's index
    configuration is kept (it may be a mirror) and the Dockerfile's index URLs are
    added; when only the PyTorch index is unreachable, torch and friends are left out
    and the rest is still checked.

    Raises:
        InfraError: the package index could not be reached.
        StageTimeout: pip did not finish within ``resolve.timeout_s``.
    """
    settings = policy["resolve"]
    version = settings["python_version"] or image_python(doc) or "3.11"
    platform = settings["platform"]
    requirements, urls, by_name = _pins(doc)

    def verdict(run: _Run, asked: list[str], **extra: object) -> Resolution:
        return Resolution(
            run.ok,
            run.reason,
            run.culprits,
            version,
            platform,
            tuple(asked),
            run.installed,
            **extra,  # type: ignore[arg-type]
        )

    if not requirements:
        return Resolution(True, "", (), version, platform, (), 0, note="no exact pins to check")
    first = _run(python, requirements, urls, version, platform, find_links, settings)
    if first.ok or find_links or not first.unreachable:
        missed = [u for u in urls if _mentioned(u, first.unreachable_text)]
        note = (
            f"{', '.join(missed)} unreachable; its packages were taken from the other index"
            if missed
            else ""
        )
        return verdict(first, requirements, note=note)
    torch_names = {canonicalize_name(n) for n in policy["pip"]["torch_packages"]}
    dropped = sorted(n for n in by_name if n in torch_names)
    bad_urls = sorted({u for n in dropped for u in by_name[n]})
    if not dropped or not any(_mentioned(u, first.unreachable_text) for u in bad_urls):
        raise InfraError(f"pip could not reach the package index: {first.reason}")
    kept = [r for r in requirements if canonicalize_name(re.split(r"[\[=]", r)[0]) not in dropped]
    rest = [u for u in urls if u not in bad_urls]
    second = _run(python, kept, rest, version, platform, None, settings)
    if second.unreachable:
        raise InfraError(f"pip could not reach the package index: {second.reason}")
    note = f"left out {', '.join(dropped)}: {', '.join(bad_urls)} is unreachable"
    return verdict(second, kept, left_out=tuple(dropped), note=note)


def _mentioned(url: str, text: str) -> bool:
    """Whether pip's network warnings name ``url`` (they often show only its path)."""
    path = urlsplit(url).path.rstrip("/")
    return url.rstrip("/") in text or bool(path and f"{path}/" in text)


@dataclass(frozen=True)
class _Run:
    ok: bool
    reason: str
    culprits: tuple[str, ...]
    installed: int
    unreachable: bool
    unreachable_text: str


def _run(
    python: str,
    requirements: list[str],
    urls: list[str],
    version: str,
    platform: str,
    find_links: list[str] | None,
    settings: dict[str, object],
) -> _Run:
    # pip's config files and most PIP_* variables describe *this* machine (a constraints
    # file, a local wheel folder), not the image: leave them out. Online, the index
    # variables stay so a mirror still works.
    keep = set() if find_links else _INDEX_VARIABLES
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in keep}
    env["PIP_CONFIG_FILE"] = os.devnull
    command = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    command += ["--disable-pip-version-check", "--no-input", "--retries", "1"]
    command += ["--only-binary=:all:", "--python-version", version]
    for tag in platform_tags(platform):
        command += ["--platform", tag]
    if find_links:
        command += ["--no-index"]
        for folder in find_links:
            command += ["--find-links", str(Path(folder).resolve())]
    else:
        for url in urls:
            command += ["--extra-index-url", url]
    with tempfile.TemporaryDirectory(prefix="spacetrain-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        command += ["--target", str(Path(tmp) / "target"), "--report", str(report)]
        try:
            done = subprocess.run(
                [*command, *requirements],
                capture_output=True,
                text=True,
                env=env,
                timeout=float(settings["timeout_s"]),  # type: ignore[arg-type]
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StageTimeout(
                f"pip's resolver did not finish within {settings['timeout_s']} s"
            ) from None
        installed = 0
        if done.returncode == 0 and report.is_file():
            installed = len(json.loads(report.read_text()).get("install", []))
    output = f"{done.stdout}\n{done.stderr}"
    network = [line for line in output.splitlines() if _NETWORK.search(line)]
    if done.returncode == 0:
        return _Run(True, "", (), installed, False, "\n".join(network))
    reason, culprits = explain(output)
    unreachable = bool(network) and "conflicting dependencies" not in output
    return _Run(False, reason, culprits, 0, unreachable, "\n".join(network))


_CANNOT = re.compile(r"Cannot install (.+?) because these package versions have conflicting")
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
_REQ_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def explain(output: str) -> tuple[str, tuple[str, ...]]:
    """pip's reason in one line, and the canonical names it blames."""
    lines = output.splitlines()
    culprits: list[str] = []
    reason = ""
    match = _CANNOT.search(output)
    if match:
        for part in re.split(r",\s*|\s+and\s+", match.group(1)):
            name = _REQ_NAME.match(part.strip())
            if name:
                culprits.append(canonicalize_name(name.group(1)))
        cause: list[str] = []
        if "The conflict is caused by:" in lines:
            start = lines.index("The conflict is caused by:") + 1
            for line in lines[start:]:
                if not line.startswith("    "):
                    break
                cause.append(line.strip())
        requested = [
            canonicalize_name(m.group(1))
            for m in (re.match(r"The user requested ([A-Za-z0-9._-]+)", c) for c in cause)
            if m
        ]
        culprits = list(dict.fromkeys([*requested, *culprits]))  # the user's own pins first
        reason = f"cannot install {match.group(1)} together"
        if cause:
            reason += ": " + "; ".join(cause)
        return reason, tuple(culprits)
    match = _NO_MATCH.search(output)
    if match:
        name = _REQ_NAME.match(match.group(1))
        if name:
            culprits.append(canonicalize_name(name.group(1)))
        found = re.search(r"Could not find a version that satisfies the requirement (.+)", output)
        detail = found.group(1).strip() if found else match.group(1)
        return f"no wheel matches {detail}", tuple(culprits)
    errors = [line.removeprefix("ERROR: ").strip() for line in lines if line.startswith("ERROR")]
    return (errors[-1] if errors else (lines[-1].strip() if lines else "pip failed")), ()
