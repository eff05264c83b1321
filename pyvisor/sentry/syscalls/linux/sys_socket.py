"""Sockets.  Linux: net/socket.c (the __sys_* functions), net/compat.c for nothing.

Thin: decode addresses, buffers and msghdrs from user memory, call the
Socket (pyvisor/sentry/socket), copy results out.  Families come from the
sandbox's Network (socket/__init__.py): AF_UNIX always, AF_INET/AF_INET6
from netstack or hostinet; any other family gets EAFNOSUPPORT.
"""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mman import PROT_WRITE
from pyvisor.sentry import socket as ksocket
from pyvisor.sentry.arch.syscall_args import MAX_RW_COUNT, SyscallArguments
from pyvisor.sentry.errors import SyscallError, TimedOut
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.security.landlock import landlock_tcp
from pyvisor.sentry.socket.common import (MSG_CMSG_CLOEXEC, MSG_DONTWAIT,
                                          MSG_WAITFORONE, SOCK_CLOEXEC, SOCK_NONBLOCK,
                                          SOCK_STREAM, SOCK_TYPE_MASK, SOCKADDR_STORAGE,
                                          AF_UNIX, Control, Received, Socket,
                                          deliver_control, parse_control)
from pyvisor.sentry.syscalls.linux.sys_read_write import read_iovecs
from pyvisor.sentry.syscalls.linux.usertime import copy_in_timespec
from pyvisor.sentry.vfs.file import FileDescription

# net.core.optmem_max: the largest control buffer a socket call takes.
OPTMEM_MAX = 131072
CHUNK = 1 << 22          # largest single transfer staged in the Sentry
UIO_MAXIOV = 1024
MSGHDR = struct.Struct("<QI4xQQQQi4x")     # struct user_msghdr: 56 bytes
MMSGHDR_SIZE = 64                          # struct mmsghdr: msghdr + msg_len + pad
_I32 = struct.Struct("<i")


def _socket(t: Task, fd: int) -> tuple[FileDescription, Socket]:
    """The open file behind `fd` and its socket; ENOTSOCK if it is not one."""
    f = t.fd_table.get(fd)
    impl = f.impl
    if not isinstance(impl, Socket):
        raise SyscallError(Errno.ENOTSOCK)
    return f, impl


def _type_flags(stype: int) -> tuple[int, int]:
    """Splits socket(2)'s type argument into (type, SOCK_NONBLOCK|SOCK_CLOEXEC)."""
    flags = stype & ~SOCK_TYPE_MASK
    if flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC):
        raise SyscallError(Errno.EINVAL)
    return stype & SOCK_TYPE_MASK, flags


def _read_sockaddr(t: Task, addr: int, addrlen: int) -> bytes:
    """move_addr_to_kernel."""
    if addrlen < 0 or addrlen > SOCKADDR_STORAGE:
        raise SyscallError(Errno.EINVAL)
    return t.copy_in(addr, addrlen) if addrlen else b""


def _read_addrlen(t: Task, lenp: int) -> int:
    (n,) = _I32.unpack(t.copy_in(lenp, 4))
    if n < 0:
        raise SyscallError(Errno.EINVAL)
    return n


def _write_sockaddr(t: Task, addr: int, lenp: int, avail: int, data: bytes) -> None:
    """move_addr_to_user: at most `avail` bytes of the address, its real length in *lenp."""
    n = min(avail, len(data))
    if n:
        t.copy_out(addr, data[:n])
    t.copy_out(lenp, _I32.pack(len(data)))


def _install(t: Task, f: FileDescription, cloexec: bool) -> int:
    try:
        return t.fd_table.install(f, cloexec)
    except SyscallError:
        f.decref()
        raise


# -- creation -------------------------------------------------------------------------------


def sys_socket(t: Task, r: SyscallArguments) -> int:
    """Implements socket(2)."""
    family, stype, protocol = r.int32(0), r.int32(1), r.int32(2)
    stype, flags = _type_flags(stype)
    f = ksocket.new_socket(t, family, stype, protocol, flags)
    return _install(t, f, bool(flags & SOCK_CLOEXEC))


