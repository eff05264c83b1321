"""read/write and friends.  Linux: fs/read_write.c."""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import SEEK_CUR, SEEK_DATA, SEEK_END, SEEK_HOLE, SEEK_SET
from pyvisor.abi.linux.signal import Signal
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.kernel.errors import SyscallError, WouldBlock
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.kernel.waitqueue import EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT
from pyvisor.sentry.platform.ptrace.binding import UserRegs
from pyvisor.sentry.syscalls.linux.args import int32, int64, pointer, uint64
from pyvisor.sentry.vfs.file import FileDescription

MAX_RW_COUNT = 0x7FFFF000
CHUNK = 1 << 22          # largest single transfer we stage in the Sentry
IOV_MAX = 1024


async def do_read(t: Task, f: FileDescription, n: int, offset: int | None) -> bytes:
    """Reads up to `n` bytes, waiting while the file would block."""
    if not f.readable:
        raise SyscallError(Errno.EBADF)
    if f.inode.is_dir() and f.impl.seekable and not hasattr(f.impl, "pipe"):
        from pyvisor.sentry.vfs.file import DirectoryImpl
        if isinstance(f.impl, DirectoryImpl):
            raise SyscallError(Errno.EISDIR)
    n = min(n, MAX_RW_COUNT, CHUNK)
    while True:
        try:
            off = f.offset if offset is None else offset
            data = f.impl.read(f, t, n, off)
            break
        except WouldBlock:
            if f.nonblocking:
                raise
        await t.kernel.block_on(t, f.impl.waitq(f), EVENT_IN | EVENT_HUP | EVENT_ERR)
    if offset is None and f.impl.seekable:
        f.offset += len(data)
    return data


async def do_write(t: Task, f: FileDescription, data: bytes, offset: int | None) -> int:
    """Writes all of `data` (blocking files) or what fits (non-blocking)."""
    if not f.writable:
        raise SyscallError(Errno.EBADF)
    done = 0
    total = len(data)
    while True:
        try:
            if offset is None:
                off = f.impl.size(f) if f.append and f.impl.seekable else f.offset
            else:
                off = offset + done
            n = f.impl.write(f, t, data[done:] if done else data, off)
            if offset is None and f.impl.seekable:
                f.offset = off + n
            done += n
            if done >= total or n == 0:
                return done
            # Part was written: try the rest at once.  Sleep only on WouldBlock (a
            # non-blocking file returns what it wrote; a tmpfs full after part of the
            # data returns that part on the next try's ENOSPC).
            continue
        except WouldBlock:
            if f.nonblocking:
                if done:
                    return done
                raise
        except SyscallError as e:
            if e.errno == Errno.EPIPE:
                ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGPIPE, 0, pid=t.tg.tgid))
            if done:
                return done
            raise
        try:
            await t.kernel.block_on(t, f.impl.waitq(f), EVENT_OUT | EVENT_ERR | EVENT_HUP)
        except SyscallError:
            if done:
                return done
            raise


async def sys_read(t: Task, r: UserRegs) -> int:
    """Implements read(2)."""
    f = t.fd_table.get(int32(r, 0))
    buf, n = pointer(r, 1), uint64(r, 2)
    if n == 0:
        if not f.readable:
            raise SyscallError(Errno.EBADF)
        return 0
    t.mm.check_range(buf, min(n, CHUNK), 2)
    data = await do_read(t, f, n, None)
    t.copy_out(buf, data)
    return len(data)


async def sys_write(t: Task, r: UserRegs) -> int:
    """Implements write(2)."""
    f = t.fd_table.get(int32(r, 0))
    buf, n = pointer(r, 1), min(uint64(r, 2), MAX_RW_COUNT)
    if not f.writable:
        raise SyscallError(Errno.EBADF)
    if n == 0:
        return 0
    data = t.copy_in(buf, min(n, CHUNK))
    return await do_write(t, f, data, None)


def _positional(f: FileDescription, off: int) -> None:
    if not f.impl.seekable:
        raise SyscallError(Errno.ESPIPE)
    if off < 0:
        raise SyscallError(Errno.EINVAL)


async def sys_pread64(t: Task, r: UserRegs) -> int:
    """Implements pread64(2)."""
    f = t.fd_table.get(int32(r, 0))
    buf, n, off = pointer(r, 1), uint64(r, 2), int64(r, 3)
    _positional(f, off)
    data = await do_read(t, f, n, off)
    t.copy_out(buf, data)
    return len(data)


async def sys_pwrite64(t: Task, r: UserRegs) -> int:
    """Implements pwrite64(2)."""
    f = t.fd_table.get(int32(r, 0))
    buf, n, off = pointer(r, 1), min(uint64(r, 2), MAX_RW_COUNT), int64(r, 3)
    _positional(f, off)
    if not f.writable:
        raise SyscallError(Errno.EBADF)
    return await do_write(t, f, t.copy_in(buf, min(n, CHUNK)), off)


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
        iovs.append((base, ln))
    return iovs


async def _readv(t: Task, f: FileDescription, iovs: list[tuple[int, int]], off: int | None) -> int:
    total = sum(ln for _, ln in iovs)
    if total == 0:
        if not f.readable:
            raise SyscallError(Errno.EBADF)
        return 0
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
    data = b"".join(t.copy_in(base, min(ln, CHUNK)) for base, ln in iovs if ln)
    if not data:
        return 0
    return await do_write(t, f, data, off)


