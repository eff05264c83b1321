"""Path-based operations shared by the syscall layer: lookup, open, create.

Linux: fs/namei.c (do_filp_open, filename_create), fs/open.c.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import (AT_FDCWD, O_ACCMODE, O_CREAT, O_DIRECTORY, O_EXCL,
                                     O_NOFOLLOW, O_PATH, O_RDONLY, O_TMPFILE, O_TRUNC, O_WRONLY,
                                     O_RDWR)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs import textbusy
from pyvisor.sentry.vfs.file import FileDescription
from pyvisor.sentry.vfs.perms import MAY_READ, MAY_WRITE, check_access
from pyvisor.sentry.vfs.vfs import Dentry, Location, Mount, Resolver

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task


def dir_location(t: Task, dirfd: int) -> Location:
    """The starting directory for a *at() call."""
    if dirfd == AT_FDCWD:
        return t.fs.cwd
    f = t.fd_table.get(dirfd)
    return Location(f.mount, f.dentry)


def lookup(t: Task, start: Location | None, path: bytes, follow: bool = True) -> Location:
    r = Resolver(t.fs.root)
    loc, _ = r.walk(t, start if start is not None else t.fs.cwd, path, follow)
    return loc


def lookup_at(t: Task, dirfd: int, path: bytes, follow: bool = True,
              empty_path: bool = False) -> Location:
    """Resolves `path` relative to `dirfd`; with AT_EMPTY_PATH an empty path is dirfd itself."""
    if not path:
        if empty_path:
            if dirfd == AT_FDCWD:
                return t.fs.cwd
            f = t.fd_table.get(dirfd)
            return Location(f.mount, f.dentry)
        raise SyscallError(Errno.ENOENT)
    start = t.fs.cwd if path[:1] == b"/" else dir_location(t, dirfd)
    if path[:1] != b"/" and not start.dentry.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    return lookup(t, start, path, follow)


def lookup_parent(t: Task, dirfd: int, path: bytes) -> tuple[Location, bytes]:
    """The parent directory of `path`'s last component, and that component."""
    if not path:
        raise SyscallError(Errno.ENOENT)
    start = t.fs.cwd if path[:1] == b"/" else dir_location(t, dirfd)
    r = Resolver(t.fs.root)
    parent, name = r.walk(t, start, path, True, want_parent=True)
    t.check_exec(parent.inode)            # may_lookup: searching it for the last name
    return parent, name


def child_or_none(parent: Location, name: bytes) -> Dentry | None:
    try:
        return parent.dentry.child(name)
    except SyscallError as e:
        if e.errno == Errno.ENOENT:
            return None
        raise


def check_writable(mount: Mount) -> None:
    """EROFS on a mount made read-only by itself (Mount.flags_readonly: a read-only bind
    of a path over itself, as runc makes linux.readonlyPaths and masked directories),
    whatever its filesystem allows.  Linux: mnt_want_write."""
    if mount.flags_readonly:
        raise SyscallError(Errno.EROFS)


def open_at(t: Task, dirfd: int, path: bytes, flags: int, mode: int) -> FileDescription:
    """openat(2) minus the fd installation."""
    if flags & O_TMPFILE == O_TMPFILE:
        raise SyscallError(Errno.EOPNOTSUPP)
    acc = flags & O_ACCMODE
    if acc == 3 and not flags & O_PATH:
        raise SyscallError(Errno.EINVAL)
    if flags & O_PATH:
        flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW | 0o2000000
    follow = not flags & O_NOFOLLOW
    if flags & O_CREAT:
        parent, name = lookup_parent(t, dirfd, path)
        d = child_or_none(parent, name)
        if d is not None:
            if flags & O_EXCL:
                raise SyscallError(Errno.EEXIST)
            loc = Location(parent.mount, d)
            from pyvisor.sentry.vfs.vfs import _step_down
            m2, d2 = _step_down(parent.mount, d)
            loc = Location(m2, d2)
            if d2.inode.is_symlink():
                if not follow:
                    raise SyscallError(Errno.ELOOP)
                loc = lookup(t, parent, path if path[:1] == b"/" else name, True)
            if loc.inode.is_dir():
                raise SyscallError(Errno.EISDIR)
        else:
            if path.endswith(b"/"):
                raise SyscallError(Errno.EISDIR)
            check_writable(parent.mount)
            if not t.creds.fs_superuser():
                check_access(t, parent.inode, MAY_WRITE | 1)
            inode = parent.inode.create(name, mode & ~t.fs.umask & 0o7777, t.creds.fsuid,
                                        t.creds.fsgid)
            parent.dentry.forget(name)
            d = parent.dentry.child(name)
            return _open(t, parent.mount, d, flags & ~(O_CREAT | O_EXCL | O_TRUNC))
    else:
        loc = lookup_at(t, dirfd, path, follow)
        if loc.inode.is_symlink() and not flags & O_PATH:
            raise SyscallError(Errno.ELOOP)
    inode = loc.inode
    if flags & O_DIRECTORY and not inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    if inode.is_dir() and (acc in (O_WRONLY, O_RDWR) or flags & O_TRUNC) and not flags & O_PATH:
        raise SyscallError(Errno.EISDIR)
    if not flags & O_PATH and (acc in (O_WRONLY, O_RDWR) or flags & O_TRUNC) and \
            (inode.fs.readonly or loc.mount.flags_readonly) and \
            (inode.is_regular() or inode.is_dir()):
        raise SyscallError(Errno.EROFS)
    if not flags & O_PATH and not t.creds.fs_superuser():
        want = (MAY_READ if acc in (O_RDONLY, O_RDWR) else 0) | \
            (MAY_WRITE if acc in (O_WRONLY, O_RDWR) or flags & O_TRUNC else 0)
        check_access(t, inode, want)
    if flags & O_TRUNC and inode.is_regular() and acc in (O_WRONLY, O_RDWR):
        f = _open(t, loc.mount, loc.dentry, flags)
        f.inode.truncate(0)
        return f
    return _open(t, loc.mount, loc.dentry, flags)


def _open(t: Task, mount: Mount, dentry: Dentry, flags: int) -> FileDescription:
    """Opens a resolved file; with write access, ETXTBSY while it is being executed
    (checked before the open, which may copy it up or truncate it)."""
    writing = flags & O_ACCMODE in (O_WRONLY, O_RDWR) and not flags & O_PATH
    if writing:
        textbusy.check_write(t.kernel, dentry.inode)
    f = FileDescription.open(mount, dentry, flags)
    if writing:
        textbusy.track_writer(t.kernel, f)
    return f
