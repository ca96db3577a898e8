"""``spacetrain rehearse``: the whole pipeline offline, on localhub, with a tiny model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spacetrain.rehearse import RehearsalOptions, run_rehearsal
from spacetrain.stages.params import TrainingOverrides


def run(args: argparse.Namespace) -> int:
    """Rehearse a deploy end to end; print the scores and where the reports went."""
    overrides = TrainingOverrides.from_args(args)  # checked before localhub starts
    report = run_rehearsal(
        RehearsalOptions(
            overrides=overrides,
            workdir=Path(args.workdir) if args.workdir else None,
            report=Path(args.report) if args.report else None,
            markdown=Path(args.markdown) if args.markdown else None,
            backend=args.backend or "space",
        )
    )
    for stage in report["stages"]:
        print(
            f"{stage['name']:<9} {stage['outcome']:<7} {stage['seconds']:6.1f} s  {stage['detail']}"
        )
    scores = report["scores"]
    if scores.get("overall") is not None:
        base = (report.get("base_scores") or {}).get("overall")
        versus = f" (base model alone: {base:.2f})" if base is not None else ""
        clean = scores["attribution_clean"]
        print(f"overall {scores['overall']:.2f}{versus}, attribution clean {clean:.2f}")
    for problem in report["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    if report.get("error"):
        print(f"spacetrain rehearse: error: {report['error']}", file=sys.stderr)
    verdict = "passed" if report["exit_code"] == 0 else "FAILED"
    print(
        f"rehearsal {verdict} in {report['seconds']:.0f} s; Space {report['space']['stage_after']}"
    )
    return int(report["exit_code"])
