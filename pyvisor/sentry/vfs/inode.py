"""Inodes: the filesystem-independent face of a file.  Linux: struct inode + inode_operations.

Every filesystem (tmpfs, gofer, overlay, proc, dev, pipe, ...) subclasses
`Inode` and overrides what it supports; the defaults give the errno Linux
gives for an operation a file type does not support.  Path-level concerns
(dentries, mounts, symlink following, permission checks) live in vfs.py and
resolve.py, so filesystems only answer "this directory, this name".

Errors: methods raise SyscallError(errno).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.stat import (S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, STAT, STATFS, STATX,
                                    STATX_BASIC_STATS, TMPFS_MAGIC)
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.mm.memfile import Mappable
    from pyvisor.sentry.vfs.xattr import XattrStore
    from pyvisor.sentry.vfs.file import FileDescription, FileImpl

_ino_counter = itertools.count(1)


def next_ino() -> int:
    """A sandbox-unique inode number for synthetic filesystems."""
    return next(_ino_counter)


def now_ns() -> int:
    return time.time_ns()


@dataclass(slots=True)
class DirEntry:
    """One readdir result."""

    name: bytes
    ino: int
    dtype: int


class Filesystem:
    """A mounted filesystem instance.  Linux: struct super_block."""

    name = "none"
    magic = TMPFS_MAGIC
    dev = 0
    cache_dentries = True    # False: every lookup asks the filesystem (procfs)

    def __init__(self) -> None:
        self.dev = Filesystem._next_dev()
        self.readonly = False

    _dev_counter = itertools.count(0x10)

    @staticmethod
    def _next_dev() -> int:
        return next(Filesystem._dev_counter)

    def statfs(self) -> bytes:
        """struct statfs for this filesystem."""
        return STATFS.pack(self.magic, 4096, 1 << 20, 1 << 19, 1 << 19, 1 << 20, 1 << 19,
                           0, 0, 255, 4096, 0)


class Inode:
    """Base inode.  Subclasses override what their file type supports.

    Fields are owned by the filesystem; `mode` includes the S_IFMT type bits.
    """

    __slots__ = ("fs", "ino", "mode", "uid", "gid", "nlink", "atime_ns", "mtime_ns",
                 "ctime_ns", "rdev", "lock_ctx", "__weakref__")

    def __init__(self, fs: Filesystem, mode: int, uid: int = 0, gid: int = 0,
                 ino: int | None = None) -> None:
        self.fs = fs
        self.ino = ino if ino is not None else next_ino()
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.nlink = 2 if mode & S_IFMT == S_IFDIR else 1
        t = now_ns()
        self.atime_ns = self.mtime_ns = self.ctime_ns = t
        self.rdev = 0
        self.lock_ctx: Any = None      # kernel/locks.LockContext, made on first lock

    # -- attributes ------------------------------------------------------------------

    @property
    def ftype(self) -> int:
        return self.mode & S_IFMT

    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR

    def is_symlink(self) -> bool:
        return self.mode & S_IFMT == S_IFLNK

    def is_regular(self) -> bool:
        return self.mode & S_IFMT == S_IFREG

    def size(self) -> int:
        return 0

    def blocks(self) -> int:
        return (self.size() + 511) // 512

    def refresh(self) -> None:
        """Re-reads cached attributes from a remote source (gofer); no-op elsewhere."""

    def xattr_store(self, create: bool) -> XattrStore | None:
        """The inode's extended attributes (vfs/xattr.py), None where the filesystem
        keeps none.  `create`: the caller is about to change them."""
        return None

    def stat_bytes(self) -> bytes:
        """struct stat for this inode."""
        self.refresh()
        a, m, c = self.atime_ns, self.mtime_ns, self.ctime_ns
        return STAT.pack(self.fs.dev, self.ino, self.nlink, self.mode, self.uid, self.gid, 0,
                         self.rdev, self.size(), 4096, self.blocks(),
                         a // 10**9, a % 10**9, m // 10**9, m % 10**9, c // 10**9, c % 10**9)

    def statx_bytes(self) -> bytes:
        """struct statx for this inode (basic stats)."""
        self.refresh()
        a, m, c = self.atime_ns, self.mtime_ns, self.ctime_ns
        return STATX.pack(STATX_BASIC_STATS, 4096, 0, self.nlink, self.uid, self.gid,
                          self.mode, self.ino, self.size(), self.blocks(), 0,
                          a // 10**9, a % 10**9, 0, c // 10**9, c % 10**9, 0,
                          c // 10**9, c % 10**9, 0, m // 10**9, m % 10**9, 0,
                          self.rdev >> 8, self.rdev & 0xFF, self.fs.dev >> 8, self.fs.dev & 0xFF,
                          0)

    def setattr(self, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None,
                atime_ns: int | None = None, mtime_ns: int | None = None) -> None:
        """chmod/chown/truncate/utimes.  Subclasses with data override `truncate`."""
        if self.fs.readonly:
            raise SyscallError(Errno.EROFS)
        if size is not None:
            self.truncate(size)
        if mode is not None:
            self.mode = (self.mode & S_IFMT) | (mode & 0o7777)
        if uid is not None and uid != 0xFFFFFFFF:
            self.uid = uid
        if gid is not None and gid != 0xFFFFFFFF:
            self.gid = gid
        if atime_ns is not None:
            self.atime_ns = atime_ns
        if mtime_ns is not None:
            self.mtime_ns = mtime_ns
        self.ctime_ns = now_ns()

    def truncate(self, size: int) -> None:
        if self.is_dir():
            raise SyscallError(Errno.EISDIR)
        raise SyscallError(Errno.EINVAL)

    # -- directories -----------------------------------------------------------------

    def lookup(self, name: bytes) -> Inode:
        """The child called `name` (never '.' or '..'); ENOENT if absent."""
        raise SyscallError(Errno.ENOTDIR)

    def readdir(self) -> Iterable[DirEntry]:
        """All children except '.' and '..'."""
        raise SyscallError(Errno.ENOTDIR)

    def dirent_records(self) -> tuple[bytes, list[int]]:
        """readdir() as linux_dirent64 records (vfs/dirent.py), children only, the
        first with d_off FIRST_CHILD_OFF.  A filesystem that knows when its
        directory changes may cache this (tmpfs does)."""
        from pyvisor.sentry.vfs.dirent import FIRST_CHILD_OFF, pack_dirents
        return pack_dirents(((e.name, e.ino, e.dtype) for e in self.readdir()),
                            FIRST_CHILD_OFF)

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        """Creates a regular file (O_CREAT)."""
        raise SyscallError(Errno.ENOTDIR if not self.is_dir() else Errno.EPERM)

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        raise SyscallError(Errno.ENOTDIR if not self.is_dir() else Errno.EPERM)

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Inode:
        raise SyscallError(Errno.EPERM)

    def tmpfile(self, mode: int, uid: int, gid: int) -> Inode:
        """A regular file with no name in this directory (O_TMPFILE): link count 0."""
        raise SyscallError(Errno.ENOTDIR if not self.is_dir() else Errno.EOPNOTSUPP)

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> Inode:
        raise SyscallError(Errno.ENOTDIR if not self.is_dir() else Errno.EPERM)

    def link(self, name: bytes, target: Inode) -> None:
        raise SyscallError(Errno.EPERM)

    def unlink(self, name: bytes) -> None:
        raise SyscallError(Errno.ENOTDIR if not self.is_dir() else Errno.EPERM)

    def rmdir(self, name: bytes) -> None:
        raise SyscallError(Errno.ENOTDIR if not self.is_dir() else Errno.EPERM)

    def rename(self, old: bytes, newdir: Inode, new: bytes) -> None:
        """Moves child `old` to `newdir`/`new`, replacing a compatible target."""
        raise SyscallError(Errno.EXDEV)

    def exchange(self, old: bytes, newdir: Inode, new: bytes) -> None:
        """Swaps child `old` with `newdir`/`new`, both existing (RENAME_EXCHANGE).
        Filesystems that cannot: EINVAL, as Linux's for an unsupported flag."""
        raise SyscallError(Errno.EINVAL)

    def rename_whiteout(self, old: bytes, newdir: Inode, new: bytes) -> None:
        """rename, leaving a whiteout (a 0:0 character device) at `old`
        (RENAME_WHITEOUT).  Filesystems that cannot: EINVAL."""
        raise SyscallError(Errno.EINVAL)

    # -- symlinks ----------------------------------------------------------------------

    def readlink(self) -> bytes:
        raise SyscallError(Errno.EINVAL)

    def magic_link(self, t: object) -> object | None:
        """For procfs magic links (/proc/self/exe, fd/N): a (mount, dentry) to jump to."""
        return None

    # -- files -------------------------------------------------------------------------

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        """The implementation of a new open file description on this inode."""
        raise SyscallError(Errno.ENXIO)

    def mappable(self) -> Mappable | None:
        """Memory-file-backed pages of this file, for mmap; None if not mappable."""
        return None
