"""Benchmark: localhub upload and download round trips of 100 small files.

Run it by hand (it is not collected by pytest)::

    .venv/bin/python tests/benchmarks/bench_localhub.py [--files 100] [--rounds 3]

Every number is the median of ``--rounds``. The baseline is a bare stdlib
``ThreadingHTTPServer`` that answers every HEAD/GET with a fixed body and the headers
huggingface_hub needs, driven by the same client session in the same process: the
"localhub: HEAD + GET resolve" row, made the same way, says how much localhub's own work
(auth, faults, routing, git) costs on top of HTTP; the library rows add the clients' own
work (cache files, locks, hashing).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.utils import get_session

from spacetrain.localhub import LocalHub

BODY = b"x" * 64


class _Static(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as localhub does

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("ETag", '"' + "1" * 40 + '"')
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(BODY)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


def _median(rounds: int, run: Callable[[int], tuple[float, int]]) -> tuple[float, float]:
    """Median seconds and median requests/second over ``rounds`` runs."""
    results = [run(i) for i in range(rounds)]
    seconds = statistics.median(s for s, _ in results)
    rates = statistics.median(n / s for s, n in results)
    return seconds, rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    n = args.files
    rows: list[tuple[str, float, float]] = []

    # Baseline: HEAD + GET per file against a server that does nothing.
    static = ThreadingHTTPServer(("127.0.0.1", 0), _Static)
    threading.Thread(target=static.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{static.server_address[1]}"
    session = get_session()

    def baseline(_: int) -> tuple[float, int]:
        start = time.perf_counter()
        for i in range(n):
            session.head(f"{url}/f{i}")
            session.get(f"{url}/f{i}")
        return time.perf_counter() - start, 2 * n

    base_s, base_rps = _median(args.rounds, baseline)
    rows.append((f"baseline: {n} x (HEAD + GET), stdlib server", base_s, base_rps))
    static.shutdown()
    static.server_close()

    with tempfile.TemporaryDirectory() as tmp, LocalHub(root=Path(tmp) / "hub") as hub:
        api = HfApi(endpoint=hub.url, token="hf_bench")
        api.create_repo("bench/files")
        folder = Path(tmp) / "files"
        folder.mkdir()

        def count(since: int) -> int:
            return len(hub.requests) - since

        def upload_folder(round_: int) -> tuple[float, int]:
            for i in range(n):
                (folder / f"f{i:03d}.txt").write_text(f"round {round_} file {i}\n")
            since = len(hub.requests)
            start = time.perf_counter()
            api.upload_folder(repo_id="bench/files", folder_path=folder)
            return time.perf_counter() - start, count(since)

        def upload_files(round_: int) -> tuple[float, int]:
            since = len(hub.requests)
            start = time.perf_counter()
            for i in range(n):
                api.upload_file(
                    path_or_fileobj=f"single {round_} {i}\n".encode(),
                    path_in_repo=f"single/f{i:03d}.txt",
                    repo_id="bench/files",
                )
            return time.perf_counter() - start, count(since)

        sha = ""

        def download_each(round_: int) -> tuple[float, int]:
            cache = Path(tmp) / f"cache-each-{round_}"
            since = len(hub.requests)
            start = time.perf_counter()
            for i in range(n):
                hf_hub_download(
                    "bench/files", f"f{i:03d}.txt", revision=sha, endpoint=hub.url, cache_dir=cache
                )
            return time.perf_counter() - start, count(since)

        def download_snapshot(round_: int) -> tuple[float, int]:
            cache = Path(tmp) / f"cache-snap-{round_}"
            since = len(hub.requests)
            start = time.perf_counter()
            snapshot_download(
                "bench/files", revision=sha, endpoint=hub.url, cache_dir=cache, allow_patterns="f*"
            )
            return time.perf_counter() - start, count(since)

        s, rps = _median(args.rounds, upload_folder)
        rows.append((f"upload_folder: {n} files, one commit", s, rps))
        s, rps = _median(args.rounds, upload_files)
        rows.append((f"upload_file x {n}: {n} commits", s, rps))
        sha = api.model_info("bench/files").sha or ""

        def raw_resolve(_: int) -> tuple[float, int]:
            start = time.perf_counter()
            for i in range(n):
                file_url = f"{hub.url}/bench/files/resolve/{sha}/f{i:03d}.txt"
                session.head(file_url)
                session.get(file_url)
            return time.perf_counter() - start, 2 * n

        s, rps = _median(args.rounds, raw_resolve)
        rows.append((f"localhub: {n} x (HEAD + GET) resolve, same client", s, rps))
        s, rps = _median(args.rounds, download_each)
        rows.append((f"hf_hub_download x {n} at a sha (HEAD + GET)", s, rps))
        s, rps = _median(args.rounds, download_snapshot)
        rows.append((f"snapshot_download: {n} files, 8 threads", s, rps))

    python = sys.version.split()[0]
    print(f"localhub benchmark: {n} files, median of {args.rounds} rounds, Python {python}")
    print(f"{'case':<48} {'seconds':>8} {'req/s':>8} {'vs baseline':>12}")
    for name, seconds, rate in rows:
        print(f"{name:<48} {seconds:8.3f} {rate:8.0f} {rate / base_rps:11.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
