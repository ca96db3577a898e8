"""Fixtures for the linter tests: Space folders assembled from fixtures, tiny wheels."""

from __future__ import annotations

import base64
import hashlib
import random
import shutil
import string
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import yaml

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BASE = FIXTURES / "base"
CASE_FILE = "_case.yaml"


def fake_secret(prefix: str, length: int, seed: int) -> str:
    """A token-shaped random string, made at test time so no token is ever committed."""
    rng = random.Random(seed)
    return prefix + "".join(rng.choice(string.ascii_letters) for _ in range(length))


SUBSTITUTIONS = {
    "@@HF_TOKEN@@": fake_secret("hf_", 34, 1),
    "@@ORG_TOKEN@@": fake_secret("api_org_", 34, 2),
    "@@SECRET@@": fake_secret("", 24, 3),
    # real-shaped, with "xxx" among its letters: still a token, not a placeholder
    "@@HF_TOKEN_XXX@@": fake_secret("hf_", 17, 4) + "xxx" + fake_secret("", 14, 5),
}


def assemble(case: Path, dest: Path) -> dict:
    """Copy the base Space to ``dest``, overlay the case's files, apply its ``delete``."""
    meta = yaml.safe_load((case / CASE_FILE).read_text()) or {}
    shutil.copytree(BASE, dest)
    for source in case.rglob("*"):
        if source.is_dir() or source.name == CASE_FILE:
            continue
        target = dest / source.relative_to(case)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    for name in meta.get("delete", []):
        (dest / name).unlink()
    for path in dest.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "surrogateescape")
            if "@@" in text:
                for key, value in SUBSTITUTIONS.items():
                    text = text.replace(key, value)
                path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return meta


def write_wheel(folder: Path, name: str, version: str, requires: Iterable[str] = ()) -> Path:
    """A minimal pure-Python wheel (METADATA, WHEEL, RECORD) that pip accepts."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{dist}/__init__.py": b"",
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: spacetrain-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


@pytest.fixture
def make_wheels(tmp_path: Path) -> Callable[[list[dict]], Path]:
    """Build a folder of tiny wheels from ``[{name, version, requires}]``."""

    def make(specs: list[dict]) -> Path:
        folder = tmp_path / "wheels"
        for spec in specs:
            write_wheel(folder, spec["name"], spec["version"], spec.get("requires", ()))
        return folder

    return make


@pytest.fixture
def space(tmp_path: Path) -> Callable[..., Path]:
    """A copy of the base Space with files replaced (None deletes): ``space(**{"app.py": s})``."""

    def make(**files: str | bytes | None) -> Path:
        dest = tmp_path / "space"
        if not dest.exists():
            shutil.copytree(BASE, dest)
        for name, content in files.items():
            target = dest / name
            if content is None:
                target.unlink()
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        return dest

    return make
