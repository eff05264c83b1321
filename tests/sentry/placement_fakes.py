"""What the placement policies (platform/ptrace/placement.py, platform/systrap/placement.py)
need of a Kernel, faked for their unit tests: a settable clock and a timer list the
test fires by hand."""

from __future__ import annotations

from typing import Callable


class FakeClock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns


class FakeKernel:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.timers: list[tuple[int, Callable[[], None]]] = []

    def now(self) -> int:
        return self.clock.ns

    def add_timer(self, deadline: int, callback: Callable[[], None]) -> None:
        self.timers.append((deadline, callback))
