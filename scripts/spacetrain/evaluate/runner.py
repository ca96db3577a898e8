"""Running an evaluation: load the models, answer the suite, score, gate, write reports.

The engine behind ``spacetrain evaluate`` and the pipeline's evaluate stage. It fails
closed: no adapter, an empty suite or a crash while generating never yields a pass.
Progress goes to stderr; the JSON report and the Markdown page are written where asked.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacetrain.errors import CheckFailed, SpacetrainError, UsageError
from spacetrain.evaluate.gate import GatePolicy, load_gate
from spacetrain.evaluate.report import (
    EvaluationReport,
    build_report,
    crash_report,
    load_report,
    render_markdown,
    write_json,
)
from spacetrain.evaluate.scoring import Scores, aggregate, score_case
from spacetrain.evaluate.suite import Suite, load_suite
from spacetrain.hub import Hub
from spacetrain.inputs import writable_file
from spacetrain.stages.progress import Progress, progress_for


@dataclass(frozen=True)
class EvaluateOptions:
    """What to evaluate and where the results go (the flags of ``spacetrain evaluate``)."""

    base_model: str
    suite: str | Path
    base_revision: str | None = None
    adapter: str | None = None
    adapter_revision: str | None = None
    gate: str | Path | None = None
    report: str | Path | None = None
    markdown: str | Path | None = None
    compare_base: bool = False
    baseline_report: str | Path | None = None
    batch_size: int | None = None
    device: str | None = None


class EvaluationCrashed(CheckFailed):
    """Generation raised: no scores, so no pass (exit 1)."""


def baseline_scores(
    path: str | Path | None, policy: GatePolicy
) -> tuple[Scores | None, dict | None]:
    """The scores of the last promoted report (for ``max_regression``), and where they came from."""
    if path is None:
        return None, None
    saved = load_report(path, policy)
    return aggregate(saved.cases), {"path": str(path), "adapter": saved.raw.get("adapter")}


def _check_outputs(options: EvaluateOptions) -> None:
    """The report and the Markdown page can be written (checked before any model loads)."""
    if options.report:
        writable_file(options.report, "--report")
    if options.markdown:
        writable_file(options.markdown, "--markdown")


def _write_outputs(options: EvaluateOptions, report: dict[str, Any], progress: Progress) -> None:
    if options.report:
        write_json(options.report, report)
        progress(f"report written to {options.report}")
    if options.markdown:
        text = render_markdown(report)
        path = Path(options.markdown)
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        # The step summary is shared by every step of the job: add to it, never replace it.
        mode = "a" if summary and path.resolve() == Path(summary).resolve() else "w"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open(mode, encoding="utf-8") as fh:
            fh.write(text)


def _quiet_libraries() -> None:
    """Keep the CI log to our progress lines: no load bars, no notes about 4-bit kernels
    (evaluation never runs 4-bit), no deprecation chatter from inside the libraries."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    for module in ("transformers", "peft", "torch"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)


