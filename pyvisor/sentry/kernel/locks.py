"""File locks: flock(2), POSIX record locks and OFD locks.  Linux: fs/locks.c.

Each inode has a lock context with two independent lists, as Linux keeps
them: flock locks (whole file, owned by an open file description) and
byte-range locks, owned either by a process's fd table (classic POSIX locks:
`fcntl(F_SETLK)`, released when that process closes *any* fd of the file, or
exits) or by an open file description (OFD locks: `F_OFD_SETLK`, released
with the description's last close).  A range lock replaces the owner's
overlapping ranges and merges with adjacent ones of the same type; two locks
conflict when their owners differ, their ranges overlap and one is a write
lock.  Blocking requests sleep on the context's wait queue (interruptibly,
EINTR/restart by SA_RESTART); a classic POSIX request whose wait would close
a cycle of owners waiting on each other fails with EDEADLK
(posix_locks_deadlock).  flock conversions are not atomic: the old lock is
dropped before waiting for the new one, as on Linux.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.waitqueue import WaitQueue

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.file import FileDescription
    from pyvisor.sentry.vfs.inode import Inode

F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
OFFSET_MAX = (1 << 63) - 1
MAX_DEADLK_ITERATIONS = 10
MAX_LOCKS_PER_INODE = 65536           # bounded Sentry state


@dataclass(eq=False, slots=True)
class RangeLock:
    owner: Any                 # an FDTable (POSIX) or a FileDescription (OFD)
    ltype: int
    start: int
    end: int                   # inclusive; OFFSET_MAX: to the end of any file
    pid: int                   # F_GETLK's l_pid: the locking process (-1 for OFD)
    ofd: bool


@dataclass(eq=False)
class LockContext:
    """Linux: struct file_lock_context."""

    flocks: dict[Any, int] = field(default_factory=dict)     # description -> F_RDLCK/F_WRLCK
    ranges: list[RangeLock] = field(default_factory=list)
    wq: WaitQueue = field(default_factory=WaitQueue)


# owner -> (context, owner it waits for): POSIX owners blocked in F_SETLKW, for deadlock
# detection (Linux: blocked_hash).
_waiting: dict[Any, Any] = {}


def context(inode: Inode, create: bool = True) -> LockContext | None:
    ctx: LockContext | None = inode.lock_ctx
    if ctx is None and create:
        ctx = inode.lock_ctx = LockContext()
    return ctx


# -- flock ----------------------------------------------------------------------------------


def _flock_conflict(ctx: LockContext, f: FileDescription, ltype: int) -> bool:
    return any(owner is not f and (ltype == F_WRLCK or held == F_WRLCK)
               for owner, held in ctx.flocks.items())


async def flock(t: Task, f: FileDescription, ltype: int, nonblock: bool) -> None:
    """LOCK_SH/LOCK_EX (ltype F_RDLCK/F_WRLCK) or LOCK_UN (F_UNLCK)."""
    ctx = context(f.inode)
    assert ctx is not None
    if ltype == F_UNLCK:
        if ctx.flocks.pop(f, None) is not None:
            ctx.wq.notify()
        return
    old = ctx.flocks.get(f)
    if old == ltype:
        return
    if old is not None:                      # a conversion drops the old lock first
        del ctx.flocks[f]
        ctx.wq.notify()
    while _flock_conflict(ctx, f, ltype):
        if nonblock:
            raise SyscallError(Errno.EAGAIN)          # EWOULDBLOCK
        await t.kernel.block_on(t, ctx.wq)
    if len(ctx.flocks) >= MAX_LOCKS_PER_INODE:
        raise SyscallError(Errno.ENOLCK)
    ctx.flocks[f] = ltype


# -- byte ranges -----------------------------------------------------------------------------


def _conflicts(a: RangeLock, owner: Any, ltype: int, start: int, end: int) -> bool:
    return a.owner is not owner and a.start <= end and start <= a.end and \
        (ltype == F_WRLCK or a.ltype == F_WRLCK)


def test_lock(inode: Inode, owner: Any, ltype: int, start: int, end: int) -> RangeLock | None:
    """F_GETLK: the first lock that would block the request, if any."""
    ctx = context(inode, create=False)
    if ctx is None:
        return None
    for lk in ctx.ranges:
        if _conflicts(lk, owner, ltype, start, end):
            return lk
    return None


def _deadlock(ctx_owner_blocker: Any, owner: Any) -> bool:
    """Whether waiting on `ctx_owner_blocker` would close a cycle back to `owner`."""
    blocker = ctx_owner_blocker
    for _ in range(MAX_DEADLK_ITERATIONS):
        if blocker is owner:
            return True
        nxt = _waiting.get(blocker)
        if nxt is None:
            return False
        blocker = nxt
    return False


def _apply(ctx: LockContext, owner: Any, ltype: int, start: int, end: int, pid: int,
           ofd: bool) -> None:
    """Replaces the owner's locks over [start, end] by `ltype` (posix_lock_inode)."""
    keep: list[RangeLock] = []
    mine: list[RangeLock] = []
    for lk in ctx.ranges:
        (mine if lk.owner is owner else keep).append(lk)
    out: list[RangeLock] = []
    for lk in mine:
        if lk.end < start or lk.start > end:
            out.append(lk)
            continue
        if lk.start < start:
            out.append(RangeLock(owner, lk.ltype, lk.start, start - 1, lk.pid, ofd))
        if lk.end > end:
            out.append(RangeLock(owner, lk.ltype, end + 1, lk.end, lk.pid, ofd))
    if ltype != F_UNLCK:
        out.append(RangeLock(owner, ltype, start, end, pid, ofd))
    # Merge adjacent or overlapping ranges of the same type.
    out.sort(key=lambda x: x.start)
    merged: list[RangeLock] = []
    for lk in out:
        last = merged[-1] if merged else None
        if last is not None and last.ltype == lk.ltype and \
                (last.end == OFFSET_MAX or last.end + 1 >= lk.start):
            last.end = max(last.end, lk.end)
            continue
        merged.append(lk)
    if len(keep) + len(merged) > MAX_LOCKS_PER_INODE:
        raise SyscallError(Errno.ENOLCK)
    ctx.ranges = keep + merged
    ctx.wq.notify()


