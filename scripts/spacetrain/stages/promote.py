"""The promote stage: tag the adapter revision that passed the gate and publish its scores.

Promotion is the pipeline's only irreversible-looking act, so it trusts nothing it
is handed: the report is re-gated with the gate policy (scores re-derived from its
cases, outputs re-scanned for attribution; the stored ``passed`` flag alone proves
nothing, though a stored failure, e.g. a regression against a baseline, is kept),
and it must be about THIS adapter: the repo and commit the state recorded (or, for
a report on the fetched folder, the same run id and the same weights digest as that
commit). Anything else is a stale report and nothing is written (exit 1).

Then, idempotently:

1. the tag (``promoted-<run_id>`` or ``--tag``) is created on the adapter commit; a
   tag already there on the same commit is fine, on another commit it is an error;
2. the model card gets the scores as ``model-index`` eval results (the Hub's format,
   through ``ModelCard``) and a section with the score table, and the report JSON is
   uploaded as ``evaluation/report.json``, both in ONE commit on ``main``, made only
   while ``main`` still holds this run's adapter (its ``run.json``); a re-run with the
   same report changes nothing and makes no commit.

Records in the state: ``promoted_tag`` and ``card_commit``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacetrain.errors import CheckFailed, GateFailed, UsageError
from spacetrain.evaluate.gate import GatePolicy, load_gate
from spacetrain.evaluate.report import load_report, regate, render_markdown
from spacetrain.hub import Hub
from spacetrain.inputs import parse_json
from spacetrain.stages.progress import Progress, progress_for
from spacetrain.stages.state import PipelineState

REPORT_PATH = "evaluation/report.json"
SECTION_START = "<!-- spacetrain:evaluation:start -->"
SECTION_END = "<!-- spacetrain:evaluation:end -->"
SUITE_DATASET = "spacetrain-suite"  # model-index dataset type prefix of our results
SHA = re.compile(r"^[0-9a-f]{40}$")
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class StaleReport(CheckFailed):
    """The report judged another adapter than the one to promote (exit 1)."""


class TagConflict(CheckFailed):
    """The promotion tag already names another commit (exit 1)."""


@dataclass(frozen=True)
class PromoteResult:
    """What was promoted and where its evidence lives."""

    repo: str
    revision: str
    run_id: str
    tag: str
    tag_created: bool
    card_commit: str | None  # None: main holds another run's adapter now; card left alone
    overall: float

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object."""
        return dict(self.__dict__)


def default_tag(run_id: str) -> str:
    """``promoted-<run_id>``."""
    return f"promoted-{run_id}"


# ------------------------------------------------------------------ checks (no writes)


def passing_report(report_path: Path, policy: GatePolicy) -> tuple[dict[str, Any], bytes]:
    """The report re-gated with ``policy``, and its bytes; fails unless it passes.

    Raises:
        InputFileError: unreadable or inconsistent report (exit 2).
        GateFailed: it does not pass today's gate, or says itself that it failed (exit 1).
    """
    saved = load_report(report_path, policy)
    verdict = regate(saved, policy)
    if not verdict.passed:
        raise GateFailed(
            f"{report_path} does not pass the gate: {'; '.join(verdict.failures)}; not promoting"
        )
    if not saved.report.passed:
        stored = "; ".join(str(f) for f in saved.report.failures) or "passed is false"
        raise GateFailed(f"{report_path} records a failed gate ({stored}); not promoting")
    return verdict.to_json(), report_path.read_bytes()


def check_same_adapter(
    report_adapter: Any, *, repo: str, revision: str, run_id: str, weights_sha256: Callable[[], str]
) -> None:
    """The report's ``adapter`` is the one to promote, or :class:`StaleReport`.

    A report on a Hub adapter must name the same repo and commit. A report on a local
    folder (no revision: the fetched copy) must carry the same run id and the same
    weights digest as the commit; ``weights_sha256`` computes the latter on demand.
    """
    adapter = report_adapter if isinstance(report_adapter, dict) else {}
    target = f"{repo}@{revision} (run {run_id})"
    their_run = adapter.get("run_id")
    if their_run is not None and their_run != run_id:
        raise StaleReport(f"stale report: it judged run {their_run}, the adapter is {target}")
    their_rev = adapter.get("revision")
    if their_rev:
        if adapter.get("repo") != repo or their_rev != revision:
            raise StaleReport(
                f"stale report: it judged {adapter.get('repo')}@{their_rev}, "
                f"the adapter to promote is {target}"
            )
        return
    where = adapter.get("path") or adapter.get("repo") or "a local folder"
    if their_run != run_id or not adapter.get("sha256"):
        raise StaleReport(
            f"stale report: it judged {where} without a run id and weights digest that tie "
            f"it to {target}"
        )
    if adapter["sha256"] != weights_sha256():
        raise StaleReport(
            f"stale report: the weights it judged ({where}) are not those of {target}"
        )


