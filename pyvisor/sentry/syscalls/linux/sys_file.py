"""File syscalls: open, close, dup, fcntl, ioctl, stat, directories, links, attributes.

Linux: fs/open.c, fs/namei.c, fs/stat.c, fs/fcntl.c, fs/ioctl.c, fs/readdir.c.
"""

from __future__ import annotations

import bisect
import struct
import time
from typing import Any

from pyvisor.abi.linux.capability import (CAP_CHOWN, CAP_FSETID, CAP_MKNOD,
                                          CAP_SYS_CHROOT)
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import (AT_EACCESS, AT_EMPTY_PATH, AT_FDCWD, AT_REMOVEDIR,
                                     AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW, F_ADD_SEALS,
                                     F_DUPFD, F_DUPFD_CLOEXEC, F_GET_SEALS, F_GETFD, F_GETFL,
                                     F_GETLK, F_GETOWN, F_GETOWN_EX, F_GETPIPE_SZ, F_GETSIG,
                                     F_OFD_GETLK, F_OFD_SETLK,
                                     F_OFD_SETLKW, F_SETFD, F_SETFL, F_SETLK, F_SETLKW,
                                     F_SETOWN, F_SETOWN_EX, F_SETPIPE_SZ, F_SETSIG, FD_CLOEXEC,
                                     MFD_ALLOW_SEALING, MFD_CLOEXEC, MFD_HUGETLB, O_ASYNC,
                                     O_CLOEXEC, O_CREAT, O_NOFOLLOW, O_PATH,
                                     O_TRUNC, O_WRONLY, RENAME_EXCHANGE, RENAME_NOREPLACE,
                                     RENAME_WHITEOUT, O_DIRECTORY, O_TMPFILE, O_VALID,
                                     RESOLVE_BENEATH, RESOLVE_CACHED, RESOLVE_IN_ROOT,
                                     SETFL_MASK)
from pyvisor.abi.linux.stat import S_IFBLK, S_IFCHR, S_IFDIR, S_IFMT, S_IFREG, S_ISGID, STATFS, STATX
from pyvisor.sentry.arch.syscall_args import SyscallArguments, c_int
from pyvisor.sentry.kernel import fasync, locks
from pyvisor.sentry.security import landlock
from pyvisor.sentry.fsimpl.tmpfs import seals
from pyvisor.sentry.kernel.pipe import fifo_wait, pipe_set_size
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.syscalls.linux.usertime import (copy_in_utimes, decode_utimens,
                                                   utimens_omit_both)
from pyvisor.sentry.vfs import acl, inotify
from pyvisor.sentry.vfs import textbusy
from pyvisor.sentry.vfs import ops
from pyvisor.sentry.vfs.atime import touch_atime
from pyvisor.sentry.vfs.sticky import check_sticky
from pyvisor.sentry.vfs.file import DirectoryImpl, FileDescription
from pyvisor.sentry.vfs.perms import MAY_WRITE, check_access, may_access, owner_or_capable
from pyvisor.sentry.vfs.vfs import PATH_MAX, Location, path_of

FIONCLEX, FIOCLEX, FIONBIO, FIOASYNC, FIONREAD = 0x5450, 0x5451, 0x5421, 0x5452, 0x541B
FIOSETOWN, SIOCSPGRP, FIOGETOWN, SIOCGPGRP = 0x8901, 0x8902, 0x8903, 0x8904
_F_OWNER_EX = struct.Struct("<ii")              # struct f_owner_ex


def _path(t: Task, addr: int) -> bytes:
    return t.copy_in_str(addr, PATH_MAX)


# -- open and close -------------------------------------------------------------------------


async def _do_open(t: Task, dirfd: int, path: bytes, flags: int, mode: int,
                   resolve: int = 0) -> int:
    if flags & ~0o37777777:
        raise SyscallError(Errno.EINVAL)
    if flags & O_CREAT and flags & O_DIRECTORY and flags & O_TMPFILE != O_TMPFILE:
        raise SyscallError(Errno.EINVAL)     # Linux 6.4+: no regular file from O_DIRECTORY
    f = ops.open_at(t, dirfd, path, flags, mode, resolve)
    if flags & O_PATH:
        f.flags = flags & (O_PATH | O_DIRECTORY | O_NOFOLLOW)     # the rest is ignored
    else:
        # O_LARGEFILE: forced on 64-bit (Linux: force_o_largefile), so F_GETFL shows it.
        f.flags = flags & ~(O_CREAT | O_TRUNC | O_CLOEXEC | 0o200 | 0o400) | 0o100000
    if getattr(f.impl, "fifo", False):
        try:
            await fifo_wait(t, f)
        except BaseException:
            f.decref()
            raise
    try:
        return t.fd_table.install(f, cloexec=bool(flags & O_CLOEXEC))
    except SyscallError:
        f.decref()
        raise


async def sys_openat(t: Task, r: SyscallArguments) -> int:
    """Implements openat(2)."""
    return await _do_open(t, r.int32(0), _path(t, r.pointer(1)), r.int32(2), r.uint32(3))


async def sys_open(t: Task, r: SyscallArguments) -> int:
    """Implements open(2)."""
    return await _do_open(t, AT_FDCWD, _path(t, r.pointer(0)), r.int32(1), r.uint32(2))


async def sys_creat(t: Task, r: SyscallArguments) -> int:
    return await _do_open(t, AT_FDCWD, _path(t, r.pointer(0)), O_CREAT | O_WRONLY | O_TRUNC,
                    r.uint32(1))


OPEN_HOW_SIZE_VER0 = 24                 # struct open_how: flags, mode, resolve (u64 each)
RESOLVE_ALL = 0x3F


async def sys_openat2(t: Task, r: SyscallArguments) -> int:
    """Implements openat2(2): struct open_how, checked as Linux's build_open_flags
    does, and the RESOLVE_* flags (vfs.Resolver)."""
    dirfd, path_addr, how, size = r.int32(0), r.pointer(1), r.pointer(2), r.uint64(3)
    if size < OPEN_HOW_SIZE_VER0:
        raise SyscallError(Errno.EINVAL)
    if size > 4096:
        raise SyscallError(Errno.E2BIG)
    raw = t.copy_in(how, size)
    if any(raw[OPEN_HOW_SIZE_VER0:]):
        raise SyscallError(Errno.E2BIG)      # copy_struct_from_user: unknown fields set
    flags, mode, resolve = struct.unpack_from("<QQQ", raw)
    if flags & ~O_VALID or resolve & ~RESOLVE_ALL:
        raise SyscallError(Errno.EINVAL)
    if resolve & RESOLVE_BENEATH and resolve & RESOLVE_IN_ROOT:
        raise SyscallError(Errno.EINVAL)
    if flags & O_CREAT or flags & O_TMPFILE == O_TMPFILE:
        if mode & ~0o7777:
            raise SyscallError(Errno.EINVAL)
    elif mode:
        raise SyscallError(Errno.EINVAL)
    if flags & O_CREAT and flags & O_DIRECTORY:
        raise SyscallError(Errno.EINVAL)
    if resolve & RESOLVE_CACHED and (flags & (O_TRUNC | O_CREAT) or
                                     flags & O_TMPFILE == O_TMPFILE):
        raise SyscallError(Errno.EAGAIN)
    return await _do_open(t, dirfd, _path(t, path_addr), flags, mode, resolve)


