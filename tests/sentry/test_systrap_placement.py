"""CPU placement of systrap application threads (platform/systrap/placement.py): a new
thread starts beside the Sentry and is freed to every CPU once its round trips are ones
spinning covers, or once it computes; without a process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from placement_fakes import FakeClock, FakeKernel
from pyvisor.sentry.platform.ptrace import placement as PP
from pyvisor.sentry.platform.systrap import placement as SP


@dataclass(eq=False)
class _Thread:
    """What placement reads of an AppThread (subprocess.py)."""

    tid: int
    running: bool = False
    exited: bool = False
    bound: bool = False
    cpu: int = -1
    quick: int = 0
    resumed_at: int = 0
    stopped_at: int = 0


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> tuple[SP.ThreadPlacement, FakeClock, dict[int, Any]]:
    clock = FakeClock()
    monkeypatch.setattr(SP.time, "monotonic_ns", clock)
    monkeypatch.setattr(PP.time, "monotonic_ns", clock)
    affinity: dict[int, Any] = {}

    def fake_set(tid: int, cpus: Any) -> None:
        affinity[tid] = set(cpus)
    monkeypatch.setattr(SP.os, "sched_setaffinity", fake_set)
    monkeypatch.setattr(PP.os, "sched_setaffinity", fake_set)
    p = SP.ThreadPlacement(FakeKernel(clock), frozenset({0, 1}), lambda: 1)
    return p, clock, affinity


def _round_trip(p: SP.ThreadPlacement, th: _Thread, clock: FakeClock, run: int,
                service: int) -> None:
    """The Sentry serves a stop in `service` ns, resumes the thread, which runs `run` ns
    to its next stop (placement is told of bound threads only, as the platform does)."""
    clock.ns += service
    if th.bound:
        p.resumed(th)
    th.running = True
    clock.ns += run
    th.running = False
    if th.bound:
        p.stopped(th)


def test_new_thread_stays_beside_the_sentry(setup: Any) -> None:
    p, _, affinity = setup
    th = _Thread(100)
    assert p.created(th)
    assert th.bound and th.cpu == 1 and th in p.bound
    assert 100 not in affinity, "it was cloned on the Sentry's CPU: nothing to change"


def test_quick_round_trips_free_it(setup: Any) -> None:
    """A syscall loop (short runs, stops served within the handler's spin) is fastest
    with the thread on another CPU, both sides spinning: freed after FREE_AFTER."""
    p, clock, affinity = setup
    th = _Thread(101)
    p.created(th)
    _round_trip(p, th, clock, 2_000, 1_000_000)  # its set-up and first stop: not quick
    for _ in range(SP.FREE_AFTER - 1):
        _round_trip(p, th, clock, 2_000, 5_000)
    assert th.bound and 101 not in affinity
    _round_trip(p, th, clock, 2_000, 5_000)
    assert not th.bound and affinity[101] == {0, 1} and p.frees == 1


def test_slow_services_keep_it_bound(setup: Any) -> None:
    """Stops the Sentry takes long to serve (fork, exec's mappings, a wait4 that blocks)
    would outlast the handler's spin and cost a cross-CPU wake-up: it stays bound, and
    one such stop starts the count again."""
    p, clock, affinity = setup
    th = _Thread(102)
    p.created(th)
    for _ in range(10 * SP.FREE_AFTER):
        for _ in range(SP.FREE_AFTER - 1):
            _round_trip(p, th, clock, 2_000, 5_000)
        _round_trip(p, th, clock, 2_000, 400_000)       # a fork
    assert th.bound and 102 not in affinity


def test_long_runs_between_stops_reset_the_count(setup: Any) -> None:
    p, clock, affinity = setup
    th = _Thread(103)
    p.created(th)
    for _ in range(10 * SP.FREE_AFTER):
        for _ in range(SP.FREE_AFTER - 2):
            _round_trip(p, th, clock, 2_000, 5_000)
        _round_trip(p, th, clock, SP.SHORT_RUN_NS + 1, 5_000)
    assert th.bound and 103 not in affinity


def test_a_long_run_frees_it_at_its_stop(setup: Any) -> None:
    p, clock, affinity = setup
    th = _Thread(104)
    p.created(th)
    _round_trip(p, th, clock, 50_000_000, 1_000_000)    # it computes, then a syscall
    assert not th.bound and affinity[104] == {0, 1}


def test_tick_frees_a_bound_thread_that_never_stops(setup: Any) -> None:
    p, clock, affinity = setup
    k = p.timers
    th = _Thread(105)
    p.created(th)
    clock.ns += 1_000_000
    p.resumed(th)                                # it computes with no syscall at all
    th.running = True
    assert k.timers, "a tick is armed while a bound thread runs"
    clock.ns += SP.TICK_NS
    k.timers.pop(0)[1]()
    assert not th.bound and affinity[105] == {0, 1}
    assert not k.timers, "no tick once no bound thread runs"


def test_bound_thread_follows_the_sentry(setup: Any) -> None:
    _, clock, affinity = setup
    where = [1]
    p = SP.ThreadPlacement(FakeKernel(clock), frozenset({0, 1}), lambda: where[0])
    th = _Thread(106)
    p.created(th)
    where[0] = 0                                 # the host moved the Sentry
    _round_trip(p, th, clock, 2_000, 400_000)
    assert th.bound and th.cpu == 0 and affinity[106] == {0}


def test_exited_thread_is_forgotten(setup: Any) -> None:
    p, clock, affinity = setup
    th = _Thread(107)
    p.created(th)
    p.forget(th)
    assert not th.bound and th not in p.bound and 107 not in affinity


def test_disabled_with_one_cpu(setup: Any) -> None:
    """One CPU: created() says no (the platform frees nothing to: nothing happens)."""
    _, clock, affinity = setup
    p = SP.ThreadPlacement(FakeKernel(clock), frozenset({0}), lambda: 0)
    th = _Thread(108)
    assert not p.created(th)
    assert not th.bound and not affinity


def test_pinned_sentry_counts_bound_runs_as_its_own_work(setup: Any) -> None:
    """With the Sentry pinned (ptrace/placement.py's escape), runs of bound threads on its
    CPU are its own work in its contention check, and a resume arms the check."""
    _, clock, affinity = setup
    k = FakeKernel(clock)
    pin = PP.Placement(k, frozenset({0, 1}), lambda: 1)  # type: ignore[arg-type]
    delay = [0]
    pin.pin_sentry(lambda: delay[0])
    assert pin.sentry_pinned and affinity[pin.sentry_tid] == {1}
    p = SP.ThreadPlacement(k, frozenset({0, 1}), lambda: 1, sentry=pin)
    th = _Thread(109)
    p.created(th)
    pin.stubs_running()
    assert pin.check_armed
    for _ in range(100):                         # 100 × 150 µs runs of the bound thread
        _round_trip(p, th, clock, 150_000, 50_000)
        delay[0] += 140_000                      # ... the Sentry waiting behind each
    assert pin.bound_run_ns == 100 * 150_000
    [check] = [cb for _, cb in k.timers if cb == pin._check]
    check()
    assert pin.sentry_pinned and pin.sentry_frees == 0
