"""NETLINK_ROUTE: the stack's interfaces, addresses and routes as rtnetlink
describes them.  Linux: net/core/rtnetlink.c, net/ipv4/devinet.c,
net/ipv6/addrconf.c, net/ipv4/fib_frontend.c.  gVisor: pkg/sentry/socket/netlink/route.

Answers RTM_GETLINK, RTM_GETADDR and RTM_GETROUTE (dumps and single
requests) from the Network's stack (netstack's interfaces, or hostinet's snapshot
of the host), so getifaddrs(3), if_nameindex(3), `ip link`, `ip addr` and
`ip route` work.  Changes need CAP_NET_ADMIN over the socket's namespace
(rtnetlink_rcv_msg's netlink_net_capable) and are made to the namespace's
netstack: addresses and routes by route_change.py, links by route_link.py, rules
here; each change is announced to the sockets in its RTNLGRP group.  Under
--network=host nothing can be changed (EOPNOTSUPP).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_NET_ADMIN
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import IFF_LOOPBACK
from pyvisor.sentry.socket.common import AF_INET, AF_INET6, AF_UNSPEC
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.netlink import (NLM_F_ACK, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
                                           NLMSG_MIN_TYPE, NetlinkSocket, messages, nlmsg, rta)

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket import InetStack
    from pyvisor.sentry.socket.inet import Interface, Route

# From <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>.
RTM_NEWLINK, RTM_GETLINK, RTM_SETLINK = 16, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_MAX = 123
RTNLGRP_LINK = 1
IFLA_LINK, IFLA_LINKINFO, IFLA_INFO_KIND = 5, 18, 1
IFINFOMSG = struct.Struct("<BxHiII")        # family, type, index, flags, change
IFADDRMSG = struct.Struct("<BBBBi")         # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("<BBBBBBBBI")   # family dst_len src_len tos table proto scope type flags
IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU, IFLA_QDISC = 1, 2, 3, 4, 6
IFLA_STATS, IFLA_TXQLEN, IFLA_OPERSTATE, IFLA_LINKMODE, IFLA_STATS64 = 7, 13, 16, 17, 23
IFLA_GROUP, IFLA_PROMISCUITY, IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES, IFLA_CARRIER = \
    27, 30, 31, 32, 33
IFLA_MIN_MTU, IFLA_MAX_MTU = 50, 51
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 4, 6, 8
IFA_RT_PRIORITY, IFA_PROTO = 9, 11
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RTA_PREF = 20
RT_TABLE_DEFAULT, RT_TABLE_MAIN, RT_TABLE_LOCAL = 253, 254, 255
RTM_DELLINK, RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 17, 32, 33, 34
RT_TABLE_COMPAT = 252
FRA_DST, FRA_SRC = 1, 2
RTM_F_CLONED, RTM_F_LOOKUP_TABLE, RTCF_LOCAL = 0x200, 0x1000, 0x80000000
RTA_UID = 25
RTNL_FAMILY_IPMR, RTNL_FAMILY_IP6MR = 128, 129
FIB_RULE_HDR = struct.Struct("<BBBBBBBBI")  # family dst/src_len tos table res1 res2 action flags
FR_ACT_TO_TBL = 1
FRA_PRIORITY, FRA_SUPPRESS_PREFIXLEN, FRA_TABLE, FRA_PROTOCOL = 6, 14, 15, 21
IFF_UP = 1
RTN_UNICAST, RTN_LOCAL = 1, 2
RTPROT_KERNEL = 2
IF_OPER_UP, IF_OPER_UNKNOWN = 6, 0


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
    body += rta(IFLA_MIN_MTU, struct.pack("<I", 0 if i.flags & IFF_LOOPBACK or
                                          i.kind == b"dummy" else 68))
    body += rta(IFLA_MAX_MTU, struct.pack("<I", 65535 if i.kind in (b"veth", b"bridge")
                                          else 0))
    body += rta(IFLA_GROUP, struct.pack("<I", 0))
    body += rta(IFLA_PROMISCUITY, struct.pack("<I", 0))
    body += rta(IFLA_NUM_TX_QUEUES, struct.pack("<I", 1))
    body += rta(IFLA_NUM_RX_QUEUES, struct.pack("<I", 1))
    body += rta(IFLA_CARRIER, bytes([1 if up else 0]))
    body += rta(IFLA_QDISC, b"noqueue\0" if up else b"noop\0")
    if i.peer_index and i.peer_index != i.index:
        body += rta(IFLA_LINK, struct.pack("<I", i.peer_index))
    if i.kind:
        body += rta(IFLA_LINKINFO, rta(IFLA_INFO_KIND, i.kind))
    body += rta(IFLA_ADDRESS, i.hwaddr)
    body += rta(IFLA_BROADCAST, i.hwaddr if i.flags & IFF_LOOPBACK else b"\xff" * 6)
    body += rta(IFLA_STATS, struct.pack("<24I", *[v & 0xFFFFFFFF for v in stats]))
    body += rta(IFLA_STATS64, struct.pack("<24Q", *stats))
    return body


def addr4_body(i: Interface, ip: bytes, prefix: int) -> bytes:
    """inet_fill_ifaddr for one IPv4 address of `i`."""
    from pyvisor.sentry.socket.netstack.devinet import info_of
    loop = bool(i.flags & IFF_LOOPBACK)
    info = info_of(i, ip, prefix)
    flags = info.flags | IFA_F_PERMANENT
    body = IFADDRMSG.pack(AF_INET, prefix, flags & 0xFF, info.scope, i.index)
    body += rta(IFA_ADDRESS, info.peer or ip) + rta(IFA_LOCAL, ip)
    if (ip, prefix) in i.addr_info:
        if info.broadcast:
            body += rta(IFA_BROADCAST, info.broadcast)
    elif not loop and prefix < 31:                  # as the namespace had it at boot
        host = int.from_bytes(ip, "big") | ((1 << (32 - prefix)) - 1)
        body += rta(IFA_BROADCAST, host.to_bytes(4, "big"))
    body += rta(IFA_LABEL, (info.label or i.name) + b"\0")
    body += rta(IFA_FLAGS, struct.pack("<I", flags))
    if info.metric:
        body += rta(IFA_RT_PRIORITY, struct.pack("<I", info.metric))
    if info.proto:
        body += rta(IFA_PROTO, bytes([info.proto]))
    return body + _CACHEINFO


def addr6_body(i: Interface, ip: bytes, prefix: int) -> bytes:
    """inet6_fill_ifaddr for one IPv6 address of `i`."""
    from pyvisor.sentry.socket.netstack.devinet import info_of
    info = info_of(i, ip, prefix)
    flags = info.flags | IFA_F_PERMANENT
    body = IFADDRMSG.pack(AF_INET6, prefix, flags & 0xFF, info.scope, i.index)
    if info.peer:
        body += rta(IFA_LOCAL, ip) + rta(IFA_ADDRESS, info.peer)
    else:
        body += rta(IFA_ADDRESS, ip)
    body += rta(IFA_FLAGS, struct.pack("<I", flags)) + _CACHEINFO
    if info.metric:
        body += rta(IFA_RT_PRIORITY, struct.pack("<I", info.metric))
    if info.proto:
        body += rta(IFA_PROTO, bytes([info.proto]))
    return body


_CACHEINFO = rta(IFA_CACHEINFO, struct.pack("<IIII", 0xFFFFFFFF, 0xFFFFFFFF, 0, 0))


def addr_bodies(i: Interface, family: int) -> list[bytes]:
    """struct ifaddrmsg + attributes for each address of an interface (inet_fill_ifaddr,
    inet6_fill_ifaddr)."""
    out = []
    if family in (AF_UNSPEC, AF_INET):
        out += [addr4_body(i, ip, prefix) for ip, prefix in i.addrs4]
    if family in (AF_UNSPEC, AF_INET6):
        out += [addr6_body(i, ip, prefix) for ip, prefix in i.addrs6]
    return out


def route_body(r: Route) -> bytes:
    """fib_dump_info / rt6_fill_node for one route."""
    body = RTMSG.pack(r.family, r.prefix, 0, r.tos, r.table if r.table < 256 else
                      RT_TABLE_COMPAT, r.proto, r.scope, r.rtype, 0)
    body += rta(RTA_TABLE, struct.pack("<I", r.table))
    if r.prefix:
        body += rta(RTA_DST, r.dst)
    if r.prefsrc:
        body += rta(RTA_PREFSRC, r.prefsrc)
    if r.gateway:
        body += rta(RTA_GATEWAY, r.gateway)
    if r.family == AF_INET6 or r.metric:
        body += rta(RTA_PRIORITY, struct.pack("<I", r.metric))
    if r.oif:
        body += rta(RTA_OIF, struct.pack("<i", r.oif))
    if r.family == AF_INET6:
        body += rta(RTA_PREF, b"\0")          # ICMPV6_ROUTER_PREF_MEDIUM
    return body


def route_bodies(stack: InetStack, family: int) -> list[bytes]:
    """struct rtmsg + attributes for each route (fib_dump_info, rt6_fill_node)."""
    return [route_body(r) for r in stack.routes() if family in (AF_UNSPEC, r.family)]


class RouteProtocol:
    """rtnetlink_rcv: each request in the buffer is answered in turn."""

    nonroot_groups = True            # NL_CFG_F_NONROOT_RECV
    nonroot_send = False             # NL_CFG_F_NONROOT_SEND not set
    ngroups = 36                     # RTNLGRP_MAX

    def receive(self, sock: NetlinkSocket, t: Task | None, data: bytes) -> None:
        for mtype, flags, seq, _pid, body, whole in messages(data):
            # netlink_rcv_skb: replies and control messages are only acknowledged.
            if not flags & NLM_F_REQUEST or mtype < NLMSG_MIN_TYPE:
                if flags & NLM_F_ACK:
                    sock._error(seq, 0, whole)
                continue
            self._handle(sock, t, mtype, flags, seq, body, whole)

    def released(self, sock: NetlinkSocket) -> None:
        pass

    def _handle(self, sock: NetlinkSocket, t: Task | None, mtype: int, flags: int, seq: int,
                body: bytes, request: bytes) -> None:
        """rtnetlink_rcv_msg: an empty message is ignored; anything but a GET needs
        CAP_NET_ADMIN over the socket's namespace; then the family's handler."""
        if mtype > RTM_MAX:
            sock._error(seq, Errno.EOPNOTSUPP, request)
            return
        if not body:
            if flags & NLM_F_ACK:
                sock._error(seq, 0, request)
            return
        if mtype & 3 != 2 and not sock.capable(t, CAP_NET_ADMIN):
            sock._error(seq, Errno.EPERM, request)
            return
        if mtype & 3 == 2:
            self._get(sock, t, mtype, flags, seq, body, request)
            return
        err = 0
        try:
            notices = self._change(sock, t, mtype, flags, body)
        except SyscallError as e:
            err, notices = e.errno, []
        if err or flags & NLM_F_ACK:
            sock._error(seq, err, request)
        for group, ntype, nbody in notices:
            # Link events come from the device (rtmsg_ifinfo: pid 0, seq 0); address and
            # route events name the request that made them (rtmsg_ifa, rtmsg_fib).
            if group == RTNLGRP_LINK:
                self.announce(sock, group, ntype, nbody)
            else:
                self.announce(sock, group, ntype, nbody, seq, sock.portid)

    @staticmethod
    def announce(sock: NetlinkSocket, group: int, mtype: int, body: bytes, seq: int = 0,
                 portid: int = 0) -> None:
        """rtnl_notify: one message to the namespace's sockets in `group`."""
        from pyvisor.sentry.socket.netlink import NETLINK_ROUTE, notify
        notify(sock.net, NETLINK_ROUTE, group, [nlmsg(mtype, 0, seq, portid, body)])

    def _change(self, sock: NetlinkSocket, t: Task | None, mtype: int, flags: int,
                body: bytes) -> list[tuple[int, int, bytes]]:
        """The NEW/DEL/SET requests, each raising Linux's errno; returns notifications."""
        family = body[0]
        if mtype in (RTM_NEWRULE, RTM_DELRULE):
            if mtype == RTM_NEWRULE:
                new_rule(ruleset_of(sock), body, flags)
            else:
                del_rule(ruleset_of(sock), body)
            return []
        if mtype in (RTM_NEWLINK, RTM_DELLINK, RTM_SETLINK):
            from pyvisor.sentry.socket.netlink import route_link
            return route_link.change_link(sock, t, mtype, flags, body)
        if mtype in (RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE):
            if family not in (AF_INET, AF_INET6):
                raise SyscallError(Errno.EOPNOTSUPP)
            from pyvisor.sentry.socket.netstack import Stack
            if not isinstance(sock.stack, Stack):
                raise SyscallError(Errno.EOPNOTSUPP)   # --network=host: the host's own
            from pyvisor.sentry.socket.netlink import route_change
            if mtype in (RTM_NEWADDR, RTM_DELADDR):
                return route_change.change_addr(sock.stack, mtype, flags, body)
            return route_change.change_route(sock.stack, mtype, flags, body)
        raise SyscallError(Errno.EOPNOTSUPP)

    def _get(self, sock: NetlinkSocket, t: Task | None, mtype: int, flags: int, seq: int,
             body: bytes, request: bytes) -> None:
        family = body[0] if body else AF_UNSPEC
        stack = sock.stack
        dump = bool(flags & NLM_F_DUMP)           # NLM_F_ROOT or NLM_F_MATCH
        if mtype == RTM_GETLINK:
            links = stack.interfaces()
            if not dump and len(body) >= IFINFOMSG.size:
                index = IFINFOMSG.unpack_from(body)[2]
                name = _attr(body[IFINFOMSG.size:], IFLA_IFNAME)
                match = [i for i in links if (index and i.index == index) or
                         (not index and name is not None and i.name == name.rstrip(b"\0"))]
                if not match:
                    sock._error(seq, Errno.ENODEV, request)
                    return
                sock._queue([nlmsg(RTM_NEWLINK, 0, seq, sock.portid, link_body(match[0]))])
                if flags & NLM_F_ACK:
                    sock._error(seq, 0, request)
                return
            sock._dump(RTM_NEWLINK, seq, [link_body(i) for i in links])
        elif mtype == RTM_GETADDR:
            sock._dump(RTM_NEWADDR, seq, [b for i in stack.interfaces()
                                          for b in addr_bodies(i, family)])
        elif mtype == RTM_GETROUTE:
            if dump:
                sock._dump(RTM_NEWROUTE, seq, route_bodies(stack, family))
                return
            try:
                reply = route_get(stack, body, t.creds.uid if t is not None else 0)
            except SyscallError as e:
                sock._error(seq, e.errno, request)
                return
            sock._queue([nlmsg(RTM_NEWROUTE, 0, seq, sock.portid, reply)])
            if flags & NLM_F_ACK:
                sock._error(seq, 0, request)
        elif mtype == RTM_GETRULE:
            if not dump:
                sock._error(seq, Errno.EOPNOTSUPP, request)
                return
            sock._dump(RTM_NEWRULE, seq, rule_bodies(ruleset_of(sock), family),
                       done_apart=False)
        else:
            sock._error(seq, Errno.EOPNOTSUPP, request)


