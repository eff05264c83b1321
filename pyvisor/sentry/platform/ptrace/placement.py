"""Where application threads run: CPU placement of stub threads.

gVisor's ptrace platform binds a stub thread to the CPU of the tracer thread that
switches to it (subprocess_linux.go, thread.bind); pyvisor has one tracer, the
Sentry, so the question is which stub threads to keep beside it.

A syscall is a ptrace round trip between the Sentry and a stub thread: ~8-15 µs
when both are on one CPU, several times that when every stop and resume is a
wake-up on another CPU (an IPI, a VM exit on these VMs).  But a thread that
computes must not be kept on the Sentry's CPU, or two computing threads share one
CPU; and the Sentry itself is not pinned, so the host can move it off a busy CPU.
So:

* a new stub thread starts bound to the Sentry's CPU (created()), as its first host
  work is injections and syscalls, round trips with the Sentry; a thread first seen
  at a stop without that (none today) starts free: allowed on every CPU the sandbox
  was given (the Sentry's affinity at boot: `taskset`, a cgroup cpuset);
* after BIND_AFTER consecutive runs shorter than SHORT_RUN_NS (resume to next
  syscall stop: it is making syscalls, not computing) it is bound to the CPU the
  Sentry is on, and rebound when the Sentry has moved (checked at each of its
  syscall stops: one sched_getcpu through the host's vDSO);
* a bound thread that runs longer than LONG_RUN_NS is freed: at its next stop, or
  by a tick every TICK_NS while bound threads run, so a computing thread that makes
  no syscalls at all is freed too.

The Sentry itself is pinned to the CPU it runs on (pin_sentry()), with an escape: left
free, the host wakes it on whichever CPU is idle when a stub stops (select_idle_sibling
prefers an idle CPU to the waker's), so the stubs bound to its old CPU are a cross-CPU
round trip away until their next stop moves them, and an exec's ~60 round trips cross
CPUs (fork+exec+wait, not pinned by the caller: ~4.4 ms free, ~3.1 ms pinned).  But a
Sentry pinned to a CPU that something else computes on waits for it: so every
CHECK_NS while the sandbox runs, it reads its own run delay (the time it spent runnable
but waiting for its CPU, /proc/thread-self/schedstat, opened at boot) and, if that was
more than CONTENDED of the window beyond the time its own bound stubs ran there (a
resumed stub preempts it), frees itself to every allowed CPU; FREE_NS later it pins
itself again to wherever the host has put it.

Affinity changes are host sched_setaffinity calls on the stub's thread or the
Sentry's own (the Sentry's seccomp filter allows them for pid > 0), a few per thread
life, never per syscall unless the Sentry keeps moving.  Measurements and the
alternatives compared: README.md, *CPU placement*.

Concurrency: Sentry loop only.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from pyvisor.sentry.platform.ptrace.subprocess import StubThread


class Timers(Protocol):
    """What placement needs of the Kernel: its loop's timers (for the freeing tick)."""

    def now(self) -> int: ...

    def add_timer(self, deadline: int, callback: Callable[[], None]) -> object: ...

SHORT_RUN_NS = 200_000
BIND_AFTER = 4
LONG_RUN_NS = 2_000_000
TICK_NS = 5_000_000
CHECK_NS = 20_000_000       # a pinned Sentry's look at its own run delay, while stubs run
CONTENDED = 0.15            # share of a window spent waiting for others that frees it
FREE_NS = 200_000_000       # how long a freed Sentry stays free before pinning again

_sched_getcpu = ctypes.CDLL(None).sched_getcpu     # the host's vDSO: no syscall


