"""pipe, poll, select, epoll, eventfd, getrandom.  Linux: fs/pipe.c, fs/select.c,
fs/eventpoll.c, fs/eventfd.c, drivers/char/random.c."""

from __future__ import annotations

import os
import struct
from typing import Any, Coroutine

from pyvisor.abi.linux.errno import ERESTARTNOHAND, Errno
from pyvisor.abi.linux.fcntl import O_CLOEXEC, O_NONBLOCK, O_RDWR
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.kernel import pipe as kpipe
from pyvisor.sentry.errors import Interrupted, SyscallError, TimedOut, WouldBlock
from pyvisor.sentry.kernel.memacct import EPOLL_ITEM_COST, Kind, SentryMemory
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.waitqueue import (EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT,
                                             EVENT_PRI, EVENT_ALL, WaitQueue, Waiter)
from pyvisor.sentry.syscalls.linux.usertime import copy_in_select_timeval, copy_in_timespec
from pyvisor.sentry.vfs.file import FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import Filesystem, Inode
from pyvisor.sentry.vfs.vfs import Dentry, Mount

POLLNVAL = 0x20
POLLRDNORM, POLLWRNORM = 0x040, 0x100
_POLLFD = struct.Struct("<ihh")


# -- pipes -------------------------------------------------------------------------------


def _pipe(t: Task, addr: int, flags: int) -> int:
    if flags & ~(O_NONBLOCK | O_CLOEXEC | 0o40000):
        raise SyscallError(Errno.EINVAL)
    rf, wf = kpipe.new_pipe(flags)
    cloexec = bool(flags & O_CLOEXEC)
    fds = []
    try:
        fds.append(t.fd_table.install(rf, cloexec))
        fds.append(t.fd_table.install(wf, cloexec))
        t.copy_out(addr, struct.pack("<ii", *fds))
    except SyscallError:
        for fd in fds:
            t.fd_table.remove(fd)        # leave no half-done effects
        if len(fds) < 2:
            for f in (rf, wf)[len(fds):]:
                f.decref()
        raise
    return 0


def sys_pipe(t: Task, r: SyscallArguments) -> int:
    """Implements pipe(2)."""
    return _pipe(t, r.pointer(0), 0)


def sys_pipe2(t: Task, r: SyscallArguments) -> int:
    """Implements pipe2(2)."""
    return _pipe(t, r.pointer(0), r.int32(1))


# -- poll / select -----------------------------------------------------------------------


def poll_ready(f: FileDescription, mask: int) -> int:
    """The events of `mask` (plus POLLERR/POLLHUP) that `f` has now.  Files report
    POLLIN/POLLOUT; as on Linux, where pipes, sockets and the rest report
    POLLRDNORM and POLLWRNORM with them, the NORM bits follow."""
    query = mask | EVENT_ERR | EVENT_HUP
    if mask & POLLRDNORM:
        query |= EVENT_IN
    if mask & POLLWRNORM:
        query |= EVENT_OUT
    ev = f.impl.readiness(f, query)
    if ev & EVENT_IN:
        ev |= POLLRDNORM
    if ev & EVENT_OUT:
        ev |= POLLWRNORM
    return ev & (mask | EVENT_ERR | EVENT_HUP)


def _deadline_ms(t: Task, ms: int) -> int | None:
    if ms < 0:
        return None
    return t.kernel.now() + ms * 1_000_000


def _deadline_ts(t: Task, addr: int) -> int | None:
    if not addr:
        return None
    return t.kernel.now() + copy_in_timespec(t, addr)


def _timeout_ts(t: Task, addr: int) -> tuple[int | None, int]:
    """A ppoll/pselect6 timeout: its deadline, and where to write the time left
    (0 for none: no timeout, or a zero one, which poll_select_finish leaves)."""
    if not addr:
        return None, 0
    timeout = copy_in_timespec(t, addr)
    return t.kernel.now() + timeout, addr if timeout else 0


async def _poll_files(t: Task, items: list[tuple[FileDescription | None, int]],
                      deadline: int | None) -> list[int]:
    """Waits until some file is ready; returns revents per item (0 = not ready)."""
    while True:
        revents = []
        ready = 0
        for f, mask in items:
            if f is None:
                revents.append(POLLNVAL)
                ready += 1
                continue
            ev = poll_ready(f, mask)
            revents.append(ev)
            if ev:
                ready += 1
        if ready or (deadline is not None and deadline <= t.kernel.now()):
            return revents
        queues: list[WaitQueue] = []
        for f, _ in items:
            if f is not None:
                _add_queues(f, queues)
        try:
            await t.kernel.block_on(t, queues, deadline=deadline)
        except TimedOut:
            return [0] * len(items)


