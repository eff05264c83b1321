"""hostinet: AF_INET/AF_INET6 sockets served by host sockets the Sentry owns
(--network=host).  gVisor: pkg/sentry/socket/hostinet.

Each application socket is one host socket, made non-blocking and
close-on-exec by the Sentry, in the host's network namespace (the Sentry
keeps it for this mode only).  Calls are passed to the host with the
application's exact address bytes, so the host kernel's checks and errnos
are the answer; what the Sentry adds:

  * blocking: the host socket never blocks; a call that would is retried
    after the socket's wait queue fires.  The queue is notified from an
    edge-triggered watch on the Sentry's epoll (Kernel.watch_fd_edges), so a
    socket that is always writable does not wake its sleepers in a loop;
    SO_RCVTIMEO/SO_SNDTIMEO are kept by the Sentry, as are O_NONBLOCK and
    MSG_DONTWAIT;
  * signals: the host never sends SIGPIPE to the Sentry (MSG_NOSIGNAL on
    every send); the Sentry raises it for the task, as Linux would;
  * options: only a list of SOL_SOCKET/SOL_IP/SOL_IPV6/SOL_TCP/SOL_UDP options
    reaches the host (no socket filters, no SO_BINDTODEVICE/SO_MARK games);
    the seccomp filter allows setsockopt/getsockopt for those levels only;
  * interfaces: the SIOCGIF* ioctls, netlink and /proc/net describe a
    snapshot of the host's interfaces taken at start-up (before the
    Sentry's seccomp filter, which has no netlink socket).

Control messages on send are not passed (IP_TOS/IP_TTL per message); on
receive, those the host produced are returned.  Concurrency: Sentry loop
only.
"""

from __future__ import annotations

import ctypes
import errno as host_errno
import os
import select
import socket as pysocket
import struct
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import (IFF_LOOPBACK, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
                                    IPPROTO_UDP, SOL_IP, SOL_IPV6, SOL_TCP, SOL_UDP, ARPHRD_ETHER,
                                    ARPHRD_LOOPBACK)
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.waitqueue import (EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT,
                                             EVENT_PRI, EVENT_RDHUP, WaitQueue)
from pyvisor.sentry.socket import inet
from pyvisor.sentry.socket.common import (AF_INET, AF_INET6, CMSGHDR, MSG_CMSG_CLOEXEC,
                                          MSG_CONFIRM, MSG_DONTWAIT, MSG_EOR, MSG_ERRQUEUE,
                                          MSG_MORE, MSG_NOSIGNAL, MSG_OOB, MSG_PEEK, MSG_TRUNC,
                                          MSG_WAITALL, SIOCINQ, SIOCOUTQ, SO_ACCEPTCONN,
                                          SO_BROADCAST, SO_DOMAIN, SO_ERROR, SO_KEEPALIVE,
                                          SO_LINGER, SO_OOBINLINE, SO_PEERCRED, SO_PRIORITY,
                                          SO_PROTOCOL, SO_RCVBUF, SO_RCVLOWAT, SO_RCVTIMEO,
                                          SO_REUSEADDR, SO_REUSEPORT, SO_SNDBUF, SO_SNDLOWAT,
                                          SO_SNDTIMEO, SO_TIMESTAMP, SO_TIMESTAMPNS, SO_TYPE,
                                          SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_RAW,
                                          SOCK_STREAM, SOL_SOCKET, UCRED, UCRED_NOBODY, Control,
                                          Received, Socket, cmsg_align, deadline_of,
                                          new_socket_file, wait)
from pyvisor.sentry.socket.inet import Interface

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.file import FileDescription

