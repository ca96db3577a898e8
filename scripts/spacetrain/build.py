"""The image smoke: build the Space's image and run it the way the Hub does, on a runner.

The seed's costly failures (BUILD_ERROR, an app that never answers: "Launch timed out")
show up here in minutes on a free runner instead of on a paid GPU. The container runs as
uid 1000 with ``app_port`` (README front matter, default 7860) published on a loopback
port that Docker picks, so two smokes on one machine never collide and no port can be
taken between choosing it and binding it. ``/`` is polled until it answers 200, the
container's log tail is printed when it never does, and the container is removed on every
path out, Ctrl-C and SIGTERM (a cancelled CI job) included.

Only the docker CLI is used (``SPACETRAIN_DOCKER`` names another executable): no SDK, and
the same commands a person would type to reproduce a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from spacetrain.errors import CheckFailed, InfraError, InputFileError, UsageError

DEFAULT_APP_PORT = 7860
DEFAULT_TAG = "spacetrain-space:smoke"
LOG_TAIL_LINES = 60
_DOCKER_ENV = "SPACETRAIN_DOCKER"
_ENGINE_TIMEOUT = 30.0  # `docker info` against a hung socket must not hang CI
_SHORT_TIMEOUT = 60.0  # run / port / inspect / logs / rm


class ImageSmokeFailed(CheckFailed):
    """The image did not build, or its app never answered, or the container exited."""


# ----------------------------------------------------------------- inputs


def check_context(path: Path) -> Path:
    """The build context: a folder with a Dockerfile (exit 2 otherwise)."""
    if not path.exists():
        raise InputFileError(path, "no such folder; pass the Space folder (default: space/)")
    if not path.is_dir():
        raise InputFileError(path, "is not a folder; pass the Space folder, not a file in it")
    if not (path / "Dockerfile").is_file():
        raise InputFileError(path / "Dockerfile", "no such file: a Docker Space needs one")
    return path


def read_app_port(folder: Path) -> int:
    """``app_port`` from the README front matter; 7860 (the Hub's default) when absent.

    Raises:
        InputFileError: front matter that does not parse, or an ``app_port`` that is not
            a port number (the Hub would not route to it either).
    """
    from spacetrain.lint.space_folder import parse_front_matter

    readme = folder / "README.md"
    if not readme.is_file():
        return DEFAULT_APP_PORT
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(readme, f"cannot read: {exc}") from None
    front = parse_front_matter(text)
    if front.data is None:
        if front.problem and "no YAML front matter" in front.problem[1]:
            return DEFAULT_APP_PORT
        line, detail = front.problem or (1, "unreadable front matter")
        raise InputFileError(readme, detail, line=line)
    port = front.data.get("app_port", DEFAULT_APP_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InputFileError(
            readme,
            f"app_port {port!r} is not a port number (1-65535)",
            line=front.line_of("app_port"),
        )
    return port


# ------------------------------------------------------------ docker CLI


@dataclass(frozen=True)
class Docker:
    """The docker command lines the smoke runs (kept apart so tests can read them)."""

    executable: str = "docker"

    def info(self) -> list[str]:
        """Asks the engine (not just the CLI) to answer."""
        return [self.executable, "info", "--format", "{{.ServerVersion}}"]

    def build(self, context: Path, tag: str) -> list[str]:
        """``docker build`` of the Space folder, tagged."""
        return [self.executable, "build", "--tag", tag, str(context)]

    def run(self, tag: str, name: str, app_port: int) -> list[str]:
        """Detached, as uid 1000 like a Space, ``app_port`` on a loopback port Docker picks."""
        return [
            self.executable,
            "run",
            "--detach",
            "--name",
            name,
            "--user",
            "1000",
            "--publish",
            f"127.0.0.1::{app_port}",
            tag,
        ]

    def port(self, name: str, app_port: int) -> list[str]:
        """Which host port ``app_port`` landed on."""
        return [self.executable, "port", name, f"{app_port}/tcp"]

    def state(self, name: str) -> list[str]:
        """``running 0`` while it runs, ``exited 1`` when it died."""
        return [
            self.executable,
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            name,
        ]

    def logs(self, name: str, tail: int = LOG_TAIL_LINES) -> list[str]:
        """The last lines the app printed (stdout and stderr)."""
        return [self.executable, "logs", "--tail", str(tail), name]

    def remove(self, name: str) -> list[str]:
        """Stop and delete the container, whatever state it is in."""
        return [self.executable, "rm", "--force", name]


def find_docker() -> Docker:
    """The docker CLI (``$SPACETRAIN_DOCKER`` or ``docker`` on PATH); exit 3 without one."""
    wanted = os.environ.get(_DOCKER_ENV) or "docker"
    found = shutil.which(wanted)
    if found is None:
        raise InfraError(
            f"no docker CLI ({wanted!r} is not on PATH): the image smoke needs Docker; "
            "install it or set SPACETRAIN_DOCKER"
        )
    return Docker(found)


def _run(cmd: list[str], timeout: float = _SHORT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def check_engine(docker: Docker) -> str:
    """The engine's version; exit 3 when no engine answers (the CLI alone is not enough)."""
    try:
        done = _run(docker.info(), timeout=_ENGINE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise InfraError(
            f"the Docker engine did not answer `docker info` within {_ENGINE_TIMEOUT:g} s"
        ) from None
    except OSError as exc:
        raise InfraError(f"cannot run {docker.executable}: {exc.strerror or exc}") from None
    version = done.stdout.strip()
    if done.returncode != 0 or not version:
        raise InfraError(f"no Docker engine answers: {_last_line(done.stderr or done.stdout)}")
    return version


# ---------------------------------------------------------- health check


@dataclass(frozen=True)
class Health:
    """How the wait for a 200 ended."""

    healthy: bool
    elapsed: float
    attempts: int
    last: str  # the last answer: "200", "503", "connection refused", ...
    reason: str = ""  # why it is not healthy


def probe(url: str, timeout: float = 5.0) -> str:
    """One GET: the status code as text, or what went wrong instead."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
            return str(response.status)
    except urllib.error.HTTPError as exc:
        return str(exc.code)
    except urllib.error.URLError as exc:
        reason = exc.reason
        return getattr(reason, "strerror", None) or str(reason)
    except (TimeoutError, ConnectionError, OSError) as exc:
        return getattr(exc, "strerror", None) or type(exc).__name__


def wait_healthy(
    url: str,
    *,
    timeout: float,
    exited: Callable[[], str | None] = lambda: None,
    interval: float = 1.0,
    progress_every: float = 10.0,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Health:
    """Poll ``url`` until it answers 200, ``exited()`` says the app is gone, or ``timeout``.

    ``exited`` returns ``None`` while the app runs and a few words ("exited with code 1")
    once it has stopped, so a crashed app fails at once instead of after the timeout.
    """
    start = clock()
    attempts = 0
    last = "no answer yet"
    next_note = progress_every
    while True:
        attempts += 1
        last = probe(url, timeout=max(0.5, min(5.0, timeout)))
        elapsed = clock() - start
        if last == "200":
            return Health(True, elapsed, attempts, last)
        gone = exited()
        if gone:
            return Health(False, elapsed, attempts, last, f"the container {gone}")
        if elapsed >= timeout:
            return Health(
                False, elapsed, attempts, last, f"{url} did not answer 200 within {timeout:g} s"
            )
        if out is not None and elapsed >= next_note:
            print(f"  waiting for {url}: {last} ({elapsed:.0f} s)", file=out, flush=True)
            next_note += progress_every
        sleep(max(0.0, min(interval, timeout - elapsed)))


# ---------------------------------------------------------------- the smoke


@dataclass(frozen=True)
class SmokeResult:
    """A healthy smoke: what ran and how long it took to answer."""

    tag: str
    app_port: int
    url: str
    build_s: float
    health: Health

    def summary(self) -> str:
        """One line for stdout."""
        return (
            f"healthy: {self.tag} answered 200 on {self.url} after "
            f"{self.health.elapsed:.1f} s (app_port {self.app_port}, built in {self.build_s:.0f} s)"
        )


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM (a cancelled CI job) into an exception, so ``finally`` removes the
    container; without this the process dies and the container keeps running."""

    def _raise(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _group(title: str, out: TextIO) -> Iterator[None]:
    """A collapsible log group on GitHub Actions; a plain heading elsewhere."""
    on_actions = os.environ.get("GITHUB_ACTIONS") == "true"
    print(f"::group::{title}" if on_actions else f"--- {title}", file=out, flush=True)
    try:
        yield
    finally:
        if on_actions:
            print("::endgroup::", file=out, flush=True)


def _host_port(text: str) -> int:
    """The port of ``127.0.0.1:32768`` (``docker port`` may print one line per address)."""
    for line in text.splitlines():
        head, sep, tail = line.strip().rpartition(":")
        if sep and head and tail.isdigit():
            return int(tail)
    raise ImageSmokeFailed(f"docker port printed no host port: {text.strip() or 'nothing'}")


def _stream(cmd: list[str], out: TextIO) -> int:
    """Run ``cmd`` with its output going to ``out`` as it comes (a build log is long)."""
    out.flush()
    try:
        fileno = out.fileno()
    except (AttributeError, OSError, ValueError):
        fileno = None
    try:
        if fileno is not None:
            return subprocess.run(
                cmd, stdout=fileno, stderr=subprocess.STDOUT, check=False
            ).returncode
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
        return proc.returncode
    except OSError as exc:
        raise InfraError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None


def _container_state(docker: Docker, name: str) -> str | None:
    done = _run(docker.state(name))
    if done.returncode != 0:
        return "is gone"
    status, _, code = done.stdout.strip().partition(" ")
    if status in {"running", "created", "restarting"}:
        return None
    return f"{status or 'stopped'} with code {code or '?'}"


def _print_logs(docker: Docker, name: str, out: TextIO) -> None:
    try:
        done = subprocess.run(
            docker.logs(name),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=_SHORT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"(cannot read the container's logs: {exc})", file=out)
        return
    lines = done.stdout.splitlines() or ["(the container printed nothing)"]
    with _group(f"docker logs --tail {LOG_TAIL_LINES} {name}", out):
        for line in lines:
            print(f"  | {line}", file=out)
    out.flush()


def smoke(
    path: Path,
    *,
    tag: str = DEFAULT_TAG,
    timeout: float = 120.0,
    docker: Docker | None = None,
    interval: float = 1.0,
    out: TextIO | None = None,
) -> SmokeResult:
    """Build ``path``, run it as the Hub does and wait for ``/`` to answer 200.

    Raises:
        InputFileError / UsageError: no such folder, no Dockerfile, a bad ``app_port`` (2).
        InfraError: no docker CLI or no engine (3).
        ImageSmokeFailed: the build failed, the app never answered, or it exited (1).
    """
    out = out or sys.stderr
    if timeout <= 0:
        raise UsageError(f"--timeout must be more than 0 seconds, not {timeout:g}")
    context = check_context(path)
    app_port = read_app_port(context)
    docker = docker or find_docker()
    version = check_engine(docker)
    print(f"spacetrain build: Docker engine {version}; building {context} as {tag}", file=out)

    started = time.monotonic()
    with _group(f"docker build --tag {tag} {context}", out):
        built = _stream(docker.build(context, tag), out)
    build_s = time.monotonic() - started
    if built != 0:
        raise ImageSmokeFailed(
            f"docker build of {context} failed (exit {built}); the build log is above"
        )
    print(f"spacetrain build: built {tag} in {build_s:.0f} s", file=out, flush=True)

    name = f"spacetrain-smoke-{uuid.uuid4().hex[:12]}"
    with _sigterm_unwinds():
        try:
            started_run = _run(docker.run(tag, name, app_port))
            if started_run.returncode != 0:
                why = _last_line(started_run.stderr or started_run.stdout)
                raise ImageSmokeFailed(f"docker run {tag} failed: {why}")
            mapped = _run(docker.port(name, app_port))
            if mapped.returncode != 0:
                _print_logs(docker, name, out)
                raise ImageSmokeFailed(
                    f"the container has no port {app_port} published (it may have exited): "
                    f"{_last_line(mapped.stderr)}"
                )
            url = f"http://127.0.0.1:{_host_port(mapped.stdout)}/"
            print(
                f"spacetrain build: {name} runs as uid 1000, app_port {app_port} -> {url}; "
                f"waiting up to {timeout:g} s for 200",
                file=out,
                flush=True,
            )
            health = wait_healthy(
                url,
                timeout=timeout,
                exited=lambda: _container_state(docker, name),
                interval=interval,
                out=out,
            )
            if not health.healthy:
                _print_logs(docker, name, out)
                raise ImageSmokeFailed(f"{health.reason} (last answer: {health.last})")
            return SmokeResult(tag, app_port, url, build_s, health)
        finally:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                removed = _run(docker.remove(name))
                if removed.returncode != 0 and "No such container" not in removed.stderr:
                    print(
                        f"spacetrain build: note: could not remove {name}: "
                        f"{_last_line(removed.stderr)}",
                        file=out,
                    )


__all__ = [
    "DEFAULT_APP_PORT",
    "DEFAULT_TAG",
    "Docker",
    "Health",
    "ImageSmokeFailed",
    "SmokeResult",
    "check_context",
    "check_engine",
    "find_docker",
    "probe",
    "read_app_port",
    "smoke",
    "wait_healthy",
]