def _weights_digest(hub: Hub, repo: str, revision: str) -> str:
    info = hub.call(f"list {repo}@{revision}", hub.api.model_info, repo, revision=revision)
    names = {s.rfilename for s in info.siblings or []}
    name = next((w for w in WEIGHTS if w in names), None)
    if name is None:
        raise StaleReport(f"{repo}@{revision} has no adapter weights to compare with the report")
    path = hub.call(
        f"download {name} of {repo}@{revision}",
        hub.api.hf_hub_download,
        repo,
        name,
        revision=revision,
    )
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def existing_tag(hub: Hub, repo: str, tag: str) -> str | None:
    """The commit ``tag`` names in ``repo``, or None."""
    refs = hub.call(f"list the refs of {repo}", hub.api.list_repo_refs, repo)
    for ref in refs.tags:
        if ref.name == tag:
            return ref.target_commit
    return None


# ------------------------------------------------------------------ the model card


def eval_results(report: dict[str, Any]) -> list[Any]:
    """The report's scores as model-index results: overall, each category, attribution."""
    from huggingface_hub import EvalResult

    suite = (report.get("suite") or {}).get("name") or "evaluation"
    common = {
        "task_type": "text-generation",
        "task_name": "Text Generation",
        "dataset_type": f"{SUITE_DATASET}/{suite}",
        "dataset_name": f"spacetrain suite {suite}",
    }
    rows = [("overall", "overall score", report["overall"])]
    rows += [
        (f"category/{name}", f"{name} score", value)
        for name, value in sorted((report.get("categories") or {}).items())
    ]
    rows.append(("attribution_clean", "attribution-free outputs", report["attribution_clean"]))
    return [
        EvalResult(metric_type=metric, metric_name=label, metric_value=round(float(v), 6), **common)
        for metric, label, v in rows
    ]


def card_section(report: dict[str, Any], *, repo: str, revision: str, run_id: str, tag: str) -> str:
    """The card's evaluation section (between markers, so a re-run replaces it)."""
    return (
        f"{SECTION_START}\n"
        f"{render_markdown(report).rstrip()}\n\n"
        f"Promoted as tag `{tag}` = commit `{revision}` of `{repo}` (run `{run_id}`). "
        f"The full report is [`{REPORT_PATH}`]({REPORT_PATH}).\n"
        f"{SECTION_END}\n"
    )


