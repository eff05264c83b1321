"""The file-I/O tail: sync, syncfs, fsync, sync_file_range, fadvise64, readahead,
fallocate and the size checks truncate shares with it.
Linux: fs/sync.c, mm/fadvise.c, mm/readahead.c, fs/open.c (vfs_fallocate), fs/attr.c.

The Sentry keeps no dirty page cache of its own beyond what `FileImpl.fsync`
writes back, so the hints (fadvise, readahead) only validate their arguments,
and the range syncs write the whole file back.  What matters to programs is
the order of the checks and the errnos, which follow Linux's.
"""

from __future__ import annotations

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_PATH
from pyvisor.abi.linux.signal import Signal
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.kernel.task import RLIM_INFINITY, RLIMIT_FSIZE, Task
from pyvisor.sentry.vfs import inotify
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


# From <linux/falloc.h>.
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_FL_SUPPORTED_MASK = 0x7F
MAX_LFS_FILESIZE = _INT64_MAX            # every filesystem's s_maxbytes here


def new_size_ok(t: Task, size: int) -> None:
    """A regular file may grow to `size`: past RLIMIT_FSIZE is SIGXFSZ and EFBIG, past
    s_maxbytes EFBIG alone.  Linux: inode_newsize_ok."""
    limit = t.tg.rlimits[RLIMIT_FSIZE][0]
    if limit != RLIM_INFINITY and size > limit:
        ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGXFSZ, 0, pid=t.tg.tgid,
                                                uid=t.creds.uid))
        raise SyscallError(Errno.EFBIG)
    if size > MAX_LFS_FILESIZE:
        raise SyscallError(Errno.EFBIG)


def sys_fallocate(t: Task, r: SyscallArguments) -> int:
    """Implements fallocate(2), with the checks of vfs_fallocate in its order.  Files
    are sparse in memory here, so allocating changes only the size: mode 0 extends
    the file, FALLOC_FL_KEEP_SIZE alone does nothing more; hole punching and the
    range operations are not supported (EOPNOTSUPP, as a filesystem without them)."""
    f = t.fd_table.get(r.fd(0))
    mode, off, ln = r.int32(1), r.int64(2), r.int64(3)
    if off < 0 or ln <= 0:
        raise SyscallError(Errno.EINVAL)
    if mode & ~FALLOC_FL_SUPPORTED_MASK:
        raise SyscallError(Errno.EOPNOTSUPP)
    if mode & FALLOC_FL_PUNCH_HOLE and mode & FALLOC_FL_ZERO_RANGE:
        raise SyscallError(Errno.EOPNOTSUPP)
    if mode & FALLOC_FL_PUNCH_HOLE and not mode & FALLOC_FL_KEEP_SIZE:
        raise SyscallError(Errno.EOPNOTSUPP)
    if mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE) and \
            mode & ~(FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE):
        raise SyscallError(Errno.EINVAL)
    if f.flags & O_PATH or not f.writable:
        raise SyscallError(Errno.EBADF)
    if mode & ~FALLOC_FL_KEEP_SIZE and f.append:
        raise SyscallError(Errno.EPERM)
    ftype = _ftype(f)
    if ftype == _S_IFIFO:
        raise SyscallError(Errno.ESPIPE)
    if ftype == _S_IFDIR:
        raise SyscallError(Errno.EISDIR)
    if ftype not in (_S_IFREG, _S_IFBLK):
        raise SyscallError(Errno.ENODEV)
    end = off + ln
    if end > MAX_LFS_FILESIZE:
        raise SyscallError(Errno.EFBIG)
    if mode & ~FALLOC_FL_KEEP_SIZE:
        raise SyscallError(Errno.EOPNOTSUPP)
    if not mode:
        if f.inode.size() < end:
            new_size_ok(t, end)
        allocate = getattr(f.inode, "allocate", None)
        if allocate is not None:
            allocate(off, ln)              # tmpfs: the pages are charged (ENOSPC)
        elif f.inode.size() < end:
            f.inode.setattr(size=end)
        if inotify._watches:
            inotify.file_event(f, inotify.IN_MODIFY)
    return 0
