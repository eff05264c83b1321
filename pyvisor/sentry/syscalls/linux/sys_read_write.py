"""read/write and friends.  Linux: fs/read_write.c."""

from __future__ import annotations

import struct
from typing import Awaitable, Callable, Iterator

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_PATH, SEEK_CUR, SEEK_DATA, SEEK_END, SEEK_HOLE, SEEK_SET
from pyvisor.abi.linux.signal import Signal
from pyvisor.abi.linux.stat import S_IFSOCK
from pyvisor.sentry.arch.syscall_args import MAX_RW_COUNT, SyscallArguments
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.errors import Interrupted, SyscallError, TimedOut, WouldBlock
from pyvisor.sentry.kernel.task import RLIM_INFINITY, RLIMIT_FSIZE, Task
from pyvisor.sentry.waitqueue import EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT
from pyvisor.sentry.vfs import inotify
from pyvisor.sentry.vfs.atime import touch_atime
from pyvisor.sentry.vfs.killpriv import file_remove_privs
from pyvisor.sentry.vfs.file import AT_POSITION, DirectoryImpl, FileDescription

CHUNK = 1 << 22          # largest single transfer we stage in the Sentry
TASK_SIZE_MAX = (1 << 47) - 4096     # Linux x86-64: the bound access_ok checks against
PAGE_SIZE = 4096
IOV_MAX = 1024
# The largest file offset.  From <linux/fs.h> (MAX_LFS_FILESIZE on 64-bit).
MAX_LFS_FILESIZE = (1 << 63) - 1


def verify_area(f: FileDescription, pos: int, count: int) -> None:
    """Linux: rw_verify_area.  A transfer at a file position must start at a
    non-negative offset and end at or before MAX_LFS_FILESIZE (EINVAL), so no
    offset the Sentry hands to a filesystem or the host can overflow an off_t.
    Streams (pipes, sockets, ttys) have no position."""
    if f.impl.seekable and (pos < 0 or pos + count > MAX_LFS_FILESIZE):
        raise SyscallError(Errno.EINVAL)


def _fsize_limit(t: Task, off: int, data: bytes) -> bytes:
    """RLIMIT_FSIZE (Linux: generic_write_check_limits): a write starting at or past
    the limit gets SIGXFSZ and EFBIG; one crossing it is cut short at the limit."""
    limit = t.tg.rlimits[RLIMIT_FSIZE][0]
    if off >= limit:
        # send_sig(SIGXFSZ, current, 0): SI_USER from the writer itself.
        ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGXFSZ, 0, pid=t.tg.tgid,
                                                uid=t.creds.uid))
        raise SyscallError(Errno.EFBIG)
    return data[:limit - off]


async def _wait_timed(t: Task, f: FileDescription, mask: int, timeo: int | None,
                      deadline: int | None) -> None:
    """Sleeps until `f` may have `mask`.  With a socket timeout, its expiry is
    EAGAIN and a signal EINTR, never a restart (sock_intr_errno)."""
    if timeo is None:
        await t.kernel.block_on(t, f.impl.waitq(f), mask)
        return
    try:
        await t.kernel.block_on(t, f.impl.waitq(f), mask, deadline=deadline)
    except TimedOut:
        raise WouldBlock() from None
    except Interrupted:
        raise SyscallError(Errno.EINTR) from None


async def do_read(t: Task, f: FileDescription, n: int, offset: int | None) -> bytes:
    """Reads up to `n` bytes, waiting while the file would block.

    The read holds a reference on the description while it runs (Linux:
    fdget/fdput), so another thread closing the fd does not release a pipe
    end under a blocked reader: the reader still counts, and writers do not
    get EPIPE until the read returns."""
    f.incref()
    ioac = t.ioac
    ioac[2] += 1                     # syscr (Linux: inc_syscr, /proc/PID/io)
    try:
        data = await _do_read(t, f, n, offset)
        ioac[0] += len(data)         # rchar
        if f.impl.seekable:
            touch_atime(f)           # regular files and devices, not pipes or sockets
        if data and inotify._watches:
            inotify.file_event(f, inotify.IN_ACCESS)
        return data
    finally:
        f.decref()


