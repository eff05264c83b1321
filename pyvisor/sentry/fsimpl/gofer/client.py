"""Client side of the gofer protocol, used by the Sentry's gofer filesystem.
gVisor: pkg/lisafs client.

Synchronous: each call sends one request and waits for its reply, which is
all a single-threaded Sentry needs. Errors from the Gofer raise
`OSError(errno, strerror)`; callers translate them with
`SyscallError.from_host`. A broken connection raises OSError(EIO) too.

Fids returned by walk/attach/create/... belong to the caller, who must
`close` them. Fds returned by open/create belong to the caller as well.
Concurrency: not thread-safe; one call at a time.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Callable

from pyvisor.gofer.protocol import (
    CREATE_REQ, DIRENT, ERRNO, FID, FID_STAT, LINK_REQ, MAX_FDS, MKDIR_REQ,
    MKNOD_REQ, NAME_LEN, OPEN_REQ, RENAME2_REQ, RENAME_REQ, SETATTR_REQ, STAT, STATFS,
    SYMLINK_REQ, UNLINK_REQ, Channel, FrameTooLarge, Op, Stat, StatFS,
)

_FID_STAT_SIZE = FID_STAT.size


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _fid_stat(buf: memoryview, off: int = 0) -> tuple[int, Stat]:
    fields = FID_STAT.unpack_from(buf, off)
    return fields[0], Stat(*fields[1:])


class GoferClient:
    """A connection to one Gofer (one container root or bind mount)."""

    def __init__(self, sock: socket.socket) -> None:
        self._chan = Channel(sock, max_fds=MAX_FDS)
        self.dead = False       # the connection failed: every call is EIO from now on
        self.on_death: Callable[[str], None] | None = None   # told once, with the reason

    def fileno(self) -> int:
        """The socket's fd (for the Sentry's seccomp and fd bookkeeping)."""
        return self._chan.sock.fileno()

    def shutdown(self) -> None:
        """Closes the connection; the Gofer then exits."""
        self._chan.sock.close()

    # Transport.

    def _call(self, op: Op, payload: bytes = b"") -> tuple[memoryview, int]:
        """Sends one request; returns (reply payload, donated fd or -1).

        The payload view is valid until the next call.
        """
        if self.dead:
            raise OSError(errno.EIO, "gofer connection lost")
        try:
            self._chan.send(op, payload)
            msg = self._chan.recv()
        except FrameTooLarge:
            self._died("an oversized reply")
            raise OSError(errno.EIO, "gofer: oversized reply") from None
        except OSError as e:
            self._died(f"connection failed: {e.strerror or e}")
            raise OSError(errno.EIO, f"gofer connection failed: {e}") from e
        if msg is None:
            self._died("connection closed")
            raise OSError(errno.EIO, "gofer connection closed")
        code, reply, fds = msg
        if code or len(fds) > 1:
            for fd in fds:
                os.close(fd)
            raise _error(code or errno.EIO)
        return reply, fds[0] if fds else -1

    def _died(self, why: str) -> None:
        """Marks the connection dead (a reply may be half read: nothing after it
        can be trusted) and tells the owner once."""
        if self.dead:
            return
        self.dead = True
        if self.on_death is not None:
            self.on_death(why)

    def _expect_fd(self, fd: int) -> int:
        if fd < 0:
            raise OSError(errno.EIO, "gofer: reply lacks a file descriptor")
        return fd

    def _no_fd(self, reply: tuple[memoryview, int]) -> memoryview:
        view, fd = reply
        if fd >= 0:
            os.close(fd)
        return view

    # Lookup and attributes.

    def attach(self) -> tuple[int, Stat]:
        """Returns a new fid for the root and its Stat."""
        return _fid_stat(self._no_fd(self._call(Op.ATTACH)))

    def walk(self, fid: int, name: bytes) -> tuple[int, Stat]:
        """Looks up one component in directory `fid`, never following a
        symlink; returns the new fid and the file's lstat."""
        return _fid_stat(self._no_fd(self._call(Op.WALK, FID.pack(fid) + name)))

    def walk_many(self, fid: int,
                  names: list[bytes]) -> tuple[list[tuple[int, Stat]], int]:
        """Walks `names` one by one from directory `fid` in one round trip.

        Returns (walked, err): a (fid, Stat) per component walked, and the
        errno of the component that failed (0 if none did). The walk also
        stops, with err 0, after the first result that is not a directory
        (a symlink for the caller to resolve, or a file), so
        `len(walked) < len(names)` with err 0 means "stopped there".
        Only a bad request (unknown fid, malformed) raises OSError.
        """
        parts = [FID.pack(fid)]
        for name in names:
            parts.append(NAME_LEN.pack(len(name)))
            parts.append(name)
        view = self._no_fd(self._call(Op.WALK_MANY, b"".join(parts)))
        (err,) = ERRNO.unpack_from(view)
        walked = [_fid_stat(view, off)
                  for off in range(ERRNO.size, len(view), _FID_STAT_SIZE)]
        return walked, err

    def stat(self, fid: int) -> Stat:
        """Returns the file's current lstat."""
        return Stat(*STAT.unpack(self._no_fd(self._call(Op.STAT, FID.pack(fid)))))

    def statfs(self, fid: int) -> StatFS:
        """Returns statfs(2) of the filesystem holding `fid`."""
        view = self._no_fd(self._call(Op.STATFS, FID.pack(fid)))
        return StatFS(*STATFS.unpack(view))

    def readlink(self, fid: int) -> bytes:
        """Returns the target of symlink `fid` (EINVAL if not a symlink)."""
        return bytes(self._no_fd(self._call(Op.READLINK, FID.pack(fid))))

    def close(self, fid: int) -> None:
        """Releases `fid` (9P: clunk)."""
        self._no_fd(self._call(Op.CLOSE, FID.pack(fid)))

    def close_many(self, fids: list[int]) -> None:
        """Releases every fid in `fids` in one round trip."""
        self._no_fd(self._call(Op.CLOSE, b"".join(FID.pack(f) for f in fids)))

    # Opening and reading.

    def open(self, fid: int, flags: int) -> int:
        """Opens the file `fid` holds; returns a host fd owned by the caller.

        `flags` may hold O_ACCMODE, O_TRUNC, O_APPEND, O_DIRECTORY and
        O_NONBLOCK. The fd is O_CLOEXEC and always O_NONBLOCK (which regular
        files and directories ignore). Only regular files and directories
        open: symlinks give ELOOP, sockets ENXIO, FIFOs and devices EPERM.
        """
        _, fd = self._call(Op.OPEN, OPEN_REQ.pack(fid, flags))
        return self._expect_fd(fd)

    def readdir(self, fid: int) -> list[tuple[bytes, int, int]]:
        """Returns (name, ino, d_type) of every entry but . and .."""
        view = self._no_fd(self._call(Op.READDIR, FID.pack(fid)))
        out = []
        off, end, hdr = 0, len(view), DIRENT.size
        while off < end:
            ino, d_type, n = DIRENT.unpack_from(view, off)
            off += hdr
            out.append((bytes(view[off:off + n]), ino, d_type))
            off += n
        return out

    # Mutations (EROFS from a read-only Gofer).

    def create(self, fid: int, name: bytes, flags: int,
               mode: int) -> tuple[int, Stat, int]:
        """Creates and opens regular file `name` (O_CREAT|O_EXCL) in `fid`.

        Returns (new fid, Stat, host fd). `flags` may hold O_ACCMODE,
        O_TRUNC, O_APPEND and O_NONBLOCK. `mode` is used as given (no umask).
        """
        view, fd = self._call(Op.CREATE, CREATE_REQ.pack(fid, flags, mode) + name)
        try:
            new_fid, st = _fid_stat(view)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return new_fid, st, self._expect_fd(fd)

    def mkdir(self, fid: int, name: bytes, mode: int) -> tuple[int, Stat]:
        """Creates directory `name` in `fid`; returns its new fid and Stat."""
        view = self._no_fd(self._call(Op.MKDIR, MKDIR_REQ.pack(fid, mode) + name))
        return _fid_stat(view)

    def mknod(self, fid: int, name: bytes, mode: int, rdev: int) -> None:
        """Always fails (EPERM, or EROFS): special files live in the Sentry."""
        self._no_fd(self._call(Op.MKNOD, MKNOD_REQ.pack(fid, mode, rdev) + name))

    def symlink(self, fid: int, name: bytes,
                target: bytes) -> tuple[int, Stat]:
        """Creates symlink `name` -> `target` in `fid`; returns fid and Stat."""
        payload = SYMLINK_REQ.pack(fid, len(name)) + name + target
        return _fid_stat(self._no_fd(self._call(Op.SYMLINK, payload)))

    def link(self, target_fid: int, dir_fid: int,
             name: bytes) -> tuple[int, Stat]:
        """Makes `name` in `dir_fid` a hard link to `target_fid` (never a
        directory); returns a fid for the new link and its Stat."""
        payload = LINK_REQ.pack(target_fid, dir_fid) + name
        return _fid_stat(self._no_fd(self._call(Op.LINK, payload)))

    def unlink(self, dir_fid: int, name: bytes, is_dir: bool) -> None:
        """Removes `name` from `dir_fid`: rmdir if `is_dir`, else unlink."""
        self._no_fd(self._call(Op.UNLINK,
                               UNLINK_REQ.pack(dir_fid, bool(is_dir)) + name))

    def rename(self, old_dir_fid: int, old_name: bytes, new_dir_fid: int,
               new_name: bytes) -> None:
        """renameat(2) within the Gofer's tree; fids follow the file."""
        payload = (RENAME_REQ.pack(old_dir_fid, new_dir_fid, len(old_name))
                   + old_name + new_name)
        self._no_fd(self._call(Op.RENAME, payload))

    def rename2(self, old_dir_fid: int, old_name: bytes, new_dir_fid: int,
                new_name: bytes, flags: int) -> None:
        """renameat2(2) with RENAME_NOREPLACE or RENAME_EXCHANGE; fids follow the files."""
        payload = (RENAME2_REQ.pack(old_dir_fid, new_dir_fid, len(old_name), flags)
                   + old_name + new_name)
        self._no_fd(self._call(Op.RENAME2, payload))

    def setattr(self, fid: int, mask: int, mode: int = 0, uid: int = -1,
                gid: int = -1, size: int = 0, atime_ns: int = 0,
                mtime_ns: int = 0) -> Stat:
        """Changes the attributes `mask` (SetattrMask bits) selects; returns
        the new Stat. Symlinks are never followed; chmod of one gives
        EOPNOTSUPP. Steps run chown, chmod, truncate, utimes, and are not
        atomic: a failure may leave earlier steps done."""
        payload = SETATTR_REQ.pack(fid, mask, mode, uid, gid, size,
                                   atime_ns, mtime_ns)
        return Stat(*STAT.unpack(self._no_fd(self._call(Op.SETATTR, payload))))