async def _do_poll(t: Task, addr: int, nfds: int, deadline: int | None) -> int:
    if nfds > t.fd_table.limit or nfds < 0:
        raise SyscallError(Errno.EINVAL)
    raw = t.copy_in(addr, nfds * 8) if nfds else b""
    items: list[tuple[FileDescription | None, int]] = []
    fds = []
    for i in range(nfds):
        fd, events, _ = _POLLFD.unpack_from(raw, i * 8)
        fds.append((fd, events))
        if fd < 0:
            items.append((_NEGATIVE, 0))
            continue
        try:
            items.append((t.fd_table.get(fd), events & 0xFFFF))
        except SyscallError:
            items.append((None, 0))
    try:
        revents = await _poll_files(t, items, deadline)
    except Interrupted:
        raise SyscallError(ERESTARTNOHAND) from None
    out = bytearray()
    n = 0
    for (fd, events), rev in zip(fds, revents):
        if fd < 0:
            rev = 0
        out += _POLLFD.pack(fd, events, rev)
        if rev:
            n += 1
    if nfds:
        t.copy_out(addr, bytes(out))
    return n


class _NeverReady(FileImpl):
    def readiness(self, fd: FileDescription, mask: int) -> int:
        return 0


class _Neg:
    impl = _NeverReady()


_NEGATIVE = _Neg()  # type: ignore[assignment]


async def sys_poll(t: Task, r: SyscallArguments) -> int:
    """Implements poll(2)."""
    return await _do_poll(t, r.pointer(0), r.int32(1), _deadline_ms(t, r.int32(2)))


STICKY_TIMEOUTS = 0x4000000     # personality(2): select/ppoll leave the timeout alone
SIGSET_SIZE = 8


def _set_sigmask(t: Task, addr: int, size: int) -> int | None:
    """The mask a ppoll/pselect6 waits under (set_user_sigmask): EINVAL unless the
    size is a sigset_t's; None: no mask given (the task's own stays)."""
    if not addr:
        return None
    if size != SIGSET_SIZE:
        raise SyscallError(Errno.EINVAL)
    (m,) = struct.unpack("<Q", t.copy_in(addr, 8))
    old = t.sigmask
    t.sigmask = m & ~((1 << 8) | (1 << 18))
    return old


def _restore_sigmask(t: Task, old: int | None) -> None:
    """After the wait: the old mask comes back now, or after the handler of a
    signal that arrived under the temporary one (restore_saved_sigmask_unless)."""
    if old is None:
        return
    t.saved_sigmask = old
    from pyvisor.sentry.kernel.signal import has_deliverable
    if not has_deliverable(t):
        t.sigmask, t.saved_sigmask = old, None


async def _timed(t: Task, call: Coroutine[Any, Any, int], addr: int, deadline: int | None,
                 usec: bool) -> int:
    """Runs a poll or select and writes the time left back to its timeout, as
    poll_select_finish does: not for a zero or absent timeout, nor under
    STICKY_TIMEOUTS; an interrupted call whose timeout cannot be written is not
    restarted (EINTR) and a finished one ignores the fault."""
    try:
        n = await call
    except SyscallError as e:
        if e.errno != ERESTARTNOHAND or not _write_left(t, addr, deadline, usec):
            raise
        raise SyscallError(Errno.EINTR) from None
    _write_left(t, addr, deadline, usec)
    return n


