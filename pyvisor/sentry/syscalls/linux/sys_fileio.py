"""The file-I/O tail: sync, syncfs, fsync, sync_file_range, fadvise64, readahead.
Linux: fs/sync.c, mm/fadvise.c, mm/readahead.c.

The Sentry keeps no dirty page cache of its own beyond what `FileImpl.fsync`
writes back, so the hints (fadvise, readahead) only validate their arguments,
and the range syncs write the whole file back.  What matters to programs is
the order of the checks and the errnos, which follow Linux's.
"""

from __future__ import annotations

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_PATH
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.vfs.file import FileDescription

# From <linux/fadvise.h>.
POSIX_FADV_NORMAL = 0
POSIX_FADV_NOREUSE = 5

# From <linux/fs.h>.
SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4
_SYNC_FILE_RANGE_VALID = (SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE
                          | SYNC_FILE_RANGE_WAIT_AFTER)

_S_IFMT, _S_IFIFO, _S_IFREG, _S_IFDIR, _S_IFLNK, _S_IFBLK = (0o170000, 0o010000, 0o100000,
                                                           0o040000, 0o120000, 0o060000)
_INT64_MAX = (1 << 63) - 1


def fdget(t: Task, fd: int) -> FileDescription:
    """The file at `fd` as Linux's fdget sees it: an O_PATH file is no file (EBADF)."""
    f = t.fd_table.get(fd)
    if f.flags & O_PATH:
        raise SyscallError(Errno.EBADF)
    return f


def _ftype(f: FileDescription) -> int:
    return f.inode.mode & _S_IFMT


def sys_sync(t: Task, r: SyscallArguments) -> int:
    """Implements sync(2): nothing is cached beyond what close and fsync write back."""
    return 0


def sys_syncfs(t: Task, r: SyscallArguments) -> int:
    """Implements syncfs(2)."""
    fdget(t, r.fd(0))
    return 0


def sys_fsync(t: Task, r: SyscallArguments) -> int:
    """Implements fsync(2) and fdatasync(2)."""
    f = fdget(t, r.fd(0))
    f.impl.fsync(f)
    return 0


def sys_sync_file_range(t: Task, r: SyscallArguments) -> int:
    """Implements sync_file_range(2): any range writes the whole file back."""
    f = fdget(t, r.fd(0))
    offset, nbytes, flags = r.int64(1), r.int64(2), r.uint32(3)
    if flags & ~_SYNC_FILE_RANGE_VALID:
        raise SyscallError(Errno.EINVAL)
    end = offset + nbytes
    if end > _INT64_MAX:
        end -= 1 << 64                   # loff_t arithmetic wraps
    if offset < 0 or end < 0 or end < offset:
        raise SyscallError(Errno.EINVAL)
    if _ftype(f) not in (_S_IFREG, _S_IFDIR, _S_IFLNK, _S_IFBLK):
        raise SyscallError(Errno.ESPIPE)
    if flags & SYNC_FILE_RANGE_WRITE:
        f.impl.fsync(f)
    return 0


def _fadvise(f: FileDescription, length: int, advice: int) -> None:
    """Linux: generic_fadvise's checks; the advice itself changes nothing here."""
    if _ftype(f) == _S_IFIFO:
        raise SyscallError(Errno.ESPIPE)
    if length < 0 or not POSIX_FADV_NORMAL <= advice <= POSIX_FADV_NOREUSE:
        raise SyscallError(Errno.EINVAL)


def sys_fadvise64(t: Task, r: SyscallArguments) -> int:
    """Implements fadvise64(2): the offset may be negative; the length may not."""
    f = fdget(t, r.fd(0))
    _fadvise(f, r.int64(2), r.int32(3))
    return 0


def sys_readahead(t: Task, r: SyscallArguments) -> int:
    """Implements readahead(2): readable regular files (and block devices) only."""
    f = fdget(t, r.fd(0))
    if not f.readable:
        raise SyscallError(Errno.EBADF)
    if _ftype(f) not in (_S_IFREG, _S_IFBLK):
        raise SyscallError(Errno.EINVAL)
    _fadvise(f, r.int64(2), 3)           # POSIX_FADV_WILLNEED
    return 0
