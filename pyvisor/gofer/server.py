"""The Gofer process: serves one host directory tree to the Sentry.
gVisor: runsc/fsgofer (lisafs server).

The Sentry holds files by fid, a small integer naming a server-side node that
owns an O_PATH|O_NOFOLLOW host fd (lisafs: ControlFD). Confinement rests on
three rules, so no request can reach a host file outside the root:

* Lookups go one component at a time, relative to a directory fd the server
  already holds, with O_NOFOLLOW; names are single components (never empty,
  ".", "..", or containing "/" or NUL). Symlinks are never followed: the
  Sentry resolves them itself from readlink.
* Nothing is reopened through /proc/self/fd (a magic link). A directory is
  reopened as "." relative to its own O_PATH fd; any other file as its name
  relative to its parent directory's fd, with O_NOFOLLOW, and the result is
  checked to be the same inode.
* Only regular files and directories are ever opened: FIFOs, sockets and
  device nodes in the tree are the Sentry's business, never the host's.

To reopen a non-directory the server remembers its parent node and name; the
parent's fd stays open while any child node refers to it (refcounted), and
unlink/rename through the Gofer update those names. Changes made on the host
behind the Gofer's back can leave a name stale: reopening then fails with
ENOENT or ESTALE, never reaches another file outside the root.

Concurrency: one thread; one request is served at a time. No locks.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import logging
import os
import resource
import signal
import socket
import stat
import struct
from typing import Callable, Sequence

from pyvisor.gofer import protocol
from pyvisor.gofer.protocol import (
    CREATE_FLAGS, CREATE_REQ, DIRENT, ERRNO, FID, FID_STAT, LINK_REQ,
    MKDIR_REQ, MKNOD_REQ, NAME_LEN, OPEN_FLAGS, OPEN_REQ, PATH_MAX,
    RENAME2_FLAGS, RENAME2_REQ, RENAME_REQ, SETATTR_ALL, SETATTR_REQ, STAT, STATFS, SYMLINK_REQ,
    UNLINK_REQ, Channel, FrameTooLarge, Op, SetattrMask, check_name,
    stat_fields,
)

log = logging.getLogger(__name__)

_O_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
# Added to every open. O_NONBLOCK keeps the server from blocking if a FIFO
# is swapped in under a name, or on a lease break; it has no effect on the
# reads and writes of the regular files and directories donated.
_OPEN_ALWAYS = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK

# From <sys/prctl.h>.
_PR_SET_PDEATHSIG = 1


def _error(code: int) -> OSError:
    """Returns an OSError carrying errno `code`."""
    return OSError(code, os.strerror(code))


class _Node:
    """A host file held by one fid (lisafs: ControlFD plus its Node).

    A directory needs nothing but its own fd; other files also keep their
    parent directory node and name, to be reopened by name. `refs` counts the
    fid (while open) plus child nodes naming this one as parent; the fd is
    closed when it reaches zero.
    """

    __slots__ = ("fd", "fmt", "dev", "ino", "parent", "name", "refs")

    def __init__(self, fd: int, st: os.stat_result, parent: _Node | None,
                 name: bytes) -> None:
        self.fd = fd                      # owned: O_PATH|O_NOFOLLOW host fd
        self.fmt = stat.S_IFMT(st.st_mode)  # immutable: inodes keep their type
        self.dev = st.st_dev              # immutable
        self.ino = st.st_ino              # immutable
        self.parent: _Node | None = None  # None for dirs and unlinked files
        self.name = name
        self.refs = 1
        if parent is not None and self.fmt != stat.S_IFDIR:
            parent.refs += 1
            self.parent = parent

    @property
    def is_dir(self) -> bool:
        return self.fmt == stat.S_IFDIR

    def is_at(self, directory: _Node, name: bytes) -> bool:
        """Reports whether this node was reached as `name` in `directory`."""
        p = self.parent
        return (p is not None and self.name == name and p.ino == directory.ino
                and p.dev == directory.dev)

    def location(self) -> tuple[int, bytes]:
        """Returns (dir fd, name) naming this file without following links."""
        if self.fmt == stat.S_IFDIR:
            return self.fd, b"."
        if self.parent is None:
            raise _error(errno.ENOENT)    # unlinked through the Gofer
        return self.parent.fd, self.name


def _release(node: _Node | None) -> int:
    """Drops one reference, closing fds of nodes that reach zero; returns how many."""
    closed = 0
    while node is not None:
        node.refs -= 1
        if node.refs:
            break
        os.close(node.fd)
        closed += 1
        parent, node.parent = node.parent, None
        node = parent
    return closed


def _reparent(node: _Node, parent: _Node | None, name: bytes) -> int:
    """Moves a non-directory node to `name` in `parent` (None: unlinked).

    Returns the number of fds closed (a parent left without references)."""
    if parent is not None:
        parent.refs += 1
    old, node.parent, node.name = node.parent, parent, name
    return _release(old)


class _StatFS(ctypes.Structure):
    """struct statfs on 64-bit Linux. From <bits/statfs.h>."""

    _fields_ = [
        ("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long),
        ("f_blocks", ctypes.c_ulong), ("f_bfree", ctypes.c_ulong),
        ("f_bavail", ctypes.c_ulong), ("f_files", ctypes.c_ulong),
        ("f_ffree", ctypes.c_ulong), ("f_fsid", ctypes.c_int * 2),
        ("f_namelen", ctypes.c_long), ("f_frsize", ctypes.c_long),
        ("f_flags", ctypes.c_long), ("f_spare", ctypes.c_long * 4),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fstatfs.argtypes = [ctypes.c_int, ctypes.POINTER(_StatFS)]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong, ctypes.c_ulong]


def _fstatfs(fd: int) -> _StatFS:
    """fstatfs(2), which os lacks (os.fstatvfs has no f_type)."""
    buf = _StatFS()
    if _libc.fstatfs(fd, ctypes.byref(buf)) != 0:
        raise _error(ctypes.get_errno())
    return buf


def _d_type(entry: os.DirEntry) -> int:
    """Returns an entry's DT_* type (S_IFMT >> 12), stat-ing only if needed."""
    if entry.is_symlink():
        return stat.S_IFLNK >> 12
    if entry.is_dir(follow_symlinks=False):
        return stat.S_IFDIR >> 12
    if entry.is_file(follow_symlinks=False):
        return stat.S_IFREG >> 12
    try:
        return stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode) >> 12
    except OSError:
        return 0      # DT_UNKNOWN: gone since the directory was read


