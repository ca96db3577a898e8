"""Tiny Space apps the tests commit to localhub (not the project's space/app.py)."""

from __future__ import annotations

from pathlib import Path

README = "---\ntitle: Test app\nemoji: 🧪\nsdk: docker\napp_port: 7860\n---\n# test app\n"
DOCKERFILE = 'FROM python:3.11-slim\nCOPY . .\nCMD ["python", "app.py"]\n'

# A stdlib HTTP app: starts in a blink, answers GET / with its environment, its pid and
# the VERSION file of the commit it runs from.
ENV_APP = """\
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

print("env app starting", flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "env": dict(os.environ),
            "pid": os.getpid(),
            "version": open("VERSION").read().strip(),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        print("request", self.path, flush=True)


HTTPServer((os.environ["GRADIO_SERVER_NAME"], int(os.environ["GRADIO_SERVER_PORT"])),
           Handler).serve_forever()
"""

CRASH_APP = """\
import sys
print("loading the model...", flush=True)
print("boom: CUDA out of memory", file=sys.stderr, flush=True)
sys.exit(3)
"""

SILENT_APP = """\
import time
print("never listens", flush=True)
time.sleep(600)
"""

GRADIO_APP = """\
import os
import gradio as gr


def greet(name: str) -> str:
    return f"hello {name} from {os.environ['SPACE_ID']} ({os.environ.get('GREETING', '-')})"


with gr.Blocks() as demo:
    box = gr.Textbox()
    out = gr.Textbox()
    gr.Button("go").click(greet, inputs=box, outputs=out, api_name="greet")

demo.launch()
"""


def write_space(
    root: Path, app: str | None = ENV_APP, *, version: str = "1", readme: str = README
) -> Path:
    """A Docker Space folder: README, Dockerfile, app.py (unless None), VERSION."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(readme)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "VERSION").write_text(version + "\n")
    if app is not None:
        (root / "app.py").write_text(app)
    return root
