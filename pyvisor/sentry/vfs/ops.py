"""Path-based operations shared by the syscall layer: lookup, open, create.

Linux: fs/namei.c (do_filp_open, filename_create), fs/open.c.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import (AT_FDCWD, O_ACCMODE, O_CREAT, O_DIRECT, O_DIRECTORY, O_EXCL,
                                     O_NOFOLLOW, O_PATH, O_RDONLY, O_TMPFILE, O_TRUNC, O_WRONLY,
                                     O_RDWR, RESOLVE_BENEATH, RESOLVE_CACHED, RESOLVE_IN_ROOT,
                                     RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.security import landlock
from pyvisor.sentry.vfs import inotify, textbusy
from pyvisor.sentry.vfs.file import FileDescription
from pyvisor.sentry.vfs.perms import MAY_READ, MAY_WRITE, check_access
from pyvisor.sentry.vfs.vfs import Dentry, Location, Mount, Resolver

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.inode import Inode


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


def _resolver(t: Task, dirfd: int, path: bytes, resolve: int) -> tuple[Resolver, Location]:
    """A resolver for `path` relative to `dirfd` under openat2's RESOLVE_* flags, and
    where it starts."""
    if not resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) and path[:1] == b"/":
        start = t.fs.cwd
    else:
        start = dir_location(t, dirfd)
        if not start.dentry.inode.is_dir():
            raise SyscallError(Errno.ENOTDIR)
    r = Resolver(t.fs.root)
    if resolve:
        r.no_xdev = bool(resolve & RESOLVE_NO_XDEV)
        r.no_magiclinks = bool(resolve & RESOLVE_NO_MAGICLINKS)
        r.no_symlinks = bool(resolve & RESOLVE_NO_SYMLINKS)
        r.cached = bool(resolve & RESOLVE_CACHED)
        if resolve & RESOLVE_BENEATH:
            r.beneath = start
            r.scoped = True
        if resolve & RESOLVE_IN_ROOT:
            r.root = start
            r.scoped = True
    return r, start


def lookup_at(t: Task, dirfd: int, path: bytes, follow: bool = True,
              empty_path: bool = False, resolve: int = 0) -> Location:
    """Resolves `path` relative to `dirfd`; with AT_EMPTY_PATH an empty path is dirfd itself."""
    if not path:
        if empty_path:
            if dirfd == AT_FDCWD:
                return t.fs.cwd
            f = t.fd_table.get(dirfd)
            return Location(f.mount, f.dentry)
        raise SyscallError(Errno.ENOENT)
    if resolve:
        r, start = _resolver(t, dirfd, path, resolve)
        return r.walk(t, start, path, follow)[0]
    start = t.fs.cwd if path[:1] == b"/" else dir_location(t, dirfd)
    if path[:1] != b"/" and not start.dentry.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    return lookup(t, start, path, follow)


def lookup_parent(t: Task, dirfd: int, path: bytes, resolve: int = 0) -> tuple[Location, bytes]:
    """The parent directory of `path`'s last component, and that component."""
    if not path:
        raise SyscallError(Errno.ENOENT)
    if resolve:
        r, start = _resolver(t, dirfd, path, resolve)
        return r.walk(t, start, path, True, want_parent=True)
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


