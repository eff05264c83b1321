"""inotify: watches on inodes and the events VFS operations send them.

Linux: fs/notify/fsnotify.c, fs/notify/inotify/, include/linux/fsnotify.h.

A watch belongs to one inotify instance (an open file) and names an inode by
(filesystem device, inode number), as Linux's marks hang off the inode: the
key survives a dentry's eviction and re-lookup (gofer, overlay and procfs
make a new Inode object for the same file), and hard links share it.

The VFS calls the functions below where Linux calls its fsnotify hooks (the
syscall layer, after an operation succeeded):

* `file_event(f, mask)`: an operation on an open file (IN_ACCESS, IN_MODIFY,
  IN_OPEN, IN_CLOSE_*); `IN_EXCL_UNLINK` watches skip it once the file's name
  is gone (Linux: FSNOTIFY_EVENT_PATH and d_unlinked).
* `dentry_event(d, mask)`: an inode change seen through a name (IN_ATTRIB,
  IN_MODIFY of truncate): to the watches of the inode and, with the name, of
  its parent directory.
* `inode_event(inode, mask)`: to the inode's own watches only (the link count
  changing: IN_ATTRIB of link/unlink; IN_MOVE_SELF).
* `dir_event(dir, mask, name, child)`: a change of a directory's entries
  (IN_CREATE, IN_DELETE, IN_MOVED_FROM/TO).
* `unlinked(dentry, inode)`: the last link of an inode may be gone:
  IN_DELETE_SELF and IN_IGNORED now, or when the last open file on the
  dentry closes (Linux: dentry_unlink_inode at the dentry's last dput).

Every hook returns at once while no watch exists anywhere (`_watches` empty),
so a sandbox that never uses inotify pays one dict test per operation.

Concurrency: Sentry loop only; one registry per Sentry process (one sandbox).
"""

from __future__ import annotations

import struct
import weakref
from collections import deque
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.vfs import file as _file_module
from pyvisor.sentry.vfs.file import FileDescription, FileImpl
from pyvisor.sentry.waitqueue import EVENT_IN, WaitQueue

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.inode import Inode
    from pyvisor.sentry.vfs.vfs import Dentry

# Event bits and flags.  From <linux/inotify.h>.
IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_MASK_CREATE = 0x10000000
IN_MASK_ADD = 0x20000000
IN_ISDIR = 0x40000000
IN_ONESHOT = 0x80000000
IN_ALL_EVENTS = 0x00000FFF
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000
# What inotify_add_watch accepts (Linux: ALL_INOTIFY_BITS).
ALL_INOTIFY_BITS = (IN_ALL_EVENTS | IN_UNMOUNT | IN_Q_OVERFLOW | IN_IGNORED | IN_ONLYDIR
                    | IN_DONT_FOLLOW | IN_EXCL_UNLINK | IN_MASK_CREATE | IN_MASK_ADD
                    | IN_ISDIR | IN_ONESHOT)
# Events every watch receives whatever its mask.
_ALWAYS = IN_IGNORED | IN_UNMOUNT | IN_Q_OVERFLOW

_EVENT = struct.Struct("<iIII")        # struct inotify_event without its name


class Limits:
    """/proc/sys/fs/inotify/*, Linux's defaults."""

    max_user_instances = 128
    max_user_watches = 8192
    max_queued_events = 16384


class Watch:
    """One watch: an instance's interest in one inode.  Linux: struct inotify_inode_mark."""

    __slots__ = ("instance", "wd", "mask", "inode", "key")

    def __init__(self, instance: Inotify, wd: int, mask: int, inode: Inode,
                 key: tuple[int, int]) -> None:
        self.instance = instance
        self.wd = wd
        self.mask = mask
        self.inode = inode          # kept for fdinfo (and keeps overlay/gofer state alive)
        self.key = key


# (device, inode number) -> the watches on that inode, oldest first.
_watches: dict[tuple[int, int], list[Watch]] = {}
# Dentries whose last name went while they were open: IN_DELETE_SELF waits for the
# last close (Linux: the dentry's last dput).
_pending: weakref.WeakKeyDictionary[Dentry, Inode] = weakref.WeakKeyDictionary()
# Dentries unlinked from their directory (Linux: d_unlinked), for IN_EXCL_UNLINK.
_unlinked_dentries: weakref.WeakSet[Dentry] = weakref.WeakSet()
# Instances per user (max_user_instances) and watches per user (max_user_watches).
_instances_of: dict[int, int] = {}
_watches_of: dict[int, int] = {}
_kernel: object = None          # set by the first inotify_init; its tasks' files are scanned
_cookie = 0


