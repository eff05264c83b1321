"""CPU placement (platform/ptrace/placement.py): syscall-heavy stub threads are bound to the
Sentry's CPU, computing ones freed to every CPU of the sandbox, without a process."""

from __future__ import annotations

from typing import Any

import pytest

from placement_fakes import FakeClock, FakeKernel
from pyvisor.sentry.platform.ptrace import placement as PL
from pyvisor.sentry.platform.ptrace.subprocess import StubThread


class _Proc:
    dead = False


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> tuple[PL.Placement, FakeClock, dict[int, Any]]:
    clock = FakeClock()
    monkeypatch.setattr(PL.time, "monotonic_ns", clock)
    affinity: dict[int, Any] = {}

    def fake_set(tid: int, cpus: Any) -> None:
        affinity[tid] = set(cpus)
    monkeypatch.setattr(PL.os, "sched_setaffinity", fake_set)
    p = PL.Placement(FakeKernel(clock), frozenset({0, 1}), lambda: 1)  # type: ignore[arg-type]
    return p, clock, affinity


def _run(p: PL.Placement, th: StubThread, clock: FakeClock, ns: int) -> None:
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
    p = PL.Placement(FakeKernel(clock), frozenset({0}), lambda: 0)  # type: ignore[arg-type]
    th = StubThread(103, _Proc())  # type: ignore[arg-type]
    for _ in range(10):
        _run(p, th, clock, 1000)
    assert not th.bound and 103 not in affinity


def test_bound_thread_follows_the_sentry(setup: Any) -> None:
    _, clock, affinity = setup
    where = [1]
    p = PL.Placement(FakeKernel(clock), frozenset({0, 1}), lambda: where[0])  # type: ignore[arg-type]
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
    p = PL.Placement(FakeKernel(clock), frozenset({0}), lambda: 0)  # type: ignore[arg-type]
    th = StubThread(106, _Proc())  # type: ignore[arg-type]
    p.created(th)
    assert not th.bound and 106 not in affinity


def _sentry(p: PL.Placement, delay: list[int]) -> int:
    """Pins the Sentry with a fake run-delay reader; returns its tid."""
    p.pin_sentry(lambda: delay[0])
    return p.sentry_tid


def _fire(p: PL.Placement) -> None:
    """Runs the Sentry's armed contention check (not the freeing tick)."""
    k = p.kernel
    assert isinstance(k, FakeKernel)
    [i] = [i for i, (_, cb) in enumerate(k.timers) if cb == p._check]
    k.timers.pop(i)[1]()


def test_sentry_pinned_and_waiting_behind_its_own_stubs_stays(setup: Any) -> None:
    """The Sentry is pinned to its CPU; waiting for it while a bound stub ran there is
    its own work (the resumed stub preempts it), not contention."""
    p, clock, affinity = setup
    delay = [0]
    tid = _sentry(p, delay)
    assert p.sentry_pinned and affinity[tid] == {1}
    th = StubThread(107, _Proc())  # type: ignore[arg-type]
    p.created(th)
    for _ in range(100):                         # 100 × 100 µs runs of a bound stub
        _run(p, th, clock, 100_000)
        delay[0] += 90_000                       # ... the Sentry waiting behind each
    clock.ns += PL.CHECK_NS - 10_000_000
    _fire(p)
    assert p.sentry_pinned and affinity[tid] == {1}
    assert all(cb != p._check for _, cb in p.kernel.timers), \
        "not re-armed until a stub runs again"  # type: ignore[union-attr]


def test_sentry_on_a_busy_cpu_frees_itself_then_pins_again(setup: Any) -> None:
    """Waiting for its CPU beyond its own stubs' runs (something else computes there):
    the Sentry frees itself to every CPU, and FREE_NS later pins itself to the CPU the
    host has moved it to."""
    _, clock, affinity = setup
    where = [1]
    p = PL.Placement(FakeKernel(clock), frozenset({0, 1}), lambda: where[0])  # type: ignore[arg-type]
    delay = [0]
    tid = _sentry(p, delay)
    th = StubThread(108, _Proc())  # type: ignore[arg-type]
    p.created(th)
    _run(p, th, clock, 1_000_000)
    p.resumed(th)                                # the check is armed while stubs run
    clock.ns += PL.CHECK_NS
    delay[0] += int(PL.CONTENDED * PL.CHECK_NS) + 2_000_000
    _fire(p)
    assert not p.sentry_pinned and affinity[tid] == {0, 1} and p.sentry_frees == 1
    where[0] = 0                                 # the host moves it to the idle CPU
    _run(p, th, clock, 10_000)
    assert affinity[108] == {0}, "its bound stub follows it"
    p.resumed(th)
    clock.ns += PL.FREE_NS
    _fire(p)
    assert p.sentry_pinned and affinity[tid] == {0} and p.sentry_pins == 2


def test_sentry_left_free_without_a_run_delay(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No schedstat on the host: no escape from a busy CPU, so no pinning."""
    p, _, affinity = setup
    monkeypatch.setattr(PL, "schedstat_run_delay", lambda: None)
    p.pin_sentry()
    assert not p.sentry_pinned and not affinity


def test_schedstat_run_delay_reads_this_threads_wait(tmp_path: Any) -> None:
    read = PL.schedstat_run_delay()
    if read is None:
        pytest.skip("the host has no /proc/thread-self/schedstat (CONFIG_SCHED_INFO)")
    assert read() >= 0
    fake = tmp_path / "schedstat"
    fake.write_text("123 456 7\n")
    assert PL.schedstat_run_delay(str(fake))() == 456  # type: ignore[misc]
    fake.write_text("garbage\n")
    assert PL.schedstat_run_delay(str(fake)) is None
