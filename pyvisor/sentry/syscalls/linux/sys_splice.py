"""splice(2) and tee(2).  Linux: fs/splice.c.

Data is staged through the Sentry (as sendfile is), but never lost on the way:
what the output does not take stays where it was.

  * pipe -> anything: the bytes are taken from the pipe, written, and what the
    write did not take goes back to the front of the pipe;
  * socket -> pipe: the socket is peeked, the pipe takes what fits, and exactly
    that is then consumed from the socket (as tcp_splice_read leaves in the
    socket what splice_to_pipe cannot take);
  * file -> pipe: read at the position, which advances by what the pipe took.

SPLICE_F_NONBLOCK makes the pipe side non-blocking; the other side follows its
own O_NONBLOCK, as Linux.  Concurrency: Sentry loop only; nothing suspends
between a peek and its consume, or between a take and its give-back.
"""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.signal import Signal
from pyvisor.sentry.arch.syscall_args import MAX_RW_COUNT, SyscallArguments
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.kernel.errors import SyscallError, WouldBlock
from pyvisor.sentry.kernel.memacct import Kind
from pyvisor.sentry.kernel.pipe import Pipe, PipeImpl
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.kernel.waitqueue import EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT
from pyvisor.sentry.socket.common import MSG_DONTWAIT, MSG_PEEK, Socket
from pyvisor.sentry.syscalls.linux.sys_read_write import CHUNK, do_read, do_write, verify_area
from pyvisor.sentry.vfs.file import FileDescription

# From <linux/splice.h>.
SPLICE_F_MOVE, SPLICE_F_NONBLOCK, SPLICE_F_MORE, SPLICE_F_GIFT = 1, 2, 4, 8
SPLICE_F_ALL = SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT


def _pipe_of(f: FileDescription) -> PipeImpl | None:
    return f.impl if isinstance(f.impl, PipeImpl) else None


def _offset(t: Task, addr: int, f: FileDescription) -> int | None:
    """The offset splice reads at `addr` for a non-pipe side, or None."""
    if not addr:
        return None
    if not f.impl.seekable:
        raise SyscallError(Errno.ESPIPE)
    (pos,) = struct.unpack("<q", t.copy_in(addr, 8))
    if pos < 0:
        raise SyscallError(Errno.EINVAL)
    return pos


async def sys_splice(t: Task, r: SyscallArguments) -> int:
    """Implements splice(2)."""
    in_f, off_in = t.fd_table.get(r.fd(0)), r.pointer(1)
    out_f, off_out = t.fd_table.get(r.fd(2)), r.pointer(3)
    n, flags = min(r.uint64(4), MAX_RW_COUNT, CHUNK), r.uint32(5)
    if flags & ~SPLICE_F_ALL:
        raise SyscallError(Errno.EINVAL)
    if not in_f.readable or not out_f.writable or out_f.append:
        raise SyscallError(Errno.EBADF)
    pin, pout = _pipe_of(in_f), _pipe_of(out_f)
    if pin is None and pout is None:
        raise SyscallError(Errno.EINVAL)
    if pin is not None and pout is not None:
        if (off_in or off_out):
            raise SyscallError(Errno.ESPIPE)
        if pin.pipe is pout.pipe:
            raise SyscallError(Errno.EINVAL)
    if pin is not None and off_in or pout is not None and off_out:
        raise SyscallError(Errno.ESPIPE)
    if n == 0:
        return 0
    nonblock = bool(flags & SPLICE_F_NONBLOCK)
    if pin is not None:
        pos = _offset(t, off_out, out_f)
        done = await _from_pipe(t, in_f, pin, out_f, n, pos, nonblock)
        if pos is not None:
            t.copy_out(off_out, struct.pack("<q", pos + done))
        return done
    assert pout is not None
    pos = _offset(t, off_in, in_f)
    done, end = await _to_pipe(t, in_f, out_f, pout, n, pos, nonblock)
    if off_in:
        t.copy_out(off_in, struct.pack("<q", end))
    return done


async def _from_pipe(t: Task, in_f: FileDescription, pin: PipeImpl, out_f: FileDescription,
                     n: int, pos: int | None, nonblock: bool) -> int:
    """splice_pipe_to_pipe / iter_file_splice_write: take from the pipe, write, give the
    rest back."""
    pipe = pin.pipe
    while not pipe.bufs:
        if pipe.writers == 0:
            return 0
        if nonblock or in_f.nonblocking:
            raise WouldBlock()
        await t.kernel.block_on(t, pipe.wq, EVENT_IN | EVENT_HUP)
    data = pipe.read(n)
    try:
        written = await do_write(t, out_f, data, pos)
    except BaseException:
        _give_back(pipe, data)
        raise
    if written < len(data):
        _give_back(pipe, data[written:])
    return written