def _key(inode: Inode) -> tuple[int, int]:
    return (inode.fs.dev, inode.ino)


def next_cookie() -> int:
    """A fresh rename cookie (Linux: fsnotify_get_cookie)."""
    global _cookie
    _cookie = (_cookie + 1) & 0xFFFFFFFF or 1
    return _cookie


def active() -> bool:
    return bool(_watches)


# -- instances ------------------------------------------------------------------------------


class Inotify(FileImpl):
    """An inotify instance: its watches and its event queue.  Linux: struct fsnotify_group."""

    splice_read = False

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self.by_wd: dict[int, Watch] = {}
        self.by_key: dict[tuple[int, int], Watch] = {}
        self.queue: deque[tuple[int, int, int, bytes]] = deque()   # wd, mask, cookie, name
        self.queued_bytes = 0
        self.overflowed = False           # the overflow event is in the queue
        self.next_wd = 1
        self.wq = WaitQueue()
        self.closed = False

    # -- events ----------------------------------------------------------------------------

    def enqueue(self, wd: int, mask: int, cookie: int, name: bytes, merge: bool = True) -> None:
        """Queues an event; an identical last event absorbs it; past max_queued_events
        one IN_Q_OVERFLOW stands for everything lost.  Linux: fsnotify_insert_event."""
        q = self.queue
        if len(q) >= Limits.max_queued_events:
            if self.overflowed:
                return
            self.overflowed = True
            ev = (-1, IN_Q_OVERFLOW, 0, b"")
        else:
            ev = (wd, mask, cookie, name)
            if merge and q and q[-1] == ev:
                return
        q.append(ev)
        self.queued_bytes += _event_size(ev[3])
        self.wq.notify(EVENT_IN)

    def deliver(self, w: Watch, mask: int, name: bytes, cookie: int, path_unlinked: bool) -> None:
        """Linux: inotify_handle_inode_event."""
        wmask = w.mask
        if not mask & (wmask | _ALWAYS) & (IN_ALL_EVENTS | _ALWAYS):
            return
        if path_unlinked and wmask & IN_EXCL_UNLINK:
            return
        if mask & (IN_MOVE_SELF | IN_DELETE_SELF):
            mask &= ~IN_ISDIR           # inotify never reported IN_ISDIR with these
        self.enqueue(w.wd, mask, cookie, name)
        if wmask & IN_ONESHOT:
            self.remove(w)

    # -- watches ---------------------------------------------------------------------------

    def add(self, inode: Inode, mask: int) -> int:
        """inotify_add_watch on a resolved inode: a new watch, or the existing one's mask
        replaced (or extended with IN_MASK_ADD)."""
        key = _key(inode)
        w = self.by_key.get(key)
        events = mask & ALL_INOTIFY_BITS & ~(IN_MASK_ADD | IN_MASK_CREATE | IN_ONLYDIR
                                              | IN_DONT_FOLLOW)
        if w is not None:
            if mask & IN_MASK_CREATE:
                raise SyscallError(Errno.EEXIST)
            if mask & IN_MASK_ADD:
                w.mask |= events
            else:
                w.mask = events
            return w.wd
        if _watches_of.get(self.uid, 0) >= Limits.max_user_watches:
            raise SyscallError(Errno.ENOSPC)
        wd = self.next_wd
        while wd in self.by_wd or wd <= 0:
            wd = wd + 1 if wd < 0x7FFFFFFF else 1
        self.next_wd = wd + 1 if wd < 0x7FFFFFFF else 1
        w = Watch(self, wd, events, inode, key)
        self.by_wd[wd] = w
        self.by_key[key] = w
        _watches.setdefault(key, []).append(w)
        _watches_of[self.uid] = _watches_of.get(self.uid, 0) + 1
        return wd

    def remove(self, w: Watch, ignored: bool = True) -> None:
        """Drops a watch, queueing IN_IGNORED.  Linux: inotify_ignored_and_remove_idr."""
        if self.by_wd.pop(w.wd, None) is None:
            return
        self.by_key.pop(w.key, None)
        lst = _watches.get(w.key)
        if lst is not None:
            try:
                lst.remove(w)
            except ValueError:
                pass
            if not lst:
                del _watches[w.key]
        _watches_of[self.uid] -= 1
        if ignored and not self.closed:
            self.enqueue(w.wd, IN_IGNORED, 0, b"", merge=False)

    # -- the file --------------------------------------------------------------------------

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        """Whole events only; EINVAL if the first does not fit.  Linux: inotify_read."""
        q = self.queue
        if not q:
            raise WouldBlock()
        out = bytearray()
        while q:
            wd, mask, cookie, name = q[0]
            size = _event_size(name)
            if len(out) + size > n:
                if not out:
                    raise SyscallError(Errno.EINVAL)
                break
            q.popleft()
            self.queued_bytes -= size
            if mask == IN_Q_OVERFLOW and wd == -1:
                self.overflowed = False
            out += _EVENT.pack(wd, mask, cookie, size - _EVENT.size)
            if name:
                out += name + bytes(size - _EVENT.size - len(name))
        return bytes(out)

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        raise SyscallError(Errno.EINVAL)

    def readiness(self, fd: FileDescription, mask: int) -> int:
        return EVENT_IN & mask if self.queue else 0

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.wq

    def ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        if cmd == 0x541B:      # FIONREAD: the bytes a read could return now
            t.copy_out(arg, struct.pack("<i", self.queued_bytes))
            return 0
        raise SyscallError(Errno.ENOTTY)

    def release(self, fd: FileDescription) -> None:
        self.closed = True
        for w in list(self.by_wd.values()):
            self.remove(w, ignored=False)
        self.queue.clear()
        self.queued_bytes = 0
        n = _instances_of.get(self.uid, 1) - 1
        if n:
            _instances_of[self.uid] = n
        else:
            _instances_of.pop(self.uid, None)

    def fdinfo(self) -> bytes:
        """The `inotify wd:...` lines of /proc/PID/fdinfo.  Linux: inotify_fdinfo."""
        out = []
        for w in reversed(list(self.by_wd.values())):      # newest first, as Linux
            ino = w.inode.ino
            fh = struct.pack("<Q", ino).hex().encode()
            out.append(b"inotify wd:%x ino:%x sdev:%x mask:%x ignored_mask:0 "
                       b"fhandle-bytes:8 fhandle-type:1 f_handle:%s\n"
                       % (w.wd, ino, w.inode.fs.dev, w.mask, fh))
        return b"".join(out)


