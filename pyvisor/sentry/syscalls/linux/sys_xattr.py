"""The *xattr(2) calls.  Linux: fs/xattr.c."""

from __future__ import annotations

from typing import Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import AT_FDCWD, O_PATH
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.vfs import inotify, ops
from pyvisor.sentry.vfs import xattr as X
from pyvisor.sentry.vfs.inode import Inode


def _name(t: Task, addr: int) -> bytes:
    """The attribute name: 1 to XATTR_NAME_MAX bytes (ERANGE otherwise)."""
    try:
        name = t.copy_in_str(addr, X.XATTR_NAME_MAX + 1)
    except SyscallError as e:
        if e.errno == Errno.ENAMETOOLONG:
            raise SyscallError(Errno.ERANGE) from None
        raise
    if not name or len(name) > X.XATTR_NAME_MAX:
        raise SyscallError(Errno.ERANGE)
    return name


def _path_loc(t: Task, addr: int, follow: bool) -> Any:
    path = t.copy_in_str(addr)
    if not path:
        raise SyscallError(Errno.ENOENT)
    return ops.lookup_at(t, AT_FDCWD, path, follow=follow)


def _path_inode(t: Task, addr: int, follow: bool) -> Inode:
    return _path_loc(t, addr, follow).inode


def _fd_file(t: Task, fd: int) -> Any:
    f = t.fd_table.get(fd)
    if f.flags & O_PATH:
        raise SyscallError(Errno.EBADF)
    return f


def _fd_inode(t: Task, fd: int) -> Inode:
    return _fd_file(t, fd).inode


def _changed(where: Any) -> int:
    """IN_ATTRIB after a change (Linux: fsnotify_xattr)."""
    if inotify._watches:
        inotify.dentry_event(where.dentry, inotify.IN_ATTRIB, where.inode)
    return 0


def _set(t: Task, inode: Inode, r: SyscallArguments) -> int:
    value_addr, size, flags = r.pointer(2), r.uint64(3), r.int32(4)
    if flags & ~(X.XATTR_CREATE | X.XATTR_REPLACE):
        raise SyscallError(Errno.EINVAL)
    name = _name(t, r.pointer(1))
    if size > X.XATTR_SIZE_MAX:
        raise SyscallError(Errno.E2BIG)
    value = t.copy_in(value_addr, size) if size else b""
    X.setxattr(t, inode, name, value, flags)
    return 0


def _get(t: Task, inode: Inode, r: SyscallArguments) -> int:
    name = _name(t, r.pointer(1))
    buf, size = r.pointer(2), min(r.uint64(3), X.XATTR_SIZE_MAX)
    value = X.getxattr(t, inode, name)
    if size == 0:
        return len(value)
    if len(value) > size:
        raise SyscallError(Errno.ERANGE)
    if value:
        t.copy_out(buf, value)
    return len(value)


def _list(t: Task, inode: Inode, r: SyscallArguments) -> int:
    buf, size = r.pointer(1), min(r.uint64(2), X.XATTR_LIST_MAX)
    names = X.listxattr(t, inode)
    if size == 0:
        return len(names)
    if len(names) > size:
        raise SyscallError(Errno.ERANGE)
    if names:
        t.copy_out(buf, names)
    return len(names)


def _remove(t: Task, inode: Inode, r: SyscallArguments) -> int:
    X.removexattr(t, inode, _name(t, r.pointer(1)))
    return 0


def sys_setxattr(t: Task, r: SyscallArguments) -> int:
    """Implements setxattr(2)."""
    w = _path_loc(t, r.pointer(0), True)
    _set(t, w.inode, r)
    return _changed(w)


def sys_lsetxattr(t: Task, r: SyscallArguments) -> int:
    w = _path_loc(t, r.pointer(0), False)
    _set(t, w.inode, r)
    return _changed(w)


def sys_fsetxattr(t: Task, r: SyscallArguments) -> int:
    w = _fd_file(t, r.fd(0))
    _set(t, w.inode, r)
    return _changed(w)


def sys_getxattr(t: Task, r: SyscallArguments) -> int:
    """Implements getxattr(2)."""
    return _get(t, _path_inode(t, r.pointer(0), True), r)


def sys_lgetxattr(t: Task, r: SyscallArguments) -> int:
    return _get(t, _path_inode(t, r.pointer(0), False), r)


def sys_fgetxattr(t: Task, r: SyscallArguments) -> int:
    return _get(t, _fd_inode(t, r.fd(0)), r)


def sys_listxattr(t: Task, r: SyscallArguments) -> int:
    """Implements listxattr(2)."""
    return _list(t, _path_inode(t, r.pointer(0), True), r)


def sys_llistxattr(t: Task, r: SyscallArguments) -> int:
    return _list(t, _path_inode(t, r.pointer(0), False), r)


def sys_flistxattr(t: Task, r: SyscallArguments) -> int:
    return _list(t, _fd_inode(t, r.fd(0)), r)


def sys_removexattr(t: Task, r: SyscallArguments) -> int:
    """Implements removexattr(2)."""
    w = _path_loc(t, r.pointer(0), True)
    _remove(t, w.inode, r)
    return _changed(w)


def sys_lremovexattr(t: Task, r: SyscallArguments) -> int:
    w = _path_loc(t, r.pointer(0), False)
    _remove(t, w.inode, r)
    return _changed(w)


def sys_fremovexattr(t: Task, r: SyscallArguments) -> int:
    w = _fd_file(t, r.fd(0))
    _remove(t, w.inode, r)
    return _changed(w)
