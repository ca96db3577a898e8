"""Training data checks: a JSONL file of chat ``messages`` or ``prompt``/``completion``.

What training cannot survive, or should not learn, is an *error* (exit 1): rows
that are not examples, turns out of order, empty turns, exact duplicates,
examples longer than the training ``max_length`` (with a tokenizer), Hub tokens,
and AI-attribution text in answers (a model trained on "Generated with Claude"
learns to write it, and then fails the gate). What deserves a look is a
*warning*: the same question with different answers, extra keys, blank lines,
and eval prompts found in the training data (``--suite``). A line that is not
JSON at all makes the file malformed: exit 2 naming the first such line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from spacetrain import contract
from spacetrain.errors import InputFileError, UsageError
from spacetrain.inputs import parse_json, read_bytes

if TYPE_CHECKING:
    from spacetrain.hub import Hub

ERROR: Literal["error"] = "error"
WARNING: Literal["warning"] = "warning"

CHAT_ROLES = contract.ROLES  # what space/train.py accepts
MESSAGES, PROMPT_COMPLETION = contract.FORMATS
# User access tokens (hf_…) and organization API tokens (api_org_…).
TOKEN_RE = re.compile(r"\b(hf_[A-Za-z0-9]{30,}|api_org_[A-Za-z0-9]{30,})\b")


@dataclass(frozen=True)
class Issue:
    """One finding about one line (``line`` is 1-based; ``None`` for the whole file)."""

    severity: Literal["error", "warning"]
    code: str
    message: str
    line: int | None = None

    def render(self, path: str) -> str:
        """``path:line: severity: message [code]``, the shape editors and CI understand."""
        where = f"{path}:{self.line}" if self.line is not None else path
        return f"{where}: {self.severity}: {self.message} [{self.code}]"


@dataclass(frozen=True)
class Example:
    """One training example as conversation turns (prompt/completion become user/assistant)."""

    line: int
    format: str  # MESSAGES or PROMPT_COMPLETION (contract.FORMATS)
    turns: tuple[tuple[str, str], ...]

    @property
    def question(self) -> str:
        """The last user turn before the last answer: what the example teaches to answer."""
        users = [c for r, c in self.turns if r == "user"]
        return users[-1] if users else ""

    @property
    def answers(self) -> list[str]:
        """The assistant turns: the text training teaches the model to write."""
        return [c for r, c in self.turns if r == "assistant"]


@dataclass
class DatasetReport:
    """What :func:`validate_file` found."""

    path: str
    examples: list[Example] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    formats: set[str] = field(default_factory=set)

    @property
    def errors(self) -> list[Issue]:
        """Findings that fail validation."""
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        """Findings printed but not failing."""
        return [i for i in self.issues if i.severity == WARNING]

    def add(
        self,
        severity: Literal["error", "warning"],
        code: str,
        message: str,
        line: int | None = None,
    ) -> None:
        """Record a finding."""
        self.issues.append(Issue(severity, code, message, line))

    def summary(self) -> str:
        """One line: examples, format, error and warning counts."""
        fmt = "/".join(sorted(self.formats)) or "no format"
        return (
            f"{self.path}: {len(self.examples)} examples ({fmt}), "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        )


def normalize_question(text: str) -> str:
    """Case-folded, whitespace-collapsed, without trailing punctuation: for overlap checks."""
    return " ".join(text.casefold().split()).rstrip(" ?.!:;")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    raw = read_bytes(path)  # a FIFO or a folder is refused before anything blocks
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            yield number, chunk.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise InputFileError(
                path, f"not UTF-8 text (byte {exc.start + 1} of the line)", line=number
            ) from None


def read_rows(path: str | Path) -> list[tuple[int, Any]]:
    """Parse every non-blank line as JSON.

    Raises:
        InputFileError: a line that is not JSON (names the first one and counts the rest).
    """
    path = Path(path)
    rows: list[tuple[int, Any]] = []
    bad: list[tuple[int, str]] = []
    for number, text in _lines(path):
        if not text.strip():
            rows.append((number, None))
            continue
        try:
            rows.append((number, parse_json(text)))
        except json.JSONDecodeError as exc:
            bad.append((number, f"{exc.msg} at column {exc.colno}"))
    if bad:
        line, detail = bad[0]
        more = f" ({len(bad)} lines in all are not JSON)" if len(bad) > 1 else ""
        raise InputFileError(path, f"not valid JSON: {detail}{more}", line=line)
    # A final newline leaves one empty chunk: not a blank line anyone wrote.
    if rows and rows[-1][1] is None:
        rows.pop()
    return rows


def _turns_from_messages(
    value: Any, line: int, report: DatasetReport, what: str
) -> list[tuple[str, str]] | None:
    if not isinstance(value, list) or not value:
        report.add(ERROR, "schema", f"'{what}' must be a non-empty list of {{role, content}}", line)
        return None
    turns: list[tuple[str, str]] = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            report.add(
                ERROR, "schema", f"{what}[{i}] must be an object with role and content", line
            )
            return None
        role, content = msg["role"], msg["content"]
        if role not in CHAT_ROLES:
            report.add(
                ERROR,
                "role",
                f"{what}[{i}] has role {role!r} (expected {', '.join(CHAT_ROLES)})",
                line,
            )
            return None
        if not isinstance(content, str):
            report.add(ERROR, "schema", f"{what}[{i}] content must be a string", line)
            return None
        extra = sorted(set(msg) - {"role", "content"})
        if extra:
            report.add(
                WARNING,
                "extra-key",
                f"{what}[{i}] has extra key(s) {', '.join(extra)}: training ignores them",
                line,
            )
        turns.append((role, content))
    return turns


def _parse_example(row: Any, line: int, report: DatasetReport) -> Example | None:
    if not isinstance(row, dict):
        report.add(ERROR, "schema", "each line must be a JSON object", line)
        return None
    if "messages" in row:
        fmt = MESSAGES
        turns = _turns_from_messages(row["messages"], line, report, "messages")
        extra = sorted(set(row) - {"messages"})
    elif "prompt" in row and "completion" in row:
        fmt = PROMPT_COMPLETION
        turns = []
        for key, role in (("prompt", "user"), ("completion", "assistant")):
            value = row[key]
            if isinstance(value, str):
                turns.append((role, value))
            else:
                part = _turns_from_messages(value, line, report, key)
                if part is None:
                    return None
                turns.extend(part)
        extra = sorted(set(row) - {"prompt", "completion"})
    else:
        report.add(
            ERROR,
            "schema",
            "expected 'messages' or 'prompt' + 'completion' (keys found: "
            f"{', '.join(sorted(map(str, row))) or 'none'})",
            line,
        )
        return None
    if turns is None:
        return None
    if extra:
        report.add(
            WARNING, "extra-key", f"extra key(s) {', '.join(extra)}: training ignores them", line
        )
    example = Example(line, fmt, tuple(turns))
    if not _check_turns(example, report):
        return None
    return example


def _check_turns(example: Example, report: DatasetReport) -> bool:
    ok = True
    roles = [r for r, _ in example.turns]
    body = roles[1:] if roles and roles[0] == "system" else roles
    if "system" in body:
        report.add(ERROR, "role-order", "a system turn may only come first", example.line)
        ok = False
    elif not body or body[0] != "user":
        report.add(
            ERROR,
            "role-order",
            "the conversation must start with a user turn (after an optional system turn)",
            example.line,
        )
        ok = False
    elif any(a == b for a, b in itertools.pairwise(body)):
        i = next(i for i, (a, b) in enumerate(itertools.pairwise(body)) if a == b)
        report.add(
            ERROR,
            "role-order",
            f"two {body[i]} turns in a row: user and assistant must alternate",
            example.line,
        )
        ok = False
    elif body[-1] != "assistant":
        report.add(
            ERROR, "role-order", "the last turn must be the assistant's answer", example.line
        )
        ok = False
    for i, (role, content) in enumerate(example.turns):
        if not content.strip():
            report.add(ERROR, "empty-turn", f"turn {i + 1} ({role}) is empty", example.line)
            ok = False
    return ok


def validate_file(
    path: str | Path,
    *,
    attribution_patterns: Sequence[re.Pattern[str]] = (),
    suite_prompts: Sequence[tuple[str, str]] = (),
    tokenizer: Any = None,
    max_length: int | None = None,
) -> DatasetReport:
    """Check a JSONL training file; never raises for a bad example, only for a bad file.

    Args:
        attribution_patterns: compiled patterns (the gate's) to flag in answers.
        suite_prompts: ``(case_id, prompt)`` pairs to look for in the questions.
        tokenizer: a transformers tokenizer to measure examples with (its chat template
            when it has one).
        max_length: the training ``max_length`` in tokens; defaults to 1024 (TRL's
            default) when a tokenizer is given.

    Raises:
        InputFileError: the file is missing, not UTF-8, or has lines that are not JSON.
    """
    path = Path(path)
    report = DatasetReport(str(path))
    rows = read_rows(path)
    for line, row in rows:
        if row is None:
            report.add(WARNING, "blank-line", "blank line (skipped)", line)
            continue
        example = _parse_example(row, line, report)
        if example is not None:
            report.examples.append(example)
            report.formats.add(example.format)
    if not rows or (not report.examples and not report.errors):
        report.add(ERROR, "empty", "no examples: the file is empty")
    if len(report.formats) > 1:
        report.add(
            ERROR,
            "mixed-format",
            "examples mix 'messages' and 'prompt'/'completion': use one format",
        )
    _check_duplicates(report)
    _check_secrets(rows, report)
    _check_attribution(report, attribution_patterns)
    _check_leaks(report, suite_prompts)
    if tokenizer is not None:
        _check_lengths(report, tokenizer, max_length or 1024)
    report.issues.sort(key=lambda i: (i.line or 0, i.severity != ERROR))
    return report


def _check_duplicates(report: DatasetReport) -> None:
    first_seen: dict[str, int] = {}
    answers_by_question: dict[str, tuple[int, tuple[str, ...]]] = {}
    for ex in report.examples:
        key = hashlib.sha256(
            json.dumps([[r, " ".join(c.split())] for r, c in ex.turns]).encode()
        ).hexdigest()
        if key in first_seen:
            report.add(
                ERROR, "duplicate", f"duplicate of the example on line {first_seen[key]}", ex.line
            )
            continue
        first_seen[key] = ex.line
        q = normalize_question(ex.question)
        answers = tuple(" ".join(a.split()) for a in ex.answers)
        if q in answers_by_question and answers_by_question[q][1] != answers:
            report.add(
                WARNING,
                "conflicting-answers",
                f"same question as line {answers_by_question[q][0]} with a different answer",
                ex.line,
            )
        answers_by_question.setdefault(q, (ex.line, answers))


def _check_secrets(rows: list[tuple[int, Any]], report: DatasetReport) -> None:
    for line, row in rows:
        if row is None:
            continue
        text = json.dumps(row, ensure_ascii=False)
        match = TOKEN_RE.search(text)
        if match:
            shown = match.group(0)[:6] + "…"
            report.add(
                ERROR,
                "hub-token",
                f"contains what looks like a Hub token ({shown}): revoke it and remove it",
                line,
            )


def _check_attribution(report: DatasetReport, patterns: Sequence[re.Pattern[str]]) -> None:
    for ex in report.examples:
        for answer in ex.answers:
            hit = next((p for p in patterns if p.search(answer)), None)
            if hit is not None:
                text = hit.search(answer).group(0)  # type: ignore[union-attr]
                report.add(
                    ERROR,
                    "attribution",
                    f"an answer carries AI-attribution text {text!r}: the model would learn to "
                    "write it, and the gate fails any output that does",
                    ex.line,
                )
                break


def _check_leaks(report: DatasetReport, suite_prompts: Sequence[tuple[str, str]]) -> None:
    if not suite_prompts:
        return
    by_question: dict[str, int] = {}
    for ex in report.examples:
        by_question.setdefault(normalize_question(ex.question), ex.line)
    for case_id, prompt in suite_prompts:
        line = by_question.get(normalize_question(prompt))
        if line is not None:
            report.add(
                WARNING,
                "eval-leak",
                f"eval case {case_id!r} asks this same question: its score measures recall "
                "of training data, not generalization",
                line,
            )


def count_tokens(tokenizer: Any, example: Example) -> int:
    """Tokens of ``example`` as training sees it: chat-templated when the tokenizer can."""
    messages = [{"role": r, "content": c} for r, c in example.turns]
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, tokenize=True)
        if hasattr(ids, "keys") and "input_ids" in ids:
            ids = ids["input_ids"]
        return len(ids)
    text = "\n".join(c for _, c in example.turns)
    return len(tokenizer(text)["input_ids"])


def _check_lengths(report: DatasetReport, tokenizer: Any, max_length: int) -> None:
    for ex in report.examples:
        n = count_tokens(tokenizer, ex)
        if n > max_length:
            report.add(
                ERROR,
                "too-long",
                f"{n} tokens > max_length {max_length}: training would truncate the answer",
                ex.line,
            )


@dataclass(frozen=True)
class PushResult:
    """Where the data went: the commit training must pin, and whether one was made."""

    repo: str
    path_in_repo: str
    sha: str
    changed: bool


def push_dataset(
    hub: Hub,
    path: str | Path,
    repo: str,
    *,
    examples: int,
    private: bool = False,
    path_in_repo: str | None = None,
) -> PushResult:
    """Commit one validated JSONL file to a dataset repo (created if missing).

    An unchanged file makes no commit: huggingface_hub skips files the repo already
    holds, and the head sha is returned as it was.

    Raises:
        UsageError: ``path_in_repo`` escapes the repo.
        AuthError, UsageError, HubUnreachable: from :meth:`Hub.call`.
    """
    from huggingface_hub import CommitOperationAdd

    path = Path(path)
    target = path_in_repo or path.name
    if not target.strip("/") or ".." in Path(target).parts:
        raise UsageError(f"--path-in-repo {target!r} is not a file path inside the repo")
    hub.call(
        f"create the dataset repo {repo}",
        hub.api.create_repo,
        repo,
        repo_type="dataset",
        private=private,
        exist_ok=True,
    )
    before = hub.call(f"read the dataset repo {repo}", hub.api.dataset_info, repo)
    if private and before.private is False:
        print(
            f"note: {repo} already exists and is public; --private does not change that",
            file=sys.stderr,
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    info = hub.call(
        f"upload {target} to {repo}",
        hub.api.create_commit,
        repo,
        operations=[CommitOperationAdd(path_in_repo=target, path_or_fileobj=str(path))],
        commit_message=f"Upload {target} ({examples} examples)",
        commit_description=f"sha256 {digest}\n\nUploaded by `spacetrain dataset push`.",
        repo_type="dataset",
    )
    return PushResult(repo, target, info.oid, info.oid != before.sha)


def demo_dataset_path() -> Path:
    """The demo adapter's training data (kwanzaa.jsonl), shipped as package data."""
    from importlib.resources import files

    return Path(str(files("spacetrain") / "data" / "kwanzaa.jsonl"))


def load_tokenizer(name: str) -> Any:
    """A transformers tokenizer from a local folder or a Hub id (through ``HF_ENDPOINT``)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:  # pragma: no cover - the train extra is missing
        raise InputFileError(
            name, "--tokenizer needs transformers (pip install '.[train]')"
        ) from None
    local = Path(name)
    if local.exists():
        if not local.is_dir():
            raise InputFileError(local, "a tokenizer is a folder (or a Hub id)")
        source = str(local)
    else:
        from spacetrain.hub import Hub

        hub = Hub.from_env()
        source = hub.call(
            f"download the tokenizer {name}",
            hub.api.snapshot_download,
            repo_id=name,
            allow_patterns=["tokenizer*", "*.json", "*.model", "*.txt", "*.jinja"],
        )
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise InputFileError(
            name, f"cannot load a tokenizer: {' '.join(str(exc).split())[:200]}"
        ) from None


__all__ = [
    "ERROR",
    "WARNING",
    "DatasetReport",
    "Example",
    "Issue",
    "PushResult",
    "count_tokens",
    "demo_dataset_path",
    "load_tokenizer",
    "normalize_question",
    "push_dataset",
    "read_rows",
    "validate_file",
]
