"""Point the Hub clients of *this* process at a localhub that started after they were imported.

huggingface_hub reads ``HF_ENDPOINT`` once, at import (``constants.ENDPOINT`` and the
resolve-URL template), and its module-level helpers (``space_info``, used by
gradio_client) are bound to an ``HfApi`` built then; ``datasets`` copies the endpoint
into ``datasets.config``. A test that starts localhub on a free port after those
imports can either run its client in a subprocess with ``HF_ENDPOINT`` set, or use
:func:`use_endpoint`, which sets the variable and patches those copies, and puts
everything back on exit.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

_DEFAULT = "https://huggingface.co"


def _targets(endpoint: str) -> list[tuple[Any, str, Any]]:
    """(object, attribute, value-for-endpoint) for every copy of the endpoint we know of."""
    import huggingface_hub.constants as constants
    import huggingface_hub.hf_api as hf_api

    targets: list[tuple[Any, str, Any]] = [
        (constants, "ENDPOINT", endpoint),
        (
            constants,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        ),
        (hf_api.api, "endpoint", endpoint),
    ]
    config = sys.modules.get("datasets.config")
    if config is not None:
        targets += [
            (config, "HF_ENDPOINT", endpoint),
            (
                config,
                "HUB_DATASETS_URL",
                endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
            ),
        ]
    return targets


@contextlib.contextmanager
def use_endpoint(url: str) -> Iterator[str]:
    """Within the block, huggingface_hub, gradio_client and datasets talk to ``url``.

    Example:
        >>> with LocalHub(root=tmp) as hub, use_endpoint(hub.url):
        ...     gradio_client.Client("me/space")
    """
    endpoint = url.rstrip("/")
    old_env = os.environ.get("HF_ENDPOINT")
    os.environ["HF_ENDPOINT"] = endpoint
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in _targets(endpoint)]
    for obj, attr, value in _targets(endpoint):
        setattr(obj, attr, value)
    try:
        yield endpoint
    finally:
        if old_env is None:
            os.environ.pop("HF_ENDPOINT", None)
        else:
            os.environ["HF_ENDPOINT"] = old_env
        restored = {(id(obj), attr) for obj, attr, _ in saved}
        for obj, attr, value in saved:
            setattr(obj, attr, value)
        # datasets imported inside the block took our URL: give it the one it would have had.
        outside = (old_env or _DEFAULT).rstrip("/")
        for obj, attr, value in _targets(outside):
            if (id(obj), attr) not in restored:
                setattr(obj, attr, value)


__all__ = ["use_endpoint"]
