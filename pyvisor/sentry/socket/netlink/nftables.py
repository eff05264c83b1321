"""nftables state of one network namespace: tables, chains, rules.  Linux:
net/netfilter/nf_tables_api.c (the objects and their checks), nft_immediate.c;
gVisor: pkg/tcpip/nftables.

The model is what nf_tables_api.c keeps and checks: tables per family with
handles from the namespace's counter, chains and rules with handles from
their table's counter, base chains with a hook, priority, type and policy,
`use` counts (a table's chains; a chain's rules and the jumps to it), owner
tables bound to a netlink port, and anonymous (binding) chains bound by the
one jump to them.  Rule expressions are kept as their dump: `immediate` is
parsed and validated as nft_immediate.c does (registers, verdicts, jumps); the
common others are checked as their modules do (nft_exprs.py) and kept as sent;
the remaining types Linux knows are kept as sent, unchecked (TODO(#10)).
Nothing evaluates rules on packets yet.

Changes come in batches (netfilter.py): a batch works on a deep copy that
replaces the namespace's state only when every message in it succeeded, as
nf_tables_commit/abort do.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.netlink import nft_compat, nft_exprs, nlattr
from pyvisor.sentry.socket.netlink.nlattr import Kind, Policy, be32, be64, string

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netlink.nft_sets import Set

# From <linux/netfilter.h>.
NFPROTO_UNSPEC, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_ARP = 0, 1, 2, 3
NFPROTO_NETDEV, NFPROTO_BRIDGE, NFPROTO_IPV6 = 5, 7, 10
FAMILIES = (NFPROTO_INET, NFPROTO_IPV4, NFPROTO_ARP, NFPROTO_NETDEV, NFPROTO_BRIDGE,
            NFPROTO_IPV6)
NF_DROP, NF_ACCEPT, NF_QUEUE = 0, 1, 3
NF_VERDICT_MASK = 0xFF
NF_INET_PRE_ROUTING, NF_INET_LOCAL_IN, NF_INET_FORWARD = 0, 1, 2
NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING, NF_INET_INGRESS = 3, 4, 5
NF_IP_PRI_CONNTRACK = -200

# From <linux/netfilter/nf_tables.h>.
NFT_TABLE_F_DORMANT, NFT_TABLE_F_OWNER, NFT_TABLE_F_PERSIST = 1, 2, 4
NFT_TABLE_F_MASK = 7
NFT_CHAIN_BASE, NFT_CHAIN_HW_OFFLOAD, NFT_CHAIN_BINDING = 1, 2, 4
NFT_CHAIN_FLAGS = 7
NFT_REG_VERDICT, NFT_REG_4, NFT_REG32_00, NFT_REG32_15 = 0, 4, 8, 23
NFT_CONTINUE, NFT_BREAK, NFT_JUMP, NFT_GOTO, NFT_RETURN = -1, -2, -3, -4, -5
NFT_RULE_MAXEXPRS = 128
NFT_NAME_MAXLEN, NFT_USERDATA_MAXLEN = 256, 256
NFT_REGS_BYTES = 80                 # sizeof(struct nft_regs.data)
NFT_DATA_VALUE_MAXLEN = 64
MAX_OBJECTS = 1 << 16               # per namespace: what the Sentry holds for the sandbox

NFTA_TABLE_NAME, NFTA_TABLE_FLAGS, NFTA_TABLE_USE, NFTA_TABLE_HANDLE = 1, 2, 3, 4
NFTA_TABLE_USERDATA, NFTA_TABLE_OWNER = 6, 7
NFTA_CHAIN_TABLE, NFTA_CHAIN_HANDLE, NFTA_CHAIN_NAME, NFTA_CHAIN_HOOK = 1, 2, 3, 4
NFTA_CHAIN_POLICY, NFTA_CHAIN_USE, NFTA_CHAIN_TYPE, NFTA_CHAIN_COUNTERS = 5, 6, 7, 8
NFTA_CHAIN_FLAGS, NFTA_CHAIN_ID, NFTA_CHAIN_USERDATA = 10, 11, 12
NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY, NFTA_HOOK_DEV, NFTA_HOOK_DEVS = 1, 2, 3, 4
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE, NFTA_RULE_EXPRESSIONS = 1, 2, 3, 4
NFTA_RULE_COMPAT, NFTA_RULE_POSITION, NFTA_RULE_USERDATA = 5, 6, 7
NFTA_RULE_ID, NFTA_RULE_POSITION_ID, NFTA_RULE_CHAIN_ID = 9, 10, 11
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 2
NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA = 1, 2
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN, NFTA_VERDICT_CHAIN_ID = 1, 2, 3

TABLE_POLICY: Policy = {
    NFTA_TABLE_NAME: (Kind.STRING, NFT_NAME_MAXLEN - 1), NFTA_TABLE_FLAGS: (Kind.U32, 0),
    NFTA_TABLE_HANDLE: (Kind.U64, 0),
    NFTA_TABLE_USERDATA: (Kind.BINARY, NFT_USERDATA_MAXLEN)}
CHAIN_POLICY: Policy = {
    NFTA_CHAIN_TABLE: (Kind.STRING, NFT_NAME_MAXLEN - 1), NFTA_CHAIN_HANDLE: (Kind.U64, 0),
    NFTA_CHAIN_NAME: (Kind.STRING, NFT_NAME_MAXLEN - 1), NFTA_CHAIN_HOOK: (Kind.NESTED, 0),
    NFTA_CHAIN_POLICY: (Kind.U32, 0), NFTA_CHAIN_TYPE: (Kind.STRING, 64),
    NFTA_CHAIN_COUNTERS: (Kind.NESTED, 0), NFTA_CHAIN_FLAGS: (Kind.U32, 0),
    NFTA_CHAIN_ID: (Kind.U32, 0), NFTA_CHAIN_USERDATA: (Kind.BINARY, NFT_USERDATA_MAXLEN)}
HOOK_POLICY: Policy = {
    NFTA_HOOK_HOOKNUM: (Kind.U32, 0), NFTA_HOOK_PRIORITY: (Kind.U32, 0),
    NFTA_HOOK_DEV: (Kind.STRING, 15), NFTA_HOOK_DEVS: (Kind.NESTED, 0)}
COUNTER_POLICY: Policy = {NFTA_COUNTER_BYTES: (Kind.U64, 0), NFTA_COUNTER_PACKETS: (Kind.U64, 0)}
RULE_POLICY: Policy = {
    NFTA_RULE_TABLE: (Kind.STRING, NFT_NAME_MAXLEN - 1),
    NFTA_RULE_CHAIN: (Kind.STRING, NFT_NAME_MAXLEN - 1), NFTA_RULE_HANDLE: (Kind.U64, 0),
    NFTA_RULE_EXPRESSIONS: (Kind.NESTED, 0), NFTA_RULE_COMPAT: (Kind.NESTED, 0),
    NFTA_RULE_POSITION: (Kind.U64, 0), NFTA_RULE_USERDATA: (Kind.BINARY, NFT_USERDATA_MAXLEN),
    NFTA_RULE_ID: (Kind.U32, 0), NFTA_RULE_POSITION_ID: (Kind.U32, 0),
    NFTA_RULE_CHAIN_ID: (Kind.U32, 0)}
EXPR_POLICY: Policy = {NFTA_EXPR_NAME: (Kind.STRING, 15), NFTA_EXPR_DATA: (Kind.NESTED, 0)}
IMMEDIATE_POLICY: Policy = {NFTA_IMMEDIATE_DREG: (Kind.U32, 0),
                            NFTA_IMMEDIATE_DATA: (Kind.NESTED, 0)}
DATA_POLICY: Policy = {NFTA_DATA_VALUE: (Kind.BINARY, NFT_DATA_VALUE_MAXLEN),
                       NFTA_DATA_VERDICT: (Kind.NESTED, 0)}
VERDICT_POLICY: Policy = {NFTA_VERDICT_CODE: (Kind.U32, 0),
                          NFTA_VERDICT_CHAIN: (Kind.STRING, NFT_NAME_MAXLEN - 1),
                          NFTA_VERDICT_CHAIN_ID: (Kind.U32, 0)}

_INET_HOOKS = 0b11111
# The base chain types and the hooks each allows, per family (nft_chain_filter.c,
# nft_chain_nat.c, nft_chain_route.c).
CHAIN_TYPES: dict[int, dict[bytes, int]] = {
    NFPROTO_IPV4: {b"filter": _INET_HOOKS, b"nat": 0b11011, b"route": 1 << NF_INET_LOCAL_OUT},
    NFPROTO_IPV6: {b"filter": _INET_HOOKS, b"nat": 0b11011, b"route": 1 << NF_INET_LOCAL_OUT},
    NFPROTO_INET: {b"filter": _INET_HOOKS | 1 << NF_INET_INGRESS, b"nat": 0b11011,
                   b"route": 1 << NF_INET_LOCAL_OUT},
    NFPROTO_ARP: {b"filter": 0b11},
    NFPROTO_BRIDGE: {b"filter": _INET_HOOKS},
    NFPROTO_NETDEV: {b"filter": 0b11},
}
NFT_MAX_HOOKS = 6

# Expression types Linux registers (nf_tables_core.c and the nft_* modules).
EXPR_TYPES = frozenset((
    b"immediate", b"cmp", b"lookup", b"bitwise", b"byteorder", b"payload", b"meta", b"counter",
    b"ct", b"fib", b"nat", b"masq", b"redir", b"log", b"limit", b"reject", b"match",
    b"target", b"range", b"last", b"quota", b"dynset", b"exthdr", b"hash", b"numgen",
    b"objref", b"queue", b"socket", b"rt", b"fwd", b"dup", b"connlimit", b"notrack",
    b"synproxy", b"tproxy", b"xfrm", b"osf", b"tunnel", b"flow_offload", b"inner"))


def _err(e: Errno) -> SyscallError:
    return SyscallError(e)


class HandleCounter:
    """A handle generator.  A batch's copy shares it with the ruleset (deepcopy
    returns it), because Linux does not take back the handles of an aborted batch."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last

    def __deepcopy__(self, memo: dict[int, object]) -> HandleCounter:
        return self