async def _do_read(t: Task, f: FileDescription, n: int, offset: int | None) -> bytes:
    if not f.readable:
        raise SyscallError(Errno.EBADF)
    if isinstance(f.impl, DirectoryImpl):
        raise SyscallError(Errno.EISDIR)
    n = min(n, MAX_RW_COUNT, CHUNK)
    timeo = f.impl.io_timeout(False)
    deadline = None if not timeo else t.kernel.now() + timeo
    keeps = f.impl.keeps_position
    if not keeps or offset is not None:     # a host-kept position is the host's to check
        verify_area(f, f.offset if offset is None else offset, n)
    while True:
        try:
            if offset is None:
                off = AT_POSITION if keeps else f.offset
            else:
                off = offset
            data = f.impl.read(f, t, n, off)
            break
        except WouldBlock:
            if f.nonblocking or timeo == 0:
                raise
        try:
            await _wait_timed(t, f, EVENT_IN | EVENT_HUP | EVENT_ERR, timeo, deadline)
        except WouldBlock:
            expired = getattr(f.impl, "read_expired", None)
            if expired is None:
                raise
            data = expired(f, t, n)     # a terminal's VTIME: what is there, maybe nothing
            break
    if offset is None and f.impl.seekable and not keeps:
        f.offset += len(data)
    return data


async def do_write(t: Task, f: FileDescription, data: bytes, offset: int | None,
                   prior: int = 0) -> int:
    """Writes `data` as Linux's pipe_write and its kin do.

    The file's write takes what fits now (all of a write of at most PIPE_BUF
    bytes to a pipe, or nothing: WouldBlock).  A non-blocking file returns that
    partial count, or EAGAIN if it took nothing.  A blocking one writes again at
    once after partial progress and sleeps only when nothing fits; a signal
    while it sleeps returns the count written so far (EINTR/restart if none).
    `prior`: bytes this write(2) already wrote in earlier CHUNKs (write_chunked).
    """
    f.incref()                       # held while it runs, as do_read
    ioac = t.ioac
    if not prior:
        ioac[3] += 1                 # syscw
    try:
        n = await _do_write(t, f, data, offset, prior)
        ioac[1] += n                 # wchar
        if n and f.inode.is_regular():
            file_remove_privs(t, f)  # setuid/setgid bits and file capabilities
        if n and inotify._watches:
            inotify.file_event(f, inotify.IN_MODIFY)
        return n
    finally:
        f.decref()


async def _do_write(t: Task, f: FileDescription, data: bytes, offset: int | None,
                    prior: int) -> int:
    if not f.writable:
        raise SyscallError(Errno.EBADF)
    done = 0
    total = len(data)
    timeo = f.impl.io_timeout(True)
    deadline = None if not timeo else t.kernel.now() + timeo
    fsize_limited = t.tg.rlimits[RLIMIT_FSIZE][0] != RLIM_INFINITY and f.inode.is_regular()
    keeps = f.impl.keeps_position
    if not keeps or offset is not None:     # a host-kept position is the host's to check
        verify_area(f, f.offset if offset is None else offset, total)
    while True:
        try:
            if offset is None:
                if keeps:
                    off = AT_POSITION
                else:
                    off = f.impl.size(f) if f.append and f.impl.seekable else f.offset
                    if off + total - done > MAX_LFS_FILESIZE:
                        raise SyscallError(Errno.EFBIG)     # generic_write_check_limits
            else:
                off = offset + done
            chunk = data[done:] if done else data
            if fsize_limited and off != AT_POSITION:
                if (done or prior) and off >= t.tg.rlimits[RLIMIT_FSIZE][0]:
                    return done          # cut short at the limit: no signal for the rest
                chunk = _fsize_limit(t, off, chunk)
            n = f.impl.write(f, t, chunk, off)
            if offset is None and f.impl.seekable and not keeps:
                f.offset = off + n
            done += n
            if done >= total or (n and f.nonblocking):
                return done
            if n:
                continue                 # partial progress: try again before sleeping
        except WouldBlock:
            if f.nonblocking or timeo == 0:
                if done:
                    return done
                raise
        except SyscallError as e:
            # A pipe's EPIPE raises SIGPIPE always (pipe_write); a stream socket's
            # only if this call sent nothing (sk_stream_error, unix_stream_sendmsg).
            if e.errno == Errno.EPIPE and f.impl.epipe_sigpipe and not (
                    (done or prior) and f.inode.ftype == S_IFSOCK):
                ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGPIPE, 0, pid=t.tg.tgid))
            if done:
                return done
            raise
        try:
            await _wait_timed(t, f, EVENT_OUT | EVENT_ERR | EVENT_HUP, timeo, deadline)
        except SyscallError:
            if done:
                return done
            raise