async def sys_close(t: Task, r: SyscallArguments) -> int:
    """Implements close(2).  Closing the last reference to a TCP socket with SO_LINGER
    {1, N} waits (up to N s) for its data to be acknowledged (inet_release's timeout)."""
    f = t.fd_table.remove(r.int32(0))
    if f.refs == 0:
        close_wait = getattr(f.impl, "close_wait", None)
        if close_wait is not None:
            await close_wait(t)
    return 0


def sys_close_range(t: Task, r: SyscallArguments) -> int:
    """Implements close_range(2)."""
    lo, hi, flags = r.uint32(0), r.uint32(1), r.uint32(2)
    if lo > hi or flags & ~0x6:
        raise SyscallError(Errno.EINVAL)
    for fd in [fd for fd in t.fd_table.files if lo <= fd <= hi]:
        if flags & 4:   # CLOSE_RANGE_CLOEXEC
            t.fd_table.set_cloexec(fd, True)
        else:
            t.fd_table.remove(fd)
    return 0


def sys_dup(t: Task, r: SyscallArguments) -> int:
    """Implements dup(2)."""
    f = t.fd_table.get(r.fd(0))
    f.incref()
    try:
        return t.fd_table.install(f)
    except SyscallError:
        f.decref()
        raise


def _dup3(t: Task, old: int, new: int, flags: int) -> int:
    f = t.fd_table.get(old)
    if new < 0:
        raise SyscallError(Errno.EBADF)
    if new >= t.fd_table.limit:
        raise SyscallError(Errno.EBADF)
    f.incref()
    t.fd_table.install_at(new, f, cloexec=bool(flags & O_CLOEXEC))
    return new


def sys_dup2(t: Task, r: SyscallArguments) -> int:
    """Implements dup2(2)."""
    old, new = r.int32(0), r.int32(1)
    if old == new:
        t.fd_table.get(old)
        return new
    return _dup3(t, old, new, 0)


def sys_dup3(t: Task, r: SyscallArguments) -> int:
    """Implements dup3(2)."""
    old, new, flags = r.int32(0), r.int32(1), r.int32(2)
    if flags & ~O_CLOEXEC or old == new:
        raise SyscallError(Errno.EINVAL)
    return _dup3(t, old, new, flags)


LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8
_FLOCK = struct.Struct("<hh4xqqi4x")     # struct flock on amd64


def _lock_range(f: FileDescription, whence: int, start: int, length: int) -> tuple[int, int]:
    """[start, end] of a struct flock (flock_to_posix_lock)."""
    if whence == 0:
        base = 0
    elif whence == 1:
        base = f.offset
    elif whence == 2:
        base = f.impl.size(f)
    else:
        raise SyscallError(Errno.EINVAL)
    start += base
    if start < 0:
        raise SyscallError(Errno.EINVAL)
    if length > 0:
        if length - 1 > locks.OFFSET_MAX - start:
            raise SyscallError(Errno.EOVERFLOW)
        return start, start + length - 1
    if length < 0:
        end = start - 1
        start += length
        if start < 0:
            raise SyscallError(Errno.EINVAL)
        return start, end
    return start, locks.OFFSET_MAX


async def _fcntl_lock(t: Task, f: FileDescription, cmd: int, arg: int) -> int:
    """F_GETLK/F_SETLK/F_SETLKW and the OFD forms (kernel/locks.py)."""
    if f.flags & O_PATH:
        raise SyscallError(Errno.EBADF)
    ltype, whence, start, length, pid = _FLOCK.unpack(t.copy_in(arg, _FLOCK.size))
    ofd = cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
    if ofd and pid != 0:
        raise SyscallError(Errno.EINVAL)
    if ltype not in (locks.F_RDLCK, locks.F_WRLCK, locks.F_UNLCK):
        raise SyscallError(Errno.EINVAL)
    lo, hi = _lock_range(f, whence, start, length)
    owner = f if ofd else t.fd_table
    if cmd in (F_GETLK, F_OFD_GETLK):
        if ltype == locks.F_UNLCK:
            raise SyscallError(Errno.EINVAL)
        lk = locks.test_lock(f.inode, owner, ltype, lo, hi)
        if lk is None:
            out = _FLOCK.pack(locks.F_UNLCK, whence, start, length, pid)
        else:
            ln = 0 if lk.end == locks.OFFSET_MAX else lk.end - lk.start + 1
            out = _FLOCK.pack(lk.ltype, 0, lk.start, ln, lk.pid)
        t.copy_out(arg, out)
        return 0
    if ltype == locks.F_RDLCK and not f.readable or ltype == locks.F_WRLCK and not f.writable:
        raise SyscallError(Errno.EBADF)
    await locks.set_lock(t, f.inode, owner, ltype, lo, hi,
                         cmd in (F_SETLKW, F_OFD_SETLKW), ofd)
    return 0


async def sys_flock(t: Task, r: SyscallArguments) -> int:
    """Implements flock(2)."""
    f = t.fd_table.get(r.fd(0))
    op = r.int32(1)
    if f.flags & O_PATH:
        raise SyscallError(Errno.EBADF)
    kind = op & ~LOCK_NB
    ltype = {LOCK_SH: locks.F_RDLCK, LOCK_EX: locks.F_WRLCK, LOCK_UN: locks.F_UNLCK}.get(kind)
    if ltype is None:
        raise SyscallError(Errno.EINVAL)
    f.incref()
    try:
        await locks.flock(t, f, ltype, bool(op & LOCK_NB))
    finally:
        f.decref()
    return 0