def _give_back(pipe: Pipe, data: bytes) -> None:
    """Puts bytes taken from a pipe back at its front (they were never delivered)."""
    if not data:
        return
    pipe.bufs.appendleft(bytearray(data))
    pipe.nbytes += len(data)
    if pipe.acct is not None:
        pipe.acct.try_charge(Kind.PIPE, len(data))   # given back just now: it fits
    pipe.wq.notify(EVENT_IN)


async def _to_pipe(t: Task, in_f: FileDescription, out_f: FileDescription, pout: PipeImpl,
                   n: int, pos: int | None, nonblock: bool) -> tuple[int, int]:
    """A socket or file into a pipe: only what the pipe takes leaves the input.
    Returns (bytes moved, the input position after them)."""
    pipe = pout.pipe
    sock = in_f.impl if isinstance(in_f.impl, Socket) else None
    if sock is None and not in_f.impl.seekable:
        raise SyscallError(Errno.EINVAL)      # no way to leave what the pipe refuses
    if sock is None:
        start = in_f.offset if pos is None else pos
        verify_area(in_f, start, n)
    while True:
        if pipe.readers == 0:
            ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGPIPE, 0, pid=t.tg.tgid))
            raise SyscallError(Errno.EPIPE)
        if pipe.full():
            if nonblock or out_f.nonblocking:
                raise WouldBlock()
            await t.kernel.block_on(t, pipe.wq, EVENT_OUT | EVENT_ERR)
            continue
        room = (pipe.slots - len(pipe.bufs)) * 4096
        if sock is not None:
            # Wait for data (as the socket's own O_NONBLOCK says), then peek without
            # sleeping, so nothing runs between the peek and the consume below.
            got = await sock.recvmsg(t, in_f, min(n, room), MSG_PEEK, False)
            got.drop_control()
            if not got.data:
                return 0, 0
            got = await sock.recvmsg(t, in_f, min(n, room), MSG_PEEK | MSG_DONTWAIT, False)
            got.drop_control()
            data = got.data
        else:
            data = await do_read(t, in_f, min(n, room), start)
            if not data:
                return 0, start
        try:
            written = pipe.write(data, t.kernel.memory)
        except WouldBlock:
            continue                       # filled meanwhile: wait for room again
        if sock is not None:
            taken = await sock.recvmsg(t, in_f, written, MSG_DONTWAIT, False)
            taken.drop_control()
            return written, 0
        if pos is None:
            in_f.offset = start + written
        return written, start + written


async def sys_tee(t: Task, r: SyscallArguments) -> int:
    """Implements tee(2): copies bytes from one pipe to another without consuming them."""
    in_f, out_f = t.fd_table.get(r.fd(0)), t.fd_table.get(r.fd(1))
    n, flags = min(r.uint64(2), MAX_RW_COUNT, CHUNK), r.uint32(3)
    if flags & ~SPLICE_F_ALL:
        raise SyscallError(Errno.EINVAL)
    pin, pout = _pipe_of(in_f), _pipe_of(out_f)
    if pin is None or pout is None or pin.pipe is pout.pipe:
        raise SyscallError(Errno.EINVAL)
    if not in_f.readable or not out_f.writable:
        raise SyscallError(Errno.EBADF)
    if n == 0:
        return 0
    nonblock = bool(flags & SPLICE_F_NONBLOCK)
    src, dst = pin.pipe, pout.pipe
    while True:
        if not src.bufs:
            if src.writers == 0:
                return 0
            if nonblock or in_f.nonblocking:
                raise WouldBlock()
            await t.kernel.block_on(t, src.wq, EVENT_IN | EVENT_HUP)
            continue
        if dst.readers == 0:
            ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGPIPE, 0, pid=t.tg.tgid))
            raise SyscallError(Errno.EPIPE)
        if dst.full():
            if nonblock or out_f.nonblocking:
                raise WouldBlock()
            await t.kernel.block_on(t, dst.wq, EVENT_OUT | EVENT_ERR)
            continue
        data = bytes(b"".join(src.bufs))[:n]
        try:
            return int(dst.write(data, t.kernel.memory))
        except WouldBlock:
            continue