def _writable_prefix(t: Task, f: FileDescription, buf: int, n: int) -> int:
    """How much of a read of `n` bytes into `buf` may be asked of `f`.  A regular file
    fills the buffer up to its first unmapped or read-only byte (EFAULT only if not even
    the first can land) and its position moves only by that, as filemap_read stops
    where copy_to_user does.  Anything else (a pipe, a socket) is EFAULT for any bad
    byte, before it consumes data it could not hand over (pipe_read)."""
    want = min(n, CHUNK)
    if not f.inode.is_regular():
        t.mm.check_range(buf, want, 2)
        return n
    ok = t.mm.accessible(buf, want, 2)
    if ok == 0:
        raise SyscallError(Errno.EFAULT)
    return n if ok == want else ok


def _gather(t: Task, f: FileDescription, iovs: list[tuple[int, int]]) -> bytes:
    """The bytes a write takes from user buffers.  For a regular file, as far as they
    can be read: the first fault ends the data (EFAULT if not even one byte could be
    read), as generic_perform_write writes what it copied.  Anything else is EFAULT
    for any bad byte."""
    if not f.inode.is_regular():
        return b"".join(t.copy_in(base, min(ln, CHUNK)) for base, ln in iovs if ln)
    parts: list[bytes] = []
    for base, ln in iovs:
        if not ln:
            continue
        want = min(ln, CHUNK)
        ok = t.mm.accessible(base, want, 1)
        try:
            if ok:
                parts.append(t.copy_in(base, ok))
        except SyscallError:
            # Mapped but unreadable further on (a file mapping past its end: SIGBUS
            # in the application): keep the pages before the bad one.
            ok = _copy_pages(t, base, ok, parts)
        if ok < want:
            if not parts:
                raise SyscallError(Errno.EFAULT)
            break
    return b"".join(parts)


def _copy_pages(t: Task, base: int, n: int, parts: list[bytes]) -> int:
    """Copies [base, base+n) page by page into `parts` up to the first page that
    cannot be read; returns the bytes copied."""
    done = 0
    while done < n:
        step = min(n - done, PAGE_SIZE - (base + done) % PAGE_SIZE)
        try:
            parts.append(t.copy_in(base + done, step))
        except SyscallError:
            break
        done += step
    return done


async def sys_read(t: Task, r: SyscallArguments) -> int:
    """Implements read(2)."""
    f = t.fd_table.get(r.fd(0))
    buf, n = r.pointer(1), r.uint64(2)
    if n == 0:
        if not f.readable:
            raise SyscallError(Errno.EBADF)
        return 0
    if n > CHUNK and f.inode.is_regular():
        return await _readv(t, f, [(buf, n)], None)
    n = _writable_prefix(t, f, buf, n)
    data = await do_read(t, f, n, None)
    t.copy_out(buf, data)
    return len(data)


