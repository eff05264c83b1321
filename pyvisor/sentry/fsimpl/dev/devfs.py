"""devfs: the sandbox's /dev.  Linux: drivers/char/mem.c, drivers/tty/tty_io.c.

/dev is a tmpfs directory (so the application may add files, as on a
devtmpfs) pre-populated with the memory character devices, /dev/tty, the
fd/stdin/stdout/stderr symlinks into /proc/self/fd, and the empty directories
shm (the caller mounts a tmpfs there) and pts.  Device nodes are never
created by the application (TmpfsDir.mknod refuses them); only this module
makes them.

Devices ignore the file offset: null, zero, full and (u)random are seekable
so that lseek succeeds, as on Linux.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.stat import S_IFCHR, S_IFDIR
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.fsimpl.devpts import devpts
from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS, TmpfsDir, TmpfsSymlink
from pyvisor.sentry.vfs.file import FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import Filesystem, Inode

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.mm.memfile import MemoryFile

# Largest single read served by zero and (u)random; larger reads are short,
# which is legal for character devices and bounds the Sentry's memory use.
MAX_DEVICE_READ = 16 << 20
O_NOCTTY = 0o400

# Major/minor numbers.  From Documentation/admin-guide/devices.txt.
MEM_MAJOR = 1
TTYAUX_MAJOR = 5
NULL_MINOR, ZERO_MINOR, FULL_MINOR, RANDOM_MINOR, URANDOM_MINOR = 3, 5, 7, 8, 9
TTY_MINOR = 0


def new_encode_dev(major: int, minor: int) -> int:
    """A dev_t as the kernel encodes it for userspace.  Linux: new_encode_dev."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def decode_dev(dev: int) -> tuple[int, int]:
    """(major, minor) of an encoded dev_t.  Linux: new_decode_dev."""
    return (dev & 0xFFF00) >> 8, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)


# -- file implementations ------------------------------------------------------------


class NullImpl(FileImpl):
    """/dev/null: reads see EOF, writes vanish."""

    seekable = True
    llseek = "zero"         # Linux: null_lseek

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        return b""

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        return len(data)


class ZeroImpl(FileImpl):
    """/dev/zero: reads give zeros, writes vanish; mmap gives anonymous memory."""

    seekable = True
    llseek = "zero"         # Linux: null_lseek (zero and full too)
    anon_mmap = True        # Linux: mmap_zero (shared: shmem_zero_setup)

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        return bytes(max(0, min(n, MAX_DEVICE_READ)))

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        return len(data)


class FullImpl(ZeroImpl):
    """/dev/full: reads give zeros, writes fail with ENOSPC."""

    anon_mmap = False

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        raise SyscallError(Errno.ENOSPC)


class RandomImpl(FileImpl):
    """/dev/random and /dev/urandom: the host's CSPRNG; writes (entropy) are ignored.

    Linux 5.6+ /dev/random no longer blocks once the pool is initialised, so
    both behave alike.
    """

    seekable = True
    llseek = "noop"         # Linux: random_fops' noop_llseek

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        n = max(0, min(n, MAX_DEVICE_READ))
        return os.urandom(n) if n else b""

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        return len(data)


# -- inodes --------------------------------------------------------------------------


class CharDevice(Inode):
    """A character device node whose opens are served by `factory`.

    `factory` is None for devices that cannot be opened here (ENXIO).
    """

    __slots__ = ("factory",)

    def __init__(self, fs: Filesystem, major: int, minor: int,
                 factory: Callable[[], FileImpl] | None, perm: int = 0o666) -> None:
        super().__init__(fs, S_IFCHR | perm)
        self.rdev = new_encode_dev(major, minor)
        self.factory = factory

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        if self.factory is None:
            raise SyscallError(Errno.ENXIO)
        return self.factory()

    def truncate(self, size: int) -> None:
        """O_TRUNC on a device is ignored, as Linux does for non-regular files."""


