"""Fixtures of the escape test suite (tests/security).

Each attack is a small C program (tests/security/programs/<family>.c, the
attack chosen by argv[1]) run inside the sandbox, where it must fail without
effect on the host, and natively (as root) where that is safe, to show the
attack is real. The programs only report what each call returned, as
`key=value` lines (see programs/sec.h); the tests judge.

Guards that hold for every test here (the autouse `host_guard` fixture):
  * the host's mount table (/proc/self/mountinfo of this pytest process) and
    host name are the same after the test as before;
  * no process is left behind: pytest is made a child subreaper, so anything
    a run leaves alive (a stub, a Sentry, a forked attack) is re-parented to
    us and found; it is killed and the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Callable, Iterator

import pytest

from pvtest import c_builder, make_world_readable
from seclib import (PR_SET_CHILD_SUBREAPER, PROGRAMS, _libc, children_of_self, host_mounts,
                    proc_cmdline, proc_state)


@pytest.fixture(scope="session")
def secprog(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """secprog("files", static=False) -> path of tests/security/programs/files.c
    compiled (once per session) into a world-readable directory."""
    outdir = tmp_path_factory.mktemp("secprograms")
    make_world_readable(outdir, tmp_path_factory)
    return c_builder(PROGRAMS, outdir)


@pytest.fixture(scope="module", autouse=True)
def _subreaper() -> Iterator[None]:
    """Orphans of the runs become our children, so none can hide. Only while
    this directory's tests run: other suites in the same session keep
    pytest's ordinary parentage."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.fail("prctl(PR_SET_CHILD_SUBREAPER) failed")
    yield
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture(autouse=True)
def host_guard(_subreaper: None) -> Iterator[None]:
    mounts = host_mounts()
    hostname = socket.gethostname()
    known = children_of_self()
    yield
    # Left-over processes: children that were not there before.
    leftovers = []
    for pid in sorted(children_of_self() - known):
        st = proc_state(pid)
        if st == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            continue
        if st == "gone":
            continue
        leftovers.append(f"{pid} [{st}] {proc_cmdline(pid)}")
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert not leftovers, f"processes left behind on the host: {leftovers}"
    assert host_mounts() == mounts, "the host mount table changed"
    assert socket.gethostname() == hostname, "the host name changed"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A host `sleep 60` that attacks must not be able to touch."""
    proc = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL,
                            start_new_session=True)
    # Wait until it is really sleep (exec done), so its /proc entries are final.
    for _ in range(200):
        if proc_cmdline(proc.pid).startswith("sleep"):
            break
        time.sleep(0.005)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
