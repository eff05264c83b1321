"""The addresses of netstack's interfaces, as `ip addr add/del` changes them, and what
they make local.  Linux: net/ipv4/devinet.c (__inet_insert_ifa, inet_rtm_deladdr),
net/ipv4/fib_frontend.c (fib_add_ifaddr: the local and broadcast routes an address
brings), net/ipv6/addrconf.c (inet6_addr_add, inet6_addr_del).

Each Interface (lo and the NICs) holds its addresses as (ip, prefix) in order, IPv4
primaries before secondaries as in_dev->ifa_list keeps them; `addr_info` keeps what
a request said beyond that (label, flags, scope, broadcast).  The local table is not
stored: it follows from the addresses, as fib_add_ifaddr would have filled it:

  IPv4   each address is local (a /32 RTN_LOCAL route); on a loopback interface that
         is up, its whole prefix is local too (lo's 127.0.0.0/8), and the subnet's
         last address is a broadcast (RTN_BROADCAST) on an up interface (local_iface
         counts lo's only: a NIC's leaves by the NIC, and comes back as broadcasts
         do, Stack.is_broadcast);
  IPv6   each address is local, exactly (no prefix is).

What an address adds to the main table (the prefix route of an IPv4 address on a
NIC, the prefix route of any IPv6 address, metric 256) is stored in the stack's
RouteTable when the address is added and removed with it.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import IFF_LOOPBACK, IFF_UP
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.common import AF_INET, AF_INET6
from pyvisor.sentry.socket.inet import AddrInfo, Interface, Route
from pyvisor.sentry.socket.netstack.route import network_of, prefix_match

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netstack import Stack

# From <linux/if_addr.h> and <linux/rtnetlink.h>.
IFA_F_SECONDARY, IFA_F_NODAD, IFA_F_PERMANENT = 0x01, 0x02, 0x80
IFA_F_NOPREFIXROUTE, IFA_F_MCAUTOJOIN = 0x200, 0x400
IPV6ONLY_FLAGS = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x100 | 0x800   # NODAD, OPTIMISTIC, ...
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST = 1, 2, 3
RTPROT_KERNEL = 2
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
ADDRCONF_METRIC = 256                          # IP6_RT_PRIO_ADDRCONF
MAX_ADDRS = 4096                               # per interface and family: a bound of ours


def info_of(i: Interface, ip: bytes, prefix: int) -> AddrInfo:
    return i.addr_info.get((ip, prefix)) or AddrInfo(
        scope=RT_SCOPE_HOST if i.flags & IFF_LOOPBACK else
        (RT_SCOPE_LINK if len(ip) == 16 and ip[:2] == b"\xfe\x80" else RT_SCOPE_UNIVERSE))


def _host_bits(ip: bytes, prefix: int) -> int:
    bits = len(ip) * 8
    return int.from_bytes(ip, "big") & ((1 << (bits - prefix)) - 1)


def subnet_broadcast(ip: bytes, prefix: int) -> bytes:
    return (int.from_bytes(ip, "big") | ((1 << (32 - prefix)) - 1)).to_bytes(4, "big")


# -- what is local ---------------------------------------------------------------------------


def local_iface(stack: Stack, ip: bytes) -> Interface | None:
    """The interface whose local route takes `ip` (fib_table_lookup in the local table,
    RTN_LOCAL or RTN_BROADCAST), None if `ip` is not this host's."""
    v4 = len(ip) == 4
    ifaces = stack.interfaces()
    for i in ifaces:
        for a, _p in (i.addrs4 if v4 else i.addrs6):
            if a == ip:
                return i
    if not v4:
        return None
    for i in ifaces:
        if i.flags & IFF_LOOPBACK and i.flags & IFF_UP:
            for a, p in i.addrs4:
                if p < 32 and prefix_match(ip, a, p):
                    return i
    b = broadcast_iface(stack, ip)
    return b if b is not None and b.flags & IFF_LOOPBACK else None


