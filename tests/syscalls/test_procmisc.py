"""Process, signal, time, pipe and polling semantics from the long tail of
gVisor's syscall suite (issue #10): each program checks itself, runs natively
and under pyvisor, and both runs must print the same thing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Builder, Comparer, Runner

PROGRAMS = [
    "pipe_reopen_fd.c",
    "poll_timeouts.c",
    "mempolicy.c",
    "sched_attrs.c",
    "futex_robust.c",
    "prctl_parent.c",
    "exec_at.c",
    "proc_mmflags.c",
    "timer_sigev.c",
    "epoll_nest.c",
    "altstack_overflow.c",
    "sleep_restart.c",
    "vsyscall_fault.c",
    "setid_exec.c",
]


@pytest.mark.parametrize("name", PROGRAMS, ids=lambda n: n.removesuffix(".c"))
def test_procmisc(name: str, program: Builder, compare: Comparer) -> None:
    native, sandboxed = compare([program(name)])
    assert native.returncode == 0, native.output
    assert "ok" in sandboxed.stdout.split(), sandboxed.output


def test_uts_poll(program: Builder, run: Runner) -> None:
    """uts_poll.c sets the hostname: natively only inside a UTS namespace of its own
    (unshare --uts; the host's name is never touched), in the sandbox as it is."""
    prog = program("uts_poll.c")
    native = run("native", ["unshare", "--uts", prog])
    sandboxed = run("pyvisor", [prog])
    assert native.returncode == 0 and "ok" in native.stdout.split(), native.output
    assert sandboxed.returncode == 0 and "ok" in sandboxed.stdout.split(), sandboxed.output
