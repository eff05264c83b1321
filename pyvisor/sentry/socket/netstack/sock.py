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
                                    IPV6_ADD_MEMBERSHIP, IPV6_DROP_MEMBERSHIP, INADDR_ANY,
                                    IPV6_MULTICAST_IF, IPV6_RECVORIGDSTADDR)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.waitqueue import WaitQueue
from pyvisor.sentry.socket import inet
from pyvisor.sentry.socket.common import (AF_INET, AF_INET6, SO_ACCEPTCONN, SO_BINDTODEVICE,
                                          SO_ERROR, SO_PASSCRED, SO_PEERCRED, SO_RCVBUF,
                                          SO_RCVBUFFORCE, SO_REUSEADDR, SO_REUSEPORT, SO_SNDBUF,
                                          SO_SNDBUFFORCE, SOL_SOCKET, UCRED, UCRED_NOBODY,
                                          Socket)

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket.netstack import Stack
    from pyvisor.sentry.socket.netstack.ports import PortTable
    from pyvisor.sentry.vfs.file import FileDescription

_I32 = struct.Struct("<i")
IGMP_MAX_MEMBERSHIPS = 20       # net.ipv4.igmp_max_memberships
MLD_MAX_MEMBERSHIPS = 64        # net.ipv6.mld_max_msf-ish bound on a socket's groups
SOCK_STREAM_TYPE = 1

# IP_* options that are 0/1 flags, with their defaults.
_IP_BOOLS = {IP_RECVOPTS: 0, IP_RETOPTS: 0, IP_PKTINFO: 0, IP_RECVERR: 0, IP_RECVTTL: 0,
             IP_RECVTOS: 0, IP_FREEBIND: 0, IP_TRANSPARENT: 0, IP_RECVORIGDSTADDR: 0,
             IP_NODEFRAG: 0, IP_BIND_ADDRESS_NO_PORT: 0, IP_CHECKSUM: 0, IP_RECVFRAGSIZE: 0,
             IP_MULTICAST_ALL: 1, IP_MULTICAST_LOOP: 1, IP_RECVERR_RFC4884: 0}