async def sys_fcntl(t: Task, r: SyscallArguments) -> int:
    """Implements fcntl(2)."""
    fd, cmd, arg = r.int32(0), r.int32(1), r.uint64(2)
    f = t.fd_table.get(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        start = arg & 0xFFFFFFFF
        if start >= t.fd_table.limit:
            raise SyscallError(Errno.EINVAL)
        f.incref()
        try:
            return t.fd_table.install(f, cloexec=cmd == F_DUPFD_CLOEXEC, start=start)
        except SyscallError:
            f.decref()
            raise
    if cmd == F_GETFD:
        return FD_CLOEXEC if t.fd_table.get_cloexec(fd) else 0
    if cmd == F_SETFD:
        t.fd_table.set_cloexec(fd, bool(arg & FD_CLOEXEC))
        return 0
    if cmd == F_GETFL:
        return f.flags
    if cmd == F_SETFL:
        if f.flags & O_PATH:
            raise SyscallError(Errno.EBADF)        # check_fcntl_cmd
        # O_ASYNC changes only where the file has a fasync hook, which sets it (setfl).
        mask = SETFL_MASK & ~O_ASYNC
        if (arg ^ f.flags) & O_ASYNC and f.impl.fasync:
            fasync.set_async(t, f, fd, bool(arg & O_ASYNC))
            mask |= O_ASYNC
        f.flags = (f.flags & ~mask) | (arg & mask)
        return 0
    if cmd in (F_GETLK, F_OFD_GETLK, F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW):
        f.incref()
        try:
            return await _fcntl_lock(t, f, cmd, arg)
        finally:
            f.decref()
    if cmd in (F_GETOWN, F_SETOWN, F_GETOWN_EX, F_SETOWN_EX, F_GETSIG, F_SETSIG):
        if f.flags & O_PATH:
            raise SyscallError(Errno.EBADF)        # check_fcntl_cmd
        return _fcntl_owner(t, f, cmd, arg)
    if cmd == F_GETPIPE_SZ:
        pipe = getattr(f.impl, "pipe", None)
        if pipe is None:
            raise SyscallError(Errno.EBADF)
        return pipe.capacity
    if cmd == F_SETPIPE_SZ:
        pipe = getattr(f.impl, "pipe", None)
        if pipe is None:
            raise SyscallError(Errno.EBADF)
        return pipe_set_size(t, pipe, arg & 0xFFFFFFFF)    # pipe_fcntl's unsigned int
    if cmd == F_GET_SEALS:
        return seals.get_seals(f.inode)
    if cmd == F_ADD_SEALS:
        return seals.add_seals(t, f, arg & 0xFFFFFFFF)
    raise SyscallError(Errno.EINVAL)


def _fcntl_owner(t: Task, f: FileDescription, cmd: int, arg: int) -> int:
    """F_{GET,SET}OWN[_EX] and F_{GET,SET}SIG (kernel/fasync.py)."""
    if cmd == F_SETOWN:
        fasync.f_setown(t, f, c_int(arg))
        return 0
    if cmd == F_GETOWN:
        return fasync.f_getown(t, f)
    if cmd == F_SETOWN_EX:
        kind, pid = _F_OWNER_EX.unpack(t.copy_in(arg, _F_OWNER_EX.size))
        fasync.f_setown_ex(t, f, kind, pid)
        return 0
    if cmd == F_GETOWN_EX:
        t.copy_out(arg, _F_OWNER_EX.pack(*fasync.f_getown_ex(t, f)))
        return 0
    if cmd == F_SETSIG:
        fasync.f_setsig(f, arg)
        return 0
    return fasync.f_getsig(f)


def _ioctl_async(t: Task, fd: int, f: FileDescription, cmd: int, arg: int) -> int:
    """FIOASYNC (ioctl_fioasync) and, on sockets, FIOSETOWN/SIOCSPGRP and
    FIOGETOWN/SIOCGPGRP (sock_ioctl)."""
    if cmd == FIOASYNC:
        (on,) = struct.unpack("<i", t.copy_in(arg, 4))
        if bool(on) != bool(f.flags & O_ASYNC):
            if not f.impl.fasync:
                raise SyscallError(Errno.ENOTTY)
            fasync.set_async(t, f, fd, bool(on))
            f.flags ^= O_ASYNC
        return 0
    if not _is_socket(f):
        raise SyscallError(Errno.ENOTTY)
    if cmd in (FIOSETOWN, SIOCSPGRP):
        (who,) = struct.unpack("<i", t.copy_in(arg, 4))
        fasync.f_setown(t, f, who)
        return 0
    t.copy_out(arg, struct.pack("<i", fasync.f_getown(t, f)))
    return 0


def _is_socket(f: FileDescription) -> bool:
    from pyvisor.sentry.socket.common import Socket
    return isinstance(f.impl, Socket)


def sys_ioctl(t: Task, r: SyscallArguments) -> int:
    """Implements ioctl(2): generic requests here, the rest by the file."""
    fd, cmd, arg = r.int32(0), r.uint32(1), r.pointer(2)
    f = t.fd_table.get(fd)
    if f.flags & O_PATH:
        raise SyscallError(Errno.EBADF)        # ioctl takes no O_PATH file (fdget)
    if cmd == FIOCLEX:
        t.fd_table.set_cloexec(fd, True)
        return 0
    if cmd == FIONCLEX:
        t.fd_table.set_cloexec(fd, False)
        return 0
    if cmd == FIONBIO:
        (v,) = struct.unpack("<i", t.copy_in(arg, 4))
        f.flags = f.flags | 0o4000 if v else f.flags & ~0o4000
        return 0
    if cmd in (FIOASYNC, FIOSETOWN, SIOCSPGRP, FIOGETOWN, SIOCGPGRP):
        return _ioctl_async(t, fd, f, cmd, arg)
    if cmd == FIONREAD and f.inode.is_regular():
        # An int, as ioctl_fionread's put_user: truncated, negative past the end.
        t.copy_out(arg, struct.pack("<i", c_int(f.inode.size() - f.offset)))
        return 0
    landlock.check_ioctl(f)                    # a device opened without IOCTL_DEV
    return f.impl.ioctl(f, t, cmd, arg)


# -- stat ----------------------------------------------------------------------------------


def _stat_loc(t: Task, dirfd: int, path: bytes, flags: int) -> Location:
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | 0x800 | 0x6000):
        raise SyscallError(Errno.EINVAL)
    return ops.lookup_at(t, dirfd, path, follow=not flags & AT_SYMLINK_NOFOLLOW,
                         empty_path=bool(flags & AT_EMPTY_PATH))


def sys_stat(t: Task, r: SyscallArguments) -> int:
    loc = ops.lookup_at(t, AT_FDCWD, _path(t, r.pointer(0)), True)
    t.copy_out(r.pointer(1), loc.inode.stat_bytes())
    return 0


def sys_lstat(t: Task, r: SyscallArguments) -> int:
    loc = ops.lookup_at(t, AT_FDCWD, _path(t, r.pointer(0)), False)
    t.copy_out(r.pointer(1), loc.inode.stat_bytes())
    return 0


def sys_fstat(t: Task, r: SyscallArguments) -> int:
    """Implements fstat(2)."""
    f = t.fd_table.get(r.fd(0))
    t.copy_out(r.pointer(1), f.inode.stat_bytes())
    return 0


def sys_newfstatat(t: Task, r: SyscallArguments) -> int:
    """Implements newfstatat(2)."""
    dirfd, addr, buf, flags = r.int32(0), r.pointer(1), r.pointer(2), r.int32(3)
    path = _path(t, addr) if addr or not flags & AT_EMPTY_PATH else b""
    loc = _stat_loc(t, dirfd, path, flags)
    t.copy_out(buf, loc.inode.stat_bytes())
    return 0


def sys_statx(t: Task, r: SyscallArguments) -> int:
    """Implements statx(2): the basic stats (no btime)."""
    dirfd, addr, flags, mask, buf = (r.int32(0), r.pointer(1), r.int32(2), r.uint32(3),
                                     r.pointer(4))
    # AT_STATX_FORCE_SYNC with AT_STATX_DONT_SYNC, or STATX__RESERVED: EINVAL.
    if flags & 0x6000 == 0x6000 or mask & 0x80000000:
        raise SyscallError(Errno.EINVAL)
    path = _path(t, addr) if addr else b""
    loc = _stat_loc(t, dirfd, path, flags)
    data = bytearray(loc.inode.statx_bytes())
    assert len(data) == STATX.size
    if loc.mount.id:                # STATX_MNT_ID: stx_mnt_id, as mountinfo numbers it
        struct.pack_into("<I", data, 0, struct.unpack_from("<I", data, 0)[0] | 0x1000)
        struct.pack_into("<Q", data, 0x90, loc.mount.id)
    t.copy_out(buf, bytes(data))
    return 0


