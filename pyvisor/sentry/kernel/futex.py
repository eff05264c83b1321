"""Futexes: wait queues keyed by user address.  Linux: kernel/futex/.

Private futexes key on (MemoryManager, address); shared ones on (object,
offset) of a shared mapping, or on (MemoryManager, address) of a private one.
A shared and a private key never match, even for one address (Linux marks the
shared one FUT_OFF_MMSHARED): a FUTEX_PRIVATE_FLAG wake does not wake a
shared waiter, nor the other way round.
Robust lists (exit_robust_list) are walked when a thread exits or execs.
Their read-modify-write of a futex word is not atomic with respect to other
threads running in the same address space (Linux uses cmpxchg): a thread that
unlocks in user space at that very moment can lose the race.
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

Key = tuple[bool, int, int]              # (shared, object or address space, offset)
_queues: dict[Key, WaitQueue] = {}


def _key(t: Task, addr: int, private: bool = False) -> Key:
    """Private futexes: (address space, address).  Shared ones: (object, offset) of
    the shared mapping holding `addr`, so processes mapping it anywhere meet."""
    if not private:
        v = t.mm.find(addr)
        if v is not None and v.shared:
            obj = v.mappable if v.mappable is not None else v.extra
            return (True, id(obj), v.offset + (addr - v.start))
    return (not private, id(t.mm), addr)


def _queue(key: Key) -> WaitQueue:
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


FUTEX_WAITERS = 0x80000000
FUTEX_OWNER_DIED = 0x40000000
FUTEX_TID_MASK = 0x3FFFFFFF
ROBUST_LIST_LIMIT = 2048
_ROBUST_HEAD = struct.Struct("<QqQ")     # struct robust_list_head: next, futex_offset, pending


def exit_robust_list(t: Task) -> None:
    """A thread exits (or execs): every futex on its robust list that it still owns
    gets FUTEX_OWNER_DIED, and one waiter is woken.  Linux: exit_robust_list.
    A faulting list ends the walk quietly, as in Linux."""
    head = t.robust_list
    t.robust_list = 0
    if not head:
        return
    try:
        nxt, offset, pending = _ROBUST_HEAD.unpack(t.copy_in(head, _ROBUST_HEAD.size))
    except SyscallError:
        return
    entry = nxt
    limit = ROBUST_LIST_LIMIT
    while entry & ~1 != head:
        try:
            (nxt,) = struct.unpack("<Q", t.copy_in(entry & ~1, 8))
        except SyscallError:
            nxt = None
        if entry & ~1 != pending & ~1:
            _futex_death(t, (entry & ~1) + offset, bool(entry & 1), False)
        if nxt is None:
            return
        entry = nxt
        limit -= 1
        if not limit:
            break
    if pending & ~1:
        _futex_death(t, (pending & ~1) + offset, bool(pending & 1), True)


def _futex_death(t: Task, uaddr: int, pi: bool, pending: bool) -> None:
    """handle_futex_death."""
    uaddr &= (1 << 64) - 1
    if uaddr % 4:
        return
    try:
        (uval,) = struct.unpack("<I", t.copy_in(uaddr, 4))
        if pending and not pi and not uval:
            wake(t, uaddr, 1)
            return
        if uval & FUTEX_TID_MASK != t.tid:
            return
        t.copy_out(uaddr, struct.pack("<I", (uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED))
    except SyscallError:
        return
    if not pi and uval & FUTEX_WAITERS:
        wake(t, uaddr, 1)
