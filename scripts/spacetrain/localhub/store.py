"""Repos on disk: one bare git repository per repo, so shas, history and tags are real.

Nothing here knows about HTTP. Writes go through ``git fast-import`` (one process per
commit, whatever the number of files); reads go through one long-lived
``git cat-file --batch`` per repo, and trees are listed once per commit with
``git ls-tree`` and kept (a commit never changes). localhub is the only writer of its
root, so branch and tag heads are kept in memory and written through to git.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from spacetrain.localhub.card import SPACE_SDKS, FrontMatterError, front_matter
from spacetrain.localhub.errors import (
    BadRequest,
    Conflict,
    EntryNotFound,
    HubError,
    PreconditionFailed,
    RepoNotFound,
    RevisionNotFound,
    Unprocessable,
)

REPO_TYPES = ("model", "dataset", "space")
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
META_FILE = "localhub.json"
DEFAULT_BRANCH = "main"

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_REF_NAME = re.compile(r"^(?!.*\.\.)(?!/)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<![/.])$")
_TREE_CACHE_SIZE = 256
_COMMIT_CACHE_SIZE = 4096

# What the Hub writes into a new repo's first commit, so a fresh repo looks familiar.
_LFS_EXTENSIONS = (
    "7z arrow bin bz2 ckpt ftz gz h5 joblib lfs mlmodel model msgpack npy npz onnx ot "
    "parquet pb pickle pkl pt pth rar safetensors tar tflite tgz wasm xz zip zst"
)
_GITATTRIBUTES = (
    "".join(f"*.{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in _LFS_EXTENSIONS.split())
    + "*tfevents* filter=lfs diff=lfs merge=lfs -text\n"
)


def _space_readme(name: str, sdk: str) -> str:
    return (
        f"---\ntitle: {name}\nemoji: 🚀\ncolorFrom: blue\ncolorTo: green\nsdk: {sdk}\n"
        "pinned: false\n---\n\n"
        "Check out the configuration reference at "
        "https://huggingface.co/docs/hub/spaces-config-reference\n"
    )


def now_iso(ts: float | None = None) -> str:
    """An ISO-8601 UTC time with milliseconds and a ``Z``, as the Hub writes them."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def validate_repo_id(repo_id: str) -> tuple[str, str]:
    """Split ``namespace/name`` and check both parts the way the Hub does."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) for p in parts):
        raise BadRequest(f"Invalid repo id {repo_id!r}: expected 'namespace/name'")
    if any("--" in p or ".." in p for p in parts):
        raise BadRequest(f"Invalid repo id {repo_id!r}: '--' and '..' are forbidden")
    return parts[0], parts[1]


def validate_path(path: str) -> str:
    """A repo-relative POSIX path without ``..``, empty parts, ``.git`` or control chars."""
    if not path or path.startswith("/") or any(ord(c) < 32 for c in path):
        raise BadRequest(f"Invalid path in repo: {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise BadRequest(f"Invalid path in repo: {path!r}")
    return path


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1 of ``data``: the Hub's oid and ETag for a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One file or folder of a tree."""

    path: str
    kind: str  # "file" | "directory"
    oid: str
    size: int = 0


@dataclass(frozen=True)
class Commit:
    """A commit object, parsed."""

    sha: str
    tree: str
    parents: tuple[str, ...]
    author: str
    timestamp: int
    title: str
    message: str

    @property
    def date(self) -> str:
        return now_iso(self.timestamp)


@dataclass(frozen=True)
class Operation:
    """One line of a commit: add a file, delete a file, or delete a folder."""

    kind: str  # "file" | "deletedFile" | "deletedFolder"
    path: str
    content: bytes = b""


