"""CPU-time accounting.  Linux: kernel/sched/cputime.c, kernel/time/posix-cpu-timers.c.

Application code runs in the stub processes, so the host kernel already counts
its CPU time: a process's user and user+system time are its host CPU clocks
(CPUCLOCK_VIRT and CPUCLOCK_PROF of the stub's pid, which Linux lets any
process read with clock_gettime).  A thread group's time is what its stub
processes accumulated while it used them: each stub process it uses has a
baseline taken when the group started using it (zero for a fresh process),
and when the group stops using one (exec, exit) its share is settled.

The Sentry's own CPU time serving a task's syscalls is the task's system
time, as a Linux thread's time in the kernel is: it is measured around each
syscall step and added to the task and its thread group.

Per thread, the host offers no clock another process may read, so a task's CPU
time is the wall time it spent resumed in application code, capped by its
thread group's total: exact for a single-threaded process, an upper bound for
each thread of a multi-threaded one.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task, ThreadGroup
    from pyvisor.sentry.platform.platform import AddressSpace

# From include/linux/posix-timers_types.h: the clock kinds of a CPU clock id.
CPUCLOCK_PROF, CPUCLOCK_VIRT, CPUCLOCK_SCHED = 0, 1, 2


def process_times(space: AddressSpace) -> tuple[int, int]:
    """(user ns, user+system ns) of an address space's host process (platform)."""
    return space.cpu_times()


def attach(tg: ThreadGroup, proc: AddressSpace, fresh: bool) -> None:
    """`tg` starts running in `proc` (new since it was created, or shared)."""
    if proc not in tg.cpu_procs:
        tg.cpu_procs[proc] = (0, 0) if fresh else process_times(proc)


def settle(tg: ThreadGroup, proc: AddressSpace) -> None:
    """`tg` stops using `proc`: what it ran there becomes part of its own total."""
    base = tg.cpu_procs.pop(proc, (0, 0))    # never looked at: fresh since the group began
    u, tot = process_times(proc)
    tg.cpu_user_ns += max(0, u - base[0])
    tg.cpu_sys_ns += max(0, (tot - u) - (base[1] - base[0]))


def settle_unused(tg: ThreadGroup, proc: AddressSpace) -> None:
    """Settles `proc` unless another live task of `tg` still runs in it."""
    if not any(t.thread.space is proc and not t.exited for t in tg.tasks):
        settle(tg, proc)


def group_times(tg: ThreadGroup) -> tuple[int, int]:
    """(user ns, system ns) of a thread group, settled and running."""
    for t in tg.tasks:
        attach(tg, t.thread.space, True)
    user, sys_ = tg.cpu_user_ns, tg.cpu_sys_ns + tg.sentry_sys_ns
    for proc, (bu, bt) in tg.cpu_procs.items():
        u, tot = process_times(proc)
        user += max(0, u - bu)
        sys_ += max(0, (tot - u) - (bt - bu))
    return user, sys_


def task_run_ns(t: Task) -> int:
    """Wall time `t` has been resumed in application code, including now."""
    ns = t.run_ns
    if t.thread.running and t.run_start:
        ns += time.monotonic_ns() - t.run_start
    return ns


def charge_sentry(t: Task, ns: int) -> None:
    """The Sentry spent `ns` of its CPU time on a syscall of `t`."""
    t.sentry_sys_ns += ns
    t.tg.sentry_sys_ns += ns


def task_times(t: Task) -> tuple[int, int]:
    """(user ns, system ns) of one thread (see the module note)."""
    user, sys_ = group_times(t.tg)
    if not t.tg.cpu_other_threads:
        return user, sys_
    host_user, host_sys = user, sys_ - t.tg.sentry_sys_ns
    run = task_run_ns(t)
    host = host_user + host_sys
    if run < host:
        # Split the capped wall time as the stubs' user/system ratio.
        host_user = host_user * run // host if host else 0
        host_sys = run - host_user
    return host_user, host_sys + t.sentry_sys_ns


def rss_kb(mm: object) -> int:
    """Resident size as the Sentry sees it (every accessible mapping), in KiB."""
    return sum(v.end - v.start for v in getattr(mm, "vmas", ()) if int(v.perms)) // 1024


def note_rss_of(tg: ThreadGroup, mm: object) -> None:
    """Updates the group's high-water mark (getrusage's ru_maxrss) from `mm`."""
    tg.maxrss_kb = max(tg.maxrss_kb, rss_kb(mm))


def group_cpu_ns(tg: ThreadGroup) -> int:
    u, s = group_times(tg)
    return u + s


def reap_into(parent: ThreadGroup, child: ThreadGroup) -> None:
    """A waited-for child's times (its own and its reaped children's) go to the
    parent's RUSAGE_CHILDREN.  Linux: wait_task_zombie."""
    u, s = group_times(child)
    parent.children_utime_ns += u + child.children_utime_ns
    parent.children_stime_ns += s + child.children_stime_ns
    parent.children_maxrss_kb = max(parent.children_maxrss_kb, child.maxrss_kb,
                                    child.children_maxrss_kb)