@dataclass(eq=False)
class Hook:
    """A base chain's attachment.  Linux: struct nft_chain_hook."""

    num: int
    priority: int
    ctype: bytes                     # b"filter", b"nat", b"route"


@dataclass(eq=False)
class Rule:
    """Linux: struct nft_rule."""

    handle: int
    exprs: list[bytes]               # each NFTA_LIST_ELEM's payload as dumped
    udata: bytes | None = None
    targets: list[Chain] = field(default_factory=list)   # chains its verdicts jump to
    sets: list[Set] = field(default_factory=list)        # sets its lookups use


@dataclass(eq=False)
class Chain:
    """Linux: struct nft_chain (+ nft_base_chain)."""

    table: Table
    name: bytes
    handle: int
    flags: int = 0
    hook: Hook | None = None
    policy: int = NF_ACCEPT
    counters: tuple[int, int] | None = None     # (packets, bytes) of a base chain
    udata: bytes | None = None
    rules: list[Rule] = field(default_factory=list)
    use: int = 0                     # its rules and the verdicts jumping to it
    bound: bool = False              # a binding chain the one rule jumping to it holds


@dataclass(eq=False)
class Table:
    """Linux: struct nft_table."""

    family: int
    name: bytes
    handle: int
    flags: int = 0
    owner: int = 0                   # the netlink port of an NFT_TABLE_F_OWNER table
    udata: bytes | None = None
    chains: list[Chain] = field(default_factory=list)
    sets: list[Set] = field(default_factory=list)
    hgenerator: HandleCounter = field(default_factory=HandleCounter)   # chains, rules

    @property
    def use(self) -> int:
        return len(self.chains) + len(self.sets)

    def alloc_handle(self) -> int:
        return self.hgenerator.next()