class _Server:
    """The fid table and the op handlers of one connection.

    Each handler takes the request payload and returns (reply payload, fd to
    donate or -1); it raises OSError for an errno reply and struct.error
    (EINVAL) for a malformed payload.
    """

    def __init__(self, chan: Channel, root_fd: int, readonly: bool,
                 max_nodes: int) -> None:
        self._chan = chan
        self._root_fd = root_fd           # borrowed; never closed here
        self._readonly = readonly
        self._fids: dict[int, _Node] = {}
        self._nfds = 0                    # open node fds (the fd budget's main user)
        self._max_nodes = max_nodes       # immutable: RLIMIT_NOFILE minus a reserve
        self._next_fid = 1
        self._handlers: dict[int, Callable[[memoryview], tuple[bytes, int]]] = {
            Op.ATTACH: self._attach, Op.WALK: self._walk,
            Op.WALK_MANY: self._walk_many, Op.STAT: self._stat,
            Op.OPEN: self._open, Op.READDIR: self._readdir,
            Op.READLINK: self._readlink, Op.CLOSE: self._close,
            Op.STATFS: self._statfs, Op.CREATE: self._create,
            Op.MKDIR: self._mkdir, Op.MKNOD: self._mknod,
            Op.SYMLINK: self._symlink, Op.LINK: self._link,
            Op.UNLINK: self._unlink, Op.RENAME: self._rename,
            Op.SETATTR: self._setattr, Op.RENAME2: self._rename2,
        }

    # The loop.

    def run(self) -> None:
        """Serves requests until the peer closes the socket."""
        try:
            while True:
                try:
                    msg = self._chan.recv()
                except FrameTooLarge:
                    self._chan.send(errno.EMSGSIZE)
                    continue
                if msg is None:
                    return
                code, payload, _ = msg
                err, reply, fd = self._dispatch(code, payload)
                try:
                    if fd < 0:
                        self._chan.send(err, reply)
                    else:
                        self._chan.send(err, reply, (fd,))
                finally:
                    if fd >= 0:
                        os.close(fd)
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            for node in self._fids.values():
                self._nfds -= _release(node)
            self._fids.clear()

    def _dispatch(self, code: int,
                  payload: memoryview) -> tuple[int, bytes, int]:
        """Runs one handler: returns (errno or 0, reply payload, fd or -1)."""
        handler = self._handlers.get(code)
        if handler is None:
            return errno.EINVAL, b"", -1
        try:
            reply, fd = handler(payload)
            return 0, reply, fd
        except OSError as e:
            return e.errno or errno.EIO, b"", -1
        except (struct.error, ValueError, OverflowError):
            return errno.EINVAL, b"", -1
        except Exception:   # a server bug: report it, keep serving
            log.exception("gofer: op %d failed", code)
            return errno.EIO, b"", -1

    # Fid table.

    def _node(self, fid: int) -> _Node:
        try:
            return self._fids[fid]
        except KeyError:
            raise _error(errno.EBADF) from None

    def _dir(self, fid: int) -> _Node:
        node = self._node(fid)
        if not node.is_dir:
            raise _error(errno.ENOTDIR)
        return node

    def _need_node(self) -> None:
        """ENFILE unless a new node's fd fits the budget; called before any host
        change, so a request refused for want of fds has done nothing (the
        Sentry releases fids and asks again)."""
        if self._nfds >= self._max_nodes:
            raise _error(errno.ENFILE)

    def _install(self, node: _Node) -> int:
        fid = self._next_fid
        self._next_fid += 1
        self._fids[fid] = node
        return fid

    def _lookup(self, parent: _Node, name: bytes) -> tuple[int, _Node,
                                                            os.stat_result]:
        """Walks one component: returns (new fid, its node, its lstat)."""
        check_name(name)
        if not parent.is_dir:
            raise _error(errno.ENOTDIR)
        self._need_node()
        fd = os.open(name, _O_PATH_FLAGS, dir_fd=parent.fd)
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        node = _Node(fd, st, parent, name)
        self._nfds += 1
        return self._install(node), node, st

    def _writable(self) -> None:
        if self._readonly:
            raise _error(errno.EROFS)

    # Lookup and attributes.

    def _attach(self, p: memoryview) -> tuple[bytes, int]:
        if len(p):
            raise _error(errno.EINVAL)
        self._need_node()
        fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                     dir_fd=self._root_fd)
        st = os.fstat(fd)
        self._nfds += 1
        fid = self._install(_Node(fd, st, None, b"."))
        return FID_STAT.pack(fid, *stat_fields(st)), -1

    def _walk(self, p: memoryview) -> tuple[bytes, int]:
        (fid,) = FID.unpack_from(p)
        new_fid, _, st = self._lookup(self._node(fid), bytes(p[FID.size:]))
        return FID_STAT.pack(new_fid, *stat_fields(st)), -1

    def _walk_many(self, p: memoryview) -> tuple[bytes, int]:
        (fid,) = FID.unpack_from(p)
        node = self._node(fid)
        names = []
        off = FID.size
        while off < len(p):
            (n,) = NAME_LEN.unpack_from(p, off)
            off += NAME_LEN.size
            if off + n > len(p):
                raise _error(errno.EINVAL)
            names.append(bytes(p[off:off + n]))
            off += n
        parts = []
        err = 0
        for name in names:
            try:
                new_fid, node, st = self._lookup(node, name)
            except OSError as e:
                err = e.errno or errno.EIO
                break
            parts.append(FID_STAT.pack(new_fid, *stat_fields(st)))
            if not node.is_dir:
                break
        return ERRNO.pack(err) + b"".join(parts), -1

    def _stat(self, p: memoryview) -> tuple[bytes, int]:
        (fid,) = FID.unpack(p)
        return STAT.pack(*stat_fields(os.fstat(self._node(fid).fd))), -1

    def _statfs(self, p: memoryview) -> tuple[bytes, int]:
        (fid,) = FID.unpack(p)
        s = _fstatfs(self._node(fid).fd)
        return STATFS.pack(s.f_type, s.f_bsize, s.f_blocks, s.f_bfree,
                           s.f_bavail, s.f_files, s.f_ffree, s.f_namelen), -1

    def _readlink(self, p: memoryview) -> tuple[bytes, int]:
        (fid,) = FID.unpack(p)
        node = self._node(fid)
        if node.fmt != stat.S_IFLNK:
            raise _error(errno.EINVAL)
        # readlinkat(fd, "") reads the link an O_PATH|O_NOFOLLOW fd refers to.
        return os.readlink(b"", dir_fd=node.fd), -1

    def _close(self, p: memoryview) -> tuple[bytes, int]:
        if not len(p) or len(p) % FID.size:
            raise _error(errno.EINVAL)
        unknown = False
        for (fid,) in FID.iter_unpack(p):
            node = self._fids.pop(fid, None)
            if node is None:
                unknown = True
            else:
                self._nfds -= _release(node)
        if unknown:
            raise _error(errno.EBADF)
        return b"", -1

    # Opening and reading.

    def _open(self, p: memoryview) -> tuple[bytes, int]:
        fid, flags = OPEN_REQ.unpack(p)
        node = self._node(fid)
        acc = flags & os.O_ACCMODE
        if flags & ~OPEN_FLAGS or acc == os.O_ACCMODE:
            raise _error(errno.EINVAL)
        if self._readonly and (acc != os.O_RDONLY or flags & os.O_TRUNC):
            raise _error(errno.EROFS)
        return b"", self._reopen(node, flags)

    def _reopen(self, node: _Node, flags: int) -> int:
        """Opens the file `node` holds with `flags`; returns the new fd."""
        if node.fmt == stat.S_IFLNK:
            raise _error(errno.ELOOP)
        if node.fmt == stat.S_IFSOCK:
            raise _error(errno.ENXIO)
        if node.fmt not in (stat.S_IFREG, stat.S_IFDIR):
            raise _error(errno.EPERM)   # FIFOs, devices: never the host's
        dir_fd, name = node.location()
        fd = os.open(name, flags | _OPEN_ALWAYS, dir_fd=dir_fd)
        if node.fmt == stat.S_IFDIR:
            return fd                   # "." of its own fd: the same inode
        try:
            st = os.fstat(fd)
            if st.st_ino != node.ino or st.st_dev != node.dev:
                raise _error(errno.ESTALE)  # replaced on the host meanwhile
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _readdir(self, p: memoryview) -> tuple[bytes, int]:
        (fid,) = FID.unpack(p)
        node = self._dir(fid)
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | _OPEN_ALWAYS,
                     dir_fd=node.fd)
        parts = []
        size = 0
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    name = os.fsencode(entry.name)
                    parts.append(DIRENT.pack(entry.inode(), _d_type(entry),
                                             len(name)))
                    parts.append(name)
                    size += DIRENT.size + len(name)
                    if size > protocol.MAX_PAYLOAD:
                        raise _error(errno.EOVERFLOW)
        finally:
            os.close(fd)
        return b"".join(parts), -1

    # Mutations.

    def _create(self, p: memoryview) -> tuple[bytes, int]:
        fid, flags, mode = CREATE_REQ.unpack_from(p)
        name = bytes(p[CREATE_REQ.size:])
        self._writable()
        check_name(name)
        parent = self._dir(fid)
        if flags & ~CREATE_FLAGS or flags & os.O_ACCMODE == os.O_ACCMODE:
            raise _error(errno.EINVAL)
        self._need_node()
        fd = os.open(name, flags | os.O_CREAT | os.O_EXCL | _OPEN_ALWAYS,
                     mode & 0o7777, dir_fd=parent.fd)
        try:
            new_fid, node, st = self._lookup(parent, name)
            if st.st_ino != os.fstat(fd).st_ino:
                self._drop(new_fid)
                raise _error(errno.ESTALE)
        except BaseException:
            os.close(fd)
            raise
        return FID_STAT.pack(new_fid, *stat_fields(st)), fd

    def _drop(self, fid: int) -> None:
        self._nfds -= _release(self._fids.pop(fid))

    def _mkdir(self, p: memoryview) -> tuple[bytes, int]:
        fid, mode = MKDIR_REQ.unpack_from(p)
        name = bytes(p[MKDIR_REQ.size:])
        self._writable()
        check_name(name)
        parent = self._dir(fid)
        self._need_node()
        os.mkdir(name, mode & 0o7777, dir_fd=parent.fd)
        new_fid, _, st = self._lookup(parent, name)
        return FID_STAT.pack(new_fid, *stat_fields(st)), -1

    def _mknod(self, p: memoryview) -> tuple[bytes, int]:
        MKNOD_REQ.unpack_from(p)
        self._writable()
        raise _error(errno.EPERM)   # device nodes and FIFOs live in the Sentry

    def _symlink(self, p: memoryview) -> tuple[bytes, int]:
        fid, n = SYMLINK_REQ.unpack_from(p)
        off = SYMLINK_REQ.size
        name, target = bytes(p[off:off + n]), bytes(p[off + n:])
        self._writable()
        if len(name) != n or not target or b"\0" in target:
            raise _error(errno.EINVAL)
        if len(target) >= PATH_MAX:
            raise _error(errno.ENAMETOOLONG)
        check_name(name)
        parent = self._dir(fid)
        self._need_node()
        os.symlink(target, name, dir_fd=parent.fd)
        new_fid, _, st = self._lookup(parent, name)
        return FID_STAT.pack(new_fid, *stat_fields(st)), -1

    def _link(self, p: memoryview) -> tuple[bytes, int]:
        target_fid, dir_fid = LINK_REQ.unpack_from(p)
        name = bytes(p[LINK_REQ.size:])
        self._writable()
        check_name(name)
        target, parent = self._node(target_fid), self._dir(dir_fid)
        if target.is_dir:
            raise _error(errno.EPERM)
        src_dir, src_name = target.location()
        self._need_node()
        os.link(src_name, name, src_dir_fd=src_dir, dst_dir_fd=parent.fd,
                follow_symlinks=False)
        new_fid, _, st = self._lookup(parent, name)
        return FID_STAT.pack(new_fid, *stat_fields(st)), -1

    def _unlink(self, p: memoryview) -> tuple[bytes, int]:
        fid, is_dir = UNLINK_REQ.unpack_from(p)
        name = bytes(p[UNLINK_REQ.size:])
        self._writable()
        check_name(name)
        parent = self._dir(fid)
        if is_dir:
            os.rmdir(name, dir_fd=parent.fd)
        else:
            os.unlink(name, dir_fd=parent.fd)
        for node in self._fids.values():
            if node.is_at(parent, name):
                self._nfds -= _reparent(node, None, b"")
        return b"", -1

    def _rename(self, p: memoryview) -> tuple[bytes, int]:
        old_fid, new_fid, n = RENAME_REQ.unpack_from(p)
        off = RENAME_REQ.size
        old_name, new_name = bytes(p[off:off + n]), bytes(p[off + n:])
        self._writable()
        if len(old_name) != n:
            raise _error(errno.EINVAL)
        check_name(old_name)
        check_name(new_name)
        old_dir, new_dir = self._dir(old_fid), self._dir(new_fid)
        os.rename(old_name, new_name, src_dir_fd=old_dir.fd,
                  dst_dir_fd=new_dir.fd)
        self._renamed(old_dir, old_name, new_dir, new_name)
        return b"", -1

    def _rename2(self, p: memoryview) -> tuple[bytes, int]:
        """renameat2(2) with RENAME_NOREPLACE or RENAME_EXCHANGE."""
        old_fid, new_fid, n, flags = RENAME2_REQ.unpack_from(p)
        off = RENAME2_REQ.size
        old_name, new_name = bytes(p[off:off + n]), bytes(p[off + n:])
        self._writable()
        if len(old_name) != n or flags & ~RENAME2_FLAGS or flags == RENAME2_FLAGS:
            raise _error(errno.EINVAL)
        check_name(old_name)
        check_name(new_name)
        old_dir, new_dir = self._dir(old_fid), self._dir(new_fid)
        if _libc.syscall(316, old_dir.fd, old_name, new_dir.fd, new_name, flags) != 0:
            raise _error(ctypes.get_errno())
        if flags & 2:                  # RENAME_EXCHANGE: the two names swap their nodes
            a = [x for x in self._fids.values() if x.is_at(old_dir, old_name)]
            b = [x for x in self._fids.values() if x.is_at(new_dir, new_name)]
            for node in a:
                self._nfds -= _reparent(node, new_dir, new_name)
            for node in b:
                self._nfds -= _reparent(node, old_dir, old_name)
        else:
            self._renamed(old_dir, old_name, new_dir, new_name)
        return b"", -1

    def _renamed(self, old_dir: _Node, old_name: bytes, new_dir: _Node,
                 new_name: bytes) -> None:
        """Updates the names of non-directory nodes after a rename.

        Directories need nothing: they are reopened through their own fd.
        Cost: a scan of the fid table, acceptable as renames are rare.
        """
        try:
            os.stat(old_name, dir_fd=old_dir.fd, follow_symlinks=False)
            return    # still there: old and new were links to one inode
        except FileNotFoundError:
            pass
        moved = []
        for node in self._fids.values():
            if node.is_at(new_dir, new_name):
                self._nfds -= _reparent(node, None, b"")  # the replaced file
            elif node.is_at(old_dir, old_name):
                moved.append(node)
        for node in moved:
            self._nfds -= _reparent(node, new_dir, new_name)

    def _setattr(self, p: memoryview) -> tuple[bytes, int]:
        fid, mask, mode, uid, gid, size, atime, mtime = SETATTR_REQ.unpack(p)
        node = self._node(fid)
        if mask & ~SETATTR_ALL:
            raise _error(errno.EINVAL)
        if mask:
            self._writable()
        if mask == SetattrMask.MODE and node.parent is None and not node.is_dir \
                and node.fmt != stat.S_IFLNK:
            # A file unlinked while open (fchmod of its fd): by its own O_PATH fd
            # (fchmodat2 AT_EMPTY_PATH, Linux 6.6+); other attributes still need a name.
            if _libc.syscall(452, node.fd, b"", mode & 0o7777, 0x1000) != 0:
                raise _error(ctypes.get_errno())
            return STAT.pack(*stat_fields(os.fstat(node.fd))), -1
        dir_fd, name = node.location() if mask else (-1, b"")
        # chown first (it may clear set-id bits), times last (size sets mtime).
        # Not atomic: a later step failing leaves the earlier ones done.
        if mask & SetattrMask.UID_GID:
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        if mask & SetattrMask.MODE:
            self._chmod(node, dir_fd, name, mode)
        if mask & SetattrMask.SIZE:
            self._truncate(node, size)
        if mask & (SetattrMask.ATIME | SetattrMask.MTIME):
            if mask & (SetattrMask.ATIME | SetattrMask.MTIME) != (
                    SetattrMask.ATIME | SetattrMask.MTIME):
                st = os.fstat(node.fd)  # keep the other time as it is
                if not mask & SetattrMask.ATIME:
                    atime = st.st_atime_ns
                if not mask & SetattrMask.MTIME:
                    mtime = st.st_mtime_ns
            os.utime(name, ns=(atime, mtime), dir_fd=dir_fd,
                     follow_symlinks=False)
        return STAT.pack(*stat_fields(os.fstat(node.fd))), -1

    @staticmethod
    def _chmod(node: _Node, dir_fd: int, name: bytes, mode: int) -> None:
        if node.fmt == stat.S_IFLNK:
            raise _error(errno.EOPNOTSUPP)  # as fchmodat2(AT_SYMLINK_NOFOLLOW)
        # fchmodat2(AT_SYMLINK_NOFOLLOW) (Linux 6.6): glibc's fchmodat emulates the flag
        # through /proc/self/fd, which a pivoted Gofer does not have.
        if _libc.syscall(452, dir_fd, name, mode & 0o7777, 0x100) == 0:
            return
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise _error(err)
        # An older host kernel: the node was checked not to be a symlink above.
        os.chmod(name, mode & 0o7777, dir_fd=dir_fd)

    def _truncate(self, node: _Node, size: int) -> None:
        if node.is_dir:
            raise _error(errno.EISDIR)
        if node.fmt != stat.S_IFREG:
            raise _error(errno.EINVAL)
        fd = self._reopen(node, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)


