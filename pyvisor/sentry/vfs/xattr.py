"""Extended attributes.  Linux: fs/xattr.c (the checks), mm/shmem.c and
fs/xattr.c's simple_xattr (tmpfs's in-memory store).

Names are "namespace.name": user.* (regular files and directories only),
trusted.* and security.* (CAP_SYS_ADMIN to change, and trusted.* to see);
system.posix_acl_access and system.posix_acl_default are POSIX ACLs (acl.py);
other prefixes are EOPNOTSUPP.  Values
are at most XATTR_SIZE_MAX bytes; an inode holds at most XATTR_SPACE bytes of
names and values (Linux bounds tmpfs user xattrs by the inode space too), so
they cannot grow the Sentry without bound.  Filesystems that keep xattrs
(tmpfs, and the overlay's upper) give their inodes an `XattrStore`; the rest
have none: setting is EOPNOTSUPP, reading ENODATA, listing empty.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_SYS_ADMIN
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.stat import S_ISVTX
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs import acl
from pyvisor.sentry.vfs.perms import MAY_READ, MAY_WRITE, check_access, owner_or_capable

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.inode import Inode

# From <linux/limits.h> and <linux/xattr.h>.
XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
XATTR_LIST_MAX = 65536
XATTR_CREATE, XATTR_REPLACE = 1, 2
XATTR_SPACE = 1 << 20
_PREFIXES = (b"user.", b"trusted.", b"security.")


class XattrStore:
    """One inode's attributes (simple_xattrs)."""

    __slots__ = ("attrs", "used")

    def __init__(self) -> None:
        self.attrs: dict[bytes, bytes] = {}
        self.used = 0

    def get(self, name: bytes) -> bytes:
        try:
            return self.attrs[name]
        except KeyError:
            raise SyscallError(Errno.ENODATA) from None

    def set(self, name: bytes, value: bytes, flags: int) -> None:
        old = self.attrs.get(name)
        if old is None and flags & XATTR_REPLACE:
            raise SyscallError(Errno.ENODATA)
        if old is not None and flags & XATTR_CREATE:
            raise SyscallError(Errno.EEXIST)
        used = self.used - (len(name) + len(old) if old is not None else 0) \
            + len(name) + len(value)
        if used > XATTR_SPACE:
            raise SyscallError(Errno.ENOSPC)
        self.attrs[name] = value
        self.used = used

    def remove(self, name: bytes) -> None:
        old = self.attrs.pop(name, None)
        if old is None:
            raise SyscallError(Errno.ENODATA)
        self.used -= len(name) + len(old)

    def names(self) -> list[bytes]:
        """In the order Linux 6.6+ lists them (an rbtree walked from its first node:
        descending byte order)."""
        return sorted(self.attrs, reverse=True)


def check_name(name: bytes) -> None:
    """xattr_resolve_name: a handled prefix with something after it."""
    if not name.startswith(_PREFIXES) or name in _PREFIXES:
        raise SyscallError(Errno.EOPNOTSUPP)


def _capable_admin(t: Task) -> bool:
    return t.creds.capable(CAP_SYS_ADMIN)


def _permission(t: Task, inode: Inode, name: bytes, mask: int) -> None:
    """xattr_permission."""
    if mask & MAY_WRITE and inode.fs.readonly:
        raise SyscallError(Errno.EROFS)
    if name.startswith(b"trusted."):
        if not _capable_admin(t):
            raise SyscallError(Errno.EPERM if mask & MAY_WRITE else Errno.ENODATA)
        return
    if name.startswith(b"security."):
        if mask & MAY_WRITE and not _capable_admin(t):
            raise SyscallError(Errno.EPERM)
        return
    # user.*: only regular files and directories; a sticky directory only by its owner.
    if not (inode.is_regular() or inode.is_dir()):
        raise SyscallError(Errno.EPERM if mask & MAY_WRITE else Errno.ENODATA)
    if inode.is_dir() and inode.mode & S_ISVTX and mask & MAY_WRITE and \
            not owner_or_capable(t, inode):
        raise SyscallError(Errno.EPERM)
    if not t.creds.fs_superuser():
        check_access(t, inode, mask)


def getxattr(t: Task, inode: Inode, name: bytes) -> bytes:
    if acl.is_acl_name(name):
        return acl.get_acl(inode, name)
    check_name(name)
    _permission(t, inode, name, MAY_READ)
    store = inode.xattr_store(False)
    if store is None:
        raise SyscallError(Errno.ENODATA)
    return store.get(name)


def setxattr(t: Task, inode: Inode, name: bytes, value: bytes, flags: int) -> None:
    if acl.is_acl_name(name):
        if inode.fs.readonly:
            raise SyscallError(Errno.EROFS)
        acl.set_acl(t, inode, name, value)      # XATTR_CREATE/REPLACE: ignored, as Linux
        return
    check_name(name)
    _permission(t, inode, name, MAY_WRITE)
    store = inode.xattr_store(True)
    if store is None:
        raise SyscallError(Errno.EOPNOTSUPP)
    store.set(name, value, flags)


def removexattr(t: Task, inode: Inode, name: bytes) -> None:
    if acl.is_acl_name(name):
        if inode.fs.readonly:
            raise SyscallError(Errno.EROFS)
        acl.set_acl(t, inode, name, None)
        return
    check_name(name)
    _permission(t, inode, name, MAY_WRITE)
    store = inode.xattr_store(True)
    if store is None:
        raise SyscallError(Errno.EOPNOTSUPP)
    store.remove(name)


def listxattr(t: Task, inode: Inode) -> bytes:
    """The names the caller may see, each NUL-terminated (trusted.* needs CAP_SYS_ADMIN)."""
    store = inode.xattr_store(False)
    if store is None:
        return b""
    admin = _capable_admin(t)
    # The ACLs first (Linux: posix_acl_listxattr before simple_xattr_list's walk).
    return b"".join(n + b"\0" for n in acl.NAMES if n in store.attrs) + \
        b"".join(n + b"\0" for n in store.names()
                 if not acl.is_acl_name(n) and (admin or not n.startswith(b"trusted.")))
