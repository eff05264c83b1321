"""splice(2), tee(2) and vmsplice(2).  Linux: fs/splice.c.

Data is staged through the Sentry (pipes here are byte rings, not page
references), but the rules are Linux's: one side must be a pipe (EINVAL),
a pipe takes no offset (ESPIPE), the same pipe on both sides is EINVAL, a
pipe-to-pipe splice or tee moves what the output has room for and waits for
input and room unless SPLICE_F_NONBLOCK (or O_NONBLOCK on either file) says
EAGAIN, and a splice into a pipe fills only free slots, so a pipe whose one
slot is part-full makes it wait (never spin).  A pipe without readers gives
EPIPE and SIGPIPE.
"""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.signal import Signal
from pyvisor.sentry.arch.syscall_args import MAX_RW_COUNT, SyscallArguments
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.kernel.pipe import PAGE_SIZE, Pipe, PipeImpl
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.waitqueue import EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT
from pyvisor.sentry.vfs import inotify
from pyvisor.sentry.syscalls.linux.sys_read_write import CHUNK, MAX_LFS_FILESIZE, do_write
from pyvisor.sentry.vfs.file import AT_POSITION, FileDescription

# From <linux/splice.h>.
SPLICE_F_MOVE, SPLICE_F_NONBLOCK, SPLICE_F_MORE, SPLICE_F_GIFT = 1, 2, 4, 8
_SPLICE_FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT


def _pipe_of(f: FileDescription) -> Pipe | None:
    impl = f.impl
    return impl.pipe if isinstance(impl, PipeImpl) else None


def _epipe(t: Task) -> SyscallError:
    ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGPIPE, 0, pid=t.tg.tgid))
    return SyscallError(Errno.EPIPE)


def _room(p: Pipe) -> int:
    """Bytes a splice may add: whole free slots (splice never merges into a buffer)."""
    return max(0, p.slots - len(p.bufs)) * PAGE_SIZE


async def _wait(t: Task, f: FileDescription, mask: int) -> None:
    await t.kernel.block_on(t, f.impl.waitq(f), mask | EVENT_ERR | EVENT_HUP)


def _read_offset(t: Task, addr: int) -> int:
    (off,) = struct.unpack("<q", t.copy_in(addr, 8))
    if off < 0:
        raise SyscallError(Errno.EINVAL)
    return off


async def _pipe_to_pipe(t: Task, fin: FileDescription, ip: Pipe, fout: FileDescription,
                        op: Pipe, n: int, nonblock: bool, consume: bool) -> int:
    """splice_pipe_to_pipe / link_pipe (tee): waits for input, then for room."""
    while True:
        if op.readers == 0:
            raise _epipe(t)
        if not ip.bufs:
            if ip.writers == 0:
                return 0
            if nonblock:
                raise WouldBlock()
            await _wait(t, fin, EVENT_IN)
            continue
        room = _room(op)
        if room == 0:
            if nonblock:
                raise WouldBlock()
            await _wait(t, fout, EVENT_OUT)
            continue
        data = ip.peek(min(n, room))
        done = op.write(data, t.kernel.memory)
        if consume:
            ip.read(done)
        return done


async def _file_to_pipe(t: Task, fin: FileDescription, off_addr: int, fout: FileDescription,
                        op: Pipe, n: int, nonblock: bool) -> int:
    if off_addr and not fin.impl.seekable:
        raise SyscallError(Errno.ESPIPE)
    if not fin.impl.splice_read:
        raise SyscallError(Errno.EINVAL)
    pos = _read_offset(t, off_addr) if off_addr else None
    while True:
        if op.readers == 0:
            raise _epipe(t)
        room = _room(op)
        if room == 0:
            if nonblock:
                raise WouldBlock()
            await _wait(t, fout, EVENT_OUT)
            continue
        want = min(n, room, CHUNK)
        keeps = fin.impl.keeps_position
        at = pos if pos is not None else (AT_POSITION if keeps else fin.offset)
        try:
            data = fin.impl.read(fin, t, want, at)
        except WouldBlock:
            if nonblock or fin.nonblocking:
                raise
            await _wait(t, fin, EVENT_IN)
            continue
        if not data:
            return 0
        done = op.write(data, t.kernel.memory)
        if inotify._watches:
            inotify.file_event(fin, inotify.IN_ACCESS)
        if pos is not None:
            t.copy_out(off_addr, struct.pack("<q", pos + done))
        elif fin.impl.seekable and not keeps:
            fin.offset += done
        return done


