"""Wait queues: the one place tasks sleep.  Linux: include/linux/wait.h.

A waiter is registered on one or more queues with an event mask; `notify`
wakes the waiters whose mask intersects the events.  Waking only schedules
the waiter's callback; it never runs task code re-entrantly.
Concurrency: touched only from the Sentry loop.
"""

from __future__ import annotations

from typing import Callable

# Event bits (poll(2) values, so files can report readiness directly).
EVENT_IN = 0x001
EVENT_PRI = 0x002
EVENT_OUT = 0x004
EVENT_ERR = 0x008
EVENT_HUP = 0x010
EVENT_RDHUP = 0x2000
EVENT_ALL = 0xFFFFFFFF


class Waiter:
    """A sleeper: a mask and a callback run (once) on the first matching event."""

    __slots__ = ("mask", "callback", "queues")

    def __init__(self, mask: int, callback: Callable[[int], None]) -> None:
        self.mask = mask
        self.callback = callback
        self.queues: list[WaitQueue] = []

    def cancel(self) -> None:
        """Removes the waiter from every queue it is on."""
        for q in self.queues:
            try:
                q.waiters.remove(self)
            except ValueError:
                pass
        self.queues.clear()


class WaitQueue:
    """A list of waiters.  Linux: wait_queue_head_t."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: list[Waiter] = []

    def add(self, w: Waiter) -> None:
        self.waiters.append(w)
        w.queues.append(self)

    def notify(self, events: int = EVENT_ALL) -> None:
        """Wakes every waiter interested in `events`."""
        if not self.waiters:
            return
        for w in list(self.waiters):
            if w.mask & events:
                w.cancel()
                w.callback(events)