@dataclass(eq=False)
class NFTables:
    """One network namespace's ruleset.  Linux: struct nftables_pernet."""

    tables: list[Table] = field(default_factory=list)
    table_handles: HandleCounter = field(default_factory=HandleCounter)
    genid: int = 1
    anon_chains: HandleCounter = field(default_factory=HandleCounter)  # their names

    # -- lookups -------------------------------------------------------------------------

    def table(self, name: bytes | None, family: int, portid: int) -> Table:
        """nft_table_lookup: EINVAL without a name, ENOENT if absent, EPERM if owned by
        another port (portid 0: anyone may look)."""
        if name is None:
            raise _err(Errno.EINVAL)
        want = string(name)
        for t in self.tables:
            if t.family == family and t.name == want:
                if t.flags & NFT_TABLE_F_OWNER and portid and t.owner != portid:
                    raise _err(Errno.EPERM)
                return t
        raise _err(Errno.ENOENT)

    def table_by_handle(self, handle: bytes, family: int, portid: int) -> Table:
        h = be64(handle)
        for t in self.tables:
            if t.family == family and t.handle == h:
                if t.flags & NFT_TABLE_F_OWNER and t.owner != portid:
                    raise _err(Errno.EPERM)
                return t
        raise _err(Errno.ENOENT)

    def by_family(self, family: int) -> list[Table]:
        return [t for t in self.tables if family in (NFPROTO_UNSPEC, t.family)]

    # -- tables ----------------------------------------------------------------------------

    def new_table(self, family: int, name: bytes, flags: int, udata: bytes | None,
                  portid: int) -> Table:
        t = Table(family, name, self.table_handles.next(), flags & NFT_TABLE_F_MASK,
                  udata=udata)
        if flags & NFT_TABLE_F_OWNER:
            t.owner = portid
        self.tables.append(t)
        return t

    def delete_table(self, t: Table) -> None:
        """nft_flush_table: its rules, then its chains, then the table."""
        for c in t.chains:
            for r in list(c.rules):
                self.delete_rule(c, r)
        t.chains.clear()
        t.sets.clear()
        self.tables.remove(t)

    def flush(self, family: int, name: bytes | None, portid: int) -> None:
        """nft_flush: every table of `family` (all families for UNSPEC) this port may
        change, or only those called `name`."""
        for t in list(self.tables):
            if family != NFPROTO_UNSPEC and t.family != family:
                continue
            if t.flags & NFT_TABLE_F_OWNER and t.owner != portid:
                continue
            if name is not None and t.name != string(name):
                continue
            self.delete_table(t)

    def release_port(self, portid: int) -> None:
        """The owner's socket closed: its tables go (nft_rcv_nl_event)."""
        for t in list(self.tables):
            if t.flags & NFT_TABLE_F_OWNER and t.owner == portid and \
                    not t.flags & NFT_TABLE_F_PERSIST:
                self.delete_table(t)
                self.genid += 1

    def size(self) -> int:
        """Objects held: tables, chains, rules, sets and set elements."""
        n = 0
        for t in self.tables:
            n += 1 + len(t.chains) + sum(len(c.rules) for c in t.chains)
            n += sum(1 + len(st.elements) for st in t.sets)
        return n

    def unbound_chains(self) -> list[Chain]:
        """Binding chains no rule holds."""
        return [c for t in self.tables for c in t.chains
                if c.flags & NFT_CHAIN_BINDING and not c.bound]

    # -- chains -----------------------------------------------------------------------------

    def delete_rule(self, c: Chain, r: Rule) -> None:
        c.rules.remove(r)
        c.use -= 1
        for s in r.sets:
            s.use -= 1
        for target in r.targets:
            target.use -= 1
            if target.flags & NFT_CHAIN_BINDING and target.bound:
                # The rule holding a binding chain takes it along (nft_immediate_destroy).
                for rr in list(target.rules):
                    self.delete_rule(target, rr)
                if target in target.table.chains:
                    target.table.chains.remove(target)