async def _pipe_to_file(t: Task, fin: FileDescription, ip: Pipe, fout: FileDescription,
                        off_addr: int, n: int, nonblock: bool) -> int:
    if off_addr and not fout.impl.seekable:
        raise SyscallError(Errno.ESPIPE)
    if fout.append:
        raise SyscallError(Errno.EINVAL)
    pos = _read_offset(t, off_addr) if off_addr else None
    if pos is not None and pos + n > MAX_LFS_FILESIZE:
        raise SyscallError(Errno.EINVAL)
    while not ip.bufs:
        if ip.writers == 0:
            return 0
        if nonblock:
            raise WouldBlock()
        await _wait(t, fin, EVENT_IN)
    data = ip.peek(min(n, ip.nbytes, CHUNK))
    done = await do_write(t, fout, data, pos)
    ip.read(done)
    if pos is not None:
        t.copy_out(off_addr, struct.pack("<q", pos + done))
    return done


async def sys_splice(t: Task, r: SyscallArguments) -> int:
    """Implements splice(2)."""
    fin = t.fd_table.get(r.fd(0))
    off_in = r.pointer(1)
    fout = t.fd_table.get(r.fd(2))
    off_out, n, flags = r.pointer(3), min(r.uint64(4), MAX_RW_COUNT), r.uint32(5)
    if flags & ~_SPLICE_FLAGS:
        raise SyscallError(Errno.EINVAL)
    if not fin.readable or not fout.writable:
        raise SyscallError(Errno.EBADF)
    ip, op = _pipe_of(fin), _pipe_of(fout)
    if ip is None and op is None:
        raise SyscallError(Errno.EINVAL)
    if (ip is not None and off_in) or (op is not None and off_out):
        raise SyscallError(Errno.ESPIPE)
    if ip is not None and ip is op:
        raise SyscallError(Errno.EINVAL)
    if n == 0:
        return 0
    nonblock = bool(flags & SPLICE_F_NONBLOCK) or fin.nonblocking or fout.nonblocking
    fin.incref()
    fout.incref()
    try:
        if ip is not None and op is not None:
            return await _pipe_to_pipe(t, fin, ip, fout, op, n, nonblock, True)
        if op is not None:
            return await _file_to_pipe(t, fin, off_in, fout, op, n, nonblock)
        assert ip is not None
        return await _pipe_to_file(t, fin, ip, fout, off_out, n,
                                   bool(flags & SPLICE_F_NONBLOCK) or fin.nonblocking)
    finally:
        fin.decref()
        fout.decref()


async def sys_tee(t: Task, r: SyscallArguments) -> int:
    """Implements tee(2): copies from one pipe to another without consuming."""
    fin = t.fd_table.get(r.fd(0))
    fout = t.fd_table.get(r.fd(1))
    n, flags = min(r.uint64(2), MAX_RW_COUNT), r.uint32(3)
    if flags & ~_SPLICE_FLAGS:
        raise SyscallError(Errno.EINVAL)
    if not fin.readable or not fout.writable:
        raise SyscallError(Errno.EBADF)
    ip, op = _pipe_of(fin), _pipe_of(fout)
    if ip is None or op is None or ip is op:
        raise SyscallError(Errno.EINVAL)
    if n == 0:
        return 0
    nonblock = bool(flags & SPLICE_F_NONBLOCK) or fin.nonblocking or fout.nonblocking
    fin.incref()
    fout.incref()
    try:
        return await _pipe_to_pipe(t, fin, ip, fout, op, n, nonblock, False)
    finally:
        fin.decref()
        fout.decref()
