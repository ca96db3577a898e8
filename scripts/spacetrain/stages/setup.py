"""Set the Space up as a first deploy needs it, and change only what differs afterwards.

A fresh Space has no ``HF_TOKEN`` secret and no variables, so a run would train for an
hour and then fail to push. Set-up creates a missing Space (Docker SDK, private unless
configured otherwise) with its secret, its variables and its hardware in ONE call, and
on an existing Space compares before it writes:

- **variables**: the adapter's defaults from ``[tool.spacetrain]`` (``BASE_MODEL``,
  ``DATASET``, ``OUTPUT_REPO``, the revisions and ``train`` hyper-parameters, named by the
  contract in ``space/train.py``), ``SPACETRAIN_EXPECT_GPU`` on GPU hardware, and the
  config's extra ``variables``. Variables spacetrain manages that are no longer wanted
  are deleted; other variables are left alone.
- **the secret** ``HF_TOKEN``, from the environment variable ``SPACE_HF_TOKEN`` (a
  fine-grained token that can write only the output repo; the pipeline's own ``HF_TOKEN``
  is a different, broader token). Secrets cannot be read back, so the secret's
  description holds a salted SHA-256 fingerprint of the value set (never the value), and
  set-up compares the fingerprint of ``SPACE_HF_TOKEN`` with it.
- **the trigger** ``SPACETRAIN_TRIGGER``, a second secret, from the environment variable of
  the same name (fingerprinted alike): a Space that has it refuses every start (and
  self-check) that does not carry it, and `spacetrain train` sends it. A public Space's
  API answers anyone, so set-up warns about a public Space, louder without a trigger.
- **what the API serves**: ``OUTPUT_REPO``, and with several adapters
  ``SPACETRAIN_OUTPUT_REPOS`` listing each one's output repo: the only repos a run may
  push to.
- **sleep time** (``sleep_time``) and **hardware** (``hardware``).

Every variable or secret change restarts the Space, so nothing is written while the Space
is training a run (:func:`active_run`): set-up says which run and stops (exit 1). With
nothing to change it makes no call that writes: no commit, no restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from spacetrain import contract
from spacetrain.config import AdapterConfig, ProjectConfig
from spacetrain.errors import CheckFailed, UsageError
from spacetrain.hub import Hub, check_token
from spacetrain.stages.progress import Progress, progress_for
from spacetrain.stages.space_runtime import CPU_FLAVORS, active_run, get_runtime

SPACE_TOKEN_ENV = contract.trainer.ENV_SPACE_TOKEN  # SPACE_HF_TOKEN: the Space's own token
TRIGGER_ENV = contract.ENV_TRIGGER  # SPACETRAIN_TRIGGER: here the value, in the Space the secret
_FINGERPRINT = "spacetrain-sha256"
FREE_FLAVOR = "cpu-basic"  # sleeps after 48 h whatever one asks (the Hub's rule)
# Variables set-up owns: deleted from the Space when the config no longer sets them.
MANAGED_VARIABLES = frozenset(
    {p.variable for p in contract.PARAMS.values() if p.variable}
    | {contract.ENV_EXPECT_GPU, contract.ENV_OUTPUT_REPOS}
)


def fingerprint(value: str, salt: str | None = None) -> str:
    """``spacetrain-sha256:<salt>:<digest>``: proves which token is set, reveals nothing."""
    salt = salt or secrets.token_hex(16)
    digest = hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()
    return f"{_FINGERPRINT}:{salt}:{digest}"


def matches(description: str | None, value: str) -> bool:
    """Whether the secret described by ``description`` was set from ``value``."""
    parts = (description or "").split(":")
    if len(parts) != 3 or parts[0] != _FINGERPRINT:
        return False
    return hmac.compare_digest(fingerprint(value, parts[1]), description or "")


def space_token_from_env() -> str | None:
    """``SPACE_HF_TOKEN``, or ``None``; one with a newline or control character is exit 2."""
    token = os.environ.get(SPACE_TOKEN_ENV, "").strip()
    return check_token(token, SPACE_TOKEN_ENV) if token else None


def trigger_from_env() -> str | None:
    """``SPACETRAIN_TRIGGER`` (the Space's trigger secret, which `train` sends), or ``None``."""
    return os.environ.get(TRIGGER_ENV, "").strip() or None


@dataclass(frozen=True)
class SetupOptions:
    """What the Space should look like.

    Attributes:
        space: the Space id.
        variables: every Space variable set-up wants (see :func:`wanted_variables`).
        hardware: the flavor to request (``None``: leave it).
        private: create the Space private (an existing Space keeps its visibility).
        sleep_time: idle seconds before the Space sleeps, -1 never (``None``: leave it).
        token: the value for the ``HF_TOKEN`` secret (``SPACE_HF_TOKEN``), or ``None``.
        trigger: the value for the ``SPACETRAIN_TRIGGER`` secret, or ``None`` (leave it).
        managed: variables to delete when ``variables`` does not set them (without an
            adapter, its variables are left as they are).
    """

    space: str
    variables: dict[str, str] = field(default_factory=dict)
    hardware: str | None = None
    private: bool = True
    sleep_time: int | None = None
    token: str | None = None
    managed: frozenset[str] = frozenset({contract.ENV_EXPECT_GPU})
    trigger: str | None = None

    @classmethod
    def from_config(
        cls, config: ProjectConfig, adapter: AdapterConfig | None, *, space: str | None = None
    ) -> SetupOptions:
        """Options from ``[tool.spacetrain]`` and the environment (``SPACE_HF_TOKEN``)."""
        return cls(
            space=space or config.space,
            variables=wanted_variables(config, adapter),
            hardware=config.hardware,
            private=config.private,
            sleep_time=config.sleep_time,
            token=space_token_from_env(),
            managed=MANAGED_VARIABLES if adapter is not None else cls.managed,
            trigger=trigger_from_env(),
        )


def wanted_variables(config: ProjectConfig, adapter: AdapterConfig | None) -> dict[str, str]:
    """The adapter's run defaults as Space variables, plus the GPU flag and the extras."""
    values: dict[str, Any] = {}
    if adapter is not None:
        values = {
            "base_model": adapter.base_model,
            "model_revision": adapter.base_revision,
            "dataset": adapter.dataset,
            "dataset_revision": adapter.dataset_revision,
            "output_repo": adapter.output_repo,
            **adapter.train,
        }
    wanted = contract.space_variables(values)
    if adapter is not None:  # every configured adapter's repo: one Space serves them all
        repos = sorted({a.output_repo for a in config.adapters.values()} | {adapter.output_repo})
        if len(repos) > 1:  # one is OUTPUT_REPO's alone
            wanted[contract.ENV_OUTPUT_REPOS] = ",".join(repos)
    if config.hardware not in CPU_FLAVORS:
        wanted[contract.ENV_EXPECT_GPU] = "1"
    wanted.update(config.variables)
    return wanted


@dataclass
class SetupResult:
    """What set-up did; ``writes`` counts the calls that changed the Space."""

    space: str
    created: bool = False
    variables_set: list[str] = field(default_factory=list)
    variables_deleted: list[str] = field(default_factory=list)
    credential: str = "unchanged"  # HF_TOKEN secret: set | unchanged | kept (no SPACE_HF_TOKEN)
    trigger: str = "none"  # SPACETRAIN_TRIGGER secret: set | unchanged | none
    public: bool = False  # the Space's API answers anyone
    sleep_time: int | None = None
    hardware: str | None = None  # the flavor requested, when a change was requested

    @property
    def writes(self) -> int:
        """Changes that restart an up Space (variables, secret, hardware)."""
        return (
            len(self.variables_set)
            + len(self.variables_deleted)
            + (self.credential == "set")
            + (self.trigger == "set")
            + (self.hardware is not None)
        )

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object (never a value of a secret)."""
        return {**self.__dict__, "writes": self.writes}


def refuse_if_training(hub: Hub, space: str, change: str) -> None:
    """Stop before a change that restarts the Space while it trains a run.

    Raises:
        CheckFailed: the Space is training (exit 1); nothing was changed.
    """
    run = active_run(hub, space)
    if run is not None:
        raise CheckFailed(
            f"the Space {space} is training run {run}; {change} would restart it and end "
            f"that run. Nothing was changed: try again when it has finished (follow it with "
            f"`spacetrain train --run-id {run}`)"
        )


def _secret(key: str, value: str) -> dict[str, str]:
    return {"key": key, "value": value, "description": fingerprint(value)}


def warn_if_public(space: str, *, public: bool, trigger: bool, progress: Progress) -> None:
    """Say so when a Space's API answers anyone (and louder when nothing guards a start)."""
    if not public:
        return
    progress(
        f"warning: Space {space} is public: anyone can call its API (it serves only the "
        "configured output repos and Hub ids); keep it private unless it must be seen",
    )
    if not trigger:
        progress(
            f"warning: Space {space} is public without a {TRIGGER_ENV} secret: anyone can "
            f"start a run on its hardware (and your bill). Set {TRIGGER_ENV} to a long "
            "random value where the pipeline runs, then `spacetrain space setup`",
        )


def ensure_space(
    hub: Hub, options: SetupOptions, *, progress: Progress, require_token: bool = True
) -> SetupResult | None:
    """Create a missing Space with its secret, variables and hardware in one call.

    Returns the result when it created the Space, ``None`` when the Space exists.
    ``require_token=False`` (a bare `sync` without set-up options) creates it without
    the secret instead of refusing.
    """
    space = options.space
    if hub.call(
        f"check whether Space {space} exists", hub.api.repo_exists, space, repo_type="space"
    ):
        return None
    if options.token is None and require_token:
        raise UsageError(
            f"the Space {space} does not exist yet and {SPACE_TOKEN_ENV} is not set: the "
            f"Space needs its own HF_TOKEN secret to push adapters. Set {SPACE_TOKEN_ENV} to "
            "a fine-grained token that can write the output repo, then run this again"
        )
    visibility = "private" if options.private else "public"
    what = "" if options.token else ", no HF_TOKEN secret: see `spacetrain space setup`"
    progress(
        f"creating Space {space} (docker, {visibility}, {options.hardware or 'cpu'}{what})",
    )
    sleep_time = None if options.hardware in (None, FREE_FLAVOR) else options.sleep_time
    hub.call(
        f"create Space {space}",
        hub.api.create_repo,
        space,
        repo_type="space",
        space_sdk="docker",
        private=options.private,
        exist_ok=True,
        space_hardware=options.hardware,
        space_sleep_time=sleep_time,
        space_secrets=[
            _secret(key, value)
            for key, value in ((contract.ENV_TOKEN, options.token), (TRIGGER_ENV, options.trigger))
            if value
        ]
        or None,
        space_variables=[{"key": k, "value": v} for k, v in sorted(options.variables.items())]
        or None,
    )
    warn_if_public(
        space, public=not options.private, trigger=options.trigger is not None, progress=progress
    )
    return SetupResult(
        space,
        created=True,
        variables_set=sorted(options.variables),
        credential="set" if options.token else "unchanged",
        trigger="set" if options.trigger else "none",
        public=not options.private,
        sleep_time=sleep_time,
        hardware=options.hardware,
    )


def settle(hub: Hub, options: SetupOptions, result: SetupResult, *, progress: Progress) -> None:
    """Bring an existing Space's variables and secret to ``options`` (before a commit, so
    the build starts with them)."""
    space = options.space
    current = hub.call(f"read the variables of {space}", hub.api.get_space_variables, space)
    have = {key: var.value for key, var in current.items()}
    to_set = {k: v for k, v in options.variables.items() if have.get(k) != v}
    to_delete = sorted(k for k in have if k in options.managed and k not in options.variables)
    stored = hub.call(f"read the secrets of {space}", hub.api.get_space_secrets, space)
    secret = stored.get(contract.ENV_TOKEN)
    new_token = options.token is not None and (
        secret is None or not matches(secret.description, options.token)
    )
    guard = stored.get(TRIGGER_ENV)
    new_trigger = options.trigger is not None and (
        guard is None or not matches(guard.description, options.trigger)
    )
    if secret is None and options.token is None:
        raise UsageError(
            f"the Space {space} has no HF_TOKEN secret and {SPACE_TOKEN_ENV} is not set: "
            f"training could not push its adapter. Set {SPACE_TOKEN_ENV} to a fine-grained "
            "token that can write the output repo, then run this again"
        )
    if to_set or to_delete or new_token or new_trigger:
        secrets_changed = ["HF_TOKEN"] * new_token + [TRIGGER_ENV] * new_trigger
        what = ", ".join([*sorted(to_set), *to_delete, *secrets_changed])
        refuse_if_training(hub, space, f"changing {what}")
    for key, value in sorted(to_set.items()):
        progress(f"variable {key}={value}" + (" (was unset)" if key not in have else ""))
        hub.call(f"set variable {key} of {space}", hub.api.add_space_variable, space, key, value)
        result.variables_set.append(key)
    for key in to_delete:
        progress(f"variable {key} deleted (no longer configured)")
        hub.call(f"delete variable {key} of {space}", hub.api.delete_space_variable, space, key)
        result.variables_deleted.append(key)
    if new_token:
        assert options.token is not None
        progress(f"secret HF_TOKEN set from {SPACE_TOKEN_ENV} (the value is not shown)")
        hub.call(
            f"set the HF_TOKEN secret of {space}",
            hub.api.add_space_secret,
            space,
            contract.ENV_TOKEN,
            options.token,
            description=fingerprint(options.token),
        )
        result.credential = "set"
    elif options.token is None:
        result.credential = "kept"
        progress(f"{SPACE_TOKEN_ENV} not set: the Space's HF_TOKEN secret is left as it is")
    if new_trigger:
        assert options.trigger is not None
        progress(f"secret {TRIGGER_ENV} set (the value is not shown)")
        hub.call(
            f"set the {TRIGGER_ENV} secret of {space}",
            hub.api.add_space_secret,
            space,
            TRIGGER_ENV,
            options.trigger,
            description=fingerprint(options.trigger),
        )
    result.trigger = "set" if new_trigger else ("unchanged" if guard is not None else "none")
    info = hub.call(f"read Space {space}", hub.api.space_info, space)
    result.public = info.private is False
    warn_if_public(
        space, public=result.public, trigger=guard is not None or new_trigger, progress=progress
    )


def request_hardware(
    hub: Hub, options: SetupOptions, result: SetupResult, *, progress: Progress
) -> None:
    """Request ``options.hardware`` when the Space asks for another flavor (restarts it),
    then its sleep time (which the free flavor does not have)."""
    if result.created or (not options.hardware and options.sleep_time is None):
        return
    runtime = get_runtime(hub, options.space)
    if options.hardware and runtime.requested_hardware != options.hardware:
        _move(hub, options, result, runtime.requested_hardware, progress)
        runtime = get_runtime(hub, options.space)
    if options.sleep_time is None:
        return
    if runtime.requested_hardware == FREE_FLAVOR:
        progress(f"sleep_time does not apply to {FREE_FLAVOR}: it sleeps after 48 h idle")
    elif runtime.raw.get("gcTimeout") != options.sleep_time:
        progress(f"sleep time {options.sleep_time} s")
        hub.call(
            f"set the sleep time of {options.space}",
            hub.api.set_space_sleep_time,
            options.space,
            options.sleep_time,
        )
        result.sleep_time = options.sleep_time


def _move(
    hub: Hub, options: SetupOptions, result: SetupResult, current: str | None, progress: Progress
) -> None:
    assert options.hardware is not None
    refuse_if_training(hub, options.space, f"moving it to {options.hardware}")
    progress(
        f"requesting {options.hardware} (the Space is on {current or 'no hardware'}); "
        "it restarts on it",
    )
    hub.call(
        f"request {options.hardware} hardware for Space {options.space}",
        hub.api.request_space_hardware,
        options.space,
        options.hardware,
    )
    result.hardware = options.hardware


def setup(hub: Hub, options: SetupOptions, *, progress: Progress | None = None) -> SetupResult:
    """Create or settle the Space: secret, variables, sleep time, hardware.

    Raises:
        UsageError: no ``SPACE_HF_TOKEN`` for a Space without the secret (exit 2).
        CheckFailed: the Space is training a run; nothing was changed (exit 1).
        AuthError, HubUnreachable: the Hub refused or kept failing (exit 2, 3).
    """
    progress = progress or progress_for("setup")
    result = ensure_space(hub, options, progress=progress)
    if result is None:
        result = SetupResult(options.space)
        settle(hub, options, result, progress=progress)
        request_hardware(hub, options, result, progress=progress)
    if result.writes == 0 and result.sleep_time is None:
        progress(f"{options.space} is set up as configured: nothing to change")
    return result


__all__ = [
    "MANAGED_VARIABLES",
    "SPACE_TOKEN_ENV",
    "TRIGGER_ENV",
    "SetupOptions",
    "SetupResult",
    "ensure_space",
    "fingerprint",
    "matches",
    "refuse_if_training",
    "request_hardware",
    "settle",
    "setup",
    "space_token_from_env",
    "trigger_from_env",
    "wanted_variables",
    "warn_if_public",
]
