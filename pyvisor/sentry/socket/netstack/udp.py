"""UDP and ICMP echo ("ping") sockets of netstack.  Linux: net/ipv4/udp.c,
net/ipv6/udp.c, net/ipv4/ping.c, net/core/datagram.c.  gVisor:
pkg/tcpip/transport/udp, transport/icmp.

A datagram goes straight from the sender to the receiving socket's queue
(loopback).  The receive queue is bounded by SO_RCVBUF as Linux bounds it:
each datagram is charged its buffer's true size, and a datagram arriving
while the queue is over the limit is dropped.  A datagram to a port nobody
holds draws an ICMP port-unreachable: a connected sender gets ECONNREFUSED
from its next call.  A ping socket (SOCK_DGRAM, IPPROTO_ICMP/ICMPV6) sends
echo requests; the stack answers at once, with the socket's identifier in
place of the request's, as Linux's ping sockets do.  Every group may use
them (net.ipv4.ping_group_range "0 2147483647", as gVisor).

Concurrency: Sentry loop only.
"""

from __future__ import annotations

import collections
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import (ICMP_ECHO, ICMP_ECHOREPLY, ICMPV6_ECHO_REPLY,
                                    ICMPV6_ECHO_REQUEST, INADDR_BROADCAST, IPPROTO_ICMP,
                                    IPPROTO_ICMPV6, IPPROTO_UDP, SCM_TIMESTAMP, SCM_TIMESTAMPNS,
                                    SOL_UDP, UDP_CORK, UDP_GRO, UDP_MAX_V4, UDP_MAX_V6,
                                    UDP_NO_CHECK6_RX, UDP_NO_CHECK6_TX, UDP_SEGMENT,
                                    IP_MULTICAST_LOOP, IPV6_MULTICAST_LOOP, SIOCGSTAMP,
                                    SIOCGSTAMPNS, SOL_IP, SOL_IPV6, IP_TTL, IP_TOS,
                                    IP_PKTINFO, IPV6_HOPLIMIT, IPV6_TCLASS, IPV6_PKTINFO,
                                    IP_MULTICAST_TTL, IPV6_MULTICAST_HOPS, IP_RECVERR,
                                    IPV6_RECVERR)
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.waitqueue import (EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT,
                                             EVENT_RDHUP)
from pyvisor.sentry.socket import inet
from pyvisor.sentry.socket.common import (AF_INET, AF_INET6, AF_UNSPEC, MSG_DONTWAIT,
                                          MSG_ERRQUEUE, MSG_OOB, MSG_PEEK, MSG_TRUNC,
                                          RCV_SHUTDOWN, SEND_SHUTDOWN, SHUT_RD, SHUT_RDWR,
                                          SHUTDOWN_MASK, SIOCINQ, SIOCOUTQ, SO_BROADCAST,
                                          SO_TIMESTAMP, SO_TIMESTAMPNS, SOCK_DGRAM, SOL_SOCKET,
                                          WMEM_DEFAULT, RMEM_DEFAULT, Control, Received,
                                          deadline_of, wait)
from pyvisor.sentry.socket import sockfilter
from pyvisor.sentry.socket.netstack.sock import NetSocket

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket.netstack import Stack
    from pyvisor.sentry.vfs.file import FileDescription

_I32 = struct.Struct("<i")


def truesize(n: int) -> int:
    """What a received datagram of `n` bytes costs against SO_RCVBUF (an sk_buff's
    truesize on loopback: the struct plus its data buffer, rounded as kmalloc rounds)."""
    need = n + 64 + 320
    if need <= 4096:
        size = 512
        while size < need:
            size *= 2
    else:
        size = (need + 4095) & ~4095
    return size + 256


@dataclass(slots=True)
class Datagram:
    """A queued datagram.  Linux: an sk_buff on sk_receive_queue."""

    data: bytes
    src: bytes
    sport: int
    dst: bytes
    tos: int
    stamp_ns: int
    charge: int
    ttl: int = 64            # TTL / hop limit as received (IP_RECVTTL, IPV6_RECVHOPLIMIT)
    dport: int = 0           # the destination port (IP_RECVORIGDSTADDR)


