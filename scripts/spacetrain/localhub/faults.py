"""Fault injection as data: rules that turn matching requests into 429/5xx or slow them.

A rule is JSON, posted to ``/_localhub/faults`` or given for a whole run in
``LOCALHUB_FAULTS``::

    {"seed": 1, "error_rate": 0.3, "status_codes": [429, 503], "paths": "/api/*",
     "methods": ["POST"], "latency_ms": 50, "count": 5}

Each rule has its own ``random.Random(seed)``, so the same sequence of requests gets
the same faults. ``count`` caps how many requests a rule acts on (an error or a delay);
after that it is spent. Actions on Spaces (``kill_space``, ``force_stage``) are not
rules: :func:`parse_faults` checks them and hands them back for the server to carry out.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

from spacetrain.inputs import parse_json
from spacetrain.localhub.errors import BadRequest

RETRYABLE = (408, 429, 500, 502, 503, 504)
_RULE_KEYS = {"seed", "error_rate", "status_codes", "paths", "methods", "latency_ms", "count"}
_ACTION_KEYS = {"kill_space", "force_stage", "app_outage", "kill_job", "job_start_error"}


@dataclass
class FaultRule:
    """Errors and latency for requests whose path matches ``paths`` (fnmatch globs)."""

    status_codes: tuple[int, ...] = (503,)
    error_rate: float = 0.0
    paths: tuple[str, ...] = ("/api/*",)
    methods: tuple[str, ...] = ()
    latency_ms: int = 0
    count: int | None = None
    seed: int = 0
    acted: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method.upper() not in self.methods:
            return False
        return any(fnmatch(path, pattern) for pattern in self.paths)

    @property
    def spent(self) -> bool:
        return self.count is not None and self.acted >= self.count

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "error_rate": self.error_rate,
            "status_codes": list(self.status_codes),
            "paths": list(self.paths),
            "methods": list(self.methods),
            "latency_ms": self.latency_ms,
            "count": self.count,
            "acted": self.acted,
        }


@dataclass(frozen=True)
class Decision:
    """What to do to one request: sleep this long, then answer ``status`` (or go on)."""

    delay_s: float = 0.0
    status: int | None = None


def _as_tuple(value: Any, kind: type) -> tuple:
    items = value if isinstance(value, list | tuple) else [value]
    if any(isinstance(v, bool) or not isinstance(v, kind) for v in items):
        raise BadRequest(f"fault: expected {kind.__name__} values, got {value!r}")
    return tuple(items)


def _rule(spec: dict[str, Any]) -> FaultRule:
    unknown = set(spec) - _RULE_KEYS
    if unknown:
        raise BadRequest(f"fault: unknown keys {sorted(unknown)}")
    codes = _as_tuple(spec.get("status_codes", [503]), int)
    if any(not 400 <= c <= 599 for c in codes) or not codes:
        raise BadRequest(f"fault: status_codes must be 4xx/5xx, got {list(codes)}")
    rate = spec.get("error_rate", 1.0 if "status_codes" in spec else 0.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise BadRequest(f"fault: error_rate must be within [0, 1], got {rate}")
    count = spec.get("count")
    if count is not None and (not isinstance(count, int) or count < 0):
        raise BadRequest(f"fault: count must be a non-negative integer, got {count!r}")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadRequest(f"fault: seed must be an integer, got {seed!r}")
    latency = spec.get("latency_ms", 0)
    if isinstance(latency, bool) or not isinstance(latency, int) or latency < 0:
        raise BadRequest(f"fault: latency_ms must be a whole number >= 0, got {latency!r}")
    if rate == 0 and latency == 0:
        raise BadRequest("fault: a rule needs status_codes (or error_rate > 0) or latency_ms")
    return FaultRule(
        status_codes=codes,
        error_rate=float(rate),
        paths=_as_tuple(spec.get("paths", "/api/*"), str),
        methods=tuple(m.upper() for m in _as_tuple(spec.get("methods", []), str)),
        latency_ms=latency,
        count=count,
        seed=seed,
        rng=random.Random(seed),  # noqa: S311 - reproducible faults, not secrets
    )


def _action(item: dict[str, Any]) -> dict[str, Any]:
    """A Space action, checked: ``kill_space: repo``, ``app_outage: {repo, seconds}`` or
    ``force_stage: {repo, stage[, message, when]}`` (the stage is the supervisor's check)."""
    if "app_outage" in item:
        spec = item["app_outage"]
        if not isinstance(spec, dict) or "repo" not in spec:
            raise BadRequest("app_outage needs {repo, seconds}")
        seconds = spec.get("seconds", 5)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise BadRequest(f"app_outage: seconds must be a number >= 0, got {seconds!r}")
    elif "force_stage" in item:
        spec = item["force_stage"]
        if not isinstance(spec, dict) or "repo" not in spec or "stage" not in spec:
            raise BadRequest("force_stage needs {repo, stage[, message, when]}")
    return item


def parse_faults(payload: Any) -> tuple[list[FaultRule], list[dict[str, Any]]]:
    """Rules and Space actions from a JSON object, a list of them, or a JSON string."""
    if isinstance(payload, str | bytes):
        try:
            payload = parse_json(payload)  # a too-deep spec is a JSONDecodeError too
        except json.JSONDecodeError as exc:
            raise BadRequest(f"fault: not JSON: {exc}") from None
    items = payload if isinstance(payload, list) else [payload]
    rules: list[FaultRule] = []
    actions: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise BadRequest(f"fault: expected an object, got {item!r}")
        if set(item) & _ACTION_KEYS:
            if len(item) != 1:
                raise BadRequest(
                    "fault: kill_space / force_stage / app_outage / kill_job / job_start_error "
                    "must be alone in their object"
                )
            actions.append(_action(item))
        else:
            rules.append(_rule(item))
    return rules, actions


class FaultPlan:
    """The active rules; :meth:`decide` is called once per request, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def to_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json() for rule in self._rules]

    def decide(self, method: str, path: str) -> Decision:
        """The first live rule that matches acts: a delay, an error, or both."""
        if path.startswith("/_localhub/"):
            return Decision()
        with self._lock:
            for rule in self._rules:
                if rule.spent or not rule.matches(method, path):
                    continue
                status = None
                if rule.error_rate > 0 and rule.rng.random() < rule.error_rate:
                    status = rule.rng.choice(rule.status_codes)
                if status is None and not rule.latency_ms:
                    continue
                rule.acted += 1
                return Decision(delay_s=rule.latency_ms / 1000, status=status)
        return Decision()


__all__ = ["RETRYABLE", "Decision", "FaultPlan", "FaultRule", "parse_faults"]
