"""Where the test suite's CPU goes: every process of one pytest run, by kind and by test.

Run it by hand (it is not collected by pytest)::

    .venv/bin/python tests/benchmarks/suite_cpu.py [pytest arguments, default: -n 4]

On a 2-core machine the suite is CPU-bound, so its wall time is about its CPU seconds
over the cores it gets; this says which processes those seconds went to. It samples
``/proc`` four times a second: every process descended from this one (pytest, its
workers and all they start: train.py, the Space apps, the CLI, the browser; this
process is their subreaper, so a supervisor that detached is still counted) with its
CPU time so far, and the test that started it (``PYTEST_CURRENT_TEST`` in its
environment; none for what a Space or a Job started, whose environment is the Space's).
A process that lives under 0.25 s may be missed; its CPU is then left out.
"""

from __future__ import annotations

import collections
import ctypes
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PR_SET_CHILD_SUBREAPER = 36  # prctl(2)
HZ = os.sysconf("SC_CLK_TCK")


def kind(argv: list[str]) -> str:
    """``train.py``, ``app.py``, ``cli <command>``, ``xdist worker``... for one argv."""
    line = " ".join(argv)
    if "import train" in line:
        return "app.py's GPU check (child)"
    for script in ("train.py", "app.py", "torchrun"):
        if script in line:
            return script
    if "spacetrain" in argv:
        rest = argv[argv.index("spacetrain") + 1 :]
        return f"cli {rest[0] if rest else ''}".strip()
    if argv and argv[0].endswith("/spacetrain"):
        return f"cli {argv[1] if len(argv) > 1 else ''}".strip()
    if "exec(eval(sys.stdin" in line:
        return "xdist worker"
    if "chrom" in line.lower():
        return "browser"
    if "pytest" in line:
        return "pytest"
    return Path(argv[0]).name if argv else "?"


def sample(pytest_pid: int, seen: dict, stop: threading.Event) -> None:
    """Fill ``seen[(pid, start)] = [argv, test, cpu_s]`` until ``stop`` is set; reap the
    orphans this subreaper inherits (never pytest itself: subprocess waits for that)."""
    me = os.getpid()
    ours: dict[tuple[str, str], bool] = {}
    while not stop.is_set():
        parents: dict[str, tuple[str, str]] = {}
        for entry in Path("/proc").iterdir():
            if (pid := entry.name).isdigit():
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                parents[pid] = (fields[1], fields[19])
                key = (pid, fields[19])
                if key in seen:
                    seen[key][2] = (int(fields[11]) + int(fields[12])) / HZ
                if fields[1] == str(me) and fields[0] == "Z" and int(pid) != pytest_pid:
                    os.waitpid(int(pid), os.WNOHANG)
        for pid, (_, start) in parents.items():
            key = (pid, start)
            if key in seen or not _descends(pid, parents, str(me), ours):
                continue
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            test = next((e.decode()[20:] for e in env if e.startswith(b"PYTEST_CURRENT_TEST=")), "")
            cpu = (int(fields[11]) + int(fields[12])) / HZ
            seen[key] = [argv.split("\0")[:8], test.split(" ")[0].split("@")[0], cpu]
        stop.wait(0.25)


def _descends(pid: str, parents: dict, me: str, ours: dict) -> bool:
    """Whether ``pid`` has this process among its ancestors (answers cached by identity)."""
    chain = []
    while pid in parents and pid != me:
        key = (pid, parents[pid][1])
        if key in ours:
            break
        chain.append(key)
        pid = parents[pid][0]
    found = pid == me or ours.get((pid, parents.get(pid, ("", ""))[1]), False)
    for key in chain:
        ours[key] = found
    return found


def main(args: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("suite_cpu: prctl(PR_SET_CHILD_SUBREAPER) failed; detached processes are missed")
    seen: dict = {}
    stop = threading.Event()
    start = time.monotonic()
    pytest = subprocess.Popen(
        [str(REPO / ".venv/bin/pytest"), "-q", "-p", "no:cacheprovider", *(args or ["-n", "4"])],
        cwd=REPO,
    )
    sampler = threading.Thread(target=sample, args=(pytest.pid, seen, stop), daemon=True)
    sampler.start()
    code = pytest.wait()
    wall = time.monotonic() - start
    stop.set()
    sampler.join()
    kinds: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    tests: dict[str, float] = collections.Counter()
    for argv, test, cpu in seen.values():
        kinds[kind(argv)][0] += 1
        kinds[kind(argv)][1] += cpu
        tests[test or "(started by a Space, a Job or a worker)"] += cpu
    total = sum(cpu for _, cpu in kinds.values())
    print(f"\npytest exit {code}: {wall:.0f} s wall, {total:.0f} CPU-s ({total / wall:.2f} cores)")
    print(f"{'process':34} {'count':>6} {'CPU-s':>8} {'each':>6}")
    for name, (count, cpu) in sorted(kinds.items(), key=lambda kv: -kv[1][1])[:20]:
        print(f"{name[:34]:34} {count:6.0f} {cpu:8.1f} {cpu / count:6.2f}")
    print(f"\n{'CPU-s':>8}  processes a test started")
    for test, cpu in collections.Counter(tests).most_common(20):
        print(f"{cpu:8.1f}  {test}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
