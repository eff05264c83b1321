"""Clocks and sleeping.  Linux: kernel/time/."""

from __future__ import annotations

import struct
import time

from pyvisor.abi.linux.errno import ERESTART_RESTARTBLOCK, Errno
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.kernel import cputime
from pyvisor.sentry.kernel.cputime import CPUCLOCK_SCHED, CPUCLOCK_VIRT
from pyvisor.sentry.errors import Interrupted, SyscallError, TimedOut
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.syscalls.linux.usertime import copy_in_timespec

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7
TIMER_ABSTIME = 1
CPUCLOCK_PERTHREAD = 4
_TS = struct.Struct("<qq")

_HOST_CLOCKS = {CLOCK_REALTIME: time.CLOCK_REALTIME, CLOCK_MONOTONIC: time.CLOCK_MONOTONIC,
                CLOCK_PROCESS_CPUTIME_ID: time.CLOCK_PROCESS_CPUTIME_ID,
                CLOCK_THREAD_CPUTIME_ID: time.CLOCK_THREAD_CPUTIME_ID,
                CLOCK_MONOTONIC_RAW: time.CLOCK_MONOTONIC_RAW,
                CLOCK_REALTIME_COARSE: 5, CLOCK_MONOTONIC_COARSE: 6,
                CLOCK_BOOTTIME: time.CLOCK_BOOTTIME, 8: time.CLOCK_REALTIME, 9: time.CLOCK_BOOTTIME,
                11: time.CLOCK_TAI}


def _clock_ns(clock: int) -> int:
    host = _HOST_CLOCKS.get(clock)
    if host is None:
        raise SyscallError(Errno.EINVAL)
    return time.clock_gettime_ns(host)


def cpu_clock_ns(t: Task, clock: int) -> int:
    """A CPU-time clock: CLOCK_PROCESS/THREAD_CPUTIME_ID or one made by
    clock_getcpuclockid/pthread_getcpuclockid (negative ids naming a pid and
    PROF/VIRT/SCHED).  Linux: posix_cpu_clock_get; EINVAL for a thread outside
    the caller's process or a pid that is not a process."""
    if clock == CLOCK_PROCESS_CPUTIME_ID:
        return cputime.group_cpu_ns(t.tg)
    if clock == CLOCK_THREAD_CPUTIME_ID:
        return sum(cputime.task_times(t))
    which = clock & 3
    if clock >= 0 or which > CPUCLOCK_SCHED:
        raise SyscallError(Errno.EINVAL)
    pid = ~(clock >> 3)
    if clock & CPUCLOCK_PERTHREAD:
        task = t if pid == 0 else t.kernel.tasks_by_tid.get(pid)
        if task is None or task.tg is not t.tg:
            raise SyscallError(Errno.EINVAL)
        u, s = cputime.task_times(task)
    else:
        tg = t.tg if pid == 0 else t.kernel.groups.get(pid)
        if tg is None or tg.reaped:
            raise SyscallError(Errno.EINVAL)
        u, s = cputime.group_times(tg)
    return u if which == CPUCLOCK_VIRT else u + s


def clock_now_ns(t: Task, clock: int) -> int:
    if clock in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID) or clock < 0:
        return cpu_clock_ns(t, clock)
    return _clock_ns(clock)


def sys_clock_gettime(t: Task, r: SyscallArguments) -> int:
    """Implements clock_gettime(2)."""
    ns = clock_now_ns(t, r.int32(0))
    t.copy_out(r.pointer(1), _TS.pack(ns // 10**9, ns % 10**9))
    return 0


def sys_clock_getres(t: Task, r: SyscallArguments) -> int:
    clock, addr = r.int32(0), r.pointer(1)
    if clock < 0:
        cpu_clock_ns(t, clock)          # EINVAL for a bad one
    elif clock not in _HOST_CLOCKS:
        raise SyscallError(Errno.EINVAL)
    if addr:
        t.copy_out(addr, _TS.pack(0, 4000000 if clock in (5, 6) else 1))
    return 0


def sys_gettimeofday(t: Task, r: SyscallArguments) -> int:
    tv, tz = r.pointer(0), r.pointer(1)
    ns = time.time_ns()
    if tv:
        t.copy_out(tv, struct.pack("<qq", ns // 10**9, (ns % 10**9) // 1000))
    if tz:
        t.copy_out(tz, bytes(8))
    return 0


def sys_time(t: Task, r: SyscallArguments) -> int:
    now = time.time_ns() // 10**9
    if r.pointer(0):
        t.copy_out(r.pointer(0), struct.pack("<q", now))
    return now


async def _sleep(t: Task, deadline_mono: int, rem_addr: int) -> int:
    """Sleeps until `deadline_mono`.  A signal with a handler ends it with EINTR and
    the time left in `rem_addr`; one without (a stop, then SIGCONT) restarts it
    through restart_syscall(2) toward the same deadline, so time spent stopped
    counts as slept.  Linux: do_nanosleep's ERESTART_RESTARTBLOCK,
    hrtimer_nanosleep_restart."""
    try:
        await t.kernel.block_on(t, None, deadline=deadline_mono)
    except TimedOut:
        return 0
    except Interrupted:
        left = max(0, deadline_mono - t.kernel.now())
        if rem_addr:
            t.copy_out(rem_addr, _TS.pack(left // 10**9, left % 10**9))
        t.restart_block = lambda t: _sleep(t, deadline_mono, rem_addr)
        raise SyscallError(ERESTART_RESTARTBLOCK) from None
    return 0


async def sys_restart_syscall(t: Task, r: SyscallArguments) -> int:
    """Implements restart_syscall(2): continues the call a stop interrupted (its
    restart block); EINTR if there is none."""
    resume = t.restart_block
    t.restart_block = None
    if resume is None:
        raise SyscallError(Errno.EINTR)
    return int(await resume(t))


async def sys_nanosleep(t: Task, r: SyscallArguments) -> int:
    """Implements nanosleep(2).  Interrupted sleeps return EINTR with the time left."""
    dur = copy_in_timespec(t, r.pointer(0))
    return await _sleep(t, t.kernel.now() + dur, r.pointer(1))


async def sys_clock_nanosleep(t: Task, r: SyscallArguments) -> int:
    """Implements clock_nanosleep(2)."""
    clock, flags, req, rem = r.int32(0), r.int32(1), r.pointer(2), r.pointer(3)
    if clock in (CLOCK_THREAD_CPUTIME_ID,):
        raise SyscallError(Errno.EINVAL)
    now_clock = _clock_ns(clock)
    val = copy_in_timespec(t, req)
    if flags & TIMER_ABSTIME:
        deadline = t.kernel.now() + max(0, val - now_clock)
        rem = 0
    else:
        deadline = t.kernel.now() + val
    return await _sleep(t, deadline, rem)


