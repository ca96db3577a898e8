"""policy/space.yaml: what the linter enforces, loaded and checked with line numbers.

Every key has a default here, so a policy file only states what it changes (and the
linter still works in a repository without one, e.g. as a pre-commit hook). A key the
loader does not know, a wrong type, an unknown rule id or a bad regex is exit 2 with
``file:line``: a typo in a policy must never silently switch a check off.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spacetrain.errors import InputFileError
from spacetrain.inputs import read_bytes
from spacetrain.lint.model import Severity

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
    from spacetrain.lint.space_folder import duplicate_key

    if path is None:
        if not DEFAULT_POLICY_PATH.is_file():
            return Policy.defaults()
        path = DEFAULT_POLICY_PATH
    shown = Path(path).as_posix()
    try:
        raw = read_bytes(path)  # a FIFO or a folder is refused before anything blocks
    except InputFileError as exc:
        raise InputFileError(shown, f"cannot read policy: {exc.detail}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputFileError(shown, "policy is not valid UTF-8", line=line) from None
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else {}
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputFileError(shown, f"invalid YAML: {problem}", line=line) from None
    except RecursionError:  # PyYAML recurses once per nesting level
        raise InputFileError(shown, "invalid YAML: lists or mappings nested too deeply") from None
    if data is None:
        data = {}
    duplicate = duplicate_key(node)
    if duplicate is not None:
        raise InputFileError(shown, f"key {duplicate[1]!r} appears twice", line=duplicate[0])
    checker = _Checker(shown, node)
    checker.check(data, _SCHEMA, ())
    merged = copy.deepcopy(DEFAULTS)
    for key, value in data.items():
        if isinstance(value, dict) and key not in {"rules"}:
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    registry = load_rules()
    severities: dict[str, Severity] = {}
    for rule_id, level in (data.get("rules") or {}).items():
        if rule_id not in registry:
            raise InputFileError(
                shown,
                f"unknown rule id {rule_id!r} under rules:; `spacetrain rule` lists them",
                line=checker.line_of(("rules", rule_id)),
            )
        severities[rule_id] = Severity(level)
    ignores = []
    for n, item in enumerate(data.get("ignore") or []):
        if item["rule"] not in registry:
            raise InputFileError(
                shown,
                f"unknown rule id {item['rule']!r} under ignore:; `spacetrain rule` lists them",
                line=checker.line_of(("ignore", n, "rule")),
            )
        ignores.append(PolicyIgnore(item["rule"], item["path"], item["reason"].strip()))
    return Policy(merged, shown, severities, tuple(ignores))


# ------------------------------------------------------------------ schema

Check = Callable[["_Checker", Any, tuple[Any, ...]], None]


def _list_of_str(checker: _Checker, value: Any, where: tuple[Any, ...]) -> None:
    checker.expect(isinstance(value, list), where, "a list of strings")
    for n, item in enumerate(value):
        checker.expect(isinstance(item, str) and bool(item), (*where, n), "a non-empty string")


def _typed(*types: type, what: str, nullable: bool = False) -> Check:
    def check(checker: _Checker, value: Any, where: tuple[Any, ...]) -> None:
        ok = (value is None and nullable) or (
            (isinstance(value, types) and not isinstance(value, bool)) or bool in types
        )
        checker.expect(ok, where, what)

    return check


def _regex(checker: _Checker, value: Any, where: tuple[Any, ...]) -> None:
    checker.expect(isinstance(value, str), where, "a regular expression string")
    try:
        re.compile(value)
    except re.error as exc:
        checker.fail(where, f"is not a valid regular expression: {exc}")


def _port(checker: _Checker, value: Any, where: tuple[Any, ...]) -> None:
    ok = value is None or (
        isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    )
    checker.expect(ok, where, "a port number 1-65535 (or null)")


def _forbidden_kwargs(checker: _Checker, value: Any, where: tuple[Any, ...]) -> None:
    checker.expect(isinstance(value, dict), where, "a mapping of callable name to kwargs")
    for name, kwargs in value.items():
        at = (*where, name)
        if isinstance(kwargs, list):
            _list_of_str(checker, kwargs, at)
        else:
            checker.expect(isinstance(kwargs, dict), at, "a list of kwargs or kwarg: reason")
            for kw, reason in kwargs.items():
                checker.expect(isinstance(reason, str), (*at, kw), "a reason string")


def _token_patterns(checker: _Checker, value: Any, where: tuple[Any, ...]) -> None:
    checker.expect(isinstance(value, list), where, "a list of {name, regex}")
    for n, item in enumerate(value):
        checker.check(item, {"name": _typed(str, what="a string"), "regex": _regex}, (*where, n))
        for key in ("name", "regex"):
            checker.expect(key in item, (*where, n), f"a mapping with {key!r}")


def _severities(checker: _Checker, value: Any, where: tuple[Any, ...]) -> None:
    checker.expect(isinstance(value, dict), where, "a mapping of rule id to error|warning|off")
    levels = [s.value for s in Severity]
    for rule_id, level in value.items():
        checker.expect(level in levels, (*where, rule_id), f"one of {', '.join(levels)}")


def _ignores(checker: _Checker, value: Any, where: tuple[Any, ...]) -> None:
    checker.expect(isinstance(value, list), where, "a list of {rule, path, reason}")
    string = _typed(str, what="a string")
    for n, item in enumerate(value):
        checker.check(item, {"rule": string, "path": string, "reason": string}, (*where, n))
        for key in ("rule", "path", "reason"):
            checker.expect(key in item, (*where, n), f"a mapping with {key!r}")
        checker.expect(bool(item["reason"].strip()), (*where, n, "reason"), "a non-empty reason")


_SCHEMA: dict[str, Any] = {
    "version": _typed(int, what="the integer 1"),
    "files": {
        "required": _list_of_str,
        "allowed": _list_of_str,
        "forbidden": _list_of_str,
        "ignore": _list_of_str,
    },
    "base_images": {"allow": _list_of_str},
    "pip": {"torch_packages": _list_of_str, "cuda_index": _regex},
    "readme": {"sdk": _typed(str, what="a string"), "required_keys": _list_of_str},
    "app": {"file": _typed(str, what="a file name"), "port": _port, "listen": _list_of_str},
    "gradio": {"forbidden_kwargs": _forbidden_kwargs},
    "secrets": {
        "token_patterns": _token_patterns,
        "env_names": _list_of_str,
        "min_entropy": _typed(int, float, what="a number"),
    },
    "user": {"uid": _typed(int, what="an integer uid")},
    "resolve": {
        "python_version": _typed(str, what="a version string like '3.11'", nullable=True),
        "platform": _typed(str, what="a pip platform tag"),
        "timeout_s": _typed(int, float, what="a number of seconds"),
    },
    "rules": _severities,
    "ignore": _ignores,
}


class _Checker:
    """Walks the parsed policy beside its YAML node tree, so errors carry a line."""

    def __init__(self, path: str, node: yaml.Node | None) -> None:
        self.path = path
        self.node = node

    def line_of(self, where: tuple[Any, ...]) -> int | None:
        node = self.node
        line = node.start_mark.line + 1 if node is not None else None
        for step in where:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == step:
                        line, node = key.start_mark.line + 1, value
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
                if step >= len(node.value):
                    return line
                node = node.value[step]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def fail(self, where: tuple[Any, ...], detail: str) -> None:
        name = ".".join(str(s) for s in where) or "the policy"
        raise InputFileError(self.path, f"{name} {detail}", line=self.line_of(where))

    def expect(self, ok: bool, where: tuple[Any, ...], what: str) -> None:
        if not ok:
            self.fail(where, f"must be {what}")

    def check(self, value: Any, schema: Any, where: tuple[Any, ...]) -> None:
        if callable(schema):
            schema(self, value, where)
            return
        self.expect(isinstance(value, dict), where, "a mapping")
        for key, item in value.items():
            if key not in schema:
                known = ", ".join(sorted(schema))
                self.fail((*where, key), f"is not a policy key (known here: {known})")
            self.check(item, schema[key], (*where, key))