def sys_socketpair(t: Task, r: SyscallArguments) -> int:
    """Implements socketpair(2)."""
    family, stype, protocol, sv = r.int32(0), r.int32(1), r.int32(2), r.pointer(3)
    stype, flags = _type_flags(stype)
    a, b = ksocket.new_socketpair(t, family, stype, protocol, flags)
    cloexec = bool(flags & SOCK_CLOEXEC)
    fds: list[int] = []
    try:
        fds.append(t.fd_table.install(a, cloexec))
        fds.append(t.fd_table.install(b, cloexec))
        t.copy_out(sv, struct.pack("<ii", *fds))
    except SyscallError:
        for fd in fds:
            t.fd_table.remove(fd)        # leave no half-done effects
        for f in (a, b)[len(fds):]:
            f.decref()
        raise
    return 0


# -- naming and connections -------------------------------------------------------------------


def sys_bind(t: Task, r: SyscallArguments) -> int:
    """Implements bind(2)."""
    _, sock = _socket(t, r.int32(0))
    addr = _read_sockaddr(t, r.pointer(1), r.int32(2))
    if t.creds.landlock:
        landlock_tcp(t, sock, addr, bind=True)
    sock.bind(t, addr)
    return 0


def sys_listen(t: Task, r: SyscallArguments) -> int:
    """Implements listen(2)."""
    _, sock = _socket(t, r.int32(0))
    sock.listen(t, r.int32(1))
    return 0


async def _accept(t: Task, fd: int, addr: int, lenp: int, flags: int) -> int:
    f, sock = _socket(t, fd)
    if flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC):
        raise SyscallError(Errno.EINVAL)
    avail = _read_addrlen(t, lenp) if addr else 0
    # Linux reserves the fd first: with a full table the connection stays queued.
    if sum(1 for n in t.fd_table.files if n < t.fd_table.limit) >= t.fd_table.limit:
        raise SyscallError(Errno.EMFILE)
    nf, peer = await sock.accept(t, f, flags)
    newfd = _install(t, nf, bool(flags & SOCK_CLOEXEC))
    if addr:
        try:
            _write_sockaddr(t, addr, lenp, avail, peer)
        except SyscallError:
            t.fd_table.remove(newfd)
            raise
    return newfd


async def sys_accept(t: Task, r: SyscallArguments) -> int:
    """Implements accept(2)."""
    return await _accept(t, r.int32(0), r.pointer(1), r.pointer(2), 0)


async def sys_accept4(t: Task, r: SyscallArguments) -> int:
    """Implements accept4(2)."""
    return await _accept(t, r.int32(0), r.pointer(1), r.pointer(2), r.int32(3))


async def sys_connect(t: Task, r: SyscallArguments) -> int:
    """Implements connect(2)."""
    f, sock = _socket(t, r.int32(0))
    addr = _read_sockaddr(t, r.pointer(1), r.int32(2))
    if t.creds.landlock:
        landlock_tcp(t, sock, addr, bind=False)
    await sock.connect(t, f, addr)
    return 0


def _name(t: Task, r: SyscallArguments, peer: bool) -> int:
    _, sock = _socket(t, r.int32(0))
    addr, lenp = r.pointer(1), r.pointer(2)
    avail = _read_addrlen(t, lenp)
    _write_sockaddr(t, addr, lenp, avail, sock.getpeername(t) if peer else sock.getsockname(t))
    return 0


def sys_getsockname(t: Task, r: SyscallArguments) -> int:
    """Implements getsockname(2)."""
    return _name(t, r, peer=False)


def sys_getpeername(t: Task, r: SyscallArguments) -> int:
    """Implements getpeername(2)."""
    return _name(t, r, peer=True)


def sys_shutdown(t: Task, r: SyscallArguments) -> int:
    """Implements shutdown(2)."""
    _, sock = _socket(t, r.int32(0))
    sock.shutdown(t, r.int32(1))
    return 0


# -- options -------------------------------------------------------------------------------------


def sys_getsockopt(t: Task, r: SyscallArguments) -> int:
    """Implements getsockopt(2)."""
    _, sock = _socket(t, r.int32(0))
    level, name, optval, lenp = r.int32(1), r.int32(2), r.pointer(3), r.pointer(4)
    avail = _read_addrlen(t, lenp)
    val = sock.getsockopt(t, level, name)
    n = min(avail, len(val))
    if n:
        t.copy_out(optval, val[:n])
    t.copy_out(lenp, _I32.pack(n))
    return 0