def _event_size(name: bytes) -> int:
    """struct inotify_event plus the name, NUL-terminated, padded to 16 bytes."""
    if not name:
        return _EVENT.size
    return _EVENT.size + (len(name) + 1 + 15) // 16 * 16


def new_instance(t: Task) -> Inotify:
    """inotify_init1: EMFILE past max_user_instances."""
    global _kernel
    uid = t.creds.uid               # counted per real user, as Linux's ucounts
    if _instances_of.get(uid, 0) >= Limits.max_user_instances:
        raise SyscallError(Errno.EMFILE)
    _instances_of[uid] = _instances_of.get(uid, 0) + 1
    _kernel = t.kernel
    return Inotify(uid)


# -- sending events -----------------------------------------------------------------------------


def _send(inode: Inode, mask: int, name: bytes = b"", cookie: int = 0,
          path_unlinked: bool = False) -> None:
    lst = _watches.get((inode.fs.dev, inode.ino))
    if lst:
        for w in list(lst):
            w.instance.deliver(w, mask, name, cookie, path_unlinked)


def _to_parent_and_self(d: Dentry, inode: Inode, mask: int, path_unlinked: bool) -> None:
    """Linux: fsnotify_parent: the parent's watches hear it with the name, then the
    inode's own."""
    if inode.is_dir():
        mask |= IN_ISDIR
    p = d.parent
    if p is not None and d.name != b"/":
        _send(p.inode, mask, d.name, 0, path_unlinked)
    _send(inode, mask, b"", 0, path_unlinked)


def file_event(f: FileDescription, mask: int) -> None:
    """An operation on the open file `f` (read, write, open, close)."""
    if not _watches:
        return
    d = f.dentry
    _to_parent_and_self(d, f.inode, mask, d in _unlinked_dentries)


def dentry_event(d: Dentry, mask: int, inode: Inode | None = None) -> None:
    """An inode change seen through the name `d` (attributes, truncate, xattrs)."""
    if not _watches:
        return
    _to_parent_and_self(d, inode if inode is not None else d.inode, mask, False)


def inode_event(inode: Inode, mask: int) -> None:
    """To the inode's own watches only (Linux: fsnotify_inode)."""
    if not _watches:
        return
    if inode.is_dir():
        mask |= IN_ISDIR
    _send(inode, mask)