def broadcast_iface(stack: Stack, ip: bytes) -> Interface | None:
    """The up interface `ip` is a subnet (or explicit) broadcast address of: a local
    RTN_BROADCAST route."""
    if len(ip) != 4:
        return None
    for i in stack.interfaces():
        if not i.flags & IFF_UP:
            continue
        for a, p in i.addrs4:
            info = i.addr_info.get((a, p))
            if info is not None and info.broadcast == ip:
                return i
            if p < 31 and subnet_broadcast(a, p) == ip:
                return i
    return None


def local_source(stack: Stack, dst: bytes) -> bytes:
    """The source of a packet to a local `dst`: itself if an interface holds it, else
    the address whose local prefix covers it (the route's prefsrc)."""
    i = local_iface(stack, dst)
    if i is None:
        return dst
    addrs = i.addrs4 if len(dst) == 4 else i.addrs6
    if any(a == dst for a, _ in addrs):
        return dst
    for a, p in addrs:
        if p < 32 and prefix_match(dst, a, p):
            return a
    return addrs[0][0] if addrs else dst


def has_source6(stack: Stack) -> bool:
    """Whether any interface has an IPv6 address to send from (ipv6_dev_get_saddr finds
    a candidate)."""
    return any(i.addrs6 for i in stack.interfaces())


def local_routes(i: Interface) -> list[Route]:
    """The local-table routes interface `i`'s addresses make (fib_add_ifaddr, whose
    prefsrc is the subnet's primary address; a route it adds twice is there once), in
    the trie's key order, then addrconf's local /128 routes."""
    out: list[Route] = []
    up = bool(i.flags & IFF_UP)
    for a, p in i.addrs4:
        info = info_of(i, a, p)
        prim = a
        if info.flags & IFA_F_SECONDARY:
            prim = next((x for x, q in i.addrs4 if q == p and prefix_match(a, x, p) and
                         not info_of(i, x, q).flags & IFA_F_SECONDARY), a)
        cand = [Route(AF_INET, a, 32, i.index, RT_TABLE_LOCAL, RTN_LOCAL, RT_SCOPE_HOST,
                      prim)]
        if up and info.broadcast and info.broadcast != b"\xff" * 4:
            cand.append(Route(AF_INET, info.broadcast, 32, i.index, RT_TABLE_LOCAL,
                              RTN_BROADCAST, RT_SCOPE_LINK, prim))
        if up and not info.flags & IFA_F_SECONDARY and p < 32:
            if i.flags & IFF_LOOPBACK:
                cand.append(Route(AF_INET, network_of(a, p), p, i.index, RT_TABLE_LOCAL,
                                  RTN_LOCAL, RT_SCOPE_HOST, a))
            if p < 31:
                cand.append(Route(AF_INET, subnet_broadcast(a, p), 32, i.index,
                                  RT_TABLE_LOCAL, RTN_BROADCAST, RT_SCOPE_LINK, a))
        out += [r for r in cand if r not in out]
    out.sort(key=lambda r: (r.dst, -r.prefix))
    for a, p in i.addrs6:
        out.append(Route(AF_INET6, a, 128, i.index, RT_TABLE_LOCAL, RTN_LOCAL, 0))
    return out


def scope6(ip: bytes) -> int:
    """ipv6_addr_src_scope: node 1 (::1), link 2 (fe80::/10), global 14."""
    if ip == bytes(15) + b"\1":
        return 1
    return 2 if ip[0] == 0xFE and ip[1] & 0xC0 == 0x80 else 14


def select_addr(stack: Stack, i: Interface | None, dst: bytes, scope: int) -> bytes:
    """inet_select_addr: a primary IPv4 address of `i` no wider than `scope`, the one on
    `dst`'s subnet first; else one of another interface; 0.0.0.0 if none."""
    cands = [(a, p) for a, p in (i.addrs4 if i is not None else [])
             if info_of(i, a, p).scope <= scope and  # type: ignore[arg-type]
             not info_of(i, a, p).flags & IFA_F_SECONDARY]  # type: ignore[arg-type]
    for a, p in cands:
        if prefix_match(dst, a, p):
            return a
    if cands:
        return cands[0][0]
    for j in stack.interfaces():
        for a, p in j.addrs4:
            if info_of(j, a, p).scope <= scope:
                return a
    return bytes(4)