class TtyDevice(CharDevice):
    """/dev/tty: the controlling terminal.

    The sandbox's console (runtime/console.py and terminal.py: a pty of its own)
    is set with `set_terminal`; opening /dev/tty opens it, for every process of
    the sandbox, except in a session that has a terminal of its own (an exec'd
    process's, `set_session_terminal`), which opens that one.  Without either it
    is ENXIO, as Linux gives a process without a controlling terminal.
    """

    __slots__ = ("terminal", "kernel", "sessions")

    def __init__(self, fs: Filesystem, kernel: object = None) -> None:
        super().__init__(fs, TTYAUX_MAJOR, TTY_MINOR, None)
        self.terminal: Inode | None = None
        self.kernel = kernel                       # for the caller's session
        self.sessions: dict[int, Inode] = {}       # sid -> that session's terminal

    def set_terminal(self, inode: Inode | None) -> None:
        self.terminal = inode
        if self.kernel is not None:
            devpts.registry(self.kernel).console = inode

    def set_session_terminal(self, sid: int, inode: Inode | None) -> None:
        if inode is None:
            self.sessions.pop(sid, None)
        else:
            self.sessions[sid] = inode
        if self.kernel is not None:
            devpts.registry(self.kernel).set_session_terminal(sid, inode)

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        # The caller's controlling terminal: its session's (a pty made inside, an exec'd
        # process's), else the console unless its session was made inside (setsid).
        cur = getattr(self.kernel, "current", None)
        if cur is not None and self.kernel is not None:
            term = devpts.registry(self.kernel).terminal_of(cur.tg)
        else:
            term = self.terminal
        if term is None:
            raise SyscallError(Errno.ENXIO)
        return term.open(fd, flags | O_NOCTTY)


# Name -> (minor, FileImpl factory) for the memory devices.
MEM_DEVICES: dict[bytes, tuple[int, Callable[[], FileImpl]]] = {
    b"null": (NULL_MINOR, NullImpl),
    b"zero": (ZERO_MINOR, ZeroImpl),
    b"full": (FULL_MINOR, FullImpl),
    b"random": (RANDOM_MINOR, RandomImpl),
    b"urandom": (URANDOM_MINOR, RandomImpl),
}

# Name -> target for the standard symlinks.
DEV_SYMLINKS: dict[bytes, bytes] = {
    b"fd": b"/proc/self/fd",
    b"stdin": b"/proc/self/fd/0",
    b"stdout": b"/proc/self/fd/1",
    b"stderr": b"/proc/self/fd/2",
}


DEV_SIZE = 64 << 20
DEV_INODES = 65536


def new_devfs(kernel: object, memfile: MemoryFile) -> tuple[TmpFS, TmpfsDir]:
    """A new /dev: (filesystem, root directory).  The caller mounts a tmpfs on shm.

    `kernel` gives the Sentry memory account; it is also where /dev/tty and /dev/ptmx
    will find sessions and the devpts instance.
    """
    # Bounded as a container's /dev tmpfs (Docker: size=65536k), and its metadata
    # charged to the Sentry memory account: the application can create files here.
    fs = TmpFS(memfile, DEV_SIZE, DEV_INODES, getattr(kernel, "memory", None))
    root = fs.new_root(0o755)
    for name, (minor, factory) in MEM_DEVICES.items():
        root.add_child(name, CharDevice(fs, MEM_MAJOR, minor, factory))
    root.add_child(b"tty", TtyDevice(fs, kernel))
    for name, target in DEV_SYMLINKS.items():
        root.add_child(name, TmpfsSymlink(fs, target, 0, 0))
    root.add_child(b"shm", TmpfsDir(fs, S_IFDIR | 0o1777, 0, 0))
    # devpts (fsimpl/devpts): /dev/ptmx and /dev/pts/ptmx open new ptys, whose slaves
    # appear in /dev/pts (mode 0666 for both, as runc mounts devpts: ptmxmode=0666).
    pts = TmpfsDir(fs, S_IFDIR | 0o755, 0, 0)
    root.add_child(b"pts", pts)
    root.add_child(b"ptmx", devpts.PtmxDevice(fs, kernel))
    pts.add_child(b"ptmx", devpts.PtmxDevice(fs, kernel))
    if kernel is not None:
        devpts.registry(kernel).pts_dir = pts
    return fs, root