async def sys_readv(t: Task, r: UserRegs) -> int:
    """Implements readv(2)."""
    f = t.fd_table.get(int32(r, 0))
    return await _readv(t, f, read_iovecs(t, pointer(r, 1), int32(r, 2)), None)


async def sys_writev(t: Task, r: UserRegs) -> int:
    """Implements writev(2)."""
    f = t.fd_table.get(int32(r, 0))
    return await _writev(t, f, read_iovecs(t, pointer(r, 1), int32(r, 2)), None)


async def sys_preadv(t: Task, r: UserRegs) -> int:
    f = t.fd_table.get(int32(r, 0))
    off = int64(r, 3)
    _positional(f, off)
    return await _readv(t, f, read_iovecs(t, pointer(r, 1), int32(r, 2)), off)


async def sys_pwritev(t: Task, r: UserRegs) -> int:
    f = t.fd_table.get(int32(r, 0))
    off = int64(r, 3)
    _positional(f, off)
    return await _writev(t, f, read_iovecs(t, pointer(r, 1), int32(r, 2)), off)


async def sys_preadv2(t: Task, r: UserRegs) -> int:
    f = t.fd_table.get(int32(r, 0))
    off = int64(r, 3)
    iovs = read_iovecs(t, pointer(r, 1), int32(r, 2))
    if off == -1:
        return await _readv(t, f, iovs, None)
    _positional(f, off)
    return await _readv(t, f, iovs, off)


async def sys_pwritev2(t: Task, r: UserRegs) -> int:
    f = t.fd_table.get(int32(r, 0))
    off = int64(r, 3)
    iovs = read_iovecs(t, pointer(r, 1), int32(r, 2))
    if off == -1:
        return await _writev(t, f, iovs, None)
    _positional(f, off)
    return await _writev(t, f, iovs, off)


def sys_lseek(t: Task, r: UserRegs) -> int:
    """Implements lseek(2)."""
    f = t.fd_table.get(int32(r, 0))
    off, whence = int64(r, 1), int32(r, 2)
    if not f.impl.seekable:
        raise SyscallError(Errno.ESPIPE)
    if whence == SEEK_SET:
        new = off
    elif whence == SEEK_CUR:
        new = f.offset + off
    elif whence == SEEK_END:
        new = f.impl.size(f) + off
    elif whence in (SEEK_DATA, SEEK_HOLE):
        size = f.impl.size(f)
        if off < 0 or off >= size:
            raise SyscallError(Errno.ENXIO)
        new = off if whence == SEEK_DATA else size
    else:
        raise SyscallError(Errno.EINVAL)
    if new < 0:
        raise SyscallError(Errno.EINVAL)
    f.offset = new
    if hasattr(f.impl, "entries") and new == 0:
        f.impl.entries = None   # rewinddir takes a fresh snapshot
    return new


async def sys_sendfile(t: Task, r: UserRegs) -> int:
    """Implements sendfile(2) by staging through the Sentry."""
    out_f = t.fd_table.get(int32(r, 0))
    in_f = t.fd_table.get(int32(r, 1))
    off_addr, count = pointer(r, 2), min(uint64(r, 3), MAX_RW_COUNT)
    if not in_f.readable or not out_f.writable:
        raise SyscallError(Errno.EBADF)
    if off_addr:
        (off,) = struct.unpack("<q", t.copy_in(off_addr, 8))
        if off < 0:
            raise SyscallError(Errno.EINVAL)
        data = await do_read(t, in_f, min(count, CHUNK), off)
    else:
        data = await do_read(t, in_f, min(count, CHUNK), None)
    if not data:
        return 0
    n = await do_write(t, out_f, data, None)
    if off_addr:
        t.copy_out(off_addr, struct.pack("<q", off + n))
    elif n < len(data) and in_f.impl.seekable:
        in_f.offset -= len(data) - n
    return n


async def sys_copy_file_range(t: Task, r: UserRegs) -> int:
    """Implements copy_file_range(2) by staging through the Sentry."""
    fin = t.fd_table.get(int32(r, 0))
    off_in_addr = pointer(r, 1)
    fout = t.fd_table.get(int32(r, 2))
    off_out_addr, count, flags = pointer(r, 3), uint64(r, 4), int32(r, 5)
    if flags:
        raise SyscallError(Errno.EINVAL)
    if not fin.readable or not fout.writable or fout.append:
        raise SyscallError(Errno.EBADF)
    if not fin.inode.is_regular() or not fout.inode.is_regular():
        raise SyscallError(Errno.EINVAL)
    off_in = struct.unpack("<q", t.copy_in(off_in_addr, 8))[0] if off_in_addr else None
    off_out = struct.unpack("<q", t.copy_in(off_out_addr, 8))[0] if off_out_addr else None
    data = await do_read(t, fin, min(count, CHUNK), off_in)
    if not data:
        return 0
    n = await do_write(t, fout, data, off_out)
    if off_in_addr and off_in is not None:
        t.copy_out(off_in_addr, struct.pack("<q", off_in + n))
    if off_out_addr and off_out is not None:
        t.copy_out(off_out_addr, struct.pack("<q", off_out + n))
    return n