def chain_by_name(t: Table, name: bytes | None) -> Chain:
    """nft_chain_lookup: EINVAL without a name, ENOENT if absent."""
    if name is None:
        raise _err(Errno.EINVAL)
    want = string(name)
    for c in t.chains:
        if c.name == want:
            return c
    raise _err(Errno.ENOENT)


def chain_by_handle(t: Table, handle: bytes) -> Chain:
    h = be64(handle)
    for c in t.chains:
        if c.handle == h:
            return c
    raise _err(Errno.ENOENT)


def rule_by_handle(c: Chain, handle: bytes) -> Rule:
    h = be64(handle)
    for r in c.rules:
        if r.handle == h:
            return r
    raise _err(Errno.ENOENT)


def parse_hook(family: int, attrs: dict[int, bytes]) -> Hook:
    """nft_chain_parse_hook."""
    ha = nlattr.parse(attrs[NFTA_CHAIN_HOOK], HOOK_POLICY)
    if NFTA_HOOK_HOOKNUM not in ha or NFTA_HOOK_PRIORITY not in ha:
        raise _err(Errno.ENOENT)
    num = be32(ha[NFTA_HOOK_HOOKNUM])
    prio = struct.unpack(">i", ha[NFTA_HOOK_PRIORITY][:4])[0]
    types = CHAIN_TYPES.get(family)
    if not types:
        raise _err(Errno.EOPNOTSUPP)
    ctype = b"filter"
    if NFTA_CHAIN_TYPE in attrs:
        ctype = string(attrs[NFTA_CHAIN_TYPE])
        if ctype not in types:
            raise _err(Errno.ENOENT)
    if num >= NFT_MAX_HOOKS or not types[ctype] & (1 << num):
        raise _err(Errno.EOPNOTSUPP)
    if ctype == b"nat" and prio <= NF_IP_PRI_CONNTRACK:
        raise _err(Errno.EOPNOTSUPP)
    if family == NFPROTO_NETDEV or (family == NFPROTO_INET and num == NF_INET_INGRESS):
        # Hooks on devices: the sandbox has none to attach to.
        raise _err(Errno.EOPNOTSUPP)
    if NFTA_HOOK_DEV in ha or NFTA_HOOK_DEVS in ha:
        raise _err(Errno.EOPNOTSUPP)
    return Hook(num, prio, ctype)


