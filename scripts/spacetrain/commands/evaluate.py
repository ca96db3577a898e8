"""``spacetrain evaluate`` and ``spacetrain gate``: score an adapter, apply the thresholds.

Both fail closed: no adapter, an empty suite, a report without cases or a crash
while generating never exits 0. Results (the summary) go to stdout, progress to
stderr; the JSON report and the Markdown page are written where asked.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from spacetrain.errors import EXIT_FAILED, EXIT_OK, CheckFailed, SpacetrainError, UsageError
from spacetrain.evaluate.gate import GatePolicy, load_gate
from spacetrain.evaluate.report import (
    build_report,
    crash_report,
    load_report,
    regate,
    render_markdown,
    render_text,
    write_json,
)
from spacetrain.evaluate.scoring import Scores, aggregate, score_case
from spacetrain.evaluate.suite import Suite, load_suite


class EvaluationCrashed(CheckFailed):
    """Generation raised: no scores, so no pass (exit 1)."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _baseline(path: str | None, policy: GatePolicy) -> tuple[Scores | None, dict | None]:
    if path is None:
        return None, None
    saved = load_report(path, policy)
    return aggregate(saved.cases), {"path": path, "adapter": saved.raw.get("adapter")}


def _write_outputs(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.report:
        write_json(args.report, report)
        _say(f"report written to {args.report}")
    if args.markdown:
        text = render_markdown(report)
        path = Path(args.markdown)
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


def run(args: argparse.Namespace) -> int:
    """Generate answers to the suite with base (+ adapter), score them, apply the gate."""
    started = time.perf_counter()
    suite = load_suite(args.suite)
    policy = load_gate(args.gate)
    baseline, baseline_meta = _baseline(args.baseline_report, policy)
    batch_size = suite.generation.batch_size if args.batch_size is None else args.batch_size
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}")
    if args.adapter_revision and not args.adapter:
        raise UsageError("--adapter-revision needs --adapter")

    from spacetrain.evaluate.generate import (
        Generator,
        adapter_fingerprint,
        library_versions,
        pick_device,
        resolve,
    )

    device = pick_device(args.device)
    base = resolve(args.base_model, args.base_revision)
    adapter = resolve(args.adapter, args.adapter_revision, adapter=True) if args.adapter else None
    adapter_meta = {**adapter.to_json(), **adapter_fingerprint(adapter)} if adapter else None
    trained_on = (adapter_meta or {}).get("trained_on")
    if trained_on and trained_on not in {args.base_model, str(base.path)}:
        _say(f"note: the adapter was trained on {trained_on}, not on {args.base_model}")
    meta: dict[str, Any] = {
        "base_model": args.base_model,
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
        if args.compare_base or adapter is None:
            _say(f"generating {_answers(conversations)} with the base model alone ...")
            t0 = time.perf_counter()
            base_outputs = _generate(gen, suite, conversations, batch_size)
            timings["base_generate_s"] = round(time.perf_counter() - t0, 3)
        outputs = base_outputs
        if adapter is not None:
            t0 = time.perf_counter()
            gen.apply_adapter(adapter, merge=True)
            meta["generation"]["merged"] = gen.merged
            timings["adapter_load_s"] = round(time.perf_counter() - t0, 3)
            _say(f"generating {_answers(conversations)} with the adapter ...")
            t0 = time.perf_counter()
            outputs = _generate(gen, suite, conversations, batch_size)
            timings["generate_s"] = round(time.perf_counter() - t0, 3)
    except SpacetrainError:
        raise
    except Exception as exc:
        reason = f"evaluation crashed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        timings["total_s"] = round(time.perf_counter() - started, 3)
        _write_outputs(args, crash_report(reason, meta))
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
    _write_outputs(args, report)
    sys.stdout.write(render_text(report))
    return EXIT_OK if report["passed"] else EXIT_FAILED


def _answers(conversations: list) -> str:
    return f"{len(conversations)} answer" + ("" if len(conversations) == 1 else "s")


def _generate(gen: Any, suite: Suite, conversations: list, batch_size: int) -> list[str]:
    outputs = gen.generate(
        conversations, max_new_tokens=suite.generation.max_new_tokens, batch_size=batch_size
    )
    if len(outputs) != len(suite.cases):
        raise RuntimeError(f"{len(outputs)} answers for {len(suite.cases)} cases")
    return outputs


def gate(args: argparse.Namespace) -> int:
    """Re-apply the gate file's thresholds (and patterns) to a saved report."""
    policy = load_gate(args.gate)
    saved = load_report(args.report, policy)
    baseline, _ = _baseline(args.baseline_report, policy)
    report = regate(saved, policy, baseline)
    sys.stdout.write(render_text(report))
    return EXIT_OK if report["passed"] else EXIT_FAILED