def _attr(attrs: bytes, want: int) -> bytes | None:
    off = 0
    while len(attrs) - off >= 4:
        ln, atype = struct.unpack_from("<HH", attrs, off)
        if ln < 4 or off + ln > len(attrs):
            return None
        if atype == want:
            return attrs[off + 4:off + ln]
        off += (ln + 3) & ~3
    return None


def _attrs(attrs: bytes) -> list[tuple[int, bytes]]:
    out = []
    off = 0
    while len(attrs) - off >= 4:
        ln, atype = struct.unpack_from("<HH", attrs, off)
        if ln < 4 or off + ln > len(attrs):
            break
        out.append((atype & 0x3FFF, attrs[off + 4:off + ln]))
        off += (ln + 3) & ~3
    return out


def _matches(dst: bytes, net: bytes, prefix: int) -> bool:
    want = int.from_bytes(dst, "big") >> (len(dst) * 8 - prefix) if prefix else 0
    have = int.from_bytes(net, "big") >> (len(net) * 8 - prefix) if prefix else 0
    return want == have


def route_get(stack: InetStack, body: bytes, uid: int) -> bytes:
    """inet_rtm_getroute / inet6_rtm_getroute: the route a packet to RTA_DST takes, as
    rt_fill_info describes it.  The local table is searched first, then main, as the
    default rules order them; the longest prefix wins."""
    if len(body) < RTMSG.size:
        raise SyscallError(Errno.EINVAL)
    family, _dl, _sl, tos, _table, _proto, _scope, _type, rflags = RTMSG.unpack_from(body)
    if family not in (AF_INET, AF_INET6):
        raise SyscallError(Errno.EAFNOSUPPORT)
    size = 4 if family == AF_INET else 16
    dst = _attr(body[RTMSG.size:], RTA_DST) or bytes(size)
    if len(dst) < size:
        raise SyscallError(Errno.EINVAL)
    dst = dst[:size]
    best = None
    for table in (RT_TABLE_LOCAL, RT_TABLE_MAIN):
        cands = [r for r in stack.routes() if r.family == family and r.table == table and
                 r.rtype in (RTN_UNICAST, RTN_LOCAL) and _matches(dst, r.dst, r.prefix)]
        if cands:
            best = max(cands, key=lambda r: (r.prefix, -r.metric))
            break
    if best is None:
        raise SyscallError(Errno.ENETUNREACH)
    # Without rules of its own a namespace's local table is merged into main
    # (fib_unmerge), so even RTM_F_LOOKUP_TABLE reports main.
    table = RT_TABLE_MAIN
    prefsrc = best.prefsrc or (dst if best.rtype == RTN_LOCAL else b"")
    if not prefsrc and family == AF_INET:
        from pyvisor.sentry.socket.netstack import Stack, devinet
        if isinstance(stack, Stack):
            src = devinet.select_addr(stack, stack.iface_by_index(best.oif),
                                      best.gateway or dst, best.scope)
            prefsrc = src if src != bytes(4) else b""
    lo = best.rtype == RTN_LOCAL or any(                 # __mkroute_output: out through lo
        i.index == best.oif and i.flags & IFF_LOOPBACK for i in stack.interfaces())
    rt_flags = RTCF_LOCAL if lo and family == AF_INET else 0
    out = RTMSG.pack(family, size * 8, 0, tos, table, 0, RT_SCOPE_UNIVERSE, best.rtype,
                     rt_flags | RTM_F_CLONED)
    out += rta(RTA_TABLE, struct.pack("<I", table)) + rta(RTA_DST, dst)
    out += rta(RTA_OIF, struct.pack("<i", best.oif))
    if best.gateway:
        out += rta(RTA_GATEWAY, best.gateway)
    if prefsrc and family == AF_INET:
        out += rta(RTA_PREFSRC, prefsrc)
    return out + rta(RTA_UID, struct.pack("<I", uid))


