"""Upload ``space/`` to the Space root in one atomic commit, or in none when nothing changed.

Why not ``upload_folder``: with ``hf_xet`` installed it takes the pipelined path, which
may split a large folder into several commits, and it walks the folder with its own
ignore rules. Here the file list is exactly the one the linter reads (the policy's
``files.ignore`` plus a fixed skip list), the plan is computed against the head commit
(git blob ids, or the LFS sha256), and ``create_commit`` gets only what changed, with
``parent_commit`` so a concurrent push makes the commit fail instead of being
overwritten. An unchanged folder sends no commit at all, so the Space does not rebuild.

State written: ``space`` (the Space id) and ``space_commit`` (the commit whose tree is
``space/``: the new commit, or the head when nothing changed). `wait` reads them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.hf_api import RepoFile

from spacetrain.errors import CheckFailed, InputFileError
from spacetrain.hub import Hub
from spacetrain.lint import Policy, load_policy, run_rules
from spacetrain.lint.reporters import REPORTERS
from spacetrain.lint.space_folder import SpaceFolder, shown_path
from spacetrain.stages.progress import Progress, progress_for
from spacetrain.stages.setup import (
    SetupOptions,
    SetupResult,
    ensure_space,
    refuse_if_training,
    request_hardware,
    settle,
)
from spacetrain.stages.space_runtime import short
from spacetrain.stages.state import PipelineState

# Never uploaded, whatever the policy says (the policy's files.ignore lists them too).
ALWAYS_SKIPPED = (".git", "__pycache__")
SKIPPED_NAMES = (".DS_Store",)
SKIPPED_SUFFIXES = (".pyc",)
# Never deleted from the Space: the Hub's own first commit holds it (upload_folder agrees).
NEVER_DELETED = frozenset({".gitattributes"})


@dataclass(frozen=True)
class SyncOptions:
    """What `sync` needs to know.

    Attributes:
        space: the Space id (``owner/name``).
        space_dir: the local folder to mirror (``space/``).
        policy: the lint policy file; ``None`` or a missing file means the defaults.
        setup: what the Space should look like (secret, variables, hardware, visibility;
            :mod:`spacetrain.stages.setup`); ``None``: the hardware is left alone and a
            missing Space is created private with nothing set.
        source: the commit of this repository, named in the commit message.
        dirty: whether ``space_dir`` has changes git has not committed (said in the message).
    """

    space: str
    space_dir: Path
    policy: Path | None = None
    setup: SetupOptions | None = None
    source: str | None = None
    dirty: bool = False

    @classmethod
    def from_checkout(
        cls,
        root: Path,
        *,
        space: str,
        space_dir: Path,
        policy: Path | None = None,
        setup: SetupOptions | None = None,
    ) -> SyncOptions:
        """Options whose ``source`` and ``dirty`` come from the git checkout at ``root``."""
        source = source_commit(root)
        return cls(
            space=space,
            space_dir=space_dir,
            policy=policy,
            setup=setup,
            source=source,
            dirty=source is not None and uncommitted(root, space_dir),
        )


@dataclass(frozen=True)
class SyncPlan:
    """The difference between the local folder and the Space's head commit."""

    head: str
    upload: tuple[str, ...]  # new or changed files, relative to the Space root
    delete: tuple[str, ...]  # files the Space has and the folder does not
    unchanged: tuple[str, ...]

    @property
    def empty(self) -> bool:
        """Nothing to commit: the head's tree already is the folder."""
        return not self.upload and not self.delete


@dataclass(frozen=True)
class SyncResult:
    """What `sync` did.

    Attributes:
        space: the Space id.
        commit: the Space commit that holds the folder (new, or the unchanged head).
        changed: whether a commit was made.
        created: whether the Space was created.
        uploaded, deleted: the files the commit added or changed, and removed.
        hardware: the flavor requested, when a change was requested.
        setup: what set-up changed (variables, secret, sleep time, hardware).
    """

    space: str
    commit: str
    changed: bool
    created: bool
    uploaded: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    hardware: str | None = None
    files: tuple[str, ...] = field(default=())
    setup: SetupResult | None = None

    def to_json(self) -> dict[str, object]:
        """The result as a JSON object."""
        return {
            "space": self.space,
            "commit": self.commit,
            "changed": self.changed,
            "created": self.created,
            "uploaded": list(self.uploaded),
            "deleted": list(self.deleted),
            "hardware_requested": self.hardware,
            "files": list(self.files),
            "setup": self.setup.to_json() if self.setup else None,
        }