# -- changes ---------------------------------------------------------------------------------


def _prefix_route4(i: Interface, ip: bytes, prefix: int, metric: int) -> Route | None:
    """The main-table route of an IPv4 address (fib_add_ifaddr): none on a loopback
    interface (its prefix is local) nor for a /32."""
    if i.flags & IFF_LOOPBACK or prefix == 32:
        return None
    return Route(AF_INET, network_of(ip, prefix), prefix, i.index, scope=RT_SCOPE_LINK,
                 prefsrc=ip, rtype=RTN_UNICAST, metric=metric)


def _prefix_route6(i: Interface, ip: bytes, prefix: int, metric: int) -> Route:
    return Route(AF_INET6, network_of(ip, prefix), prefix, i.index,
                 metric=metric or ADDRCONF_METRIC)


def add4(stack: Stack, i: Interface, ip: bytes, prefix: int, info: AddrInfo,
         nlflags: int) -> AddrInfo:
    """inet_rtm_newaddr: adds `ip`/`prefix` to `i`, or with NLM_F_REPLACE (and not
    NLM_F_EXCL) updates the one already there.  Returns the address's info as now held;
    raises EEXIST, EINVAL."""
    from pyvisor.sentry.socket.netlink import NLM_F_EXCL, NLM_F_REPLACE
    flags = info.flags & ~(IFA_F_SECONDARY | IPV6ONLY_FLAGS)
    key = (ip, prefix)
    if key in i.addrs4:
        if nlflags & NLM_F_EXCL or not nlflags & NLM_F_REPLACE:
            raise SyscallError(Errno.EEXIST)
        old = info_of(i, ip, prefix)
        new = AddrInfo(old.label, old.flags, old.scope, old.broadcast, old.peer,
                       info.metric, info.proto)
        i.addr_info[key] = new
        return new
    for a, p in i.addrs4:
        if p == prefix and prefix_match(a, ip, prefix):
            if info_of(i, a, p).scope != info.scope:
                raise SyscallError(Errno.EINVAL)
            flags |= IFA_F_SECONDARY
    if len(i.addrs4) >= MAX_ADDRS:
        raise SyscallError(Errno.ENOBUFS)
    new = AddrInfo(info.label, flags, info.scope, info.broadcast, info.peer, info.metric,
                   info.proto)
    if flags & IFA_F_SECONDARY:
        i.addrs4.append(key)
    else:
        at = len(i.addrs4)
        for n, (a, p) in enumerate(i.addrs4):
            if info_of(i, a, p).flags & IFA_F_SECONDARY:
                at = n
                break
        i.addrs4.insert(at, key)
    i.addr_info[key] = new
    r = _prefix_route4(i, ip, prefix, info.metric)
    if r is not None and not flags & IFA_F_SECONDARY and not flags & IFA_F_NOPREFIXROUTE \
            and i.flags & IFF_UP:
        stack.route_table.add(r)
    return new


def del4(stack: Stack, i: Interface, local: bytes | None, label: bytes | None,
         address: bytes | None, prefix: int) -> list[tuple[bytes, int, AddrInfo]]:
    """inet_rtm_deladdr: removes the first address of `i` that matches what the request
    names (EADDRNOTAVAIL if none does), and with a primary its secondaries, as
    __inet_del_ifa does without promote_secondaries (a fresh namespace's default).
    Returns what went, the secondaries first."""
    for a, p in i.addrs4:
        info = info_of(i, a, p)
        if local is not None and a != local:
            continue
        if label is not None and label != (info.label or i.name):
            continue
        if address is not None and (p != prefix or not prefix_match(address, a, p)):
            continue
        gone = []
        if not info.flags & IFA_F_SECONDARY:
            gone = [(x, q, info_of(i, x, q)) for x, q in i.addrs4
                    if q == p and prefix_match(x, a, p) and
                    info_of(i, x, q).flags & IFA_F_SECONDARY]
        gone.append((a, p, info))
        for x, q, _ in gone:
            i.addrs4.remove((x, q))
            i.addr_info.pop((x, q), None)
        r = _prefix_route4(i, a, p, info.metric)
        if r is not None:
            stack.route_table.remove(r)
        return gone
    raise SyscallError(Errno.EADDRNOTAVAIL)