# Fds a Gofer keeps outside its nodes: stdio on /dev/null, the socket, the
# root, and at most two at a time for a request (a reopened file to donate,
# a directory being read and scandir's duplicate of it).
GOFER_FD_RESERVE = 32


def fd_budget() -> int:
    """The RLIMIT_NOFILE this process runs with (its fd budget)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def serve(sock: socket.socket, root_fd: int, readonly: bool,
          max_nodes: int | None = None) -> None:
    """Serves gofer requests on `sock` for the tree at `root_fd` until EOF.

    `root_fd` is a directory fd (O_PATH is enough); it is borrowed, not
    closed. Creation modes are passed to the host as given, so callers should
    run with umask 0 (start_gofer's child does): the Sentry applies the
    application's umask itself. Nodes (one fd each) are limited to
    `max_nodes`, by default this process's RLIMIT_NOFILE less
    GOFER_FD_RESERVE: past that, requests get ENFILE.
    """
    if max_nodes is None:
        max_nodes = max(1, fd_budget() - GOFER_FD_RESERVE)
    _Server(Channel(sock), root_fd, readonly, max_nodes).run()


def start_gofer(root: str, readonly: bool, confine: bool = False,
                nofile: int | None = None, files: Sequence[str] = ()
                ) -> tuple[socket.socket, int]:
    """Forks a Gofer serving `root`; returns (our socket end, child pid).

    With `files` (file bind mounts; confined Gofers only) it serves instead a
    directory holding just those files, named "0", "1", ... in order: a tmpfs of
    the Gofer's own mount namespace (mounted over `root`, any existing directory,
    which it covers and never changes) with each file bind-mounted into it, so
    the files' siblings are out of its reach.  runsc's gofer serves file mounts
    one by one; one Gofer for all of a sandbox's read-only (or read-write) files
    saves a process and its ~0.1 s of confinement per file.

    The child dies with the calling thread (PR_SET_PDEATHSIG; note that it is
    the thread, not the process, that counts), and exits when our end of
    the socket is closed. The caller reaps it with os.waitpid. `nofile`: the
    Gofer's fd budget (RLIMIT_NOFILE); None keeps the caller's.
    """
    if files and not confine:
        raise ValueError("a Gofer of single files needs a mount namespace (confine)")
    fds: list[int] = []
    try:
        for f in files:
            fds.append(os.open(os.path.realpath(f), _O_PATH_FLAGS))
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        fds.append(root_fd)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    parent_pid = os.getpid()
    try:
        pid = os.fork()
    except BaseException:
        for fd in fds:
            os.close(fd)
        ours.close()
        theirs.close()
        raise
    if pid == 0:
        _child_main(ours, theirs, root_fd, readonly, parent_pid, root if confine else None,
                    nofile, [(os.path.realpath(f), fd) for f, fd in zip(files, fds)])
    for fd in fds:
        os.close(fd)
    theirs.close()
    return ours, pid


def _child_main(ours: socket.socket, theirs: socket.socket, root_fd: int,
                readonly: bool, parent_pid: int, confine_root: str | None = None,
                nofile: int | None = None, files: Sequence[tuple[str, int]] = ()) -> None:
    """Runs in the forked child: isolate, serve, exit. Never returns."""
    status = 1
    try:
        # Objects inherited from the parent may own fds whose numbers we are
        # about to close and reuse; never let the collector finalize them.
        gc.freeze()
        gc.enable()         # off while the launcher and the Sentry started (__main__.py)
        ours.detach()
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)         # the parent died before prctl took effect
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.setsid()     # no terminal signals reach a Gofer (^C in the sandbox's pty)
        _close_fds_except(theirs.fileno(), root_fd, *(fd for _, fd in files))
        os.umask(0)
        if nofile is not None:
            from pyvisor.runtime.confine import set_fd_budget
            set_fd_budget(nofile)     # before dropping CAP_SYS_RESOURCE
        max_nodes = max(1, fd_budget() - GOFER_FD_RESERVE)   # before seccomp
        if confine_root is not None:
            # Imported before pivoting: afterwards no module file is reachable.
            from pyvisor.seccomp.filters import install_gofer_filter
            root_fd = _confine(confine_root, root_fd, readonly, files)
            install_gofer_filter(sock_fd=theirs.fileno())
        serve(theirs, root_fd, readonly, max_nodes)
        status = 0
    finally:
        os._exit(status)


# Capabilities a Gofer keeps, by read-only-ness: enough to serve files as the sandbox's
# root would see them. Read-only: read any file and search any directory, nothing
# else (the tree is read-only, so CAP_DAC_OVERRIDE's write access is moot and it goes).
# Writable: also write, chown, chmod and utime files of other owners.
_CAP_CHOWN, _CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER, _CAP_FSETID = 0, 1, 2, 3, 4
GOFER_CAPS = {
    True: frozenset({_CAP_DAC_READ_SEARCH}),
    False: frozenset({_CAP_CHOWN, _CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER,
                      _CAP_FSETID}),
}


def _confine(root: str, root_fd: int, readonly: bool,
             files: Sequence[tuple[str, int]] = ()) -> int:
    """Pivots into the served tree and drops privileges.  Returns the new root fd.

    New mount/IPC/UTS/network namespaces, mounts private. The host's pseudo
    filesystems below the tree (/proc, /sys, /dev and anything of a PSEUDO_FS
    type: the Sentry has its own procfs, sysfs and devfs) are detached; the tree
    (with its remaining submounts) becomes the Gofer's whole root, and every
    mount in it nosuid, nodev, noexec, and read-only for read-only Gofers,
    recursively. The capability bounding and permitted sets keep only the file
    capabilities the Gofer serves with (read-only: CAP_DAC_READ_SEARCH alone);
    no_new_privs. The seccomp allow-list follows (_child_main).
    With `files` ((host path, O_PATH fd) of file bind mounts) the root is instead a
    small tmpfs over `root` holding only those files, bind-mounted (_files_root).
    """
    from pyvisor.runtime import confine as C
    libc = C._libc
    C._check(libc.unshare(C.CLONE_NEWNS | C.CLONE_NEWIPC | C.CLONE_NEWUTS | C.CLONE_NEWNET),
             "gofer: unshare")
    C._check(libc.mount(b"none", b"/", None, C.MS_REC | C.MS_PRIVATE, None),
             "gofer: private mounts")
    path = os.path.realpath(root).encode()
    if not files:
        C.detach_pseudo_mounts(path)
    if files:
        _files_root(path, files, readonly)
    elif path != b"/":
        # The tree (with its submounts) becomes the whole of the Gofer's world.
        C._check(libc.mount(path, path, None, C.MS_BIND | C.MS_REC, None), "gofer: bind the root")
        os.chdir(path)
        C._check(libc.syscall(155, b".", b"."), "gofer: pivot_root")
        C._check(libc.umount2(b".", C.MNT_DETACH), "gofer: detach the old root")
    # (Serving the host's "/" itself, as `do` does, there is nothing to pivot away from.)
    os.chdir("/")
    C.seal_mounts(readonly)
    new_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    os.close(root_fd)
    for cap in range(C.CAP_LAST_CAP + 1):
        if cap not in GOFER_CAPS[readonly] and libc.prctl(C.PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break
    mask = sum(1 << c for c in GOFER_CAPS[readonly])
    hdr = C._CapHeader(0x20080522, 0)
    data = (C._CapData * 2)()
    data[0].effective = data[0].permitted = mask
    C._check(libc.syscall(126, ctypes.byref(hdr), ctypes.byref(data)), "gofer: capset")
    C.no_new_privs()
    return new_fd


def _files_root(path: bytes, files: Sequence[tuple[str, int]], readonly: bool) -> None:
    """Mounts a tmpfs on `path` (in the Gofer's own mount namespace) holding the files
    (host path, O_PATH fd) bind-mounted as "0", "1", ..., and pivots into it."""
    from pyvisor.runtime import confine as C
    libc = C._libc
    # The fds' mounts belong to the old mount namespace, which mount(2) refuses as a
    # bind source (EINVAL): reopen each file here, checking it is the same one.
    fresh = []
    try:
        for host_path, old_fd in files:
            fd = os.open(host_path, _O_PATH_FLAGS)
            fresh.append(fd)
            a, b = os.fstat(old_fd), os.fstat(fd)
            if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
                raise _error(errno.ESTALE)      # replaced on the host meanwhile
            os.close(old_fd)
        C._check(libc.mount(b"none", path, b"tmpfs", C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC,
                            f"size=4k,nr_inodes={len(files) + 2},mode=0755".encode()),
                 "gofer: tmpfs for file mounts")
        for i, fd in enumerate(fresh):
            target = path + b"/" + str(i).encode()
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            C._check(libc.mount(f"/proc/self/fd/{fd}".encode(), target, None, C.MS_BIND,
                                None), "gofer: bind a file")
            if readonly:
                C._check(libc.mount(None, target, None,
                                    C.MS_REMOUNT | C.MS_BIND | C.MS_RDONLY, None),
                         "gofer: read-only file")
    finally:
        for fd in fresh:
            os.close(fd)
    os.chdir(path)
    C._check(libc.syscall(155, b".", b"."), "gofer: pivot_root")
    C._check(libc.umount2(b".", C.MNT_DETACH), "gofer: detach the old root")


def _close_fds_except(*keep: int) -> None:
    """Closes every fd but `keep`; points fds 0-2 at /dev/null.

    Stdio stays open on /dev/null so a stray write to stdout or stderr can
    never land in a host file that reused fd 1 or 2.
    """
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in keep and fd != null:
            os.dup2(null, fd, inheritable=False)
    low = 0
    for fd in sorted({0, 1, 2, null, *keep}):
        if fd < 3 or fd in keep:
            if low < fd:
                os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 30)
