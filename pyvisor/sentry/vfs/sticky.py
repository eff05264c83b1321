"""The sticky bit of directories.  Linux: fs/namei.c (check_sticky, may_delete).

In a directory with S_ISVTX, a name may be removed or renamed away (or
replaced by a rename) only by the owner of the file, the owner of the
directory, or a task with CAP_FOWNER: anyone else gets EPERM, even with write
permission on the directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_FOWNER
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.stat import S_ISVTX
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.inode import Inode


def check_sticky(t: Task, directory: Inode, victim: Inode) -> None:
    """EPERM if `t` may not remove `victim` from the sticky `directory`."""
    if not directory.mode & S_ISVTX:
        return
    fsuid = t.creds.fsuid
    if victim.uid == fsuid or directory.uid == fsuid or t.creds.capable(CAP_FOWNER):
        return
    raise SyscallError(Errno.EPERM)
