"""POSIX per-process timers (timer_create and friends) and the CPU-time
interval timers (ITIMER_VIRTUAL, ITIMER_PROF).  Linux: kernel/time/posix-timers.c,
kernel/time/posix-cpu-timers.c, kernel/time/itimer.c.

Wall-clock timers (CLOCK_REALTIME, MONOTONIC, BOOTTIME and their alarm
variants) are Sentry timers at monotonic deadlines; an absolute CLOCK_REALTIME
expiry is converted when set (a later change of the host's clock is not
followed).  CPU-time timers (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID,
ITIMER_VIRTUAL, ITIMER_PROF) poll the process's CPU time (kernel/cputime.py):
it cannot grow faster than wall time times the number of its threads, so a
check comes no later than that bound allows, and no sooner than a millisecond
after the last (Linux samples them at each tick).

Expirations are counted exactly, by arithmetic: a periodic timer that expired n
times since its last check queues one signal and counts n - 1 overruns, or n
while its previous signal is still pending (si_overrun, timer_getoverrun).  A
periodic timer is checked at most every MIN_PERIOD_NS, however short its
interval, so a 1 µs timer costs the Sentry what a 100 µs one does.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from typing import Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.signal import SIGRTMAX, Signal
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.kernel import cputime
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.kernel.errors import SyscallError
from pyvisor.sentry.kernel.task import Task, ThreadGroup

SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
SI_TIMER = -2
SI_KERNEL = 0x80
TIMER_ABSTIME = 1
MIN_PERIOD_NS = 100_000
CPU_POLL_NS = 1_000_000
MAX_TIMERS = 4096              # per process; Linux bounds them by RLIMIT_SIGPENDING
CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 2, 3
CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM, CLOCK_TAI = 7, 8, 9, 11
_WALL = {CLOCK_REALTIME: time.CLOCK_REALTIME, CLOCK_MONOTONIC: time.CLOCK_MONOTONIC,
         CLOCK_BOOTTIME: time.CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM: time.CLOCK_REALTIME,
         CLOCK_BOOTTIME_ALARM: time.CLOCK_BOOTTIME, CLOCK_TAI: time.CLOCK_TAI}
_ITS = struct.Struct("<qqqq")      # struct itimerspec: interval, value
_NCPU = os.cpu_count() or 1       # read at import: the confined Sentry cannot open /sys


@dataclass(eq=False)
class PosixTimer:
    """One timer.  `expiry` is in the timer's own time base: monotonic ns for
    wall clocks, CPU ns of the process (or thread) for CPU clocks; 0 = disarmed."""

    tg: ThreadGroup
    id: int
    clock: int
    notify: int
    signo: int
    value: int
    target: Task | None = None            # SIGEV_THREAD_ID, and a thread clock's thread
    expiry: int = 0
    interval: int = 0
    overrun: int = 0                      # expirations not signalled since the last signal
    last_overrun: int = 0                 # what the last signal carried
    delivered_overrun: int = 0            # the final count of the one before it
    queued: ksignal.SigInfo | None = None
    handle: Any = None                    # the Sentry timer of the next check

    # -- time base ------------------------------------------------------------------

    def now(self) -> int:
        if self.clock in _WALL:
            return self.tg.kernel.now()
        if self.clock == CLOCK_THREAD_CPUTIME_ID and self.target is not None:
            return cputime.thread_sched_ns(self.target)
        return cputime.group_sched_ns(self.tg)

    def arm(self) -> None:
        """Schedules the next check of an armed timer."""
        if self.handle is not None:
            self.handle.cancelled = True
            self.handle = None
        if not self.expiry or self.tg.zombie:
            return
        k = self.tg.kernel
        now = self.now()
        wait = max(0, self.expiry - now)
        if self.clock not in _WALL:       # CPU time grows at most ncpu-threads times as fast
            wait //= max(1, min(len(self.tg.tasks), _NCPU))
        if self.interval and self.queued is not None:
            wait = max(wait, MIN_PERIOD_NS)
        if self.clock not in _WALL:       # a tick, as Linux samples CPU timers: a process
            wait = max(wait, CPU_POLL_NS)  # that sleeps costs a check per ms, not a spin
        self.handle = k.add_timer(k.now() + wait, self.fire)

    def fire(self) -> None:
        self.handle = None
        if not self.expiry or self.tg.zombie:
            return
        now = self.now()
        if now < self.expiry:                 # a CPU clock that has not got there yet
            self.arm()
            return
        n = 1
        if self.interval:
            n += (now - self.expiry) // self.interval
            self.expiry += n * self.interval
        else:
            self.expiry = 0
        self.signal(n)
        self.arm()

    def siginfo(self) -> ksignal.SigInfo:
        return ksignal.SigInfo(self.signo, SI_TIMER, pid=self.id,
                               uid=min(self.last_overrun, 0x7FFFFFFF), value=self.value)

    def _where(self) -> tuple[list[ksignal.SigInfo], int] | None:
        """The pending queue holding this timer's signal, and its index there."""
        info = self.queued
        if info is None:
            return None
        for src in (self.target, self.tg):
            queue = src.pending.get(info.signo, []) if src is not None else []
            for i, x in enumerate(queue):
                if x is info:
                    return queue, i
        return None

    def pending(self) -> bool:
        return self._where() is not None

    def _requeue(self) -> None:
        """Swaps the pending siginfo for one with the overrun count so far
        (si_overrun counts up to delivery, as Linux's does at dequeue)."""
        where = self._where()
        if where is not None:
            queue, i = where
            info = ksignal.SigInfo(self.signo, SI_TIMER, pid=self.id,
                                   uid=min(self.last_overrun + self.overrun, 0x7FFFFFFF),
                                   value=self.value) if self.id >= 0 else queue[i]
            queue[i] = self.queued = info

    def signal(self, expirations: int) -> None:
        if self.notify == SIGEV_NONE:
            return
        if self.pending():
            # The queued signal will carry every expiration up to its delivery.
            self.overrun += expirations
            self._requeue()
            return
        # The previous signal was delivered: its count is final.
        self.delivered_overrun = self.last_overrun + self.overrun
        self.last_overrun, self.overrun = expirations - 1, 0
        info = self.siginfo()
        self.queued = info
        target = self.target if self.notify & SIGEV_THREAD_ID else None
        try:
            if target is not None and not target.exited:
                ksignal.send_to_task(target, info)
            else:
                ksignal.send_to_group(self.tg, info)
        except SyscallError:
            self.queued = None       # a real-time signal that did not fit: lost


