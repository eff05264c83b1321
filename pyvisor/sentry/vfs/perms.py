"""Permission checks against sandbox credentials.  Linux: fs/namei.c (generic_permission)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs import acl

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Credentials, Task
    from pyvisor.sentry.vfs.inode import Inode

MAY_EXEC, MAY_WRITE, MAY_READ = 1, 2, 4


def may_access(t: Task, inode: Inode, want: int) -> bool:
    """Whether the task's fs credentials grant `want` (MAY_* bits) on `inode`: the mode's
    owner bits for the owner, else the access ACL if there is one (acl.py), else the
    mode's group or other bits; failing that CAP_DAC_READ_SEARCH (reading, searching a
    directory) or CAP_DAC_OVERRIDE (anything but executing a file with no x bit).
    Linux: generic_permission."""
    creds = t.creds
    mode = inode.mode
    granted = None
    if creds.fsuid == inode.uid:
        perm = (mode >> 6) & 7
    else:
        granted = acl.permission(creds, inode, want)
        if creds.in_group(inode.gid):
            perm = (mode >> 3) & 7
        else:
            perm = mode & 7
    if granted or granted is None and perm & want == want:
        return True
    if inode.is_dir():
        if not want & MAY_WRITE and capable_wrt_inode(creds, inode, CAP_DAC_READ_SEARCH):
            return True
        return capable_wrt_inode(creds, inode, CAP_DAC_OVERRIDE)
    if want & (MAY_READ | MAY_WRITE | MAY_EXEC) == MAY_READ and \
            capable_wrt_inode(creds, inode, CAP_DAC_READ_SEARCH):
        return True
    if (not want & MAY_EXEC or mode & 0o111) and \
            capable_wrt_inode(creds, inode, CAP_DAC_OVERRIDE):
        return True
    return False


def capable_wrt_inode(creds: Credentials, inode: Inode, cap: int) -> bool:
    """capable_wrt_inode_uidgid: `cap` in the caller's user namespace, and the inode's
    owner and group mapped there (kernel/namespaces.py)."""
    if creds.userns is None:
        return creds.capable(cap)
    from pyvisor.sentry.kernel import namespaces as N
    return N.ns_capable(creds, creds.userns, cap) and N.has_mapping(creds, inode.uid) and \
        N.has_mapping(creds, inode.gid, False)


def owner_or_capable(t: Task, inode: Inode) -> bool:
    """inode_owner_or_capable: the fsuid owns it, or CAP_FOWNER."""
    return t.creds.fsuid == inode.uid or capable_wrt_inode(t.creds, inode, CAP_FOWNER)


def check_access(t: Task, inode: Inode, want: int) -> None:
    if not may_access(t, inode, want):
        raise SyscallError(Errno.EACCES)