async def set_lock(t: Task, inode: Inode, owner: Any, ltype: int, start: int, end: int,
                   wait: bool, ofd: bool) -> None:
    """F_SETLK/F_SETLKW and the OFD forms."""
    ctx = context(inode)
    assert ctx is not None
    pid = -1 if ofd else t.tg.tgid
    if ltype == F_UNLCK:
        _apply(ctx, owner, ltype, start, end, pid, ofd)
        return
    while True:
        blocker = next((lk for lk in ctx.ranges
                        if _conflicts(lk, owner, ltype, start, end)), None)
        if blocker is None:
            _apply(ctx, owner, ltype, start, end, pid, ofd)
            return
        if not wait:
            raise SyscallError(Errno.EAGAIN)
        if not ofd and not blocker.ofd and _deadlock(blocker.owner, owner):
            raise SyscallError(Errno.EDEADLK)
        _waiting[owner] = blocker.owner
        try:
            await t.kernel.block_on(t, ctx.wq)
        finally:
            _waiting.pop(owner, None)


# -- release --------------------------------------------------------------------------------


def release_description(f: FileDescription) -> None:
    """The description's last reference is gone: its flock and OFD locks go."""
    ctx = context(f.inode, create=False)
    if ctx is None:
        return
    changed = ctx.flocks.pop(f, None) is not None
    if any(lk.owner is f for lk in ctx.ranges):
        ctx.ranges = [lk for lk in ctx.ranges if lk.owner is not f]
        changed = True
    if changed:
        ctx.wq.notify()


def release_posix(f: FileDescription, owner: Any) -> None:
    """A process closed an fd of the file: all its POSIX locks on it go (locks_remove_posix)."""
    ctx = context(f.inode, create=False)
    if ctx is None or not ctx.ranges:
        return
    if any(lk.owner is owner for lk in ctx.ranges):
        ctx.ranges = [lk for lk in ctx.ranges if lk.owner is not owner]
        ctx.wq.notify()