def dir_event(dir_inode: Inode, mask: int, name: bytes, child_is_dir: bool = False,
              cookie: int = 0) -> None:
    """A change of `dir_inode`'s entries, named (Linux: fsnotify_name)."""
    if not _watches:
        return
    if child_is_dir:
        mask |= IN_ISDIR
    _send(dir_inode, mask, name, cookie)


def attr_mask(mode: bool = False, owner: bool = False, atime: bool = False,
              mtime: bool = False, size: bool = False) -> int:
    """The event of a setattr.  Linux: fsnotify_change."""
    mask = 0
    if mode or owner:
        mask |= IN_ATTRIB
    if size:
        mask |= IN_MODIFY
    if atime and mtime:
        mask |= IN_ATTRIB
    elif atime:
        mask |= IN_ACCESS
    elif mtime:
        mask |= IN_MODIFY
    return mask


# -- removal --------------------------------------------------------------------------------------


def mark_unlinked(d: Dentry) -> None:
    """`d` no longer names its file (unlink, rmdir, rename over it)."""
    _unlinked_dentries.add(d)


def is_unlinked(d: Dentry) -> bool:
    """Whether the name `d` was removed (Linux: d_unlinked)."""
    return d in _unlinked_dentries


def _in_use(d: Dentry, skip: FileDescription | None = None) -> bool:
    """Whether an open file holds dentry `d` (Linux: a dentry reference besides the
    caller's)."""
    k = _kernel
    if k is None:
        return False
    seen: set[int] = set()
    for task in list(getattr(k, "tasks_by_tid", {}).values()):
        table = task.fd_table
        if id(table) in seen:
            continue
        seen.add(id(table))
        for f, _ in table.files.values():
            if f.dentry is d and f is not skip:
                return True
    return False


def _delete_self(inode: Inode) -> None:
    """IN_DELETE_SELF then IN_IGNORED: every watch on the inode goes."""
    lst = _watches.get((inode.fs.dev, inode.ino))
    if not lst:
        return
    for w in list(lst):
        inst = w.instance
        if w.mask & IN_DELETE_SELF:
            inst.enqueue(w.wd, IN_DELETE_SELF, 0, b"")
        inst.remove(w)


def _last_link_gone(inode: Inode) -> bool:
    if inode.is_dir():
        return True
    from pyvisor.sentry.fsimpl.overlay.overlay import OverlayInode
    if isinstance(inode, OverlayInode):
        # A lower file's name is gone with its whiteout; an upper one with its links.
        up = inode.upper
        return up is None or up.nlink <= 0
    try:
        inode.refresh()
    except SyscallError:
        return True
    return inode.nlink <= 0


def unlinked(d: Dentry, inode: Inode, is_rmdir: bool = False) -> None:
    """The name `d` of `inode` was removed: IN_DELETE_SELF once the inode has no link
    left and nothing holds the dentry open."""
    mark_unlinked(d)
    if not _watches or (inode.fs.dev, inode.ino) not in _watches:
        return
    if not is_rmdir and not _last_link_gone(inode):
        return
    if _in_use(d):
        _pending[d] = inode
        return
    _delete_self(inode)


def closed(f: FileDescription) -> None:
    """The last reference to `f` went (Linux: __fput): IN_CLOSE_*, then a deferred
    IN_DELETE_SELF if this was the last open file on an unlinked name."""
    if not _watches:
        return
    if f.flags & 0o10000000:       # O_PATH: no events
        return
    from pyvisor.abi.linux.fcntl import O_ACCMODE, O_RDONLY
    writable = f.flags & O_ACCMODE != O_RDONLY
    file_event(f, IN_CLOSE_WRITE if writable else IN_CLOSE_NOWRITE)
    d = f.dentry
    inode = _pending.get(d)
    if inode is not None and not _in_use(d, skip=f):
        del _pending[d]
        _delete_self(inode)


def _on_last_close(f: FileDescription) -> None:
    if _watches:
        closed(f)


_file_module.on_last_close = _on_last_close


def unmounted(inodes: list[Inode]) -> None:
    """A filesystem went away under these watched inodes: IN_UNMOUNT, IN_IGNORED."""
    for inode in inodes:
        lst = _watches.get((inode.fs.dev, inode.ino))
        mask = IN_UNMOUNT | (IN_ISDIR if inode.is_dir() else 0)
        for w in list(lst or ()):
            w.instance.enqueue(w.wd, mask, 0, b"")
            w.instance.remove(w)


def watched_on(dev: int) -> list[Inode]:
    """The watched inodes of the filesystem with device `dev`."""
    return [lst[0].inode for (d, _), lst in list(_watches.items()) if d == dev and lst]
