"""localhub: an offline stand-in for the Hugging Face Hub and Docker Spaces.

The real, unmodified clients (huggingface_hub, gradio_client, datasets, transformers,
peft) talk to it over HTTP. See docs/localhub.md.

>>> from spacetrain.localhub import LocalHub
>>> with LocalHub(root=tmp_path / "hub") as hub:
...     HfApi(endpoint=hub.url, token="hf_test").whoami()["name"]
'localhub-user'
"""

from __future__ import annotations

from spacetrain.localhub.clients import use_endpoint
from spacetrain.localhub.server import FAULTS_ENV, LocalHub

__all__ = ["FAULTS_ENV", "LocalHub", "use_endpoint"]
