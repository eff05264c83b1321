"""NETLINK_ROUTE sockets: the sandbox's interfaces, addresses and routes as
rtnetlink describes them.  Linux: net/netlink/af_netlink.c, net/core/rtnetlink.c,
net/ipv4/devinet.c, net/ipv6/addrconf.c, net/ipv4/fib_frontend.c.
gVisor: pkg/sentry/socket/netlink, netlink/route.

Answers RTM_GETLINK, RTM_GETADDR and RTM_GETROUTE (dumps and single
requests) from the Network's stack (netstack's lo, or hostinet's snapshot of
the host), so getifaddrs(3), if_nameindex(3), `ip link`, `ip addr` and
`ip route` work.  Changes (RTM_NEW*/RTM_DEL*) are refused with EPERM, as for
a process without CAP_NET_ADMIN.  A request is answered at once: the replies
are queued as datagrams on the socket (several messages per datagram, a
dump ending with NLMSG_DONE), read with recvmsg(2) as Linux delivers them.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import collections
import struct
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import IFF_LOOPBACK
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.waitqueue import EVENT_IN, EVENT_OUT, WaitQueue
from pyvisor.sentry.socket.common import (AF_INET, AF_INET6, AF_NETLINK, AF_UNSPEC,
                                          MSG_DONTWAIT, MSG_PEEK, MSG_TRUNC, SOCK_DGRAM,
                                          SOCK_RAW, Control, Received, Socket, deadline_of,
                                          new_socket_file, wait)

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket import InetStack
    from pyvisor.sentry.socket.inet import Interface
    from pyvisor.sentry.vfs.file import FileDescription

# From <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>.
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NLMSGHDR = struct.Struct("<IHHII")          # len, type, flags, seq, pid
SOCKADDR_NL = struct.Struct("<HHII")        # family, pad, pid, groups
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFINFOMSG = struct.Struct("<BxHiII")        # family, type, index, flags, change
IFADDRMSG = struct.Struct("<BBBBi")         # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("<BBBBBBBBI")   # family dst_len src_len tos table proto scope type flags
IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU, IFLA_QDISC = 1, 2, 3, 4, 6
IFLA_STATS, IFLA_TXQLEN, IFLA_OPERSTATE, IFLA_LINKMODE, IFLA_STATS64 = 7, 13, 16, 17, 23
IFLA_GROUP, IFLA_PROMISCUITY, IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES, IFLA_CARRIER = \
    27, 30, 31, 32, 33
IFLA_MIN_MTU, IFLA_MAX_MTU = 50, 51
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 4, 6, 8
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RTA_PREF = 20
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
RTN_UNICAST, RTN_LOCAL = 1, 2
RTPROT_KERNEL = 2
IF_OPER_UP, IF_OPER_UNKNOWN = 6, 0
NETLINK_OPTIONS = frozenset((1, 2, 3, 5, 8, 10, 11, 12))    # stored only
DUMP_CHUNK = 16384                                         # bytes of messages per datagram
RCVBUF_MAX_QUEUED = 1 << 20


def _align(n: int) -> int:
    return (n + 3) & ~3


def rta(atype: int, data: bytes) -> bytes:
    """One route attribute, padded."""
    ln = 4 + len(data)
    return struct.pack("<HH", ln, atype) + data + b"\0" * (_align(ln) - ln)


def nlmsg(mtype: int, flags: int, seq: int, pid: int, body: bytes) -> bytes:
    ln = NLMSGHDR.size + len(body)
    return NLMSGHDR.pack(ln, mtype, flags, seq, pid) + body + b"\0" * (_align(ln) - ln)


def link_body(i: Interface) -> bytes:
    """struct ifinfomsg + attributes for one interface (rtnl_fill_ifinfo)."""
    stats = [i.rx_packets, i.tx_packets, i.rx_bytes, i.tx_bytes] + [0] * 20
    up = i.flags & 1
    body = IFINFOMSG.pack(AF_UNSPEC, i.hwtype, i.index, i.flags, 0)
    body += rta(IFLA_IFNAME, i.name + b"\0")
    body += rta(IFLA_TXQLEN, struct.pack("<I", i.txqlen))
    body += rta(IFLA_OPERSTATE, bytes([IF_OPER_UNKNOWN if i.flags & IFF_LOOPBACK else
                                       (IF_OPER_UP if up else 2)]))
    body += rta(IFLA_LINKMODE, b"\0")
    body += rta(IFLA_MTU, struct.pack("<I", i.mtu))
    body += rta(IFLA_MIN_MTU, struct.pack("<I", 0 if i.flags & IFF_LOOPBACK else 68))
    body += rta(IFLA_MAX_MTU, struct.pack("<I", 0))
    body += rta(IFLA_GROUP, struct.pack("<I", 0))
    body += rta(IFLA_PROMISCUITY, struct.pack("<I", 0))
    body += rta(IFLA_NUM_TX_QUEUES, struct.pack("<I", 1))
    body += rta(IFLA_NUM_RX_QUEUES, struct.pack("<I", 1))
    body += rta(IFLA_CARRIER, bytes([1 if up else 0]))
    body += rta(IFLA_QDISC, b"noqueue\0")
    body += rta(IFLA_ADDRESS, i.hwaddr)
    body += rta(IFLA_BROADCAST, i.hwaddr if i.flags & IFF_LOOPBACK else b"\xff" * 6)
    body += rta(IFLA_STATS, struct.pack("<24I", *[v & 0xFFFFFFFF for v in stats]))
    body += rta(IFLA_STATS64, struct.pack("<24Q", *stats))
    return body


def addr_bodies(i: Interface, family: int) -> list[bytes]:
    """struct ifaddrmsg + attributes for each address of an interface (inet_fill_ifaddr,
    inet6_fill_ifaddr)."""
    out = []
    loop = bool(i.flags & IFF_LOOPBACK)
    cache = rta(IFA_CACHEINFO, struct.pack("<IIII", 0xFFFFFFFF, 0xFFFFFFFF, 0, 0))
    if family in (AF_UNSPEC, AF_INET):
        for ip, prefix in i.addrs4:
            scope = RT_SCOPE_HOST if loop else RT_SCOPE_UNIVERSE
            body = IFADDRMSG.pack(AF_INET, prefix, IFA_F_PERMANENT, scope, i.index)
            body += rta(IFA_ADDRESS, ip) + rta(IFA_LOCAL, ip)
            if not loop and prefix < 31:
                host = int.from_bytes(ip, "big") | ((1 << (32 - prefix)) - 1)
                body += rta(IFA_BROADCAST, host.to_bytes(4, "big"))
            body += rta(IFA_LABEL, i.name + b"\0")
            body += rta(IFA_FLAGS, struct.pack("<I", IFA_F_PERMANENT)) + cache
            out.append(body)
    if family in (AF_UNSPEC, AF_INET6):
        for ip, prefix in i.addrs6:
            scope = RT_SCOPE_HOST if loop else (RT_SCOPE_LINK if ip[:2] == b"\xfe\x80"
                                                else RT_SCOPE_UNIVERSE)
            body = IFADDRMSG.pack(AF_INET6, prefix, IFA_F_PERMANENT, scope, i.index)
            body += rta(IFA_ADDRESS, ip)
            body += rta(IFA_FLAGS, struct.pack("<I", IFA_F_PERMANENT)) + cache
            out.append(body)
    return out


def route_bodies(stack: InetStack, family: int) -> list[bytes]:
    """struct rtmsg + attributes for each route (fib_dump_info, rt6_fill_node)."""
    out = []
    for r in stack.routes():
        if family not in (AF_UNSPEC, r.family):
            continue
        body = RTMSG.pack(r.family, r.prefix, 0, 0, r.table, RTPROT_KERNEL, r.scope, r.rtype, 0)
        body += rta(RTA_TABLE, struct.pack("<I", r.table))
        if r.prefix:
            body += rta(RTA_DST, r.dst)
        if r.prefsrc:
            body += rta(RTA_PREFSRC, r.prefsrc)
        if r.gateway:
            body += rta(RTA_GATEWAY, r.gateway)
        if r.family == AF_INET6 or r.metric:
            body += rta(RTA_PRIORITY, struct.pack("<I", r.metric))
        body += rta(RTA_OIF, struct.pack("<i", r.oif))
        if r.family == AF_INET6:
            body += rta(RTA_PREF, b"\0")          # ICMPV6_ROUTER_PREF_MEDIUM
        out.append(body)
    return out


class NetlinkSocket(Socket):
    """An AF_NETLINK/NETLINK_ROUTE socket.  Linux: struct netlink_sock."""

    family = AF_NETLINK

    def __init__(self, stack: InetStack, stype: int, portid_hint: int) -> None:
        super().__init__(stype, NETLINK_ROUTE)
        self.stack = stack
        self.wq = WaitQueue()
        self.rcvq: collections.deque[bytes] = collections.deque()
        self.queued = 0
        self.portid = 0
        self.portid_hint = portid_hint
        self.nlopts: dict[int, int] = {}

    def _bind_auto(self) -> None:
        if not self.portid:
            self.portid = self.portid_hint

    # -- FileImpl ----------------------------------------------------------------------------

    def readiness(self, fd: FileDescription, mask: int) -> int:
        return ((EVENT_IN if self.rcvq else 0) | EVENT_OUT) & mask

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.wq

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        return self._recv(n, 0).data

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        return self._request(data)

    # -- names -------------------------------------------------------------------------------

    def bind(self, t: Task, addr: bytes) -> None:
        if len(addr) < SOCKADDR_NL.size:
            raise SyscallError(Errno.EINVAL)
        fam, _, pid, groups = SOCKADDR_NL.unpack_from(addr)
        if fam != AF_NETLINK:
            raise SyscallError(Errno.EINVAL)
        if groups and t.creds.euid != 0:
            raise SyscallError(Errno.EPERM)
        if pid and self.portid and pid != self.portid:
            raise SyscallError(Errno.EINVAL)
        self.portid = pid or self.portid or self.portid_hint

    async def connect(self, t: Task, f: FileDescription, addr: bytes) -> None:
        if len(addr) < 2:
            raise SyscallError(Errno.EINVAL)
        self._bind_auto()

    def getsockname(self, t: Task) -> bytes:
        return SOCKADDR_NL.pack(AF_NETLINK, 0, self.portid, 0)

    def getpeername(self, t: Task) -> bytes:
        return SOCKADDR_NL.pack(AF_NETLINK, 0, 0, 0)

    def shutdown(self, t: Task, how: int) -> None:
        raise SyscallError(Errno.EOPNOTSUPP)

    # -- requests ----------------------------------------------------------------------------

    async def sendmsg(self, t: Task, f: FileDescription, data: bytes, flags: int,
                      addr: bytes | None, control: Control) -> int:
        if addr:
            if len(addr) < SOCKADDR_NL.size or SOCKADDR_NL.unpack_from(addr)[0] != AF_NETLINK:
                raise SyscallError(Errno.EINVAL)
            if SOCKADDR_NL.unpack_from(addr)[2] != 0:
                raise SyscallError(Errno.ECONNREFUSED)     # only the kernel answers here
        return self._request(data)

    def _request(self, data: bytes) -> int:
        """netlink_rcv_skb: each message in the buffer is handled in turn."""
        self._bind_auto()
        off = 0
        while len(data) - off >= NLMSGHDR.size:
            ln, mtype, flags, seq, _pid = NLMSGHDR.unpack_from(data, off)
            if ln < NLMSGHDR.size or off + ln > len(data):
                break
            body = data[off + NLMSGHDR.size:off + ln]
            if flags & NLM_F_REQUEST:
                self._handle(mtype, flags, seq, body, data[off:off + ln])
            off += _align(ln)
        self.wq.notify(EVENT_IN)
        return len(data)

    def _error(self, seq: int, err: int, request: bytes) -> None:
        """An NLMSG_ERROR (err 0: the acknowledgement) quoting the request's header."""
        body = struct.pack("<i", -err) + request[:NLMSGHDR.size]
        self._queue([nlmsg(NLMSG_ERROR, 0x100 if err == 0 else 0, seq, self.portid, body)])

    def _handle(self, mtype: int, flags: int, seq: int, body: bytes, request: bytes) -> None:
        family = body[0] if body else AF_UNSPEC
        stack = self.stack
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        if mtype == RTM_GETLINK:
            links = stack.interfaces()
            if not dump and len(body) >= IFINFOMSG.size:
                index = IFINFOMSG.unpack_from(body)[2]
                name = _attr(body[IFINFOMSG.size:], IFLA_IFNAME)
                match = [i for i in links if (index and i.index == index) or
                         (not index and name is not None and i.name == name.rstrip(b"\0"))]
                if not match:
                    self._error(seq, Errno.ENODEV, request)
                    return
                self._queue([nlmsg(RTM_NEWLINK, 0, seq, self.portid, link_body(match[0]))])
                if flags & NLM_F_ACK:
                    self._error(seq, 0, request)
                return
            self._dump(RTM_NEWLINK, seq, [link_body(i) for i in links])
        elif mtype == RTM_GETADDR:
            self._dump(RTM_NEWADDR, seq, [b for i in stack.interfaces()
                                          for b in addr_bodies(i, family)])
        elif mtype == RTM_GETROUTE:
            if not dump:
                self._error(seq, Errno.EOPNOTSUPP, request)
                return
            self._dump(RTM_NEWROUTE, seq, route_bodies(stack, family))
        elif mtype in (16, 17, 19, 20, 21, 24, 25):       # RTM_NEW*/DEL*/SET*
            self._error(seq, Errno.EPERM, request)
        else:
            self._error(seq, Errno.EOPNOTSUPP, request)

    def _dump(self, mtype: int, seq: int, bodies: list[bytes]) -> None:
        msgs = [nlmsg(mtype, NLM_F_MULTI, seq, self.portid, b) for b in bodies]
        msgs.append(nlmsg(NLMSG_DONE, NLM_F_MULTI, seq, self.portid, struct.pack("<i", 0)))
        self._queue(msgs)

    def _queue(self, msgs: list[bytes]) -> None:
        """Packs messages into datagrams of at most DUMP_CHUNK bytes (netlink_dump)."""
        cur = b""
        for m in msgs:
            if cur and len(cur) + len(m) > DUMP_CHUNK:
                self._push(cur)
                cur = b""
            cur += m
        if cur:
            self._push(cur)

    def _push(self, dgram: bytes) -> None:
        if self.queued + len(dgram) > max(self.rcvbuf, RCVBUF_MAX_QUEUED):
            return                                   # dropped, as on an overrun
        self.rcvq.append(dgram)
        self.queued += len(dgram)

    # -- replies -----------------------------------------------------------------------------

    def _recv(self, n: int, flags: int) -> Received:
        if not self.rcvq:
            raise WouldBlock()
        d = self.rcvq[0]
        if not flags & MSG_PEEK:
            self.rcvq.popleft()
            self.queued -= len(d)
        data = d[:n]
        length = len(d) if flags & MSG_TRUNC else len(data)
        return Received(data, length, MSG_TRUNC if len(d) > n else 0,
                        SOCKADDR_NL.pack(AF_NETLINK, 0, 0, 0))

    async def recvmsg(self, t: Task, f: FileDescription, n: int, flags: int,
                      want_addr: bool) -> Received:
        deadline = deadline_of(t, self.rcvtimeo)
        while True:
            try:
                return self._recv(n, flags)
            except WouldBlock:
                if f.nonblocking or flags & MSG_DONTWAIT or self.rcvtimeo == 0:
                    raise
            await wait(t, self.wq, EVENT_IN, deadline, self.rcvtimeo is not None)

    # -- options -----------------------------------------------------------------------------

    def getsockopt(self, t: Task, level: int, name: int) -> bytes:
        if level == SOL_NETLINK:
            if name not in NETLINK_OPTIONS:
                raise SyscallError(Errno.ENOPROTOOPT)
            return struct.pack("<i", self.nlopts.get(name, 0))
        return super().getsockopt(t, level, name)

    def setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        if level == SOL_NETLINK:
            if name not in NETLINK_OPTIONS:
                raise SyscallError(Errno.ENOPROTOOPT)
            if len(optval) < 4:
                raise SyscallError(Errno.EINVAL)
            self.nlopts[name] = struct.unpack_from("<i", optval)[0]
            return
        super().setsockopt(t, level, name, optval)


def _attr(attrs: bytes, want: int) -> bytes | None:
    off = 0
    while len(attrs) - off >= 4:
        ln, atype = struct.unpack_from("<HH", attrs, off)
        if ln < 4 or off + ln > len(attrs):
            return None
        if atype == want:
            return attrs[off + 4:off + ln]
        off += _align(ln)
    return None


class NetlinkFamily:
    """The Family for AF_NETLINK: NETLINK_ROUTE only."""

    def __init__(self, stack: InetStack) -> None:
        self.stack = stack

    def socket(self, t: Task, family: int, stype: int, protocol: int, flags: int
               ) -> FileDescription:
        if stype not in (SOCK_RAW, SOCK_DGRAM):
            raise SyscallError(Errno.ESOCKTNOSUPPORT)
        if protocol != NETLINK_ROUTE:
            raise SyscallError(Errno.EPROTONOSUPPORT)
        s = NetlinkSocket(self.stack, stype, t.tg.tgid)
        return new_socket_file(s, flags, t.creds.fsuid, t.creds.fsgid)

    def socketpair(self, t: Task, family: int, stype: int, protocol: int, flags: int
                   ) -> tuple[FileDescription, FileDescription]:
        raise SyscallError(Errno.EOPNOTSUPP)