def sys_setsockopt(t: Task, r: SyscallArguments) -> int:
    """Implements setsockopt(2)."""
    _, sock = _socket(t, r.int32(0))
    level, name, optval, optlen = r.int32(1), r.int32(2), r.pointer(3), r.int32(4)
    if optlen < 0:
        raise SyscallError(Errno.EINVAL)
    sock.setsockopt(t, level, name, t.copy_in(optval, min(optlen, 256)) if optlen else b"")
    return 0


# -- data ----------------------------------------------------------------------------------------


def _gather(t: Task, iov: int, iovlen: int) -> list[tuple[int, int]]:
    """A msghdr's iovecs; EMSGSIZE past UIO_MAXIOV as copy_msghdr_from_user."""
    if iovlen > UIO_MAXIOV:
        raise SyscallError(Errno.EMSGSIZE)
    return read_iovecs(t, iov, iovlen)


def _payload(t: Task, sock: Socket, iovs: list[tuple[int, int]]) -> bytes:
    """The bytes to send, staged in the Sentry (at most CHUNK; a stream socket sends
    the rest on a later call, a message socket refuses a larger datagram)."""
    total = sum(ln for _, ln in iovs)
    if total > CHUNK and sock.stype != SOCK_STREAM:
        raise SyscallError(Errno.EMSGSIZE)
    parts = []
    left = min(total, MAX_RW_COUNT, CHUNK)
    for base, ln in iovs:
        if left <= 0:
            break
        n = min(ln, left)
        if n:
            parts.append(t.copy_in(base, n))
            left -= n
    return b"".join(parts)


async def _send(t: Task, f: FileDescription, sock: Socket, data: bytes, flags: int,
                addr: bytes | None, control: Control) -> int:
    try:
        return await sock.sendmsg(t, f, data, flags, addr, control)
    finally:
        control.release()            # whatever the socket did not queue


async def sys_sendto(t: Task, r: SyscallArguments) -> int:
    """Implements sendto(2) and send(2)."""
    f, sock = _socket(t, r.int32(0))
    buf, n, flags = r.pointer(1), r.uint64(2), r.uint32(3)
    addr, addrlen = r.pointer(4), r.int32(5)
    data = _payload(t, sock, [(buf, n)])
    name = _read_sockaddr(t, addr, addrlen) if addr else b""
    return await _send(t, f, sock, data, flags, name or None, Control())


async def _sendmsg(t: Task, f: FileDescription, sock: Socket, msgp: int, flags: int) -> int:
    name, namelen, iov, iovlen, control, controllen, _ = MSGHDR.unpack(t.copy_in(msgp, 56))
    if controllen > OPTMEM_MAX:
        raise SyscallError(Errno.ENOBUFS)     # sock_kmalloc beyond net.core.optmem_max
    if namelen & 0x80000000:
        raise SyscallError(Errno.EINVAL)
    addr = t.copy_in(name, min(namelen, SOCKADDR_STORAGE)) if name and namelen else b""
    data = _payload(t, sock, _gather(t, iov, iovlen))
    raw = t.copy_in(control, controllen) if control and controllen else b""
    ctl = parse_control(t, raw, sock.family == AF_UNIX)
    return await _send(t, f, sock, data, flags, addr or None, ctl)


async def sys_sendmsg(t: Task, r: SyscallArguments) -> int:
    """Implements sendmsg(2)."""
    f, sock = _socket(t, r.int32(0))
    return await _sendmsg(t, f, sock, r.pointer(1), r.uint32(2))


async def sys_sendmmsg(t: Task, r: SyscallArguments) -> int:
    """Implements sendmmsg(2): as many as go, the first error only if none did."""
    f, sock = _socket(t, r.int32(0))
    vec, vlen, flags = r.pointer(1), r.uint32(2), r.uint32(3)
    vlen = min(vlen, UIO_MAXIOV)
    done = 0
    while done < vlen:
        hdr = vec + done * MMSGHDR_SIZE
        try:
            n = await _sendmsg(t, f, sock, hdr, flags)
            t.copy_out(hdr + 56, struct.pack("<I", n))
        except SyscallError:
            if done:
                return done
            raise
        done += 1
    return done