_libc = ctypes.CDLL(None, use_errno=True)
_I32 = struct.Struct("<i")
SOCKADDR_MAX = 128
CONTROL_MAX = 1024
SIOCATMARK = 0x8905
READ_MAX = 1 << 22          # one read(2) of a host socket (sys_read's CHUNK)
RX_BUFFER = 1 << 16         # the kept recvmsg buffer; larger receives get their own
_POLL_ALL = select.POLLIN | select.POLLPRI | select.POLLOUT | select.POLLRDHUP
# Options after which the host attaches control messages to stream data: SO_TIMESTAMP,
# SO_TIMESTAMPNS, TCP_INQ.
_CMSG_OPTIONS = frozenset(((1, 29), (1, 35), (6, 36)))
# TCP states (<net/tcp_states.h>): those a lingering close waits through, and those in
# which close(2) sends a FIN at all.
_CLOSING_STATES = frozenset((4, 11, 9))            # FIN_WAIT1, CLOSING, LAST_ACK
_LINGER_STATES = frozenset((1, 8))                 # ESTABLISHED, CLOSE_WAIT
LINGER_POLL_NS = 20_000_000

# Options passed to the host.  From <asm-generic/socket.h>, <linux/in.h>, <linux/in6.h>,
# <linux/tcp.h>, <linux/udp.h>.  SO_RCVTIMEO/SO_SNDTIMEO stay in the Sentry.
SOCKET_OPTIONS = frozenset((SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE, SO_LINGER, SO_SNDBUF,
                            SO_RCVBUF, SO_BROADCAST, SO_OOBINLINE, SO_RCVLOWAT, SO_SNDLOWAT,
                            SO_TIMESTAMP, SO_TIMESTAMPNS, SO_PRIORITY, SO_ERROR, SO_TYPE,
                            SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN))
IP_OPTIONS = frozenset((1, 2, 8, 10, 11, 12, 13, 14, 15, 24, 32, 33, 34, 35, 36, 49))
IPV6_OPTIONS = frozenset((16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 49, 51, 66, 67))
TCP_OPTIONS = frozenset((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 18, 25, 36))
UDP_OPTIONS = frozenset((1, 103, 104))
LEVELS = {SOL_SOCKET: SOCKET_OPTIONS, SOL_IP: IP_OPTIONS, SOL_IPV6: IPV6_OPTIONS,
          SOL_TCP: TCP_OPTIONS, SOL_UDP: UDP_OPTIONS}