ST_RDONLY, ST_NOSUID, ST_NODEV, ST_NOEXEC, ST_VALID = 1, 2, 4, 8, 0x20
ST_NOATIME, ST_NODIRATIME, ST_RELATIME = 0x400, 0x800, 0x1000


def _statfs(where: Any) -> bytes:
    """struct statfs with f_flags from the mount as well as the filesystem (Linux:
    calculate_f_flags: ST_VALID, the mount's flags, the superblock's read-only)."""
    fields = list(STATFS.unpack(where.inode.fs.statfs()))
    m = where.mount
    opts = str(m.options).split(",")
    flags = ST_VALID | fields[11]
    if m.flags_readonly or where.inode.fs.readonly or opts[0] == "ro":
        flags |= ST_RDONLY
    for name, bit in (("nosuid", ST_NOSUID), ("nodev", ST_NODEV), ("noexec", ST_NOEXEC),
                      ("nodiratime", ST_NODIRATIME)):
        if name in opts:
            flags |= bit
    if "noatime" in opts:
        flags |= ST_NOATIME
    elif "strictatime" not in opts:
        flags |= ST_RELATIME
    fields[11] = flags
    return STATFS.pack(*fields)


def sys_statfs(t: Task, r: SyscallArguments) -> int:
    loc = ops.lookup_at(t, AT_FDCWD, _path(t, r.pointer(0)), True)
    t.copy_out(r.pointer(1), _statfs(loc))
    return 0


def sys_fstatfs(t: Task, r: SyscallArguments) -> int:
    f = t.fd_table.get(r.fd(0))
    t.copy_out(r.pointer(1), _statfs(f))
    return 0


def _access(t: Task, dirfd: int, path: bytes, mode: int, flags: int) -> int:
    if mode & ~7 or flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(Errno.EINVAL)
    loc = ops.lookup_at(t, dirfd, path, follow=not flags & AT_SYMLINK_NOFOLLOW,
                        empty_path=bool(flags & AT_EMPTY_PATH))
    inode = loc.inode
    if mode & 2 and inode.fs.readonly and not inode.is_dir() and \
            inode.mode & S_IFMT in (S_IFREG, S_IFDIR):
        raise SyscallError(Errno.EROFS)
    if mode & 2 and loc.mount.flags_readonly and inode.mode & S_IFMT in (S_IFREG, S_IFDIR):
        raise SyscallError(Errno.EROFS)
    if mode and not may_access(t, inode, mode):
        raise SyscallError(Errno.EACCES)
    return 0


def sys_access(t: Task, r: SyscallArguments) -> int:
    """Implements access(2)."""
    return _access(t, AT_FDCWD, _path(t, r.pointer(0)), r.int32(1), 0)


def sys_faccessat(t: Task, r: SyscallArguments) -> int:
    return _access(t, r.int32(0), _path(t, r.pointer(1)), r.int32(2), 0)


def sys_faccessat2(t: Task, r: SyscallArguments) -> int:
    return _access(t, r.int32(0), _path(t, r.pointer(1)), r.int32(2), r.int32(3))


# -- directories ---------------------------------------------------------------------------


def sys_getdents64(t: Task, r: SyscallArguments) -> int:
    """Implements getdents64(2): the whole records from the file offset on that fit."""
    return _getdents(t, r, False)


def sys_getdents(t: Task, r: SyscallArguments) -> int:
    """Implements getdents(2): struct linux_dirent, d_type in the record's last byte."""
    return _getdents(t, r, True)


def _old_dirents(image: bytes) -> bytes:
    """linux_dirent64 records as linux_dirent ones.  Both are 8-byte aligned with room
    for the name, a NUL and one byte more, so the lengths (and offsets) are the same;
    the name moves up a byte and d_type goes last.  Linux: fs/readdir.c filldir."""
    out = bytearray(len(image))
    off = 0
    while off < len(image):
        reclen = image[off + 16] | image[off + 17] << 8
        name = image[off + 19:off + reclen].split(b"\0", 1)[0]
        out[off:off + 18] = image[off:off + 18]
        out[off + 18:off + 18 + len(name)] = name
        out[off + reclen - 1] = image[off + 18]
        off += reclen
    return bytes(out)


def _getdents(t: Task, r: SyscallArguments, old: bool) -> int:
    f = t.fd_table.get(r.fd(0))
    if f.flags & O_PATH:
        raise SyscallError(Errno.EBADF)
    buf, size = r.pointer(1), r.uint32(2)
    if not isinstance(f.impl, DirectoryImpl):
        raise SyscallError(Errno.ENOTDIR)
    if size > 0x7FFFFFFF:
        raise SyscallError(Errno.EINVAL)
    image, ends = f.impl.records(f)
    touch_atime(f)                     # Linux: iterate_dir's file_accessed
    i = f.offset                       # the index of the next record
    n = 0
    if i < len(ends):
        start = ends[i - 1] if i > 0 else 0
        j = bisect.bisect_right(ends, start + size, lo=i)   # records i..j-1 fit
        if j == i:
            raise SyscallError(Errno.EINVAL)                # not even one record fits
        end = ends[j - 1]
        out = image[start:end]
        if old:
            out = _old_dirents(out)
        try:
            t.copy_out(buf, out)
        except SyscallError:
            # Linux writes record by record: a fault after the first returns the
            # records written so far.
            j = i
            while j < len(ends) and ends[j] <= end:
                try:
                    t.copy_out(buf + (ends[j] - start) - 1, b"\0")
                except SyscallError:
                    break
                j += 1
            if j == i:
                raise
            end = ends[j - 1]
            t.copy_out(buf, out[:end - start])
        f.offset = j
        n = end - start
    if inotify._watches:
        inotify.file_event(f, inotify.IN_ACCESS)
    return n


def sys_mkdirat(t: Task, r: SyscallArguments) -> int:
    return _mkdir(t, r.int32(0), _path(t, r.pointer(1)), r.uint32(2))


def sys_mkdir(t: Task, r: SyscallArguments) -> int:
    """Implements mkdir(2)."""
    return _mkdir(t, AT_FDCWD, _path(t, r.pointer(0)), r.uint32(1))


def _mkdir(t: Task, dirfd: int, path: bytes, mode: int) -> int:
    parent, name = ops.lookup_parent(t, dirfd, path.rstrip(b"/") or path)
    if ops.child_or_none(parent, name) is not None:
        raise SyscallError(Errno.EEXIST)
    ops.check_writable(parent.mount)
    if not t.creds.fs_superuser():
        check_access(t, parent.inode, MAY_WRITE | 1)
    if t.creds.landlock:
        landlock.check(t, parent.mount, parent.dentry, landlock.ACCESS_FS_MAKE_DIR)
    perm, a_acl, d_acl = acl.inherit(t, parent.inode, mode & 0o7777, True)
    inode = parent.inode.mkdir(name, perm, t.creds.fsuid, t.creds.fsgid)
    acl.apply_inherited(inode, a_acl, d_acl)
    parent.dentry.forget(name)
    if inotify._watches:
        inotify.dir_event(parent.inode, inotify.IN_CREATE, name, child_is_dir=True)
    return 0