# The rules a fresh namespace has (fib_default_rules_init, and those of the multicast
# routing families): (family, table, priority).
DEFAULT_RULES = ((AF_INET, RT_TABLE_LOCAL, 0), (AF_INET, RT_TABLE_MAIN, 32766),
                 (AF_INET, RT_TABLE_DEFAULT, 32767), (RTNL_FAMILY_IPMR, RT_TABLE_DEFAULT, 32767),
                 (RTNL_FAMILY_IP6MR, RT_TABLE_MAIN, 32767), (AF_INET6, RT_TABLE_LOCAL, 0),
                 (AF_INET6, RT_TABLE_MAIN, 32766))
RULE_FAMILIES = (AF_INET, RTNL_FAMILY_IPMR, RTNL_FAMILY_IP6MR, AF_INET6)   # dump order
RULE_ATTRS = frozenset((FRA_DST, FRA_SRC, FRA_PRIORITY, FRA_SUPPRESS_PREFIXLEN, FRA_TABLE,
                        FRA_PROTOCOL))


@dataclass(eq=False)
class Rule:
    """A policy routing rule.  Linux: struct fib_rule (+ fib4_rule/fib6_rule)."""

    family: int
    table: int
    pref: int
    action: int = FR_ACT_TO_TBL
    proto: int = 0
    dst: bytes = b""
    dst_len: int = 0
    src: bytes = b""
    src_len: int = 0
    tos: int = 0
    flags: int = 0
    suppress_prefixlen: int = -1

    def key(self) -> tuple[object, ...]:
        return (self.family, self.action, self.table, self.pref, self.dst, self.dst_len,
                self.src, self.src_len, self.tos, self.flags)


