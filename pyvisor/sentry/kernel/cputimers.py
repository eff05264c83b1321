"""Process CPU-time timers: ITIMER_VIRTUAL, ITIMER_PROF and RLIMIT_CPU.
Linux: kernel/time/posix-cpu-timers.c (check_process_timers), kernel/time/itimer.c.

CPU time is the host's (kernel/cputime.py), which the Sentry cannot be woken
by, so while any process has one of these armed the Sentry samples the armed
processes every TICK_NS of wall time and fires what has expired, as Linux's
scheduler tick does (Linux checks every tick, 1-4 ms; here every 10 ms).
ITIMER_VIRTUAL counts user time (SIGVTALRM), ITIMER_PROF user+system time
(SIGPROF).  RLIMIT_CPU: at the soft limit SIGXCPU, and the soft limit is
raised by a second (so SIGXCPU comes every CPU second); at the hard limit
SIGKILL.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyvisor.abi.linux.signal import Signal
from pyvisor.sentry.kernel import cputime
from pyvisor.sentry.kernel import signal as ksignal

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Kernel, Timer
    from pyvisor.sentry.kernel.task import ThreadGroup

TICK_NS = 10_000_000
SI_KERNEL = 0x80
RLIMIT_CPU = 0
RLIM_INFINITY = (1 << 64) - 1
ITIMER_VIRTUAL, ITIMER_PROF = 1, 2


@dataclass
class CPUTimer:
    """An armed itimer: expiry and interval in ns of the group's CPU clock (0: disarmed)."""

    expires: int = 0
    interval: int = 0


@dataclass
class GroupCPUTimers:
    virt: CPUTimer
    prof: CPUTimer


class CPUTimerTicker:
    """The per-kernel sampler.  Owned by the Kernel (kernel.cpu_ticker)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.groups: set[ThreadGroup] = set()
        self.timer: Timer | None = None

    def watch(self, tg: ThreadGroup) -> None:
        """`tg` has, or may have, something armed: sample it from now on."""
        self.groups.add(tg)
        if self.timer is None:
            k = self.kernel
            self.timer = k.add_timer(k.now() + TICK_NS, self._tick)

    def _tick(self) -> None:
        self.timer = None
        for tg in list(self.groups):
            if tg.zombie or not tg.tasks or not armed(tg):
                self.groups.discard(tg)
                continue
            # As Linux's tick, which checks the process of the task it interrupts:
            # only a process running application code can have passed a limit.
            if any(t.thread.running for t in tg.tasks):
                check_group(tg)
        if self.groups:
            k = self.kernel
            self.timer = k.add_timer(k.now() + TICK_NS, self._tick)


def timers_of(tg: ThreadGroup) -> GroupCPUTimers:
    if tg.cpu_timers is None:
        tg.cpu_timers = GroupCPUTimers(CPUTimer(), CPUTimer())
    timers: GroupCPUTimers = tg.cpu_timers
    return timers


def armed(tg: ThreadGroup) -> bool:
    ts = tg.cpu_timers
    if ts is not None and (ts.virt.expires or ts.prof.expires):
        return True
    return tg.rlimits[RLIMIT_CPU][0] != RLIM_INFINITY


def ticker(tg: ThreadGroup) -> CPUTimerTicker:
    k = tg.kernel
    tk: CPUTimerTicker | None = k.cpu_ticker
    if tk is None:
        tk = CPUTimerTicker(k)
        k.cpu_ticker = tk
    return tk


def _expire(tg: ThreadGroup, tm: CPUTimer, now: int, sig: int) -> None:
    if not tm.expires or now < tm.expires:
        return
    if tm.interval:
        # Overruns are folded into one signal, as Linux's itimers do.
        tm.expires += ((now - tm.expires) // tm.interval + 1) * tm.interval
    else:
        tm.expires = 0
    ksignal.send_to_group(tg, ksignal.SigInfo(sig, SI_KERNEL))


def check_group(tg: ThreadGroup) -> None:
    """Fires what has expired for `tg`.  Linux: check_process_timers."""
    user, sys_ = cputime.group_times(tg)
    prof = user + sys_
    ts = tg.cpu_timers
    if ts is not None:
        _expire(tg, ts.virt, user, Signal.SIGVTALRM)
        _expire(tg, ts.prof, prof, Signal.SIGPROF)
    soft, hard = tg.rlimits[RLIMIT_CPU]
    if soft == RLIM_INFINITY:
        return
    if hard != RLIM_INFINITY and prof >= hard * 10**9:
        ksignal.send_to_group(tg, ksignal.SigInfo(Signal.SIGKILL, SI_KERNEL))
        return
    if prof >= soft * 10**9:
        ksignal.send_to_group(tg, ksignal.SigInfo(Signal.SIGXCPU, SI_KERNEL))
        if soft < hard:
            tg.rlimits[RLIMIT_CPU][0] = soft + 1


def set_itimer(tg: ThreadGroup, which: int, value_ns: int, interval_ns: int
               ) -> tuple[int, int]:
    """setitimer for ITIMER_VIRTUAL/PROF: arms it `value_ns` of CPU time from now;
    returns the old (remaining, interval)."""
    old_rem, old_int = get_itimer(tg, which)
    ts = timers_of(tg)
    tm = ts.virt if which == ITIMER_VIRTUAL else ts.prof
    if value_ns:
        user, sys_ = cputime.group_times(tg)
        now = user if which == ITIMER_VIRTUAL else user + sys_
        tm.expires, tm.interval = now + value_ns, interval_ns
        ticker(tg).watch(tg)
    else:
        tm.expires, tm.interval = 0, 0
    return old_rem, old_int


def get_itimer(tg: ThreadGroup, which: int) -> tuple[int, int]:
    """(remaining ns, interval ns) of ITIMER_VIRTUAL/PROF."""
    ts = tg.cpu_timers
    if ts is None:
        return 0, 0
    tm = ts.virt if which == ITIMER_VIRTUAL else ts.prof
    if not tm.expires:
        return 0, 0
    user, sys_ = cputime.group_times(tg)
    now = user if which == ITIMER_VIRTUAL else user + sys_
    # Linux reports at least one tick left for a timer that has not fired yet.
    return max(tm.expires - now, 1000), tm.interval


def rlimit_changed(tg: ThreadGroup) -> None:
    """setrlimit/prlimit of RLIMIT_CPU (Linux: update_rlimit_cpu)."""
    if tg.rlimits[RLIMIT_CPU][0] != RLIM_INFINITY:
        ticker(tg).watch(tg)