def sys_mknodat(t: Task, r: SyscallArguments) -> int:
    return _mknod(t, r.int32(0), _path(t, r.pointer(1)), r.uint32(2), r.uint32(3))


def sys_mknod(t: Task, r: SyscallArguments) -> int:
    return _mknod(t, AT_FDCWD, _path(t, r.pointer(0)), r.uint32(1), r.uint32(2))


def _mknod(t: Task, dirfd: int, path: bytes, mode: int, dev: int) -> int:
    """mknod: regular files, FIFOs and sockets; device nodes are refused (EPERM)."""
    parent, name = ops.lookup_parent(t, dirfd, path)
    if ops.child_or_none(parent, name) is not None:
        raise SyscallError(Errno.EEXIST)
    ops.check_writable(parent.mount)
    if not t.creds.fs_superuser():
        check_access(t, parent.inode, MAY_WRITE | 1)
    ftype = mode & S_IFMT
    if ftype in (S_IFCHR, S_IFBLK) and not t.creds.capable(CAP_MKNOD):
        raise SyscallError(Errno.EPERM)
    if t.creds.landlock:
        landlock.check(t, parent.mount, parent.dentry, landlock.make_right(ftype or S_IFREG))
    perm, a_acl, _ = acl.inherit(t, parent.inode, mode & 0o7777, False)
    inode = parent.inode.mknod(name, ftype | perm, dev, t.creds.fsuid, t.creds.fsgid)
    if a_acl is not None and inode is not None:
        acl.apply_inherited(inode, a_acl, None)
    parent.dentry.forget(name)
    if inotify._watches:
        inotify.dir_event(parent.inode, inotify.IN_CREATE, name)
    return 0


def _special_last(t: Task, dirfd: int, path: bytes) -> bytes | None:
    """The last component of `path` when it is not a plain name (Linux: LAST_DOT,
    LAST_DOTDOT, LAST_ROOT): b".", b"..", or b"/" for the root; None for a name.  For
    those, the directory part is walked first (its errors come first, and it must be
    a directory: ENOTDIR for "file/.")."""
    stripped = path.rstrip(b"/")
    if not stripped:
        if not path:
            return None
        return b"/"
    head, _, last = stripped.rpartition(b"/")
    if last not in (b".", b".."):
        return None
    if head or stripped.startswith(b"/"):
        loc = ops.lookup_at(t, dirfd, head or b"/", True)
    else:
        loc = ops.dir_location(t, dirfd)
    if not loc.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    return last


def _unlink(t: Task, dirfd: int, path: bytes, flags: int) -> int:
    if flags & ~AT_REMOVEDIR:
        raise SyscallError(Errno.EINVAL)
    special = _special_last(t, dirfd, path)
    if special is not None:         # Linux: do_rmdir / do_unlinkat on LAST_DOT, ...
        if not flags & AT_REMOVEDIR:
            raise SyscallError(Errno.EISDIR)
        raise SyscallError({b".": Errno.EINVAL, b"..": Errno.ENOTEMPTY}.get(special,
                                                                           Errno.EBUSY))
    if flags & AT_REMOVEDIR:
        stripped = path.rstrip(b"/") or path
        parent, name = ops.lookup_parent(t, dirfd, stripped)
    else:
        if path.endswith(b"/"):
            loc = ops.lookup_at(t, dirfd, path, False)
            raise SyscallError(Errno.EISDIR if loc.inode.is_dir() else Errno.ENOTDIR)
        parent, name = ops.lookup_parent(t, dirfd, path)
    d = parent.dentry.child(name)
    if id(d) in parent.mount.children:
        raise SyscallError(Errno.EBUSY)
    ops.check_writable(parent.mount)
    if not t.creds.fs_superuser():
        check_access(t, parent.inode, MAY_WRITE | 1)
    inode = d.inode
    check_sticky(t, parent.inode, inode)           # may_delete
    if t.creds.landlock:
        landlock.check(t, parent.mount, parent.dentry, landlock.remove_right(inode))
    if flags & AT_REMOVEDIR:
        parent.inode.rmdir(name)
    else:
        if inode.is_dir():
            raise SyscallError(Errno.EISDIR)
        parent.inode.unlink(name)
    parent.dentry.forget(name)
    inotify.mark_unlinked(d)
    if inotify._watches:
        if not flags & AT_REMOVEDIR:
            inotify.inode_event(inode, inotify.IN_ATTRIB)      # the link count
        inotify.unlinked(d, inode, is_rmdir=bool(flags & AT_REMOVEDIR))
        inotify.dir_event(parent.inode, inotify.IN_DELETE, name,
                          child_is_dir=bool(flags & AT_REMOVEDIR))
    return 0


def sys_unlinkat(t: Task, r: SyscallArguments) -> int:
    return _unlink(t, r.int32(0), _path(t, r.pointer(1)), r.int32(2))


def sys_unlink(t: Task, r: SyscallArguments) -> int:
    """Implements unlink(2)."""
    return _unlink(t, AT_FDCWD, _path(t, r.pointer(0)), 0)


def sys_rmdir(t: Task, r: SyscallArguments) -> int:
    """Implements rmdir(2)."""
    return _unlink(t, AT_FDCWD, _path(t, r.pointer(0)), AT_REMOVEDIR)


