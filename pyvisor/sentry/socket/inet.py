"""What AF_INET and AF_INET6 sockets share, whoever serves them.  Linux:
net/ipv4/af_inet.c, net/ipv6/af_inet6.c (address checks), net/core/dev_ioctl.c.

Addresses inside the Sentry are `(ip, port)` with `ip` 4 bytes (IPv4) or 16
bytes (IPv6).  An AF_INET6 socket talking IPv4 (dual stack, through
v4-mapped addresses ::ffff:a.b.c.d) holds the 4-byte address and shows the
application the mapped form, as Linux keeps inet_daddr beside sk_v6_daddr.

`Interface` describes a network device as the SIOCGIF* ioctls, netlink and
/proc/net show it; `interface_ioctl` answers the ioctls from a list of them.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import (IFCONF, IFF_LOOPBACK, IFF_RUNNING, IFF_UP, IFNAMSIZ,
                                    IFREQ_SIZE, IN6ADDR_ANY, INADDR_ANY, SIN6_LEN_RFC2133,
                                    SIOCGIFADDR, SIOCGIFBRDADDR, SIOCGIFCONF, SIOCGIFDSTADDR,
                                    SIOCGIFFLAGS, SIOCGIFHWADDR, SIOCGIFINDEX, SIOCGIFMETRIC,
                                    SIOCGIFMTU, SIOCGIFNAME, SIOCGIFNETMASK, SIOCGIFTXQLEN,
                                    V4MAPPED_PREFIX, ARPHRD_LOOPBACK, LOOPBACK_MTU, IFF_LOWER_UP)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.common import AF_INET, AF_INET6, AF_UNSPEC

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

Addr = tuple[bytes, int]          # (4- or 16-byte ip, port)


# -- addresses ----------------------------------------------------------------------------------


def is_v4(ip: bytes) -> bool:
    return len(ip) == 4


def is_any(ip: bytes) -> bool:
    return ip == INADDR_ANY or ip == IN6ADDR_ANY


def unmap(ip: bytes) -> bytes:
    """::ffff:a.b.c.d -> a.b.c.d; anything else unchanged."""
    if len(ip) == 16 and ip[:12] == V4MAPPED_PREFIX:
        return ip[12:]
    return ip


def is_mapped(ip: bytes) -> bool:
    return len(ip) == 16 and ip[:12] == V4MAPPED_PREFIX


def decode(family: int, raw: bytes) -> tuple[bytes, int, int]:
    """A sockaddr for a socket of `family` -> (ip, port, scope_id), ip as given (a v4-mapped
    address stays 16 bytes; the caller decides).  EINVAL if too short, EAFNOSUPPORT for
    another family (AF_UNSPEC is accepted by AF_INET and reads as INADDR_ANY, as
    inet_bind's compatibility rule)."""
    if len(raw) < 2:
        raise SyscallError(Errno.EINVAL)
    fam = struct.unpack_from("<H", raw)[0]
    if family == AF_INET:
        if len(raw) < 16:
            raise SyscallError(Errno.EINVAL)
        if fam not in (AF_INET, AF_UNSPEC):
            raise SyscallError(Errno.EAFNOSUPPORT)
        port = int.from_bytes(raw[2:4], "big")
        return raw[4:8], port, 0
    if len(raw) < SIN6_LEN_RFC2133:
        raise SyscallError(Errno.EINVAL)
    if fam != AF_INET6:
        raise SyscallError(Errno.EAFNOSUPPORT)
    port = int.from_bytes(raw[2:4], "big")
    scope = struct.unpack_from("<I", raw, 24)[0] if len(raw) >= 28 else 0
    return raw[8:24], port, scope


def raw_family(raw: bytes) -> int:
    return struct.unpack_from("<H", raw)[0] if len(raw) >= 2 else -1


def encode(family: int, ip: bytes, port: int) -> bytes:
    """sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes) for a socket of `family`."""
    if family == AF_INET:
        return struct.pack("<H", AF_INET) + port.to_bytes(2, "big") + ip[-4:] + b"\0" * 8
    if len(ip) == 4:
        ip = V4MAPPED_PREFIX + ip if ip != INADDR_ANY else IN6ADDR_ANY
    return struct.pack("<H", AF_INET6) + port.to_bytes(2, "big") + b"\0" * 4 + ip + b"\0" * 4


def any_addr(family: int) -> bytes:
    return INADDR_ANY if family == AF_INET else IN6ADDR_ANY


def text(ip: bytes) -> str:
    """For logs and /proc: dotted quad or the usual IPv6 text."""
    import ipaddress
    return str(ipaddress.ip_address(ip))


# -- interfaces and routes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """One route.  Linux: a fib_alias (rtmsg fields as `ip route` shows them)."""

    family: int
    dst: bytes
    prefix: int
    oif: int
    table: int = 254            # RT_TABLE_MAIN; 255 is RT_TABLE_LOCAL
    rtype: int = 1              # RTN_UNICAST; 2 RTN_LOCAL, 3 RTN_BROADCAST
    scope: int = 0              # RT_SCOPE_UNIVERSE; 253 link, 254 host
    prefsrc: bytes = b""
    metric: int = 0
    gateway: bytes = b""
    proto: int = 2              # RTPROT_KERNEL; 3 RTPROT_BOOT (ip route add), ...
    tos: int = 0


def loopback_routes() -> list[Route]:
    """The routes a fresh network namespace has once lo is up (the local table)."""
    lo4 = b"\x7f\0\0\1"
    return [Route(AF_INET, b"\x7f\0\0\0", 8, 1, 255, 2, 254, lo4),
            Route(AF_INET, lo4, 32, 1, 255, 2, 254, lo4),
            Route(AF_INET, b"\x7f\xff\xff\xff", 32, 1, 255, 3, 253, lo4),
            Route(AF_INET6, b"\0" * 15 + b"\1", 128, 1, 255, 2, 0)]


@dataclass(frozen=True, slots=True)
class AddrInfo:
    """What an interface address carries beyond (ip, prefix).  Linux: struct in_ifaddr
    (ifa_label, ifa_flags, ifa_scope, ifa_broadcast, ifa_rt_priority, ifa_proto) and
    struct inet6_ifaddr."""

    label: bytes = b""          # b"": the interface's name
    flags: int = 0x80           # IFA_F_PERMANENT
    scope: int = 0              # RT_SCOPE_UNIVERSE
    broadcast: bytes = b""
    peer: bytes = b""           # IFA_ADDRESS when it differs from IFA_LOCAL
    metric: int = 0             # IFA_RT_PRIORITY
    proto: int = 0              # IFA_PROTO


@dataclass(slots=True)
class Interface:
    """A network device as the application sees it.  Linux: struct net_device + in_device."""

    index: int
    name: bytes
    flags: int
    mtu: int
    hwtype: int = ARPHRD_LOOPBACK
    hwaddr: bytes = b"\0" * 6
    addrs4: list[tuple[bytes, int]] = field(default_factory=list)   # (ip, prefix length)
    addrs6: list[tuple[bytes, int]] = field(default_factory=list)
    txqlen: int = 1000
    rx_bytes: int = 0
    rx_packets: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    kind: bytes = b""           # IFLA_INFO_KIND of a link made through netlink (veth, ...)
    peer_index: int = 0         # IFLA_LINK: a veth's peer's index (0: none)
    # What RTM_NEWADDR said about an address beyond (ip, prefix): label, flags, scope,
    # broadcast.  Absent: the defaults an address the stack was given at boot has.
    addr_info: dict[tuple[bytes, int], AddrInfo] = field(default_factory=dict)

    def count(self, n: int) -> None:
        """One packet of `n` bytes sent and received (loopback)."""
        self.rx_bytes += n
        self.tx_bytes += n
        self.rx_packets += 1
        self.tx_packets += 1


def loopback() -> Interface:
    """lo as a fresh network namespace has it once brought up."""
    return Interface(1, b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP,
                     LOOPBACK_MTU, addrs4=[(b"\x7f\0\0\1", 8)],
                     addrs6=[(b"\0" * 15 + b"\1", 128)])


SIOCETHTOOL = 0x8946          # <linux/sockios.h>
ETHTOOL_GET_TS_INFO = 0x41    # <linux/ethtool.h>
# struct ethtool_ts_info: cmd, so_timestamping, phc_index, tx_types, tx_reserved[3],
# rx_filters, rx_reserved[3].
ETHTOOL_TS_INFO = struct.Struct("<IIiI12xI12x")
# What ethtool_op_get_ts_info reports: software timestamps only (SOF_TIMESTAMPING_TX_SOFTWARE
# | RX_SOFTWARE | SOFTWARE), no PTP clock.
SOF_SOFTWARE_ONLY = 0x2 | 0x8 | 0x10

SIOCGIFS = frozenset((SIOCGIFCONF, SIOCGIFNAME, SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFDSTADDR,
                      SIOCGIFBRDADDR, SIOCGIFNETMASK, SIOCGIFMETRIC, SIOCGIFMTU, SIOCGIFHWADDR,
                      SIOCGIFINDEX, SIOCGIFTXQLEN, SIOCETHTOOL))


def _netmask(prefix: int) -> bytes:
    return ((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF).to_bytes(4, "big")


def _sin(ip: bytes) -> bytes:
    return encode(AF_INET, ip, 0)


def interface_ioctl(t: Task, ifaces: list[Interface], cmd: int, arg: int) -> int:
    """The SIOCGIF* requests (read-only).  Linux: dev_ioctl, dev_ifconf, devinet_ioctl.
    ENOTTY for other requests, so the caller can try its own."""
    if cmd == SIOCGIFCONF:
        ifc_len, buf = IFCONF.unpack(t.copy_in(arg, IFCONF.size))
        out = b""
        for i in ifaces:
            for ip, _ in i.addrs4:
                out += i.name.ljust(IFNAMSIZ, b"\0") + _sin(ip) + b"\0" * 8
        if buf:
            if ifc_len < 0:
                raise SyscallError(Errno.EINVAL)
            n = (min(ifc_len, len(out)) // IFREQ_SIZE) * IFREQ_SIZE
            if n:
                t.copy_out(buf, out[:n])
            t.copy_out(arg, struct.pack("<i", n))
        else:
            t.copy_out(arg, struct.pack("<i", len(out)))
        return 0
    if cmd not in (SIOCGIFNAME, SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFDSTADDR, SIOCGIFBRDADDR,
                   SIOCGIFNETMASK, SIOCGIFMETRIC, SIOCGIFMTU, SIOCGIFHWADDR, SIOCGIFINDEX,
                   SIOCGIFTXQLEN, SIOCETHTOOL):
        raise SyscallError(Errno.ENOTTY)
    req = bytearray(t.copy_in(arg, IFREQ_SIZE))
    if cmd == SIOCGIFNAME:
        (index,) = struct.unpack_from("<i", req, IFNAMSIZ)
        for i in ifaces:
            if i.index == index:
                req[:IFNAMSIZ] = i.name.ljust(IFNAMSIZ, b"\0")
                t.copy_out(arg, bytes(req))
                return 0
        raise SyscallError(Errno.ENODEV)
    name = bytes(req[:IFNAMSIZ]).split(b"\0", 1)[0]
    dev = next((i for i in ifaces if i.name == name), None)
    if dev is None:
        raise SyscallError(Errno.ENODEV)
    if cmd == SIOCETHTOOL:
        return _ethtool(t, struct.unpack_from("<Q", req, IFNAMSIZ)[0])
    body: bytes
    if cmd == SIOCGIFFLAGS:
        body = struct.pack("<H", dev.flags & 0xFFFF)
    elif cmd == SIOCGIFINDEX:
        body = struct.pack("<i", dev.index)
    elif cmd == SIOCGIFMTU:
        body = struct.pack("<i", dev.mtu)
    elif cmd == SIOCGIFMETRIC:
        body = struct.pack("<i", 0)
    elif cmd == SIOCGIFTXQLEN:
        body = struct.pack("<i", dev.txqlen)
    elif cmd == SIOCGIFHWADDR:
        body = struct.pack("<H", dev.hwtype) + dev.hwaddr.ljust(14, b"\0")
    else:
        if not dev.addrs4:
            raise SyscallError(Errno.EADDRNOTAVAIL)
        ip, prefix = dev.addrs4[0]
        if cmd == SIOCGIFNETMASK:
            body = _sin(_netmask(prefix))
        elif cmd == SIOCGIFBRDADDR:
            body = _sin(INADDR_ANY)
        else:
            body = _sin(ip)
    req[IFNAMSIZ:IFNAMSIZ + len(body)] = body
    t.copy_out(arg, bytes(req))
    return 0


def _ethtool(t: Task, data: int) -> int:
    """SIOCETHTOOL (dev_ethtool): only ETHTOOL_GET_TS_INFO, answered as
    ethtool_op_get_ts_info answers for lo and veth; every other command is EOPNOTSUPP,
    as for a device whose driver lacks it."""
    (cmd,) = struct.unpack("<I", t.copy_in(data, 4))
    if cmd != ETHTOOL_GET_TS_INFO:
        raise SyscallError(Errno.EOPNOTSUPP)
    t.copy_out(data, ETHTOOL_TS_INFO.pack(cmd, SOF_SOFTWARE_ONLY, -1, 0, 0))
    return 0


__all__ = ["Addr", "Interface", "Route", "SIOCGIFS", "loopback_routes", "SIN6_LEN_RFC2133",
           "any_addr", "decode", "encode",
           "interface_ioctl", "is_any", "is_mapped", "is_v4", "loopback", "raw_family",
           "text", "unmap"]