_SEND_FLAGS = MSG_OOB | MSG_DONTWAIT | MSG_EOR | MSG_MORE | MSG_CONFIRM
_RECV_FLAGS = MSG_OOB | MSG_PEEK | MSG_TRUNC | MSG_ERRQUEUE


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(_Iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


def _check(ret: int) -> int:
    """A libc socket call's result; host errors become SyscallError (EAGAIN: WouldBlock)."""
    if ret < 0:
        e = ctypes.get_errno()
        if e in (host_errno.EAGAIN, host_errno.EWOULDBLOCK):
            raise WouldBlock()
        raise SyscallError.from_host(OSError(e, os.strerror(e)))
    return ret


class HostSocket(Socket):
    """An application socket backed by a host socket.  gVisor: hostinet.Socket."""

    def __init__(self, stack: HostStack, fd: int, family: int, stype: int, protocol: int) -> None:
        super().__init__(stype, protocol)
        self.stack = stack
        self.family = family                    # type: ignore[misc]
        self.hostfd = fd                        # owned; closed on release
        self.wq = WaitQueue()
        # A poll set of this one fd, kept (readiness is asked on every poll/epoll pass).
        self._poll = select.poll()
        self._poll.register(fd, _POLL_ALL)
        # Buffers for recvmsg(2), made on the first receive that needs them.
        self._rx: tuple[Any, Any, Any, Any, Any] | None = None
        # Whether an option that makes the host attach control messages to received
        # data was set (timestamps, TCP_INQ): then reads go through recvmsg.
        self.cmsg_opts = False
        stack.kernel.watch_fd_edges(fd, select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP
                                    | select.EPOLLPRI, self._edge)

    def _edge(self, events: int) -> None:
        self.wq.notify(events | EVENT_IN | EVENT_OUT)

    # -- FileImpl ----------------------------------------------------------------------------

    def readiness(self, fd: FileDescription, mask: int) -> int:
        try:
            res = self._poll.poll(0)
        except OSError:
            return EVENT_ERR
        if not res:
            return 0
        return res[0][1] & (mask | EVENT_HUP | EVENT_ERR)

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.wq

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        """read(2) is recv(2) without flags, whose address and control messages nobody
        sees: one read(2) of the non-blocking host socket."""
        try:
            return os.read(self.hostfd, min(n, READ_MAX))
        except BlockingIOError:
            raise WouldBlock() from None
        except OSError as e:
            raise SyscallError.from_host(e) from None

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        return self._send(data, 0, None)       # do_write raises SIGPIPE for EPIPE

    def release(self, fd: FileDescription) -> None:
        self.stack.kernel.unwatch_fd(self.hostfd)
        if self.stype == SOCK_STREAM and self._host_linger():
            self._linger_close()
            return
        self._close_host()

    def _close_host(self) -> None:
        if self.hostfd >= 0:
            try:
                os.close(self.hostfd)
            except OSError:
                pass
            self.hostfd = -1

    def _host_linger(self) -> bool:
        """Whether the host socket has SO_LINGER {1, N > 0}: the host's close(2) would
        then block the whole Sentry for up to N seconds (inet_release)."""
        try:
            onoff, secs = struct.unpack("<ii", self._host_getsockopt(SOL_SOCKET, SO_LINGER, 8))
        except (SyscallError, struct.error):
            return False
        return bool(onoff) and secs != 0

    def _linger_close(self) -> None:
        """tcp_close without the host blocking: the FIN goes out now (shutdown), close(2)
        waits in close_wait (by polling the host's TCP state) and a timer closes the host
        socket at the linger deadline whoever released us.  With unread data the host
        resets at once, as it would."""
        onoff, secs = struct.unpack("<ii", self._host_getsockopt(SOL_SOCKET, SO_LINGER, 8))
        off = struct.pack("<ii", 0, 0)
        _libc.setsockopt(self.hostfd, SOL_SOCKET, SO_LINGER, off, len(off))
        inq = bytearray(4)
        import fcntl
        try:
            fcntl.ioctl(self.hostfd, SIOCINQ, inq)
        except OSError:
            pass
        if _I32.unpack(inq)[0] or self._tcp_state() not in _LINGER_STATES:
            self._close_host()
            return
        _libc.shutdown(self.hostfd, 1)                     # SHUT_WR: tcp_send_fin
        kernel = self.stack.kernel
        self.linger_deadline = kernel.now() + max(secs, 0) * 10**9
        kernel.add_timer(self.linger_deadline, self._close_host)

    def _tcp_state(self) -> int:
        try:
            return self._host_getsockopt(SOL_TCP, 11, 8)[0]     # TCP_INFO's tcpi_state
        except (SyscallError, IndexError):
            return 7

    async def close_wait(self, t: Task) -> None:
        """close(2) with SO_LINGER {1, N}: until the host has our FIN acknowledged
        (sk_stream_wait_close) or the deadline; then the host socket is closed."""
        deadline = getattr(self, "linger_deadline", None)
        if deadline is None or self.hostfd < 0:
            return
        from pyvisor.sentry.errors import Interrupted, TimedOut
        try:
            while self.hostfd >= 0 and self._tcp_state() in _CLOSING_STATES:
                step = min(deadline, t.kernel.now() + LINGER_POLL_NS)
                try:
                    await t.kernel.block_on(t, None, deadline=step)
                except TimedOut:
                    if step >= deadline:
                        break
        except Interrupted:
            pass
        self._close_host()

    def proto_ioctl(self, t: Task, cmd: int, arg: int) -> int:
        if cmd in (SIOCINQ, SIOCOUTQ, SIOCATMARK):
            import fcntl
            buf = bytearray(4)
            try:
                fcntl.ioctl(self.hostfd, cmd, buf)
            except OSError as e:
                raise SyscallError.from_host(e) from None
            t.copy_out(arg, bytes(buf))
            return 0
        raise SyscallError(Errno.ENOTTY)

    # -- names and connections ---------------------------------------------------------------

    def bind(self, t: Task, addr: bytes) -> None:
        buf = ctypes.create_string_buffer(addr, len(addr) or 1)
        _check(_libc.bind(self.hostfd, buf, len(addr)))

    def listen(self, t: Task, backlog: int) -> None:
        _check(_libc.listen(self.hostfd, backlog))

    def _name(self, fn: Any) -> bytes:
        buf = ctypes.create_string_buffer(SOCKADDR_MAX)
        n = ctypes.c_uint32(SOCKADDR_MAX)
        _check(fn(self.hostfd, buf, ctypes.byref(n)))
        return buf.raw[:min(n.value, SOCKADDR_MAX)]

    def getsockname(self, t: Task) -> bytes:
        return self._name(_libc.getsockname)

    def getpeername(self, t: Task) -> bytes:
        return self._name(_libc.getpeername)

    def shutdown(self, t: Task, how: int) -> None:
        _check(_libc.shutdown(self.hostfd, how))
        self.wq.notify()

    async def accept(self, t: Task, f: FileDescription, flags: int
                     ) -> tuple[FileDescription, bytes]:
        deadline = deadline_of(t, self.rcvtimeo)
        while True:
            buf = ctypes.create_string_buffer(SOCKADDR_MAX)
            n = ctypes.c_uint32(SOCKADDR_MAX)
            try:
                fd = _check(_libc.accept4(self.hostfd, buf, ctypes.byref(n),
                                          SOCK_NONBLOCK | SOCK_CLOEXEC))
                break
            except WouldBlock:
                if f.nonblocking or self.rcvtimeo == 0:
                    raise
            await wait(t, self.wq, EVENT_IN | EVENT_ERR | EVENT_HUP, deadline,
                       self.rcvtimeo is not None)
        s = HostSocket(self.stack, fd, self.family, self.stype, self.protocol)
        nf = new_socket_file(s, flags & SOCK_NONBLOCK, t.creds.fsuid, t.creds.fsgid)
        return nf, buf.raw[:min(n.value, SOCKADDR_MAX)]

    async def connect(self, t: Task, f: FileDescription, addr: bytes) -> None:
        buf = ctypes.create_string_buffer(addr, len(addr) or 1)
        if _libc.connect(self.hostfd, buf, len(addr)) == 0:
            return
        e = ctypes.get_errno()
        if e != host_errno.EINPROGRESS or f.nonblocking:
            if e in (host_errno.EAGAIN, host_errno.EWOULDBLOCK):
                raise WouldBlock()
            raise SyscallError.from_host(OSError(e, os.strerror(e)))
        # A blocking connect: wait for the handshake, then collect its outcome with a
        # second connect(2), which (unlike SO_ERROR) also puts the host socket back in
        # the state a failed blocking connect leaves (SS_UNCONNECTED), so it may retry.
        deadline = deadline_of(t, self.sndtimeo)
        while True:
            if self.readiness(f, EVENT_OUT) & (EVENT_OUT | EVENT_ERR | EVENT_HUP):
                if _libc.connect(self.hostfd, buf, len(addr)) == 0:
                    return
                e = ctypes.get_errno()
                if e == host_errno.EISCONN:
                    return
                if e != host_errno.EALREADY:
                    raise SyscallError.from_host(OSError(e, os.strerror(e)))
            try:
                await wait(t, self.wq, EVENT_OUT | EVENT_ERR | EVENT_HUP, deadline,
                           self.sndtimeo is not None)
            except WouldBlock:
                raise SyscallError(Errno.EINPROGRESS) from None

    # -- data --------------------------------------------------------------------------------

    def _send(self, data: bytes, flags: int, addr: bytes | None) -> int:
        hflags = (flags & _SEND_FLAGS) | MSG_DONTWAIT | MSG_NOSIGNAL
        if addr:
            abuf = ctypes.create_string_buffer(addr, len(addr))
            return _check(_libc.sendto(self.hostfd, data, len(data), hflags, abuf, len(addr)))
        return _check(_libc.sendto(self.hostfd, data, len(data), hflags, None, 0))

    async def sendmsg(self, t: Task, f: FileDescription, data: bytes, flags: int,
                      addr: bytes | None, control: Control) -> int:
        nonblock = f.nonblocking or bool(flags & MSG_DONTWAIT) or self.sndtimeo == 0
        deadline = deadline_of(t, self.sndtimeo)
        stream = self.stype == SOCK_STREAM
        sent = 0
        while True:
            try:
                sent += self._send(data[sent:] if sent else data, flags, addr)
                if not stream or sent >= len(data):
                    return sent
                continue            # the rest at once, or WouldBlock
            except WouldBlock:
                if nonblock:
                    if sent:
                        return sent
                    raise
            except SyscallError as e:
                if sent:
                    return sent
                if e.errno == Errno.EPIPE and not flags & MSG_NOSIGNAL and stream:
                    from pyvisor.abi.linux.signal import Signal
                    from pyvisor.sentry.kernel import signal as ksignal
                    ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGPIPE, 0, pid=t.tg.tgid))
                raise
            try:
                await wait(t, self.wq, EVENT_OUT | EVENT_HUP | EVENT_ERR, deadline,
                           self.sndtimeo is not None)
            except SyscallError:
                if sent:
                    return sent
                raise

    def _recv(self, t: Task, n: int, flags: int, want_addr: bool) -> Received:
        if not flags & _RECV_FLAGS and self.stype == SOCK_STREAM and not self.cmsg_opts:
            # A stream socket without control messages: what recvmsg would add is
            # nothing (TCP has no source address per read), so a plain read.
            d = self.read(None, t, n, 0)            # type: ignore[arg-type]
            return Received(d, len(d))
        rx = self._rx
        if rx is None:
            name = ctypes.create_string_buffer(SOCKADDR_MAX)
            ctl = ctypes.create_string_buffer(CONTROL_MAX)
            iov = _Iovec()
            mh = _Msghdr(ctypes.cast(name, ctypes.c_void_p), SOCKADDR_MAX,
                         ctypes.pointer(iov), 1, ctypes.cast(ctl, ctypes.c_void_p),
                         CONTROL_MAX, 0)
            rx = self._rx = (name, ctl, iov, mh, ctypes.create_string_buffer(RX_BUFFER))
        name, ctl, iov, mh, small = rx
        data = small if n <= RX_BUFFER else ctypes.create_string_buffer(n)
        iov.base = ctypes.addressof(data)
        iov.len = n
        mh.namelen = SOCKADDR_MAX
        mh.controllen = CONTROL_MAX
        mh.flags = 0
        hflags = (flags & _RECV_FLAGS) | MSG_DONTWAIT | MSG_CMSG_CLOEXEC
        got = _check(_libc.recvmsg(self.hostfd, ctypes.byref(mh), hflags))
        cmsgs: list[tuple[int, int, bytes]] = []
        raw = ctypes.string_at(ctl, mh.controllen) if mh.controllen else b""
        off = 0
        while len(raw) - off >= CMSGHDR.size:
            ln, level, ctype = CMSGHDR.unpack_from(raw, off)
            if ln < CMSGHDR.size or off + ln > len(raw):
                break
            if level != SOL_SOCKET or ctype not in (1, 2):     # never host fds or creds
                cmsgs.append((level, ctype, raw[off + CMSGHDR.size:off + ln]))
            off += cmsg_align(ln)
        addr = ctypes.string_at(name, min(mh.namelen, SOCKADDR_MAX)) \
            if want_addr and mh.namelen else None
        body = ctypes.string_at(data, min(got, n))
        return Received(body, got, mh.flags & (MSG_TRUNC | MSG_EOR | MSG_OOB | MSG_ERRQUEUE),
                        addr, cmsgs=cmsgs or None)

    async def recvmsg(self, t: Task, f: FileDescription, n: int, flags: int,
                      want_addr: bool) -> Received:
        nonblock = f.nonblocking or bool(flags & MSG_DONTWAIT) or self.rcvtimeo == 0
        deadline = deadline_of(t, self.rcvtimeo)
        waitall = self.stype == SOCK_STREAM and bool(flags & MSG_WAITALL) \
            and not flags & MSG_PEEK
        got: Received | None = None
        while True:
            try:
                r = self._recv(t, n - (got.length if got else 0), flags, want_addr)
            except WouldBlock:
                if nonblock or got is not None and not waitall:
                    if got is not None:
                        return got
                    raise
            except SyscallError:
                if got is not None:
                    return got
                raise
            else:
                got = r if got is None else got.then(r)
                if not waitall or got.length >= n or r.length == 0 or nonblock:
                    return got
                continue
            try:
                await wait(t, self.wq, EVENT_IN | EVENT_HUP | EVENT_ERR, deadline,
                           self.rcvtimeo is not None)
            except SyscallError:
                if got is not None:
                    return got
                raise

    # -- options -----------------------------------------------------------------------------

    def _allowed(self, level: int, name: int) -> None:
        names = LEVELS.get(level)
        if names is None:
            raise SyscallError(Errno.ENOPROTOOPT if self.family == AF_INET6
                               else Errno.EOPNOTSUPP)
        if name not in names:
            raise SyscallError(Errno.ENOPROTOOPT)

    def _host_getsockopt(self, level: int, name: int, size: int) -> bytes:
        buf = ctypes.create_string_buffer(size)
        n = ctypes.c_uint32(size)
        _check(_libc.getsockopt(self.hostfd, level, name, buf, ctypes.byref(n)))
        return buf.raw[:n.value]

    def getsockopt(self, t: Task, level: int, name: int) -> bytes:
        if level == SOL_SOCKET and name in (SO_RCVTIMEO, SO_SNDTIMEO):
            return super().getsockopt(t, level, name)
        if level == SOL_SOCKET and name == SO_PEERCRED:
            return UCRED.pack(*UCRED_NOBODY)      # never the host's pids and ids
        self._allowed(level, name)
        return self._host_getsockopt(level, name, 256)

    def setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        if level == SOL_SOCKET and name in (SO_RCVTIMEO, SO_SNDTIMEO):
            super().setsockopt(t, level, name, optval)
            return
        self._allowed(level, name)
        if (level, name) in _CMSG_OPTIONS:
            self.cmsg_opts = True          # received data may carry control messages
        if level == SOL_SOCKET and name in (SO_ERROR, SO_TYPE, SO_DOMAIN, SO_PROTOCOL,
                                            SO_ACCEPTCONN):
            raise SyscallError(Errno.ENOPROTOOPT)
        buf = ctypes.create_string_buffer(optval, len(optval) or 1)
        _check(_libc.setsockopt(self.hostfd, level, name, buf, len(optval)))


