"""Open file descriptions.  Linux: struct file + file_operations.

A FileDescription is what an fd points at: shared by dup and fork, with one
offset and one set of status flags.  Its behaviour comes from a `FileImpl`
chosen by the inode (regular tmpfs data, a gofer host fd, a pipe end, a
device, a directory listing, ...).

Data moves as bytes: `read` returns at most `n` bytes, `write` consumes a
bytes object.  Impl methods that would block raise WouldBlock; the syscall
layer waits on `waitq` for the events `readiness` reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_ACCMODE, O_APPEND, O_NONBLOCK, O_PATH, O_RDONLY, O_WRONLY
from pyvisor.abi.linux.fcntl import O_RDWR
from pyvisor.abi.linux.stat import dtype_of
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs.dirent import pack_dirents, unpack_dirents
from pyvisor.sentry.waitqueue import EVENT_IN, EVENT_OUT, WaitQueue

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.fasync import FileOwner
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.inode import Inode
    from pyvisor.sentry.vfs.vfs import Mount, Dentry

_NEVER = WaitQueue()  # files that are always ready never notify

# Called with a description whose last reference went, before its release (set by
# vfs/inotify.py: IN_CLOSE_* and a deferred IN_DELETE_SELF; Linux: __fput's fsnotify_close).
on_last_close: Callable[[FileDescription], None] | None = None

# The `offset` do_read/do_write pass to an impl that keeps its own position:
# "at the current position, advancing it" (preadv2's -1).
AT_POSITION = -1


class FileImpl:
    """Default behaviour of an open file: nothing is supported."""

    seekable = False
    # The file position lives outside the description (a host fd shared with
    # processes outside the sandbox): read/write at the current position get
    # offset AT_POSITION and advance it themselves; the description's
    # `offset` reads and sets that position.
    keeps_position = False
    # Whether sendfile may read from it (Linux: f_op->splice_read; pipes,
    # eventfds, epoll and directories have none: EINVAL).
    splice_read = True
    # Whether O_ASYNC makes it send SIGIO (Linux: f_op->fasync; kernel/fasync.py).
    fasync = False
    # Whether write(2) failing with EPIPE raises SIGPIPE (pipes, stream sockets; a
    # datagram socket only returns EPIPE).
    epipe_sigpipe = True
    # Whether write(2) of no bytes reaches `write` (a datagram socket sends an empty
    # datagram); else it returns 0 at once, as pipe_write and regular files do.
    zero_writes = False
    # How lseek(2) moves a seekable file's position (Linux: f_op->llseek): "generic"
    # (generic_file_llseek), "zero" (null_lseek: it stays 0), "noop" (noop_llseek:
    # unchanged) or "noend" (seq_lseek: no SEEK_END, EINVAL).
    llseek = "generic"
    # Whether epoll may watch it though it is a regular file (Linux: f_op->poll;
    # /proc/sys files have one).
    pollable = False

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        raise SyscallError(Errno.EINVAL)

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        raise SyscallError(Errno.EINVAL)

    def readiness(self, fd: FileDescription, mask: int) -> int:
        """Events (EVENT_*) ready now, restricted to `mask`."""
        return (EVENT_IN | EVENT_OUT) & mask

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return _NEVER

    def ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        raise SyscallError(Errno.ENOTTY)

    def size(self, fd: FileDescription) -> int:
        return fd.inode.size()

    def io_timeout(self, writing: bool) -> int | None:
        """How long read(2)/write(2) may block, in ns (None: forever; 0: never).
        Sockets answer with SO_RCVTIMEO/SO_SNDTIMEO (Linux: sock_read_iter and
        sock_write_iter go through sock_recvmsg/sock_sendmsg, which honour them)."""
        return None

    def release(self, fd: FileDescription) -> None:
        """The last reference to the description is gone."""

    def fsync(self, fd: FileDescription) -> None:
        """Writes back cached data."""


class DirectoryImpl(FileImpl):
    """An open directory: getdents64 hands out records of a snapshot taken at the
    first read after open or rewind (vfs/dirent.py)."""

    splice_read = False

    seekable = True

    def __init__(self) -> None:
        # The snapshot: the records' image and each record's end offset in it.
        # Record i (0: '.', 1: '..', then the children) has d_off i + 1.
        self.snapshot: tuple[bytes, list[int]] | None = None

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        raise SyscallError(Errno.EISDIR)

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        raise SyscallError(Errno.EISDIR)

    def rewind(self) -> None:
        """rewinddir (lseek to 0): the next read takes a fresh snapshot."""
        self.snapshot = None

    def records(self, fd: FileDescription) -> tuple[bytes, list[int]]:
        """The snapshot, taken now if there is none."""
        if self.snapshot is None:
            inode = fd.inode
            parent = fd.dentry.parent.inode if fd.dentry.parent is not None else inode
            head, head_ends = pack_dirents(((b".", inode.ino, dtype_of(inode.mode)),
                                            (b"..", parent.ino, dtype_of(parent.mode))), 1)
            body, body_ends = inode.dirent_records()
            base = len(head)
            self.snapshot = (head + body, head_ends + [base + e for e in body_ends])
        return self.snapshot

    def listing(self, fd: FileDescription) -> list[tuple[bytes, int, int]]:
        """(name, ino, d_type) of '.', '..' and every child in the snapshot."""
        return unpack_dirents(self.records(fd)[0])


class FileDescription:
    """An open file.  Linux: struct file."""

    __slots__ = ("inode", "dentry", "mount", "flags", "offset", "impl", "refs", "fown",
                 "__weakref__")

    def __init__(self, mount: Mount, dentry: Dentry, flags: int) -> None:
        self.mount = mount
        self.dentry = dentry
        self.inode: Inode = dentry.inode
        self.flags = flags            # status flags + access mode (O_CLOEXEC is per fd)
        self.impl: FileImpl = FileImpl()
        self.offset = 0
        self.refs = 1                  # fd-table references
        self.fown: FileOwner | None = None   # F_SETOWN/F_SETSIG/O_ASYNC (kernel/fasync.py)

    @classmethod
    def open(cls, mount: Mount, dentry: Dentry, flags: int) -> FileDescription:
        fd = cls(mount, dentry, flags)
        if not flags & O_PATH:
            fd.impl = dentry.inode.open(fd, flags)
        return fd

    @property
    def readable(self) -> bool:
        return self.flags & O_ACCMODE in (O_RDONLY, O_RDWR) and not self.flags & O_PATH

    @property
    def writable(self) -> bool:
        return self.flags & O_ACCMODE in (O_WRONLY, O_RDWR) and not self.flags & O_PATH

    @property
    def nonblocking(self) -> bool:
        return bool(self.flags & O_NONBLOCK)

    @property
    def append(self) -> bool:
        return bool(self.flags & O_APPEND)

    def incref(self) -> None:
        self.refs += 1

    def decref(self) -> None:
        self.refs -= 1
        if self.refs == 0:
            hook = on_last_close
            if hook is not None:
                hook(self)
            if self.fown is not None:
                from pyvisor.sentry.kernel.fasync import release
                release(self)
            if self.inode.lock_ctx is not None:
                from pyvisor.sentry.kernel.locks import release_description
                release_description(self)
            self.impl.release(self)

    def path(self, root: object = None) -> bytes:
        """The absolute path of the file as /proc/PID/fd shows it (below `root`, a
        Location, if given: a chrooted task's view)."""
        from pyvisor.sentry.vfs.vfs import path_of
        return path_of(self.mount, self.dentry, root)  # type: ignore[arg-type]
