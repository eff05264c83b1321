"""Raw sockets of netstack (SOCK_RAW).  Linux: net/ipv4/raw.c, net/ipv6/raw.c.
gVisor: pkg/tcpip/transport/raw.

socket(AF_INET, SOCK_RAW, proto) needs CAP_NET_RAW (EPERM without it) and a
protocol (0 is EPROTONOSUPPORT).  What a raw socket receives is a copy of every
IP datagram for this host with its protocol, taken before the protocol's own
handler (raw_local_deliver): the ICMP echo request the stack answers and the
reply it sends back are both seen on loopback, as on Linux.  Filters, as
Linux's raw_v4_match: a bound socket takes only datagrams to its address, a
connected one only those from its peer, and ICMP_FILTER drops the ICMP types
whose bits are set.  IPPROTO_RAW sockets receive nothing.

  IPv4  what is read starts with the IP header; what is written is the
        payload (the stack adds the header, with the socket's TTL and TOS), or,
        with IP_HDRINCL (implied for IPPROTO_RAW), a whole datagram whose
        header the stack completes as raw_send_hdrinc does: total length and
        checksum always, the source and the identification when zero.
  IPv6  no header either way (the kernel's rule for IPv6 raw sockets); an
        ICMPv6 socket's checksum is computed by the stack (offset 2), and
        ICMP6_FILTER drops the types whose bits are set.

Datagrams between sockets of the sandbox do not pass through the IP layer: a UDP
datagram is given its IP and UDP headers for the raw sockets that would see it
(packet.lo_udp), TCP segments are not seen at all.  An AF_INET6 IPPROTO_RAW socket
cannot send (EINVAL).  Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import (IP_HDRINCL, IP_TOS, IPPROTO_ICMP, IPPROTO_ICMPV6,
                                    IPPROTO_RAW, SOL_IP, SOL_IPV6)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket import inet
from pyvisor.sentry.socket.common import AF_INET, AF_INET6, AF_UNSPEC, MSG_OOB, SOCK_RAW
from pyvisor.sentry.socket import sockfilter
from pyvisor.sentry.socket.netstack.udp import Datagram, UDPSocket, truesize
from pyvisor.sentry.socket import net_capable

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket.netstack import Stack

SOL_RAW = 255
ICMP_FILTER = 1
ICMPV6_FILTER = 1           # ICMP6_FILTER, at level SOL_ICMPV6 (58)
SOL_ICMPV6 = 58
IPV6_CHECKSUM = 7
CAP_NET_RAW = 13
_I32 = struct.Struct("<i")


class RawSocket(UDPSocket):
    """A raw socket: the datagram queue of a UDP socket, without ports.
    Linux: struct raw_sock / raw6_sock."""

    def __init__(self, stack: Stack, family: int, uid: int, protocol: int) -> None:
        super().__init__(stack, family, uid, protocol)
        self.stype = SOCK_RAW
        self.icmp_filter = 0
        self.icmp6_filter = b"\0" * 32          # a bit set: the type is dropped
        self.checksum_offset = 2 if protocol == IPPROTO_ICMPV6 else -1
        self.lport = protocol                   # inet_num: what /proc/net/raw shows
        stack.raw_socks.append(self)

    def release(self, fd: object) -> None:       # type: ignore[override]
        try:
            self.stack.raw_socks.remove(self)
        except ValueError:
            pass
        self.released = True
        self.mc_drop_all()
        self.stack.unbuffer(self.rcv_mem)
        self.rcvq.clear()
        self.rcv_mem = 0

    # -- names -------------------------------------------------------------------------------

    def bind(self, t: Task, addr: bytes) -> None:
        """raw_bind: only the address matters; it must be this host's (or any)."""
        ip, _port = self._decode_local(addr)
        if not inet.is_any(ip) and not self.stack.is_local(ip):
            raise SyscallError(Errno.EADDRNOTAVAIL)
        self.laddr = ip if not inet.is_any(ip) else inet.any_addr(self.family)
        self.addr_locked = not inet.is_any(ip)

    def autobind(self, connecting: bool = False) -> None:
        """Raw sockets hold no port."""

    def unbind(self) -> None:
        pass

    def _destination(self, addr: bytes) -> tuple[bytes, int]:
        if inet.raw_family(addr) != self.family:
            raise SyscallError(Errno.EAFNOSUPPORT if self.family == AF_INET else Errno.EINVAL)
        ip, _port = self._decode_remote(addr)
        return ip, 0

    def getpeername(self, t: Task) -> bytes:
        """inet_getname: a peer needs a port, and a raw socket's is always 0."""
        raise SyscallError(Errno.ENOTCONN)

    def _connected(self) -> bool:
        return not inet.is_any(self.raddr)

    async def connect(self, t: Task, f: object, addr: bytes) -> None:  # type: ignore[override]
        """ip4_datagram_connect / ip6_datagram_connect_v6_only (EAFNOSUPPORT for another
        family); AF_UNSPEC dissolves the association."""
        if len(addr) < 2:
            raise SyscallError(Errno.EINVAL)
        if inet.raw_family(addr) == AF_UNSPEC:
            self.raddr = inet.any_addr(self.family)
            if not self.addr_locked:
                self.laddr = inet.any_addr(self.family)
            return
        if self.family == AF_INET6 and inet.raw_family(addr) != AF_INET6:
            raise SyscallError(Errno.EAFNOSUPPORT)
        ip, _ = self._destination(addr)
        self.stack.check_route(ip)
        if inet.is_any(self.laddr):
            self.laddr = self.source_for(ip)
        self.raddr, self.rport = ip, 0
        self._notify_out()

    def getsockname(self, t: Task) -> bytes:
        """The port is the protocol (inet_num)."""
        return inet.encode(self.family, self.laddr, self.protocol)

    # -- sending -----------------------------------------------------------------------------

    def _max_payload(self) -> int:
        return 0xFFFF - (20 if self.family == AF_INET else 0)

    def _try_send(self, t: Task, data: bytes, flags: int, addr: bytes | None) -> int:
        """raw_sendmsg / rawv6_sendmsg."""
        if flags & MSG_OOB:
            raise SyscallError(Errno.EOPNOTSUPP)
        if addr:
            dst, _ = self._destination(addr)
        elif self._connected():
            dst = self.raddr
        else:
            raise SyscallError(Errno.EDESTADDRREQ)
        if len(data) > self._max_payload():
            raise SyscallError(Errno.EMSGSIZE)
        stack = self.stack
        stack.check_route(dst)
        if self.family == AF_INET6:
            if self.protocol == IPPROTO_RAW:
                raise SyscallError(Errno.EINVAL)     # no IPV6_HDRINCL sending
            self._send6(data, dst)
            return len(data)
        if self.protocol == IPPROTO_RAW or self.ip.get(IP_HDRINCL):
            self._send_hdrinc(data, dst)
            return len(data)
        src = self.source_for(dst)
        stack.send_ip(self.protocol, src, dst, data, ttl=self.ttl(), tos=self.ip.get(IP_TOS, 0))
        return len(data)

    def _send_hdrinc(self, data: bytes, dst: bytes) -> None:
        """raw_send_hdrinc: the application's header, completed."""
        from pyvisor.sentry.socket.netstack.ipv4 import checksum
        if len(data) < 20:
            raise SyscallError(Errno.EINVAL)
        ihl = (data[0] & 0xF) * 4
        if ihl < 20 or ihl > len(data):
            raise SyscallError(Errno.EINVAL)
        hdr = bytearray(data[:ihl])
        if hdr[12:16] == b"\0\0\0\0":
            hdr[12:16] = self.source_for(dst)
        hdr[2:4] = len(data).to_bytes(2, "big")
        if hdr[4:6] == b"\0\0":
            hdr[4:6] = self.stack.next_ip_id().to_bytes(2, "big")
        hdr[10:12] = b"\0\0"
        hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
        src, hdst, proto = bytes(hdr[12:16]), bytes(hdr[16:20]), hdr[9]
        payload = data[ihl:]
        if self.stack.is_local(dst):
            # raw_sendmsg routes by the address given to sendto(2), not by the header's:
            # on lo the datagram arrives whatever destination its header names.
            self.stack.loop_packet(proto, src, hdst, payload, bytes(hdr))
        else:
            self.stack.send_ip(proto, src, hdst, payload, ttl=hdr[8], tos=hdr[1])

    def _send6(self, data: bytes, dst: bytes) -> None:
        from pyvisor.sentry.socket.netstack.ipv4 import checksum, pseudo_header
        src = self.source_for(dst)
        off = self.checksum_offset
        if off >= 0:
            if off + 2 > len(data):
                raise SyscallError(Errno.EINVAL)
            body = data[:off] + b"\0\0" + data[off + 2:]
            c = checksum(pseudo_header(src, dst, self.protocol, len(body)) + body)
            data = body[:off] + c.to_bytes(2, "big") + body[off + 2:]
        self.stack.send_ip(self.protocol, src, dst, data, ttl=self.ttl(),
                           tos=self.ip6.get(67, 0))

    # -- receiving ---------------------------------------------------------------------------

    def takes(self, proto: int, src: bytes, dst: bytes, payload: bytes) -> bool:
        """raw_v4_match / raw_v6_match plus the ICMP filters."""
        if self.protocol != proto or self.protocol == IPPROTO_RAW:
            return False
        if not inet.is_any(self.laddr) and self.laddr != dst:
            return False
        if self._connected() and self.raddr != src:
            return False
        if payload:
            if proto == IPPROTO_ICMP and self.family == AF_INET:
                if payload[0] < 32 and self.icmp_filter >> payload[0] & 1:
                    return False
            elif proto == IPPROTO_ICMPV6:
                t = payload[0]
                if self.icmp6_filter[t >> 3] >> (t & 7) & 1:
                    return False
        if self.family == AF_INET6 and self.checksum_offset >= 0:
            # rawv6_rcv: with IPV6_CHECKSUM set, a datagram whose checksum is wrong is
            # dropped.
            from pyvisor.sentry.socket.netstack.ipv4 import checksum, pseudo_header
            if self.checksum_offset + 2 > len(payload) or \
                    checksum(pseudo_header(src, dst, proto, len(payload)) + payload) != 0:
                return False
        return True

    def _filter_view(self, d: Datagram) -> tuple[sockfilter.Packet, int]:
        """IPv4: from the IP header (which the datagram carries); IPv6: from the payload."""
        if self.family == AF_INET:
            return sockfilter.Packet(d.data, d.data, bytes(14) + d.data, 0x0800), 0
        from pyvisor.sentry.socket.netstack import _synthetic_header
        net = _synthetic_header(self.protocol, d.src, d.dst, len(d.data), d.ttl, d.tos) \
            + d.data
        return sockfilter.Packet(d.data, net, bytes(14) + net, 0x86DD), 0

    def raw_deliver(self, src: bytes, dst: bytes, data: bytes, tos: int, ttl: int = 64
                    ) -> None:
        self.deliver(Datagram(data, src, 0, dst, tos, time.time_ns(), truesize(len(data)),
                              ttl))

    # -- options -----------------------------------------------------------------------------

    def proto_getsockopt(self, t: Task, level: int, name: int) -> bytes:
        if level == SOL_RAW and self.family == AF_INET6 and name == IPV6_CHECKSUM:
            return _I32.pack(self.checksum_offset)
        if level == SOL_RAW and self.family == AF_INET:
            if name == ICMP_FILTER and self.protocol == IPPROTO_ICMP:
                return struct.pack("<I", self.icmp_filter)
            raise SyscallError(Errno.EOPNOTSUPP)
        if level == SOL_ICMPV6 and self.family == AF_INET6:
            if name == ICMPV6_FILTER and self.protocol == IPPROTO_ICMPV6:
                return self.icmp6_filter
            raise SyscallError(Errno.EOPNOTSUPP)
        raise self.unknown_level()

    def proto_setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        if level == SOL_RAW and self.family == AF_INET6 and name == IPV6_CHECKSUM:
            self._set_checksum(optval, level)
            return
        if level == SOL_RAW and self.family == AF_INET:
            if name != ICMP_FILTER or self.protocol != IPPROTO_ICMP:
                raise SyscallError(Errno.EOPNOTSUPP)
            if len(optval) < 4:
                raise SyscallError(Errno.EINVAL)
            self.icmp_filter = struct.unpack_from("<I", optval)[0]
            return
        if level == SOL_ICMPV6 and self.family == AF_INET6:
            if name != ICMPV6_FILTER or self.protocol != IPPROTO_ICMPV6:
                raise SyscallError(Errno.EOPNOTSUPP)
            if len(optval) < 32:
                raise SyscallError(Errno.EINVAL)
            self.icmp6_filter = bytes(optval[:32])
            return
        raise SyscallError(Errno.ENOPROTOOPT)

    def setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        if level == SOL_IP and self.family == AF_INET6:
            raise SyscallError(Errno.ENOPROTOOPT)    # rawv6_setsockopt: no SOL_IP
        if level == SOL_IP and name == IP_HDRINCL:
            if len(optval) < 1:
                raise SyscallError(Errno.EINVAL)
            v = _I32.unpack_from(optval)[0] if len(optval) >= 4 else optval[0]
            self.ip[IP_HDRINCL] = int(v != 0)
            return
        if level == SOL_IPV6 and name == IPV6_CHECKSUM and self.family == AF_INET6:
            self._set_checksum(optval, level)
            return
        super().setsockopt(t, level, name, optval)

    def _set_checksum(self, optval: bytes, level: int) -> None:
        """do_rawv6_setsockopt IPV6_CHECKSUM: not at SOL_IPV6 on an ICMPv6 socket (RFC 3542;
        SOL_RAW may), never an odd offset."""
        if len(optval) < 4:
            raise SyscallError(Errno.EINVAL)
        v = _I32.unpack_from(optval)[0]
        if (self.protocol == IPPROTO_ICMPV6 and level == SOL_IPV6) or (v > 0 and v & 1):
            raise SyscallError(Errno.EINVAL)
        self.checksum_offset = v if v >= 0 else -1

    def getsockopt(self, t: Task, level: int, name: int) -> bytes:
        if level == SOL_IP and self.family == AF_INET6:
            raise SyscallError(Errno.ENOPROTOOPT)
        if level == SOL_IP and name == IP_HDRINCL:
            return _I32.pack(int(self.protocol == IPPROTO_RAW or bool(self.ip.get(IP_HDRINCL))))
        if level == SOL_IPV6 and name == IPV6_CHECKSUM and self.family == AF_INET6:
            return _I32.pack(self.checksum_offset)
        return super().getsockopt(t, level, name)