def parse_counters(data: bytes) -> tuple[int, int]:
    """nft_stats_alloc: both counters are required."""
    tb = nlattr.parse(data, COUNTER_POLICY)
    if NFTA_COUNTER_BYTES not in tb or NFTA_COUNTER_PACKETS not in tb:
        raise _err(Errno.EINVAL)
    return be64(tb[NFTA_COUNTER_PACKETS]), be64(tb[NFTA_COUNTER_BYTES])


# -- expressions ---------------------------------------------------------------------------


@dataclass
class ExprContext:
    """What an expression's init sees.  Linux: struct nft_ctx."""

    table: Table
    chain: Chain
    chain_ids: dict[tuple[Table, int], Chain]      # NFTA_CHAIN_ID of this batch's chains
    set_ids: dict[tuple[Table, int], Set]          # NFTA_SET_ID of this batch's sets
    targets: list[Chain] = field(default_factory=list)
    sets: list[Set] = field(default_factory=list)    # sets its lookups use
    compat: bytes | None = None                       # the rule's NFTA_RULE_COMPAT
    inited: set[int] = field(default_factory=set)     # register words written so far
    validations: list[Callable[[], None]] = field(default_factory=list)   # at commit


def parse_expr(ctx: ExprContext, elem: bytes) -> bytes:
    """nf_tables_expr_parse + the type's init: the expression's dump (NAME, DATA)."""
    tb = nlattr.parse(elem, EXPR_POLICY)
    if NFTA_EXPR_NAME not in tb:
        raise _err(Errno.EINVAL)
    name = string(tb[NFTA_EXPR_NAME])
    if name not in EXPR_TYPES:
        raise _err(Errno.ENOENT)
    data = tb.get(NFTA_EXPR_DATA, b"")
    if name == b"immediate":
        data = immediate_init(ctx, data)
    else:
        checked = nft_exprs.EXPRS.get(name)
        if name in (b"match", b"target"):
            nft_compat.check(ctx, data, name == b"target")
            data = b"".join(nlattr.attr(t, p) for t, p in nlattr.split(data))
        elif checked is not None:
            policy, check = checked
            data = check(ctx, nlattr.parse(data, policy))
        else:
            data = b"".join(nlattr.attr(t, p) for t, p in nlattr.split(data))
    out = nlattr.attr_str(NFTA_EXPR_NAME, name)
    if data:
        out += nlattr.attr(NFTA_EXPR_DATA, data)
    return out


