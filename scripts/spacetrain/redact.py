"""Masking tokens in text that reaches a log, a terminal or a report.

Tokens come from the environment only and must never be printed (docs/architecture.md). Logs
we relay (the Space's training log, its run and build logs) and error messages can
still carry one, so everything we print from elsewhere goes through :func:`mask`:

- the value of every token variable we know of (``HF_TOKEN``, ``SPACE_HF_TOKEN``...),
  whatever its shape, and
- anything shaped like a Hugging Face token, ``hf_…`` or ``api_org_…``, including
  ``-`` and ``_`` (a token from ``secrets.token_urlsafe`` has both): the whole token
  goes, not only its part before the first ``-``.
"""

from __future__ import annotations

import os
import re

from spacetrain import contract

MASK = "***"
# Variables whose values are secrets wherever they show up.
TOKEN_ENVS: tuple[str, ...] = (
    contract.ENV_TOKEN,  # HF_TOKEN
    contract.trainer.ENV_SPACE_TOKEN,  # SPACE_HF_TOKEN
    "HUGGING_FACE_HUB_TOKEN",
    "HF_API_TOKEN",
    contract.trainer.ENV_TRIGGER,  # SPACETRAIN_TRIGGER, the public Space's trigger
)
# hf_ or api_org_, then token characters: 20 or more, or 8 or more with a digit or a
# capital in them, so names such as hf_hub_download or hf_transfer stay readable.
TOKEN_SHAPE = re.compile(
    r"(?<![A-Za-z0-9])(hf|api_org)_"
    r"(?:[A-Za-z0-9_-]{20,}|(?=[A-Za-z0-9_-]*[A-Z0-9])[A-Za-z0-9_-]{8,})"
)
_SHORTEST = 8  # shorter values would mask ordinary words


def env_tokens() -> list[str]:
    """The token values set in the environment, longest first (a token may contain another)."""
    values = {os.environ.get(name, "").strip() for name in TOKEN_ENVS}
    return sorted((v for v in values if len(v) >= _SHORTEST), key=len, reverse=True)


def mask(text: str) -> str:
    """``text`` with every token in it replaced: env values by ``***``, ``hf_…`` by ``hf_***``."""
    for token in env_tokens():
        text = text.replace(token, MASK)
    return TOKEN_SHAPE.sub(lambda m: f"{m.group(1)}_{MASK}", text)


__all__ = ["MASK", "TOKEN_ENVS", "TOKEN_SHAPE", "env_tokens", "mask"]
