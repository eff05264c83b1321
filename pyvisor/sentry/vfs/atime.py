"""Access times on reads.  Linux: fs/inode.c (touch_atime, relatime_need_update).

A read of a file or a listing of a directory moves its atime to now: always on a
strictatime mount, else under the relatime rule Linux mounts use by default: only when the atime is not after
the mtime or the ctime, or is a day old.  O_NOATIME, noatime mounts and
nodiratime (for directories) leave it alone.  Host-backed inodes take the
host's own update at their next refresh; the value set here only bridges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.fcntl import O_NOATIME
from pyvisor.sentry.vfs.inode import now_ns

if TYPE_CHECKING:
    from pyvisor.sentry.vfs.file import FileDescription
    from pyvisor.sentry.vfs.inode import Inode
    from pyvisor.sentry.vfs.vfs import Mount

_DAY_NS = 24 * 3600 * 10**9


def touch_atime(f: FileDescription) -> None:
    """After a read or getdents of `f`."""
    if not f.flags & O_NOATIME:
        touch_inode(f.inode, f.mount)


def touch_inode(inode: Inode, mount: Mount) -> None:
    """After `inode` was read through `mount` (a symlink followed, too)."""
    if inode.fs.readonly:
        return
    opts = str(mount.options).split(",") if mount is not None and mount.options else []
    if "noatime" in opts:
        return
    if "strictatime" in opts:               # every access (MS_STRICTATIME)
        inode.atime_ns = now_ns()
        return
    at = inode.atime_ns
    if at <= inode.mtime_ns or at <= inode.ctime_ns:
        inode.atime_ns = now_ns()
        return
    now = now_ns()
    if now - at >= _DAY_NS:
        inode.atime_ns = now