def _rename(t: Task, olddirfd: int, oldpath: bytes, newdirfd: int, newpath: bytes,
            flags: int) -> int:
    """renameat2(2), in Linux's order of checks (fs/namei.c do_renameat2, vfs_rename)."""
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) or \
            flags & RENAME_EXCHANGE and flags & (RENAME_NOREPLACE | RENAME_WHITEOUT):
        raise SyscallError(Errno.EINVAL)
    if flags & RENAME_WHITEOUT and t.creds.euid != 0:
        raise SyscallError(Errno.EPERM)          # CAP_MKNOD
    exchange = bool(flags & RENAME_EXCHANGE)
    # ".", ".." or "/" on either side (Linux: LAST_NORM checks of do_renameat2).
    if _special_last(t, olddirfd, oldpath) is not None:
        raise SyscallError(Errno.EBUSY)
    if _special_last(t, newdirfd, newpath) is not None:
        raise SyscallError(Errno.EEXIST if flags & RENAME_NOREPLACE else Errno.EBUSY)
    op, oname = ops.lookup_parent(t, olddirfd, oldpath.rstrip(b"/") or oldpath)
    np, nname = ops.lookup_parent(t, newdirfd, newpath.rstrip(b"/") or newpath)
    if oname in (b".", b"..") or nname in (b".", b".."):
        raise SyscallError(Errno.EBUSY)
    if op.mount is not np.mount:
        raise SyscallError(Errno.EXDEV)
    ops.check_writable(op.mount)
    src = op.dentry.child(oname)
    dst = ops.child_or_none(np, nname)
    if exchange:
        if dst is None:
            raise SyscallError(Errno.ENOENT)
        if newpath.endswith(b"/") and not dst.inode.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        if oldpath.endswith(b"/") and not src.inode.is_dir():
            raise SyscallError(Errno.ENOTDIR)
    elif (oldpath.endswith(b"/") or newpath.endswith(b"/")) and not src.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    if dst is not None and flags & RENAME_NOREPLACE:
        raise SyscallError(Errno.EEXIST)
    # A directory moved into its own subtree (Linux: the rename "trap").
    if src.inode.is_dir() or exchange and dst is not None and dst.inode.is_dir():
        d = np.dentry
        while d is not None:
            if d is src:
                raise SyscallError(Errno.EINVAL)
            d = d.parent
        if exchange and dst is not None:
            d = op.dentry
            while d is not None:
                if d is dst:
                    raise SyscallError(Errno.EINVAL)
                d = d.parent
    if not t.creds.fs_superuser():
        check_access(t, op.inode, MAY_WRITE | 1)
        check_access(t, np.inode, MAY_WRITE | 1)
    check_sticky(t, op.inode, src.inode)            # may_delete of both names
    if dst is not None:
        check_sticky(t, np.inode, dst.inode)
    landlock.check_reparent(t, (op.mount, op.dentry), (np.mount, np.dentry), src.inode,
                            dst.inode if dst is not None else None, exchange)
    if id(src) in op.mount.children or (dst is not None and id(dst) in np.mount.children):
        raise SyscallError(Errno.EBUSY)
    if dst is not None and _same_file(dst.inode, src.inode):
        return 0                  # two names of one file: nothing happens (vfs_rename)
    src_inode = src.inode
    dst_inode = dst.inode if dst is not None else None
    if exchange:
        op.inode.exchange(oname, np.inode, nname)
    elif flags & RENAME_WHITEOUT:
        op.inode.rename_whiteout(oname, np.inode, nname)
    else:
        op.inode.rename(oname, np.inode, nname)
    op.dentry.forget(oname)
    np.dentry.forget(nname)
    if dst is not None and not exchange:
        inotify.mark_unlinked(dst)
    if inotify._watches:
        _rename_events(op.inode, oname, np.inode, nname, src_inode,
                       dst_inode if not exchange else None)
        if exchange:
            assert dst_inode is not None
            _rename_events(np.inode, nname, op.inode, oname, dst_inode, None)
        elif dst is not None:
            inotify.unlinked(dst, dst.inode, is_rmdir=dst.inode.is_dir())
    return 0


def _same_file(a: Any, b: Any) -> bool:
    return a is b or (a.fs is b.fs and a.ino == b.ino)


def _rename_events(odir: Any, oname: bytes, ndir: Any, nname: bytes, moved: Any,
                   target: Any) -> None:
    """Linux: fsnotify_move."""
    cookie = inotify.next_cookie()
    isdir = moved.is_dir()
    inotify.dir_event(odir, inotify.IN_MOVED_FROM, oname, isdir, cookie)
    inotify.dir_event(ndir, inotify.IN_MOVED_TO, nname, isdir, cookie)
    if target is not None:
        inotify.inode_event(target, inotify.IN_ATTRIB)     # its link count
    inotify.inode_event(moved, inotify.IN_MOVE_SELF)


def sys_rename(t: Task, r: SyscallArguments) -> int:
    """Implements rename(2)."""
    return _rename(t, AT_FDCWD, _path(t, r.pointer(0)), AT_FDCWD, _path(t, r.pointer(1)), 0)


def sys_renameat(t: Task, r: SyscallArguments) -> int:
    return _rename(t, r.int32(0), _path(t, r.pointer(1)), r.int32(2), _path(t, r.pointer(3)), 0)


def sys_renameat2(t: Task, r: SyscallArguments) -> int:
    return _rename(t, r.int32(0), _path(t, r.pointer(1)), r.int32(2), _path(t, r.pointer(3)),
                   r.int32(4))


def _symlink(t: Task, target: bytes, dirfd: int, path: bytes) -> int:
    if not target:
        raise SyscallError(Errno.ENOENT)
    if _special_last(t, dirfd, path) is not None:
        raise SyscallError(Errno.EEXIST)
    parent, name = ops.lookup_parent(t, dirfd, path)
    if ops.child_or_none(parent, name) is not None:
        raise SyscallError(Errno.EEXIST)
    if path.endswith(b"/"):
        raise SyscallError(Errno.ENOENT)    # a directory was asked for (filename_create)
    ops.check_writable(parent.mount)
    if not t.creds.fs_superuser():
        check_access(t, parent.inode, MAY_WRITE | 1)      # may_create
    if t.creds.landlock:
        landlock.check(t, parent.mount, parent.dentry, landlock.ACCESS_FS_MAKE_SYM)
    parent.inode.symlink(name, target, t.creds.fsuid, t.creds.fsgid)
    parent.dentry.forget(name)
    if inotify._watches:
        inotify.dir_event(parent.inode, inotify.IN_CREATE, name)
    return 0


def sys_symlink(t: Task, r: SyscallArguments) -> int:
    """Implements symlink(2)."""
    return _symlink(t, _path(t, r.pointer(0)), AT_FDCWD, _path(t, r.pointer(1)))


def sys_symlinkat(t: Task, r: SyscallArguments) -> int:
    return _symlink(t, _path(t, r.pointer(0)), r.int32(1), _path(t, r.pointer(2)))


def _readlink(t: Task, dirfd: int, path: bytes, buf: int, size: int) -> int:
    if size <= 0:
        raise SyscallError(Errno.EINVAL)
    loc = ops.lookup_at(t, dirfd, path, follow=False, empty_path=True)
    inode = loc.inode
    if not inode.is_symlink():
        raise SyscallError(Errno.EINVAL)
    target = inode.readlink()[:size]
    t.copy_out(buf, target)
    return len(target)


def sys_readlink(t: Task, r: SyscallArguments) -> int:
    """Implements readlink(2)."""
    return _readlink(t, AT_FDCWD, _path(t, r.pointer(0)), r.pointer(1), r.int32(2))


def sys_readlinkat(t: Task, r: SyscallArguments) -> int:
    return _readlink(t, r.int32(0), _path(t, r.pointer(1)), r.pointer(2), r.int32(3))


def _link(t: Task, olddirfd: int, oldpath: bytes, newdirfd: int, newpath: bytes,
          flags: int) -> int:
    if flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        raise SyscallError(Errno.EINVAL)
    src = ops.lookup_at(t, olddirfd, oldpath, follow=bool(flags & AT_SYMLINK_FOLLOW),
                        empty_path=bool(flags & AT_EMPTY_PATH))
    if src.inode.is_dir():
        raise SyscallError(Errno.EPERM)
    if _special_last(t, newdirfd, newpath) is not None:
        raise SyscallError(Errno.EEXIST)
    parent, name = ops.lookup_parent(t, newdirfd, newpath)
    if ops.child_or_none(parent, name) is not None:
        raise SyscallError(Errno.EEXIST)
    if newpath.endswith(b"/"):
        raise SyscallError(Errno.ENOENT)    # a directory was asked for (filename_create)
    if parent.mount is not src.mount:
        raise SyscallError(Errno.EXDEV)
    ops.check_writable(parent.mount)
    if not t.creds.fs_superuser():
        check_access(t, parent.inode, MAY_WRITE | 1)
    inode = src.inode
    _may_linkat(t, inode)
    landlock.check_link(t, (parent.mount, parent.dentry),
                        (src.mount, src.dentry.parent or src.dentry), inode)
    if inode.nlink == 0 and inode not in ops.linkable:
        raise SyscallError(Errno.ENOENT)   # unlinked, or O_TMPFILE|O_EXCL (I_LINKABLE)
    parent.inode.link(name, inode)
    ops.linkable.discard(inode)
    parent.dentry.forget(name)
    if inotify._watches:
        inotify.inode_event(src.inode, inotify.IN_ATTRIB)      # the link count
        inotify.dir_event(parent.inode, inotify.IN_CREATE, name)
    return 0


