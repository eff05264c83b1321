"""Gofer wire protocol: framing, op codes and encodings.  gVisor: pkg/lisafs.

The Sentry and the Gofer talk over a Unix stream socket, one request then one
reply (the Sentry is single-threaded, so there are no tags). Every message is

    u32 payload length | u32 code | payload

in little-endian. In a request `code` is an `Op`; in a reply it is 0 for
success or a positive errno, and an error reply has an empty payload. Host
file descriptors travel with a reply as SCM_RIGHTS ancillary data.

Payloads are fixed `struct` layouts per op, followed by at most one trailing
variable-length byte string that runs to the end of the payload (so it needs
no length field); where an op carries two strings, the first has a u16
length. Repeated records (walk_many, readdir) also run to the end of the
payload. Nothing here evaluates data from the peer (no pickle or marshal):
decoding is `struct.unpack_from` and slicing, and any malformed layout is a
`struct.error` the server answers with EINVAL.

Request and reply layouts (Q = u64 fid unless named, `name` = one component):

    op          request                         reply
    ATTACH      -                               fid Stat
    WALK        fid name                        fid Stat
    WALK_MANY   fid (u16 len, name)*            u32 errno (fid Stat)*
    STAT        fid                             Stat
    OPEN        fid u32 flags                   -            + 1 fd
    READDIR     fid                             (u64 ino, u8 d_type, u16 len, name)*
    READLINK    fid                             target
    CLOSE       fid fid*                        -   (every fid named; EBADF if one is unknown)
    STATFS      fid                             8 x i64 (see StatFS)
    CREATE      fid u32 flags u32 mode name     fid Stat     + 1 fd
    MKDIR       fid u32 mode name               fid Stat
    MKNOD       fid u32 mode u64 rdev name      (always EPERM or EROFS)
    SYMLINK     fid u16 len name target         fid Stat
    LINK        target_fid dir_fid name         fid Stat
    UNLINK      dir_fid u8 is_dir name          -
    RENAME      old_dir new_dir u16 len old new -
    SETATTR     fid u32 mask u32 mode i64 uid i64 gid u64 size
                i64 atime_ns i64 mtime_ns       Stat
"""

from __future__ import annotations

import array
import dataclasses
import enum
import errno
import os
import socket
import struct
from typing import Sequence

# Frame header: payload length, code (Op in a request, errno in a reply).
HEADER = struct.Struct("<II")

# Largest payload either side accepts. A bigger frame is skipped, not read.
MAX_PAYLOAD = 64 << 20

# Most fds a single reply carries (OPEN and CREATE donate one).
MAX_FDS = 1

# From <linux/limits.h>.
NAME_MAX = 255
PATH_MAX = 4096

# OPEN flags the Sentry may ask for; the server always adds
# O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK.
OPEN_FLAGS = os.O_ACCMODE | os.O_TRUNC | os.O_APPEND | os.O_DIRECTORY | os.O_NONBLOCK
# CREATE flags the Sentry may ask for; the server adds O_CREAT | O_EXCL too.
CREATE_FLAGS = os.O_ACCMODE | os.O_TRUNC | os.O_APPEND | os.O_NONBLOCK


class Op(enum.IntEnum):
    """Request codes. Values are part of the wire format: append only."""

    ATTACH = 1
    WALK = 2
    WALK_MANY = 3
    STAT = 4
    OPEN = 5
    READDIR = 6
    READLINK = 7
    CLOSE = 8
    STATFS = 9
    CREATE = 10
    MKDIR = 11
    MKNOD = 12
    SYMLINK = 13
    LINK = 14
    UNLINK = 15
    RENAME = 16
    SETATTR = 17
    RENAME2 = 18      # renameat2 with RENAME_NOREPLACE or RENAME_EXCHANGE


class SetattrMask(enum.IntFlag):
    """Which SETATTR fields apply (Linux: ATTR_* in <linux/fs.h>)."""

    MODE = 1
    UID_GID = 2     # uid or gid may be -1 to leave it unchanged, as chown(2)
    SIZE = 4
    ATIME = 8
    MTIME = 16