_IPV6_BOOLS = {IPV6_RECVPKTINFO: 0, IPV6_RECVHOPLIMIT: 0, IPV6_RECVTCLASS: 0, IPV6_RECVERR: 0,
               IPV6_AUTOFLOWLABEL: 1, IPV6_FREEBIND: 0, IPV6_RECVORIGDSTADDR: 0}


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
        # Multicast (Linux: inet->mc_list, mc_index, mc_addr; np->ipv6_mc_list, mcast_oif):
        # the groups joined, as (group, ifindex), and the interface multicasts leave by.
        self.mc4: list[tuple[bytes, int, bytes]] = []      # (group, ifindex, imr_address)
        self.mc6: list[tuple[bytes, int]] = []
        self.mc_index = 0
        self.mc_addr = INADDR_ANY
        self.mc6_oif = 0
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
            elif ip[0] == 0xFF and ip[1] & 0xF in (1, 2) and not _scope:
                raise SyscallError(Errno.EINVAL)       # link-scope multicast needs a scope id
        elif inet.raw_family(raw) != AF_INET and ip != INADDR_ANY:
            raise SyscallError(Errno.EAFNOSUPPORT)     # AF_UNSPEC only with INADDR_ANY
        return ip, port

    def bind(self, t: Task, addr: bytes) -> None:
        """Implements bind(2).  Linux: __inet_bind / __inet6_bind."""
        ip, port = self._decode_local(addr)
        multicast = 224 <= ip[0] < 240 if len(ip) == 4 else ip[0] == 0xFF
        multicast = multicast or ip == b"\xff\xff\xff\xff"     # RTN_BROADCAST too
        if not inet.is_any(ip) and not self.stack.is_local(ip) and not multicast \
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
            if name == SO_PASSCRED:
                raise SyscallError(Errno.EOPNOTSUPP)     # Linux 6.16: AF_UNIX/NETLINK only
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
            return self.mc_addr
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
        if name == IPV6_MULTICAST_IF:
            return i32(self.mc6_oif)
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
        if name == SO_PASSCRED:
            raise SyscallError(Errno.EOPNOTSUPP)         # Linux 6.16: AF_UNIX/NETLINK only
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
            if self.stype == SOCK_STREAM_TYPE:
                raise SyscallError(Errno.EPROTO)
            if len(optval) < 8:
                raise SyscallError(Errno.EINVAL)
            group, addr = optval[0:4], optval[4:8]
            index = _I32.unpack_from(optval, 8)[0] if len(optval) >= 12 else 0
            if name == IP_ADD_MEMBERSHIP:
                self._join4(group, addr, index)
            else:
                self._leave4(group, addr, index)
            return
        if name == IP_MULTICAST_IF:
            self._set_mc_if(optval)
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
            if self.stype == SOCK_STREAM_TYPE:
                raise SyscallError(Errno.EINVAL)
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
            if self.stype == SOCK_STREAM_TYPE:
                raise SyscallError(Errno.EPROTO)
            if len(optval) < 20:
                raise SyscallError(Errno.EINVAL)
            group, index = optval[:16], _I32.unpack_from(optval, 16)[0]
            if name == IPV6_ADD_MEMBERSHIP:
                self._join6(group, index)
            else:
                self._leave6(group, index)
            return
        val = int_opt(optval, short_ok=False)
        if name == IPV6_MULTICAST_IF:
            if self.stype == SOCK_STREAM_TYPE:
                raise SyscallError(Errno.EINVAL)
            if val and self.stack.iface_by_index(val) is None:
                raise SyscallError(Errno.ENODEV)
            self.mc6_oif = val
            return
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

    # -- multicast ---------------------------------------------------------------------------

    def _mc_dev4(self, group: bytes, addr: bytes, index: int) -> int:
        """ip_mc_find_dev: the interface of a membership (by index, by address, or by the
        route to the group); 0 when there is none."""
        if index:
            return index if self.stack.iface_by_index(index) is not None else 0
        if addr != INADDR_ANY:
            return self.stack.index_of_addr(addr)
        return self.stack.route_index(group)

    def _join4(self, group: bytes, addr: bytes, index: int) -> None:
        """ip_mc_join_group."""
        if not 224 <= group[0] < 240:
            raise SyscallError(Errno.EINVAL)
        index = self._mc_dev4(group, addr, index)
        if not index:
            raise SyscallError(Errno.ENODEV)
        if any(g == group and i == index for g, i, _ in self.mc4):
            raise SyscallError(Errno.EADDRINUSE)
        if len(self.mc4) >= IGMP_MAX_MEMBERSHIPS:
            raise SyscallError(Errno.ENOBUFS)
        self.mc4.append((group, index, addr))
        self.stack.mc_join(index, group)

    def _leave4(self, group: bytes, addr: bytes, index: int) -> None:
        """ip_mc_leave_group."""
        dev = self._mc_dev4(group, addr, index)
        if not index and addr == INADDR_ANY and not dev:
            raise SyscallError(Errno.ENODEV)
        index = index or dev
        for m in self.mc4:
            g, i, a = m
            if g != group:
                continue
            if index:
                if i != index:
                    continue
            elif addr != INADDR_ANY and addr != a:
                continue
            self.mc4.remove(m)
            self.stack.mc_leave(i, g)
            return
        raise SyscallError(Errno.EADDRNOTAVAIL)

    def _set_mc_if(self, optval: bytes) -> None:
        """IP_MULTICAST_IF: an in_addr, an ip_mreq or an ip_mreqn."""
        if self.stype == SOCK_STREAM_TYPE or len(optval) < 4:
            raise SyscallError(Errno.EINVAL)
        if len(optval) >= 12:
            addr, index = optval[4:8], _I32.unpack_from(optval, 8)[0]
        elif len(optval) >= 8:
            addr, index = optval[4:8], 0
        else:
            addr, index = optval[:4], 0
        if not index:
            if addr == INADDR_ANY:
                self.mc_index, self.mc_addr = 0, INADDR_ANY
                return
            index = self.stack.index_of_addr(addr)
        elif self.stack.iface_by_index(index) is None:
            index = 0
        if not index:
            raise SyscallError(Errno.EADDRNOTAVAIL)
        self.mc_index, self.mc_addr = index, addr

    def _join6(self, group: bytes, index: int) -> None:
        """ipv6_sock_mc_join."""
        if group[0] != 0xFF:
            raise SyscallError(Errno.EINVAL)
        if any(g == group and i == index for g, i in self.mc6):
            raise SyscallError(Errno.EADDRINUSE)
        if index == 0:
            index = self.stack.route_index(group)
        elif self.stack.iface_by_index(index) is None:
            index = 0
        if not index:
            raise SyscallError(Errno.ENODEV)
        if len(self.mc6) >= MLD_MAX_MEMBERSHIPS:
            raise SyscallError(Errno.ENOBUFS)
        self.mc6.append((group, index))
        self.stack.mc_join(index, group)

    def _leave6(self, group: bytes, index: int) -> None:
        """ipv6_sock_mc_drop."""
        for m in self.mc6:
            if m[0] == group and (index == 0 or m[1] == index):
                self.mc6.remove(m)
                self.stack.mc_leave(m[1], group)
                return
        raise SyscallError(Errno.EADDRNOTAVAIL)

    def mc_drop_all(self) -> None:
        """ip_mc_drop_socket / ipv6_sock_mc_close: a closing socket leaves its groups."""
        for g, i, _ in self.mc4:
            self.stack.mc_leave(i, g)
        for g, i in self.mc6:
            self.stack.mc_leave(i, g)
        self.mc4, self.mc6 = [], []

    def mc_allows(self, group: bytes, ifindex: int) -> bool:
        """ip_mc_sf_allow: a member of `group` on `ifindex` takes the datagram; any other
        socket only with IP_MULTICAST_ALL (the default)."""
        if len(group) == 4:
            if any(g == group and i == ifindex for g, i, _ in self.mc4):
                return True
            from pyvisor.abi.linux.inet import IP_MULTICAST_ALL as _ALL
            return bool(self.ip.get(_ALL, 1))
        if any(g == group and i == ifindex for g, i in self.mc6):
            return True
        return True            # IPv6 has no IP_MULTICAST_ALL: inet6_mc_check allows all

    def mc_out(self, dst: bytes) -> tuple[int, bytes]:
        """The interface index and source address a multicast datagram to `dst` leaves
        with (udp_sendmsg: mc_index/mc_addr, else the route)."""
        if len(dst) == 4:
            index = self.mc_index
            if not index and not inet.is_any(self.laddr) and len(self.laddr) == 4:
                # __ip_route_output_key: a bound source names the device it leaves by.
                index = self.stack.index_of_addr(self.laddr)
            index = index or self.stack.route_index(dst)
            src = self.laddr if not inet.is_any(self.laddr) else self.mc_addr
            if inet.is_any(src) and index:
                src = self.stack.index_source4(index)
            return index, src
        index = self.mc6_oif or self.stack.route_index(dst)
        return index, self.laddr

    def proto_getsockopt(self, t: Task, level: int, name: int) -> bytes:
        raise self.unknown_level()

    def unknown_level(self) -> SyscallError:
        """do_ip_getsockopt says EOPNOTSUPP for a level it does not know; ipv6_getsockopt
        ENOPROTOOPT."""
        return SyscallError(Errno.EOPNOTSUPP if self.family == AF_INET else Errno.ENOPROTOOPT)

    def proto_setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        raise SyscallError(Errno.ENOPROTOOPT)

    # -- what a received packet carries (IP_RECVTTL, IP_PKTINFO, ...) ------------------------

    def ip_cmsgs(self, src: bytes, dst: bytes, tos: int = 0, ttl: int = 64, dport: int = 0
                 ) -> list[tuple[int, int, bytes]]:
        """Control messages for a received datagram.  Linux: ip_cmsg_recv, ip6_datagram_recv_ctl."""
        from pyvisor.abi.linux.inet import IN6_PKTINFO, IN_PKTINFO, IPV6_HOPLIMIT, IPV6_PKTINFO
        out: list[tuple[int, int, bytes]] = []
        if len(src) == 4:
            if self.ip.get(IP_PKTINFO):
                # ipi_spec_dst: fib_compute_spec_dst, the interface's own address for a
                # multicast or broadcast destination.
                spec = dst
                if 224 <= dst[0] < 240 or dst == b"\xff\xff\xff\xff":
                    spec = self.stack.index_source4(self.stack.lo.index)
                out.append((SOL_IP, IP_PKTINFO, IN_PKTINFO.pack(1, spec, dst)))
            if self.ip.get(IP_RECVTTL):
                out.append((SOL_IP, IP_TTL, _I32.pack(ttl)))
            if self.ip.get(IP_RECVTOS):
                out.append((SOL_IP, IP_TOS, bytes([tos & 0xFF])))
            if self.ip.get(IP_RECVORIGDSTADDR):
                out.append((SOL_IP, IP_RECVORIGDSTADDR,
                            inet.encode(AF_INET, dst, dport)[:16]))
            if self.family == AF_INET6 and self.ip6.get(IPV6_RECVPKTINFO):
                # ip6_datagram_recv_common_ctl: a dual-stack socket gets both, this first.
                out.insert(0, (SOL_IPV6, IPV6_PKTINFO,
                               IN6_PKTINFO.pack(b"\0" * 10 + b"\xff\xff" + dst, 1)))
        elif self.family == AF_INET6:
            if self.ip6.get(IPV6_RECVPKTINFO):
                out.append((SOL_IPV6, IPV6_PKTINFO, IN6_PKTINFO.pack(dst, 1)))
            if self.ip6.get(IPV6_RECVHOPLIMIT):
                out.append((SOL_IPV6, IPV6_HOPLIMIT, _I32.pack(ttl)))
            if self.ip6.get(IPV6_RECVTCLASS):
                out.append((SOL_IPV6, IPV6_TCLASS, _I32.pack(tos)))
            if self.ip6.get(IPV6_RECVORIGDSTADDR):
                out.append((SOL_IPV6, IPV6_RECVORIGDSTADDR,
                            inet.encode(AF_INET6, dst, dport)))
        return out

    def ttl(self) -> int:
        v = self.ip[IP_TTL] if self.family == AF_INET else self.ip6[IPV6_UNICAST_HOPS]
        return 64 if v < 0 else v


__all__ = ["NetSocket", "int_opt", "AF_INET", "AF_INET6"]