def update_card(
    text: str, report: dict[str, Any], *, repo: str, revision: str, run_id: str, tag: str
) -> str:
    """``text`` (a README.md, possibly empty) with the report's eval results and section."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    if not REGEX_YAML_BLOCK.search(text):  # no front matter yet: start an empty one
        text = "---\n{}\n---\n" + text
    card = ModelCard(text, ignore_metadata_errors=True)
    data = card.data
    ours = {r.dataset_type for r in eval_results(report)}
    kept = [r for r in (data.eval_results or []) if r.dataset_type not in ours]
    data.eval_results = kept + eval_results(report)
    data.model_name = data.model_name or repo.split("/")[-1]
    section = card_section(report, repo=repo, revision=revision, run_id=run_id, tag=tag)
    body = card.text
    start, end = body.find(SECTION_START), body.find(SECTION_END)
    if start != -1 and end > start:
        tail = body[end + len(SECTION_END) :].lstrip("\n")
        body = body[:start] + section + ("\n" + tail if tail else "")
    else:
        body = body.rstrip("\n") + ("\n\n" if body.strip() else "\n") + section
    card.text = body
    return str(card)


# ------------------------------------------------------------------ the stage


@dataclass(frozen=True)
class PromoteOptions:
    """Which report promotes the adapter, judged by which gate, under which tag."""

    report_path: Path
    policy: GatePolicy
    tag: str | None = None  # default: one named after the run

    @classmethod
    def build(
        cls, state: PipelineState, *, gate: str | Path, report: str | Path | None = None,
        tag: str | None = None,
    ) -> PromoteOptions:  # fmt: skip
        """``report``, else the one `evaluate` recorded in ``state``; the gate file read.

        Raises:
            UsageError, InputFileError: no report recorded; a bad gate file (exit 2).
        """
        path = Path(report or state.require("report", stage="evaluate"))
        return cls(report_path=path, policy=load_gate(gate), tag=tag)


def promote_adapter(
    hub: Hub,
    options: PromoteOptions,
    state: PipelineState,
    *,
    progress: Progress | None = None,
) -> PromoteResult:
    """Check the report, tag the adapter commit, publish card and report; idempotent.

    Raises:
        GateFailed: the report does not pass (exit 1); nothing written.
        StaleReport: the report is about another adapter (exit 1); nothing written.
        TagConflict: the tag names another commit (exit 1); nothing written.
        UsageError, InputFileError: missing state, bad tag name, bad report (exit 2).
    """
    progress = progress or progress_for("promote")
    report_path, policy, tag = options.report_path, options.policy, options.tag
    repo = state.require("adapter_repo", stage="train")
    revision = state.require("adapter_revision", stage="train")
    run_id = state.require("run_id", stage="train")
    if not SHA.match(str(revision)):
        raise UsageError(f"{state.path}: adapter_revision {revision!r} is not a commit sha")
    tag = tag or default_tag(run_id)
    if not TAG.match(tag) or ".." in tag or tag.endswith((".", ".lock")):
        raise UsageError(f"tag {tag!r}: use letters, digits, '.', '_' and '-'")

    report, raw = passing_report(report_path, policy)
    check_same_adapter(
        report.get("adapter"),
        repo=repo,
        revision=revision,
        run_id=run_id,
        weights_sha256=lambda: _weights_digest(hub, repo, revision),
    )
    tagged = existing_tag(hub, repo, tag)
    if tagged is not None and tagged != revision:
        raise TagConflict(
            f"tag {tag} of {repo} already names commit {tagged}, not {revision}; "
            "pass --tag to choose another name"
        )
    progress(f"{report_path} passes the gate for {repo}@{revision} (run {run_id})")

    created = tagged is None
    if created:
        hub.call(
            f"tag {repo}@{revision} as {tag}",
            hub.api.create_tag,
            repo,
            tag=tag,
            revision=revision,
            tag_message=f"spacetrain: run {run_id} passed the gate (overall {report['overall']})",
            exist_ok=True,
        )
        now = existing_tag(hub, repo, tag)  # exist_ok also hides a race: look again
        if now != revision:
            raise TagConflict(f"tag {tag} of {repo} names commit {now}, not {revision}")
        progress(f"tagged {repo}@{revision} as {tag}")
    else:
        progress(f"tag {tag} already names {repo}@{revision}")
    state.update(promoted_tag=tag)

    card_commit = _publish(hub, repo, revision, run_id, tag, report, raw, progress)
    state.update(card_commit=card_commit)
    return PromoteResult(repo, revision, run_id, tag, created, card_commit, report["overall"])


def _publish(
    hub: Hub,
    repo: str,
    revision: str,
    run_id: str,
    tag: str,
    report: dict[str, Any],
    raw: bytes,
    progress: Progress,
) -> str | None:
    from huggingface_hub import CommitOperationAdd

    head = hub.call(f"read {repo}", hub.api.model_info, repo)
    names = {s.rfilename for s in head.siblings or []}
    holder = _run_of(hub, repo, head.sha) if "run.json" in names else None
    if holder != run_id:
        progress(
            f"warning: main of {repo} now holds run {holder or 'unknown'}'s "
            f"adapter, not run {run_id}'s: its model card is left alone (the tag is set)"
        )
        return None
    text = ""
    if "README.md" in names:
        path = hub.call(
            f"read the model card of {repo}",
            hub.api.hf_hub_download,
            repo,
            "README.md",
            revision=head.sha,
        )
        text = Path(path).read_text(encoding="utf-8")
    card = update_card(text, report, repo=repo, revision=revision, run_id=run_id, tag=tag)
    ops = [
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")),
        CommitOperationAdd(path_in_repo=REPORT_PATH, path_or_fileobj=raw),
    ]
    info = hub.call(
        f"publish the evaluation on {repo}",
        hub.api.create_commit,
        repo,
        operations=ops,
        commit_message=f"spacetrain: evaluation of run {run_id} ({tag})",
        commit_description=f"run_id: {run_id}\nadapter: {revision}\ntag: {tag}",
        parent_commit=head.sha,
    )
    if info.oid == head.sha:
        progress(f"model card of {repo} already shows this evaluation (no commit)")
    else:
        progress(f"model card and {REPORT_PATH} of {repo} updated: commit {info.oid}")
    return info.oid


def _run_of(hub: Hub, repo: str, sha: str) -> str | None:
    path = hub.call(
        f"read run.json of {repo}@{sha}", hub.api.hf_hub_download, repo, "run.json", revision=sha
    )
    try:
        data = parse_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("run_id") if isinstance(data, dict) else None


__all__ = [
    "REPORT_PATH",
    "PromoteOptions",
    "PromoteResult",
    "StaleReport",
    "TagConflict",
    "card_section",
    "check_same_adapter",
    "default_tag",
    "eval_results",
    "existing_tag",
    "passing_report",
    "promote_adapter",
    "update_card",
]