async def sys_write(t: Task, r: SyscallArguments) -> int:
    """Implements write(2)."""
    f = t.fd_table.get(r.fd(0))
    buf, n = r.pointer(1), min(r.uint64(2), MAX_RW_COUNT)
    if not f.writable:
        raise SyscallError(Errno.EBADF)
    if n == 0 and not (f.impl.zero_writes or _datagram_socket(f)):
        return 0            # a datagram socket sends an empty datagram (sock_write_iter)
    if not n:
        return await do_write(t, f, b"", None)
    return await write_chunked(t, f, [(buf, n)], None)


async def write_chunked(t: Task, f: FileDescription, iovs: list[tuple[int, int]],
                        offset: int | None) -> int:
    """A write of any size, staged CHUNK bytes at a time.  Linux copies from the user's
    buffers as the file takes them, so a blocking write to a pipe or a stream socket
    writes all of it, sleeping while the reader drains, and a regular file takes all
    of it; a count short of the whole comes only from a cut: a signal, the peer gone,
    a fault, a full non-blocking file, RLIMIT_FSIZE.  Each chunk is one do_write;
    what the earlier ones wrote is returned if a later one fails.  A message socket's
    datagram goes as one piece (one gather, no chunks)."""
    if sum(ln for _, ln in iovs) <= CHUNK or _message_socket(f):
        return await do_write(t, f, _gather(t, f, iovs), offset)     # one piece
    return await _by_chunks(iovs, offset, lambda part, off, prior: do_write(
        t, f, _gather(t, f, part), off, prior))


async def _by_chunks(iovs: list[tuple[int, int]], offset: int | None,
                     op: Callable[[list[tuple[int, int]], int | None, int],
                                  Awaitable[int]]) -> int:
    """Runs `op(part, offset of the part or None, bytes done before it)` over `iovs`
    cut into CHUNKs, until one falls short; an error after progress returns the
    progress, as a cut short read or write does."""
    total = 0
    for part in _chunks(iovs, CHUNK):
        want = sum(ln for _, ln in part)
        try:
            n = await op(part, None if offset is None else offset + total, total)
        except SyscallError:
            if total:
                return total
            raise
        total += n
        if n < want:
            break
    return total