def _deliver(t: Task, r: Received, iovs: list[tuple[int, int]]) -> None:
    pos = 0
    data = r.data
    for base, ln in iovs:
        if pos >= len(data):
            break
        chunk = data[pos:pos + ln]
        t.copy_out(base, chunk)
        pos += len(chunk)


def _check_writable(t: Task, iovs: list[tuple[int, int]]) -> None:
    """EFAULT before anything is consumed that could not be given back."""
    for base, ln in iovs:
        t.mm.check_range(base, min(ln, CHUNK), PROT_WRITE)


async def sys_recvfrom(t: Task, r: SyscallArguments) -> int:
    """Implements recvfrom(2) and recv(2)."""
    f, sock = _socket(t, r.int32(0))
    buf, n, flags = r.pointer(1), r.uint64(2), r.uint32(3)
    addr, lenp = r.pointer(4), r.pointer(5)
    n = min(n, MAX_RW_COUNT, CHUNK)
    iovs = [(buf, n)]
    _check_writable(t, iovs)
    avail = _read_addrlen(t, lenp) if addr else 0
    got = await sock.recvmsg(t, f, n, flags, bool(addr))
    got.drop_control()
    _deliver(t, got, iovs)
    if addr:
        _write_sockaddr(t, addr, lenp, avail, got.addr or b"")
    return got.length


async def _recvmsg(t: Task, f: FileDescription, sock: Socket, msgp: int, flags: int) -> int:
    """___sys_recvmsg."""
    name, namelen, iov, iovlen, control, controllen, _ = MSGHDR.unpack(t.copy_in(msgp, 56))
    if namelen & 0x80000000:
        raise SyscallError(Errno.EINVAL)
    iovs = _gather(t, iov, iovlen)
    _check_writable(t, iovs)
    if control and controllen:
        t.mm.check_range(control, min(controllen, 1 << 16), PROT_WRITE)
    total = min(sum(ln for _, ln in iovs), MAX_RW_COUNT, CHUNK)
    got = await sock.recvmsg(t, f, total, flags, bool(name))
    _deliver(t, got, iovs)
    mflags = got.flags | (flags & MSG_CMSG_CLOEXEC)
    used = 0
    if control:
        writes, used, trunc = deliver_control(t, got, controllen, flags)
        mflags |= trunc
        for off, data in writes:
            t.copy_out(control + off, data)
    else:
        mflags |= got.drop_control()
    if name:
        _write_sockaddr(t, name, msgp + 8, namelen, got.addr or b"")
    t.copy_out(msgp + 40, struct.pack("<Qi", used, mflags))
    return got.length


async def sys_recvmsg(t: Task, r: SyscallArguments) -> int:
    """Implements recvmsg(2)."""
    f, sock = _socket(t, r.int32(0))
    return await _recvmsg(t, f, sock, r.pointer(1), r.uint32(2))


async def sys_recvmmsg(t: Task, r: SyscallArguments) -> int:
    """Implements recvmmsg(2).  As Linux, without MSG_WAITFORONE every message may
    wait; the timeout is checked between messages only."""
    f, sock = _socket(t, r.int32(0))
    vec, vlen, flags, tsp = r.pointer(1), r.uint32(2), r.uint32(3), r.pointer(4)
    vlen = min(vlen, UIO_MAXIOV)
    deadline = None
    if tsp:
        deadline = t.kernel.now() + copy_in_timespec(t, tsp)
    done = 0
    while done < vlen:
        hdr = vec + done * MMSGHDR_SIZE
        fl = flags | MSG_DONTWAIT if done and flags & MSG_WAITFORONE else flags
        try:
            n = await _recvmsg(t, f, sock, hdr, fl & ~MSG_WAITFORONE)
            t.copy_out(hdr + 56, struct.pack("<I", n))
        except (SyscallError, TimedOut):
            if done:
                break
            raise
        done += 1
        if deadline is not None and t.kernel.now() >= deadline:
            break
    if tsp and deadline is not None:
        left = max(0, deadline - t.kernel.now())
        t.copy_out(tsp, struct.pack("<qq", left // 10**9, left % 10**9))
    return done