def deliver(stack: Stack, proto: int, src: bytes, dst: bytes, header: bytes,
            payload: bytes) -> None:
    """A datagram for this host: a copy to each raw socket that takes it (raw_local_deliver)."""
    for s in list(stack.raw_socks):
        if len(src) == 4 and s.family != AF_INET or len(src) == 16 and s.family != AF_INET6:
            continue
        if not s.takes(proto, src, dst, payload):
            continue
        if len(src) == 4:
            s.raw_deliver(src, dst, header + payload, header[1] if len(header) > 1 else 0,
                          header[8] if len(header) > 8 else 64)
        elif len(header) >= 8:
            tclass = (int.from_bytes(header[0:4], "big") >> 20) & 0xFF
            s.raw_deliver(src, dst, payload, tclass, header[7])
        else:
            s.raw_deliver(src, dst, payload, 0)


def new_raw_socket(stack: Stack, t: Task, family: int, protocol: int) -> RawSocket:
    """inet_create for SOCK_RAW: CAP_NET_RAW, and a protocol."""
    if not net_capable(t, CAP_NET_RAW):
        raise SyscallError(Errno.EPERM)
    if protocol == 0:
        raise SyscallError(Errno.EPROTONOSUPPORT)
    return RawSocket(stack, family, t.creds.euid, protocol)


__all__ = ["RawSocket", "deliver", "new_raw_socket"]
