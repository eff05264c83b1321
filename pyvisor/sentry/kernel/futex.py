"""Futexes: wait queues keyed by user address.  Linux: kernel/futex/.

Private futexes key on (MemoryManager, address); shared ones on the same key
for now, which is right for threads and for CLONE_VM children.
TODO(#2): key shared futexes on (mappable, offset) so processes sharing a file meet.
Concurrency: touched only from the Sentry loop; suspends only in wait().
Invariant: a waiter is queued under at most one key; requeue moves, never copies.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.waitqueue import WaitQueue

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

_queues: dict[tuple[int, int], WaitQueue] = {}


def _key(t: Task, addr: int, private: bool = False) -> tuple[int, int]:
    """Private futexes: (address space, address).  Shared ones: (object, offset) of
    the shared mapping holding `addr`, so processes mapping it anywhere meet."""
    if not private:
        v = t.mm.find(addr)
        if v is not None and v.shared:
            obj = v.mappable if v.mappable is not None else v.extra
            return (id(obj), v.offset + (addr - v.start))
    return (id(t.mm), addr)


def _queue(key: tuple[int, int]) -> WaitQueue:
    q = _queues.get(key)
    if q is None:
        q = _queues[key] = WaitQueue()
    return q


async def wait(t: Task, addr: int, val: int, deadline: int | None, bitset: int = 0xFFFFFFFF,
               private: bool = False) -> int:
    """FUTEX_WAIT: sleep if *addr == val.  The check and the enqueue are atomic
    with respect to wakers, since nothing runs between them in the loop."""
    if addr % 4:
        raise SyscallError(Errno.EINVAL)
    (cur,) = struct.unpack("<I", t.copy_in(addr, 4))
    if cur != val & 0xFFFFFFFF:
        raise SyscallError(Errno.EAGAIN)
    key = _key(t, addr, private)
    q = _queue(key)
    try:
        await t.kernel.block_on(t, q, bitset, deadline)
    finally:
        # Drop the queue only if it is still the one registered for `key`: after our
        # wake-up another waiter may have started a fresh queue under the same key.
        if not q.waiters and _queues.get(key) is q:
            del _queues[key]
    return 0


def wake(t: Task, addr: int, n: int, bitset: int = 0xFFFFFFFF, private: bool = False) -> int:
    """FUTEX_WAKE: wakes up to `n` waiters; returns how many.  Like Linux's
    futex_wake, which counts after waking, a count of 0 still wakes one."""
    n = max(n, 1)
    key = _key(t, addr, private)
    q = _queues.get(key)
    if q is None:
        return 0
    woken = 0
    for w in list(q.waiters):
        if woken >= n:
            break
        if w.mask & bitset:
            w.cancel()
            w.callback(bitset)
            woken += 1
    if not q.waiters:
        _queues.pop(key, None)
    return woken


def requeue(t: Task, addr: int, n_wake: int, addr2: int, n_requeue: int,
            expected: Any = None, private: bool = False) -> int:
    """FUTEX_REQUEUE / CMP_REQUEUE."""
    if expected is not None:
        (cur,) = struct.unpack("<I", t.copy_in(addr, 4))
        if cur != expected & 0xFFFFFFFF:
            raise SyscallError(Errno.EAGAIN)
    woken = wake(t, addr, n_wake, private=private)
    q = _queues.get(_key(t, addr, private))
    moved = 0
    if q is not None:
        q2 = _queue(_key(t, addr2, private))
        for w in list(q.waiters):
            if moved >= n_requeue:
                break
            q.waiters.remove(w)
            w.queues.remove(q)
            q2.add(w)
            moved += 1
        if not q.waiters:
            _queues.pop(_key(t, addr, private), None)
    return woken + moved