def immediate_init(ctx: ExprContext, data: bytes) -> bytes:
    """nft_immediate_init (and nft_data_init, nft_verdict_init, register checks)."""
    tb = nlattr.parse(data, IMMEDIATE_POLICY)
    if NFTA_IMMEDIATE_DREG not in tb or NFTA_IMMEDIATE_DATA not in tb:
        raise _err(Errno.EINVAL)
    dtb = nlattr.parse(tb[NFTA_IMMEDIATE_DATA], DATA_POLICY)
    verdict: tuple[int, Chain | None] | None = None
    if NFTA_DATA_VALUE in dtb:
        value = dtb[NFTA_DATA_VALUE]
        if not value:
            raise _err(Errno.EINVAL)
        if len(value) > 16:                   # sizeof(struct nft_data)
            raise _err(Errno.EOVERFLOW)
    elif NFTA_DATA_VERDICT in dtb:
        verdict = _verdict_init(ctx, dtb[NFTA_DATA_VERDICT])
    else:
        raise _err(Errno.EINVAL)
    try:
        if verdict is None:
            idx = nft_exprs.store(ctx, tb[NFTA_IMMEDIATE_DREG], len(value))
        else:
            idx = nft_exprs.register(tb[NFTA_IMMEDIATE_DREG])
            if idx != NFT_REG_VERDICT:
                raise _err(Errno.EINVAL)
    except SyscallError:
        if verdict is not None and verdict[1] is not None:
            verdict[1].use -= 1              # nft_data_release
        raise
    out = nlattr.attr_be32(NFTA_IMMEDIATE_DREG, nft_exprs.dump_register(idx))
    if verdict is None:
        inner = nlattr.attr(NFTA_DATA_VALUE, value)
    else:
        code, chain = verdict
        v = nlattr.attr_be32(NFTA_VERDICT_CODE, code)
        if chain is not None:
            v += nlattr.attr_str(NFTA_VERDICT_CHAIN, chain.name)
            ctx.targets.append(chain)
            if chain.flags & NFT_CHAIN_BINDING:
                chain.bound = True
        inner = nlattr.attr(NFTA_DATA_VERDICT, v)
    return out + nlattr.attr(NFTA_IMMEDIATE_DATA, inner)


def _verdict_init(ctx: ExprContext, data: bytes) -> tuple[int, Chain | None]:
    tb = nlattr.parse(data, VERDICT_POLICY)
    if NFTA_VERDICT_CODE not in tb:
        raise _err(Errno.EINVAL)
    code = struct.unpack(">i", tb[NFTA_VERDICT_CODE][:4])[0]
    if code in (NF_ACCEPT, NF_DROP, NF_QUEUE, NFT_CONTINUE, NFT_BREAK, NFT_RETURN):
        return code, None
    if code in (NFT_JUMP, NFT_GOTO):
        if NFTA_VERDICT_CHAIN in tb:
            chain = chain_by_name(ctx.table, tb[NFTA_VERDICT_CHAIN])
        elif NFTA_VERDICT_CHAIN_ID in tb:
            found = ctx.chain_ids.get((ctx.table, be32(tb[NFTA_VERDICT_CHAIN_ID])))
            if found is None:
                raise _err(Errno.ENOENT)
            chain = found
        else:
            raise _err(Errno.EINVAL)
        if chain.hook is not None:
            raise _err(Errno.EOPNOTSUPP)
        if chain.bound:
            raise _err(Errno.EINVAL)
        chain.use += 1
        return code, chain
    if code & NF_VERDICT_MASK in (NF_ACCEPT, NF_DROP, NF_QUEUE):
        return code, None
    raise _err(Errno.EINVAL)
