"""timerfd_*(2) and timer_*(2).  Linux: fs/timerfd.c, kernel/time/posix-timers.c."""

from __future__ import annotations

import struct
from typing import Callable

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_CLOEXEC, O_NONBLOCK, O_RDWR
from pyvisor.abi.linux.signal import Signal
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.kernel import posix_timers
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.kernel.timerfd import TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET, TimerFD
from pyvisor.sentry.syscalls.linux.sys_poll import anon_file
from pyvisor.sentry.syscalls.linux.sys_time import (CLOCK_BOOTTIME, CLOCK_MONOTONIC,
                                                    CLOCK_PROCESS_CPUTIME_ID, CLOCK_REALTIME,
                                                    CLOCK_THREAD_CPUTIME_ID, _clock_ns,
                                                    cpu_clock_ns)

CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM = 8, 9
_TIMERFD_CLOCKS = (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM,
                   CLOCK_BOOTTIME_ALARM)
# clock_getres on amd64 (posix_get_*): the clocks a POSIX timer may use.
_TIMER_CLOCKS = _TIMERFD_CLOCKS + (11,)          # CLOCK_TAI
_ITS = struct.Struct("<qqqq")
_NS = 10**9


def _read_itimerspec(t: Task, addr: int) -> tuple[int, int]:
    """(value ns, interval ns) of a struct itimerspec; EINVAL if not normalised."""
    isec, insec, vsec, vnsec = _ITS.unpack(t.copy_in(addr, 32))
    for sec, nsec in ((isec, insec), (vsec, vnsec)):
        if sec < 0 or not 0 <= nsec < _NS:
            raise SyscallError(Errno.EINVAL)
    return vsec * _NS + vnsec, isec * _NS + insec


def _pack_itimerspec(value: int, interval: int) -> bytes:
    return _ITS.pack(interval // _NS, interval % _NS, value // _NS, value % _NS)


def _wall_clock(clock: int) -> Callable[[], int]:
    return lambda: _clock_ns(clock)


# -- timerfd ---------------------------------------------------------------------------


def sys_timerfd_create(t: Task, r: SyscallArguments) -> int:
    """Implements timerfd_create(2)."""
    clock, flags = r.int32(0), r.int32(1)
    if clock not in _TIMERFD_CLOCKS:
        raise SyscallError(Errno.EINVAL)
    if flags & ~(O_NONBLOCK | O_CLOEXEC):
        raise SyscallError(Errno.EINVAL)
    host = {CLOCK_REALTIME_ALARM: CLOCK_REALTIME, CLOCK_BOOTTIME_ALARM: CLOCK_BOOTTIME}
    impl = TimerFD(t.kernel, clock, _wall_clock(host.get(clock, clock)))
    f = anon_file(b"[timerfd]", impl, O_RDWR | (flags & O_NONBLOCK))
    try:
        return t.fd_table.install(f, cloexec=bool(flags & O_CLOEXEC))
    except SyscallError:
        f.decref()
        raise


def _timerfd(t: Task, fd: int) -> TimerFD:
    impl = t.fd_table.get(fd).impl
    if not isinstance(impl, TimerFD):
        raise SyscallError(Errno.EINVAL)
    return impl


def sys_timerfd_settime(t: Task, r: SyscallArguments) -> int:
    """Implements timerfd_settime(2)."""
    fd, flags, new, old = r.int32(0), r.int32(1), r.pointer(2), r.pointer(3)
    if flags & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET):
        raise SyscallError(Errno.EINVAL)
    tfd = _timerfd(t, fd)
    value, interval = _read_itimerspec(t, new)
    if old:
        t.mm.check_range(old, 32, 2)
    ov, oi = tfd.settime(flags, value, interval)
    if old:
        t.copy_out(old, _pack_itimerspec(ov, oi))
    return 0


def sys_timerfd_gettime(t: Task, r: SyscallArguments) -> int:
    """Implements timerfd_gettime(2)."""
    tfd = _timerfd(t, r.int32(0))
    v, i = tfd.timer.get()
    t.copy_out(r.pointer(1), _pack_itimerspec(v, i))
    return 0


# -- POSIX timers ------------------------------------------------------------------------


def sys_timer_create(t: Task, r: SyscallArguments) -> int:
    """Implements timer_create(2)."""
    clock, sevp, idp = r.int32(0), r.pointer(1), r.pointer(2)
    cpu = clock in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID) or clock < 0
    if cpu:
        cpu_clock_ns(t, clock)          # EINVAL for a bad CPU clock
        owner = t
        now: Callable[[], int] = lambda: cpu_clock_ns(owner, clock)
    elif clock in _TIMER_CLOCKS:
        host = {CLOCK_REALTIME_ALARM: CLOCK_REALTIME, CLOCK_BOOTTIME_ALARM: CLOCK_BOOTTIME}
        now = _wall_clock(host.get(clock, clock))
    else:
        raise SyscallError(Errno.EINVAL)
    if sevp:
        value, signo, notify, tid = struct.unpack("<qiii", t.copy_in(sevp, 20))
        given: int | None = value
    else:
        signo, notify, tid, given = Signal.SIGALRM, posix_timers.SIGEV_SIGNAL, 0, None
    t.mm.check_range(idp, 4, 2)
    timer_id = posix_timers.create(t, now, cpu, notify, signo, given, tid)
    try:
        t.copy_out(idp, struct.pack("<i", timer_id))
    except SyscallError:
        posix_timers.delete(t, timer_id)
        raise
    return 0


def sys_timer_settime(t: Task, r: SyscallArguments) -> int:
    """Implements timer_settime(2)."""
    timer_id, flags, new, old = r.int32(0), r.int32(1), r.pointer(2), r.pointer(3)
    pt = posix_timers.lookup(t, timer_id)
    if not new:
        raise SyscallError(Errno.EINVAL)
    value, interval = _read_itimerspec(t, new)
    if old:
        t.mm.check_range(old, 32, 2)
    ov, oi = posix_timers.settime(pt, flags, value, interval)
    if old:
        t.copy_out(old, _pack_itimerspec(ov, oi))
    return 0


def sys_timer_gettime(t: Task, r: SyscallArguments) -> int:
    """Implements timer_gettime(2)."""
    pt = posix_timers.lookup(t, r.int32(0))
    assert pt.timer is not None
    v, i = pt.timer.get()
    t.copy_out(r.pointer(1), _pack_itimerspec(v, i))
    return 0


def sys_timer_getoverrun(t: Task, r: SyscallArguments) -> int:
    """Implements timer_getoverrun(2)."""
    return posix_timers.lookup(t, r.int32(0)).last_overrun()


def sys_timer_delete(t: Task, r: SyscallArguments) -> int:
    """Implements timer_delete(2)."""
    posix_timers.delete(t, r.int32(0))
    return 0
