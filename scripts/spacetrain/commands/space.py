"""``spacetrain preflight|space setup|sync|wait|release|status|logs``: the Space stages.

Each handler reads its flags and ``[tool.spacetrain]``, calls the stage function in
:mod:`spacetrain.stages`, prints the result to stdout (progress went to stderr) and
returns the exit code. Flags override the config; with ``--space`` the commands that
need only a Space id (wait, release, status, logs) also run outside a project.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from spacetrain.config import ProjectConfig, find_root, load_config, read_pyproject
from spacetrain.errors import (
    EXIT_OK,
    CheckFailed,
    SpaceBuildFailed,
    SpacetrainError,
    StageTimeout,
    UsageError,
)
from spacetrain.hub import Hub
from spacetrain.redact import mask
from spacetrain.stages.progress import Progress, progress_for
from spacetrain.stages.state import PipelineState
from spacetrain.stages.target import Target, resolve_target, target_commit

if TYPE_CHECKING:
    from spacetrain.stages.setup import SetupOptions

_FULL_SHA = re.compile(r"^[0-9a-fA-F]{40}$")


def _optional_config() -> ProjectConfig | None:
    """``[tool.spacetrain]`` when there is a project with one; errors in it still count."""
    try:
        root = find_root()
    except UsageError:
        return None
    data = read_pyproject(root / "pyproject.toml")  # a bad file is one line naming it
    if not isinstance(data.get("tool", {}).get("spacetrain"), dict):
        return None
    return load_config(root)


def _space(args: argparse.Namespace, config: ProjectConfig | None) -> str:
    """The Space of a command that reads no state (``resolve_target``'s rule)."""
    return resolve_target(getattr(args, "space", None), config).space


def _positive(value: float, flag: str) -> float:
    if not value > 0:
        raise UsageError(f"{flag} must be a positive number of seconds, not {value}")
    return value


def preflight(args: argparse.Namespace) -> int:
    """Print the checklist (stdout) and exit with the worst outcome."""
    from spacetrain.stages.preflight import preflight as run_preflight

    config = load_config()
    config = replace(config, space=_space(args, config))
    adapter = config.adapter(args.adapter) if (args.adapter or config.adapters) else None
    state = PipelineState.load(getattr(args, "state", None))
    state.check_writable()
    result = run_preflight(Hub.from_env(), config, adapter, state)
    for check in result.checks:
        print(check.line())
    failed = result.failed
    if failed:
        names = ", ".join(c.name for c in failed)
        print(
            f"spacetrain preflight: {len(failed)} of {len(result.checks)} checks failed: {names}",
            file=sys.stderr,
        )
    else:
        print(f"spacetrain preflight: {len(result.checks)} checks, ready to train", file=sys.stderr)
    return result.exit_code


def _setup_options(args: argparse.Namespace, config: ProjectConfig | None) -> SetupOptions:
    """Set-up options from the config (and ``--adapter``), or a bare Space without one."""
    from spacetrain.stages.setup import SetupOptions, space_token_from_env

    space = _space(args, config)
    if config is None:
        return SetupOptions(space, private=not args.public, token=space_token_from_env())
    adapter = config.adapter(args.adapter) if (args.adapter or len(config.adapters) == 1) else None
    if args.public:
        config = replace(config, private=False)
    return SetupOptions.from_config(config, adapter, space=space)


def setup(args: argparse.Namespace) -> int:
    """Create or settle the Space (secret, variables, sleep time, hardware); print JSON."""
    from spacetrain.stages.setup import setup as run_setup

    config = _optional_config()
    result = run_setup(Hub.from_env(), _setup_options(args, config))
    print(json.dumps(result.to_json(), sort_keys=True))
    return EXIT_OK


def sync(args: argparse.Namespace) -> int:
    """Lint, set up, upload ``space/`` in one commit (or none), request the hardware."""
    from spacetrain.stages.sync import SyncOptions
    from spacetrain.stages.sync import sync as run_sync

    config = _optional_config()
    space = _space(args, config)
    root = config.root if config is not None else Path.cwd()
    if args.space_dir:
        space_dir = Path(args.space_dir)
    elif config is not None:
        space_dir = config.space_dir
    else:
        space_dir = Path("space")
    policy = config.lint_policy if config is not None else Path("policy/space.yaml")
    options = SyncOptions.from_checkout(
        root,
        space=space,
        space_dir=space_dir,
        policy=policy,
        setup=_setup_options(args, config),
    )
    state = PipelineState.load(args.state)
    state.check_writable()
    result = run_sync(Hub.from_env(), options, state)
    print(result.commit)
    return EXIT_OK


def wait(args: argparse.Namespace) -> int:
    """Wait until the Space runs the synced commit; print that commit."""
    from spacetrain.stages.wait import wait as run_wait

    timeout = _positive(args.timeout, "--timeout")
    state = PipelineState.load(args.state)
    config = _optional_config()
    target = resolve_target(args.space, config, state)
    space = target.space
    hub = Hub.from_env()
    commit = target_commit(hub, target, state, args.commit)
    after = config.after_training if config is not None and config.space == space else "pause"
    progress = progress_for("wait")
    try:
        result = run_wait(hub, space, commit, timeout=timeout, progress=progress)
    except (KeyboardInterrupt, StageTimeout, SpaceBuildFailed) as exc:
        _release_after_wait(hub, target, after, exc, progress)
        raise
    except CheckFailed as exc:  # the Space moved on to another push: that deploy's to release
        progress(f"{space} left as it is: {exc}")
        raise
    print(result.commit)
    return EXIT_OK


def _release_after_wait(
    hub: Hub, target: Target, after_training: str, why: BaseException, progress: Progress
) -> None:
    """`wait` gave up (interrupt, SIGTERM, deadline, failed build): the Space it woke must
    not bill on, so release it (the release stage holds, saying why, when it trains a run
    that is not the state's). A failed release is said, never hidden; the wait's own error
    is still the one reported."""
    from spacetrain.stages.release import release as run_release

    space = target.space
    reason = "interrupted" if isinstance(why, KeyboardInterrupt) else type(why).__name__
    progress(f"gave up ({reason}): releasing {space}")
    try:
        done = run_release(
            hub, space, after_training=after_training, ours=target.ours, progress=progress
        )
    except SpacetrainError as exc:
        progress(f"warning: could not release {space}, it may still bill: {exc}")
        return
    progress(f"{space}: {done.action}" + (f" ({done.reason})" if done.reason else ""))


def release(args: argparse.Namespace) -> int:
    """Pause the Space (or move it to the configured CPU flavor), unless it trains a run
    that is not the state's; print what was done (``held``: why is on stderr)."""
    from spacetrain.stages.release import release as run_release

    config = _optional_config()
    state = PipelineState.load(args.state)
    target = resolve_target(args.space, config, state)
    after = config.after_training if config is not None else "pause"
    result = run_release(
        Hub.from_env(), target.space, after_training=after, ours=target.ours, force=args.force
    )
    print(result.action)
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    """Print the Space's stage, commits, hardware, files, local diff and billing."""
    from spacetrain.stages.status import render_status
    from spacetrain.stages.status import status as run_status

    config = _optional_config()
    space = _space(args, config)
    result = run_status(
        Hub.from_env(),
        space,
        space_dir=config.space_dir if config is not None else None,
        policy_path=config.lint_policy if config is not None else None,
    )
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(render_status(result))
    return EXIT_OK


def logs(args: argparse.Namespace) -> int:
    """Print the Space's run (or ``--build``) log; ``--follow`` keeps reading."""
    from spacetrain.stages.status import stream_logs

    space = _space(args, _optional_config())
    for line in stream_logs(Hub.from_env(), space, build=args.build, follow=args.follow):
        line = mask(line)  # the Space's log may print a token: never relay one
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
        sys.stdout.flush()
    return EXIT_OK


__all__ = ["logs", "preflight", "release", "setup", "status", "sync", "wait"]
