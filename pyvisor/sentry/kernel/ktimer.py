"""Interval timers on a clock: what timerfd and POSIX timers share.
Linux: kernel/time/hrtimer.c and posix-timers.c (common_timer_set/get).

A KTimer expires at `expiry` ns of its clock and then every `interval` ns.
Wall clocks (REALTIME, MONOTONIC, BOOTTIME) are followed with the Sentry's
monotonic timers: the deadline is converted when armed (the sandbox cannot
set the clock, so REALTIME only moves with the host's).  CPU-time clocks
cannot wake the Sentry: while armed, such a timer samples its clock every
cputimers.TICK_NS.  Each expiry calls `on_expire(count)`, count being the
expirations since the last call (1 plus overruns).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from pyvisor.sentry.kernel.cputimers import TICK_NS

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Kernel, Timer


class KTimer:
    """One timer.  `now` reads its clock in ns."""

    def __init__(self, kernel: Kernel, now: Callable[[], int], cpu_clock: bool,
                 on_expire: Callable[[int], None]) -> None:
        self.kernel = kernel
        self.now = now
        self.cpu_clock = cpu_clock
        self.on_expire = on_expire
        self.expiry = 0            # clock ns; 0: disarmed
        self.interval = 0
        self._timer: Timer | None = None

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancelled = True
            self._timer = None

    def _schedule(self) -> None:
        self._cancel()
        if not self.expiry:
            return
        k = self.kernel
        if self.cpu_clock:
            delay = TICK_NS
        else:
            delay = max(0, self.expiry - self.now())
        self._timer = k.add_timer(k.now() + delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self.expiry:
            return
        now = self.now()
        if now < self.expiry:
            self._schedule()          # early (CPU clock sampling, or clock skew)
            return
        if self.interval:
            count = 1 + (now - self.expiry) // self.interval
            self.expiry += count * self.interval
        else:
            count = 1
            self.expiry = 0
        self._schedule()
        self.on_expire(count)

    def get(self) -> tuple[int, int]:
        """(time to the next expiry, interval) in ns; (0, interval) when disarmed."""
        if not self.expiry:
            return 0, self.interval
        return max(1, self.expiry - self.now()), self.interval

    def set(self, value: int, interval: int, absolute: bool) -> tuple[int, int]:
        """Arms (value > 0) or disarms it; returns the old setting as `get` does."""
        old = self.get()
        if value == 0:
            self.expiry, self.interval = 0, interval
            self._cancel()
            return old
        self.interval = interval
        self.expiry = value if absolute else self.now() + value
        if absolute and self.expiry <= 0:
            self.expiry = 1
        self._schedule()
        return old

    def stop(self) -> None:
        self.expiry = 0
        self._cancel()
