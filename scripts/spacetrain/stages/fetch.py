"""The fetch stage: download the adapter at the exact commit the run pushed, and prove it.

An adapter repo's ``main`` moves with every run, so "the adapter" only means something
at a commit. Fetch downloads ``repo@sha`` (a branch or tag is resolved to its sha
first, and the sha is what gets recorded), then checks that the files make an adapter
and that ``run.json`` names the run the pipeline trained. A stale or foreign adapter
stops the pipeline (exit 1) before anything evaluates or promotes it.

The download lands in a temporary folder next to ``dest`` and replaces ``dest`` only
after the checks pass, so a failed fetch never leaves a half-written or unchecked
adapter where the next stage looks; a ``dest`` that spacetrain did not write is never
deleted.

Records in the state: ``adapter_repo``, ``adapter_revision`` (the sha) and
``adapter_dir``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacetrain.errors import CheckFailed, UsageError
from spacetrain.hub import Hub
from spacetrain.inputs import parse_json, writable_dir
from spacetrain.stages.progress import Progress, progress_for
from spacetrain.stages.state import PipelineState

DEFAULT_DEST = Path(".spacetrain") / "adapter"
MARKER = ".spacetrain-fetch.json"  # says "spacetrain wrote this folder": it may replace it
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
SHA = re.compile(r"^[0-9a-f]{40}$")


class StaleAdapter(CheckFailed):
    """The revision's adapter is not the one this pipeline's run produced (exit 1)."""


@dataclass(frozen=True)
class FetchResult:
    """Where the checked adapter is, and exactly which commit it came from."""

    repo: str
    revision: str
    run_id: str
    path: Path
    files: tuple[str, ...]
    requested: str  # the revision as given (a sha, branch or tag)

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object."""
        return {**self.__dict__, "path": str(self.path), "files": list(self.files)}


def resolve_sha(hub: Hub, repo: str, revision: str) -> str:
    """``revision`` as a commit sha; a branch or tag name is asked of the Hub."""
    if SHA.match(revision):
        return revision
    info = hub.call(f"resolve {repo}@{revision}", hub.api.model_info, repo, revision=revision)
    if not info.sha:
        raise UsageError(f"cannot resolve {repo}@{revision}: the Hub gave no commit sha")
    return info.sha


def check_adapter(folder: Path, run_id: str, where: str) -> dict[str, Any]:
    """The adapter files are there and ``run.json`` carries ``run_id``; returns run.json.

    Raises:
        StaleAdapter: a file is missing, run.json is unreadable, or names another run.
    """
    if not (folder / ADAPTER_CONFIG).is_file():
        raise StaleAdapter(f"{where} has no {ADAPTER_CONFIG}: not a PEFT adapter")
    if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        raise StaleAdapter(f"{where} has no adapter weights ({ADAPTER_WEIGHTS[0]})")
    manifest_path = folder / "run.json"
    if not manifest_path.is_file():
        raise StaleAdapter(
            f"{where} has no run.json, so nothing says which run made it: refusing it"
        )
    try:
        manifest = parse_json(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StaleAdapter(f"{where}: run.json is not readable JSON ({exc})") from None
    found = manifest.get("run_id") if isinstance(manifest, dict) else None
    if found != run_id:
        raise StaleAdapter(
            f"{where} was made by run {found!r}, not by run {run_id!r}: "
            "a stale or foreign adapter, refusing it"
        )
    return manifest


def _replaceable(dest: Path) -> bool:
    if not dest.exists():
        return True
    if not dest.is_dir():
        return False
    return (dest / MARKER).is_file() or not any(dest.iterdir())


def check_dest(dest: Path) -> Path:
    """``dest`` can take the download: checked before anything is asked of the Hub.

    Raises:
        UsageError: the working folder or above it, a file, under a file, not
            writable, or a folder spacetrain fetch did not write (exit 2).
    """
    if Path.cwd().resolve().is_relative_to(dest.resolve()):
        raise UsageError(f"--dest {dest} is the working folder or above it; name a subfolder")
    writable_dir(dest, "--dest")
    if not _replaceable(dest):
        raise UsageError(
            f"{dest} exists and was not written by spacetrain fetch; "
            "choose another --dest or remove it"
        )
    return dest


@dataclass(frozen=True)
class FetchOptions:
    """Which adapter to download, and where (``spacetrain fetch``'s flags over the state)."""

    repo: str
    revision: str  # a sha, branch or tag
    run_id: str  # the run its run.json must name
    dest: Path = DEFAULT_DEST

    @classmethod
    def build(
        cls,
        state: PipelineState,
        *,
        repo: str | None = None,
        revision: str | None = None,
        run_id: str | None = None,
        dest: str | Path | None = None,
    ) -> FetchOptions:
        """Each value given here, else what `train` recorded in ``state``.

        Raises:
            UsageError: a value neither given nor recorded (run `train` first) (exit 2).
        """
        return cls(
            repo=str(repo or state.require("adapter_repo", stage="train")),
            revision=str(revision or state.require("adapter_revision", stage="train")),
            run_id=str(run_id or state.require("run_id", stage="train")),
            dest=Path(dest) if dest else DEFAULT_DEST,
        )


def fetch_adapter(
    hub: Hub,
    options: FetchOptions,
    state: PipelineState,
    *,
    progress: Progress | None = None,
) -> FetchResult:
    """Download ``repo@revision`` into ``dest``, check it belongs to ``run_id``, record it.

    Raises:
        StaleAdapter: not an adapter, or not this run's (exit 1); ``dest`` is untouched.
        UsageError: ``dest`` is a folder spacetrain did not write; no such repo or
            revision (exit 2).
        HubUnreachable: the Hub kept failing (exit 3).
    """
    progress = progress or progress_for("fetch")
    repo, revision, run_id = options.repo, options.revision, options.run_id
    dest = check_dest(Path(options.dest))
    sha = resolve_sha(hub, repo, revision)
    if sha != revision:
        progress(f"{repo}@{revision} is commit {sha}")
    # Whatever happens next, an older download must not pass for this run's adapter.
    state.update(adapter_dir=None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        progress(f"downloading {repo}@{sha} ...")
        hub.call(
            f"download {repo}@{sha}",
            hub.api.snapshot_download,
            repo_id=repo,
            repo_type="model",
            revision=sha,
            local_dir=partial,
        )
        shutil.rmtree(partial / ".cache", ignore_errors=True)  # local_dir bookkeeping
        check_adapter(partial, run_id, f"{repo}@{sha}")
        files = tuple(sorted(p.relative_to(partial).as_posix() for p in _files(partial)))
        marker = {"repo": repo, "revision": sha, "run_id": run_id, "files": list(files)}
        (partial / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        partial.rename(dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    state.update(adapter_repo=repo, adapter_revision=sha, adapter_dir=str(dest.resolve()))
    progress(f"{repo}@{sha} (run {run_id}): {len(files)} file(s) in {dest}")
    return FetchResult(repo, sha, run_id, dest, files, revision)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


__all__ = [
    "DEFAULT_DEST",
    "MARKER",
    "FetchOptions",
    "FetchResult",
    "StaleAdapter",
    "check_adapter",
    "check_dest",
    "fetch_adapter",
    "resolve_sha",
]
