"""Check everything a training run depends on before any GPU time is spent.

A run that fails after the Space has built and a GPU has started costs money and an
hour; most such failures are knowable up front: a rejected or read-only token, a
namespace the token cannot write to, a base model or dataset that is not there at the
pinned revision, a ``space/`` that would be refused by `sync`, a suite or gate file
that does not load. Each becomes one line of a checklist, and the exit code is the
worst outcome (3 infrastructure > 2 bad input > 1 check failed > 0).

State written: ``base_revision`` and ``dataset_revision``, the commits the base model
and the dataset resolve to now, so later stages train and evaluate on exactly those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacetrain import contract
from spacetrain.config import AdapterConfig, ProjectConfig
from spacetrain.errors import (
    EXIT_FAILED,
    EXIT_INFRA,
    EXIT_OK,
    EXIT_USAGE,
    SpacetrainError,
)
from spacetrain.hub import Hub, token_from_env
from spacetrain.lint import run_rules
from spacetrain.stages.space_runtime import short
from spacetrain.stages.state import PipelineState
from spacetrain.stages.sync import load_lint_policy, local_files

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
WRITE_ROLES = frozenset(contract.trainer.WRITE_ROLES)


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    status: str  # ok | warn | FAIL | skip
    detail: str
    exit_code: int = EXIT_OK

    def line(self) -> str:
        """``ok    token        HF_TOKEN accepted: ...``."""
        return f"{self.status:<5} {self.name:<12} {self.detail}"


@dataclass
class PreflightResult:
    """Every check, in order; the exit code is the worst of theirs."""

    checks: list[Check] = field(default_factory=list)
    recorded: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """3 > 2 > 1 > 0: an unreachable Hub hides everything else."""
        return max((c.exit_code for c in self.checks), default=EXIT_OK)

    @property
    def failed(self) -> list[Check]:
        """The checks that did not pass."""
        return [c for c in self.checks if c.status == FAIL]

    def to_json(self) -> dict[str, Any]:
        """The checklist as a JSON object."""
        return {
            "exit_code": self.exit_code,
            "checks": [c.__dict__ for c in self.checks],
            "recorded": self.recorded,
        }


def _failure(name: str, exc: SpacetrainError) -> Check:
    return Check(name, FAIL, str(exc), exc.exit_code)


class _Preflight:
    def __init__(self, hub: Hub, config: ProjectConfig, adapter: AdapterConfig | None) -> None:
        self.hub, self.config, self.adapter = hub, config, adapter
        self.result = PreflightResult()
        self.whoami: dict[str, Any] | None = None

    def add(self, check: Check) -> None:
        self.result.checks.append(check)

    def attempt(self, name: str, fn: Callable[[], Check]) -> None:
        try:
            self.add(fn())
        except SpacetrainError as exc:
            self.add(_failure(name, exc))

    # -------------------------------------------------------------- remote

    def token(self) -> Check:
        if token_from_env() is None:
            return Check(
                "token",
                FAIL,
                "HF_TOKEN is not set: sync, train and promote need a token with write access",
                EXIT_USAGE,
            )
        who = self.hub.call("check the token in HF_TOKEN", self.hub.api.whoami)
        self.whoami = who
        role = self._role()
        name = who.get("name", "?")
        if role is not None and role not in WRITE_ROLES and role != "fineGrained":
            return Check(
                "token",
                FAIL,
                f"HF_TOKEN is a {role!r} token of {name}: sync and training push, "
                "so it needs write access",
                EXIT_USAGE,
            )
        return Check("token", OK, f"HF_TOKEN accepted: user {name} (role {role or 'unknown'})")

    def _role(self) -> str | None:
        return contract.trainer.token_role(self.whoami)

    def write_access(self, name: str, repo_type: str, repo_id: str, exists: bool) -> Check:
        """The token's right to write ``repo_id``, read from whoami by the Space's own rule.

        ``space/train.py`` holds the rule (its self-check asks the same question of the
        Space's token), so the CLI and the Space never disagree about it.
        """
        can, why = contract.trainer.write_access(self.whoami or {}, repo_type, repo_id)
        state = "exists" if exists else "does not exist yet (it will be created)"
        if can is False:
            return Check(name, FAIL, f"{repo_id} {state}, but {why}", EXIT_USAGE)
        return Check(name, OK if can else WARN, f"{repo_id} {state}; {why}")

    def space(self) -> Check:
        space = self.config.space
        exists = self.hub.call(
            f"look up Space {space}", self.hub.api.repo_exists, space, repo_type="space"
        )
        check = self.write_access("space", "space", space, exists)
        if exists and check.status == OK:
            runtime = self.hub.call(
                f"read the runtime of Space {space}", self.hub.api.get_space_runtime, space
            )
            check = Check(
                check.name,
                OK,
                f"{check.detail} ({runtime.stage}, {runtime.requested_hardware or '?'})",
            )
        return check

    def output_repo(self) -> Check:
        assert self.adapter is not None
        repo = self.adapter.output_repo
        exists = self.hub.call(f"look up model {repo}", self.hub.api.repo_exists, repo)
        return self.write_access("output-repo", "model", repo, exists)

    def base_model(self) -> Check:
        assert self.adapter is not None
        model, revision = self.adapter.base_model, self.adapter.base_revision
        if Path(model).is_dir():
            return Check("base-model", OK, f"{model} is a local folder")
        info = self.hub.call(
            f"find base model {model}" + (f" at {revision}" if revision else ""),
            self.hub.api.model_info,
            model,
            revision=revision,
        )
        sha = str(info.sha)
        self.result.recorded["base_revision"] = sha
        at = f"{revision} = {short(sha)}" if revision else f"main = {short(sha)}"
        return Check("base-model", OK, f"{model} at {at}")

    def dataset(self) -> Check:
        assert self.adapter is not None
        dataset, revision = self.adapter.dataset, self.adapter.dataset_revision
        info = self.hub.call(
            f"find dataset {dataset}" + (f" at {revision}" if revision else ""),
            self.hub.api.dataset_info,
            dataset,
            revision=revision,
        )
        sha = str(info.sha)
        self.result.recorded["dataset_revision"] = sha
        files = [s.rfilename for s in (info.siblings or [])]
        data = [f for f in files if f.endswith((".jsonl", ".json", ".parquet", ".csv"))]
        at = f"{revision} = {short(sha)}" if revision else f"main = {short(sha)}"
        if not data:
            return Check(
                "dataset",
                FAIL,
                f"{dataset} at {at} has no data file (.jsonl/.parquet)",
                EXIT_FAILED,
            )
        return Check("dataset", OK, f"{dataset} at {at}: {', '.join(data[:3])}")

    # --------------------------------------------------------------- local

    def lint(self) -> Check:
        policy = load_lint_policy(self.config.lint_policy)
        folder = local_files(self.config.space_dir, policy)
        report = run_rules(folder)
        if report.errors:
            first = report.findings[0]
            return Check(
                "space-lint",
                FAIL,
                f"{report.summary()}; first: {first.path}:{first.line or 1}: [{first.rule}] "
                f"{first.message}",
                EXIT_FAILED,
            )
        return Check("space-lint", OK, report.summary())

    def suite(self) -> Check:
        from spacetrain.evaluate import load_suite

        assert self.adapter is not None
        suite = load_suite(self.adapter.suite)
        categories = len(suite.categories)
        return Check(
            "suite", OK, f"{suite.path}: {len(suite.cases)} case(s), {categories} categories"
        )

    def gate(self) -> Check:
        from spacetrain.evaluate import load_gate

        path = self.config.gate
        policy = load_gate(path if path.is_file() else None)
        t = policy.thresholds
        where = policy.path or "built-in defaults"
        return Check(
            "gate",
            OK,
            f"{where}: overall >= {t.overall}, category >= {t.category}, "
            f"attribution_clean >= {t.attribution_clean}",
        )

    def run(self) -> PreflightResult:
        try:
            check = self.token()
        except SpacetrainError as exc:
            check = _failure("token", exc)
        self.add(check)
        missing = token_from_env() is None
        remote: list[tuple[str, Callable[[], Check]]] = [("space", self.space)]
        if self.adapter is not None:
            remote += [
                ("output-repo", self.output_repo),
                ("base-model", self.base_model),
                ("dataset", self.dataset),
            ]
        down = check.exit_code == EXIT_INFRA
        for name, fn in remote:
            anonymous_ok = name in ("base-model", "dataset") and missing
            if down:
                self.add(Check(name, SKIP, "the Hub is unreachable"))
            elif check.status == FAIL and not anonymous_ok:
                self.add(Check(name, SKIP, "needs an accepted token"))
            else:
                self.attempt(name, fn)
                down = self.result.checks[-1].exit_code == EXIT_INFRA
        self.attempt("space-lint", self.lint)
        if self.adapter is not None:
            self.attempt("suite", self.suite)
        else:
            self.add(Check("suite", SKIP, "no adapter named (--adapter)"))
        self.attempt("gate", self.gate)
        return self.result


def preflight(
    hub: Hub,
    config: ProjectConfig,
    adapter: AdapterConfig | None,
    state: PipelineState | None = None,
) -> PreflightResult:
    """Run every check; never raises for a failed check (its line says why).

    ``state`` (when given) records ``base_revision`` and ``dataset_revision``.
    """
    result = _Preflight(hub, config, adapter).run()
    if state is not None and result.recorded:
        state.update(**result.recorded)
    return result


__all__ = ["Check", "PreflightResult", "preflight"]
