"""Gitignore-flavoured globs for policy file lists: ``*`` stays in one folder, ``**`` crosses.

A pattern without a slash matches the file name at any depth (``*.pyc``); one with a
slash matches the whole path relative to the Space folder (``.git/**``).
"""

from __future__ import annotations

import functools
import re


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(path: str, pattern: str) -> bool:
    """Whether the posix relative ``path`` matches ``pattern``."""
    target = path if "/" in pattern else path.rsplit("/", 1)[-1]
    return _compile(pattern).match(target) is not None


def glob_full_match(text: str, pattern: str) -> bool:
    """Whether all of ``text`` matches ``pattern`` (no file-name shortcut)."""
    return _compile(pattern).match(text) is not None