def open_at(t: Task, dirfd: int, path: bytes, flags: int, mode: int,
            resolve: int = 0) -> FileDescription:
    """openat(2) minus the fd installation; `resolve`: openat2's RESOLVE_* flags."""
    acc = flags & O_ACCMODE
    if flags & O_TMPFILE & ~O_DIRECTORY:
        return _open_tmpfile(t, dirfd, path, flags, mode, resolve)
    if flags & O_PATH:
        flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW | 0o2000000
    follow = not flags & O_NOFOLLOW
    if flags & O_CREAT:
        from pyvisor.sentry.vfs.vfs import MAXSYMLINKS, _step_down
        parent, name = lookup_parent(t, dirfd, path, resolve)
        hops = 0
        while True:
            d = child_or_none(parent, name)
            if d is None:
                break
            if flags & O_EXCL:
                raise SyscallError(Errno.EEXIST)
            m2, d2 = _step_down(parent.mount, d)
            loc = Location(m2, d2)
            if not d2.inode.is_symlink():
                break
            if not follow:
                raise SyscallError(Errno.ELOOP)
            magic = d2.inode.magic_link(t)
            if resolve or magic is not None:
                loc = lookup_at(t, dirfd, path, True, resolve=resolve)
                break
            # A symlink: O_CREAT creates its target if that is missing (Linux:
            # open_last_lookups following the link to its last component).
            hops += 1
            if hops > MAXSYMLINKS:
                raise SyscallError(Errno.ELOOP)
            target = d2.inode.readlink()
            if not target:
                raise SyscallError(Errno.ENOENT)
            parent, name = Resolver(t.fs.root).walk(t, parent, target, True,
                                                    want_parent=True)
        if d is not None:
            if loc.inode.is_dir():
                raise SyscallError(Errno.EISDIR)
        else:
            if path.endswith(b"/"):
                raise SyscallError(Errno.EISDIR)
            check_writable(parent.mount)
            if not t.creds.fs_superuser():
                check_access(t, parent.inode, MAY_WRITE | 1)
            if t.creds.landlock:
                landlock.check(t, parent.mount, parent.dentry, landlock.ACCESS_FS_MAKE_REG)
            inode = parent.inode.create(name, mode & ~t.fs.umask & 0o7777, t.creds.fsuid,
                                        t.creds.fsgid)
            parent.dentry.forget(name)
            d = parent.dentry.child(name)
            if inotify._watches:
                inotify.dir_event(parent.inode, inotify.IN_CREATE, name)
            return _open(t, parent.mount, d, flags & ~(O_CREAT | O_EXCL | O_TRUNC))
    else:
        loc = lookup_at(t, dirfd, path, follow, resolve=resolve)
        if loc.inode.is_symlink() and not flags & O_PATH:
            raise SyscallError(Errno.ELOOP)
    inode = loc.inode
    if flags & O_DIRECTORY and not inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    if inode.is_dir() and (acc in (O_WRONLY, O_RDWR, 3) or flags & O_TRUNC) and \
            not flags & O_PATH:
        raise SyscallError(Errno.EISDIR)
    if inode.is_dir() and flags & O_DIRECT and not flags & O_PATH:
        raise SyscallError(Errno.EINVAL)     # no direct I/O on a directory (do_dentry_open)
    if not flags & O_PATH and (acc in (O_WRONLY, O_RDWR) or flags & O_TRUNC) and \
            (inode.fs.readonly or loc.mount.flags_readonly) and \
            (inode.is_regular() or inode.is_dir()):
        raise SyscallError(Errno.EROFS)
    if not flags & O_PATH and not t.creds.fs_superuser():
        # Access mode 3 opens for neither, but needs both (Linux: ACC_MODE).
        want = (MAY_READ if acc in (O_RDONLY, O_RDWR, 3) else 0) | \
            (MAY_WRITE if acc in (O_WRONLY, O_RDWR, 3) or flags & O_TRUNC else 0)
        check_access(t, inode, want)
    if flags & O_TRUNC and inode.is_regular() and acc in (O_WRONLY, O_RDWR):
        f = _open(t, loc.mount, loc.dentry, flags)
        f.inode.truncate(0)
        if inotify._watches:
            inotify.file_event(f, inotify.IN_MODIFY)     # after IN_OPEN, as Linux 6.5+
        return f
    return _open(t, loc.mount, loc.dentry, flags)


def _open(t: Task, mount: Mount, dentry: Dentry, flags: int) -> FileDescription:
    """Opens a resolved file; with write access, ETXTBSY while it is being executed
    (checked before the open, which may copy it up or truncate it)."""
    writing = flags & O_ACCMODE in (O_WRONLY, O_RDWR) and not flags & O_PATH
    may_truncate = True
    if t.creds.landlock and not flags & O_PATH:
        may_truncate = landlock.check_open(t, mount, dentry, flags)
    if writing:
        textbusy.check_write(t.kernel, dentry.inode)
    f = FileDescription.open(mount, dentry, flags)
    if not may_truncate:
        landlock.opened(f, False)
    if writing:
        textbusy.track_writer(t.kernel, f)
    if inotify._watches and not flags & O_PATH:
        inotify.file_event(f, inotify.IN_OPEN)
    return f


# O_TMPFILE files that linkat may give a name (Linux: I_LINKABLE): those opened
# without O_EXCL, until their first link.
linkable: weakref.WeakSet[Inode] = weakref.WeakSet()


def _open_tmpfile(t: Task, dirfd: int, path: bytes, flags: int, mode: int,
                  resolve: int = 0) -> FileDescription:
    """open(O_TMPFILE): an unnamed regular file in the directory `path`, to be written
    and perhaps linked.  Linux: build_open_flags, do_o_tmpfile, vfs_tmpfile."""
    if flags & O_TMPFILE != O_TMPFILE or flags & O_CREAT or \
            flags & O_ACCMODE not in (O_WRONLY, O_RDWR):
        raise SyscallError(Errno.EINVAL)
    loc = lookup_at(t, dirfd, path, follow=True, resolve=resolve)
    dir_inode = loc.inode
    if not dir_inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    check_writable(loc.mount)
    if not t.creds.fs_superuser():
        check_access(t, dir_inode, MAY_WRITE | 1)
    inode = dir_inode.tmpfile(mode & ~t.fs.umask & 0o7777, t.creds.fsuid, t.creds.fsgid)
    if not flags & O_EXCL:
        linkable.add(inode)
    d = Dentry(b"#%d" % inode.ino, loc.dentry, inode)
    inotify.mark_unlinked(d)
    return _open(t, loc.mount, d, flags & ~(O_TMPFILE & ~O_DIRECTORY | O_DIRECTORY | O_EXCL))
