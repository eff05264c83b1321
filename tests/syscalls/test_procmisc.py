"""Process, signal, time, pipe and polling semantics from the long tail of
gVisor's syscall suite (issue #10): each program checks itself, runs natively
and under pyvisor, and both runs must print the same thing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Builder, Comparer

PROGRAMS = [
    "pipe_reopen.c",
    "poll_timeouts.c",
    "mempolicy.c",
    "sched_attrs.c",
    "futex_robust.c",
    "prctl_parent.c",
    "exec_at.c",
    "proc_mmflags.c",
    "timer_sigev.c",
    "epoll_nest.c",
]


@pytest.mark.parametrize("name", PROGRAMS, ids=lambda n: n.removesuffix(".c"))
def test_procmisc(name: str, program: Builder, compare: Comparer) -> None:
    native, sandboxed = compare([program(name)])
    assert native.returncode == 0, native.output
    assert "ok" in sandboxed.stdout.split(), sandboxed.output