# A plain int: ~ of an IntFlag only complements the defined bits.
SETATTR_ALL = int(SetattrMask.MODE | SetattrMask.UID_GID | SetattrMask.SIZE
                  | SetattrMask.ATIME | SetattrMask.MTIME)


@dataclasses.dataclass(frozen=True, slots=True)
class Stat:
    """A host file's attributes, as lstat(2) reports them (never followed)."""

    mode: int
    ino: int
    dev: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def from_os(cls, st: os.stat_result) -> Stat:
        """Converts a host `os.stat_result`."""
        return cls(*stat_fields(st))


@dataclasses.dataclass(frozen=True, slots=True)
class StatFS:
    """A host filesystem's statistics, as statfs(2) reports them."""

    f_type: int
    bsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    namelen: int


# Stat on the wire, fields in dataclass order.
STAT = struct.Struct("<IQQQIIQqqqqqq")
FID = struct.Struct("<Q")
FID_STAT = struct.Struct("<Q" + STAT.format[1:])
STATFS = struct.Struct("<8q")
ERRNO = struct.Struct("<I")
NAME_LEN = struct.Struct("<H")
DIRENT = struct.Struct("<QBH")            # ino, d_type, name length; then name
OPEN_REQ = struct.Struct("<QI")           # fid, flags
CREATE_REQ = struct.Struct("<QII")        # fid, flags, mode; then name
MKDIR_REQ = struct.Struct("<QI")          # fid, mode; then name
MKNOD_REQ = struct.Struct("<QIQ")         # fid, mode, rdev; then name
SYMLINK_REQ = struct.Struct("<QH")        # fid, name length; then name, target
LINK_REQ = struct.Struct("<QQ")           # target fid, dir fid; then name
UNLINK_REQ = struct.Struct("<QB")         # dir fid, is_dir; then name
RENAME_REQ = struct.Struct("<QQH")        # old dir, new dir, old name length
RENAME2_REQ = struct.Struct("<QQHI")      # RENAME_REQ's fields, then renameat2 flags
# The renameat2 flags RENAME2 takes (never RENAME_WHITEOUT: no device nodes on the host).
RENAME2_FLAGS = 1 | 2                     # RENAME_NOREPLACE | RENAME_EXCHANGE
SETATTR_REQ = struct.Struct("<QIIqqQqq")  # fid mask mode uid gid size atime mtime


def stat_fields(st: os.stat_result) -> tuple[int, ...]:
    """Returns the `Stat` fields of a host stat result, in wire order."""
    return (st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid,
            st.st_gid, st.st_rdev, st.st_size, st.st_blksize, st.st_blocks,
            st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns)


def check_name(name: bytes) -> None:
    """Raises EINVAL unless `name` is one path component other than . and ..

    Every op that takes a name checks it this way, so a name can never move
    the lookup to another directory: the Gofer only ever resolves one
    component relative to a directory fd it already holds.
    """
    if (not name or name == b"." or name == b".." or b"/" in name
            or b"\0" in name):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    if len(name) > NAME_MAX:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))


class FrameTooLarge(Exception):
    """A frame's length exceeded MAX_PAYLOAD; its payload will be skipped."""

    def __init__(self, code: int, length: int) -> None:
        super().__init__(f"frame of {length} bytes (code {code}) too large")
        self.code = code
        self.length = length


