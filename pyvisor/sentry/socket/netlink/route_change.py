"""NETLINK_ROUTE requests that change addresses and routes of the namespace's netstack:
RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE.  Linux: net/ipv4/devinet.c
(inet_rtm_newaddr, inet_rtm_deladdr), net/ipv6/addrconf.c (inet6_rtm_newaddr,
inet6_rtm_deladdr), net/ipv4/fib_frontend.c (inet_rtm_newroute, rtm_to_fib_config),
net/ipv4/fib_semantics.c (fib_create_info), net/ipv4/fib_trie.c (fib_table_insert,
fib_table_delete), net/ipv6/route.c (inet6_rtm_newroute, ip6_route_add, ip6_route_del).

Each handler raises SyscallError with Linux's errno for what Linux refuses, checked in
Linux's order, and returns the notifications to send: (group, message type, body).
The caller (route.py) has checked CAP_NET_ADMIN.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import IFF_UP
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.common import AF_INET, AF_INET6
from pyvisor.sentry.socket.inet import AddrInfo, Interface, Route
from pyvisor.sentry.socket.netlink import (NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL,
                                           NLM_F_REPLACE)
from pyvisor.sentry.socket.netlink import nlattr
from pyvisor.sentry.socket.netlink.nlattr import Kind

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netstack import Stack

Notice = tuple[int, int, bytes]             # (RTNLGRP_*, RTM_* type, body)

# From <linux/rtnetlink.h>, <linux/if_addr.h>.
RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE = 20, 21, 24, 25
RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE = 5, 7, 9, 11
IFADDRMSG = struct.Struct("<BBBBi")         # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("<BBBBBBBBI")   # family dst_len src_len tos table proto scope type flags
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_ANYCAST, IFA_CACHEINFO = 1, 2, 3, 4, 5, 6
IFA_FLAGS, IFA_RT_PRIORITY, IFA_TARGET_NETNSID, IFA_PROTO = 8, 9, 10, 11
IFA_F_PERMANENT = 0x80
RTA_DST, RTA_SRC, RTA_IIF, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 2, 3, 4, 5, 6, 7
RTA_METRICS, RTA_MULTIPATH, RTA_FLOW, RTA_TABLE, RTA_MARK, RTA_VIA, RTA_PREF = \
    8, 9, 11, 15, 16, 18, 20
RTA_ENCAP_TYPE, RTA_ENCAP, RTA_EXPIRES, RTA_UID, RTA_IP_PROTO, RTA_NH_ID = \
    21, 22, 23, 25, 27, 30
RTN_UNSPEC, RTN_UNICAST, RTN_LOCAL, RTN_MAX = 0, 1, 2, 11
RT_SCOPE_UNIVERSE, RT_SCOPE_HOST, RT_SCOPE_NOWHERE = 0, 254, 255
RT_TABLE_UNSPEC, RT_TABLE_DEFAULT, RT_TABLE_MAIN, RT_TABLE_LOCAL = 0, 253, 254, 255
RTPROT_UNSPEC, RTPROT_BOOT = 0, 3
IP6_RT_PRIO_USER = 1024
MAX_ROUTES = 65536                           # a bound of ours on the namespace's routes

# fib_props: the least scope of each route type, and the error a lookup meets on it.
_TYPE_SCOPE = {0: 255, 1: 0, 2: 254, 3: 253, 4: 253, 5: 0, 6: 0, 7: 0, 8: 0, 9: 0, 10: 255,
               11: 255}
_REJECT = frozenset((6, 7, 8, 9, 10, 11))   # blackhole ... xresolve: no nexthop

IFA_POLICY4: nlattr.Policy = {
    IFA_ADDRESS: (Kind.U32, 0), IFA_LOCAL: (Kind.U32, 0), IFA_BROADCAST: (Kind.U32, 0),
    IFA_LABEL: (Kind.STRING, 15), IFA_CACHEINFO: (Kind.BINARY, 0), IFA_FLAGS: (Kind.U32, 0),
    IFA_RT_PRIORITY: (Kind.U32, 0), IFA_TARGET_NETNSID: (Kind.U32, 0),
    IFA_PROTO: (Kind.U8, 0)}
IFA_POLICY6: nlattr.Policy = {
    IFA_ADDRESS: (Kind.BINARY, 0), IFA_LOCAL: (Kind.BINARY, 0),
    IFA_CACHEINFO: (Kind.BINARY, 0), IFA_FLAGS: (Kind.U32, 0),
    IFA_RT_PRIORITY: (Kind.U32, 0), IFA_TARGET_NETNSID: (Kind.U32, 0),
    IFA_PROTO: (Kind.U8, 0)}
RTM_POLICY: nlattr.Policy = {
    RTA_SRC: (Kind.BINARY, 0), RTA_IIF: (Kind.U32, 0), RTA_OIF: (Kind.U32, 0),
    RTA_PRIORITY: (Kind.U32, 0), RTA_METRICS: (Kind.NESTED, 0),
    RTA_MULTIPATH: (Kind.BINARY, 0), RTA_FLOW: (Kind.U32, 0), RTA_TABLE: (Kind.U32, 0),
    RTA_MARK: (Kind.U32, 0), RTA_VIA: (Kind.BINARY, 0), RTA_PREF: (Kind.U8, 0),
    RTA_ENCAP_TYPE: (Kind.BINARY, 0), RTA_ENCAP: (Kind.NESTED, 0),
    RTA_EXPIRES: (Kind.U32, 0), RTA_UID: (Kind.U32, 0), RTA_IP_PROTO: (Kind.U8, 0),
    RTA_NH_ID: (Kind.U32, 0), RTA_DST: (Kind.BINARY, 0), RTA_GATEWAY: (Kind.BINARY, 0),
    RTA_PREFSRC: (Kind.BINARY, 0)}
# What pyvisor's FIB cannot hold: multipath, MPLS/encapsulation, nexthop objects.
_UNMODELLED = (RTA_MULTIPATH, RTA_VIA, RTA_ENCAP, RTA_NH_ID)


def _u32(payload: bytes) -> int:
    return int(struct.unpack_from("<I", payload)[0])


def _exact(attrs: dict[int, bytes], atype: int, size: int) -> bytes | None:
    """An address attribute of `size` bytes (shorter: ERANGE, as its policy's length)."""
    v = attrs.get(atype)
    if v is None:
        return None
    if len(v) < size:
        raise SyscallError(Errno.ERANGE)
    return v[:size]


def _iface(stack: Stack, index: int) -> Interface:
    i = stack.iface_by_index(index) if index > 0 else None
    if i is None:
        raise SyscallError(Errno.ENODEV)
    return i


# -- addresses -------------------------------------------------------------------------------


def change_addr(stack: Stack, mtype: int, nlflags: int, body: bytes) -> list[Notice]:
    """RTM_NEWADDR / RTM_DELADDR of AF_INET or AF_INET6 (route.py answers other
    families with EOPNOTSUPP, as rtnetlink finds no handler)."""
    from pyvisor.sentry.socket.netlink.route import addr4_body, addr6_body
    from pyvisor.sentry.socket.netstack import devinet
    if len(body) < IFADDRMSG.size:
        raise SyscallError(Errno.EINVAL)                 # nlmsg_parse: header too short
    family, plen, iflags, scope, index = IFADDRMSG.unpack_from(body)
    rest = body[IFADDRMSG.size:]
    if family == AF_INET:
        a = nlattr.parse(rest, IFA_POLICY4)
        local = _exact(a, IFA_LOCAL, 4)
        address = _exact(a, IFA_ADDRESS, 4)
        label = nlattr.string(a[IFA_LABEL]) if IFA_LABEL in a else None
        if mtype == RTM_DELADDR:
            i = _iface(stack, index)
            return [(RTNLGRP_IPV4_IFADDR, RTM_DELADDR, _deleted4(i, ip, p, info))
                    for ip, p, info in devinet.del4(stack, i, local, label, address, plen)]
        if plen > 32 or local is None:
            raise SyscallError(Errno.EINVAL)
        i = _iface(stack, index)
        flags = _u32(a[IFA_FLAGS]) if IFA_FLAGS in a else iflags
        _check_cacheinfo(a)
        bcast = _exact(a, IFA_BROADCAST, 4) or b""
        peer = address if address is not None and address != local else b""
        info = AddrInfo(label if label and label != i.name else b"",
                        flags | IFA_F_PERMANENT, scope, bcast, peer,
                        _u32(a[IFA_RT_PRIORITY]) if IFA_RT_PRIORITY in a else 0,
                        a[IFA_PROTO][0] if IFA_PROTO in a else 0)
        devinet.add4(stack, i, local, plen, info, nlflags)
        return [(RTNLGRP_IPV4_IFADDR, RTM_NEWADDR, addr4_body(i, local, plen))]
    # AF_INET6
    a = nlattr.parse(rest, IFA_POLICY6)
    local = _exact(a, IFA_LOCAL, 16)
    address = _exact(a, IFA_ADDRESS, 16)
    pfx = local if local is not None else address         # extract_addr
    if pfx is None:
        raise SyscallError(Errno.EINVAL)
    peer = address if local is not None and address is not None and address != local \
        else b""
    if mtype == RTM_DELADDR:
        if plen > 128:
            raise SyscallError(Errno.EINVAL)
        i = _iface(stack, index)
        body6 = addr6_body(i, pfx, plen) if (pfx, plen) in i.addrs6 else b""
        devinet.del6(stack, i, pfx, plen)
        return [(RTNLGRP_IPV6_IFADDR, RTM_DELADDR, body6)]
    if plen > 128:
        raise SyscallError(Errno.EINVAL)
    i = _iface(stack, index)
    flags = _u32(a[IFA_FLAGS]) if IFA_FLAGS in a else iflags
    _check_cacheinfo(a)
    info = AddrInfo(b"", flags, 0, b"", peer,
                    _u32(a[IFA_RT_PRIORITY]) if IFA_RT_PRIORITY in a else 0,
                    a[IFA_PROTO][0] if IFA_PROTO in a else 0)
    devinet.add6(stack, i, pfx, plen, info, nlflags)
    return [(RTNLGRP_IPV6_IFADDR, RTM_NEWADDR, addr6_body(i, pfx, plen))]


def _deleted4(i: Interface, ip: bytes, prefix: int, info: AddrInfo) -> bytes:
    """The RTM_DELADDR body of an address no longer on `i`."""
    from pyvisor.sentry.socket.netlink.route import addr4_body
    i.addrs4.append((ip, prefix))
    i.addr_info[(ip, prefix)] = info
    try:
        return addr4_body(i, ip, prefix)
    finally:
        i.addrs4.remove((ip, prefix))
        del i.addr_info[(ip, prefix)]


def _check_cacheinfo(a: dict[int, bytes]) -> None:
    """struct ifa_cacheinfo: 16 bytes; a zero valid lifetime, or a preferred one longer
    than it, is refused.  Lifetimes themselves are not kept: addresses are permanent."""
    ci = a.get(IFA_CACHEINFO)
    if ci is None:
        return
    if len(ci) < 16:
        raise SyscallError(Errno.ERANGE)
    prefered, valid = struct.unpack_from("<II", ci)
    if not valid or prefered > valid:
        raise SyscallError(Errno.EINVAL)


# -- routes ----------------------------------------------------------------------------------


def change_route(stack: Stack, mtype: int, nlflags: int, body: bytes) -> list[Notice]:
    """RTM_NEWROUTE / RTM_DELROUTE of AF_INET or AF_INET6."""
    from pyvisor.sentry.socket.netlink.route import route_body
    if len(body) < RTMSG.size:
        raise SyscallError(Errno.EINVAL)
    (family, dst_len, src_len, tos, table, proto, scope, rtype,
     _flags) = RTMSG.unpack_from(body)
    a = nlattr.parse(body[RTMSG.size:], RTM_POLICY)
    size = 4 if family == AF_INET else 16
    if family == AF_INET:
        for atype in (RTA_DST, RTA_GATEWAY, RTA_PREFSRC):
            _exact(a, atype, 4)                           # NLA_U32: ERANGE when short
    elif RTA_GATEWAY in a or RTA_PREFSRC in a:
        _exact(a, RTA_GATEWAY, 16)
        _exact(a, RTA_PREFSRC, 16)
    if RTA_TABLE in a:
        table = _u32(a[RTA_TABLE])
    if table == RT_TABLE_UNSPEC:
        table = RT_TABLE_MAIN
    oif = _u32(a[RTA_OIF]) if RTA_OIF in a else 0
    metric = _u32(a[RTA_PRIORITY]) if RTA_PRIORITY in a else 0
    gw = a[RTA_GATEWAY][:size] if RTA_GATEWAY in a else b""
    prefsrc = a[RTA_PREFSRC][:size] if RTA_PREFSRC in a else b""
    if family == AF_INET:
        dst = a[RTA_DST][:4] if RTA_DST in a else bytes(4)
        if dst_len > 32:
            raise SyscallError(Errno.EINVAL)
        if dst_len < 32 and int.from_bytes(dst, "big") & ((1 << (32 - dst_len)) - 1):
            raise SyscallError(Errno.EINVAL)             # fib_valid_key_len
    else:
        nbytes = (dst_len + 7) >> 3
        raw = a.get(RTA_DST, b"")
        if RTA_DST in a and len(raw) < nbytes:
            raise SyscallError(Errno.EINVAL)
        if dst_len > 128:
            raise SyscallError(Errno.EINVAL)
        from pyvisor.sentry.socket.netstack.route import network_of
        dst = network_of((raw[:nbytes] + bytes(16))[:16], dst_len)
        if src_len:
            raise SyscallError(Errno.EOPNOTSUPP)         # source routing: not modelled
    if any(t in a for t in _UNMODELLED):
        raise SyscallError(Errno.EOPNOTSUPP)
    if mtype == RTM_DELROUTE:
        r = (_del4 if family == AF_INET else _del6)(stack, dst, dst_len, tos, table, proto,
                                                   scope, rtype, oif, gw, prefsrc, metric)
        grp = RTNLGRP_IPV4_ROUTE if family == AF_INET else RTNLGRP_IPV6_ROUTE
        return [(grp, RTM_DELROUTE, route_body(r))]
    if rtype > RTN_MAX:
        raise SyscallError(Errno.EINVAL)
    if family == AF_INET:
        r = _new4(stack, nlflags, dst, dst_len, tos, table, proto, scope, rtype, oif, gw,
                  prefsrc, metric)
        return [(RTNLGRP_IPV4_ROUTE, RTM_NEWROUTE, route_body(r))]
    r = _new6(stack, nlflags, dst, dst_len, table, proto, rtype, oif, gw, prefsrc, metric)
    return [(RTNLGRP_IPV6_ROUTE, RTM_NEWROUTE, route_body(r))]


def _nexthop_dev(stack: Stack, oif: int, gw: bytes, scope: int) -> int:
    """fib_check_nh: the device a route leaves by, which must exist (ENODEV) and be up
    (ENETDOWN); a gateway must be an address of ours or reachable by a unicast route
    (ENETUNREACH), through `oif` if one is named."""
    if gw:
        local = stack.index_of_addr(gw)
        r = stack.route_table.lookup(gw)
        via = local or (r.oif if r is not None and r.rtype == RTN_UNICAST and
                        not r.gateway else 0)
        if not via or (oif and local == 0 and via != oif):
            raise SyscallError(Errno.ENETUNREACH)
        i = _iface(stack, oif or via)
        oif = i.index
    else:
        i = _iface(stack, oif)
    if not i.flags & IFF_UP:
        raise SyscallError(Errno.ENETDOWN)
    return oif


def _limit(stack: Stack) -> None:
    if len(stack.route_table.routes) >= MAX_ROUTES:
        raise SyscallError(Errno.ENOBUFS)


def _new4(stack: Stack, nlflags: int, dst: bytes, plen: int, tos: int, table: int,
          proto: int, scope: int, rtype: int, oif: int, gw: bytes, prefsrc: bytes,
          metric: int) -> Route:
    """fib_create_info + fib_table_insert."""
    if _TYPE_SCOPE[rtype] > scope:
        raise SyscallError(Errno.EINVAL)                 # "Invalid scope"
    if rtype in _REJECT:
        if gw or oif:
            raise SyscallError(Errno.EINVAL)
    elif scope > RT_SCOPE_HOST:
        raise SyscallError(Errno.EINVAL)
    elif scope == RT_SCOPE_HOST:
        if gw:
            raise SyscallError(Errno.EINVAL)
        _iface(stack, oif)
    else:
        oif = _nexthop_dev(stack, oif, gw, scope)
    if prefsrc and not stack.is_local(prefsrc) and not (rtype == RTN_LOCAL and
                                                        prefsrc == dst):
        raise SyscallError(Errno.EINVAL)                 # fib_valid_prefsrc
    new = Route(AF_INET, dst, plen, oif, table, rtype, scope, prefsrc, metric, gw, proto, tos)
    same = [r for r in stack.route_table.routes if r.family == AF_INET and r.dst == dst and
            r.prefix == plen and r.table == table and r.tos == tos and r.metric == metric]
    if same and _replaced(stack, new, same, nlflags, any(
            (r.rtype, r.scope, r.oif, r.gateway) == (rtype, scope, oif, gw) for r in same)):
        return new
    if not nlflags & NLM_F_CREATE:
        raise SyscallError(Errno.ENOENT)
    _limit(stack)
    if same and not nlflags & NLM_F_APPEND:
        stack.route_table.routes.insert(stack.route_table.routes.index(same[0]), new)
    else:
        stack.route_table.routes.append(new)
    return new


def _replaced(stack: Stack, new: Route, same: list[Route], nlflags: int,
              duplicate: bool) -> bool:
    """A new route whose key (`same`: the routes with it) is taken: EEXIST with
    NLM_F_EXCL or for a `duplicate`; with NLM_F_REPLACE it takes the first one's place
    (True).  False: the caller adds it beside them."""
    if nlflags & NLM_F_EXCL:
        raise SyscallError(Errno.EEXIST)
    if nlflags & NLM_F_REPLACE:
        routes = stack.route_table.routes
        routes[routes.index(same[0])] = new
        return True
    if duplicate:
        raise SyscallError(Errno.EEXIST)
    return False


def _new6(stack: Stack, nlflags: int, dst: bytes, plen: int, table: int, proto: int,
          rtype: int, oif: int, gw: bytes, prefsrc: bytes, metric: int) -> Route:
    """ip6_route_info_create + fib6_add_rt2node."""
    metric = metric or IP6_RT_PRIO_USER
    proto = proto or RTPROT_BOOT
    if rtype in _REJECT:
        oif = oif if oif and stack.iface_by_index(oif) is not None else 1
    else:
        if oif:
            _iface(stack, oif)
        oif = _nexthop_dev(stack, oif, gw, 0)
    if prefsrc and not stack.is_local(prefsrc):
        raise SyscallError(Errno.EINVAL)
    new = Route(AF_INET6, dst, plen, oif, table, rtype or RTN_UNICAST, 0, prefsrc, metric,
                gw, proto)
    same = [r for r in stack.route_table.routes if r.family == AF_INET6 and r.dst == dst and
            r.prefix == plen and r.table == table and r.metric == metric]
    if same:
        # rt6_duplicate_nexthop: the same device and gateway
        if _replaced(stack, new, same, nlflags,
                     any((r.oif, r.gateway) == (oif, gw) for r in same)):
            return new
    elif nlflags & NLM_F_REPLACE and not nlflags & NLM_F_CREATE:
        raise SyscallError(Errno.ENOENT)
    _limit(stack)
    stack.route_table.routes.append(new)
    return new


def _del4(stack: Stack, dst: bytes, plen: int, tos: int, table: int, proto: int,
          scope: int, rtype: int, oif: int, gw: bytes, prefsrc: bytes, metric: int) -> Route:
    """fib_table_delete: the first alias matching all the request names."""
    for r in stack.route_table.routes:
        if r.family != AF_INET or r.dst != dst or r.prefix != plen or r.table != table or \
                r.tos != tos:
            continue
        if (rtype and r.rtype != rtype) or (scope != RT_SCOPE_NOWHERE and r.scope != scope) \
                or (prefsrc and r.prefsrc != prefsrc) or (proto and r.proto != proto) or \
                (oif and r.oif != oif) or (gw and r.gateway != gw) or \
                (metric and r.metric != metric):
            continue
        stack.route_table.routes.remove(r)
        return r
    raise SyscallError(Errno.ESRCH)


def _del6(stack: Stack, dst: bytes, plen: int, tos: int, table: int, proto: int,
          scope: int, rtype: int, oif: int, gw: bytes, prefsrc: bytes, metric: int) -> Route:
    """ip6_route_del."""
    for r in stack.route_table.routes:
        if r.family != AF_INET6 or r.dst != dst or r.prefix != plen or r.table != table:
            continue
        if (oif and r.oif != oif) or (gw and r.gateway != gw) or \
                (metric and r.metric != metric) or (proto and r.proto != proto):
            continue
        stack.route_table.routes.remove(r)
        return r
    raise SyscallError(Errno.ESRCH)


__all__ = ["change_addr", "change_route"]
