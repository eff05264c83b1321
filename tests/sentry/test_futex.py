"""Futex queues without ptrace: coroutines driven by hand, as the Sentry loop drives them."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

from pyvisor.sentry.kernel import futex
from pyvisor.sentry.waitqueue import Waiter, WaitQueue


class _Sleep:
    def __init__(self, q: WaitQueue, mask: int) -> None:
        self.q, self.mask = q, mask

    def __await__(self) -> Any:
        return (yield self)


class FakeKernel:
    """Parks a coroutine on its queue the way Kernel._park does; wake-ups are recorded."""

    def __init__(self) -> None:
        self.woken: list[Any] = []

    def block_on(self, t: Any, q: WaitQueue, mask: int, deadline: Any = None) -> _Sleep:
        return _Sleep(q, mask)

    def park(self, t: Any, sl: _Sleep) -> None:
        sl.q.add(Waiter(sl.mask, lambda ev: self.woken.append(t)))


def _task(kernel: FakeKernel, word: int) -> Any:
    mm = object()
    return SimpleNamespace(kernel=kernel, mm=SimpleNamespace(find=lambda a: None),
                           copy_in=lambda a, n: struct.pack("<I", word), _mm=mm)


def test_a_late_waker_does_not_orphan_a_new_waiter() -> None:
    """A is woken; a second wake empties the key; B then waits; A's coroutine finishes last.
    B must still be wakeable (it once was not: a lost wake-up hung multiprocessing)."""
    k = FakeKernel()
    t = _task(k, 7)
    a = futex.wait(t, 0x1000, 7, None, private=True)
    k.park(t, a.send(None))
    assert futex.wake(t, 0x1000, 1, private=True) == 1      # wakes A (still to resume)
    assert futex.wake(t, 0x1000, 1, private=True) == 0      # nobody left: key dropped
    b = futex.wait(t, 0x1000, 7, None, private=True)
    k.park(t, b.send(None))                                 # B starts a fresh queue
    try:
        a.send(None)                                        # A's wait returns...
    except StopIteration:
        pass
    assert futex.wake(t, 0x1000, 1, private=True) == 1      # ...and B is still found
    b.close()


def test_wait_checks_the_value_first() -> None:
    k = FakeKernel()
    t = _task(k, 5)
    c = futex.wait(t, 0x2000, 6, None, private=True)
    try:
        c.send(None)
        raise AssertionError("should not sleep")
    except futex.SyscallError as e:
        assert e.errno == 11   # EAGAIN