class Placement:
    """The ptrace platform's placement policy (PtracePlatform.placement).  Disabled (every thread left where the host puts
    it) when made without a kernel or with a single allowed CPU."""

    def __init__(self, kernel: Timers | None = None, allowed: frozenset[int] = frozenset(),
                 getcpu: Callable[[], int] = _sched_getcpu) -> None:
        self.kernel = kernel
        self.allowed = allowed
        self.getcpu = getcpu                    # the CPU the Sentry runs on now
        self.enabled = kernel is not None and len(allowed) > 1
        self.bound: set[StubThread] = set()     # threads bound to the Sentry's CPU
        self._tick_armed = False
        self.binds = self.frees = 0             # counters, for tests and --debug
        # The Sentry's own pinning (pin_sentry): its thread, its run-delay reader, and
        # whether it is pinned now or free since `_freed_at`.
        self.sentry_tid = 0
        self.run_delay: Callable[[], int] | None = None
        self.sentry_pinned = False
        self._freed_at = 0
        self.check_armed = False                # the check's timer is set (stubs run)
        self._check_from = (0, 0)               # (monotonic ns, run delay ns) of the window
        self.bound_run_ns = 0                   # bound threads' runs (resume to stop), summed
        self.sentry_pins = self.sentry_frees = 0

    def pin_sentry(self, run_delay: Callable[[], int] | None = None) -> None:
        """Pins the calling thread, the Sentry, to the CPU it runs on, if its run delay
        can be read (`run_delay`, default: its schedstat); without it, the Sentry stays
        free (there would be no escape from a busy CPU)."""
        if not self.enabled:
            return
        if run_delay is None:
            run_delay = schedstat_run_delay()
        if run_delay is None:
            return
        self.run_delay = run_delay
        self.sentry_tid = threading.get_native_id()
        self._pin_sentry()

    def _pin_sentry(self) -> None:
        cpu = self.getcpu()
        if cpu not in self.allowed:
            return
        try:
            os.sched_setaffinity(self.sentry_tid, {cpu})
        except OSError:
            return
        self.sentry_pinned = True
        self.sentry_pins += 1

    def _free_sentry(self) -> None:
        try:
            os.sched_setaffinity(self.sentry_tid, self.allowed)
        except OSError:
            return
        self.sentry_pinned = False
        self._freed_at = time.monotonic_ns()
        self.sentry_frees += 1

    def _arm_check(self) -> None:
        assert self.kernel is not None and self.run_delay is not None
        self.check_armed = True
        now = self.kernel.now()
        self._check_from = (now, self.run_delay())
        self.bound_run_ns = 0
        self.kernel.add_timer(now + CHECK_NS, self._check)

    def _check(self) -> None:
        """Frees a pinned Sentry that waited for its CPU, beyond its bound stubs' runs,
        more than CONTENDED of the window; pins a free one again FREE_NS after it was
        freed.  Not re-armed here:
        the next resume arms it, so an idle sandbox has no timer."""
        assert self.kernel is not None and self.run_delay is not None
        self.check_armed = False
        start, delay0 = self._check_from
        window = self.kernel.now() - start
        # The Sentry waits for its CPU while a bound stub it resumed runs there (the
        # stub, woken, preempts it): its own work, not contention; what is left over
        # is time something else held its CPU.
        waited = self.run_delay() - delay0 - self.bound_run_ns
        if self.sentry_pinned:
            if window > 0 and waited > CONTENDED * window:
                self._free_sentry()
        elif time.monotonic_ns() - self._freed_at >= FREE_NS:
            self._pin_sentry()

    def _set(self, th: StubThread, cpus: frozenset[int] | set[int]) -> bool:
        try:
            os.sched_setaffinity(th.tid, cpus)
        except OSError:
            return False          # the thread is gone, or the CPU set changed under us
        return True

    def created(self, th: StubThread) -> None:
        """`th` is a new stub thread, stopped before its first run: bind it to the
        Sentry's CPU, as gVisor binds every stub thread to its tracer's.  Its first host
        work is round trips with the Sentry (an exec's mappings injected one by one, the
        dynamic linker's syscalls), each a wake-up on another CPU otherwise; if it
        computes instead, the rules above free it (LONG_RUN_NS, the tick)."""
        if not self.enabled:
            return
        th.placed = True
        cpu = self.getcpu()
        if th.bound and th.cpu == cpu:
            return
        if cpu in self.allowed and self._set(th, {cpu}):
            if not th.bound:
                self.binds += 1
            th.bound = True
            th.cpu = cpu
            th.short_runs = 0
            self.bound.add(th)

    def stopped(self, th: StubThread) -> None:
        """`th` stopped at a syscall: was its run short (a syscall-heavy thread)?"""
        if not self.enabled:
            return
        if not th.placed:
            # Its affinity is its creator's: make it the sandbox's whole set.
            th.placed = True
            self._set(th, self.allowed)
            return
        run = time.monotonic_ns() - th.resumed_at
        if th.bound:
            self.bound_run_ns += run
            if run > LONG_RUN_NS:
                self._free(th)
                return
            cpu = self.getcpu()
            if cpu != th.cpu and cpu in self.allowed and self._set(th, {cpu}):
                th.cpu = cpu                     # the Sentry moved: follow it
            return
        if run < SHORT_RUN_NS:
            th.short_runs += 1
            if th.short_runs >= BIND_AFTER:
                cpu = self.getcpu()
                if cpu in self.allowed and self._set(th, {cpu}):
                    th.bound = True
                    th.cpu = cpu
                    th.short_runs = 0
                    self.bound.add(th)
                    self.binds += 1
        else:
            th.short_runs = 0

    def resumed(self, th: StubThread) -> None:
        """`th` runs application code from now."""
        if not self.enabled:
            return
        th.resumed_at = time.monotonic_ns()
        self.stubs_running()
        if th.bound and not self._tick_armed and self.kernel is not None:
            self._tick_armed = True
            self.kernel.add_timer(self.kernel.now() + TICK_NS, self._tick)

    def stubs_running(self) -> None:
        """Stubs run from now: arms the pinned Sentry's check (`resumed` does; systrap,
        which places its threads itself, calls it from its stops now and then)."""
        if self.run_delay is not None and not self.check_armed:
            self._arm_check()

    def _free(self, th: StubThread) -> None:
        self.bound.discard(th)
        th.bound = False
        th.short_runs = 0
        if not th.exited:
            self._set(th, self.allowed)
        self.frees += 1

    def _tick(self) -> None:
        """Frees bound threads that have been computing for LONG_RUN_NS."""
        self._tick_armed = False
        now = time.monotonic_ns()
        running = False
        for th in list(self.bound):
            if th.exited or th.process.dead:
                self.bound.discard(th)
            elif th.running and now - th.resumed_at > LONG_RUN_NS:
                self._free(th)
            elif th.running:
                running = True
        if running and self.kernel is not None:
            self._tick_armed = True
            self.kernel.add_timer(self.kernel.now() + TICK_NS, self._tick)


def schedstat_run_delay(path: str = "/proc/thread-self/schedstat") -> Callable[[], int] | None:
    """A reader of the calling thread's run delay (ns spent runnable, waiting for a CPU:
    the second field of its schedstat), from an fd opened now, before the Sentry's
    confinement forbids opens; None if the host has no schedstat (CONFIG_SCHED_INFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None

    def read() -> int:
        try:
            return int(os.pread(fd, 128, 0).split()[1])
        except (OSError, ValueError, IndexError):
            return 0
    try:
        read_ok = len(os.pread(fd, 128, 0).split()) >= 2
    except OSError:
        read_ok = False
    if not read_ok:
        os.close(fd)
        return None
    return read