def _may_linkat(t: Task, inode: Any) -> None:
    """fs.protected_hardlinks (on, as systemd sets it): a hard link to a file one does
    not own needs a regular file one may read and write, without set-id bits, or
    CAP_FOWNER (Linux: may_linkat)."""
    if owner_or_capable(t, inode):
        return
    mode = inode.mode
    if not inode.is_regular() or mode & 0o4000 or mode & 0o2010 == 0o2010 or \
            not may_access(t, inode, 4 | MAY_WRITE):
        raise SyscallError(Errno.EPERM)


def sys_link(t: Task, r: SyscallArguments) -> int:
    """Implements link(2)."""
    return _link(t, AT_FDCWD, _path(t, r.pointer(0)), AT_FDCWD, _path(t, r.pointer(1)), 0)


def sys_linkat(t: Task, r: SyscallArguments) -> int:
    return _link(t, r.int32(0), _path(t, r.pointer(1)), r.int32(2), _path(t, r.pointer(3)),
                 r.int32(4))


# -- cwd -----------------------------------------------------------------------------------


def sys_chdir(t: Task, r: SyscallArguments) -> int:
    """Implements chdir(2)."""
    loc = ops.lookup_at(t, AT_FDCWD, _path(t, r.pointer(0)), True)
    if not loc.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    t.check_exec(loc.inode)
    t.fs.cwd = loc
    return 0


def sys_fchdir(t: Task, r: SyscallArguments) -> int:
    f = t.fd_table.get(r.fd(0))
    if not f.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    t.check_exec(f.inode)                      # file_permission(MAY_EXEC | MAY_CHDIR)
    t.fs.cwd = Location(f.mount, f.dentry)
    return 0


def sys_chroot(t: Task, r: SyscallArguments) -> int:
    """Implements chroot(2): CAP_SYS_CHROOT may confine itself further inside the sandbox."""
    loc = ops.lookup_at(t, AT_FDCWD, _path(t, r.pointer(0)), True)
    if not loc.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    check_access(t, loc.inode, 1)
    if not t.creds.capable(CAP_SYS_CHROOT):
        raise SyscallError(Errno.EPERM)
    t.fs.root = loc
    return 0


def _reachable_from(loc: Location, root: Location) -> bool:
    """Whether `loc` is at or below `root`, crossing mounts upward."""
    m, d = loc.mount, loc.dentry
    while m is not root.mount:
        if m.parent is None or m.mountpoint is None:
            return False
        m, d = m.parent, m.mountpoint
    while d is not None:
        if d is root.dentry:
            return True
        d = d.parent
    return False


def sys_getcwd(t: Task, r: SyscallArguments) -> int:
    """Implements getcwd(2)."""
    buf, size = r.pointer(0), r.uint64(1)
    cwd = t.fs.cwd
    path = path_of(cwd.mount, cwd.dentry, t.fs.root)
    if not _reachable_from(cwd, t.fs.root):
        # Linux: a working directory outside the root (left there by chroot).
        path = b"(unreachable)" + path_of(cwd.mount, cwd.dentry)
    if len(path) + 1 > size:
        raise SyscallError(Errno.ERANGE)
    t.copy_out(buf, path + b"\0")
    return len(path) + 1


# -- attributes ----------------------------------------------------------------------------


def _rw(where: Any) -> Any:
    """The inode of a Location or an open file, EROFS if its mount is read-only."""
    ops.check_writable(where.mount)
    return where.inode


def _attr_event(where: Any, mask: int) -> None:
    """IN_ATTRIB/IN_MODIFY/IN_ACCESS of a successful setattr through a Location or an
    open file (Linux: fsnotify_change on its dentry)."""
    if mask and inotify._watches:
        inotify.dentry_event(where.dentry, mask, where.inode)


def _owner_or_root(t: Task, loc_inode) -> None:  # type: ignore[no-untyped-def]
    if not owner_or_capable(t, loc_inode):
        raise SyscallError(Errno.EPERM)


def _chmod(t: Task, inode, mode: int) -> int:  # type: ignore[no-untyped-def]
    _owner_or_root(t, inode)
    mode &= 0o7777
    # setattr_prepare: the set-group-ID bit needs the file's group or CAP_FSETID.
    if mode & S_ISGID and not t.creds.in_group(inode.gid) and \
            not t.creds.capable(CAP_FSETID):
        mode &= ~S_ISGID
    inode.setattr(mode=mode)
    acl.chmod(inode)
    return 0


def sys_chmod(t: Task, r: SyscallArguments) -> int:
    """Implements chmod(2)."""
    loc = ops.lookup_at(t, AT_FDCWD, _path(t, r.pointer(0)))
    _chmod(t, _rw(loc), r.uint32(1))
    _attr_event(loc, inotify.IN_ATTRIB)
    return 0


def _fd_not_path(t: Task, fd: int) -> FileDescription:
    """The file at `fd` for calls that take no O_PATH file (fdget, not fdget_raw)."""
    f = t.fd_table.get(fd)
    if f.flags & O_PATH:
        raise SyscallError(Errno.EBADF)
    return f


def sys_fchmod(t: Task, r: SyscallArguments) -> int:
    f = _fd_not_path(t, r.fd(0))
    _chmod(t, _rw(f), r.uint32(1))
    _attr_event(f, inotify.IN_ATTRIB)
    return 0


def sys_fchmodat(t: Task, r: SyscallArguments) -> int:
    loc = ops.lookup_at(t, r.int32(0), _path(t, r.pointer(1)))
    _chmod(t, _rw(loc), r.uint32(2))
    _attr_event(loc, inotify.IN_ATTRIB)
    return 0


def _chown(t: Task, inode, uid: int, gid: int) -> int:  # type: ignore[no-untyped-def]
    # ids are unsigned 32-bit; -1 (0xffffffff) means "leave unchanged".
    uid = -1 if uid & 0xFFFFFFFF == 0xFFFFFFFF else uid & 0xFFFFFFFF
    gid = -1 if gid & 0xFFFFFFFF == 0xFFFFFFFF else gid & 0xFFFFFFFF
    c = t.creds
    if not c.capable(CAP_CHOWN):
        # chown_ok/chgrp_ok: the owner may "change" the owner to itself and the group
        # to one of its own.
        if uid not in (-1, inode.uid) or (gid not in (-1, inode.gid) and not c.in_group(gid)):
            raise SyscallError(Errno.EPERM)
        if c.fsuid != inode.uid and (uid != -1 or gid != -1):
            raise SyscallError(Errno.EPERM)
    inode.setattr(uid=None if uid == -1 else uid, gid=None if gid == -1 else gid)
    if uid != -1 or gid != -1:
        from pyvisor.sentry.fsimpl.tmpfs.tmpfs import kill_priv
        kill_priv(inode)                 # security.capability goes (cap_inode_killpriv)
    return 0


