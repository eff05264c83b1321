"""Where systrap application threads run: beside the Sentry at first, then free.

The ptrace platform's policy (platform/ptrace/placement.py) binds syscall-heavy threads
to the Sentry's CPU, because every ptrace stop is a wake-up, and one on another CPU
costs several times one on the same CPU.  On systrap a stop need not wake anyone: when
the Sentry and a thread run on two CPUs, each spins on the region's state word while
the other works (subprocess.py, stops_ready and the handler's spin), so a thread that
makes syscalls in a loop is fastest *free* (getppid: ~4.8 µs free against ~7.2 µs
bound).  What spinning cannot hide is a stop the Sentry takes long to serve (a fork, an
exec's injected mappings, a wait4 that blocks): the thread's spin runs out, it sleeps
on its futex, and the Sentry's wake-up crosses CPUs.  A new thread's first work is
mostly that kind (an exec's loader, a child's fork and exit), so:

* a new application thread starts bound to the Sentry's CPU (`created`: it is cloned
  from its process's syscall thread, which the platform binds there for injections);
  while bound, neither it nor the Sentry spins (they share one CPU);
* after FREE_AFTER round trips in a row that spinning would have covered (a run
  shorter than SHORT_RUN_NS, then a service shorter than QUICK_SERVICE_NS) it is freed
  to every CPU the sandbox was given, for good: a syscall loop;
* a bound thread that runs longer than LONG_RUN_NS is freed too: at its next stop, or
  by a tick every TICK_NS while bound threads run, so a thread that computes (with or
  without syscalls) never shares the Sentry's CPU for long;
* a bound thread follows the Sentry when the host moved it (checked at its stops).

The Sentry itself is pinned to its CPU with the ptrace platform's escape
(ptrace/placement.py, Placement.pin_sentry): the platform arms its check while stubs
stop and run (`Placement.stubs_running`), and this policy tells it how long bound
threads ran on its CPU (its own work, not contention).
Measurements: README.md, *CPU placement*.

Concurrency: Sentry loop only.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from pyvisor.sentry.platform.ptrace.placement import Placement

SHORT_RUN_NS = 200_000      # a run (resume to stop) this short: the thread makes syscalls
QUICK_SERVICE_NS = 30_000   # a stop served this fast: the handler's spin covers it
FREE_AFTER = 16             # such round trips in a row that free a bound thread
LONG_RUN_NS = 2_000_000     # a bound thread running this long computes: freed
TICK_NS = 5_000_000

_sched_getcpu = ctypes.CDLL(None).sched_getcpu     # the host's vDSO: no syscall


class Timers(Protocol):
    """What placement needs of the Kernel: its loop's timers (for the freeing tick)."""

    def now(self) -> int: ...

    def add_timer(self, deadline: int, callback: Callable[[], None]) -> object: ...


class Placed(Protocol):
    """What placement reads and keeps of an application thread (subprocess.AppThread)."""

    tid: int
    running: bool
    exited: bool
    bound: bool             # bound to the Sentry's CPU (`cpu`)
    cpu: int
    quick: int              # round trips in a row that spinning would have covered
    resumed_at: int         # monotonic ns of its last resume (bound threads only)
    stopped_at: int         # ... and of its last stop


class ThreadPlacement:
    """The systrap platform's placement of application threads (SystrapPlatform.
    app_placement).  Disabled (threads freed after their set-up, as without it) when
    made with a single allowed CPU."""

    def __init__(self, timers: Timers, allowed: frozenset[int],
                 getcpu: Callable[[], int] = _sched_getcpu,
                 sentry: Placement | None = None) -> None:
        self.timers = timers
        self.allowed = allowed
        self.getcpu = getcpu                    # the CPU the Sentry runs on now
        self.sentry = sentry                    # the Sentry's pin and its escape
        self.enabled = len(allowed) > 1
        self.bound: set[Placed] = set()
        self._tick_armed = False
        self.created_n = self.frees = 0         # counters ($PYVISOR_SYSTRAP_STATS, tests)

    def created(self, th: Placed) -> bool:
        """`th`, a new thread, stays on the Sentry's CPU (where it was cloned); False
        (free it) when placement is off."""
        if not self.enabled:
            return False
        self.created_n += 1
        th.bound = True
        th.cpu = self.getcpu()
        th.quick = 0
        th.stopped_at = time.monotonic_ns()
        self.bound.add(th)
        return True

    def resumed(self, th: Placed) -> None:
        """`th`, bound, runs application code from now: was its stop served quickly?"""
        now = time.monotonic_ns()
        if now - th.stopped_at < QUICK_SERVICE_NS:
            th.quick += 1
            if th.quick >= FREE_AFTER:
                self._free(th)
                return
        else:
            th.quick = 0
        th.resumed_at = now
        if not self._tick_armed:
            self._tick_armed = True
            self.timers.add_timer(self.timers.now() + TICK_NS, self._tick)

    def stopped(self, th: Placed) -> None:
        """`th`, bound, stopped: a long run frees it; else it follows the Sentry."""
        now = time.monotonic_ns()
        run = now - th.resumed_at
        th.stopped_at = now
        if self.sentry is not None:
            self.sentry.bound_run_ns += run
        if run > LONG_RUN_NS:
            self._free(th)
            return
        if run >= SHORT_RUN_NS:
            th.quick = 0
        cpu = self.getcpu()
        if cpu != th.cpu and cpu in self.allowed and self._set(th, {cpu}):
            th.cpu = cpu                         # the Sentry moved: follow it

    def _set(self, th: Placed, cpus: frozenset[int] | set[int]) -> bool:
        try:
            os.sched_setaffinity(th.tid, cpus)
        except OSError:
            return False          # the thread is gone, or the CPU set changed under us
        return True

    def _free(self, th: Placed) -> None:
        self.bound.discard(th)
        th.bound = False
        if not th.exited:
            self._set(th, self.allowed)
        self.frees += 1

    def forget(self, th: Placed) -> None:
        """`th` is gone."""
        self.bound.discard(th)
        th.bound = False

    def _tick(self) -> None:
        """Frees bound threads that have been running for LONG_RUN_NS."""
        self._tick_armed = False
        now = time.monotonic_ns()
        running = False
        for th in list(self.bound):
            if th.exited:
                self.bound.discard(th)
            elif th.running and now - th.resumed_at > LONG_RUN_NS:
                self._free(th)
            elif th.running:
                running = True
        if running:
            self._tick_armed = True
            self.timers.add_timer(self.timers.now() + TICK_NS, self._tick)