def evaluate(
    hub: Hub, options: EvaluateOptions, *, progress: Progress | None = None
) -> EvaluationReport:
    """Generate answers to the suite with base (+ adapter), score them, apply the gate.

    Models and adapters named by Hub id are read through ``hub``. Writes the JSON report
    and the Markdown page when the options name them, and returns the report;
    ``report.passed`` is the gate's verdict.

    Raises:
        EvaluationCrashed: generation raised (a failed report is still written).
        UsageError, InputFileError: bad options, suite, gate or model reference.
    """
    progress = progress or progress_for("evaluate")
    started = time.perf_counter()
    _check_outputs(options)  # a bad --report is exit 2 now, not after the evaluation
    suite = load_suite(options.suite)
    policy = load_gate(options.gate)
    baseline, baseline_meta = baseline_scores(options.baseline_report, policy)
    batch_size = suite.generation.batch_size if options.batch_size is None else options.batch_size
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}")
    if options.adapter_revision and not options.adapter:
        raise UsageError("--adapter-revision needs --adapter")

    from spacetrain.evaluate.generate import (
        Generator,
        adapter_fingerprint,
        library_versions,
        pick_device,
        resolve,
    )

    device = pick_device(options.device)
    base = resolve(options.base_model, options.base_revision, hub=hub)
    adapter = (
        resolve(options.adapter, options.adapter_revision, adapter=True, hub=hub)
        if options.adapter
        else None
    )
    adapter_meta = {**adapter.to_json(), **adapter_fingerprint(adapter)} if adapter else None
    trained_on = (adapter_meta or {}).get("trained_on")
    if trained_on and trained_on not in {options.base_model, str(base.path)}:
        progress(f"note: the adapter was trained on {trained_on}, not on {options.base_model}")
    meta: dict[str, Any] = {
        "base_model": options.base_model,
        "base_revision": base.revision,
        "adapter": adapter_meta,
        "suite": {
            "name": suite.name,
            "path": suite.path,
            "sha256": suite.sha256,
            "cases": len(suite.cases),
        },
        "generation": {
            "max_new_tokens": suite.generation.max_new_tokens,
            "batch_size": batch_size,
            "system_prompt": suite.generation.system_prompt,
            "greedy": True,
            "use_cache": True,
            "padding_side": "left",
        },
        "device": device,
        "versions": library_versions(),
    }
    if baseline_meta:
        meta["baseline_report"] = baseline_meta
    timings: dict[str, float] = {}
    meta["timings"] = timings

    _quiet_libraries()
    conversations = suite.conversations()
    base_outputs: list[str] | None = None
    try:
        t0 = time.perf_counter()
        gen = Generator.load(base, device=device, tokenizer_from=adapter)
        meta["generation"]["dtype"] = gen.dtype
        timings["load_s"] = round(time.perf_counter() - t0, 3)
        if options.compare_base or adapter is None:
            progress(f"generating {_answers(conversations)} with the base model alone ...")
            t0 = time.perf_counter()
            base_outputs = _generate(gen, suite, conversations, batch_size)
            timings["base_generate_s"] = round(time.perf_counter() - t0, 3)
        outputs = base_outputs
        if adapter is not None:
            t0 = time.perf_counter()
            gen.apply_adapter(adapter, merge=True)
            meta["generation"]["merged"] = gen.merged
            timings["adapter_load_s"] = round(time.perf_counter() - t0, 3)
            progress(f"generating {_answers(conversations)} with the adapter ...")
            t0 = time.perf_counter()
            outputs = _generate(gen, suite, conversations, batch_size)
            timings["generate_s"] = round(time.perf_counter() - t0, 3)
    except SpacetrainError:
        raise
    except Exception as exc:
        reason = f"evaluation crashed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        timings["total_s"] = round(time.perf_counter() - started, 3)
        _write_outputs(options, crash_report(reason, meta), progress)
        raise EvaluationCrashed(reason) from exc
    assert outputs is not None

    patterns = policy.attribution_patterns
    results = [score_case(c, o, patterns) for c, o in zip(suite.cases, outputs, strict=True)]
    base_results = (
        [score_case(c, o, patterns) for c, o in zip(suite.cases, base_outputs, strict=True)]
        if base_outputs is not None and adapter is not None
        else None
    )
    timings["total_s"] = round(time.perf_counter() - started, 3)
    report = build_report(
        policy=policy,
        results=results,
        base_results=base_results,
        baseline=baseline,
        meta=meta,
        adapter_present=adapter is not None,
    )
    _write_outputs(options, report, progress)
    return EvaluationReport.from_json(report)


def _answers(conversations: list) -> str:
    return f"{len(conversations)} answer" + ("" if len(conversations) == 1 else "s")


def _generate(gen: Any, suite: Suite, conversations: list, batch_size: int) -> list[str]:
    outputs = gen.generate(
        conversations, max_new_tokens=suite.generation.max_new_tokens, batch_size=batch_size
    )
    if len(outputs) != len(suite.cases):
        raise RuntimeError(f"{len(outputs)} answers for {len(suite.cases)} cases")
    return outputs


__all__ = ["EvaluateOptions", "EvaluationCrashed", "baseline_scores", "evaluate"]
