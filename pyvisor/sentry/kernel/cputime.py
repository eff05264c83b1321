"""CPU-time accounting of sandboxed processes.  Linux: kernel/sched/cputime.c
(thread_group_cputime), kernel/time/posix-cpu-timers.c, kernel/exit.c
(wait_task_zombie adds a reaped child's times to its parent's cutime/cstime).

An application process's threads run on the host threads of one stub process,
so its user and system time are that stub process's: read with the host's CPU
clocks of another process, clock_gettime(MAKE_PROCESS_CPUCLOCK(pid, VIRT or
PROF)), which need no /proc (the Sentry has none once confined).  Time spent in
the Sentry serving a process's system calls is not counted (gVisor's ptrace
platform does the same: it counts the stub's own time).  The host charges the
stub for the traps themselves, which show as system time.

Times of stub processes a process no longer runs on (before an exec, or once
its last thread has gone) are banked in ThreadGroup.utime_ns / stime_ns.

Limits: a CLONE_VM child without CLONE_THREAD (vfork, posix_spawn) runs on its
parent's stub process, so while it lives its time shows in both; the host has
no per-thread CPU clock of another process, so CLOCK_THREAD_CPUTIME_ID reads the
process's clock for a multi-threaded process.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task, ThreadGroup

CPUCLOCK_PROF, CPUCLOCK_VIRT, CPUCLOCK_SCHED = 0, 1, 2


def _host_clock(pid: int, which: int) -> int:
    """The host CPU clock `which` of host process `pid` (0 once it is gone)."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | which)
    except OSError:
        return 0


def _stub_pids(tg: ThreadGroup) -> set[int]:
    """The live stub processes the process's threads run on (none for a task
    without one: procfs's tests build tasks on stand-in threads)."""
    pids = set()
    for t in list(tg.tasks):
        proc = getattr(t.thread, "process", None)
        if proc is not None and not t.exited and not proc.dead:
            pids.add(proc.pid)
    return pids


def group_times(tg: ThreadGroup) -> tuple[int, int]:
    """(user ns, system ns) of the process so far, its dead threads included."""
    user, system = tg.utime_ns, tg.stime_ns
    if not tg.zombie:
        for pid in _stub_pids(tg):
            u, s = _split(pid)
            user += u
            system += s
    return user, system


def _split(pid: int) -> tuple[int, int]:
    """(user, system) of a stub process: its precise total (the scheduler's clock)
    split as the tick-sampled user and system times are.  A stub runs in short
    slices between ptrace stops, which tick sampling undercounts."""
    total = _host_clock(pid, CPUCLOCK_SCHED)
    prof, virt = _host_clock(pid, CPUCLOCK_PROF), _host_clock(pid, CPUCLOCK_VIRT)
    user = total * virt // prof if prof else 0
    return user, total - user


def group_sched_ns(tg: ThreadGroup) -> int:
    """The process's CPU time in ns, precise (CLOCK_PROCESS_CPUTIME_ID)."""
    total = tg.utime_ns + tg.stime_ns
    if not tg.zombie:
        total += sum(_host_clock(pid, CPUCLOCK_SCHED) for pid in _stub_pids(tg))
    return total


def thread_sched_ns(t: Task) -> int:
    """CLOCK_THREAD_CPUTIME_ID: the thread's time, which for a multi-threaded
    process the host only gives as the whole process's (see the module's limits)."""
    return group_sched_ns(t.tg)


def bank(tg: ThreadGroup, pid: int) -> None:
    """Stub process `pid` is about to go (exec, last thread's exit): keep its times."""
    user, system = _split(pid)
    tg.utime_ns += user
    tg.stime_ns += system


def reaped(parent: ThreadGroup, child: ThreadGroup) -> None:
    """wait reaps `child`: its own and its reaped children's times go to the parent."""
    parent.children_utime_ns += child.utime_ns + child.children_utime_ns
    parent.children_stime_ns += child.stime_ns + child.children_stime_ns
