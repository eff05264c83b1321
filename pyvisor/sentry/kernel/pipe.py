"""Pipes and FIFOs.  Linux: fs/pipe.c.

A Pipe is a bounded byte buffer with reader and writer counts and one wait
queue.  Readers get EOF once every writer is gone; writers get EPIPE (and
SIGPIPE, sent by the syscall layer) once every reader is gone.  Writes of at
most PIPE_BUF bytes are atomic.  Buffered bytes are charged to the sandbox's
Sentry memory account while they sit in the pipe; a write that finds the account
full gets ENOMEM (Linux: pipe_write when a page cannot be allocated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_ACCMODE, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY
from pyvisor.abi.linux.stat import S_IFIFO
from pyvisor.sentry.kernel.errors import SyscallError, WouldBlock
from pyvisor.sentry.kernel.memacct import Kind, SentryMemory
from pyvisor.sentry.kernel.waitqueue import EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT, WaitQueue
from pyvisor.sentry.vfs.file import FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import Filesystem, Inode
from pyvisor.sentry.vfs.vfs import Dentry, Mount

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

PIPE_BUF = 4096
DEFAULT_CAPACITY = 65536
MAX_CAPACITY = 1 << 20
FIONREAD = 0x541B


class Pipe:
    """The shared buffer.  Linux: struct pipe_inode_info."""

    __slots__ = ("buf", "capacity", "readers", "writers", "wq", "had_writer", "acct")

    def __init__(self) -> None:
        self.buf = bytearray()          # invariant: len(buf) bytes are charged to `acct`
        self.capacity = DEFAULT_CAPACITY
        self.readers = 0
        self.writers = 0
        self.wq = WaitQueue()
        self.had_writer = False
        self.acct: SentryMemory | None = None   # set by the first write

    def read(self, n: int) -> bytes:
        if self.buf:
            data = bytes(self.buf[:n])
            del self.buf[:n]
            self._uncharge(len(data))
            self.wq.notify(EVENT_OUT)
            return data
        if self.writers == 0:
            return b""
        raise WouldBlock()

    def write(self, data: bytes, acct: SentryMemory) -> int:
        if self.readers == 0:
            raise SyscallError(Errno.EPIPE)
        room = self.capacity - len(self.buf)
        n = len(data)
        if room <= 0 or (n <= PIPE_BUF and room < n):
            raise WouldBlock()
        take = min(room, n)
        self.acct = acct
        if not acct.try_charge(Kind.PIPE, take):
            # Take what fits (never splitting an atomic write); nothing fits: ENOMEM.
            take = min(take, acct.available()) if n > PIPE_BUF else 0
            if take <= 0 or not acct.try_charge(Kind.PIPE, take):
                raise SyscallError(Errno.ENOMEM)
        self.buf += data[:take]
        self.wq.notify(EVENT_IN)
        return take

    def _uncharge(self, n: int) -> None:
        if self.acct is not None:
            self.acct.uncharge(Kind.PIPE, n)

    def discard(self) -> None:
        """Every reader and writer is gone: the buffered bytes are freed."""
        self._uncharge(len(self.buf))
        self.buf = bytearray()

    def readiness(self, reading: bool, writing: bool) -> int:
        ev = 0
        if reading:
            if self.buf:
                ev |= EVENT_IN
            if self.writers == 0 and self.had_writer:
                ev |= EVENT_HUP
        if writing:
            if self.readers == 0:
                ev |= EVENT_ERR
            elif self.capacity - len(self.buf) >= PIPE_BUF:
                ev |= EVENT_OUT
        return ev


class PipeImpl(FileImpl):
    """One end (or both, for O_RDWR FIFOs) of a pipe."""

    def __init__(self, pipe: Pipe, reading: bool, writing: bool) -> None:
        self.pipe = pipe
        self.reading = reading
        self.writing = writing
        if reading:
            pipe.readers += 1
        if writing:
            pipe.writers += 1
            pipe.had_writer = True

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
            t.copy_out(arg, len(self.pipe.buf).to_bytes(4, "little"))
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
        return len(self.pipe.buf)


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
    """Opening a named FIFO.  Blocking-open rendezvous is not implemented: opens never wait."""
    pipe = _FIFOS.get(id(inode))
    if pipe is None:
        pipe = _FIFOS[id(inode)] = Pipe()
    acc = flags & O_ACCMODE
    return PipeImpl(pipe, acc in (O_RDONLY, O_RDWR), acc in (O_WRONLY, O_RDWR))