class RuleSet:
    """One namespace's rules, in priority order, and its routing tables' ids.
    Linux: net->rules_ops[family]->rules_list."""

    def __init__(self) -> None:
        self.rules = [Rule(f, t, p, proto=RTPROT_KERNEL) for f, t, p in DEFAULT_RULES]
        self.tables = {RT_TABLE_LOCAL, RT_TABLE_MAIN, RT_TABLE_DEFAULT}

    def of(self, family: int) -> list[Rule]:
        return [r for r in self.rules if r.family == family]


def ruleset_of(sock: NetlinkSocket) -> RuleSet:
    net = sock.net
    if net is None:
        return RuleSet()
    if net.fib_rules is None:
        net.fib_rules = RuleSet()
    assert isinstance(net.fib_rules, RuleSet)
    return net.fib_rules


def _parse_rule(body: bytes) -> tuple[Rule, dict[int, bytes]]:
    """fib_nl2rule's reading of a request (pref and table defaults left to the caller)."""
    if len(body) < FIB_RULE_HDR.size:
        raise SyscallError(Errno.EINVAL)
    family, dst_len, src_len, tos, table, _r1, _r2, action, flags = \
        FIB_RULE_HDR.unpack_from(body)
    if family not in RULE_FAMILIES:
        raise SyscallError(Errno.EAFNOSUPPORT)
    attrs = dict(_attrs(body[FIB_RULE_HDR.size:]))
    if any(t not in RULE_ATTRS for t in attrs if t):
        raise SyscallError(Errno.EOPNOTSUPP)       # interfaces, marks, ports: not modelled
    size = 16 if family in (AF_INET6, RTNL_FAMILY_IP6MR) else 4
    if dst_len > size * 8 or src_len > size * 8:
        raise SyscallError(Errno.EINVAL)
    rule = Rule(family, struct.unpack("<I", attrs[FRA_TABLE][:4])[0]
                if len(attrs.get(FRA_TABLE, b"")) >= 4 else table, 0, action, tos=tos,
                flags=flags, dst_len=dst_len, src_len=src_len)
    for atype, field in ((FRA_DST, "dst"), (FRA_SRC, "src")):
        if atype in attrs:
            if len(attrs[atype]) < size:
                raise SyscallError(Errno.EINVAL)
            setattr(rule, field, attrs[atype][:size])
    if FRA_PROTOCOL in attrs and attrs[FRA_PROTOCOL]:
        rule.proto = attrs[FRA_PROTOCOL][0]
    if len(attrs.get(FRA_SUPPRESS_PREFIXLEN, b"")) >= 4:
        rule.suppress_prefixlen = struct.unpack("<i", attrs[FRA_SUPPRESS_PREFIXLEN][:4])[0]
    return rule, attrs