class Channel:
    """Framing over one end of a gofer stream socket.

    Reads go into one reusable buffer (recv_into / recvmsg_into), so a small
    message costs one system call and no buffer allocation. A payload returned
    by `recv` is a view into that buffer, valid until the next `recv`.
    A channel made with `max_fds=0` (the server) reads with recv_into, so any
    fds a peer sends are dropped by the host kernel, never installed; fds a
    client receives are close-on-exec.
    Concurrency: one thread at a time per channel.
    """

    __slots__ = ("sock", "_max_fds", "_ancbufsize", "_buf", "_view",
                 "_start", "_end", "_skip")

    def __init__(self, sock: socket.socket, max_fds: int = 0,
                 bufsize: int = 64 << 10) -> None:
        self.sock = sock
        self._max_fds = max_fds
        self._ancbufsize = socket.CMSG_SPACE(max_fds * 4) if max_fds else 0
        self._buf = bytearray(bufsize)
        self._view = memoryview(self._buf)
        self._start = 0     # first unread byte in _buf
        self._end = 0       # one past the last received byte in _buf
        self._skip = 0      # bytes of an oversized frame still to discard

    def send(self, code: int, payload: bytes = b"",
             fds: Sequence[int] = ()) -> None:
        """Sends one frame, with `fds` as SCM_RIGHTS if any (the caller keeps
        its copies and closes them when it likes)."""
        data = HEADER.pack(len(payload), code) + payload
        # MSG_NOSIGNAL: a dead peer is EPIPE here, never a SIGPIPE that kills us.
        if fds:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            sent = self.sock.sendmsg([data], anc, socket.MSG_NOSIGNAL)
        else:
            sent = self.sock.send(data, socket.MSG_NOSIGNAL)
        view = memoryview(data)
        while sent < len(data):     # a partial send: the rest, without fds
            sent += self.sock.send(view[sent:], socket.MSG_NOSIGNAL)

    def recv(self) -> tuple[int, memoryview, list[int]] | None:
        """Receives one frame: (code, payload view, received fds).

        Returns None at end of stream (fds of a partial frame are closed).
        Raises FrameTooLarge for an oversized frame, whose payload the next
        calls discard as it arrives, keeping the stream in step.
        """
        fds: list[int] = []
        try:
            while True:
                if self._skip:
                    self._discard()
                avail = self._end - self._start
                need = HEADER.size
                if avail >= HEADER.size:
                    length, code = HEADER.unpack_from(self._buf, self._start)
                    if length > MAX_PAYLOAD:
                        self._start += HEADER.size
                        self._skip = length
                        self._discard(block=False)
                        raise FrameTooLarge(code, length)
                    need += length
                    if avail >= need:
                        begin = self._start + HEADER.size
                        self._start += need
                        if self._start == self._end:
                            self._start = self._end = 0
                        return code, self._view[begin:begin + length], fds
                self._make_room(need)
                if not self._fill(fds):
                    for fd in fds:
                        os.close(fd)
                    return None
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

    def _discard(self, block: bool = True) -> None:
        """Drops bytes of an oversized frame: those buffered, and if `block`,
        the rest as it arrives (the peer may wait for our reply first)."""
        while self._skip:
            if self._start == self._end:
                self._start = self._end = 0
                if not block:
                    return
                if not self._fill([]):
                    self._skip = 0      # end of stream
                    return
            n = min(self._skip, self._end - self._start)
            self._start += n
            self._skip -= n
        if self._start == self._end:
            self._start = self._end = 0

    def _make_room(self, need: int) -> None:
        """Ensures `need` bytes from _start fit in the buffer."""
        if self._start + need <= len(self._buf):
            return
        avail = self._end - self._start
        if need <= len(self._buf):
            # Same-size slice assignment: a memmove, allowed despite views.
            self._buf[:avail] = self._buf[self._start:self._end]
        else:
            # Callers may hold views of the old buffer: replace, never resize.
            new = bytearray(max(need, 2 * len(self._buf)))
            new[:avail] = self._view[self._start:self._end]
            self._buf = new
            self._view = memoryview(new)
        self._start, self._end = 0, avail

    def _fill(self, fds: list[int]) -> bool:
        """Reads what the socket has into the buffer; False at end of stream."""
        room = self._view[self._end:]
        if not self._max_fds:
            n = self.sock.recv_into(room)
        else:
            n, anc, flags, _ = self.sock.recvmsg_into(
                [room], self._ancbufsize, socket.MSG_CMSG_CLOEXEC)
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    got = array.array("i")
                    got.frombytes(data[:len(data) - len(data) % got.itemsize])
                    fds.extend(got)
            if flags & socket.MSG_CTRUNC:
                raise OSError(errno.EPROTO, "gofer: too many fds in a message")
        self._end += n
        return n > 0