class HostStack:
    """The host's network, as the Sentry found it at start-up.  The Family for AF_INET and
    AF_INET6 under --network=host."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self._ifaces = _host_interfaces()
        self._routes = _host_routes()

    def socket(self, t: Task, family: int, stype: int, protocol: int, flags: int
               ) -> FileDescription:
        if stype == SOCK_RAW:
            raise SyscallError(Errno.EPERM)        # no CAP_NET_RAW for the application
        if stype not in (SOCK_STREAM, SOCK_DGRAM):
            raise SyscallError(Errno.ESOCKTNOSUPPORT)
        allowed = {SOCK_STREAM: (0, IPPROTO_TCP),
                   SOCK_DGRAM: (0, IPPROTO_UDP,
                                IPPROTO_ICMP if family == AF_INET else IPPROTO_ICMPV6)}[stype]
        if protocol < 0 or protocol >= 263:
            raise SyscallError(Errno.EINVAL)
        if protocol not in allowed:
            raise SyscallError(Errno.EPROTONOSUPPORT)
        try:
            fd = pysocket.socket(family, stype | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol).detach()
        except OSError as e:
            raise SyscallError.from_host(e) from None
        s = HostSocket(self, fd, family, stype, protocol)
        return new_socket_file(s, flags, t.creds.fsuid, t.creds.fsgid)

    def socketpair(self, t: Task, family: int, stype: int, protocol: int, flags: int
                   ) -> tuple[FileDescription, FileDescription]:
        raise SyscallError(Errno.EOPNOTSUPP)

    def interfaces(self) -> list[Interface]:
        return self._ifaces

    def routes(self) -> list[inet.Route]:
        return self._routes

    def proc_net(self, name: str) -> bytes | None:
        """dev, if_inet6 and route from the snapshot; the host's connections are not
        the sandbox's to list."""
        from pyvisor.sentry.socket.netstack.procnet import render_common
        return render_common(self, name)


