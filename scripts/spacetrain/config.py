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

from spacetrain import schema
from spacetrain.errors import InputFileError, UsageError
from spacetrain.inputs import read_text

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _token_free_env_name() -> str:
    """A variable NAME that is not a token's: a Space variable is public and a job's env
    is shown by inspect_job (the names: :data:`spacetrain.redact.TOKEN_ENVS`)."""
    from spacetrain.redact import TOKEN_ENVS  # loads space/train.py: only when validating

    return rf"^(?!(?:{'|'.join(map(re.escape, TOKEN_ENVS))})$)[A-Za-z_][A-Za-z0-9_]*$"


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
    return _parse_toml(path, read_text(path))


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputFileError(path, f"invalid TOML: {exc}") from None
    except ValueError as exc:  # an integer of thousands of digits (int()'s own limit)
        raise InputFileError(path, f"invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise InputFileError(path, "invalid TOML: arrays or tables nested too deeply") from None


# ------------------------------------------------------------------ the schema

_SECTION = ("tool", "spacetrain")


def _repo_id(value: Any) -> str:
    if not isinstance(value, str) or not _REPO_ID.match(value):
        raise ValueError(f"must be a repo id like owner/name, not {schema.shown(value)}")
    return value


def _hyperparameter(name: str) -> schema.Custom:
    """``train.<name>``, checked by space/train.py's own rules (through contract)."""
    from spacetrain import contract

    def check(value: Any) -> Any:
        try:
            return contract.check_param(name, value, source=name)
        except contract.ParamError as exc:  # "epochs must be ...": the name is shown already
            raise ValueError(str(exc).removeprefix(name).lstrip(": ")) from None

    return schema.Custom(check)


def _backend_fields(*, defaults: bool) -> tuple[schema.Field, ...]:
    """``backend``, ``job_flavor``, ``job_timeout``: the project's (with defaults), or an
    adapter's (without: an adapter inherits the project's)."""

    def field_(name: str, spec: schema.Spec, default: Any) -> schema.Field:
        return schema.Field(name, spec, default=default) if defaults else schema.Field(name, spec)

    return (
        field_(
            "backend",
            schema.Text(
                choices=BACKENDS,
                what="'space' or 'job'",
                hint="space: the Space's API; job: an HF Job in the Space's image",
            ),
            "space",
        ),
        field_(
            "job_flavor",
            schema.Text(choices=JOB_FLAVORS, what="a Jobs flavor", hint="e.g. a10g-small, l4x1"),
            DEFAULT_JOB_FLAVOR,
        ),
        field_(
            "job_timeout",
            schema.Number(low=1, high=7 * 86400, whole=True, what="whole seconds, 1 to 604800"),
            DEFAULT_JOB_TIMEOUT,
        ),
    )


def _adapter_schema() -> schema.Table:
    from spacetrain import contract

    return schema.Table(
        (
            schema.Field("base_model", schema.Text(), required=True, hint='add base_model = "..."'),
            schema.Field(
                "dataset", schema.Text(), required=True, hint='add dataset = "owner/name"'
            ),
            schema.Field(
                "output_repo",
                schema.Custom(_repo_id),
                required=True,
                hint='add output_repo = "owner/name"',
            ),
            schema.Field("suite", schema.Text()),  # default: policy/evals/<adapter>.yaml
            schema.Field("base_revision", schema.Text()),
            schema.Field("dataset_revision", schema.Text()),
            schema.Field(
                "train",
                schema.Table(
                    tuple(schema.Field(n, _hyperparameter(n)) for n in contract.HYPERPARAMETERS),
                    what="a table of hyper-parameters",
                ),
                default={},
            ),
            *_backend_fields(defaults=False),
        ),
        what="a table",
    )


def _config_schema() -> schema.Table:
    flavor = schema.Text(
        choices=SPACE_FLAVORS, what="a Space flavor", hint="see huggingface_hub.SpaceHardware"
    )
    return schema.Table(
        (
            schema.Field(
                "space", schema.Custom(_repo_id), required=True, hint='add space = "owner/name"'
            ),
            schema.Field("space_dir", schema.Text(), default="space"),
            schema.Field("hardware", flavor, default="a10g-small"),
            schema.Field(
                "after_training",
                schema.Text(
                    choices=("pause", *SPACE_FLAVORS),
                    what="'pause' or a Space flavor",
                    hint="pause stops the GPU bill; a CPU flavor keeps the app up",
                ),
                default="pause",
            ),
            schema.Field("private", schema.Flag(), default=True),
            schema.Field(
                "sleep_time",
                schema.Number(low=1, whole=True, also=(-1,), what="seconds (>= 1) or -1 for never"),
                default=None,
            ),
            schema.Field(
                "variables",
                schema.Mapping(
                    schema.Text(empty=True, what='"text"'),
                    key=schema.Text(
                        pattern=_token_free_env_name(),
                        what="a NAME of letters, digits and _, not a token's (tokens are "
                        "secrets: set HF_TOKEN through SPACE_HF_TOKEN)",
                    ),
                    what='a table of NAME = "text"',
                ),
                default={},
            ),
            schema.Field("gate", schema.Text(), default="policy/gate.yaml"),
            schema.Field("lint_policy", schema.Text(), default="policy/space.yaml"),
            schema.Field(
                "adapters",
                schema.Mapping(_adapter_schema(), what="a table of tables"),
                default={},
            ),
            *_backend_fields(defaults=True),
        ),
        what="a table",
    )


def _name(at: tuple[Any, ...]) -> str:
    """``[tool.spacetrain] hardware``, ``[tool.spacetrain.adapters.x] train.epochs``."""
    if len(at) >= 2 and at[0] == "adapters":
        header, rest = f"[tool.spacetrain.adapters.{at[1]}]", at[2:]
    else:
        header, rest = "[tool.spacetrain]", at
    return f"{header} {schema.dotted(rest)}" if rest else header


def toml_lines(text: str) -> dict[tuple[str, ...], int]:
    """Where each table header and ``key =`` line is (tomllib reports no lines).

    A best effort for error messages: headers ``[a.b]`` and keys ``k = ...`` (bare or
    dotted) outside multi-line strings. An entry it cannot place gets the line of the
    nearest enclosing one it found.
    """
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_string: str | None = None
    open_brackets = 0  # inside a multi-line array or inline table
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        if open_brackets > 0:
            open_brackets += _brackets(line)
            continue
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
        if header:
            table = _toml_key(header.group(1))
            lines.setdefault(table, number)
            continue
        entry = re.match(r"^([A-Za-z0-9_\-.\"' ]+?)\s*=(.*)$", line)
        if entry:
            lines.setdefault((*table, *_toml_key(entry.group(1))), number)
            for quote in ('"""', "'''"):
                if entry.group(2).count(quote) % 2 == 1:
                    in_string = quote
            open_brackets = max(0, _brackets(entry.group(2)))
    return lines


def _brackets(text: str) -> int:
    """Opened minus closed ``[``/``{`` outside quotes and comments (roughly)."""
    text = re.sub(r'"(\\.|[^"\\])*"|\'[^\']*\'', "", text).split("#", 1)[0]
    return text.count("[") + text.count("{") - text.count("]") - text.count("}")


def _toml_key(text: str) -> tuple[str, ...]:
    """``a."b.c".d`` -> ("a", "b.c", "d"): dots split keys except inside quotes."""
    parts = re.findall(r"\"[^\"]*\"|'[^']*'|[^.\s]+", text)
    return tuple(part.strip("\"'") for part in parts)


def load_config(root: Path | None = None) -> ProjectConfig:
    """Read and check ``[tool.spacetrain]``.

    Raises:
        InputFileError: unreadable TOML, or a missing, unknown or ill-typed key, with
            its line (exit 2).
    """
    root = root or find_root()
    path = root / "pyproject.toml"
    text = read_text(path)
    section = _parse_toml(path, text).get("tool", {}).get("spacetrain")
    if not isinstance(section, dict):
        raise InputFileError(path, "has no [tool.spacetrain] table; see README 'Configuration'")
    found = toml_lines(text)

    def line(at: tuple[Any, ...]) -> int | None:
        full = (*_SECTION, *(str(step) for step in at))
        while full and full not in found:
            full = full[:-1]
        return found.get(full)

    doc = schema.Document(str(path), section, root="[tool.spacetrain]", line=line, name=_name)
    data = doc.validate(_config_schema())
    adapters = {
        name: AdapterConfig(
            name=name,
            base_model=raw["base_model"],
            dataset=raw["dataset"],
            output_repo=raw["output_repo"],
            suite=root / raw.get("suite", f"policy/evals/{name}.yaml"),
            base_revision=raw.get("base_revision"),
            dataset_revision=raw.get("dataset_revision"),
            train=raw["train"],
            backend=raw.get("backend", data["backend"]),
            job_flavor=raw.get("job_flavor", data["job_flavor"]),
            job_timeout=int(raw.get("job_timeout", data["job_timeout"])),
        )
        for name, raw in sorted(data["adapters"].items())
    }
    return ProjectConfig(
        root=root,
        space=data["space"],
        space_dir=root / data["space_dir"],
        hardware=data["hardware"],
        after_training=data["after_training"],
        gate=root / data["gate"],
        lint_policy=root / data["lint_policy"],
        adapters=adapters,
        private=data["private"],
        sleep_time=data["sleep_time"],
        variables=dict(data["variables"]),
        backend=data["backend"],
        job_flavor=data["job_flavor"],
        job_timeout=int(data["job_timeout"]),
    )


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
