"""Tokens written into the Space's files: they would be published with the Space."""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterator

from spacetrain.lint.model import Hit, Severity
from spacetrain.lint.registry import rule
from spacetrain.lint.space_folder import SpaceFolder

_SECRETS_URL = "https://huggingface.co/docs/hub/spaces-overview#managing-secrets"
# A placeholder is made only of these words (and runs of one character): a real token
# that happens to contain "xxx" or "test" among its random letters is still a token.
_PLACEHOLDER_WORDS = frozenset({
    "your", "my", "the", "a", "an", "hf", "huggingface", "hugging", "face", "api", "org",
    "access", "write", "read", "token", "here", "key", "secret", "changeme", "change", "me",
    "dummy", "example", "placeholder", "redacted", "fake", "test", "insert", "replace",
    "put", "paste", "value", "goes", "this", "with", "real", "sample", "todo", "foo", "bar",
})  # fmt: skip
_PREFIXES = ("api_org_", "hf_")


def shannon_entropy(text: str) -> float:
    """Bits per character; random letters score about 4.7, ``xxxx…`` about 0."""
    if not text:
        return 0.0
    counts = Counter(text)
    total = len(text)
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def is_placeholder(value: str, min_entropy: float) -> bool:
    """True for values that only look like secrets: low entropy, ``your…``, ``abcdef…``."""
    body = value
    for prefix in _PREFIXES:
        if body.startswith(prefix):
            body = body[len(prefix) :]
            break
    lowered = body.lower()
    if lowered.startswith(("<", "{", "[")) or "..." in lowered or "***" in lowered:
        return True  # <your-token>, {token}, hf_...: a template, not a value
    if _made_of_words(lowered):
        return True
    if shannon_entropy(body) < min_entropy:
        return True
    steps = sum(1 for a, b in itertools.pairwise(lowered) if ord(b) - ord(a) == 1)
    return len(lowered) > 4 and steps >= 0.8 * (len(lowered) - 1)  # abcdefgh…


def _made_of_words(lowered: str) -> bool:
    """``your_token_here``, ``changeme-changeme``, ``YOURTOKENHEREYOURTOK``: every part is
    placeholder words or one repeated character (the last word may be cut short)."""
    parts = [p for p in re.split(r"[^a-z0-9]+", lowered) if p]
    return bool(parts) and all(
        _segments(part, last=i == len(parts) - 1) for i, part in enumerate(parts)
    )


@functools.lru_cache(maxsize=256)
def _segments(text: str, *, last: bool) -> bool:
    if not text:
        return True
    if len(set(text)) == 1:
        return True
    for size in range(1, len(text) + 1):
        head = text[:size]
        if head in _PLACEHOLDER_WORDS and _segments(text[size:], last=last):
            return True
    # a placeholder cut to the token's length: "...yourtok"
    return last and len(text) >= 2 and any(w.startswith(text) for w in _PLACEHOLDER_WORDS)


def redact(value: str) -> str:
    """Never show a secret: keep a recognisable prefix and the length."""
    keep = next((len(p) for p in _PREFIXES if value.startswith(p)), 0) + 2
    return f"{value[:keep]}… ({len(value)} chars)"


@functools.lru_cache(maxsize=32)
def _assignments(names: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """``HF_TOKEN=v``, ``HF_TOKEN: v``, ``["HF_TOKEN"] = "v"``; and ``ENV HF_TOKEN v``."""
    joined = "|".join(re.escape(n) for n in names)
    value = r"(?P<quote>[\"']?)(?P<value>[^\s\"'`]+)(?P=quote)"
    assign = re.compile(
        rf"(?<![A-Za-z0-9_])(?P<name>{joined})(?![A-Za-z0-9_])[\"']?\]?\s*[:=]\s*{value}"
    )
    legacy = re.compile(rf"^\s*(?:ENV|ARG)\s+(?P<name>{joined})\s+{value}\s*$", re.I)
    return assign, legacy


@rule(
    "hardcoded-token",
    Severity.ERROR,
    fix_title="Delete it, revoke it on huggingface.co/settings/tokens, read os.environ['HF_TOKEN']",
    url=_SECRETS_URL,
)
def hardcoded_token(space: SpaceFolder) -> Iterator[Hit]:
    """A Hugging Face token (or a literal `HF_TOKEN=` value) is written in a Space file.

    ## What it does
    Scans every text file of the Space (UTF-8 or not) for the token patterns of
    `secrets.token_patterns` (`hf_` or `api_org_` followed by 34 letters) and for
    literal values given to the variables of `secrets.env_names` (`HF_TOKEN=…`,
    `ENV HF_TOKEN …`, `"HF_TOKEN": "…"`). Placeholders are skipped: values with a
    Shannon entropy below `secrets.min_entropy`, runs such as `abcdef…`, and words such
    as `your_token`. References (`$HF_TOKEN`, `${{ secrets.HF_TOKEN }}`,
    `os.getenv("HF_TOKEN")`) are not values. The finding shows only a prefix.

    ## Why is this bad?
    Everything in `space/` is pushed to the Space, which may be public, and to git
    history forever; GitHub's secret scanning flags it and the token must be revoked.

    ## Example
    ```python
    token = "hf_..."                 # a real token, pasted
    ```
    Use instead:
    ```python
    token = os.environ["HF_TOKEN"]   # a Space secret
    ```
    """
    secrets = space.policy["secrets"]
    min_entropy = float(secrets["min_entropy"])
    patterns = [(p["name"], re.compile(p["regex"])) for p in secrets["token_patterns"]]
    assign, legacy = _assignments(tuple(secrets["env_names"]))
    for rel, source in space.files.items():
        if b"\x00" in source.raw:
            continue  # binary (weights, archives): unexpected-file already reports it
        text = source.lossy_text
        python = rel.endswith(".py")
        for number, line in enumerate(text.splitlines(), start=1):
            seen: set[str] = set()
            for name, pattern in patterns:
                for match in pattern.finditer(line):
                    token = match.group(0)
                    if token in seen or is_placeholder(token, min_entropy):
                        continue
                    seen.add(token)
                    yield Hit(rel, number, f"{name} {redact(token)} is written in {rel}")
            matches = list(assign.finditer(line))
            if rel == "Dockerfile":
                matches += legacy.finditer(line)
            for match in matches:
                value = match.group("value")
                if value in seen or value.startswith(("$", "%", "{", "(")):
                    continue
                if python and not match.group("quote"):
                    continue  # an expression (os.getenv(...)), not a literal
                if len(value) < 8 or is_placeholder(value, min_entropy):
                    continue
                if any(pattern.fullmatch(value) for _name, pattern in patterns):
                    continue  # already reported above (or a placeholder of that shape)
                seen.add(value)
                yield Hit(
                    rel,
                    number,
                    f"{match.group('name')} is given the literal value {redact(value)}",
                )