def _timers(tg: ThreadGroup) -> dict[int, PosixTimer]:
    timers = getattr(tg, "posix_timers", None)
    if timers is None:
        timers = tg.posix_timers = {}      # type: ignore[attr-defined]
    return timers


def _cpu_clock_target(t: Task, clock: int) -> tuple[int, Task | None]:
    """A clock id for timer_create: a known one, or a CPU clock of a process or
    thread (clock_getcpuclockid), as (base clock, thread for thread clocks)."""
    if clock >= 0:
        if clock in _WALL or clock == CLOCK_PROCESS_CPUTIME_ID:
            return clock, None
        if clock == CLOCK_THREAD_CPUTIME_ID:
            return clock, t
        raise SyscallError(Errno.EINVAL)
    pid, which = ~(clock >> 3), clock & 7
    if which & 3 == 3:
        raise SyscallError(Errno.EINVAL)
    if which & 4:                       # a thread's clock: only one of our own
        task = t if pid == 0 else t.kernel.tasks_by_tid.get(pid)
        if task is None or task.tg is not t.tg:
            raise SyscallError(Errno.EINVAL)
        return CLOCK_THREAD_CPUTIME_ID, task
    if pid not in (0, t.tg.tgid):
        raise SyscallError(Errno.EINVAL)   # another process's CPU clock: not supported
    return CLOCK_PROCESS_CPUTIME_ID, None


def sys_timer_create(t: Task, r: SyscallArguments) -> int:
    """Implements timer_create(2)."""
    clock, sevp, idp = r.int32(0), r.pointer(1), r.pointer(2)
    base, thread = _cpu_clock_target(t, clock)
    tg = t.tg
    timers = _timers(tg)
    if sevp:
        value, signo, notify, tid = struct.unpack("<Qiii", t.copy_in(sevp, 20))
    else:
        value, signo, notify, tid = 0, Signal.SIGALRM, SIGEV_SIGNAL, 0
    target = thread
    kind = notify & ~SIGEV_THREAD_ID
    if notify & SIGEV_THREAD_ID:
        if kind != SIGEV_SIGNAL:
            raise SyscallError(Errno.EINVAL)
        target = t.kernel.tasks_by_tid.get(tid)
        if target is None or target.tg is not tg:
            raise SyscallError(Errno.EINVAL)
    elif kind not in (SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD):
        raise SyscallError(Errno.EINVAL)
    if kind != SIGEV_NONE and not 0 < signo <= SIGRTMAX:
        raise SyscallError(Errno.EINVAL)
    if len(timers) >= MAX_TIMERS:
        raise SyscallError(Errno.EAGAIN)
    tid_ = next(i for i in range(len(timers) + 1) if i not in timers)
    if not sevp:
        value = tid_
    timer = PosixTimer(tg, tid_, base, notify if kind != SIGEV_THREAD else SIGEV_SIGNAL,
                       signo, value, target)
    t.copy_out(idp, struct.pack("<i", tid_))
    timers[tid_] = timer
    return 0