# The error queue (IP_RECVERR).  From <linux/errqueue.h>.
SO_EE_ORIGIN_LOCAL, SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 1, 2, 3
SOCK_EXTENDED_ERR = struct.Struct("<IBBBBII")     # errno, origin, type, code, pad, info, data
ERRQUEUE_MAX = 64                                 # reports a socket keeps (sk_rcvbuf-bound)


@dataclass(slots=True)
class ErrReport:
    """One report on a socket's error queue.  Linux: an sk_buff with its
    struct sock_exterr_skb."""

    errno: int
    origin: int
    type: int
    code: int
    info: int
    offender: bytes          # who reported it (SO_EE_OFFENDER); ignored for local errors
    payload: bytes           # the datagram the error is about
    dst: bytes               # where that datagram went (msg_name)
    dport: int


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class UDPSocket(NetSocket):
    """A UDP socket.  Linux: struct udp_sock."""

    def __init__(self, stack: Stack, family: int, uid: int, protocol: int = IPPROTO_UDP) -> None:
        super().__init__(stack, family, SOCK_DGRAM, protocol, uid)
        self.sndbuf = WMEM_DEFAULT
        self.rcvbuf = RMEM_DEFAULT
        self.rcvq: collections.deque[Datagram] = collections.deque()
        self.rcv_mem = 0
        self.udp: dict[int, int] = {UDP_CORK: 0, UDP_SEGMENT: 0, UDP_GRO: 0,
                                    UDP_NO_CHECK6_TX: 0, UDP_NO_CHECK6_RX: 0}
        self.drops = 0
        self.released = False
        self.addr_locked = False        # bind(2) chose the address (SOCK_BINDADDR_LOCK)
        # SIOCGSTAMP's sk_stamp: None before anything was read, 0 for "read, stamp at the
        # ioctl", else the last datagram's receive time (once the ioctl asked for them).
        self.sk_stamp: int | None = None
        self.stamp_wanted = False       # SOCK_TIMESTAMP: set by the first SIOCGSTAMP
        self.stamp_since = 0            # datagrams received before that carry no stamp
        # The ipcm_cookie of the sendmsg(2) in progress: IP_TTL/IP_TOS/IPV6_HOPLIMIT/
        # IPV6_TCLASS from its control messages (None: the socket's own).  Set and reset
        # around one send, which never blocks.
        self.cm_ttl: int | None = None
        self.cm_tos: int | None = None
        self.sk_filter: sockfilter.Program | None = None    # SO_ATTACH_FILTER
        self.errq: collections.deque[ErrReport] = collections.deque()   # sk_error_queue

    # -- socket filters ----------------------------------------------------------------------

    def setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        if level == SOL_SOCKET and name == sockfilter.SO_ATTACH_FILTER:
            self.sk_filter = sockfilter.attach(t, optval)
            return
        if level == SOL_SOCKET and name == sockfilter.SO_DETACH_FILTER:
            if self.sk_filter is None:
                raise SyscallError(Errno.ENOENT)
            self.sk_filter = None
            return
        super().setsockopt(t, level, name, optval)

    def _filter_view(self, d: Datagram) -> tuple[sockfilter.Packet, int]:
        """The packet a filter sees (from the UDP header on) and the bytes that may not be
        trimmed (sk_filter_trim_cap's cap: the UDP header)."""
        from pyvisor.sentry.socket.netstack import _synthetic_header
        seg = d.sport.to_bytes(2, "big") + d.dport.to_bytes(2, "big") + \
            (8 + len(d.data)).to_bytes(2, "big") + b"\0\0" + d.data
        net = _synthetic_header(self.protocol, d.src, d.dst, len(seg), d.ttl, d.tos) + seg
        return sockfilter.Packet(seg, net, bytes(14) + net,
                                 0x0800 if len(d.src) == 4 else 0x86DD), 8

    def _filter(self, d: Datagram) -> Datagram | None:
        """sk_filter_trim_cap: None to drop `d`, else `d` cut to what the filter keeps."""
        assert self.sk_filter is not None
        p, head = self._filter_view(d)
        keep = sockfilter.run(self.sk_filter, p)
        if keep == 0:
            return None
        if keep >= len(p.data):
            return d
        cut = max(keep, head) - head
        return Datagram(d.data[:cut], d.src, d.sport, d.dst, d.tos, d.stamp_ns, d.charge,
                        d.ttl, d.dport)

    def bind(self, t: Task, addr: bytes) -> None:
        super().bind(t, addr)
        self.addr_locked = not inet.is_any(self.laddr)

    # -- FileImpl ----------------------------------------------------------------------------

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        try:
            return self._try_recv(n, 0, False).data
        except WouldBlock:
            if self.shut & RCV_SHUTDOWN and not fd.nonblocking:
                if self.stack.flush_loop():
                    return self.read(fd, t, n, offset)
                return b""
            raise

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        return self._try_send(t, data, 0, None)

    def readiness(self, fd: FileDescription, mask: int) -> int:
        """datagram_poll."""
        ev = 0
        if self.err or self.errq:
            ev |= EVENT_ERR
        if self.shut & RCV_SHUTDOWN:
            ev |= EVENT_RDHUP | EVENT_IN
        if self.shut == SHUTDOWN_MASK:
            ev |= EVENT_HUP
        if self.rcvq:
            ev |= EVENT_IN
        ev |= EVENT_OUT
        return ev & (mask | EVENT_HUP | EVENT_ERR)

    def proto_ioctl(self, t: Task, cmd: int, arg: int) -> int:
        if cmd == SIOCINQ:
            t.copy_out(arg, _I32.pack(len(self.rcvq[0].data) if self.rcvq else 0))
            return 0
        if cmd in (SIOCGSTAMP, SIOCGSTAMPNS):
            # sock_get_timestamp: ENOENT until a datagram was read.
            if self.sk_stamp is None:
                raise SyscallError(Errno.ENOENT)
            if self.sk_stamp == 0:
                self.sk_stamp = time.time_ns()
            if not self.stamp_wanted:
                self.stamp_wanted = True
                self.stamp_since = time.time_ns()
            sec, ns = divmod(self.sk_stamp, 10**9)
            t.copy_out(arg, struct.pack("<qq", sec, ns if cmd == SIOCGSTAMPNS else ns // 1000))
            return 0
        if cmd == SIOCOUTQ:
            t.copy_out(arg, _I32.pack(0))
            return 0
        raise SyscallError(Errno.ENOTTY)

    def release(self, fd: FileDescription) -> None:
        self.released = True
        self.mc_drop_all()
        self.stack.unbuffer(self.rcv_mem)
        self.rcvq.clear()
        self.errq.clear()
        self.rcv_mem = 0
        self.unbind()

    # -- addresses ---------------------------------------------------------------------------

    async def connect(self, t: Task, f: FileDescription, addr: bytes) -> None:
        """ip4_datagram_connect / ip6_datagram_connect; AF_UNSPEC dissolves the association."""
        if len(addr) < 2:
            raise SyscallError(Errno.EINVAL)
        if inet.raw_family(addr) == AF_UNSPEC:
            # __udp_disconnect: the address goes unless bind(2) chose it, the port unless
            # bind(2) chose it.
            self.raddr, self.rport = inet.any_addr(self.family), 0
            if not self.addr_locked:
                self.laddr = inet.any_addr(self.family)
            if not self.user_bound:
                self.unbind()
                self.lport = 0
            return
        ip, port = self._destination(addr)
        if is_multicast(ip) and self.protocol == IPPROTO_UDP:
            index, src = self.mc_out(ip)            # ip4_datagram_connect: mc_index
            if not index or (len(ip) == 16 and index == self.stack.lo.index):
                raise SyscallError(Errno.ENETUNREACH)
            if inet.is_any(src):
                src = self.stack.index_source4(index) if len(ip) == 4 else src
        else:
            self.stack.check_route(ip)
            self._check_broadcast(ip)
            src = self.source_for(ip)
        self.autobind()
        if inet.is_any(self.laddr):
            self.laddr = src
        self.raddr, self.rport = ip, port
        self._notify_out()

    def _notify_out(self) -> None:
        self.wq.notify(EVENT_OUT)

    def _destination(self, addr: bytes) -> tuple[bytes, int]:
        if self.family == AF_INET6 and inet.raw_family(addr) == AF_INET:
            # udpv6_sendmsg takes a sockaddr_in too, unless the socket is IPv6-only.
            if self.v6only:
                raise SyscallError(Errno.ENETUNREACH)
            ip, port, _ = inet.decode(AF_INET, addr)
            return (ip if ip != b"\0\0\0\0" else b"\x7f\0\0\1"), port
        return self._decode_remote(addr)

    def _check_broadcast(self, ip: bytes) -> None:
        if len(ip) == 4 and not self.opts.get(SO_BROADCAST) and self.stack.is_broadcast(ip):
            raise SyscallError(Errno.EACCES)

    def getpeername(self, t: Task) -> bytes:
        if not self.rport and not self._connected():
            raise SyscallError(Errno.ENOTCONN)
        return self._remote_name()

    def _connected(self) -> bool:
        return self.rport != 0

    def shutdown(self, t: Task, how: int) -> None:
        """inet_shutdown on a datagram socket: ENOTCONN unless connected, but the bits are
        set either way."""
        if how < SHUT_RD or how > SHUT_RDWR:
            raise SyscallError(Errno.EINVAL)
        self.shut |= how + 1
        self.wq.notify()
        if not self._connected():
            raise SyscallError(Errno.ENOTCONN)

    # -- sending -----------------------------------------------------------------------------

    def _max_payload(self) -> int:
        return UDP_MAX_V4 if self.family == AF_INET else UDP_MAX_V6

    def _try_send(self, t: Task, data: bytes, flags: int, addr: bytes | None) -> int:
        """udp_sendmsg: never blocks on loopback (the datagram is delivered or dropped)."""
        if flags & MSG_OOB and (self.family == AF_INET or addr is not None
                                and inet.raw_family(addr) == AF_INET):
            raise SyscallError(Errno.EOPNOTSUPP)    # udp_sendmsg (udpv6_sendmsg lets it by)
        if addr:
            ip, port = self._destination(addr)
            if port == 0 and self.protocol == IPPROTO_UDP:
                raise SyscallError(Errno.EINVAL)
            if self.family == AF_INET6 and self.protocol == IPPROTO_UDP:
                # udpv6_sendmsg: a socket bound to an IPv6 address cannot reach an IPv4
                # destination, nor one bound or connected on the IPv4 side an IPv6 one.
                if len(ip) == 4 and len(self.laddr) == 16 and self.addr_locked:
                    raise SyscallError(Errno.ENETUNREACH)
                if len(ip) == 16 and len(self.laddr) == 4:
                    raise SyscallError(Errno.EINVAL)
        else:
            if not self._connected():
                raise SyscallError(Errno.EDESTADDRREQ)
            ip, port = self.raddr, self.rport
        if len(data) > self._max_payload():
            if len(ip) == 16 and self.protocol == IPPROTO_UDP and self._recverr(ip):
                # ip6_append_data: ipv6_local_error with the path's MTU.
                self._queue_error(ErrReport(Errno.EMSGSIZE, SO_EE_ORIGIN_LOCAL, 0, 0,
                                            self.stack.mtu_for(ip), b"", b"", ip, port))
            raise SyscallError(Errno.EMSGSIZE)
        if self.shut & SEND_SHUTDOWN:
            raise SyscallError(Errno.EPIPE)
        if self.err:
            err, self.err = self.err, 0
            raise SyscallError(err)
        if is_multicast(ip) and self.protocol == IPPROTO_UDP:
            self._send_multicast(data, ip, port)
            return len(data)
        self._check_broadcast(ip)
        self.stack.check_route(ip)
        self.autobind()
        src = self.source_for(ip)
        self._transmit(data, src, ip, port)
        return len(data)

    def _send_multicast(self, data: bytes, dst: bytes, dport: int) -> None:
        """A datagram to a group: out of the interface IP_MULTICAST_IF (or the route)
        names, and to this host's members of the group on it.  On lo that is the one
        copy (lo carries it back whatever IP_MULTICAST_LOOP says, as Linux's lo does);
        on a NIC the copy for this host is made only with IP_MULTICAST_LOOP.  IPv6 has
        no multicast route through lo (it is not IFF_MULTICAST): ENETUNREACH."""
        stack = self.stack
        index, src = self.mc_out(dst)
        if not index or (len(dst) == 16 and index == stack.lo.index):
            raise SyscallError(Errno.ENETUNREACH)
        self.autobind()
        if index == stack.lo.index:
            stack.lo.count(len(data) + 28)
            stack.udp_out += 1
            udp_deliver_all(stack, data, src, self.lport, dst, dport, index, self._tos(),
                            self._mc_ttl(dst))
            return
        nic = stack.nic_by_index(index)
        if inet.is_any(src) and nic is not None:
            src = stack.nic_source6(nic, dst) or src if len(dst) == 16 \
                else stack.index_source4(index)
        from pyvisor.sentry.socket.netstack.transport import udp_output
        udp_output(self, data, src, dst, dport, mcast_index=index)
        loop = self.ip.get(IP_MULTICAST_LOOP, 1) if len(dst) == 4 \
            else self.ip6.get(IPV6_MULTICAST_LOOP, 1)
        if loop:
            udp_deliver_all(stack, data, src, self.lport, dst, dport, index, self._tos(),
                            self._mc_ttl(dst))

    def _mc_ttl(self, dst: bytes) -> int:
        if self.cm_ttl is not None:
            return self.cm_ttl
        return self.ip.get(IP_MULTICAST_TTL, 1) if len(dst) == 4 \
            else self.ip6.get(IPV6_MULTICAST_HOPS, 1)

    def _tos(self) -> int:
        if self.cm_tos is not None:
            return self.cm_tos
        return self.ip.get(1, 0) if self.family == AF_INET else self.ip6.get(67, 0)

    def ttl(self) -> int:
        return self.cm_ttl if self.cm_ttl is not None else super().ttl()

    def _send_control(self, control: Control) -> tuple[int | None, int | None]:
        """(TTL, TOS) from sendmsg's SOL_IP/SOL_IPV6 control messages.  Linux:
        ip_cmsg_send (IPv4 sockets: SOL_IP only) and ip6_datagram_send_ctl (IPv6 sockets:
        SOL_IPV6; -1 means the socket's own)."""
        ttl = tos = None
        v4 = self.family == AF_INET
        for level, ctype, data in control.ip or ():
            if level != (SOL_IP if v4 else SOL_IPV6):
                continue
            if ctype in ((IP_TTL, IP_TOS, IP_PKTINFO) if v4 else
                         (IPV6_HOPLIMIT, IPV6_TCLASS, IPV6_PKTINFO)):
                if ctype in (IP_PKTINFO, IPV6_PKTINFO):
                    want = 12 if v4 else 20
                    if len(data) != want:
                        raise SyscallError(Errno.EINVAL)
                    continue                 # TODO(#10): the source address it names
                if v4 and ctype == IP_TOS and len(data) == 1:
                    val = data[0]
                elif len(data) == 4:
                    val = _I32.unpack(data)[0]
                else:
                    raise SyscallError(Errno.EINVAL)
                if v4:
                    if ctype == IP_TTL and not 1 <= val <= 255 or not 0 <= val <= 255:
                        raise SyscallError(Errno.EINVAL)
                elif not -1 <= val <= 255:
                    raise SyscallError(Errno.EINVAL)
                elif val == -1:
                    continue
                if ctype in (IP_TTL, IPV6_HOPLIMIT):
                    ttl = val
                else:
                    tos = val
            elif not v4:
                raise SyscallError(Errno.EINVAL)     # ip6_datagram_send_ctl: unknown type
            else:
                raise SyscallError(Errno.EINVAL)     # ip_cmsg_send: unknown type
        return ttl, tos

    def _transmit(self, data: bytes, src: bytes, dst: bytes, dport: int) -> None:
        stack = self.stack
        if stack.leaves(dst):                       # another host: the packet path
            from pyvisor.sentry.socket.netstack.transport import udp_output
            udp_output(self, data, src, dst, dport)
            if dst != INADDR_BROADCAST:
                return
        stack.lo.count(len(data) + (28 if len(dst) == 4 else 48))
        stack.udp_out += 1
        bcast = len(dst) == 4 and stack.is_broadcast(dst)    # 255.255.255.255 or lo's
        if stack.packet_socks or stack.raw_socks:
            from pyvisor.sentry.socket.netstack.packet import lo_udp
            lo_udp(stack, src, self.lport, dst, dport, data, self.ttl(), self._tos(),
                   not bcast and stack.udp_receiver(dst, dport, src, self.lport) is None)
        if bcast:
            udp_deliver_all(stack, data, src, self.lport, dst, dport, stack.lo.index,
                            self._tos(), self.ttl())
            return
        rcv = stack.udp_receiver(dst, dport, src, self.lport)
        if rcv is None:
            stack.udp_noport += 1
            # The ICMP port unreachable, at once (__udp4_lib_err): the socket's error when
            # connected or with IP_RECVERR, and with IP_RECVERR a queued report too.
            recverr = self._recverr(dst)
            if self._connected() or recverr:
                self.err = Errno.ECONNREFUSED
                if recverr:
                    v4 = len(dst) == 4
                    self._queue_error(ErrReport(
                        Errno.ECONNREFUSED, SO_EE_ORIGIN_ICMP if v4 else SO_EE_ORIGIN_ICMP6,
                        3 if v4 else 1, 3 if v4 else 4, 0, dst, data, dst, dport))
                self.wq.notify(EVENT_ERR)
            return
        rcv.deliver(Datagram(data, src, self.lport, dst, self._tos(), time.time_ns(),
                             truesize(len(data)), self.ttl(), dport))

    def deliver(self, d: Datagram) -> None:
        """__udp_enqueue_schedule_skb: drop when the queue is already over SO_RCVBUF."""
        if self.released:
            return
        if self.sk_filter is not None:
            kept = self._filter(d)
            if kept is None:
                self.drops += 1
                return
            d = kept
        if self.rcv_mem > self.rcvbuf or self.stack.budget_left() < d.charge:
            self.drops += 1
            self.stack.udp_rcvbuf_errors += 1
            return
        self.rcvq.append(d)
        self.rcv_mem += d.charge
        self.stack.buffered += d.charge
        self.stack.udp_in += 1
        self.wq.notify(EVENT_IN)

    async def sendmsg(self, t: Task, f: FileDescription, data: bytes, flags: int,
                      addr: bytes | None, control: Control) -> int:
        if not control.ip:
            return self._try_send(t, data, flags, addr)
        self.cm_ttl, self.cm_tos = self._send_control(control)
        try:
            return self._try_send(t, data, flags, addr)
        finally:
            self.cm_ttl = self.cm_tos = None

    # -- receiving ---------------------------------------------------------------------------

    def _recverr(self, dst: bytes) -> bool:
        """IP_RECVERR (IPV6_RECVERR for an IPv6 destination) is on."""
        if len(dst) == 4:
            return bool(self.ip.get(IP_RECVERR))
        return bool(self.ip6.get(IPV6_RECVERR))

    def _queue_error(self, e: ErrReport) -> None:
        """ip_icmp_error / ipv6_local_error: onto the error queue (bounded)."""
        if len(self.errq) >= ERRQUEUE_MAX:
            return
        self.errq.append(e)
        self.wq.notify(EVENT_ERR)

    def _recv_error(self, n: int, want_addr: bool) -> Received:
        """recvmsg(MSG_ERRQUEUE): ip_recv_err / ipv6_recv_error."""
        if not self.errq:
            raise WouldBlock()
        e = self.errq.popleft()
        # sock_dequeue_err_skb: the socket's error becomes the next report's, or none.
        self.err = self.errq[0].errno if self.errq else 0
        v4 = len(e.dst) == 4 and self.family == AF_INET
        offender = bytes(16 if v4 else 28) if e.origin == SO_EE_ORIGIN_LOCAL else \
            inet.encode(AF_INET if v4 else AF_INET6, e.offender, 0)
        ext = SOCK_EXTENDED_ERR.pack(e.errno, e.origin, e.type, e.code, 0, e.info, 0)
        cmsg = (SOL_IP, IP_RECVERR, ext + offender) if v4 else \
            (SOL_IPV6, IPV6_RECVERR, ext + offender)
        data = e.payload[:n]
        flags = MSG_ERRQUEUE | (MSG_TRUNC if len(e.payload) > n else 0)
        addr = inet.encode(self.family, e.dst, e.dport) if want_addr else None
        return Received(data, len(data), flags, addr, cmsgs=[cmsg])

    def _try_recv(self, n: int, flags: int, want_addr: bool) -> Received:
        if flags & MSG_ERRQUEUE:
            return self._recv_error(n, want_addr)
        if self.err:
            err, self.err = self.err, 0
            raise SyscallError(err)
        if not self.rcvq:
            raise WouldBlock()          # recvmsg: 0 at RCV_SHUTDOWN, if it would block
        d = self.rcvq[0]
        if not flags & MSG_PEEK:
            self.rcvq.popleft()
            self.rcv_mem -= d.charge
            self.stack.unbuffer(d.charge)
        data = d.data[:n]
        mflags = MSG_TRUNC if len(d.data) > n else 0
        length = len(d.data) if flags & MSG_TRUNC else len(data)
        addr = inet.encode(self.family, d.src, d.sport) if want_addr else None
        if self.opts.get(SO_TIMESTAMP) or self.opts.get(SO_TIMESTAMPNS):
            pass                        # sock_recv_timestamp: the stamp goes in a cmsg
        elif self.stamp_wanted:
            self.sk_stamp = d.stamp_ns if d.stamp_ns >= self.stamp_since else 0
        elif self.sk_stamp is None:
            self.sk_stamp = 0
        return Received(data, length, mflags, addr, cmsgs=self._cmsgs(d) or None)

    def _cmsgs(self, d: Datagram) -> list[tuple[int, int, bytes]]:
        out: list[tuple[int, int, bytes]] = []
        if self.opts.get(SO_TIMESTAMPNS):
            out.append((SOL_SOCKET, SCM_TIMESTAMPNS,
                        struct.pack("<qq", d.stamp_ns // 10**9, d.stamp_ns % 10**9)))
        elif self.opts.get(SO_TIMESTAMP):
            us = d.stamp_ns // 1000
            out.append((SOL_SOCKET, SCM_TIMESTAMP, struct.pack("<qq", us // 10**6, us % 10**6)))
        out.extend(self.ip_cmsgs(d.src, d.dst, d.tos, d.ttl, d.dport))
        return out

    async def recvmsg(self, t: Task, f: FileDescription, n: int, flags: int,
                      want_addr: bool) -> Received:
        nonblock = f.nonblocking or bool(flags & MSG_DONTWAIT) or self.rcvtimeo == 0 \
            or bool(flags & MSG_ERRQUEUE)
        deadline = deadline_of(t, self.rcvtimeo)
        while True:
            try:
                return self._try_recv(n, flags, want_addr)
            except WouldBlock:
                if nonblock:
                    raise
                if self.shut & RCV_SHUTDOWN:
                    if self.stack.flush_loop():
                        continue                # what this host sent before comes first
                    return Received(b"", 0)     # __skb_wait_for_more_packets
            await wait(t, self.wq, EVENT_IN | EVENT_HUP | EVENT_ERR, deadline,
                       self.rcvtimeo is not None)

    # -- options -----------------------------------------------------------------------------

    def proto_getsockopt(self, t: Task, level: int, name: int) -> bytes:
        if level == SOL_UDP:
            if name in self.udp:
                return _I32.pack(self.udp[name])
            raise SyscallError(Errno.ENOPROTOOPT)
        raise self.unknown_level()

    def proto_setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        if level == SOL_UDP and name in self.udp:
            if len(optval) < 4:
                raise SyscallError(Errno.EINVAL)
            self.udp[name] = _I32.unpack_from(optval)[0]
            return
        raise SyscallError(Errno.ENOPROTOOPT)


def is_multicast(ip: bytes) -> bool:
    return 224 <= ip[0] < 240 if len(ip) == 4 else ip[0] == 0xFF


def udp_deliver_all(stack: Stack, data: bytes, src: bytes, sport: int, dst: bytes, dport: int,
                    ifindex: int, tos: int, ttl: int = 64) -> int:
    """A multicast or broadcast datagram: a copy to every socket on the port that takes
    it (__udp4_lib_mcast_deliver: bound to the wildcard or the destination, not connected
    elsewhere, and a member of the group, or IP_MULTICAST_ALL).  A group nobody on this
    host joined on `ifindex` reaches nobody (ip_check_mc_rcu).  Returns the copies."""
    from pyvisor.sentry.socket.netstack import _match
    if is_multicast(dst) and not stack.mc_member(ifindex, dst):
        return 0
    n = 0
    now = time.time_ns()
    size = truesize(len(data))
    for b in list(stack.udp_ports.on(dport)):
        if not _match(b, dst) or getattr(b, "protocol", 0) != IPPROTO_UDP:
            continue
        rport = getattr(b, "rport", 0)
        if rport and (rport != sport or b.raddr != src):
            continue
        if is_multicast(dst) and not b.mc_allows(dst, ifindex):
            continue
        b.deliver(Datagram(data, src, sport, dst, tos, now, size, ttl, dport))
        n += 1
    if not n:
        stack.udp_noport += 1
    return n


class PingSocket(UDPSocket):
    """An ICMP echo socket.  Linux: net/ipv4/ping.c.  The port is the echo identifier."""

    def __init__(self, stack: Stack, family: int, uid: int) -> None:
        super().__init__(stack, family, uid,
                         IPPROTO_ICMP if family == AF_INET else IPPROTO_ICMPV6)

    def _destination(self, addr: bytes) -> tuple[bytes, int]:
        if len(addr) < 2:
            raise SyscallError(Errno.EINVAL)
        if inet.raw_family(addr) != self.family:
            raise SyscallError(Errno.EAFNOSUPPORT if self.family == AF_INET else Errno.EINVAL)
        return self._decode_remote(addr)

    def _max_payload(self) -> int:
        return 0xFFFF

    def _transmit(self, data: bytes, src: bytes, dst: bytes, dport: int) -> None:
        """ping_v4_sendmsg: an echo request; the reply comes back at once."""
        v4 = self.family == AF_INET
        if len(data) < 8:
            raise SyscallError(Errno.EINVAL)
        if data[0] != (ICMP_ECHO if v4 else ICMPV6_ECHO_REQUEST) or data[1] != 0:
            raise SyscallError(Errno.EINVAL)
        stack = self.stack
        if stack.leaves(dst):                       # another host: the packet path
            from pyvisor.sentry.socket.netstack.transport import ping_output
            ping_output(self, data, src, dst)
            return
        stack.lo.count(len(data) + (20 if v4 else 40))
        stack.icmp_out += 1
        body = bytes([ICMP_ECHOREPLY if v4 else ICMPV6_ECHO_REPLY, 0]) + b"\0\0" + \
            self.lport.to_bytes(2, "big") + data[6:]
        reply = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
        stack.icmp_in += 1
        self.deliver(Datagram(reply, dst, 0, src, 0, time.time_ns(), truesize(len(reply))))

    def proto_getsockopt(self, t: Task, level: int, name: int) -> bytes:
        raise SyscallError(Errno.ENOPROTOOPT if level != 255 else Errno.EOPNOTSUPP)

    def proto_setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        raise SyscallError(Errno.ENOPROTOOPT if level != 255 else Errno.EOPNOTSUPP)