def _write_left(t: Task, addr: int, deadline: int | None, usec: bool) -> bool:
    """False if all went well (or there was nothing to write); True if the write
    faulted."""
    if not addr or deadline is None or t.personality & STICKY_TIMEOUTS:
        return False
    left = max(0, deadline - t.kernel.now())
    sec, ns = divmod(left, 10**9)
    try:
        t.copy_out(addr, struct.pack("<qq", sec, ns // 1000 if usec else ns))
    except SyscallError:
        return True
    return False


async def sys_ppoll(t: Task, r: SyscallArguments) -> int:
    """Implements ppoll(2)."""
    addr, nfds, ts, sigmask = r.pointer(0), r.int32(1), r.pointer(2), r.pointer(3)
    deadline, ts = _timeout_ts(t, ts)
    old = _set_sigmask(t, sigmask, r.uint64(4))
    try:
        return await _timed(t, _do_poll(t, addr, nfds, deadline), ts, deadline, False)
    finally:
        _restore_sigmask(t, old)


def _max_fds(t: Task) -> int:
    """The size of the fd table's bitmaps (fdtable.max_fds): select looks no further.
    Linux grows them to cover the highest fd, in steps of powers of two."""
    top = max(t.fd_table.files, default=0) + 1
    if top <= 64:
        return 64
    return 128 * (1 << (top // 128).bit_length()) if top > 128 else 128


async def _do_select(t: Task, nfds: int, rp: int, wp: int, ep: int, deadline: int | None) -> int:
    if nfds < 0:
        raise SyscallError(Errno.EINVAL)
    nfds = min(nfds, _max_fds(t))           # core_sys_select; not RLIMIT_NOFILE
    nbytes = ((nfds + 63) // 64) * 8
    sets = []
    for p in (rp, wp, ep):
        sets.append(int.from_bytes(t.copy_in(p, nbytes), "little") if p and nbytes else 0)
    items: list[tuple[FileDescription | None, int]] = []
    fdlist = []
    for fd in range(nfds):
        mask = 0
        if sets[0] >> fd & 1:
            mask |= EVENT_IN | EVENT_HUP | EVENT_ERR
        if sets[1] >> fd & 1:
            mask |= EVENT_OUT | EVENT_ERR
        if sets[2] >> fd & 1:
            mask |= EVENT_PRI
        if mask:
            f = t.fd_table.get(fd)     # EBADF for a closed fd, as Linux
            items.append((f, mask))
            fdlist.append(fd)
    try:
        revents = await _poll_files(t, items, deadline)
    except Interrupted:
        raise SyscallError(ERESTARTNOHAND) from None
    outs = [0, 0, 0]
    n = 0
    for fd, rev in zip(fdlist, revents):
        if sets[0] >> fd & 1 and rev & (EVENT_IN | EVENT_HUP | EVENT_ERR):
            outs[0] |= 1 << fd
            n += 1
        if sets[1] >> fd & 1 and rev & (EVENT_OUT | EVENT_ERR):
            outs[1] |= 1 << fd
            n += 1
        if sets[2] >> fd & 1 and rev & EVENT_PRI:
            outs[2] |= 1 << fd
            n += 1
    for p, v in zip((rp, wp, ep), outs):
        if p and nbytes:
            t.copy_out(p, v.to_bytes(nbytes, "little"))
    return n


async def sys_select(t: Task, r: SyscallArguments) -> int:
    """Implements select(2)."""
    tv = r.pointer(4)
    deadline = None
    if tv:
        timeout = copy_in_select_timeval(t, tv)
        deadline = t.kernel.now() + timeout
        if not timeout:
            tv = 0                  # a zero timeout is not written back
    return await _timed(t, _do_select(t, r.int32(0), r.pointer(1), r.pointer(2),
                                      r.pointer(3), deadline), tv, deadline, True)


async def sys_pselect6(t: Task, r: SyscallArguments) -> int:
    """Implements pselect6(2).  Its sixth argument points at {sigset pointer, size}."""
    deadline, ts = _timeout_ts(t, r.pointer(4))
    sm = r.pointer(5)
    old = None
    if sm:
        ptr, size = struct.unpack("<QQ", t.copy_in(sm, 16))
        old = _set_sigmask(t, ptr, size)
    try:
        return await _timed(t, _do_select(t, r.int32(0), r.pointer(1), r.pointer(2),
                                          r.pointer(3), deadline), ts, deadline, False)
    finally:
        _restore_sigmask(t, old)


# -- anonymous files (eventfd, epoll) ------------------------------------------------------


class AnonFS(Filesystem):
    name = "anon_inodefs"
    magic = 0x09041934


_ANON: AnonFS | None = None


def anon_file(name: bytes, impl: FileImpl, flags: int) -> FileDescription:
    global _ANON
    if _ANON is None:
        _ANON = AnonFS()
    inode = Inode(_ANON, 0o600)
    d = Dentry(b"anon_inode:" + name, None, inode)
    f = FileDescription(Mount(_ANON, d, source="anon"), d, flags)
    f.impl = impl
    return f


class EventFD(FileImpl):
    """An eventfd counter.  Linux: fs/eventfd.c."""

    splice_read = False

    def __init__(self, value: int, semaphore: bool) -> None:
        self.value = value
        self.semaphore = semaphore
        self.wq = WaitQueue()

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        if n < 8:
            raise SyscallError(Errno.EINVAL)
        if self.value == 0:
            raise WouldBlock()
        v = 1 if self.semaphore else self.value
        self.value -= v
        self.wq.notify(EVENT_OUT)
        return struct.pack("<Q", v)

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        if len(data) != 8:
            raise SyscallError(Errno.EINVAL)      # exactly one u64 (eventfd_write)
        (v,) = struct.unpack_from("<Q", data)
        if v == 0xFFFFFFFFFFFFFFFF:
            raise SyscallError(Errno.EINVAL)
        if self.value + v > 0xFFFFFFFFFFFFFFFE:
            raise WouldBlock()
        self.value += v
        self.wq.notify(EVENT_IN)
        return 8

    def readiness(self, fd: FileDescription, mask: int) -> int:
        ev = (EVENT_IN if self.value else 0) | (EVENT_OUT if self.value < 0xFFFFFFFFFFFFFFFE else 0)
        return ev & mask

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.wq


def sys_eventfd2(t: Task, r: SyscallArguments) -> int:
    """Implements eventfd2(2)."""
    init, flags = r.uint32(0), r.int32(1)
    if flags & ~(O_NONBLOCK | O_CLOEXEC | 1):
        raise SyscallError(Errno.EINVAL)
    f = anon_file(b"[eventfd]", EventFD(init, bool(flags & 1)), O_RDWR | (flags & O_NONBLOCK))
    return t.fd_table.install(f, cloexec=bool(flags & O_CLOEXEC))


def sys_eventfd(t: Task, r: SyscallArguments) -> int:
    f = anon_file(b"[eventfd]", EventFD(r.uint32(0), False), O_RDWR)
    return t.fd_table.install(f)


class _EdgeWatch:
    """EPOLLET: remembers whether the file signalled an event since epoll last reported it
    (Linux: ep_poll_callback putting the item on the ready list).  Re-arms itself on the
    file's wait queue after each event."""

    __slots__ = ("queue", "dirty", "waiter", "alive")

    def __init__(self, queue: WaitQueue) -> None:
        self.queue = queue
        self.dirty = True            # a new or modified item is checked once
        self.alive = True
        self.waiter = Waiter(EVENT_ALL, self._fired)
        queue.add(self.waiter)

    def _fired(self, events: int) -> None:
        if self.alive:
            self.dirty = True
            self.waiter = Waiter(EVENT_ALL, self._fired)
            self.queue.add(self.waiter)

    def cancel(self) -> None:
        self.alive = False
        self.waiter.cancel()


class EpollImpl(FileImpl):
    """An epoll instance: interest list of (file, fd) -> (events, data).  Level-triggered
    items are reported while ready, edge-triggered ones (EPOLLET) once per event that
    finds them ready; reported items move to the back of the list, so none starves.
    ONESHOT disables after one report.  Linux: fs/eventpoll.c."""

    splice_read = False

    def __init__(self, acct: SentryMemory) -> None:
        # (id(file), fd) -> [file, events, data, fd, _EdgeWatch | None]
        self.interest: dict[tuple[int, int], list] = {}
        self.wq = WaitQueue()
        self.acct = acct        # each entry of `interest` is charged EPOLL_ITEM_COST

    def add(self, key: tuple[int, int], entry: list) -> None:
        """A new watch; ENOSPC past the Sentry memory bound (Linux: max_user_watches)."""
        if not self.acct.try_charge(Kind.EPOLL, EPOLL_ITEM_COST):
            # Watches of files closed since are dropped lazily (at epoll_wait): drop
            # ours now, then try again.
            for k in [k for k, e in self.interest.items() if e[0].refs <= 0]:
                self.drop(k)
            if not self.acct.try_charge(Kind.EPOLL, EPOLL_ITEM_COST):
                raise SyscallError(Errno.ENOSPC)
        self.interest[key] = entry

    def drop(self, key: tuple[int, int]) -> None:
        _drop_watch(self.interest.pop(key))
        self.acct.uncharge(Kind.EPOLL, EPOLL_ITEM_COST)

    def readiness(self, fd: FileDescription, mask: int) -> int:
        for f, ev, _, _, _ in self.interest.values():
            if poll_ready(f, ev):
                return EVENT_IN & mask
        return 0

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.wq

    def release(self, fd: FileDescription) -> None:
        """The epoll file is gone: its edge watches leave the files' queues and its
        watches' charges return to the Sentry memory account."""
        for ent in self.interest.values():
            _drop_watch(ent)
        self.acct.uncharge(Kind.EPOLL, EPOLL_ITEM_COST * len(self.interest))
        self.interest.clear()


_EPOLLET, _EPOLLONESHOT, _EPOLLEXCLUSIVE = 1 << 31, 1 << 30, 1 << 28
_EPOLL_EVENT = struct.Struct("<IQ")   # packed on amd64: 12 bytes
# EPOLLEXCLUSIVE_OK_BITS (fs/eventpoll.c): EPOLLIN|EPOLLOUT|EPOLLERR|EPOLLHUP|EPOLLWAKEUP|
# EPOLLET|EPOLLEXCLUSIVE; an exclusive watch may ask for nothing else (no EPOLLONESHOT).
_EPOLLEXCLUSIVE_OK = 0x1 | 0x4 | 0x8 | 0x10 | (1 << 29) | _EPOLLET | _EPOLLEXCLUSIVE


EP_MAX_NESTS = 4


def _add_queues(f: FileDescription, queues: list[WaitQueue], depth: int = 0) -> None:
    """The wait queues that tell a waiter `f` may have become ready: its own, and for
    an epoll file those of what it watches, nested epolls included (Linux wakes a
    nested epoll's waiters from ep_poll_callback through its poll_wait)."""
    q = f.impl.waitq(f)
    if q in queues:
        return
    queues.append(q)
    if isinstance(f.impl, EpollImpl) and depth <= EP_MAX_NESTS:
        for g, _, _, _, _ in f.impl.interest.values():
            _add_queues(g, queues, depth + 1)


def _epoll_depth(f: FileDescription, target: FileDescription, depth: int = 0) -> int:
    """How deep epolls nest below `f`; ELOOP if `target` is among them (a cycle) or
    they nest past EP_MAX_NESTS.  Linux: ep_loop_check."""
    if f is target:
        raise SyscallError(Errno.ELOOP)
    if depth > EP_MAX_NESTS:
        raise SyscallError(Errno.ELOOP)
    deepest = depth
    assert isinstance(f.impl, EpollImpl)
    for g, _, _, _, _ in f.impl.interest.values():
        if isinstance(g.impl, EpollImpl):
            deepest = max(deepest, _epoll_depth(g, target, depth + 1))
    return deepest


def _edge_watch(f: FileDescription, events: int) -> _EdgeWatch | None:
    return _EdgeWatch(f.impl.waitq(f)) if events & _EPOLLET else None


def _drop_watch(ent: list) -> None:
    if ent[4] is not None:
        ent[4].cancel()


def sys_epoll_create1(t: Task, r: SyscallArguments) -> int:
    """Implements epoll_create1(2)."""
    flags = r.int32(0)
    if flags & ~O_CLOEXEC:
        raise SyscallError(Errno.EINVAL)
    f = anon_file(b"[eventpoll]", EpollImpl(t.kernel.memory), O_RDWR)
    return t.fd_table.install(f, cloexec=bool(flags & O_CLOEXEC))


def sys_epoll_create(t: Task, r: SyscallArguments) -> int:
    if r.int32(0) <= 0:
        raise SyscallError(Errno.EINVAL)
    return t.fd_table.install(anon_file(b"[eventpoll]", EpollImpl(t.kernel.memory), O_RDWR))


def sys_epoll_ctl(t: Task, r: SyscallArguments) -> int:
    """Implements epoll_ctl(2)."""
    epfd, op, fd, evp = r.int32(0), r.int32(1), r.int32(2), r.pointer(3)
    ep = t.fd_table.get(epfd)
    if not isinstance(ep.impl, EpollImpl):
        raise SyscallError(Errno.EINVAL)
    f = t.fd_table.get(fd)
    if f is ep:
        raise SyscallError(Errno.EINVAL)
    if (f.inode.is_regular() or f.inode.is_dir()) and not getattr(f.impl, "pollable", False):
        raise SyscallError(Errno.EPERM)     # no f_op->poll (/proc/PID/mounts has one)
    key = (id(f), fd)
    impl = ep.impl
    if op == 1:   # ADD
        events, data = _EPOLL_EVENT.unpack(t.copy_in(evp, 12))
        if events & _EPOLLEXCLUSIVE and (events & ~_EPOLLEXCLUSIVE_OK
                                         or isinstance(f.impl, EpollImpl)):
            raise SyscallError(Errno.EINVAL)
        if key in impl.interest:
            raise SyscallError(Errno.EEXIST)
        if isinstance(f.impl, EpollImpl):
            _epoll_depth(f, ep)
        impl.add(key, [f, events, data, fd, _edge_watch(f, events)])
    elif op == 2:  # DEL
        if key not in impl.interest:
            raise SyscallError(Errno.ENOENT)
        impl.drop(key)
    elif op == 3:  # MOD
        events, data = _EPOLL_EVENT.unpack(t.copy_in(evp, 12))
        if events & _EPOLLEXCLUSIVE:
            raise SyscallError(Errno.EINVAL)    # ep_ctl: exclusive is for ADD only
        if key not in impl.interest:
            raise SyscallError(Errno.ENOENT)
        ent = impl.interest[key]
        if ent[1] & _EPOLLEXCLUSIVE:
            raise SyscallError(Errno.EINVAL)    # an exclusive watch cannot be modified
        _drop_watch(ent)
        ent[1:3] = [events, data]
        ent[4] = _edge_watch(f, events)
    else:
        raise SyscallError(Errno.EINVAL)
    impl.wq.notify()
    return 0


async def _epoll_wait(t: Task, epfd: int, evp: int, maxev: int, deadline: int | None) -> int:
    ep = t.fd_table.get(epfd)
    if not isinstance(ep.impl, EpollImpl):
        raise SyscallError(Errno.EINVAL)
    if maxev <= 0 or maxev > (1 << 31) // 12:
        raise SyscallError(Errno.EINVAL)
    impl = ep.impl
    while True:
        out = []
        reported = []
        for key, ent in list(impl.interest.items()):
            f, events, data, fd, watch = ent
            if t.fd_table.files.get(fd, (None,))[0] is not f:
                # The fd was closed: Linux drops it when the file dies.
                if f.refs <= 0:
                    impl.drop(key)
                    continue
            if watch is not None:
                if not watch.dirty:
                    continue
                watch.dirty = False
            mask = events & 0xFFFF
            ev = poll_ready(f, mask)
            if ev:
                out.append((ev, data))
                reported.append(key)
                if events & _EPOLLONESHOT:
                    ent[1] = events & ~0xFFFF
                if len(out) >= maxev:
                    break
        for key in reported:
            impl.interest[key] = impl.interest.pop(key)     # to the back: no starvation
        if out:
            t.copy_out(evp, b"".join(_EPOLL_EVENT.pack(ev, d) for ev, d in out))
            return len(out)
        if deadline is not None and deadline <= t.kernel.now():
            return 0
        queues: list[WaitQueue] = []
        _add_queues(ep, queues)
        try:
            await t.kernel.block_on(t, queues, deadline=deadline)
        except TimedOut:
            return 0
        except Interrupted:
            raise SyscallError(Errno.EINTR) from None


async def sys_epoll_wait(t: Task, r: SyscallArguments) -> int:
    """Implements epoll_wait(2)."""
    return await _epoll_wait(t, r.int32(0), r.pointer(1), r.int32(2),
                             _deadline_ms(t, r.int32(3)))


async def sys_epoll_pwait(t: Task, r: SyscallArguments) -> int:
    """Implements epoll_pwait(2)."""
    sm = r.pointer(4)
    old = t.sigmask
    if sm:
        (m,) = struct.unpack("<Q", t.copy_in(sm, 8))
        t.sigmask = m & ~((1 << 8) | (1 << 18))
    try:
        return await _epoll_wait(t, r.int32(0), r.pointer(1), r.int32(2),
                                 _deadline_ms(t, r.int32(3)))
    finally:
        t.sigmask = old


# -- getrandom ---------------------------------------------------------------------------


def sys_getrandom(t: Task, r: SyscallArguments) -> int:
    """Implements getrandom(2) from the host's CSPRNG."""
    buf, n, flags = r.pointer(0), r.uint64(1), r.uint32(2)
    if flags & ~0x7:
        raise SyscallError(Errno.EINVAL)
    n = min(n, 1 << 25)
    t.copy_out(buf, os.urandom(n))
    return n


