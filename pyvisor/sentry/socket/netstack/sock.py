"""What netstack's TCP, UDP and ICMP sockets share: addresses, binding, and the
SOL_SOCKET/SOL_IP/SOL_IPV6 options.  Linux: net/ipv4/af_inet.c (inet_bind,
inet_getname), net/ipv4/ip_sockglue.c, net/ipv6/ipv6_sockglue.c,
net/core/sock.c.  gVisor: pkg/sentry/socket/netstack/netstack.go.

Options that change nothing on a loopback path (IP_TOS, TTLs, multicast
settings, keep-alive) are checked as Linux checks them, stored and reported.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_NET_BIND_SERVICE
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import (IP_BIND_ADDRESS_NO_PORT, IP_CHECKSUM, IP_FREEBIND,
                                    IP_MINTTL, IP_MTU, IP_MTU_DISCOVER, IP_MULTICAST_ALL,
                                    IP_MULTICAST_IF, IP_MULTICAST_LOOP, IP_MULTICAST_TTL,
                                    IP_NODEFRAG, IP_PKTINFO, IP_RECVERR, IP_RECVERR_RFC4884,
                                    IP_RECVFRAGSIZE, IP_RECVOPTS, IP_RECVORIGDSTADDR,
                                    IP_RECVTOS, IP_RECVTTL, IP_RETOPTS, IP_TOS, IP_TRANSPARENT,
                                    IP_TTL, IPV6_AUTOFLOWLABEL, IPV6_FREEBIND, IPV6_MTU,
                                    IPV6_MTU_DISCOVER, IPV6_MULTICAST_HOPS,
                                    IPV6_MULTICAST_LOOP, IPV6_RECVERR, IPV6_RECVHOPLIMIT,
                                    IPV6_RECVPKTINFO, IPV6_RECVTCLASS, IPV6_TCLASS,
                                    IPV6_UNICAST_HOPS, IPV6_V6ONLY, LOOPBACK_MTU,
                                    SOL_IP, SOL_IPV6, IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP,
                                    IPV6_ADD_MEMBERSHIP, IPV6_DROP_MEMBERSHIP, INADDR_ANY)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.waitqueue import WaitQueue
from pyvisor.sentry.socket import inet
from pyvisor.sentry.socket.common import (AF_INET, AF_INET6, SO_ACCEPTCONN, SO_BINDTODEVICE,
                                          SO_ERROR, SO_PEERCRED, SO_RCVBUF, SO_RCVBUFFORCE,
                                          SO_REUSEADDR, SO_REUSEPORT, SO_SNDBUF,
                                          SO_SNDBUFFORCE, SOL_SOCKET, UCRED, UCRED_NOBODY,
                                          Socket)

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket.netstack import Stack
    from pyvisor.sentry.socket.netstack.ports import PortTable
    from pyvisor.sentry.vfs.file import FileDescription

_I32 = struct.Struct("<i")

# IP_* options that are 0/1 flags, with their defaults.
_IP_BOOLS = {IP_RECVOPTS: 0, IP_RETOPTS: 0, IP_PKTINFO: 0, IP_RECVERR: 0, IP_RECVTTL: 0,
             IP_RECVTOS: 0, IP_FREEBIND: 0, IP_TRANSPARENT: 0, IP_RECVORIGDSTADDR: 0,
             IP_NODEFRAG: 0, IP_BIND_ADDRESS_NO_PORT: 0, IP_CHECKSUM: 0, IP_RECVFRAGSIZE: 0,
             IP_MULTICAST_ALL: 1, IP_MULTICAST_LOOP: 1, IP_RECVERR_RFC4884: 0}
_IPV6_BOOLS = {IPV6_RECVPKTINFO: 0, IPV6_RECVHOPLIMIT: 0, IPV6_RECVTCLASS: 0, IPV6_RECVERR: 0,
               IPV6_AUTOFLOWLABEL: 1, IPV6_FREEBIND: 0}


def int_opt(optval: bytes, short_ok: bool) -> int:
    """An integer option value: a 4-byte int, or (IP options) a single byte."""
    if len(optval) >= 4:
        return _I32.unpack_from(optval)[0]
    if short_ok and len(optval) >= 1:
        return optval[0]
    raise SyscallError(Errno.EINVAL)


class NetSocket(Socket):
    """An AF_INET/AF_INET6 socket of netstack.  Linux: struct inet_sock (+ ipv6_pinfo).

    The binding fields (`laddr`, `lport`, `reuse`, ...) are what the port table
    reads (ports.Binding).  `bound` is True while this socket holds a port.
    """

    def __init__(self, stack: Stack, family: int, stype: int, protocol: int, uid: int) -> None:
        super().__init__(stype, protocol)
        self.stack = stack
        self.family = family                    # type: ignore[misc]
        self.wq = WaitQueue()
        self.laddr = inet.any_addr(family)      # local address (4 or 16 bytes)
        self.lport = 0
        self.raddr = inet.any_addr(family)
        self.rport = 0
        self.bound = False
        self.user_bound = False                 # bind(2) chose the port (SOCK_BINDPORT_LOCK)
        self.v6only = False
        self.owner_uid = uid
        self.err = 0                            # sk_err, reported once (SO_ERROR)
        self.shut = 0                           # RCV_SHUTDOWN | SEND_SHUTDOWN
        self.ip: dict[int, int] = {IP_TTL: -1, IP_TOS: 0, IP_MULTICAST_TTL: 1,
                                   IP_MTU_DISCOVER: 1, IP_MINTTL: 0}
        self.ip6: dict[int, int] = {IPV6_UNICAST_HOPS: -1, IPV6_MULTICAST_HOPS: 1,
                                    IPV6_MULTICAST_LOOP: 1, IPV6_TCLASS: 0,
                                    IPV6_MTU_DISCOVER: 1}
        self.bindtodevice = b""
        self.userlocks_snd = False
        self.userlocks_rcv = False

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.wq

    # -- binding -----------------------------------------------------------------------------

    @property
    def reuse(self) -> bool:
        return bool(self.opts.get(SO_REUSEADDR, 0))

    @property
    def reuseport(self) -> bool:
        return bool(self.opts.get(SO_REUSEPORT, 0))

    @property
    def tcp_state(self) -> int:
        return 7          # TCP_CLOSE; TCP sockets override

    @property
    def ports(self) -> PortTable:
        return self.stack.ports_for(self)

    def _decode_local(self, raw: bytes) -> tuple[bytes, int]:
        """A bind address -> (ip, port) as this socket holds them.  Linux: inet_bind,
        inet6_bind."""
        ip, port, _scope = inet.decode(self.family, raw)
        if self.family == AF_INET6:
            if inet.is_mapped(ip):
                if self.v6only:
                    raise SyscallError(Errno.EINVAL)
                ip = inet.unmap(ip)
            elif ip[0] == 0xFF:
                raise SyscallError(Errno.EINVAL)       # multicast: not on a loopback-only stack
        elif inet.raw_family(raw) != AF_INET and ip != INADDR_ANY:
            raise SyscallError(Errno.EAFNOSUPPORT)     # AF_UNSPEC only with INADDR_ANY
        return ip, port

    def bind(self, t: Task, addr: bytes) -> None:
        """Implements bind(2).  Linux: __inet_bind / __inet6_bind."""
        ip, port = self._decode_local(addr)
        if not inet.is_any(ip) and not self.stack.is_local(ip) \
                and not self.ip.get(IP_FREEBIND) and not self.ip.get(IP_TRANSPARENT):
            raise SyscallError(Errno.EADDRNOTAVAIL)
        if port and port < self.stack.sysctl.unprivileged_port_start and \
                not t.creds.capable(CAP_NET_BIND_SERVICE):
            raise SyscallError(Errno.EACCES)
        if self.bound or self.tcp_state != 7:
            raise SyscallError(Errno.EINVAL)
        self.laddr = ip if not inet.is_any(ip) else inet.any_addr(self.family)
        try:
            self.ports.bind(self, port)
        except SyscallError:
            self.laddr = inet.any_addr(self.family)
            raise
        self.bound = True
        self.user_bound = port != 0
        self.stack.note_bound(self)

    def autobind(self, connecting: bool = False) -> None:
        """An ephemeral port for a socket that sends or connects unbound (inet_autobind,
        inet_hash_connect)."""
        if self.bound:
            return
        try:
            self.ports.bind(self, 0, connecting)
        except SyscallError:
            raise SyscallError(Errno.EAGAIN) from None
        self.bound = True
        self.stack.note_bound(self)

    def unbind(self) -> None:
        if self.bound:
            self.ports.remove(self)
            self.bound = False
            self.stack.note_unbound(self)

    def getsockname(self, t: Task) -> bytes:
        return inet.encode(self.family, self.laddr, self.lport)

    def _remote_name(self) -> bytes:
        return inet.encode(self.family, self.raddr, self.rport)

    def _decode_remote(self, raw: bytes) -> tuple[bytes, int]:
        """A destination -> (ip, port); INADDR_ANY/:: mean this host (loopback), as Linux
        routes a connect to 0.0.0.0 to 127.0.0.1."""
        ip, port, _ = inet.decode(self.family, raw)
        if self.family == AF_INET6:
            if inet.is_mapped(ip):
                if self.v6only:
                    raise SyscallError(Errno.ENETUNREACH)
                ip = inet.unmap(ip)
            elif len(ip) == 16 and ip == inet.any_addr(AF_INET6):
                ip = b"\0" * 15 + b"\1"
        if ip == INADDR_ANY:
            ip = b"\x7f\0\0\1"
        return ip, port

    def source_for(self, dst: bytes) -> bytes:
        """The local address a packet to `dst` leaves from (bound, or the route's)."""
        if not inet.is_any(self.laddr):
            return self.laddr
        return self.stack.route_source(dst)

    # -- ioctls ------------------------------------------------------------------------------

    # -- options -----------------------------------------------------------------------------

    def getsockopt(self, t: Task, level: int, name: int) -> bytes:
        i32 = _I32.pack
        if level == SOL_SOCKET:
            if name == SO_ERROR:
                err, self.err = self.err, 0
                return i32(err)
            if name == SO_ACCEPTCONN:
                return i32(int(self.tcp_state == 10))
            if name == SO_PEERCRED:
                return UCRED.pack(*UCRED_NOBODY)
            if name == SO_BINDTODEVICE:
                return self.bindtodevice + b"\0" if self.bindtodevice else b""
            return super().getsockopt(t, level, name)
        if level == SOL_IP:
            return self._get_ip(name)
        if level == SOL_IPV6 and self.family == AF_INET6:
            return self._get_ip6(name)
        return self.proto_getsockopt(t, level, name)

    def _get_ip(self, name: int) -> bytes:
        i32 = _I32.pack
        if name == IP_TTL:
            v = self.ip[IP_TTL]
            return i32(64 if v < 0 else v)
        if name in (IP_TOS, IP_MULTICAST_TTL, IP_MTU_DISCOVER, IP_MINTTL):
            return i32(self.ip[name])
        if name in _IP_BOOLS:
            return i32(self.ip.get(name, _IP_BOOLS[name]))
        if name == IP_MTU:
            if not self.connected_for_mtu():
                raise SyscallError(Errno.ENOTCONN)
            return i32(LOOPBACK_MTU)
        if name == IP_MULTICAST_IF:
            return INADDR_ANY
        raise SyscallError(Errno.ENOPROTOOPT)

    def _get_ip6(self, name: int) -> bytes:
        i32 = _I32.pack
        if name == IPV6_V6ONLY:
            return i32(int(self.v6only))
        if name == IPV6_UNICAST_HOPS:
            v = self.ip6[name]
            return i32(64 if v < 0 else v)
        if name in (IPV6_MULTICAST_HOPS, IPV6_MULTICAST_LOOP, IPV6_TCLASS, IPV6_MTU_DISCOVER):
            return i32(self.ip6[name])
        if name in _IPV6_BOOLS:
            return i32(self.ip6.get(name, _IPV6_BOOLS[name]))
        if name == IPV6_MTU:
            if not self.connected_for_mtu():
                raise SyscallError(Errno.ENOTCONN)
            return i32(LOOPBACK_MTU)
        raise SyscallError(Errno.ENOPROTOOPT)

    def connected_for_mtu(self) -> bool:
        return self.rport != 0

    def setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        if level == SOL_SOCKET:
            self._set_socket(t, name, optval)
            return
        if level == SOL_IP:
            self._set_ip(t, name, optval)
            return
        if level == SOL_IPV6:
            if self.family != AF_INET6:
                raise SyscallError(Errno.ENOPROTOOPT)
            self._set_ip6(name, optval)
            return
        self.proto_setsockopt(t, level, name, optval)

    def _set_socket(self, t: Task, name: int, optval: bytes) -> None:
        if name == SO_BINDTODEVICE:
            dev = optval[:16].split(b"\0", 1)[0]
            if dev and dev not in {i.name for i in self.stack.interfaces()}:
                raise SyscallError(Errno.ENODEV)
            if t.creds.euid != 0:
                raise SyscallError(Errno.EPERM)
            self.bindtodevice = dev
            return
        super().setsockopt(t, SOL_SOCKET, name, optval)
        if name in (SO_SNDBUF, SO_SNDBUFFORCE):
            self.userlocks_snd = True
        elif name in (SO_RCVBUF, SO_RCVBUFFORCE):
            self.userlocks_rcv = True

    def _set_ip(self, t: Task, name: int, optval: bytes) -> None:
        if name in (IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP):
            if len(optval) < 8:
                raise SyscallError(Errno.EINVAL)
            raise SyscallError(Errno.ENODEV if name == IP_ADD_MEMBERSHIP
                               else Errno.EADDRNOTAVAIL)
        if name == IP_MULTICAST_IF:
            if len(optval) < 4:
                raise SyscallError(Errno.EINVAL)
            return
        val = int_opt(optval, short_ok=True)
        if name == IP_TTL:
            if val != -1 and not 1 <= val <= 255:
                raise SyscallError(Errno.EINVAL)
            self.ip[IP_TTL] = val
        elif name == IP_TOS:
            val &= 0xFF
            if self.stype == 1:            # SOCK_STREAM keeps its own ECN bits
                val = (val & ~3) | (self.ip[IP_TOS] & 3)
            self.ip[IP_TOS] = val
        elif name == IP_MULTICAST_TTL:
            if val == -1:
                val = 1
            if not 0 <= val <= 255:
                raise SyscallError(Errno.EINVAL)
            self.ip[name] = val
        elif name == IP_MTU_DISCOVER:
            if not 0 <= val <= 5:
                raise SyscallError(Errno.EINVAL)
            self.ip[name] = val
        elif name == IP_MINTTL:
            if not 0 <= val <= 255:
                raise SyscallError(Errno.EINVAL)
            self.ip[name] = val
        elif name in _IP_BOOLS:
            if name == IP_TRANSPARENT and val and t.creds.euid != 0:
                raise SyscallError(Errno.EPERM)
            self.ip[name] = int(val != 0)
        else:
            raise SyscallError(Errno.ENOPROTOOPT)

    def _set_ip6(self, name: int, optval: bytes) -> None:
        if name in (IPV6_ADD_MEMBERSHIP, IPV6_DROP_MEMBERSHIP):
            if len(optval) < 20:
                raise SyscallError(Errno.EINVAL)
            raise SyscallError(Errno.ENODEV if name == IPV6_ADD_MEMBERSHIP
                               else Errno.EADDRNOTAVAIL)
        val = int_opt(optval, short_ok=False)
        if name == IPV6_V6ONLY:
            if self.bound:
                raise SyscallError(Errno.EINVAL)
            self.v6only = val != 0
        elif name in (IPV6_UNICAST_HOPS, IPV6_MULTICAST_HOPS):
            if not -1 <= val <= 255:
                raise SyscallError(Errno.EINVAL)
            self.ip6[name] = 1 if val == -1 and name == IPV6_MULTICAST_HOPS else val
        elif name == IPV6_MULTICAST_LOOP:
            if val not in (0, 1):
                raise SyscallError(Errno.EINVAL)
            self.ip6[name] = val
        elif name == IPV6_TCLASS:
            if not -1 <= val <= 255:
                raise SyscallError(Errno.EINVAL)
            self.ip6[name] = max(val, 0)
        elif name == IPV6_MTU_DISCOVER:
            if not 0 <= val <= 5:
                raise SyscallError(Errno.EINVAL)
            self.ip6[name] = val
        elif name in _IPV6_BOOLS:
            self.ip6[name] = int(val != 0)
        else:
            raise SyscallError(Errno.ENOPROTOOPT)

    def proto_getsockopt(self, t: Task, level: int, name: int) -> bytes:
        raise self.unknown_level()

    def unknown_level(self) -> SyscallError:
        """do_ip_getsockopt says EOPNOTSUPP for a level it does not know; ipv6_getsockopt
        ENOPROTOOPT."""
        return SyscallError(Errno.EOPNOTSUPP if self.family == AF_INET else Errno.ENOPROTOOPT)

    def proto_setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        raise SyscallError(Errno.ENOPROTOOPT)

    # -- what a received packet carries (IP_RECVTTL, IP_PKTINFO, ...) ------------------------

    def ip_cmsgs(self, src: bytes, dst: bytes, tos: int = 0) -> list[tuple[int, int, bytes]]:
        """Control messages for a received datagram.  Linux: ip_cmsg_recv, ip6_datagram_recv_ctl."""
        from pyvisor.abi.linux.inet import IN6_PKTINFO, IN_PKTINFO, IPV6_HOPLIMIT, IPV6_PKTINFO
        out: list[tuple[int, int, bytes]] = []
        if len(src) == 4:
            if self.ip.get(IP_PKTINFO):
                out.append((SOL_IP, IP_PKTINFO, IN_PKTINFO.pack(1, dst, dst)))
            if self.ip.get(IP_RECVTTL):
                out.append((SOL_IP, IP_TTL, _I32.pack(64)))
            if self.ip.get(IP_RECVTOS):
                out.append((SOL_IP, IP_TOS, bytes([tos & 0xFF])))
        elif self.family == AF_INET6:
            if self.ip6.get(IPV6_RECVPKTINFO):
                out.append((SOL_IPV6, IPV6_PKTINFO, IN6_PKTINFO.pack(dst, 1)))
            if self.ip6.get(IPV6_RECVHOPLIMIT):
                out.append((SOL_IPV6, IPV6_HOPLIMIT, _I32.pack(64)))
            if self.ip6.get(IPV6_RECVTCLASS):
                out.append((SOL_IPV6, IPV6_TCLASS, _I32.pack(tos)))
        return out

    def ttl(self) -> int:
        v = self.ip[IP_TTL] if self.family == AF_INET else self.ip6[IPV6_UNICAST_HOPS]
        return 64 if v < 0 else v


__all__ = ["NetSocket", "int_opt", "AF_INET", "AF_INET6"]