def _host_interfaces() -> list[Interface]:
    """The host's interfaces with their IPv4 and IPv6 addresses (read once, at start-up)."""
    import fcntl
    out: list[Interface] = []
    try:
        names = pysocket.if_nameindex()
    except OSError:
        return [inet.loopback()]
    s = pysocket.socket(AF_INET, SOCK_DGRAM)
    try:
        for index, name in names:
            req = struct.pack("16s24x", name.encode())

            def query(cmd: int) -> bytes | None:
                try:
                    return fcntl.ioctl(s.fileno(), cmd, req)
                except OSError:
                    return None
            fl = query(0x8913)
            mtu = query(0x8921)
            hw = query(0x8927)
            flags = struct.unpack_from("<H", fl, 16)[0] if fl else 0
            iface = Interface(index, name.encode(), flags,
                              struct.unpack_from("<i", mtu, 16)[0] if mtu else 1500,
                              ARPHRD_LOOPBACK if flags & IFF_LOOPBACK else ARPHRD_ETHER,
                              hw[18:24] if hw else b"\0" * 6)
            addr, mask = query(0x8915), query(0x891B)
            if addr and mask:
                prefix = bin(int.from_bytes(mask[20:24], "big")).count("1")
                iface.addrs4.append((addr[20:24], prefix))
            out.append(iface)
    finally:
        s.close()
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6:
                    for i in out:
                        if i.name == parts[5].encode():
                            i.addrs6.append((bytes.fromhex(parts[0]), int(parts[2], 16)))
    except OSError:
        pass
    return out


def _host_routes() -> list[inet.Route]:
    """IPv4 routes of the main table (read once from /proc/net/route)."""
    routes: list[inet.Route] = []
    try:
        with open("/proc/net/route") as f:
            lines = f.read().splitlines()[1:]
        index = {n: i for i, n in pysocket.if_nameindex()}
        for line in lines:
            p = line.split()
            if len(p) >= 8:
                dst = int(p[1], 16).to_bytes(4, "little")
                gw = int(p[2], 16).to_bytes(4, "little")
                prefix = bin(int(p[7], 16)).count("1")
                routes.append(inet.Route(AF_INET, dst, prefix, index.get(p[0], 0),
                                         scope=0 if gw != b"\0" * 4 else 253,
                                         metric=int(p[6]), gateway=gw if any(gw) else b""))
    except (OSError, ValueError):
        pass
    return routes


__all__ = ["HostSocket", "HostStack"]
