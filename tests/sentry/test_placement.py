"""CPU placement (platform/ptrace/placement.py): syscall-heavy stub threads are bound to the
Sentry's CPU, computing ones freed to every CPU of the sandbox, without a process."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from pyvisor.sentry.platform.ptrace import placement as PL
from pyvisor.sentry.platform.ptrace.subprocess import StubThread


class _Clock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns


class _Kernel:
    def __init__(self, clock: _Clock) -> None:
        self.clock = clock
        self.timers: list[tuple[int, Callable[[], None]]] = []

    def now(self) -> int:
        return self.clock.ns

    def add_timer(self, deadline: int, callback: Callable[[], None]) -> None:
        self.timers.append((deadline, callback))


class _Proc:
    dead = False


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> tuple[PL.Placement, _Clock, dict[int, Any]]:
    clock = _Clock()
    monkeypatch.setattr(PL.time, "monotonic_ns", clock)
    affinity: dict[int, Any] = {}

    def fake_set(tid: int, cpus: Any) -> None:
        affinity[tid] = set(cpus)
    monkeypatch.setattr(PL.os, "sched_setaffinity", fake_set)
    p = PL.Placement(_Kernel(clock), frozenset({0, 1}), lambda: 1)  # type: ignore[arg-type]
    return p, clock, affinity


def _run(p: PL.Placement, th: StubThread, clock: _Clock, ns: int) -> None:
    p.resumed(th)
    th.running = True
    clock.ns += ns
    th.running = False
    p.stopped(th)


def test_syscall_heavy_thread_is_bound_then_freed_when_it_computes(setup: Any) -> None:
    p, clock, affinity = setup
    th = StubThread(100, _Proc())  # type: ignore[arg-type]
    p.stopped(th)                                # first sight: the sandbox's whole set
    assert affinity[100] == {0, 1}
    for _ in range(PL.BIND_AFTER):
        _run(p, th, clock, 10_000)               # 10 µs runs: a syscall loop
    assert th.bound and affinity[100] == {1}
    _run(p, th, clock, 10_000)
    assert th.bound
    _run(p, th, clock, 50_000_000)               # 50 ms of computing before a syscall
    assert not th.bound and affinity[100] == {0, 1}


def test_long_runs_in_between_keep_a_thread_free(setup: Any) -> None:
    p, clock, affinity = setup
    th = StubThread(101, _Proc())  # type: ignore[arg-type]
    p.stopped(th)
    for _ in range(20):
        for _ in range(PL.BIND_AFTER - 1):
            _run(p, th, clock, 10_000)
        _run(p, th, clock, 5_000_000)
    assert not th.bound and affinity[101] == {0, 1}


def test_tick_frees_a_bound_thread_that_never_stops(setup: Any) -> None:
    p, clock, affinity = setup
    k = p.kernel
    th = StubThread(102, _Proc())  # type: ignore[arg-type]
    p.stopped(th)
    for _ in range(PL.BIND_AFTER):
        _run(p, th, clock, 10_000)
    assert th.bound
    p.resumed(th)                                # now it computes with no syscall at all
    th.running = True
    assert k.timers, "a tick is armed while a bound thread runs"
    clock.ns += PL.TICK_NS
    k.timers.pop(0)[1]()
    assert not th.bound and affinity[102] == {0, 1}


def test_disabled_with_one_cpu(setup: Any) -> None:
    _, clock, affinity = setup
    p = PL.Placement(_Kernel(clock), frozenset({0}), lambda: 0)  # type: ignore[arg-type]
    th = StubThread(103, _Proc())  # type: ignore[arg-type]
    for _ in range(10):
        _run(p, th, clock, 1000)
    assert not th.bound and 103 not in affinity


def test_bound_thread_follows_the_sentry(setup: Any) -> None:
    _, clock, affinity = setup
    where = [1]
    p = PL.Placement(_Kernel(clock), frozenset({0, 1}), lambda: where[0])  # type: ignore[arg-type]
    th = StubThread(104, _Proc())  # type: ignore[arg-type]
    p.stopped(th)
    for _ in range(PL.BIND_AFTER):
        _run(p, th, clock, 10_000)
    assert th.bound and affinity[104] == {1}
    where[0] = 0                                 # the host moved the Sentry
    _run(p, th, clock, 10_000)
    assert th.bound and affinity[104] == {0}


def test_new_thread_starts_beside_the_sentry_and_is_freed_when_it_computes(setup: Any) -> None:
    """created(): a new stub thread (fork, exec's new address space, a new thread) is
    bound to the Sentry's CPU before it first runs, as its first work is round trips
    with the Sentry; it is freed like any bound thread once it computes."""
    p, clock, affinity = setup
    th = StubThread(105, _Proc())  # type: ignore[arg-type]
    p.created(th)
    assert th.bound and affinity[105] == {1}
    _run(p, th, clock, 10_000)
    assert th.bound and affinity[105] == {1}
    _run(p, th, clock, 50_000_000)               # it computes
    assert not th.bound and affinity[105] == {0, 1}


def test_created_is_a_no_op_with_one_cpu(setup: Any) -> None:
    _, clock, affinity = setup
    p = PL.Placement(_Kernel(clock), frozenset({0}), lambda: 0)  # type: ignore[arg-type]
    th = StubThread(106, _Proc())  # type: ignore[arg-type]
    p.created(th)
    assert not th.bound and 106 not in affinity