def _chown_where(t: Task, where: Any, uid: int, gid: int) -> int:
    _chown(t, _rw(where), uid, gid)
    if uid & 0xFFFFFFFF != 0xFFFFFFFF or gid & 0xFFFFFFFF != 0xFFFFFFFF:
        _attr_event(where, inotify.IN_ATTRIB)
    return 0


def sys_chown(t: Task, r: SyscallArguments) -> int:
    return _chown_where(t, ops.lookup_at(t, AT_FDCWD, _path(t, r.pointer(0))), r.int32(1),
                        r.int32(2))


def sys_lchown(t: Task, r: SyscallArguments) -> int:
    return _chown_where(t, ops.lookup_at(t, AT_FDCWD, _path(t, r.pointer(0)), False),
                        r.int32(1), r.int32(2))


def sys_fchown(t: Task, r: SyscallArguments) -> int:
    return _chown_where(t, _fd_not_path(t, r.fd(0)), r.int32(1), r.int32(2))


def sys_fchownat(t: Task, r: SyscallArguments) -> int:
    flags = r.int32(4)
    loc = ops.lookup_at(t, r.int32(0), _path(t, r.pointer(1)) if r.pointer(1) else b"",
                        follow=not flags & AT_SYMLINK_NOFOLLOW, empty_path=bool(flags & AT_EMPTY_PATH))
    return _chown_where(t, loc, r.int32(2), r.int32(3))


def _truncate(t: Task, inode, length: int) -> int:  # type: ignore[no-untyped-def]
    if length < 0:
        raise SyscallError(Errno.EINVAL)
    if inode.is_dir():
        raise SyscallError(Errno.EISDIR)
    if not inode.is_regular():
        raise SyscallError(Errno.EINVAL)
    if length > inode.size():
        from pyvisor.sentry.syscalls.linux.sys_fileio import new_size_ok
        new_size_ok(t, length)              # RLIMIT_FSIZE: SIGXFSZ and EFBIG
    inode.setattr(size=length)
    return 0


def sys_truncate(t: Task, r: SyscallArguments) -> int:
    """Implements truncate(2)."""
    loc = ops.lookup_at(t, AT_FDCWD, _path(t, r.pointer(0)))
    if not t.creds.fs_superuser():
        check_access(t, loc.inode, MAY_WRITE)
    ops.check_writable(loc.mount)
    if t.creds.landlock:
        landlock.check(t, loc.mount, loc.dentry, landlock.ACCESS_FS_TRUNCATE)
    textbusy.check_write(t.kernel, loc.inode)     # ETXTBSY while it is being executed
    _truncate(t, loc.inode, r.int64(1))
    _attr_event(loc, inotify.IN_MODIFY)
    return 0


def sys_ftruncate(t: Task, r: SyscallArguments) -> int:
    """Implements ftruncate(2)."""
    f = t.fd_table.get(r.fd(0))
    if not f.writable:
        raise SyscallError(Errno.EINVAL if f.readable else Errno.EBADF)
    landlock.check_ftruncate(f)                   # the right was taken at open
    _truncate(t, f.inode, r.int64(1))
    _attr_event(f, inotify.IN_MODIFY)
    return 0


def sys_utimensat(t: Task, r: SyscallArguments) -> int:
    """Implements utimensat(2), in Linux's order of checks (fs/utimes.c)."""
    dirfd, addr, times, flags = r.int32(0), r.pointer(1), r.pointer(2), r.int32(3)
    raw = t.copy_in(times, 32) if times else None
    if raw is not None and utimens_omit_both(raw):
        return 0                                   # "we must not even check the path"
    if addr or dirfd == AT_FDCWD:
        if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
            raise SyscallError(Errno.EINVAL)
        where: Any = ops.lookup_at(t, dirfd, _path(t, addr),
                                   follow=not flags & AT_SYMLINK_NOFOLLOW,
                                   empty_path=bool(flags & AT_EMPTY_PATH))
    else:
        if flags:
            raise SyscallError(Errno.EINVAL)
        where = _fd_not_path(t, dirfd)
    inode = _rw(where)
    now = time.time_ns()
    at, mt = decode_utimens(raw, now) if raw is not None else (now, now)
    nsecs = (struct.unpack_from("<8xq", raw, 0)[0], struct.unpack_from("<8xq", raw, 16)[0]) \
        if raw is not None else (_UTIME_NOW, _UTIME_NOW)
    _may_set_times(t, inode, explicit=any(n not in (_UTIME_NOW, _UTIME_OMIT) for n in nsecs),
                   touch=nsecs == (_UTIME_NOW, _UTIME_NOW))
    inode.setattr(atime_ns=at, mtime_ns=mt)
    _attr_event(where, inotify.attr_mask(atime=at is not None, mtime=mt is not None))
    return 0


_UTIME_NOW, _UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def _may_set_times(t: Task, inode: Any, explicit: bool, touch: bool) -> None:
    """Setting a time other than "now" needs the owner or CAP_FOWNER (EPERM); setting
    both to "now" needs that or write permission (EACCES).  Linux: setattr_prepare,
    may_setattr (ATTR_TIMES_SET, ATTR_TOUCH)."""
    if owner_or_capable(t, inode):
        return
    if explicit:
        raise SyscallError(Errno.EPERM)
    if touch:
        check_access(t, inode, MAY_WRITE)


def sys_utimes(t: Task, r: SyscallArguments) -> int:
    """Implements utimes(2)."""
    path, times = r.pointer(0), r.pointer(1)
    at_mt = copy_in_utimes(t, times) if times else None
    loc = ops.lookup_at(t, AT_FDCWD, _path(t, path))
    ops.check_writable(loc.mount)
    _may_set_times(t, loc.inode, explicit=at_mt is not None, touch=at_mt is None)
    if at_mt is None:
        now = time.time_ns()
        at_mt = (now, now)
    loc.inode.setattr(atime_ns=at_mt[0], mtime_ns=at_mt[1])
    _attr_event(loc, inotify.IN_ATTRIB)
    return 0


def sys_memfd_create(t: Task, r: SyscallArguments) -> int:
    """Implements memfd_create(2): a tmpfs file with no name in any directory."""
    name = t.copy_in_str(r.pointer(0), 250)
    flags = r.uint32(1)
    if flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB):
        raise SyscallError(Errno.EINVAL)
    from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS, TmpfsFile
    from pyvisor.sentry.vfs.vfs import Dentry, Mount
    k = t.kernel
    fs = getattr(k, "memfd_fs", None)
    if fs is None:
        fs = k.memfd_fs = TmpFS(k.memfile)
    inode = TmpfsFile(fs, S_IFREG | 0o777, t.creds.fsuid, t.creds.fsgid)
    inode.nlink = 0
    if flags & MFD_ALLOW_SEALING:
        inode.seals = 0
    d = Dentry(b"/memfd:" + name, None, inode)
    f = FileDescription.open(Mount(fs, d, source="memfd"), d, 2)
    return t.fd_table.install(f, cloexec=bool(flags & MFD_CLOEXEC))


