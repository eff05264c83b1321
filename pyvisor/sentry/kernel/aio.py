"""Linux native AIO.  Linux: fs/aio.c.  (The contexts follow below.)"""

from __future__ import annotations

from typing import Any

from pyvisor.sentry.waitqueue import EVENT_IN

_ULLONG_MAX = (1 << 64) - 1


def signal_eventfd(impl: Any) -> None:
    """Adds one to an eventfd's counter, saturating.  Linux: eventfd_signal."""
    impl.value = min(impl.value + 1, _ULLONG_MAX)
    impl.wq.notify(EVENT_IN)