def add6(stack: Stack, i: Interface, ip: bytes, prefix: int, info: AddrInfo,
         nlflags: int) -> AddrInfo:
    """inet6_rtm_newaddr: a new address (with its prefix route and local route), or
    with NLM_F_REPLACE an update of the one there."""
    from pyvisor.sentry.socket.netlink import NLM_F_EXCL, NLM_F_REPLACE
    existing = [(a, p) for a, p in i.addrs6 if a == ip]
    if existing:
        if nlflags & NLM_F_EXCL or not nlflags & NLM_F_REPLACE:
            raise SyscallError(Errno.EEXIST)
        a, p = existing[0]
        old = info_of(i, a, p)
        new = AddrInfo(old.label, info.flags | IFA_F_PERMANENT, old.scope, b"", info.peer,
                       info.metric, info.proto)
        i.addr_info[(a, p)] = new
        return new
    if ip == bytes(16) or ip[0] == 0xFF and not info.flags & IFA_F_MCAUTOJOIN:
        raise SyscallError(Errno.EADDRNOTAVAIL)       # ipv6_add_addr
    if ip == bytes(15) + b"\1" and not i.flags & IFF_LOOPBACK:
        raise SyscallError(Errno.EADDRNOTAVAIL)
    if len(i.addrs6) >= MAX_ADDRS:
        raise SyscallError(Errno.ENOBUFS)
    scope = RT_SCOPE_HOST if ip == bytes(15) + b"\1" else \
        RT_SCOPE_LINK if ip[:2] == b"\xfe\x80" else RT_SCOPE_UNIVERSE
    new = AddrInfo(b"", (info.flags & ~IFA_F_SECONDARY) | IFA_F_PERMANENT, scope, b"",
                   info.peer, info.metric, info.proto)
    # ipv6_link_dev_addr: before the first address of no wider scope.
    at = next((n for n, (a, _) in enumerate(i.addrs6) if scope6(ip) >= scope6(a)),
              len(i.addrs6))
    i.addrs6.insert(at, (ip, prefix))
    i.addr_info[(ip, prefix)] = new
    if not info.flags & IFA_F_NOPREFIXROUTE:
        r = _prefix_route6(i, ip, prefix, info.metric)
        if not any(x.family == AF_INET6 and x.dst == r.dst and x.prefix == prefix and
                   x.oif == i.index and x.table == r.table for x in stack.route_table.routes):
            stack.route_table.add(r)
    return new


def del6(stack: Stack, i: Interface, ip: bytes, prefix: int) -> AddrInfo:
    """inet6_addr_del: the address `ip`/`prefix` of `i`; its prefix route goes with it
    unless another address of `i` still has that prefix."""
    if prefix > 128:
        raise SyscallError(Errno.EINVAL)
    if (ip, prefix) not in i.addrs6:
        raise SyscallError(Errno.EADDRNOTAVAIL)
    info = info_of(i, ip, prefix)
    i.addrs6.remove((ip, prefix))
    i.addr_info.pop((ip, prefix), None)
    net = network_of(ip, prefix)
    if not any(p == prefix and network_of(a, p) == net for a, p in i.addrs6):
        stack.route_table.routes = [
            r for r in stack.route_table.routes
            if not (r.family == AF_INET6 and r.dst == net and r.prefix == prefix and
                    r.oif == i.index and r.proto == RTPROT_KERNEL and not r.gateway)]
    return info


def valid_prefix(ip: bytes, prefix: int) -> bool:
    return 0 <= prefix <= len(ip) * 8 and (prefix == len(ip) * 8 or
                                           _host_bits(ip, prefix) == 0)


__all__ = ["add4", "add6", "broadcast_iface", "del4", "del6", "has_source6", "info_of",
           "local_iface", "local_routes", "local_source", "subnet_broadcast"]
