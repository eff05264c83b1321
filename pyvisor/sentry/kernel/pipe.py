"""Pipes and FIFOs.  Linux: fs/pipe.c.

A Pipe is Linux's ring of page buffers: at most `capacity // PAGE_SIZE` slots
(16 by default), each holding up to PAGE_SIZE bytes.  A write first merges the
part of its length beyond a multiple of PAGE_SIZE into the newest buffer if it
fits there, then fills fresh slots a page at a time; so a write of at most
PIPE_BUF bytes is atomic, and a bigger one takes what the free slots hold
(pipe_write).  Readers get EOF once every writer is gone; writers get EPIPE
(and SIGPIPE, sent by the syscall layer) once every reader is gone.
Buffered bytes are charged to the sandbox's Sentry memory account while they
sit in the pipe; a write that finds the account full gets ENOMEM (Linux:
pipe_write when a page cannot be allocated).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_SYS_RESOURCE
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_ACCMODE, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY
from pyvisor.abi.linux.stat import S_IFIFO
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.kernel.memacct import Kind, SentryMemory
from pyvisor.sentry.waitqueue import EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT, WaitQueue
from pyvisor.sentry.vfs.file import FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import Filesystem, Inode
from pyvisor.sentry.vfs.vfs import Dentry, Mount

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

PAGE_SIZE = 4096
PIPE_BUF = PAGE_SIZE
DEFAULT_CAPACITY = 16 * PAGE_SIZE
MAX_CAPACITY = 1 << 20
FIONREAD = 0x541B


class Pipe:
    """The shared ring.  Linux: struct pipe_inode_info."""

    __slots__ = ("bufs", "nbytes", "capacity", "readers", "writers", "wq", "had_writer", "acct",
                 "r_counter", "w_counter")

    def __init__(self) -> None:
        self.bufs: collections.deque[bytearray] = collections.deque()   # oldest first
        self.nbytes = 0                    # bytes in all buffers, all charged to `acct`
        self.capacity = DEFAULT_CAPACITY   # bytes; a power of two, at least a page
        self.readers = 0
        self.writers = 0
        self.wq = WaitQueue()
        self.had_writer = False
        self.acct: SentryMemory | None = None   # set by the first write
        self.r_counter = 0                 # opens for reading / writing ever (FIFO rendezvous)
        self.w_counter = 0

    @property
    def slots(self) -> int:
        return self.capacity // PAGE_SIZE

    def full(self) -> bool:
        return len(self.bufs) >= self.slots

    def resize(self, capacity: int) -> None:
        """F_SETPIPE_SZ: EBUSY if the buffers in use would not fit (pipe_resize_ring)."""
        if len(self.bufs) > capacity // PAGE_SIZE:
            raise SyscallError(Errno.EBUSY)
        self.capacity = capacity
        self.wq.notify(EVENT_OUT)

    def read(self, n: int) -> bytes:
        if self.bufs:
            out = bytearray()
            while self.bufs and len(out) < n:
                b = self.bufs[0]
                take = min(len(b), n - len(out))
                out += b[:take]
                if take == len(b):
                    self.bufs.popleft()
                else:
                    del b[:take]
            self.nbytes -= len(out)
            self._uncharge(len(out))
            self.wq.notify(EVENT_OUT)
            return bytes(out)
        if self.writers == 0:
            return b""
        raise WouldBlock()

    def peek(self, n: int) -> bytes:
        """Up to `n` buffered bytes, left in the pipe (tee, and splice before it
        knows how much the other side takes)."""
        out = bytearray()
        for b in self.bufs:
            if len(out) >= n:
                break
            out += b[:n - len(out)]
        return bytes(out)

    def write(self, data: bytes, acct: SentryMemory) -> int:
        """What fits now, as one pass of pipe_write: the merge of the sub-page
        remainder into the newest buffer, then whole free slots.  WouldBlock if
        nothing fits; ENOMEM if the Sentry memory account has no room for an
        atomic write or for any byte of a bigger one.  (Linux merges only on a
        write's first pass; a blocked writer's later passes merge here too, which
        changes only how bytes are spread over slots, never their order.)"""
        if self.readers == 0:
            raise SyscallError(Errno.EPIPE)
        total = len(data)
        chars = total % PAGE_SIZE
        merged = chars if chars and self.bufs and len(self.bufs[-1]) + chars <= PAGE_SIZE \
            else 0
        take = merged + min(total - merged, max(0, self.slots - len(self.bufs)) * PAGE_SIZE)
        if not take:
            raise WouldBlock()
        self.acct = acct
        if not acct.try_charge(Kind.PIPE, take):
            # Take what fits (never splitting an atomic write); nothing fits: ENOMEM.
            take = min(take, acct.available()) if total > PIPE_BUF else 0
            if take <= 0 or not acct.try_charge(Kind.PIPE, take):
                raise SyscallError(Errno.ENOMEM)
        done = min(merged, take)
        if done:
            self.bufs[-1] += data[:done]
        while done < take:
            n = min(PAGE_SIZE, take - done)
            self.bufs.append(bytearray(data[done:done + n]))
            done += n
        self.nbytes += done
        self.wq.notify(EVENT_IN)
        return done

    def _uncharge(self, n: int) -> None:
        if self.acct is not None and n:
            self.acct.uncharge(Kind.PIPE, n)

    def discard(self) -> None:
        """Every reader and writer is gone: the buffered bytes are freed."""
        self._uncharge(self.nbytes)
        self.bufs.clear()
        self.nbytes = 0

    def readiness(self, reading: bool, writing: bool) -> int:
        ev = 0
        if reading:
            if self.bufs:
                ev |= EVENT_IN
            if self.writers == 0 and self.had_writer:
                ev |= EVENT_HUP
        if writing:
            # pipe_poll: writable while a slot is free, and POLLERR without readers.
            if not self.full():
                ev |= EVENT_OUT
            if self.readers == 0:
                ev |= EVENT_ERR
        return ev


class PipeImpl(FileImpl):
    """One end (or both, for O_RDWR FIFOs) of a pipe."""

    fasync = True          # O_ASYNC sends SIGIO (kernel/fasync.py)

    splice_read = False           # sendfile cannot read from a pipe (EINVAL)
    fifo = False                  # a named FIFO's end (open_fifo), not pipe(2)'s

    def __init__(self, pipe: Pipe, reading: bool, writing: bool) -> None:
        self.pipe = pipe
        self.reading = reading
        self.writing = writing
        if reading:
            pipe.readers += 1
            pipe.r_counter += 1
        if writing:
            pipe.writers += 1
            pipe.w_counter += 1
            pipe.had_writer = True
        if pipe.r_counter + pipe.w_counter > 1:
            pipe.wq.notify(EVENT_IN | EVENT_OUT)     # a FIFO opener waiting for its partner

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        if n == 0:
            return b""
        return self.pipe.read(n)

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        return self.pipe.write(data, t.kernel.memory)

    def readiness(self, fd: FileDescription, mask: int) -> int:
        return self.pipe.readiness(self.reading, self.writing) & (mask | EVENT_HUP | EVENT_ERR)

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.pipe.wq

    def ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        if cmd == FIONREAD:
            t.copy_out(arg, self.pipe.nbytes.to_bytes(4, "little"))
            return 0
        raise SyscallError(Errno.ENOTTY)

    def release(self, fd: FileDescription) -> None:
        if self.reading:
            self.pipe.readers -= 1
        if self.writing:
            self.pipe.writers -= 1
        if self.pipe.readers == 0 and self.pipe.writers == 0:
            self.pipe.discard()
        self.pipe.wq.notify(EVENT_IN | EVENT_OUT | EVENT_HUP | EVENT_ERR)


class PipeFS(Filesystem):
    name = "pipefs"
    magic = 0x50495045


_PIPEFS: PipeFS | None = None


class PipeInode(Inode):
    __slots__ = ("pipe",)

    def __init__(self, fs: Filesystem, pipe: Pipe) -> None:
        super().__init__(fs, S_IFIFO | 0o600)
        self.pipe = pipe

    def size(self) -> int:
        return self.pipe.nbytes

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        """Re-opening a pipe(2) end through /proc/PID/fd/N (or /dev/stdin): as Linux
        (fs/pipe.c fifo_open with is_pipe), O_RDONLY, O_WRONLY and O_RDWR each get that
        end of the same pipe, and never wait for a partner nor fail for the lack of one
        (those rules are a named FIFO's)."""
        return _open_end(self.pipe, flags, fifo=False)


def pipe_set_size(t: Task, pipe: Pipe, arg: int) -> int:
    """F_SETPIPE_SZ: the size rounded up to a power-of-two number of pages; EINVAL
    past 2 GiB, EPERM past /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE.
    Linux: fs/pipe.c pipe_set_size, round_pipe_size."""
    if arg > 1 << 31:
        raise SyscallError(Errno.EINVAL)
    size = max(PAGE_SIZE, 1 << max(0, (arg - 1).bit_length()))
    if size > MAX_CAPACITY and not t.creds.capable(CAP_SYS_RESOURCE):
        raise SyscallError(Errno.EPERM)
    # (Buffered bytes, not capacity, are charged to the Sentry's memory account.)
    pipe.resize(size)
    return size


def new_pipe(flags: int) -> tuple[FileDescription, FileDescription]:
    """pipe2(2): a read end and a write end."""
    global _PIPEFS
    if _PIPEFS is None:
        _PIPEFS = PipeFS()
    pipe = Pipe()
    inode = PipeInode(_PIPEFS, pipe)
    d = Dentry(b"pipe:[%d]" % inode.ino, None, inode)
    m = Mount(_PIPEFS, d, source="pipefs")
    r = FileDescription(m, d, O_RDONLY | (flags & O_NONBLOCK))
    r.impl = PipeImpl(pipe, True, False)
    w = FileDescription(m, d, O_WRONLY | (flags & O_NONBLOCK))
    w.impl = PipeImpl(pipe, False, True)
    return r, w


_FIFOS: dict[int, Pipe] = {}


def open_fifo(inode: Inode, fd: FileDescription, flags: int) -> FileImpl:
    """Opening a named FIFO: one end, or both for O_RDWR.  The blocking-open
    rendezvous is fifo_wait's, once the open has made its end."""
    pipe = _FIFOS.get(id(inode))
    if pipe is None:
        pipe = _FIFOS[id(inode)] = Pipe()
    return _open_end(pipe, flags, fifo=True)


def _open_end(pipe: Pipe, flags: int, fifo: bool) -> FileImpl:
    """One end of `pipe` opened by name: a named FIFO's (open_fifo; `fifo`: the
    rendezvous rules of fifo_wait and ENXIO apply) or a pipe(2)'s (PipeInode.open)."""
    acc = flags & O_ACCMODE
    if fifo and acc == O_WRONLY and flags & O_NONBLOCK and pipe.readers == 0:
        raise SyscallError(Errno.ENXIO)
    impl = PipeImpl(pipe, acc in (O_RDONLY, O_RDWR), acc in (O_WRONLY, O_RDWR))
    impl.fifo = fifo
    return impl


async def fifo_wait(t: Task, fd: FileDescription) -> None:
    """A blocking open of one end of a FIFO waits until the other end has been
    opened (since it started waiting: a partner that came and went counts).
    Linux: fs/pipe.c fifo_open, wait_for_partner.  Interruptible: the caller
    releases the end on Interrupted."""
    impl = fd.impl
    if not getattr(impl, "fifo", False) or fd.flags & O_NONBLOCK or impl.reading == impl.writing:
        return
    pipe = impl.pipe
    if impl.reading:
        if pipe.writers:
            return
        start, counter = pipe.w_counter, "w_counter"
    else:
        if pipe.readers:
            return
        start, counter = pipe.r_counter, "r_counter"
    while getattr(pipe, counter) == start:
        await t.kernel.block_on(t, pipe.wq, EVENT_IN | EVENT_OUT)