def _chunks(iovs: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    """`iovs` cut into runs of at most `size` bytes each (an iovec split where it must),
    made as they are asked for."""
    part: list[tuple[int, int]] = []
    room = size
    for base, ln in iovs:
        while ln:
            take = min(ln, room)
            part.append((base, take))
            base, ln, room = base + take, ln - take, room - take
            if not room:
                yield part
                part, room = [], size
    if part:
        yield part


def _message_socket(f: FileDescription) -> bool:
    """A socket whose writes are messages (any but SOCK_STREAM): never cut in chunks."""
    from pyvisor.sentry.socket.common import SOCK_STREAM, Socket
    impl = f.impl
    return isinstance(impl, Socket) and impl.stype != SOCK_STREAM


def _datagram_socket(f: FileDescription) -> bool:
    from pyvisor.sentry.socket.common import AF_UNIX, SOCK_DGRAM, SOCK_RAW, Socket
    impl = f.impl
    return isinstance(impl, Socket) and impl.family != AF_UNIX and impl.stype in (SOCK_DGRAM,
                                                                             SOCK_RAW)


def _positional(f: FileDescription, off: int) -> None:
    if f.flags & O_PATH:
        raise SyscallError(Errno.EBADF)        # fdget: an O_PATH file is no file
    if not f.impl.seekable:
        raise SyscallError(Errno.ESPIPE)
    if off < 0:
        raise SyscallError(Errno.EINVAL)


async def sys_pread64(t: Task, r: SyscallArguments) -> int:
    """Implements pread64(2)."""
    f = t.fd_table.get(r.fd(0))
    buf, n, off = r.pointer(1), r.uint64(2), r.int64(3)
    _positional(f, off)
    if n > CHUNK and f.inode.is_regular():
        return await _readv(t, f, [(buf, n)], off)
    if n:
        n = _writable_prefix(t, f, buf, n)
    data = await do_read(t, f, n, off)
    t.copy_out(buf, data)
    return len(data)


async def sys_pwrite64(t: Task, r: SyscallArguments) -> int:
    """Implements pwrite64(2)."""
    f = t.fd_table.get(r.fd(0))
    buf, n, off = r.pointer(1), min(r.uint64(2), MAX_RW_COUNT), r.int64(3)
    _positional(f, off)
    if not f.writable:
        raise SyscallError(Errno.EBADF)
    if not n:
        return await do_write(t, f, b"", off)
    return await write_chunked(t, f, [(buf, n)], off)


def read_iovecs(t: Task, addr: int, cnt: int) -> list[tuple[int, int]]:
    if cnt < 0 or cnt > IOV_MAX:
        raise SyscallError(Errno.EINVAL)
    if cnt == 0:
        return []
    raw = t.copy_in(addr, 16 * cnt)
    iovs = []
    total = 0
    for i in range(cnt):
        base, ln = struct.unpack_from("<QQ", raw, 16 * i)
        if ln > 1 << 63:
            raise SyscallError(Errno.EINVAL)
        total += ln
        if total > 1 << 63:
            raise SyscallError(Errno.EINVAL)
        if base + ln >= 1 << 63 or (ln and base + ln > TASK_SIZE_MAX):
            raise SyscallError(Errno.EFAULT)     # import_iovec's access_ok, any segment
        iovs.append((base, ln))
    # __import_iovec: access_ok on each, so an empty iovec outside the address space
    # is EFAULT too.
    for base, ln in iovs:
        if base + ln > TASK_SIZE_MAX:
            raise SyscallError(Errno.EFAULT)
    if total > MAX_RW_COUNT:
        # __import_iovec: the segments are cut so that they add up to MAX_RW_COUNT.
        room = MAX_RW_COUNT
        for i, (base, ln) in enumerate(iovs):
            iovs[i] = (base, min(ln, room))
            room -= iovs[i][1]
    return iovs


async def _readv(t: Task, f: FileDescription, iovs: list[tuple[int, int]], off: int | None) -> int:
    """A read into `iovs`.  A regular file is read CHUNK bytes at a time until it has
    filled them all (generic_file_read_iter reads as far as it can), or ends short at
    its end or a fault; anything else gives what one read has (a pipe, a socket: a
    short read is theirs to give)."""
    total = sum(ln for _, ln in iovs)
    if total == 0:
        if not f.readable:
            raise SyscallError(Errno.EBADF)
        return 0
    if total <= CHUNK or not f.inode.is_regular():
        return await _read_part(t, f, iovs, off)
    return await _by_chunks(iovs, off, lambda part, part_off, _: _read_part(
        t, f, part, part_off))


async def _read_part(t: Task, f: FileDescription, iovs: list[tuple[int, int]],
                     off: int | None) -> int:
    """One read of at most CHUNK bytes into `iovs`."""
    total = sum(ln for _, ln in iovs)
    # A regular file is read as far as the buffers can take it: a buffer cut short by
    # a fault ends the read there (EFAULT only if no byte at all can land).
    if f.inode.is_regular():
        total = 0
        for base, ln in iovs:
            if not ln:
                continue
            want = min(ln, CHUNK)
            ok = t.mm.accessible(base, want, 2)
            if ok == 0 and total == 0:
                raise SyscallError(Errno.EFAULT)
            total += ln if ok == want else ok
            if ok < want:
                break
    else:
        for base, ln in iovs:
            t.mm.check_range(base, min(ln, CHUNK), 2)
    data = await do_read(t, f, total, off)
    pos = 0
    for base, ln in iovs:
        if pos >= len(data):
            break
        chunk = data[pos:pos + ln]
        t.copy_out(base, chunk)
        pos += len(chunk)
    return len(data)


async def _writev(t: Task, f: FileDescription, iovs: list[tuple[int, int]], off: int | None) -> int:
    if not f.writable:
        raise SyscallError(Errno.EBADF)
    if not any(ln for _, ln in iovs):
        return 0                 # vfs_writev: nothing to write never reaches the file
    return await write_chunked(t, f, iovs, off)


async def sys_readv(t: Task, r: SyscallArguments) -> int:
    """Implements readv(2)."""
    f = t.fd_table.get(r.fd(0))
    return await _readv(t, f, read_iovecs(t, r.pointer(1), r.int32(2)), None)


async def sys_writev(t: Task, r: SyscallArguments) -> int:
    """Implements writev(2)."""
    f = t.fd_table.get(r.fd(0))
    return await _writev(t, f, read_iovecs(t, r.pointer(1), r.int32(2)), None)


async def sys_preadv(t: Task, r: SyscallArguments) -> int:
    f = t.fd_table.get(r.fd(0))
    off = r.int64(3)
    _positional(f, off)
    return await _readv(t, f, read_iovecs(t, r.pointer(1), r.int32(2)), off)


async def sys_pwritev(t: Task, r: SyscallArguments) -> int:
    f = t.fd_table.get(r.fd(0))
    off = r.int64(3)
    _positional(f, off)
    return await _writev(t, f, read_iovecs(t, r.pointer(1), r.int32(2)), off)


async def sys_preadv2(t: Task, r: SyscallArguments) -> int:
    f = t.fd_table.get(r.fd(0))
    off = r.int64(3)
    iovs = read_iovecs(t, r.pointer(1), r.int32(2))
    if off == -1:
        return await _readv(t, f, iovs, None)
    _positional(f, off)
    return await _readv(t, f, iovs, off)


async def sys_pwritev2(t: Task, r: SyscallArguments) -> int:
    f = t.fd_table.get(r.fd(0))
    off = r.int64(3)
    iovs = read_iovecs(t, r.pointer(1), r.int32(2))
    if off == -1:
        return await _writev(t, f, iovs, None)
    _positional(f, off)
    return await _writev(t, f, iovs, off)


def sys_lseek(t: Task, r: SyscallArguments) -> int:
    """Implements lseek(2).  The new position must lie in [0, MAX_LFS_FILESIZE]
    (EINVAL), as generic_file_llseek_size's vfs_setpos."""
    f = t.fd_table.get(r.fd(0))
    off, whence = r.offset(1), r.uint32(2)
    if not f.impl.seekable:
        raise SyscallError(Errno.ESPIPE)
    style = f.impl.llseek
    if style != "generic" and whence in (SEEK_SET, SEEK_CUR, SEEK_END):
        if style == "zero":
            f.offset = 0
            return 0
        if style == "noop":
            return f.offset
        if whence == SEEK_END:
            raise SyscallError(Errno.EINVAL)
    if whence == SEEK_SET:
        new = off
    elif whence == SEEK_CUR:
        if off == 0:
            return f.offset
        new = f.offset + off
    elif whence == SEEK_END:
        # A directory's end is ext4's htree EOF, the largest offset.
        end = MAX_LFS_FILESIZE if isinstance(f.impl, DirectoryImpl) else f.impl.size(f)
        new = end + off
    elif whence in (SEEK_DATA, SEEK_HOLE):
        size = f.impl.size(f)
        if off < 0 or off >= size:
            raise SyscallError(Errno.ENXIO)
        new = off if whence == SEEK_DATA else size
    else:
        raise SyscallError(Errno.EINVAL)
    if not 0 <= new <= MAX_LFS_FILESIZE:
        raise SyscallError(Errno.EINVAL)
    f.offset = new
    if new == 0 and isinstance(f.impl, DirectoryImpl):
        f.impl.rewind()         # rewinddir takes a fresh snapshot
    return new


async def sys_sendfile(t: Task, r: SyscallArguments) -> int:
    """Implements sendfile(2) by staging through the Sentry.  The input is read at
    its position without moving it, and the position then advances by what was
    written: a short or refused write (EAGAIN) consumes nothing more (as
    splice_direct_to_actor).  Chunks go until `count`, the input's end or a
    short write, so a file sent to itself grows as it is read (Linux too)."""
    out_f = t.fd_table.get(r.fd(0))
    in_f = t.fd_table.get(r.fd(1))
    off_addr, raw_count = r.pointer(2), r.uint64(3)
    if not in_f.readable or not out_f.writable:
        raise SyscallError(Errno.EBADF)
    if raw_count >> 63:
        raise SyscallError(Errno.EINVAL)         # rw_verify_area: a negative count
    count = min(raw_count, MAX_RW_COUNT)
    pos: int | None
    if off_addr:
        (pos,) = struct.unpack("<q", t.copy_in(off_addr, 8))
        if not in_f.impl.seekable:
            raise SyscallError(Errno.ESPIPE)
    else:
        pos = in_f.offset if in_f.impl.seekable else None
    # splice_direct_to_actor: the input must be a regular file or a block device (a
    # socket, pipe or character device as input is EINVAL, never a wait on it).
    if not in_f.impl.splice_read or in_f.inode.ftype not in (0o100000, 0o060000):
        raise SyscallError(Errno.EINVAL)
    if pos is not None and pos < 0:
        raise SyscallError(Errno.EINVAL)
    if out_f.append:
        raise SyscallError(Errno.EINVAL)         # do_splice_direct: no O_APPEND output
    n = 0
    while n < count:
        try:
            data = await do_read(t, in_f, min(count - n, CHUNK),
                                 None if pos is None else pos + n)
            if not data:
                break
            if pos is not None and in_f.inode is out_f.inode and not out_f.impl.keeps_position \
                    and out_f.offset == pos + n + len(data) and len(data) < count - n:
                # A file sent to itself just past what was read: every later read
                # would return what was just written, so the result is this data
                # repeated (what Linux gets one page at a time); write it at once.
                want = min(count - n, CHUNK)
                data = (data * (want // len(data) + 1))[:want]
            done = await do_write(t, out_f, data, None)
        except SyscallError:
            if n:
                break                            # what was sent so far counts
            raise
        n += done
        if done < len(data) or pos is None:
            break                                # a short write; a stream read once
    if not n:
        return 0
    if off_addr:
        t.copy_out(off_addr, struct.pack("<q", pos + n))
    elif pos is not None:
        in_f.offset = pos + n
    return n


async def sys_copy_file_range(t: Task, r: SyscallArguments) -> int:
    """Implements copy_file_range(2) by staging through the Sentry."""
    fin = t.fd_table.get(r.fd(0))
    off_in_addr = r.pointer(1)
    fout = t.fd_table.get(r.fd(2))
    off_out_addr, count, flags = r.pointer(3), r.uint64(4), r.int32(5)
    if flags:
        raise SyscallError(Errno.EINVAL)
    if not fin.readable or not fout.writable or fout.append:
        raise SyscallError(Errno.EBADF)
    if not fin.inode.is_regular() or not fout.inode.is_regular():
        raise SyscallError(Errno.EINVAL)
    off_in = struct.unpack("<q", t.copy_in(off_in_addr, 8))[0] if off_in_addr else fin.offset
    off_out = struct.unpack("<q", t.copy_in(off_out_addr, 8))[0] if off_out_addr else fout.offset
    if off_in < 0 or off_out < 0:
        raise SyscallError(Errno.EINVAL)
    # Both positions advance by what was written, whatever was read.
    data = await do_read(t, fin, min(count, CHUNK), off_in)
    if not data:
        return 0
    n = await do_write(t, fout, data, off_out)
    if off_in_addr:
        t.copy_out(off_in_addr, struct.pack("<q", off_in + n))
    else:
        fin.offset = off_in + n
    if off_out_addr:
        t.copy_out(off_out_addr, struct.pack("<q", off_out + n))
    else:
        fout.offset = off_out + n
    return n
