"""What the Space is doing now, and its logs: `spacetrain status` and `spacetrain logs`.

`status` answers the questions the seed answered with one-off scripts: which stage,
which commit it runs against the repo head, on which hardware, which files the Space
repo holds (the seed's "NEVER include requirements.txt": a forbidden or unexpected file
is flagged with the lint policy's own file rules), whether the local ``space/`` matches
the head, and what it has cost when localhub's billing meter is there
(``GET /_localhub/billing``; the real Hub has no such route and it is not asked).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import get_session

from spacetrain.errors import SpacetrainError
from spacetrain.hub import DEFAULT_ENDPOINT, Hub, explain, token_from_env
from spacetrain.lint import Policy
from spacetrain.lint.globs import glob_match
from spacetrain.stages.space_runtime import Runtime, short
from spacetrain.stages.sync import load_lint_policy, local_files, plan


@dataclass
class LocalDiff:
    """The local folder against the Space's head."""

    folder: str
    in_sync: bool
    changed: list[str] = field(default_factory=list)
    missing_remotely: list[str] = field(default_factory=list)  # would be uploaded
    extra_remotely: list[str] = field(default_factory=list)  # would be deleted


@dataclass
class StatusResult:
    """Everything `spacetrain status` shows (``--format json`` prints this)."""

    space: str
    stage: str
    runtime_sha: str | None
    head: str
    hardware: str | None
    requested_hardware: str | None
    sleep_time: int | None
    error: str | None
    files: list[str]
    flags: list[str]
    local: LocalDiff | None = None
    billing: dict[str, Any] | None = None
    private: bool | None = None

    @property
    def runs_head(self) -> bool | None:
        """Whether the runtime is about the head commit (None when the Hub does not say)."""
        return None if self.runtime_sha is None else self.runtime_sha == self.head

    def to_json(self) -> dict[str, Any]:
        """A JSON object with ``schema_version``."""
        data = asdict(self)
        data["runs_head"] = self.runs_head
        return {"schema_version": 1, **data}


def flag_files(files: list[str], policy: Policy) -> list[str]:
    """The lint policy's file rules applied to the Space repo's own file list."""
    rules = policy["files"]
    required, allowed, forbidden = rules["required"], rules["allowed"], rules["forbidden"]
    flags = []
    for rel in files:
        if any(glob_match(rel, p) for p in forbidden):
            flags.append(f"{rel}: forbidden by the lint policy (forbidden-file); delete it")
        elif rel not in required and not any(glob_match(rel, p) for p in allowed):
            flags.append(f"{rel}: unexpected file (unexpected-file)")
    flags += [f"{rel}: missing (missing-file)" for rel in required if rel not in files]
    return flags


def billing(hub: Hub, space: str) -> dict[str, Any] | None:
    """localhub's meter for ``space``; None on the real Hub or when it is not there."""
    if hub.endpoint == DEFAULT_ENDPOINT:
        return None
    try:
        token = token_from_env()  # a strict localhub shows a token the Spaces it can see
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = get_session().get(
            f"{hub.endpoint}/_localhub/billing", headers=headers, timeout=5
        )
        if response.status_code != 200:
            return None
        data = response.json()
    except Exception:  # a nicety: no meter is not an error
        return None
    spaces = data.get("spaces") if isinstance(data, dict) else None
    entry = spaces.get(space) if isinstance(spaces, dict) else None
    return entry if isinstance(entry, dict) else None


