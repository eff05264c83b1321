"""The legacy iptables interface: IPT_SO_* / IP6T_SO_* socket options on inet sockets,
and the x_tables match/target revisions.  Linux: net/ipv4/netfilter/ip_tables.c
(do_ipt_get_ctl), net/ipv6/netfilter/ip6_tables.c, net/netfilter/x_tables.c
(xt_find_revision).  gVisor: pkg/sentry/socket/netfilter.

Each network namespace has the tables a freshly booted Linux has once the
iptable_* modules are loaded: filter, nat, mangle and raw, for IPv4 and IPv6,
each chain an empty entry with an ACCEPT verdict, the table closed by an
ERROR entry.  GET_INFO, GET_ENTRIES and GET_REVISION_{MATCH,TARGET} answer from
them.  Replacing a table (IPT_SO_SET_REPLACE) is not supported yet
(ENOPROTOOPT, as for a kernel without ip_tables; TODO(#10)); iptables(8) in
Debian uses nftables over netlink instead (netlink/netfilter.py).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_NET_ADMIN
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import SOL_IP, SOL_IPV6
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.common import AF_INET, AF_INET6
from pyvisor.sentry.socket import net_capable

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

# From <linux/netfilter_ipv4/ip_tables.h>, <linux/netfilter/x_tables.h>.
IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES = 64, 65
IPT_SO_GET_REVISION_MATCH, IPT_SO_GET_REVISION_TARGET = 66, 67
IP6T_SO_GET_REVISION_MATCH, IP6T_SO_GET_REVISION_TARGET = 68, 69    # <linux/netfilter_ipv6/...>
GET_OPTIONS = {4: frozenset((IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES, IPT_SO_GET_REVISION_MATCH,
                             IPT_SO_GET_REVISION_TARGET)),
               6: frozenset((IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES, IP6T_SO_GET_REVISION_MATCH,
                             IP6T_SO_GET_REVISION_TARGET))}
XT_TABLE_MAXNAMELEN = 32
GETINFO = struct.Struct("<32sI5I5III")          # struct ipt_getinfo (= ip6t_getinfo)
GET_ENTRIES = struct.Struct("<32sI4x")          # struct ipt_get_entries, without entries
GET_REVISION = struct.Struct("<29sB")           # struct xt_get_revision
ENTRY_SIZE = {4: 112, 6: 168}                   # sizeof(struct ipt_entry), ip6t_entry
TARGET_OFFSETS = {4: 88, 6: 140}                # offsetof(..., target_offset)
STANDARD_TARGET = 40                            # sizeof(struct xt_standard_target)
ERROR_TARGET = 64                               # sizeof(struct xt_error_target)
NF_ACCEPT = 1
NF_INET_NUMHOOKS = 5

# The tables and the hooks they attach to (iptable_filter.c, iptable_nat.c, ...).
TABLES: dict[bytes, int] = {
    b"filter": 0b01110, b"nat": 0b11011, b"mangle": 0b11111, b"raw": 0b01001}

# The revisions Linux 6.x registers for each match and target (the xt_*, ipt_* and
# ip6t_* modules; a name may lack old revisions, like mark's 0).  Names are shared
# by both families unless the name is one family's.
MATCHES: dict[bytes, frozenset[int]] = {k: frozenset(v) for k, v in {
    b"tcp": (0,), b"udp": (0,), b"udplite": (0,), b"sctp": (0,), b"mark": (1,),
    b"conntrack": (1, 2, 3), b"state": (0,), b"comment": (0,), b"multiport": (1,),
    b"limit": (0,), b"iprange": (1,), b"mac": (0,), b"owner": (1,), b"physdev": (0,),
    b"connmark": (1,), b"tcpmss": (0,), b"length": (0,), b"pkttype": (0,), b"recent": (0, 1),
    b"string": (0,), b"u32": (0,), b"socket": (1, 2, 3), b"policy": (0,), b"helper": (0,),
    b"devgroup": (0,), b"cgroup": (0, 1, 2), b"rpfilter": (0,), b"statistic": (0,),
    b"hashlimit": (1, 2, 3), b"connlimit": (1,), b"time": (0,), b"quota": (0,),
    b"esp": (0,), b"ah": (0,), b"dscp": (0,), b"tos": (1,), b"ecn": (0,), b"cpu": (0,),
    b"bpf": (0, 1), b"nfacct": (0,), b"osf": (0,), b"cluster": (0,), b"connbytes": (0,),
    b"connlabel": (0,), b"ipcomp": (0,), b"set": (1, 2, 3, 4), b"ipvs": (0,),
    b"realm": (0,), b"l2tp": (0,), b"addrtype": (1,)}.items()}
MATCHES4 = {b"icmp": frozenset((0,)), b"ttl": frozenset((0,)),
            b"addrtype": frozenset((0, 1))}
MATCHES6 = {k: frozenset((0,)) for k in (b"icmp6", b"hl", b"ipv6header", b"frag", b"hbh",
                                         b"dst", b"rt", b"mh", b"eui64", b"srh")}
TARGETS: dict[bytes, frozenset[int]] = {k: frozenset(v) for k, v in {
    b"": (0,), b"ERROR": (0,), b"LOG": (0,), b"REJECT": (0,), b"MASQUERADE": (0,),
    b"SNAT": (1, 2), b"DNAT": (1, 2), b"REDIRECT": (0,), b"MARK": (2,), b"CONNMARK": (1,),
    b"TCPMSS": (0,), b"NFQUEUE": (0, 1, 2, 3), b"CT": (0, 1, 2), b"NOTRACK": (0,),
    b"TPROXY": (1,), b"TEE": (1,), b"CLASSIFY": (0,), b"DSCP": (0,), b"TOS": (1,),
    b"CHECKSUM": (0,), b"NETMAP": (0,), b"TRACE": (0,), b"AUDIT": (0,), b"SET": (0, 1, 2, 3),
    b"SECMARK": (0,), b"CONNSECMARK": (0,), b"IDLETIMER": (0, 1), b"LED": (0,),
    b"NFLOG": (0,), b"RATEEST": (0,), b"SYNPROXY": (0,), b"TCPOPTSTRIP": (0,),
    b"HMARK": (0,)}.items()}
TARGETS4 = {b"ECN": frozenset((0,)), b"TTL": frozenset((0,)),
            b"SNAT": frozenset((0, 1, 2)), b"DNAT": frozenset((0, 1, 2)),
            b"TPROXY": frozenset((0, 1))}
TARGETS6 = {b"HL": frozenset((0,))}


MAX_OPTLEN = 1 << 20                            # the largest buffer read


def version_of(family: int, level: int, name: int) -> int:
    """4 or 6 when getsockopt(level, name) on a socket of `family` is an iptables
    option (ip_getsockopt/ipv6_getsockopt pass them to nf_getsockopt), else 0."""
    if level == SOL_IP and family == AF_INET and name in GET_OPTIONS[4]:
        return 4
    if level == SOL_IPV6 and family == AF_INET6 and name in GET_OPTIONS[6]:
        return 6
    return 0


def revisions(version: int, name: bytes, target: bool) -> frozenset[int]:
    """The revisions of a match or target for IPv4 (4) or IPv6 (6); empty if the
    family has no such extension."""
    if target:
        own = TARGETS4 if version == 4 else TARGETS6
        return own.get(name) or TARGETS.get(name, frozenset())
    own = MATCHES4 if version == 4 else MATCHES6
    return own.get(name) or MATCHES.get(name, frozenset())


def find_revision(version: int, name: bytes, revision: int, target: bool) -> int:
    """xt_find_revision: the newest revision when `revision` exists, else
    EPROTONOSUPPORT (the extension lacks it) or ENOENT (no such extension)."""
    have = revisions(version, name, target)
    if not have:
        raise SyscallError(Errno.ENOENT)
    if revision not in have:
        raise SyscallError(Errno.EPROTONOSUPPORT)
    return max(have)


def _entry(version: int, target: bytes, comefrom: int) -> bytes:
    """An entry matching every packet, with `target` (struct xt_entry_target...)."""
    size = ENTRY_SIZE[version]
    head = bytearray(size)
    struct.pack_into("<HHI", head, TARGET_OFFSETS[version], size, size + len(target), comefrom)
    return bytes(head) + target


def initial_entries(version: int, hooks: int) -> tuple[bytes, list[int], int]:
    """A table's blob: one ACCEPT entry per hook, then the ERROR entry.  Returns
    (entries, each hook's offset (0xFFFFFFFF for hooks it lacks), number of entries)."""
    accept = struct.pack("<H29sBi4x", STANDARD_TARGET, b"", 0, -NF_ACCEPT - 1)
    error = struct.pack("<H29sB30s2x", ERROR_TARGET, b"ERROR", 0, b"ERROR")
    blob = b""
    offsets = [0xFFFFFFFF] * NF_INET_NUMHOOKS
    n = 0
    for h in range(NF_INET_NUMHOOKS):
        if hooks & (1 << h):
            offsets[h] = len(blob)
            blob += _entry(version, accept, 1 << h)
            n += 1
    return blob + _entry(version, error, 0), offsets, n + 1


def getsockopt(t: Task, version: int, name: int, optval: bytes) -> tuple[bytes, int]:
    """do_ipt_get_ctl / do_ip6t_get_ctl.  `optval` is the caller's whole buffer (its
    length is the optlen given).  Returns (bytes to copy out, getsockopt's return value)."""
    if not net_capable(t, CAP_NET_ADMIN):
        raise SyscallError(Errno.EPERM)
    if name == IPT_SO_GET_INFO:
        if len(optval) != GETINFO.size:
            raise SyscallError(Errno.EINVAL)
        tname = optval[:XT_TABLE_MAXNAMELEN - 1].split(b"\0")[0]
        hooks = TABLES.get(tname)
        if hooks is None:
            raise SyscallError(Errno.ENOENT)
        blob, offsets, n = initial_entries(version, hooks)
        return GETINFO.pack(tname, hooks, *offsets, *offsets, n, len(blob)), 0
    if name == IPT_SO_GET_ENTRIES:
        if len(optval) < GET_ENTRIES.size:
            raise SyscallError(Errno.EINVAL)
        raw_name, size = GET_ENTRIES.unpack_from(optval)
        if len(optval) != GET_ENTRIES.size + size:
            raise SyscallError(Errno.EINVAL)
        tname = raw_name[:XT_TABLE_MAXNAMELEN - 1].split(b"\0")[0]
        hooks = TABLES.get(tname)
        if hooks is None:
            raise SyscallError(Errno.ENOENT)
        blob, _, _ = initial_entries(version, hooks)
        if size != len(blob):
            raise SyscallError(Errno.EAGAIN)
        return GET_ENTRIES.pack(tname, size) + blob, 0
    targets = (IPT_SO_GET_REVISION_TARGET, IP6T_SO_GET_REVISION_TARGET)
    if name in (IPT_SO_GET_REVISION_MATCH, IP6T_SO_GET_REVISION_MATCH) + targets:
        if len(optval) != GET_REVISION.size:
            raise SyscallError(Errno.EINVAL)
        raw_name, revision = GET_REVISION.unpack(optval)
        find_revision(version, raw_name.split(b"\0")[0], revision, name in targets)
        return optval, 0          # ip_getsockopt returns put_user's 0, not the revision
    raise SyscallError(Errno.ENOPROTOOPT)
