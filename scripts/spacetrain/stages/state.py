"""What one pipeline stage hands to the next, on disk, so stages can be separate CI steps.

`sync` records the Space commit it pushed, `wait` checks the Space runs exactly that,
`train` records the run id and the adapter revision it produced, `fetch` downloads that
revision and checks its run id, `evaluate` and `promote` judge and tag exactly that.
A stage refuses to go on when what it needs is missing: a stale adapter never passes.
Values also go to ``$GITHUB_OUTPUT`` when it is set, for later workflow steps.

Keys of the Space stages (their modules say more):

- ``base_revision``, ``dataset_revision`` (preflight): the commits the base model and
  the dataset resolved to, so training and evaluation use exactly those.
- ``space``, ``space_commit`` (sync): the Space and the commit whose tree is ``space/``
  (new, or the unchanged head); `wait` waits for exactly that commit.

Keys of the training stages (``stages/train.py``, ``fetch.py``, ``promote.py``):

- ``run_id``, ``run_state`` (train): the run asked of the Space and how it stands
  (``queued``/``running`` after an interrupted train, which the next train rejoins;
  ``succeeded``, ``failed``, ``cancelled``: stopped on the page or by a cancelled train,
  never rejoined). A new run id clears the keys below.
- ``space_hold`` (train): why train left the Space as it is (it trains a run that is not
  ours); absent otherwise. The workflow's release step is skipped when it is set.
- ``job_id``, ``job_run_id`` (train, job backend): the HF Job (``<namespace>/<id>``)
  running run ``job_run_id``, so a second train with that run id rejoins it.
- ``adapter_repo``, ``adapter_revision`` (train, fetch): the repo and the commit sha the
  run pushed (fetch resolves a branch or tag to its sha).
- ``adapter_dir`` (fetch): the checked download; null while a fetch is under way or failed.
- ``report`` (evaluate): the report promote judges.
- ``promoted_tag``, ``card_commit`` (promote): the tag on ``adapter_revision``, and the
  commit that put the scores on the model card (null when ``main`` had moved on).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from spacetrain.errors import InputFileError, UsageError
from spacetrain.inputs import append_github_file, github_file, parse_json, read_text, writable_file

DEFAULT_STATE = Path(".spacetrain") / "state.json"


class PipelineState:
    """A small JSON document of the current pipeline run, written atomically."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = data or {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> PipelineState:
        """The state at ``path`` (default ``.spacetrain/state.json``); empty if absent."""
        target = Path(path) if path else DEFAULT_STATE
        if not target.exists():
            return cls(target)
        try:
            data = parse_json(read_text(target))
        except json.JSONDecodeError as exc:
            raise InputFileError(
                target, f"is not JSON ({exc.msg}); delete it to start over", line=exc.lineno
            ) from None
        if not isinstance(data, dict):
            raise InputFileError(target, "is not a JSON object; delete it to start over")
        return cls(target, data)

    def check_writable(self) -> None:
        """Fail now, not after the stage's work, when the state or ``$GITHUB_OUTPUT``
        cannot be written (a stage records its results at the end).

        Raises:
            UsageError: ``--state`` or ``GITHUB_OUTPUT`` names a folder or an unwritable
                place (exit 2).
        """
        writable_file(self.path, "--state")
        github_file("GITHUB_OUTPUT")

    def get(self, key: str, default: Any = None) -> Any:
        """A recorded value, or ``default``."""
        return self.data.get(key, default)

    def require(self, key: str, *, stage: str) -> Any:
        """A value an earlier stage must have recorded; a clear error when it did not."""
        value = self.data.get(key)
        if value in (None, ""):
            raise UsageError(
                f"{self.path} has no {key}: run `spacetrain {stage}` first "
                "(or pass the value as a flag)"
            )
        return value

    def update(self, **values: Any) -> None:
        """Record values, save, and export them as step outputs on GitHub Actions."""
        self.data.update(values)
        self.save()
        export_outputs(values)

    def reset(self, **values: Any) -> None:
        """Start a new pipeline run: forget everything but ``values``."""
        self.data = {}
        self.update(**values)

    def save(self) -> None:
        """Write atomically, so a killed step never leaves half a file."""
        writable_file(self.path, "--state")
        text = json.dumps(self.data, indent=2, sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            Path(tmp).replace(self.path)
        except OSError as exc:
            raise UsageError(f"--state {self.path}: cannot write: {exc.strerror or exc}") from None


def export_outputs(values: dict[str, Any]) -> None:
    """Append ``key=value`` lines to ``$GITHUB_OUTPUT`` (multi-line values delimited)."""
    lines = []
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if "\n" in text:
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            lines.append(f"{key}<<{delimiter}\n{text}\n{delimiter}\n")
        else:
            lines.append(f"{key}={text}\n")
    append_github_file("GITHUB_OUTPUT", "".join(lines))


__all__ = ["DEFAULT_STATE", "PipelineState", "export_outputs"]
