"""``spacetrain build``: the command lines, app_port, health polling and the whole smoke.

No Docker engine runs on this machine (the CLI does), so the engine-less path is tested for
real with the real docker CLI. Health polling runs against real HTTP servers on loopback.
The whole build -> run -> poll -> logs -> remove flow runs against a stand-in ``docker``
executable (``FAKE_DOCKER`` below): it speaks the CLI subset the smoke uses and runs the
"container" as a real local process serving real HTTP, so cleanup on every path out, the
log tail and the exit codes are checked end to end; only the image itself is not real.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacetrain.build import (
    DEFAULT_APP_PORT,
    Docker,
    ImageSmokeFailed,
    check_context,
    probe,
    read_app_port,
    smoke,
    wait_healthy,
)
from spacetrain.errors import InfraError, InputFileError, UsageError

REPO = Path(__file__).resolve().parent.parent
SPACETRAIN = [sys.executable, "-m", "spacetrain"]


# ------------------------------------------------------------ command lines


def test_command_lines_match_how_the_hub_runs_a_space() -> None:
    docker = Docker("/usr/bin/docker")
    assert docker.info() == ["/usr/bin/docker", "info", "--format", "{{.ServerVersion}}"]
    assert docker.build(Path("space"), "img:t") == [
        "/usr/bin/docker",
        "build",
        "--tag",
        "img:t",
        "space",
    ]
    run = docker.run("img:t", "c1", 7860)
    assert run[:2] == ["/usr/bin/docker", "run"]
    assert run[-1] == "img:t"  # the image comes last: nothing after it is a docker option
    assert "--detach" in run
    assert run[run.index("--user") + 1] == "1000"  # Spaces run as uid 1000
    assert run[run.index("--name") + 1] == "c1"
    # loopback only, host port left to Docker: no race for a "free" port, nothing exposed
    assert run[run.index("--publish") + 1] == "127.0.0.1::7860"
    assert docker.run("img:t", "c1", 8080)[run.index("--publish") + 1] == "127.0.0.1::8080"
    assert docker.port("c1", 7860) == ["/usr/bin/docker", "port", "c1", "7860/tcp"]
    assert docker.state("c1")[-1] == "c1"
    assert docker.logs("c1", 5) == ["/usr/bin/docker", "logs", "--tail", "5", "c1"]
    assert docker.remove("c1") == ["/usr/bin/docker", "rm", "--force", "c1"]


# --------------------------------------------------------------- app_port


def _space(tmp_path: Path, readme: str | None) -> Path:
    folder = tmp_path / "space"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM python:3.11-slim\n")
    if readme is not None:
        (folder / "README.md").write_text(readme, encoding="utf-8")
    return folder


def test_app_port_of_the_real_space() -> None:
    assert read_app_port(REPO / "space") == 7860


@pytest.mark.parametrize(
    ("readme", "port"),
    [
        (None, DEFAULT_APP_PORT),
        ("# no front matter\n", DEFAULT_APP_PORT),
        ("---\nsdk: docker\n---\n", DEFAULT_APP_PORT),
        ("---\nsdk: docker\napp_port: 8080\n---\n", 8080),
    ],
)
def test_app_port_from_front_matter(tmp_path: Path, readme: str | None, port: int) -> None:
    assert read_app_port(_space(tmp_path, readme)) == port


@pytest.mark.parametrize(
    ("readme", "where", "words"),
    [
        ("---\nsdk: docker\napp_port: web\n---\n", ":3:", "app_port 'web' is not a port"),
        ("---\nsdk: docker\napp_port: 70000\n---\n", ":3:", "1-65535"),
        ("---\nsdk: docker\napp_port: true\n---\n", ":3:", "not a port number"),
        ("---\nsdk: [docker\n---\n", ":", "not valid YAML"),
        ("---\nsdk: docker\n", ":1:", "never closed"),
    ],
)
def test_bad_app_port_is_exit_2_naming_the_line(
    tmp_path: Path, readme: str, where: str, words: str
) -> None:
    folder = _space(tmp_path, readme)
    with pytest.raises(InputFileError) as err:
        read_app_port(folder)
    assert err.value.exit_code == 2
    assert str(err.value).startswith(f"{folder / 'README.md'}{where}")
    assert words in str(err.value)


def test_context_must_be_a_folder_with_a_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such folder"):
        check_context(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputFileError, match="is not a folder"):
        check_context(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="Dockerfile: no such file"):
        check_context(tmp_path / "empty")
    assert check_context(REPO / "space") == REPO / "space"


# ---------------------------------------------------- health polling (real HTTP)


class _App(http.server.BaseHTTPRequestHandler):
    """Answers 503 for the first ``fail_first`` requests, then ``status``."""

    fail_first = 0
    status = 200
    seen = 0

    def do_GET(self) -> None:
        type(self).seen += 1
        code = 503 if type(self).seen <= type(self).fail_first else type(self).status
        body = b"ok" if code == 200 else b"starting"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(fail_first: int = 0, status: int = 200, port: int = 0) -> http.server.HTTPServer:
    handler = type("App", (_App,), {"fail_first": fail_first, "status": status, "seen": 0})
    server = http.server.HTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def app_server() -> Iterator[list[http.server.HTTPServer]]:
    servers: list[http.server.HTTPServer] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def _url(server: http.server.HTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.e2e
def test_probe_reports_status_or_why_not(app_server: list) -> None:
    app_server.append(_serve(status=200))
    app_server.append(_serve(status=500))
    assert probe(_url(app_server[0])) == "200"
    assert probe(_url(app_server[1])) == "500"
    assert "refused" in probe(f"http://127.0.0.1:{_free_port()}/").lower()


@pytest.mark.e2e
def test_healthy_after_the_app_warms_up(app_server: list) -> None:
    app_server.append(_serve(fail_first=3))
    health = wait_healthy(_url(app_server[0]), timeout=10, interval=0.02)
    assert health.healthy
    assert health.attempts == 4
    assert health.last == "200"


@pytest.mark.e2e
def test_healthy_once_a_late_app_starts_listening(app_server: list) -> None:
    port = _free_port()
    timer = threading.Timer(0.4, lambda: app_server.append(_serve(port=port)))
    timer.start()
    try:
        health = wait_healthy(f"http://127.0.0.1:{port}/", timeout=10, interval=0.05)
    finally:
        timer.join()
    assert health.healthy
    assert health.attempts > 1


@pytest.mark.e2e
def test_never_healthy_ends_at_the_timeout_with_the_last_answer(app_server: list) -> None:
    app_server.append(_serve(status=500))
    out = io.StringIO()
    started = time.monotonic()
    health = wait_healthy(
        _url(app_server[0]), timeout=0.6, interval=0.05, progress_every=0.2, out=out
    )
    assert not health.healthy
    assert time.monotonic() - started >= 0.6
    assert health.last == "500"
    assert "did not answer 200 within 0.6 s" in health.reason
    assert "waiting for" in out.getvalue()  # a person watching the CI log sees progress


@pytest.mark.e2e
def test_an_exited_container_fails_at_once_not_at_the_timeout(app_server: list) -> None:
    app_server.append(_serve(status=503))
    calls = []

    def exited() -> str | None:
        calls.append(1)
        return "exited with code 1" if len(calls) >= 2 else None

    started = time.monotonic()
    health = wait_healthy(_url(app_server[0]), timeout=60, exited=exited, interval=0.02)
    assert not health.healthy
    assert health.reason == "the container exited with code 1"
    assert time.monotonic() - started < 10


# ------------------------------------------------ the real docker CLI, no engine


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SPACETRAIN, "build", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.mark.e2e
def test_no_docker_engine_is_exit_3_in_one_line() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI on this machine")
    # Point the real CLI at a socket that cannot exist, so no engine answers here either.
    done = _cli("space", env={"DOCKER_HOST": "unix:///nonexistent/spacetrain/docker.sock"})
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("spacetrain build: error: no Docker engine answers: ")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.e2e
def test_no_docker_cli_is_exit_3(tmp_path: Path) -> None:
    done = _cli("space", env={"PATH": str(tmp_path), "SPACETRAIN_DOCKER": ""})
    assert done.returncode == 3
    assert "no docker CLI ('docker' is not on PATH)" in done.stderr


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["missing-folder"], "missing-folder: no such folder"),
        (["pyproject.toml"], "pyproject.toml: is not a folder"),
        (["scripts"], "scripts/Dockerfile: no such file"),
        (["space", "--timeout", "0"], "--timeout must be more than 0"),
    ],
)
def test_bad_path_is_exit_2_before_docker_is_asked(args: list[str], words: str) -> None:
    done = _cli(*args, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert done.returncode == 2
    assert done.stderr.startswith(f"spacetrain build: error: {words}")
    assert len(done.stderr.strip().splitlines()) == 1


# ----------------------------------------- the whole smoke, against a stand-in CLI

FAKE_DOCKER = textwrap.dedent(
    r'''
    """A stand-in docker CLI: the subset `spacetrain build` uses, a local process as container."""
    import json, os, signal, subprocess, sys, time
    from pathlib import Path

    STATE = Path(os.environ["FAKE_DOCKER_STATE"])
    MODE = os.environ.get("FAKE_DOCKER_MODE", "healthy")
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "calls.jsonl").open("a") as fh:
        fh.write(json.dumps(sys.argv[1:]) + "\n")
    cmd, args = sys.argv[1], sys.argv[2:]

    def box(name):
        return STATE / "containers" / name

    def alive(pid):
        try:
            return "\tZ" not in Path(f"/proc/{pid}/status").read_text().split("State:")[1][:4]
        except (OSError, IndexError):
            return False

    if cmd == "info":
        if MODE == "no-engine":
            sys.exit("Cannot connect to the Docker daemon. Is the docker daemon running?")
        print("27.0.0-fake")
    elif cmd == "build":
        assert args[0] == "--tag" and Path(args[2], "Dockerfile").is_file(), args
        print("#1 [internal] load build definition from Dockerfile")
        if MODE == "build-fails":
            print("ERROR: failed to solve: pip install exited with code 1")
            sys.exit(1)
        (STATE / "images").mkdir(exist_ok=True)
        (STATE / "images" / args[1].replace("/", "_")).write_text("built")
    elif cmd == "run":
        opts = dict(zip(args[1:-1:2], args[2:-1:2]))
        assert args[0] == "--detach" and opts["--user"] == "1000", args
        if MODE == "run-fails" or not (STATE / "images" / args[-1].replace("/", "_")).exists():
            sys.exit("docker: Error response from daemon: driver failed programming external "
                     "connectivity")
        folder = box(opts["--name"])
        folder.mkdir(parents=True)
        log = (folder / "log").open("w")
        proc = subprocess.Popen([sys.executable, os.environ["FAKE_APP"], MODE, str(folder)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        (folder / "pid").write_text(str(proc.pid))
        print(opts["--name"] + "-id")
    elif cmd == "port":
        folder = box(args[0])
        for _ in range(100):
            if (folder / "port").exists() or (folder / "code").exists():
                break
            time.sleep(0.02)
        if not (folder / "port").exists() or (folder / "code").exists():
            sys.exit(f"Error: No public port '{args[1]}' published for {args[0]}")
        print(f"127.0.0.1:{(folder / 'port').read_text()}")
    elif cmd == "inspect":
        folder = box(args[-1])
        if not folder.exists():
            sys.exit(f"Error: No such object: {args[-1]}")
        if (folder / "code").exists():
            print(f"exited {(folder / 'code').read_text()}")
        elif alive(int((folder / "pid").read_text())):
            print("running 0")
        else:
            print("exited 137")
    elif cmd == "logs":
        lines = (box(args[-1]) / "log").read_text().splitlines()
        print("\n".join(lines[-int(args[1]):]))
    elif cmd == "rm":
        folder = box(args[-1])
        if not folder.exists():
            sys.exit(f"Error: No such container: {args[-1]}")
        pid = int((folder / "pid").read_text())
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
        folder.rename(folder.with_name(folder.name + ".removed"))
    else:
        sys.exit(f"fake docker: unknown command {cmd}")
    '''
)

FAKE_APP = textwrap.dedent(
    r'''
    """The "container": an HTTP app on a free loopback port, behaving as MODE says."""
    import http.server, sys, threading, time
    from pathlib import Path

    mode, folder = sys.argv[1], Path(sys.argv[2])
    if mode == "crash":
        print("Traceback (most recent call last):")
        print("ModuleNotFoundError: No module named 'gradio'", flush=True)
        (folder / "code").write_text("1")
        sys.exit(1)

    class App(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if mode == "healthy" else 503)
            self.end_headers()

        def log_message(self, fmt, *args):
            print("GET /", flush=True)

    server = http.server.HTTPServer(("127.0.0.1", 0), App)
    (folder / "port").write_text(str(server.server_address[1]))
    print(f"* Running on local URL:  http://0.0.0.0:7860 ({mode})", flush=True)
    if mode == "dies":
        threading.Thread(target=server.serve_forever, daemon=True).start()
        time.sleep(0.4)
        print("RuntimeError: CUDA driver initialization failed", flush=True)
        (folder / "code").write_text("3")
        sys.exit(3)
    server.serve_forever()
    '''
)


class FakeDocker:
    def __init__(self, root: Path) -> None:
        self.state = root / "state"
        bin_dir = root / "bin"
        bin_dir.mkdir()
        self.path = bin_dir / "docker"
        self.path.write_text(f"#!{sys.executable}\n{FAKE_DOCKER}")
        self.path.chmod(0o755)
        self.app = root / "app.py"
        self.app.write_text(FAKE_APP)

    def env(self, mode: str) -> dict[str, str]:
        return {
            "FAKE_DOCKER_STATE": str(self.state),
            "FAKE_DOCKER_MODE": mode,
            "FAKE_APP": str(self.app),
            "SPACETRAIN_DOCKER": str(self.path),
        }

    def calls(self) -> list[list[str]]:
        path = self.state / "calls.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def commands(self) -> list[str]:
        return [c[0] for c in self.calls()]

    def running(self) -> list[str]:
        """Containers not removed, or whose process still runs.

        A removed container's process got SIGKILL; on a busy machine (parallel workers)
        it may take a moment to end, so it is given 10 s to.
        """
        left = []
        for folder in (self.state / "containers").glob("*"):
            pid = int((folder / "pid").read_text())
            if not folder.name.endswith(".removed"):
                if not _zombie(pid):
                    left.append(folder.name)
                continue
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                left.append(folder.name)
        return left

    def kill_all(self) -> None:
        for pid_file in (self.state / "containers").glob("*/pid"):
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, 9)


def _zombie(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\tZ" in status.read_text().split("State:")[1][:4]
    except FileNotFoundError:
        return False


def _alive(pid: int) -> bool:
    """The process exists and is no zombie."""
    return Path(f"/proc/{pid}").exists() and not _zombie(pid)


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDocker]:
    fake = FakeDocker(tmp_path)
    yield fake
    fake.kill_all()


def _smoke(fake: FakeDocker, mode: str, monkeypatch: pytest.MonkeyPatch, **kw: object) -> str:
    for key, value in fake.env(mode).items():
        monkeypatch.setenv(key, value)
    out = io.StringIO()
    try:
        result = smoke(
            REPO / "space", tag="t/space:smoke", docker=Docker(str(fake.path)), out=out, **kw
        )
        return f"OK {result.summary()}\n{out.getvalue()}"
    except (ImageSmokeFailed, InfraError) as exc:
        return f"{type(exc).__name__}: {exc}\n{out.getvalue()}"


@pytest.mark.e2e
def test_healthy_image_passes_and_the_container_is_removed(
    fake_docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _smoke(fake_docker, "healthy", monkeypatch, timeout=20, interval=0.05)
    assert text.startswith("OK healthy: t/space:smoke answered 200 on http://127.0.0.1:")
    assert "app_port 7860" in text
    assert fake_docker.commands() == ["info", "build", "run", "port", "rm"]
    run = fake_docker.calls()[2]
    assert run[run.index("--publish") + 1] == "127.0.0.1::7860"
    assert fake_docker.running() == []


@pytest.mark.e2e
def test_failed_build_runs_nothing(
    fake_docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _smoke(fake_docker, "build-fails", monkeypatch, timeout=5)
    assert text.startswith("ImageSmokeFailed: docker build of ")
    assert "failed (exit 1)" in text
    assert "ERROR: failed to solve" in text  # the build log reached the CI log
    assert fake_docker.commands() == ["info", "build"]


@pytest.mark.e2e
def test_crashing_app_fails_with_its_log_tail_and_is_removed(
    fake_docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _smoke(fake_docker, "crash", monkeypatch, timeout=20, interval=0.05)
    assert text.startswith("ImageSmokeFailed: ")
    assert "ModuleNotFoundError: No module named 'gradio'" in text
    assert "rm" in fake_docker.commands()
    assert fake_docker.running() == []


@pytest.mark.e2e
def test_app_that_dies_while_starting_fails_before_the_timeout(
    fake_docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    text = _smoke(fake_docker, "dies", monkeypatch, timeout=60, interval=0.05)
    assert time.monotonic() - started < 30
    assert text.startswith("ImageSmokeFailed: the container exited with code 3")
    assert "CUDA driver initialization failed" in text  # from docker logs
    assert fake_docker.commands()[-2:] == ["logs", "rm"]
    assert fake_docker.running() == []


@pytest.mark.e2e
def test_never_healthy_times_out_with_logs_and_is_removed(
    fake_docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _smoke(fake_docker, "never", monkeypatch, timeout=1.0, interval=0.1)
    assert text.startswith("ImageSmokeFailed: http://127.0.0.1:")
    assert "did not answer 200 within 1 s (last answer: 503)" in text
    assert "Running on local URL" in text
    assert fake_docker.commands()[-2:] == ["logs", "rm"]
    assert fake_docker.running() == []


@pytest.mark.e2e
def test_docker_run_failure_is_exit_1_and_still_cleans_up(
    fake_docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _smoke(fake_docker, "run-fails", monkeypatch, timeout=5)
    assert text.startswith("ImageSmokeFailed: docker run t/space:smoke failed: docker: Error")
    assert fake_docker.commands()[-1] == "rm"


@pytest.mark.e2e
def test_cli_exit_codes_through_the_stand_in(fake_docker: FakeDocker) -> None:
    ok = _cli("space", "--tag", "t/space:cli", env=fake_docker.env("healthy"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("healthy: t/space:cli answered 200")
    assert "docker build --tag t/space:cli" in ok.stderr

    no_engine = _cli("space", env=fake_docker.env("no-engine"))
    assert no_engine.returncode == 3
    assert (
        no_engine.stderr.strip()
        .splitlines()[-1]
        .startswith("spacetrain build: error: no Docker engine answers: Cannot connect")
    )

    crash = _cli("space", "--timeout", "30", env=fake_docker.env("crash"))
    assert crash.returncode == 1
    last = crash.stderr.strip().splitlines()[-1]
    assert last.startswith("spacetrain build: error: ")
    assert "Traceback (most recent call last)" in crash.stderr  # the app's, from docker logs
    assert crash.stderr.count("spacetrain build: error:") == 1
    assert fake_docker.running() == []


@pytest.mark.e2e
def test_sigterm_still_removes_the_container(fake_docker: FakeDocker) -> None:
    proc = subprocess.Popen(
        [*SPACETRAIN, "build", "space", "--timeout", "120"],
        cwd=REPO,
        env={**os.environ, **fake_docker.env("never")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "port" not in fake_docker.commands() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # it is polling the never-healthy app now
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + 15, err
    assert fake_docker.commands()[-1] == "rm"
    assert fake_docker.running() == []


def test_bad_timeout_is_usage(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        smoke(REPO / "space", timeout=-1, docker=Docker("unused"))
