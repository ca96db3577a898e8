"""policy/space.yaml: what the linter enforces, loaded and checked with line numbers.

Every key has a default here, so a policy file only states what it changes (and the
linter still works in a repository without one, e.g. as a pre-commit hook). A key the
loader does not know, a wrong type, an unknown rule id or a bad regex is exit 2 with
``file:line``: a typo in a policy must never silently switch a check off.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacetrain import schema
from spacetrain.errors import InputFileError
from spacetrain.inputs import read_text
from spacetrain.lint.model import Severity
from spacetrain.yamlfile import load_yaml

DEFAULT_POLICY_PATH = Path("policy/space.yaml")

# The defaults; policy/space.yaml restates them with the reasons.
DEFAULTS: dict[str, Any] = {
    "version": 1,
    "files": {
        "required": [".gitattributes", "README.md", "Dockerfile", "app.py", "train.py"],
        "allowed": [],
        "forbidden": ["requirements.txt", "pre-requirements.txt", "packages.txt", ".env"],
        "ignore": [".git/**", "__pycache__/**", "**/__pycache__/**", "*.pyc", ".DS_Store"],
    },
    "base_images": {
        "allow": ["nvidia/cuda:*"],
    },
    "pip": {
        "torch_packages": ["torch", "torchvision", "torchaudio"],
        "cuda_index": r"^https://download\.pytorch\.org/whl/cu\d+/?$",
    },
    "readme": {
        "sdk": "docker",
        "required_keys": ["title", "sdk", "app_port"],
    },
    "app": {
        "file": "app.py",
        "port": 7860,
        "listen": ["0.0.0.0", "::"],  # noqa: S104 - a Space must bind every interface
    },
    "gradio": {
        "forbidden_kwargs": {
            "launch": {
                "show_api": "removed in Gradio 6 (TypeError); use footer_links=[...]",
            },
            "Blocks": {
                "theme": "moved to launch() in Gradio 6",
                "css": "moved to launch() in Gradio 6",
                "css_paths": "moved to launch() in Gradio 6",
                "js": "moved to launch() in Gradio 6",
                "head": "moved to launch() in Gradio 6",
                "head_paths": "moved to launch() in Gradio 6",
            },
            "click": {"show_api": "removed in Gradio 6; use api_visibility="},
            "change": {"show_api": "removed in Gradio 6; use api_visibility="},
            "submit": {"show_api": "removed in Gradio 6; use api_visibility="},
        },
    },
    "secrets": {
        "token_patterns": [
            {"name": "Hugging Face access token", "regex": r"\bhf_[A-Za-z]{34}\b"},
            {"name": "Hugging Face org API token", "regex": r"\bapi_org_[A-Za-z]{34}\b"},
        ],
        "env_names": [
            "HF_TOKEN",
            "HUGGING_FACE_HUB_TOKEN",
            "HUGGINGFACEHUB_API_TOKEN",
            "HF_API_TOKEN",
        ],
        "min_entropy": 3.0,
    },
    "user": {"uid": 1000},
    "resolve": {
        "python_version": None,  # None: inferred from the base image, else 3.11
        "platform": "manylinux_2_28_x86_64",
        "timeout_s": 600,
    },
    "rules": {},
    "ignore": [],
}


@dataclass(frozen=True)
class PolicyIgnore:
    """A policy-level suppression: ``rule`` findings on files matching ``path`` (a glob)."""

    rule: str
    path: str
    reason: str


@dataclass(frozen=True)
class Policy:
    """The loaded policy: ``data`` has every key of DEFAULTS, overridden by the file."""

    data: dict[str, Any]
    source: str  # the file it came from, or "<defaults>"
    severities: dict[str, Severity]
    ignores: tuple[PolicyIgnore, ...]

    def __getitem__(self, section: str) -> Any:
        return self.data[section]

    @classmethod
    def defaults(cls) -> Policy:
        """The built-in policy, as if policy/space.yaml were empty."""
        return cls(copy.deepcopy(DEFAULTS), "<defaults>", {}, ())


def load_policy(path: str | Path | None) -> Policy:
    """Load ``path``; ``None`` means policy/space.yaml if it exists, else the defaults.

    Raises:
        InputFileError: missing or unreadable file, bad YAML, unknown key, wrong type,
            unknown rule id, bad severity or regex (exit 2, with the line).
    """
    from spacetrain.lint.registry import load_rules

    if path is None:
        if not DEFAULT_POLICY_PATH.is_file():
            return Policy.defaults()
        path = DEFAULT_POLICY_PATH
    shown = Path(path).as_posix()
    try:
        text = read_text(path)  # a FIFO or a folder is refused before anything blocks
    except InputFileError as exc:
        raise InputFileError(shown, f"cannot read policy: {exc.detail}", line=exc.line) from None
    raw = load_yaml(shown, text)
    doc = schema.Document(shown, raw, root="the policy")
    data = doc.validate(POLICY_SCHEMA) if raw is not None else {}
    merged = copy.deepcopy(DEFAULTS)
    for key, value in data.items():
        if isinstance(value, dict) and key not in {"rules"}:
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    registry = load_rules()

    def known_rule(rule_id: str, at: tuple[Any, ...], line_at: tuple[Any, ...]) -> str:
        if rule_id not in registry:
            doc.fail(
                at,
                f"unknown rule id {rule_id!r}{schema.did_you_mean(rule_id, registry)}",
                "`spacetrain rule` lists them",
                line_at=line_at,
            )
        return rule_id

    severities = {
        known_rule(rule_id, ("rules",), ("rules", rule_id)): Severity(level)
        for rule_id, level in data.get("rules", {}).items()
    }
    ignores = tuple(
        PolicyIgnore(
            known_rule(item["rule"], ("ignore", n, "rule"), ("ignore", n, "rule")),
            item["path"],
            item["reason"].strip(),
        )
        for n, item in enumerate(data.get("ignore", []))
    )
    return Policy(merged, shown, severities, ignores)


# ------------------------------------------------------------------ schema

_NAMES = schema.Items(schema.Text(), what="a list of strings")
_SEVERITIES = tuple(s.value for s in Severity)

# Every key a policy file may set; the values of DEFAULTS fill in what it leaves out.
POLICY_SCHEMA = schema.Table(
    (
        schema.Field("version", schema.Number(whole=True, what="the integer 1")),
        schema.Field(
            "files",
            schema.Table(
                tuple(
                    schema.Field(k, _NAMES) for k in ("required", "allowed", "forbidden", "ignore")
                )
            ),
        ),
        schema.Field("base_images", schema.Table((schema.Field("allow", _NAMES),))),
        schema.Field(
            "pip",
            schema.Table(
                (
                    schema.Field("torch_packages", _NAMES),
                    schema.Field("cuda_index", schema.Pattern()),
                )
            ),
        ),
        schema.Field(
            "readme",
            schema.Table(
                (schema.Field("sdk", schema.Text()), schema.Field("required_keys", _NAMES))
            ),
        ),
        schema.Field(
            "app",
            schema.Table(
                (
                    schema.Field("file", schema.Text(what="a file name")),
                    schema.Field(
                        "port",
                        schema.Nullable(
                            schema.Number(
                                low=1, high=65535, whole=True, what="a port number from 1 to 65535"
                            )
                        ),
                    ),
                    schema.Field("listen", _NAMES),
                )
            ),
        ),
        schema.Field(
            "gradio",
            schema.Table(
                (
                    schema.Field(
                        "forbidden_kwargs",
                        schema.Mapping(
                            schema.AnyOf(
                                (_NAMES, schema.Mapping(schema.Text(what="a reason string"))),
                                what="a list of kwargs or a mapping of kwarg: reason",
                            ),
                            what="a mapping of callable name to kwargs",
                        ),
                    ),
                )
            ),
        ),
        schema.Field(
            "secrets",
            schema.Table(
                (
                    schema.Field(
                        "token_patterns",
                        schema.Items(
                            schema.Table(
                                (
                                    schema.Field("name", schema.Text(), required=True),
                                    schema.Field("regex", schema.Pattern(), required=True),
                                ),
                                what="a mapping {name, regex}",
                            ),
                            what="a list of {name, regex}",
                        ),
                    ),
                    schema.Field("env_names", _NAMES),
                    schema.Field("min_entropy", schema.Number()),
                )
            ),
        ),
        schema.Field(
            "user", schema.Table((schema.Field("uid", schema.Number(whole=True, what="a uid")),))
        ),
        schema.Field(
            "resolve",
            schema.Table(
                (
                    schema.Field(
                        "python_version",
                        schema.Nullable(schema.Text(what="a version string like '3.11'")),
                    ),
                    schema.Field("platform", schema.Text(what="a pip platform tag")),
                    schema.Field("timeout_s", schema.Number(what="a number of seconds")),
                )
            ),
        ),
        schema.Field(
            "rules",
            schema.Mapping(
                schema.Text(choices=_SEVERITIES), what="a mapping of rule id to error|warning|off"
            ),
        ),
        schema.Field(
            "ignore",
            schema.Items(
                schema.Table(
                    (
                        schema.Field("rule", schema.Text(), required=True),
                        schema.Field("path", schema.Text(), required=True),
                        schema.Field(
                            "reason",
                            schema.Text(
                                what="a non-empty reason",
                                hint="say why the finding does not apply here",
                            ),
                            required=True,
                            hint="say why the finding does not apply here",
                        ),
                    ),
                    what="a mapping {rule, path, reason}",
                ),
                what="a list of {rule, path, reason}",
            ),
        ),
    ),
    what="a mapping",
)
