"""POSIX interval timers: timer_create and friends.  Linux: kernel/time/posix-timers.c.

Each process has a table of timers (ids from 0).  An expiry queues the
timer's signal (SI_TIMER, si_timerid, si_overrun, si_value) to the process,
or to one of its threads for SIGEV_THREAD_ID; SIGEV_NONE only counts.  A
timer's signal is queued at most once: expiries while it is still pending,
or while the signal could not be queued (a standard signal already pending),
are overruns, reported in si_overrun of the signal that gets through and by
timer_getoverrun.  Timers are deleted at exec and exit, and not inherited.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.signal import NSIG
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.ktimer import KTimer

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task, ThreadGroup

# From <asm-generic/siginfo.h>.
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
SI_TIMER = -2
DELAYTIMER_MAX = 0x7FFFFFFF
MAX_TIMERS = 32768            # per process: bounded Sentry state


@dataclass(eq=False)
class PosixTimer:
    tg: ThreadGroup
    id: int
    notify: int
    signo: int
    value: int
    target: Task | None                 # SIGEV_THREAD_ID
    timer: KTimer | None = None
    queued: ksignal.SigInfo | None = None
    missed: int = 0                      # expiries not yet reported in a queued signal
    overrun_last: int = 0

    def last_overrun(self) -> int:
        """timer_getoverrun(2): the overrun count of the signal last dequeued.  Linux
        sets it_overrun_last when the signal is dequeued, not when it is queued, so
        expiries after the dequeue (counted in the next queued signal) do not show."""
        q = self.queued
        if q is not None and not _is_pending(self, q):
            self.overrun_last = q.uid
            self.queued = None
        return self.overrun_last

    def expire(self, count: int) -> None:
        if self.notify == SIGEV_NONE:
            return
        self.last_overrun()         # a signal dequeued since the last expiry
        q = self.queued
        if q is not None:           # still pending: count the expiries in it
            _set_overrun(self, q, min(DELAYTIMER_MAX, q.uid + count))     # si_overrun
            return
        info = ksignal.SigInfo(self.signo, SI_TIMER, pid=self.id,
                               uid=min(DELAYTIMER_MAX, self.missed + count - 1),
                               value=self.value)
        if self.target is not None:
            ksignal.send_to_task(self.target, info)
        else:
            ksignal.send_to_group(self.tg, info)
        if _is_pending(self, info):
            self.queued = info
            self.missed = 0
        else:
            self.missed = min(DELAYTIMER_MAX, self.missed + count)


def _set_overrun(pt: PosixTimer, info: ksignal.SigInfo, overrun: int) -> None:
    """Replaces the timer's queued siginfo (immutable) by one with `overrun`."""
    src: Task | ThreadGroup = pt.target if pt.target is not None else pt.tg
    lst = src.pending.get(info.signo, [])
    for i, x in enumerate(lst):
        if x is info:
            lst[i] = pt.queued = dataclasses.replace(info, uid=overrun)
            break


def _is_pending(pt: PosixTimer, info: ksignal.SigInfo) -> bool:
    src: Task | ThreadGroup = pt.target if pt.target is not None else pt.tg
    return any(i is info for i in src.pending.get(info.signo, ()))


@dataclass(eq=False)
class TimerTable:
    timers: dict[int, PosixTimer] = field(default_factory=dict)
    next_id: int = 0


def table_of(tg: ThreadGroup) -> TimerTable:
    if tg.posix_timers is None:
        tg.posix_timers = TimerTable()
    tbl: TimerTable = tg.posix_timers
    return tbl


def create(t: Task, now: Callable[[], int], cpu_clock: bool, notify: int, signo: int,
           value: int | None, tid: int) -> int:
    """timer_create: validates the sigevent (good_sigevent) and returns the new id."""
    tg = t.tg
    target = None
    # SIGEV_THREAD is libc's (a thread it starts on the signal): to the kernel it is
    # SIGEV_SIGNAL.
    if notify not in (SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID):
        raise SyscallError(Errno.EINVAL)
    if notify == SIGEV_THREAD_ID:
        target = t.kernel.tasks_by_tid.get(tid)
        if target is None or target.tg is not tg:
            raise SyscallError(Errno.EINVAL)
    if notify != SIGEV_NONE and not 1 <= signo <= NSIG:
        raise SyscallError(Errno.EINVAL)
    tbl = table_of(tg)
    if len(tbl.timers) >= MAX_TIMERS:
        raise SyscallError(Errno.EAGAIN)
    tid_ = tbl.next_id
    while tid_ in tbl.timers:
        tid_ = (tid_ + 1) & 0x7FFFFFFF
    tbl.next_id = (tid_ + 1) & 0x7FFFFFFF
    pt = PosixTimer(tg, tid_, notify, signo, tid_ if value is None else value, target)
    pt.timer = KTimer(t.kernel, now, cpu_clock, pt.expire)
    tbl.timers[tid_] = pt
    return tid_


def lookup(t: Task, timer_id: int) -> PosixTimer:
    tbl = t.tg.posix_timers
    pt = tbl.timers.get(timer_id) if tbl is not None else None
    if pt is None:
        raise SyscallError(Errno.EINVAL)
    return pt


def delete(t: Task, timer_id: int) -> None:
    pt = lookup(t, timer_id)
    _destroy(pt)
    del t.tg.posix_timers.timers[timer_id]


def _destroy(pt: PosixTimer) -> None:
    if pt.timer is not None:
        pt.timer.stop()
    if pt.queued is not None and _is_pending(pt, pt.queued):
        _set_overrun(pt, pt.queued, 0)    # deleting a timer resets the overrun it reports


def clear_all(tg: ThreadGroup) -> None:
    """exec or exit: every timer of the process is deleted (exit_itimers)."""
    tbl = tg.posix_timers
    if tbl is None:
        return
    for pt in tbl.timers.values():
        _destroy(pt)
    tg.posix_timers = None


def settime(pt: PosixTimer, flags: int, value: int, interval: int) -> tuple[int, int]:
    assert pt.timer is not None
    old = pt.timer.set(value, interval, bool(flags & 1))
    pt.missed = 0
    pt.overrun_last = 0
    return old