@dataclass(frozen=True)
class Snapshot:
    """The files of one commit: path -> Entry, and the folders they imply."""

    sha: str
    files: dict[str, Entry]
    dirs: dict[str, Entry]

    def entry(self, path: str) -> Entry | None:
        return self.files.get(path) or self.dirs.get(path)

    def listing(self, folder: str = "", *, recursive: bool) -> list[Entry]:
        """Entries under ``folder`` (``""`` = root), folders first as the Hub lists them."""
        prefix = f"{folder}/" if folder else ""
        out = []
        for table in (self.dirs, self.files):
            for path, entry in table.items():
                if not path.startswith(prefix) or path == folder:
                    continue
                if recursive or "/" not in path[len(prefix) :]:
                    out.append(entry)
        return sorted(out, key=lambda e: e.path)


class _CatFile:
    """A persistent ``git cat-file --batch`` process, one request at a time."""

    def __init__(self, git_dir: Path) -> None:
        self._git_dir = git_dir
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                ["git", "--git-dir", str(self._git_dir), "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        return self._proc

    def read(self, name: str) -> tuple[str, bytes] | None:
        """(type, content) of an object, or None when it does not exist."""
        if "\n" in name or not name:
            return None
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(name.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().decode().split()
            if len(header) != 3:
                return None
            _, kind, size = header
            data = proc.stdout.read(int(size))
            proc.stdout.read(1)  # the newline after the content
            return kind, data

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                if self._proc.stdin:
                    self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                if self._proc.stdout:
                    self._proc.stdout.close()
                self._proc = None


def _git(git_dir: Path, *args: str, data: bytes | None = None) -> bytes:
    proc = subprocess.run(
        ["git", "--git-dir", str(git_dir), *args],
        input=data,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise HubError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _fast_import_path(path: str) -> bytes:
    quoted = path.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"'.encode()


def _file_command(path: str, content: bytes) -> bytes:
    return (
        b"M 100644 inline "
        + _fast_import_path(path)
        + b"\n"
        + b"data %d\n" % len(content)
        + content
        + b"\n"
    )


def _gitignore_match(path: str, patterns: list[str]) -> bool:
    """A small .gitignore matcher: globs, ``/``-anchored and ``dir/`` patterns, ``!``."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = line[1:] if negate else line
        dir_only = pat.endswith("/")
        pat = pat.strip("/") if dir_only else pat.lstrip("/")
        anchored = "/" in line.rstrip("/")[1:] or line.startswith("/")
        hit = False
        for i, cand in enumerate(candidates):
            if dir_only and i == len(candidates) - 1:
                continue  # a dir-only pattern never matches the file itself
            name = cand if anchored else cand.rsplit("/", 1)[-1]
            if fnmatch(name, pat):
                hit = True
                break
        if hit:
            ignored = not negate
    return ignored


@dataclass
class Repo:
    """One repo: a bare git repository plus a small JSON of Hub metadata."""

    repo_type: str
    repo_id: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._cat = _CatFile(self.path)
        self._heads: dict[str, str] = {}
        self._tags: dict[str, tuple[str, str]] = {}  # name -> (ref target, peeled commit)
        self._trees: OrderedDict[str, Snapshot] = OrderedDict()
        self._commits: OrderedDict[str, Commit] = OrderedDict()
        self._load_refs()

    # ------------------------------------------------------------ metadata

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    @property
    def name(self) -> str:
        return self.repo_id.split("/")[1]

    @property
    def private(self) -> bool:
        return bool(self.meta.get("private", False))

    def save_meta(self) -> None:
        """Write the metadata atomically (0600: a Space's secrets live here)."""
        with self.lock:
            tmp = self.path / f".{META_FILE}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.meta, fh, indent=1, sort_keys=True)
            tmp.replace(self.path / META_FILE)

    def close(self) -> None:
        self._cat.close()

    # ------------------------------------------------------------ refs

    def _load_refs(self) -> None:
        out = _git(
            self.path,
            "for-each-ref",
            "--format=%(objectname) %(*objectname) %(refname)",
        ).decode()
        self._heads.clear()
        self._tags.clear()
        for line in out.splitlines():
            parts = line.split()
            target, peeled, ref = (
                (parts[0], parts[1], parts[2])
                if len(parts) == 3
                else (
                    parts[0],
                    parts[0],
                    parts[1],
                )
            )
            if ref.startswith("refs/heads/"):
                self._heads[ref[len("refs/heads/") :]] = target
            elif ref.startswith("refs/tags/"):
                self._tags[ref[len("refs/tags/") :]] = (target, peeled)

    def head(self, branch: str = DEFAULT_BRANCH) -> str:
        try:
            return self._heads[branch]
        except KeyError:
            raise RevisionNotFound(branch) from None

    @property
    def branches(self) -> dict[str, str]:
        return dict(self._heads)

    @property
    def tags(self) -> dict[str, str]:
        return {name: peeled for name, (_, peeled) in self._tags.items()}

    def resolve(self, revision: str | None) -> str:
        """The commit sha a branch, tag, ``refs/...`` name or full sha points at."""
        rev = revision or DEFAULT_BRANCH
        if rev.startswith("refs/heads/"):
            found = self._heads.get(rev[len("refs/heads/") :])
        elif rev.startswith("refs/tags/"):
            tag = self._tags.get(rev[len("refs/tags/") :])
            found = tag[1] if tag else None
        elif rev in self._heads:
            found = self._heads[rev]
        elif rev in self._tags:
            found = self._tags[rev][1]
        elif _SHA.match(rev) and self.commit(rev, missing_ok=True) is not None:
            found = rev
        else:
            found = None
        if found is None:
            raise RevisionNotFound(rev)
        return found

    def branch_of(self, revision: str | None) -> str:
        """The branch a write to ``revision`` goes to (writes need a branch name)."""
        rev = revision or DEFAULT_BRANCH
        if rev.startswith("refs/heads/"):
            rev = rev[len("refs/heads/") :]
        if rev not in self._heads:
            if rev in self._tags or _SHA.match(rev):
                raise BadRequest(f"Cannot commit to {rev!r}: it is not a branch")
            raise RevisionNotFound(rev)
        return rev

    def create_tag(self, tag: str, revision: str | None, message: str | None) -> str:
        with self.lock:
            if not _REF_NAME.match(tag):
                raise BadRequest(f"Invalid tag name {tag!r}")
            if tag in self._tags:
                raise Conflict(f"Tag {tag} already exists")
            sha = self.resolve(revision)
            if message:
                _git(self.path, "tag", "-a", "-m", message, tag, sha)
                target = _git(self.path, "rev-parse", f"refs/tags/{tag}").decode().strip()
            else:
                _git(self.path, "update-ref", f"refs/tags/{tag}", sha, "0" * 40)
                target = sha
            self._tags[tag] = (target, sha)
            return sha

    def create_branch(self, branch: str, revision: str | None, *, empty: bool = False) -> str:
        if empty:
            raise Unprocessable("localhub does not create empty branches")
        with self.lock:
            if not _REF_NAME.match(branch) or branch.startswith("refs"):
                raise BadRequest(f"Invalid branch name {branch!r}")
            if branch in self._heads:
                raise Conflict(f"Branch {branch} already exists")
            sha = self.resolve(revision)
            _git(self.path, "update-ref", f"refs/heads/{branch}", sha, "0" * 40)
            self._heads[branch] = sha
            return sha

    # ------------------------------------------------------------ objects

    def commit(self, sha: str, *, missing_ok: bool = False) -> Commit | None:
        """The parsed commit ``sha`` (cached: commits never change)."""
        with self.lock:
            cached = self._commits.get(sha)
        if cached is not None:
            return cached
        found = self._cat.read(sha)
        if found is None or found[0] != "commit":
            if missing_ok:
                return None
            raise RevisionNotFound(sha)
        head, _, message = found[1].decode("utf-8", "replace").partition("\n\n")
        tree, parents, author, stamp = "", [], "", 0
        for line in head.splitlines():
            key, _, value = line.partition(" ")
            if key == "tree":
                tree = value
            elif key == "parent":
                parents.append(value)
            elif key == "author":
                author = value.split(" <")[0]
            elif key == "committer":
                stamp = int(value.rsplit(" ", 2)[-2])
        title, _, body = message.partition("\n")
        commit = Commit(sha, tree, tuple(parents), author, stamp, title, body.strip("\n"))
        with self.lock:
            self._commits[sha] = commit
            if len(self._commits) > _COMMIT_CACHE_SIZE:
                self._commits.popitem(last=False)
        return commit

    def history(self, sha: str) -> Iterator[Commit]:
        """Commits from ``sha`` back along first parents (localhub history is linear)."""
        current: str | None = sha
        while current:
            commit = self.commit(current)
            assert commit is not None
            yield commit
            current = commit.parents[0] if commit.parents else None

    def snapshot(self, sha: str) -> Snapshot:
        """Every file and folder of commit ``sha``."""
        with self.lock:
            cached = self._trees.get(sha)
            if cached is not None:
                self._trees.move_to_end(sha)
                return cached
        out = _git(self.path, "ls-tree", "-r", "-t", "-l", "-z", sha)
        files: dict[str, Entry] = {}
        dirs: dict[str, Entry] = {}
        for record in out.split(b"\0"):
            if not record:
                continue
            info, _, raw_path = record.partition(b"\t")
            _mode, kind, oid, size = info.decode().split()
            path = raw_path.decode("utf-8", "surrogateescape")
            if kind == "tree":
                dirs[path] = Entry(path, "directory", oid, 0)
            elif kind == "blob":
                files[path] = Entry(path, "file", oid, int(size))
        snap = Snapshot(sha, files, dirs)
        with self.lock:
            self._trees[sha] = snap
            if len(self._trees) > _TREE_CACHE_SIZE:
                self._trees.popitem(last=False)
        return snap

    def read_blob(self, oid: str) -> bytes:
        found = self._cat.read(oid)
        if found is None or found[0] != "blob":
            raise EntryNotFound(f"No blob {oid}")
        return found[1]

    def file_entry(self, sha: str, path: str) -> Entry:
        """The entry of file ``path`` at commit ``sha`` (EntryNotFound names the commit)."""
        entry = self.snapshot(sha).files.get(path)
        if entry is None:
            raise EntryNotFound(
                f"{path} does not exist on {self.repo_id}@{sha}", headers={"X-Repo-Commit": sha}
            )
        return entry

    def file(self, sha: str, path: str) -> tuple[Entry, bytes]:
        """The entry and content of ``path`` at commit ``sha``."""
        entry = self.file_entry(sha, path)
        return entry, self.read_blob(entry.oid)

    def should_ignore(self, sha: str, path: str, gitignore: str | None) -> bool:
        """Whether ``path`` matches the .gitignore being committed, or the repo's own."""
        if gitignore is None:
            entry = self.snapshot(sha).files.get(".gitignore")
            gitignore = self.read_blob(entry.oid).decode("utf-8", "replace") if entry else ""
        return _gitignore_match(path, gitignore.splitlines())

    def preupload(self, sha: str, files: Any, gitignore: str | None) -> list[dict[str, Any]]:
        """How each file of a coming commit is to be sent, as the Hub's preupload answers.

        Always ``regular`` (no LFS, no Xet: the bytes ride in the commit body); the
        remote ``oid`` lets the client skip a file that did not change.
        """
        if not isinstance(files, list):
            raise BadRequest("files must be a list")
        snap = self.snapshot(sha)
        out = []
        for item in files:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                raise BadRequest("each file needs a path")
            path = item["path"]
            row: dict[str, Any] = {
                "path": path,
                "uploadMode": "regular",
                "shouldIgnore": self.should_ignore(sha, path, gitignore),
            }
            existing = snap.files.get(path)
            if existing is not None:
                row["oid"] = existing.oid
            out.append(row)
        return out

    def last_commits(self, sha: str, paths: list[str]) -> dict[str, dict[str, Any]]:
        """For each path, the newest commit at or before ``sha`` that changed it."""
        remaining = set(paths)
        found: dict[str, dict[str, Any]] = {}
        for commit in self.history(sha):
            if not remaining:
                break
            snap = self.snapshot(commit.sha)
            parent = self.snapshot(commit.parents[0]) if commit.parents else None
            for path in list(remaining):
                here = snap.entry(path)
                before = parent.entry(path) if parent else None
                if here is not None and (before is None or before.oid != here.oid):
                    found[path] = {"id": commit.sha, "title": commit.title, "date": commit.date}
                    remaining.discard(path)
        return found

    def card(self, sha: str) -> dict[str, Any]:
        """The README's front matter at ``sha``; empty when there is none or it is broken."""
        entry = self.snapshot(sha).files.get("README.md")
        if entry is None:
            return {}
        try:
            return front_matter(self.read_blob(entry.oid).decode("utf-8", "replace"))
        except FrontMatterError:
            return {}

    def archive(self, sha: str, dest: Path) -> None:
        """Write the files of commit ``sha`` into ``dest`` (a checkout without .git)."""
        dest.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            ["git", "--git-dir", str(self.path), "archive", "--format=tar", sha],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            tar.extractall(dest, filter="data")
        if proc.wait() != 0:
            raise HubError(f"git archive of {sha} failed")

    # ------------------------------------------------------------ writes

    def apply_root(self, operations: Iterable[Operation], *, author: str) -> str:
        """The first commit of a new repo (no parent)."""
        with self.lock:
            body = b"".join(_file_command(op.path, op.content) for op in operations)
            sha = self._fast_import(DEFAULT_BRANCH, None, "initial commit", "", author, body)
            self._heads[DEFAULT_BRANCH] = sha
            return sha

    def apply(
        self,
        operations: Iterable[Operation],
        *,
        summary: str,
        description: str = "",
        author: str,
        revision: str | None = None,
        parent: str | None = None,
    ) -> str:
        """Make one commit on the branch ``revision``; return its sha.

        Raises PreconditionFailed when ``parent`` is given and is not the branch head,
        EntryNotFound when a deletion names a path that does not exist.
        """
        with self.lock:
            branch = self.branch_of(revision)
            head = self._heads[branch]
            if parent is not None and parent != head:
                raise PreconditionFailed(
                    f"A commit has happened since {parent}. Please refresh and try again."
                )
            snap = self.snapshot(head)
            files = set(snap.files)
            body = bytearray()
            for op in operations:
                path = validate_path(op.path.rstrip("/") if op.kind == "deletedFolder" else op.path)
                if op.kind == "file":
                    body += _file_command(path, op.content)
                    files.add(path)
                elif op.kind == "deletedFile":
                    if path not in files:
                        raise EntryNotFound(f"A file with this name doesn't exist: {path}")
                    body += b"D " + _fast_import_path(path) + b"\n"
                    files.discard(path)
                elif op.kind == "deletedFolder":
                    inside = {f for f in files if f.startswith(path + "/")}
                    if not inside:
                        raise EntryNotFound(f"A folder with this name doesn't exist: {path}")
                    body += b"D " + _fast_import_path(path) + b"\n"
                    files -= inside
                else:
                    raise BadRequest(f"Unknown operation {op.kind!r}")
            sha = self._fast_import(branch, head, summary, description, author, bytes(body))
            self._heads[branch] = sha
            return sha

    def _fast_import(
        self,
        branch: str,
        parent: str | None,
        summary: str,
        description: str,
        author: str,
        ops: bytes,
    ) -> str:
        message = summary.strip() or "Update files"
        if description.strip():
            message += "\n\n" + description.strip()
        msg = message.encode() + b"\n"
        who = f"{author} <{author}@users.noreply.localhub> {int(time.time())} +0000".encode()
        stream = (
            f"commit refs/heads/{branch}\nmark :1\n".encode()
            + b"author "
            + who
            + b"\ncommitter "
            + who
            + b"\n"
            + b"data %d\n" % len(msg)
            + msg
            + (f"from {parent}\n".encode() if parent else b"")
            + ops
            + b"\n"
        )
        marks = self.path / f"fast-import-{secrets.token_hex(4)}.marks"
        try:
            _git(self.path, "fast-import", "--quiet", f"--export-marks={marks}", data=stream)
            return marks.read_text().split()[1]
        finally:
            marks.unlink(missing_ok=True)


class RepoStore:
    """Every repo under ``root``: ``<root>/<type>s/<namespace>/<name>.git``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._load()

    def _dir(self, repo_type: str, repo_id: str) -> Path:
        ns, name = repo_id.split("/")
        return self.root / f"{repo_type}s" / ns / f"{name}.git"

    def _load(self) -> None:
        for repo_type in REPO_TYPES:
            for meta_path in sorted((self.root / f"{repo_type}s").glob(f"*/*.git/{META_FILE}")):
                git_dir = meta_path.parent
                repo_id = f"{git_dir.parent.name}/{git_dir.name[: -len('.git')]}"
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                self._repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, git_dir, meta)

    def get(self, repo_type: str, repo_id: str) -> Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise RepoNotFound(repo_type, repo_id)
        return repo

    def find(self, repo_type: str, repo_id: str) -> Repo | None:
        return self._repos.get((repo_type, repo_id))

    def all(self, repo_type: str | None = None) -> list[Repo]:
        return [r for (t, _), r in sorted(self._repos.items()) if repo_type in (None, t)]

    def create(
        self,
        repo_type: str,
        repo_id: str,
        *,
        author: str,
        private: bool = False,
        sdk: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Repo:
        """A new repo with the Hub's first commit (``.gitattributes``, a README for Spaces).

        Raises Conflict (carrying nothing: the route adds the ``url``) if it exists.
        """
        if repo_type not in REPO_TYPES:
            raise BadRequest(f"Invalid repo type {repo_type!r}")
        validate_repo_id(repo_id)
        if repo_type == "space" and sdk not in SPACE_SDKS:
            raise BadRequest(f"Invalid sdk {sdk!r}: expected one of {', '.join(SPACE_SDKS)}")
        with self._lock:
            if any((t, repo_id.lower()) == (repo_type, i.lower()) for t, i in self._repos):
                raise Conflict(f"You already created this {repo_type} repo")
            git_dir = self._dir(repo_type, repo_id)
            if git_dir.exists():
                shutil.rmtree(git_dir)
            git_dir.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    "git",
                    "init",
                    "--bare",
                    "--quiet",
                    "--initial-branch",
                    DEFAULT_BRANCH,
                    str(git_dir),
                ],
                check=True,
                capture_output=True,
            )
            info = {
                "private": private,
                "createdAt": now_iso(),
                "_id": secrets.token_hex(12),
                **({"sdk": sdk} if sdk else {}),
                **(meta or {}),
            }
            repo = Repo(repo_type, repo_id, git_dir, info)
            ops = [Operation("file", ".gitattributes", _GITATTRIBUTES.encode())]
            if repo_type == "space":
                ops.append(
                    Operation("file", "README.md", _space_readme(repo.name, sdk or "").encode())
                )
            repo.apply_root(ops, author=author)
            repo.save_meta()
            self._repos[(repo_type, repo_id)] = repo
            return repo

    def delete(self, repo_type: str, repo_id: str) -> Repo:
        with self._lock:
            repo = self.get(repo_type, repo_id)
            del self._repos[(repo_type, repo_id)]
        repo.close()
        shutil.rmtree(repo.path, ignore_errors=True)
        return repo

    def close(self) -> None:
        for repo in list(self._repos.values()):
            repo.close()

    def wipe(self) -> None:
        """Delete every repo (``LocalHub.reset``)."""
        with self._lock:
            self.close()
            self._repos.clear()
            for repo_type in REPO_TYPES:
                shutil.rmtree(self.root / f"{repo_type}s", ignore_errors=True)


__all__ = [
    "DEFAULT_BRANCH",
    "REPO_TYPES",
    "SPACE_SDKS",
    "URL_PREFIX",
    "Commit",
    "Entry",
    "Operation",
    "Repo",
    "RepoStore",
    "Snapshot",
    "git_blob_oid",
    "now_iso",
    "validate_path",
    "validate_repo_id",
]
