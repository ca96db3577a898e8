"""The project's settings: ``[tool.spacetrain]`` in pyproject.toml.

One place says which Space trains which adapters, so the CLI, the workflows and the
offline rehearsal never disagree. Command-line flags override these values.

    [tool.spacetrain]
    space = "owner/kwanzaa-training"        # the Docker Space that trains
    space_dir = "space"                     # what `sync` uploads
    hardware = "a10g-small"                 # requested before training
    after_training = "pause"                # "pause" or a CPU flavor, e.g. "cpu-basic"
    private = true                          # a Space that set-up creates is private
    # sleep_time = 3600                     # optional: idle seconds before the Space sleeps
    # variables = {HF_HUB_ENABLE_HF_TRANSFER = "1"}   # optional: more Space variables
    backend = "space"                       # "space" (the Space's API) or "job" (HF Jobs)
    job_flavor = "a10g-small"               # the job backend's hardware (a Jobs flavor)
    job_timeout = 21600                     # seconds a job may run before the Hub ends it
    gate = "policy/gate.yaml"
    lint_policy = "policy/space.yaml"

    [tool.spacetrain.adapters.kwanzaa]
    base_model = "Qwen/Qwen2.5-0.5B-Instruct"
    dataset = "owner/kwanzaa-data"          # a dataset repo (see `spacetrain dataset push`)
    output_repo = "owner/kwanzaa-adapter"
    suite = "policy/evals/kwanzaa.yaml"
    # optional: base_revision, dataset_revision, and train = {epochs = 4, learning_rate = 2e-4}
    # (train takes the hyper-parameters of space/train.py's PARAMS, checked by its rules);
    # backend, job_flavor and job_timeout override the project's for this adapter
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import JobHardware, SpaceHardware

from spacetrain.errors import InputFileError, UsageError
from spacetrain.inputs import read_text

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The Hub's own list (huggingface_hub's SpaceHardware), so a new flavor needs no release here.
SPACE_FLAVORS: tuple[str, ...] = tuple(flavor.value for flavor in SpaceHardware)
JOB_FLAVORS: tuple[str, ...] = tuple(flavor.value for flavor in JobHardware)
# Where training runs: the Space's own Gradio API, or an HF Job in the Space's image.
BACKENDS = ("space", "job")
DEFAULT_JOB_FLAVOR = "a10g-small"
DEFAULT_JOB_TIMEOUT = 6 * 3600  # seconds; the train stage's own default deadline


@dataclass(frozen=True)
class AdapterConfig:
    """One adapter the Space trains: its base, its data, where it goes, how it is judged."""

    name: str
    base_model: str
    dataset: str
    output_repo: str
    suite: Path
    base_revision: str | None = None
    dataset_revision: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    backend: str = "space"  # the adapter's own, else the project's
    job_flavor: str = DEFAULT_JOB_FLAVOR
    job_timeout: int = DEFAULT_JOB_TIMEOUT


@dataclass(frozen=True)
class ProjectConfig:
    """``[tool.spacetrain]``, with paths resolved against the project root."""

    root: Path
    space: str
    space_dir: Path
    hardware: str
    after_training: str
    gate: Path
    lint_policy: Path
    adapters: dict[str, AdapterConfig]
    private: bool = True
    sleep_time: int | None = None
    variables: dict[str, str] = field(default_factory=dict)
    backend: str = "space"
    job_flavor: str = DEFAULT_JOB_FLAVOR
    job_timeout: int = DEFAULT_JOB_TIMEOUT

    def adapter(self, name: str | None) -> AdapterConfig:
        """The adapter called ``name``; without a name, the only one there is."""
        if name is None:
            if len(self.adapters) == 1:
                return next(iter(self.adapters.values()))
            known = ", ".join(sorted(self.adapters)) or "none"
            raise UsageError(f"name the adapter with --adapter (configured: {known})")
        try:
            return self.adapters[name]
        except KeyError:
            known = ", ".join(sorted(self.adapters)) or "none"
            raise UsageError(
                f"no adapter {name!r} in [tool.spacetrain.adapters] (configured: {known})"
            ) from None


def find_root(start: Path | None = None) -> Path:
    """The nearest folder, upwards from ``start`` (the cwd), holding a pyproject.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    raise UsageError(f"no pyproject.toml in {here} or above; run from the project folder")


