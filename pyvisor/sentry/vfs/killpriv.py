"""Privileges a write takes away.  Linux: fs/inode.c (file_remove_privs,
should_remove_suid), security/commoncap.c (cap_inode_killpriv).

A write or truncate through a file that changes its data removes the file's
setuid bit, its setgid bit when group-execute is set, unless the writer has
CAP_FSETID, and always its file capabilities (security.capability), so a
modified program does not keep the privileges granted to the original.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_FSETID
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.file import FileDescription

_S_ISUID, _S_ISGID, _S_IXGRP = 0o4000, 0o2000, 0o010
_CAPABILITY = b"security.capability"


def file_remove_privs(t: Task, f: FileDescription) -> None:
    """After data was written to `f` (a regular file)."""
    inode = f.inode
    mode = inode.mode
    kill = mode & _S_ISUID
    if mode & _S_ISGID and mode & _S_IXGRP:
        kill |= _S_ISGID
    if kill and not t.creds.capable(CAP_FSETID):
        try:
            inode.setattr(mode=mode & 0o7777 & ~kill)
        except SyscallError:
            pass                      # a read-only or remote inode: keeps its bits
    store = inode.xattr_store(False)
    if store is not None and _CAPABILITY in store.attrs:
        try:
            store.remove(_CAPABILITY)
        except SyscallError:
            pass