def _skipped(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return (
        any(part in ALWAYS_SKIPPED for part in parts[:-1])
        or parts[-1] in SKIPPED_NAMES
        or parts[-1].endswith(SKIPPED_SUFFIXES)
    )


def load_lint_policy(path: Path | None) -> Policy:
    """The policy file when it exists, else the built-in defaults."""
    if path is None or not path.is_file():
        return Policy.defaults()
    return load_policy(path)


def local_files(space_dir: Path, policy: Policy) -> SpaceFolder:
    """The folder as the linter reads it (same ignore rules), minus the fixed skip list."""
    folder = SpaceFolder.read(space_dir, policy)
    folder.files = {rel: f for rel, f in folder.files.items() if not _skipped(rel)}
    return folder


def lint_gate(folder: SpaceFolder, *, progress: Progress) -> None:
    """Refuse a folder with lint errors: the findings on stderr, then exit 1."""
    report = run_rules(folder)
    if report.errors:
        text = REPORTERS["text"](report)
        for line in text.rstrip("\n").splitlines():
            progress(line)
        raise CheckFailed(
            f"{folder.shown_root}/ has {report.errors} lint error(s); nothing was synced "
            f"(see `spacetrain lint {folder.shown_root}`)"
        )
    if report.warnings:
        progress(f"lint: {report.summary()}")


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob: what the Hub's tree reports for a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _same(remote: RepoFile, path: Path) -> bool:
    data = path.read_bytes()
    if remote.lfs is not None:
        return hashlib.sha256(data).hexdigest() == remote.lfs.sha256
    return git_blob_id(data) == remote.blob_id


def plan(hub: Hub, space: str, space_dir: Path, files: list[str]) -> SyncPlan:
    """Compare ``files`` (relative to ``space_dir``) with the Space's head commit."""
    info = hub.call(f"read Space {space}", hub.api.repo_info, space, repo_type="space")
    head = str(info.sha)
    tree = hub.call(
        f"list the files of Space {space}",
        lambda: list(
            hub.api.list_repo_tree(space, repo_type="space", revision=head, recursive=True)
        ),
    )
    remote = {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}
    upload, unchanged = [], []
    for rel in files:
        entry = remote.get(rel)
        try:
            same = entry is not None and _same(entry, space_dir / rel)
        except OSError as exc:
            raise InputFileError(space_dir / rel, f"cannot read: {exc.strerror or exc}") from None
        (unchanged if same else upload).append(rel)
    wanted = set(files)
    delete = sorted(p for p in remote if p not in wanted and p not in NEVER_DELETED)
    return SyncPlan(head, tuple(upload), tuple(delete), tuple(unchanged))


def source_commit(root: Path) -> str | None:
    """This repository's commit: ``GITHUB_SHA`` on Actions, else ``git rev-parse HEAD``."""
    sha = os.environ.get("GITHUB_SHA", "").strip()
    if sha:
        return sha
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def uncommitted(root: Path, space_dir: Path) -> bool:
    """Whether git sees uncommitted changes under ``space_dir`` (False when unknown)."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--", str(space_dir)],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def commit_message(shown: str, source: str | None, *, dirty: bool = False) -> tuple[str, str]:
    """Title and description of the sync commit: they name the commit of this repository."""
    if source is None:
        return f"Sync {shown}/ (no git commit known)", "Uploaded by `spacetrain sync`."
    extra = " + uncommitted changes" if dirty else ""
    lines = [f"Uploaded by `spacetrain sync` from commit {source}{extra}."]
    server, repo = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    if server and repo:
        lines.append(f"{server}/{repo}/commit/{source}")
    run_id = os.environ.get("GITHUB_RUN_ID")
    if server and repo and run_id:
        lines.append(f"{server}/{repo}/actions/runs/{run_id}")
    return f"Sync {shown}/ from {source[:12]}{extra}", "\n".join(lines)


def _commit(
    hub: Hub, options: SyncOptions, files: list[str], shown: str, *, guard: bool
) -> tuple[SyncPlan, str]:
    """Plan against the head and commit what changed; retried as a whole.

    A retry re-plans from the then-current head: when a lost answer hid a commit that
    did land, the new plan is empty and the head is that commit. With ``guard``, a
    commit (which rebuilds and restarts the Space) is refused while a run trains.
    """
    root = options.space_dir
    label = root.resolve().name or "space"  # the commit names the folder, not this machine
    title, description = commit_message(label, options.source, dirty=options.dirty)

    def attempt() -> tuple[SyncPlan, str]:
        p = plan(hub, options.space, root, files)
        if p.empty:
            return p, p.head
        if guard:
            refuse_if_training(hub, options.space, "a commit")
        ops: list[CommitOperationAdd | CommitOperationDelete] = [
            CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(root / rel))
            for rel in p.upload
        ]
        ops += [CommitOperationDelete(path_in_repo=rel) for rel in p.delete]
        info = hub.api.create_commit(
            options.space,
            operations=ops,
            repo_type="space",
            commit_message=title,
            commit_description=description,
            parent_commit=p.head,
        )
        return p, str(info.oid)

    return hub.call(f"commit {shown}/ to Space {options.space}", attempt)


def sync(
    hub: Hub,
    options: SyncOptions,
    state: PipelineState | None = None,
    *,
    progress: Progress | None = None,
) -> SyncResult:
    """Lint the folder, set the Space up, commit what changed, request the hardware.

    Returns:
        A :class:`SyncResult`; ``state`` (when given) records ``space`` and ``space_commit``.

    Raises:
        CheckFailed: the folder has lint errors, or the Space is training a run that a
            change would end; nothing was sent (exit 1).
        InputFileError: the folder is missing or a file cannot be read (exit 2).
        AuthError, UsageError: the Hub refused (bad token, no access) (exit 2).
        HubUnreachable: the Hub kept failing until the retry deadline (exit 3).
    """
    progress = progress or progress_for("sync")
    space = options.space
    policy = load_lint_policy(options.policy)
    folder = local_files(options.space_dir, policy)
    shown = shown_path(options.space_dir).rstrip("/")
    lint_gate(folder, progress=progress)
    files = sorted(folder.files)
    if not files:
        raise InputFileError(shown, "has no files to upload")
    progress(f"{shown}/: {len(files)} file(s), lint clean")

    setup = options.setup or SetupOptions(space)
    done = ensure_space(hub, setup, progress=progress, require_token=options.setup is not None)
    if done is None:  # the Space exists: settle its settings before the commit builds it
        done = SetupResult(space)
        if options.setup:
            settle(hub, setup, done, progress=progress)

    p, commit = _commit(hub, options, files, shown, guard=not done.created)
    changed = not p.empty
    if changed:
        progress(
            f"committed {short(commit)} on top of {short(p.head)}: "
            f"{len(p.upload)} file(s) added or changed, {len(p.delete)} deleted",
        )
        for rel in p.upload:
            progress(f"  + {rel}")
        for rel in p.delete:
            progress(f"  - {rel}")
    else:
        progress(f"{shown}/ is unchanged: no commit, the Space stays at {short(commit)}")
    request_hardware(hub, setup, done, progress=progress)

    if state is not None:
        state.update(space=space, space_commit=commit)
    return SyncResult(
        space=space,
        commit=commit,
        changed=changed,
        created=done.created,
        uploaded=p.upload,
        deleted=p.delete,
        hardware=done.hardware,
        files=tuple(files),
        setup=done if options.setup else None,
    )


__all__ = [
    "SyncOptions",
    "SyncPlan",
    "SyncResult",
    "commit_message",
    "git_blob_id",
    "lint_gate",
    "load_lint_policy",
    "local_files",
    "plan",
    "source_commit",
    "sync",
    "uncommitted",
]
