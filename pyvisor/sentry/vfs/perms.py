"""Permission checks against sandbox credentials.  Linux: fs/namei.c (generic_permission)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.inode import Inode

MAY_EXEC, MAY_WRITE, MAY_READ = 1, 2, 4


def may_access(t: Task, inode: Inode, want: int) -> bool:
    """Whether the task's fs credentials grant `want` (MAY_* bits) on `inode`."""
    creds = t.creds
    mode = inode.mode
    if creds.fsuid == 0:
        # root bypasses everything but execute, which needs some x bit (or a directory).
        if want & MAY_EXEC and not inode.is_dir() and not mode & 0o111:
            return False
        return True
    if creds.fsuid == inode.uid:
        perm = (mode >> 6) & 7
    elif creds.fsgid == inode.gid or inode.gid in creds.groups:
        perm = (mode >> 3) & 7
    else:
        perm = mode & 7
    return perm & want == want


def check_access(t: Task, inode: Inode, want: int) -> None:
    if not may_access(t, inode, want):
        raise SyscallError(Errno.EACCES)