def new_rule(rules: RuleSet, body: bytes, flags: int) -> None:
    """fib_nl_newrule."""
    rule, attrs = _parse_rule(body)
    same = rules.of(rule.family)
    if FRA_PRIORITY in attrs and len(attrs[FRA_PRIORITY]) >= 4:
        rule.pref = struct.unpack("<I", attrs[FRA_PRIORITY][:4])[0]
    elif len(same) >= 2 and same[1].pref:
        rule.pref = same[1].pref - 1               # fib_default_rule_pref
    if rule.table == 0 and rule.action == FR_ACT_TO_TBL:
        rule.table = next(i for i in range(1, 1 << 32) if i not in rules.tables)
        rules.tables.add(rule.table)                # fib_empty_table makes one
    if flags & NLM_F_EXCL and any(r.key() == rule.key() for r in same):
        raise SyscallError(Errno.EEXIST)
    at = len(rules.rules)
    for i, r in enumerate(rules.rules):
        if r.family == rule.family and r.pref > rule.pref:
            at = i
            break
    else:
        last = [i for i, r in enumerate(rules.rules) if r.family == rule.family]
        at = last[-1] + 1 if last else len(rules.rules)
    rules.rules.insert(at, rule)


def del_rule(rules: RuleSet, body: bytes) -> None:
    """fib_nl_delrule: the first rule matching what the request specifies."""
    want, attrs = _parse_rule(body)
    has_pref = FRA_PRIORITY in attrs and len(attrs[FRA_PRIORITY]) >= 4
    pref = struct.unpack("<I", attrs[FRA_PRIORITY][:4])[0] if has_pref else 0
    for r in rules.of(want.family):
        if (want.action and r.action != want.action) or (want.table and r.table != want.table) \
                or (has_pref and r.pref != pref) or (want.tos and r.tos != want.tos) or \
                (want.dst_len and (r.dst_len, r.dst) != (want.dst_len, want.dst)) or \
                (want.src_len and (r.src_len, r.src) != (want.src_len, want.src)):
            continue
        rules.rules.remove(r)
        return
    raise SyscallError(Errno.ENOENT)


def rule_bodies(rules: RuleSet, family: int) -> list[bytes]:
    """fib_nl_fill_rule for each rule of `family` (all for AF_UNSPEC)."""
    out = []
    for fam in RULE_FAMILIES:
        if family not in (AF_UNSPEC, fam):
            continue
        for r in rules.of(fam):
            table = r.table if r.table < 256 else RT_TABLE_COMPAT
            body = FIB_RULE_HDR.pack(fam, r.dst_len, r.src_len, r.tos, table, 0, 0, r.action,
                                     r.flags)
            body += rta(FRA_TABLE, struct.pack("<I", r.table))
            body += rta(FRA_SUPPRESS_PREFIXLEN, struct.pack("<i", r.suppress_prefixlen))
            body += rta(FRA_PROTOCOL, bytes([r.proto]))
            if r.pref:
                body += rta(FRA_PRIORITY, struct.pack("<I", r.pref))
            if r.dst_len:
                body += rta(FRA_DST, r.dst)
            if r.src_len:
                body += rta(FRA_SRC, r.src)
            out.append(body)
    return out
