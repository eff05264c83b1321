"""x_tables extensions inside nftables rules: the `match` and `target` expressions
iptables-nft sends, and the NFNL_SUBSYS_NFT_COMPAT revision query.  Linux:
net/netfilter/nft_compat.c, x_tables.c (xt_check_match/xt_check_target), and the
extensions' checkentry functions (xt_addrtype.c, xt_conntrack.c, xt_tcpudp.c,
xt_MASQUERADE.c, xt_nat.c).

Each modelled extension says its info size, the table and hooks it is limited to,
the protocol it needs and its own checks.  Other extensions iptables knows
(iptables.py's revision table) are accepted with their info as sent, unchecked
(TODO(#10)).  Checks Linux leaves to the ruleset's validation (the hook of a
base chain reached later, a `nat` table's chain type) are queued on the context.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket import iptables
from pyvisor.sentry.socket.netlink import nlattr
from pyvisor.sentry.socket.netlink.nlattr import Kind, Policy, be32, string

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netlink.nftables import ExprContext

# From <linux/netfilter/nf_tables_compat.h>, <linux/netfilter/nf_tables.h>.
NFTA_MATCH_NAME, NFTA_MATCH_REV, NFTA_MATCH_INFO = 1, 2, 3     # = NFTA_TARGET_*
NFTA_RULE_COMPAT_PROTO, NFTA_RULE_COMPAT_FLAGS = 1, 2
NFT_RULE_COMPAT_F_INV = 2
NFTA_COMPAT_NAME, NFTA_COMPAT_REV, NFTA_COMPAT_TYPE = 1, 2, 3
EXT_POLICY: Policy = {NFTA_MATCH_NAME: (Kind.STRING, 28), NFTA_MATCH_REV: (Kind.U32, 0),
                      NFTA_MATCH_INFO: (Kind.BINARY, 0)}
COMPAT_POLICY: Policy = {NFTA_RULE_COMPAT_PROTO: (Kind.U32, 0),
                         NFTA_RULE_COMPAT_FLAGS: (Kind.U32, 0)}
GET_POLICY: Policy = {NFTA_COMPAT_NAME: (Kind.STRING, 28), NFTA_COMPAT_REV: (Kind.U32, 0),
                      NFTA_COMPAT_TYPE: (Kind.U32, 0)}
NFPROTO_UNSPEC, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6 = 0, 1, 2, 10
IPPROTO_TCP, IPPROTO_UDP = 6, 17
PRE, LOCAL_IN, FORWARD, LOCAL_OUT, POST = (1 << h for h in range(5))
NF_NAT_RANGE_MAP_IPS = 1

Check = Callable[["ExprContext", bytes, int], None]   # (context, info, hook mask)


def _einval() -> SyscallError:
    return SyscallError(Errno.EINVAL)


def _addrtype_v1(ctx: ExprContext, info: bytes, hooks: int) -> None:
    """addrtype_mt_checkentry_v1."""
    source, dest, flags = struct.unpack_from("<HHI", info)
    if flags & 4 and flags & 8:                       # LIMIT_IFACE_IN and _OUT
        raise _einval()
    if hooks & (PRE | LOCAL_IN) and flags & 8:
        raise _einval()
    if hooks & (POST | LOCAL_OUT) and flags & 4:
        raise _einval()
    if ctx.table.family == NFPROTO_IPV6:
        kinds = source | dest
        if kinds & 64 or kinds >= 256 or kinds & 8:   # BLACKHOLE, >= PROHIBIT, BROADCAST
            raise _einval()


def _tcp(ctx: ExprContext, info: bytes, hooks: int) -> None:
    if info[11] & ~0x0F:                              # invflags & ~XT_TCP_INV_MASK
        raise _einval()


def _udp(ctx: ExprContext, info: bytes, hooks: int) -> None:
    if info[8] & ~0x03:
        raise _einval()


def _one_range(ctx: ExprContext, info: bytes, hooks: int) -> None:
    """xt_nat_checkentry_v0: one range only."""
    if struct.unpack_from("<I", info)[0] != 1:
        raise _einval()


def _masq4(ctx: ExprContext, info: bytes, hooks: int) -> None:
    """masquerade_tg_check: one range, no addresses."""
    rangesize, flags = struct.unpack_from("<II", info)
    if flags & NF_NAT_RANGE_MAP_IPS or rangesize != 1:
        raise _einval()


def _masq6(ctx: ExprContext, info: bytes, hooks: int) -> None:
    if struct.unpack_from("<I", info)[0] & NF_NAT_RANGE_MAP_IPS:
        raise _einval()


def _none(ctx: ExprContext, info: bytes, hooks: int) -> None:
    pass


@dataclass(frozen=True)
class Extension:
    """One registered revision.  Linux: struct xt_match / struct xt_target."""

    size: int                        # matchsize / targetsize
    family: int = NFPROTO_UNSPEC
    table: bytes | None = None
    hooks: int = 0                   # 0: any
    proto: int = 0
    check: Check = _none


SNAT_HOOKS, DNAT_HOOKS = POST | LOCAL_IN, PRE | LOCAL_OUT
MATCHES: dict[tuple[bytes, int], list[Extension]] = {
    (b"addrtype", 0): [Extension(12, NFPROTO_IPV4)],
    (b"addrtype", 1): [Extension(8, check=_addrtype_v1)],
    (b"conntrack", 1): [Extension(152)],
    (b"conntrack", 2): [Extension(156)],
    (b"conntrack", 3): [Extension(164)],
    (b"tcp", 0): [Extension(12, proto=IPPROTO_TCP, check=_tcp)],
    (b"udp", 0): [Extension(10, proto=IPPROTO_UDP, check=_udp)],
}
TARGETS: dict[tuple[bytes, int], list[Extension]] = {
    (b"MASQUERADE", 0): [Extension(20, NFPROTO_IPV4, b"nat", POST, check=_masq4),
                         Extension(40, NFPROTO_IPV6, b"nat", POST, check=_masq6)],
    (b"SNAT", 0): [Extension(20, NFPROTO_IPV4, b"nat", SNAT_HOOKS, check=_one_range)],
    (b"DNAT", 0): [Extension(20, NFPROTO_IPV4, b"nat", DNAT_HOOKS, check=_one_range)],
    (b"SNAT", 1): [Extension(40, table=b"nat", hooks=SNAT_HOOKS)],
    (b"DNAT", 1): [Extension(40, table=b"nat", hooks=DNAT_HOOKS)],
    (b"SNAT", 2): [Extension(44, table=b"nat", hooks=SNAT_HOOKS)],
    (b"DNAT", 2): [Extension(44, table=b"nat", hooks=DNAT_HOOKS)],
}


def _align(n: int) -> int:
    return (n + 7) & ~7                               # XT_ALIGN on 64-bit


def _find(target: bool, name: bytes, rev: int, family: int) -> Extension | None:
    """xt_request_find_match/target: the table family's own, else an UNSPEC one.
    An extension known only by name is returned as unchecked (size 0)."""
    table = TARGETS if target else MATCHES
    modelled = [e for e in table.get((name, rev), ()) if e.family in (family, NFPROTO_UNSPEC)]
    if modelled:
        own = [e for e in modelled if e.family == family]
        return (own or modelled)[0]
    if any(key[0] == name for key in table):
        return None                                   # a modelled name without that revision
    version = 6 if family == NFPROTO_IPV6 else 4
    if rev in iptables.revisions(version, name, target):
        return Extension(0)
    return None


def _compat(ctx: ExprContext) -> tuple[int, bool]:
    """nft_parse_compat: the rule's (protocol, inverted)."""
    if ctx.compat is None:
        return 0, False
    tb = nlattr.parse(ctx.compat, COMPAT_POLICY)
    if NFTA_RULE_COMPAT_PROTO not in tb or NFTA_RULE_COMPAT_FLAGS not in tb:
        raise _einval()
    flags = be32(tb[NFTA_RULE_COMPAT_FLAGS])
    if flags & ~NFT_RULE_COMPAT_F_INV:
        raise _einval()
    return be32(tb[NFTA_RULE_COMPAT_PROTO]), bool(flags & NFT_RULE_COMPAT_F_INV)