def _get(t: Task, timer_id: int) -> PosixTimer:
    timer = _timers(t.tg).get(timer_id)
    if timer is None:
        raise SyscallError(Errno.EINVAL)
    return timer


def _current(timer: PosixTimer) -> bytes:
    left = max(1, timer.expiry - timer.now()) if timer.expiry else 0
    return _ITS.pack(timer.interval // 10**9, timer.interval % 10**9,
                     left // 10**9, left % 10**9)


def _timespec_ns(sec: int, nsec: int) -> int:
    if sec < 0 or not 0 <= nsec < 10**9:
        raise SyscallError(Errno.EINVAL)
    return sec * 10**9 + nsec


def sys_timer_settime(t: Task, r: SyscallArguments) -> int:
    """Implements timer_settime(2)."""
    timer_id, flags, new, old = r.int32(0), r.int32(1), r.pointer(2), r.pointer(3)
    if not new:
        raise SyscallError(Errno.EINVAL)
    isec, insec, vsec, vnsec = _ITS.unpack(t.copy_in(new, 32))
    timer = _get(t, timer_id)
    interval, value = _timespec_ns(isec, insec), _timespec_ns(vsec, vnsec)
    if old:
        t.copy_out(old, _current(timer))
    timer.interval = interval if value else 0
    timer.overrun = timer.last_overrun = timer.delivered_overrun = 0
    if not value:
        timer.expiry = 0
    elif flags & TIMER_ABSTIME:
        if timer.clock in _WALL:        # to the monotonic time base, now
            timer.expiry = timer.now() + max(0, value - time.clock_gettime_ns(_WALL[timer.clock]))
        else:
            timer.expiry = max(1, value)
    else:
        timer.expiry = timer.now() + value
    timer.arm()
    return 0


def sys_timer_gettime(t: Task, r: SyscallArguments) -> int:
    """Implements timer_gettime(2)."""
    timer = _get(t, r.int32(0))
    t.copy_out(r.pointer(1), _current(timer))
    return 0


def sys_timer_getoverrun(t: Task, r: SyscallArguments) -> int:
    """Implements timer_getoverrun(2): the overruns of the last signal delivered."""
    timer = _get(t, r.int32(0))
    if timer.queued is None:
        return 0
    n = timer.delivered_overrun if timer.pending() else timer.last_overrun + timer.overrun
    return min(n, 0x7FFFFFFF)


def sys_timer_delete(t: Task, r: SyscallArguments) -> int:
    """Implements timer_delete(2)."""
    timer = _timers(t.tg).pop(r.int32(0), None)
    if timer is None:
        raise SyscallError(Errno.EINVAL)
    timer.expiry = 0
    timer.arm()
    return 0


def drop_all(tg: ThreadGroup) -> None:
    """exec and exit: every POSIX timer and CPU interval timer goes (Linux: exit_itimers)."""
    for timer in _timers(tg).values():
        timer.expiry = 0
        timer.arm()
    _timers(tg).clear()
    for timer in getattr(tg, "cpu_itimers", {}).values():
        timer.expiry = 0
        timer.arm()


# -- ITIMER_VIRTUAL and ITIMER_PROF ---------------------------------------------------------
# Linux counts user time for VIRTUAL and user + system for PROF; both poll here, as a
# process-wide CPU-clock timer that sends SIGVTALRM or SIGPROF.

ITIMER_VIRTUAL, ITIMER_PROF = 1, 2


@dataclass(eq=False)
class CpuItimer(PosixTimer):
    virtual: bool = False

    def now(self) -> int:
        user, system = cputime.group_times(self.tg)
        return user if self.virtual else user + system

    def siginfo(self) -> ksignal.SigInfo:
        return ksignal.SigInfo(self.signo, SI_KERNEL)


def cpu_itimer(t: Task, which: int, new: tuple[int, int] | None) -> tuple[int, int]:
    """getitimer/setitimer for ITIMER_VIRTUAL and ITIMER_PROF: sets (value, interval)
    in ns when `new` is given; returns the old (remaining, interval)."""
    tg = t.tg
    timers: dict[int, CpuItimer] = getattr(tg, "cpu_itimers", None) or {}
    tg.cpu_itimers = timers     # type: ignore[attr-defined]
    timer = timers.get(which)
    if timer is None:
        sig = Signal.SIGVTALRM if which == ITIMER_VIRTUAL else Signal.SIGPROF
        timer = timers[which] = CpuItimer(tg, -1, CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL,
                                          sig, 0, None, virtual=which == ITIMER_VIRTUAL)
    left = max(1, timer.expiry - timer.now()) if timer.expiry else 0
    old = (left, timer.interval)
    if new is not None:
        value, interval = new
        timer.expiry = timer.now() + value if value else 0
        timer.interval = interval if value else 0
        timer.arm()
    return old
