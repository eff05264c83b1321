"""CPU placement seen from the host (platform/ptrace/placement.py): a stub thread making
syscalls is bound to one CPU, beside the Sentry, pinned there itself; once it computes,
it may run on every CPU the sandbox was given.  A policy of the ptrace platform: these run on ptrace
whatever platform the suite was given (systrap threads are not placed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pvtest import Builder, descendants, is_stub, pyvisor_env


def _stub_affinities(root: int) -> dict[int, str]:
    """Cpus_allowed_list of every thread of the stub processes below `root`."""
    out = {}
    for pid in descendants(root):
        try:
            if not is_stub(pid):
                continue
            for tid in os.listdir(f"/proc/{pid}/task"):
                for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                    if line.startswith("Cpus_allowed_list:"):
                        out[int(tid)] = line.split(":", 1)[1].strip()
        except OSError:
            continue
    return out


def _sentry_affinity(root: int) -> str | None:
    """Cpus_allowed_list of the Sentry below `root`: the tracer of its stubs."""
    for pid in descendants(root):
        try:
            if not is_stub(pid):
                continue
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            tracer = next(int(line.split()[1]) for line in status
                          if line.startswith("TracerPid:"))
            for line in Path(f"/proc/{tracer}/status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    return line.split(":", 1)[1].strip()
        except (OSError, StopIteration, ValueError):
            continue
    return None


def _cpu_list(cpus: set[int]) -> str:
    """The kernel's list form of a CPU set ("0-1", "0,2", "3")."""
    parts, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [c]
    parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def test_syscall_heavy_thread_bound_computing_thread_free(program: Builder) -> None:
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("placement needs two CPUs; this host gives the tests one")
    everything = _cpu_list(allowed)
    p = subprocess.Popen([sys.executable, "-m", "pyvisor", "--platform=ptrace", "do", "--",
                          program("placement.c")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=pyvisor_env(None),
                         start_new_session=True)
    assert p.stdin is not None and p.stdout is not None
    try:
        assert p.stdout.readline() == b"syscalls\n"
        # The policy binds a thread after short runs in a row: under load a run can be
        # long (preempted), so look until it holds, while the program keeps calling.
        # The Sentry pins itself to its CPU (and frees itself while that CPU is busy
        # with something else): seen pinned beside the bound thread at some point.
        deadline = time.monotonic() + 60
        sentry_beside = False
        while True:
            after_syscalls = _stub_affinities(p.pid)
            bound = [cpus for cpus in after_syscalls.values() if cpus != everything]
            if len(bound) == 1 and _sentry_affinity(p.pid) == bound[0]:
                sentry_beside = True
            if (len(bound) == 1 and sentry_beside) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        p.stdin.write(b"x")
        p.stdin.flush()
        assert p.stdout.readline() == b"computed\n"
        after_computing = _stub_affinities(p.pid)
        p.stdin.write(b"x")
        p.stdin.close()
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    bound = [tid for tid, cpus in after_syscalls.items() if cpus != everything]
    assert len(bound) == 1, after_syscalls        # the application's thread, on one CPU
    assert sentry_beside, "the Sentry was never seen pinned to the bound thread's CPU"
    assert int(after_syscalls[bound[0]]) in allowed
    assert after_computing.get(bound[0]) == everything, after_computing