def status(
    hub: Hub,
    space: str,
    *,
    space_dir: Path | None = None,
    policy_path: Path | None = None,
) -> StatusResult:
    """Read the Space's runtime, head, files and billing; compare ``space_dir`` if given.

    Raises:
        AuthError, UsageError: bad token, no such Space (exit 2).
        HubUnreachable: the Hub kept failing (exit 3).
    """
    info = hub.call(f"read Space {space}", hub.api.space_info, space)
    runtime = Runtime.of(
        hub.call(f"read the runtime of Space {space}", hub.api.get_space_runtime, space)
    )
    head = str(info.sha)
    tree = hub.call(
        f"list the files of Space {space}",
        lambda: list(
            hub.api.list_repo_tree(space, repo_type="space", revision=head, recursive=True)
        ),
    )
    files = sorted(entry.path for entry in tree if isinstance(entry, RepoFile))
    policy = load_lint_policy(policy_path)
    local = None
    if space_dir is not None and space_dir.is_dir():
        folder = local_files(space_dir, policy)
        diff = plan(hub, space, space_dir, sorted(folder.files))
        local = LocalDiff(
            folder=folder.shown_root,
            in_sync=diff.empty and diff.head == head,
            changed=[rel for rel in diff.upload if rel in files],
            missing_remotely=[rel for rel in diff.upload if rel not in files],
            extra_remotely=list(diff.delete),
        )
    return StatusResult(
        space=space,
        stage=runtime.stage,
        runtime_sha=runtime.sha,
        head=head,
        hardware=runtime.hardware,
        requested_hardware=runtime.requested_hardware,
        sleep_time=runtime.raw.get("gcTimeout"),
        error=runtime.error,
        files=files,
        flags=flag_files(files, policy),
        local=local,
        billing=billing(hub, space),
        private=info.private,
    )


def render_status(result: StatusResult) -> str:
    """The text form: one ``key  value`` line each, flags and errors last."""
    rows: list[tuple[str, str]] = [("space", result.space), ("stage", result.stage)]
    if result.runs_head is None:
        commit = f"head {short(result.head)} (the runtime does not name its commit)"
    elif result.runs_head:
        commit = f"{short(result.head)} (the head)"
    else:
        commit = f"runs {short(result.runtime_sha)}, head is {short(result.head)}"
    rows.append(("commit", commit))
    hardware = result.hardware or "none running"
    rows.append(("hardware", f"{hardware} (requested {result.requested_hardware or '?'})"))
    sleep = result.sleep_time
    rows.append(("sleeps", "never" if sleep in (None, -1) else f"after {sleep} s idle"))
    rows.append(("files", f"{len(result.files)}: {' '.join(result.files)}"))
    if result.local is not None:
        local = result.local
        if local.in_sync:
            text = f"{local.folder}/ matches the head"
        else:
            parts = []
            if local.changed:
                parts.append(f"changed {', '.join(local.changed)}")
            if local.missing_remotely:
                parts.append(f"not on the Space {', '.join(local.missing_remotely)}")
            if local.extra_remotely:
                parts.append(f"only on the Space {', '.join(local.extra_remotely)}")
            text = f"{local.folder}/ differs: {'; '.join(parts)} (`spacetrain sync`)"
        rows.append(("local", text))
    if result.billing is not None:
        flavors = result.billing.get("flavors") or {}
        spent = ", ".join(
            f"{name} {v.get('seconds', 0):.1f} s (${v.get('usd', 0):.4f})"
            for name, v in sorted(flavors.items())
        )
        now = result.billing.get("billing") or "nothing"
        rows.append(("billing", f"{spent or 'nothing yet'}; billed now: {now}"))
    rows += [("flag", flag) for flag in result.flags]
    if result.error:
        rows.append(("error", result.error.strip().splitlines()[0]))
    return "".join(f"{key:<9} {value}\n" for key, value in rows)


def stream_logs(hub: Hub, space: str, *, build: bool, follow: bool) -> Iterator[str]:
    """The Space's run (or build) log lines, as the Hub's SSE stream gives them.

    Without ``follow`` the buffered log is read (through the retry policy) and the call
    returns; with it lines arrive as the Space writes them until the stream ends.
    """
    which = "build" if build else "run"
    what = f"read the {which} logs of Space {space}"
    if not follow:
        yield from hub.call(what, lambda: list(hub.api.fetch_space_logs(space, build=build)))
        return
    # Check the Space first so a bad id or token fails through the one error map.
    hub.call(f"read Space {space}", hub.api.space_info, space)
    try:
        yield from hub.api.fetch_space_logs(space, build=build, follow=True)
    except SpacetrainError:
        raise
    except Exception as exc:
        raise explain(exc, what, endpoint=hub.endpoint) from exc


__all__ = ["LocalDiff", "StatusResult", "flag_files", "render_status", "status", "stream_logs"]
