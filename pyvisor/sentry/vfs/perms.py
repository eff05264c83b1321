"""Permission checks against sandbox credentials.  Linux: fs/namei.c (generic_permission)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Credentials, Task
    from pyvisor.sentry.vfs.inode import Inode

MAY_EXEC, MAY_WRITE, MAY_READ = 1, 2, 4


CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3


def needs_check(creds: Credentials) -> bool:
    """False for the common root whose capabilities were never changed (it passes
    every check but execute), so callers may skip the check on their hot path."""
    return creds.fsuid != 0 or creds.caps is not None


def fs_capable(creds: Credentials, cap: int) -> bool:
    """A file-system capability in the effective set: fsuid 0's by default, what
    capset(2) left otherwise (Linux: capable_wrt_inode_uidgid)."""
    if creds.caps is None:
        return creds.fsuid == 0
    return bool(creds.caps[0] >> cap & 1)


def may_access(t: Task, inode: Inode, want: int) -> bool:
    """Whether the task's fs credentials grant `want` (MAY_* bits) on `inode`.
    Linux: generic_permission (the mode bits, then CAP_DAC_READ_SEARCH and
    CAP_DAC_OVERRIDE)."""
    creds = t.creds
    mode = inode.mode
    if creds.fsuid == 0 and creds.caps is None:
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
    if perm & want == want:
        return True
    if inode.is_dir():
        if not want & MAY_WRITE and fs_capable(creds, CAP_DAC_READ_SEARCH):
            return True
        return fs_capable(creds, CAP_DAC_OVERRIDE)
    want &= MAY_READ | MAY_WRITE | MAY_EXEC
    if want == MAY_READ and fs_capable(creds, CAP_DAC_READ_SEARCH):
        return True
    if (not want & MAY_EXEC or mode & 0o111) and fs_capable(creds, CAP_DAC_OVERRIDE):
        return True
    return False


def check_access(t: Task, inode: Inode, want: int) -> None:
    if not may_access(t, inode, want):
        raise SyscallError(Errno.EACCES)