def read_pyproject(path: Path) -> dict[str, Any]:
    """The TOML of ``path``: every way it can be bad is one line naming it (exit 2).

    Raises:
        InputFileError: not a regular file, not UTF-8, not TOML, or nested too deeply.
    """
    text = read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(path, f"invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise InputFileError(path, "invalid TOML: arrays or tables nested too deeply") from None


def load_config(root: Path | None = None) -> ProjectConfig:
    """Read and check ``[tool.spacetrain]``.

    Raises:
        InputFileError: unreadable TOML, or a missing or ill-typed key (exit 2).
    """
    root = root or find_root()
    path = root / "pyproject.toml"
    section = read_pyproject(path).get("tool", {}).get("spacetrain")
    if not isinstance(section, dict):
        raise InputFileError(path, "has no [tool.spacetrain] table; see README 'Configuration'")
    where = "[tool.spacetrain]"
    space = _repo_id(section, "space", path, where)
    hardware = _text(section, "hardware", path, where, default="a10g-small")
    if hardware not in SPACE_FLAVORS:
        raise InputFileError(path, f"{where} hardware {hardware!r} is not a Space flavor")
    after = _text(section, "after_training", path, where, default="pause")
    if after != "pause" and after not in SPACE_FLAVORS:
        raise InputFileError(
            path, f"{where} after_training {after!r} must be 'pause' or a Space flavor"
        )
    adapters_raw = section.get("adapters", {})
    if not isinstance(adapters_raw, dict):
        raise InputFileError(path, f"{where} adapters must be a table of tables")
    job = _job_settings(section, path, where, BackendSettings())
    adapters = {
        name: _adapter(name, raw, root, path, job) for name, raw in sorted(adapters_raw.items())
    }
    private = section.get("private", True)
    if not isinstance(private, bool):
        raise InputFileError(path, f"{where} private must be true or false")
    sleep_time = section.get("sleep_time")
    if sleep_time is not None and (
        isinstance(sleep_time, bool)
        or not isinstance(sleep_time, int)
        or (sleep_time < 1 and sleep_time != -1)
    ):
        raise InputFileError(path, f"{where} sleep_time must be seconds (>= 1) or -1 for never")
    variables = section.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str)
        for k, v in variables.items()
    ):
        raise InputFileError(
            path, f'{where} variables must be a table of NAME = "text" (letters, digits, _)'
        )
    return ProjectConfig(
        root=root,
        space=space,
        space_dir=root / _text(section, "space_dir", path, where, default="space"),
        hardware=hardware,
        after_training=after,
        gate=root / _text(section, "gate", path, where, default="policy/gate.yaml"),
        lint_policy=root / _text(section, "lint_policy", path, where, default="policy/space.yaml"),
        adapters=adapters,
        private=private,
        sleep_time=sleep_time,
        variables=dict(variables),
        backend=job.backend,
        job_flavor=job.job_flavor,
        job_timeout=job.job_timeout,
    )


@dataclass(frozen=True)
class BackendSettings:
    """Where an adapter trains: ``backend``, and the job backend's flavor and timeout."""

    backend: str = "space"
    job_flavor: str = DEFAULT_JOB_FLAVOR
    job_timeout: int = DEFAULT_JOB_TIMEOUT


def _job_settings(table: dict, path: Path, where: str, inherit: BackendSettings) -> BackendSettings:
    """``backend``, ``job_flavor`` and ``job_timeout`` of ``table``, else ``inherit``'s."""
    backend = table.get("backend", inherit.backend)
    if backend not in BACKENDS:
        raise InputFileError(path, f"{where} backend {backend!r} must be 'space' or 'job'")
    flavor = table.get("job_flavor", inherit.job_flavor)
    if flavor not in JOB_FLAVORS:
        raise InputFileError(
            path, f"{where} job_flavor {flavor!r} is not a Jobs flavor (e.g. a10g-small, l4x1)"
        )
    timeout = table.get("job_timeout", inherit.job_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise InputFileError(path, f"{where} job_timeout must be whole seconds (>= 1)")
    return BackendSettings(backend=backend, job_flavor=flavor, job_timeout=timeout)


def _adapter(name: str, raw: Any, root: Path, path: Path, job: BackendSettings) -> AdapterConfig:
    where = f"[tool.spacetrain.adapters.{name}]"
    if not isinstance(raw, dict):
        raise InputFileError(path, f"{where} must be a table")
    job = _job_settings(raw, path, where, job)
    train = raw.get("train", {})
    if not isinstance(train, dict):
        raise InputFileError(path, f"{where} train must be a table")
    from spacetrain import contract

    checked = {}
    for key, value in train.items():
        if key not in contract.HYPERPARAMETERS:
            known = ", ".join(contract.HYPERPARAMETERS)
            raise InputFileError(path, f"{where} train.{key} is unknown (known: {known})")
        try:
            checked[key] = contract.check_param(key, value, source=f"{where} train.{key}")
        except contract.ParamError as exc:
            raise InputFileError(path, str(exc)) from None
    return AdapterConfig(
        name=name,
        base_model=_text(raw, "base_model", path, where),
        dataset=_text(raw, "dataset", path, where),
        output_repo=_repo_id(raw, "output_repo", path, where),
        suite=root / _text(raw, "suite", path, where, default=f"policy/evals/{name}.yaml"),
        base_revision=_optional(raw, "base_revision", path, where),
        dataset_revision=_optional(raw, "dataset_revision", path, where),
        train=checked,
        backend=job.backend,
        job_flavor=job.job_flavor,
        job_timeout=job.job_timeout,
    )


def _text(table: dict, key: str, path: Path, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise InputFileError(path, f'{where} needs {key} = "..."')
    if not isinstance(value, str) or not value.strip():
        raise InputFileError(path, f"{where} {key} must be a non-empty string")
    return value


def _optional(table: dict, key: str, path: Path, where: str) -> str | None:
    return _text(table, key, path, where) if key in table else None


def _repo_id(table: dict, key: str, path: Path, where: str) -> str:
    value = _text(table, key, path, where)
    if not _REPO_ID.match(value):
        raise InputFileError(path, f"{where} {key} {value!r} is not a repo id like owner/name")
    return value


__all__ = [
    "BACKENDS",
    "JOB_FLAVORS",
    "SPACE_FLAVORS",
    "AdapterConfig",
    "ProjectConfig",
    "find_root",
    "load_config",
    "read_pyproject",
]