def check(ctx: ExprContext, data: bytes, target: bool) -> None:
    """nft_{match,target}_select_ops + __nft_{match,target}_init + their validate."""
    tb = nlattr.parse(data, EXT_POLICY)
    if NFTA_MATCH_NAME not in tb or NFTA_MATCH_REV not in tb or NFTA_MATCH_INFO not in tb:
        raise _einval()
    name = string(tb[NFTA_MATCH_NAME])
    if target and name in (b"ERROR", b"", b"standard"):
        raise _einval()
    ext = _find(target, name, be32(tb[NFTA_MATCH_REV]), ctx.table.family)
    if ext is None:
        raise SyscallError(Errno.ENOENT)
    info = tb[NFTA_MATCH_INFO]
    if ext.size > len(info):
        raise _einval()
    proto, inverted = _compat(ctx)
    hooks = 1 << ctx.chain.hook.num if ctx.chain.hook is not None else 0
    # xt_check_match / xt_check_target.
    if ext.size and _align(ext.size) != _align(len(info)):
        raise _einval()
    if ext.table is not None and ext.table != ctx.table.name:
        raise _einval()
    if ext.hooks and hooks & ~ext.hooks:
        raise _einval()
    if ext.proto and (ext.proto != proto or inverted):
        raise _einval()
    ext.check(ctx, info, hooks)

    def validate() -> None:
        """nft_{match,target}_validate on a base chain."""
        hook = ctx.chain.hook
        if hook is None:
            return
        if ext.hooks and not ext.hooks & (1 << hook.num):
            raise _einval()
        if ext.table == b"nat" and hook.ctype != b"nat":
            raise _einval()
    ctx.validations.append(validate)


def revision_reply(family: int, attrs: dict[int, bytes]) -> tuple[bytes, int, int]:
    """nfnl_compat_get_rcu: (name, newest revision, type) or an errno."""
    if NFTA_COMPAT_NAME not in attrs or NFTA_COMPAT_REV not in attrs or \
            NFTA_COMPAT_TYPE not in attrs:
        raise _einval()
    if family not in (NFPROTO_IPV4, NFPROTO_IPV6):
        raise _einval()                               # (bridge and arp: no extensions here)
    name = string(attrs[NFTA_COMPAT_NAME])
    kind = be32(attrs[NFTA_COMPAT_TYPE])
    version = 6 if family == NFPROTO_IPV6 else 4
    try:
        best = iptables.find_revision(version, name, be32(attrs[NFTA_COMPAT_REV]), kind == 1)
    except SyscallError as e:
        if e.errno == Errno.ENOENT:
            raise _einval() from None                 # no module to load either
        raise
    return name, best, kind
