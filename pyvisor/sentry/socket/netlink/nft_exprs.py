"""nftables expressions other than `immediate`: their attribute policies and the
checks their init and validate functions make.  Linux: net/netfilter/nft_payload.c,
nft_meta.c, nft_cmp.c, nft_bitwise.c, nft_ct.c, nft_nat.c, nft_masq.c,
nft_lookup.c, nft_fib.c, nft_counter.c (and nf_tables_api.c's register checks).

Each checker returns the expression's dump, built as the module's dump function
builds it (its attribute order, registers numbered as nft_dump_register numbers
them).  Registers are indexes of 32-bit words: NFT_REG_1..4 are 16 bytes wide,
NFT_REG32_00..15 4 bytes; reading words no earlier expression of the rule wrote is
ENODATA, as in Linux 6.x.  Checks Linux makes only when the ruleset is validated
(a NAT expression's chain type and hook) are queued on the context
(`ExprContext.validations`): netfilter.py runs them at commit.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.netlink import nlattr
from pyvisor.sentry.socket.netlink.nlattr import Kind, Policy, be32

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netlink.nftables import ExprContext

NFT_REG_VERDICT, NFT_REG_4, NFT_REG32_00, NFT_REG32_15 = 0, 4, 8, 23
NFT_REGS_BYTES = 80                 # sizeof_field(struct nft_regs, data)
NFT_DATA_SIZE = 16                  # sizeof(struct nft_data)
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NF_INET_PRE_ROUTING, NF_INET_LOCAL_IN, NF_INET_FORWARD = 0, 1, 2
NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING = 3, 4
NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6 = 1, 2, 10
NF_NAT_RANGE_MASK = 0x7F

_DATA_POLICY: Policy = {NFTA_DATA_VALUE: (Kind.BINARY, 64), NFTA_DATA_VERDICT: (Kind.NESTED, 0)}


def _err(e: Errno) -> SyscallError:
    return SyscallError(e)


def register(payload: bytes) -> int:
    """nft_parse_register: the register's index in 32-bit words (ERANGE if none)."""
    reg = be32(payload)
    if reg <= NFT_REG_4:
        return reg * 4
    if NFT_REG32_00 <= reg <= NFT_REG32_15:
        return reg - NFT_REG32_00 + 4
    raise _err(Errno.ERANGE)


def dump_register(idx: int) -> int:
    """nft_dump_register: a 16-byte register's number where the index allows it."""
    return idx // 4 if idx % 4 == 0 else idx - 4 + NFT_REG32_00


def _words(idx: int, length: int) -> range:
    return range(idx, idx + (length + 3) // 4)


def load(ctx: ExprContext, payload: bytes, length: int) -> int:
    """nft_parse_register_load: a register `length` bytes are read from."""
    idx = register(payload)
    if idx < 4 or length == 0:
        raise _err(Errno.EINVAL)
    if idx * 4 + length > NFT_REGS_BYTES:
        raise _err(Errno.ERANGE)
    if any(w not in ctx.inited for w in _words(idx, length)):
        raise _err(Errno.ENODATA)
    return idx


def store(ctx: ExprContext, payload: bytes, length: int) -> int:
    """nft_parse_register_store for a value (not a verdict) of `length` bytes."""
    idx = register(payload)
    if idx == NFT_REG_VERDICT or length == 0:
        raise _err(Errno.EINVAL)
    if idx * 4 + length > NFT_REGS_BYTES:
        raise _err(Errno.ERANGE)
    ctx.inited.update(_words(idx, length))
    return idx


def a32(atype: int, v: int) -> bytes:
    return nlattr.attr_be32(atype, v)


def areg(atype: int, idx: int) -> bytes:
    return nlattr.attr_be32(atype, dump_register(idx))


def adata(atype: int, v: bytes) -> bytes:
    """nft_data_dump of a value."""
    return nlattr.attr(atype, nlattr.attr(NFTA_DATA_VALUE, v))


def value(payload: bytes, size: int = NFT_DATA_SIZE, length: int = 0) -> bytes:
    """nft_data_init without a context: only NFTA_DATA_VALUE is allowed; `length`, if
    given, is the length it must have."""
    tb = nlattr.parse(payload, _DATA_POLICY)
    if NFTA_DATA_VALUE not in tb:
        raise _err(Errno.EINVAL)
    v = tb[NFTA_DATA_VALUE]
    if not v:
        raise _err(Errno.EINVAL)
    if len(v) > size:
        raise _err(Errno.EOVERFLOW)
    if length and len(v) != length:
        raise _err(Errno.EINVAL)
    return v


def _u32(tb: dict[int, bytes], key: int) -> int:
    return be32(tb[key])


def _hooks(ctx: ExprContext, allowed: int, ctype: bytes | None = None) -> None:
    """nft_chain_validate_dependency + nft_chain_validate_hooks (base chains only), as
    the ruleset's validation runs them."""
    hook = ctx.chain.hook

    def validate() -> None:
        if hook is None:
            return
        if ctype is not None and hook.ctype != ctype:
            raise _err(Errno.EOPNOTSUPP)
        if not allowed & (1 << hook.num):
            raise _err(Errno.EOPNOTSUPP)
    ctx.validations.append(validate)


# -- payload --------------------------------------------------------------------------------

PAYLOAD_DREG, PAYLOAD_BASE, PAYLOAD_OFFSET, PAYLOAD_LEN, PAYLOAD_SREG = 1, 2, 3, 4, 5
PAYLOAD_CSUM_TYPE, PAYLOAD_CSUM_OFFSET, PAYLOAD_CSUM_FLAGS = 6, 7, 8
PAYLOAD_POLICY: Policy = {k: (Kind.U32, 0) for k in range(1, 9)}


def payload(ctx: ExprContext, tb: dict[int, bytes]) -> bytes:
    """nft_payload_select_ops, nft_payload_init, nft_payload_set_init; their dumps."""
    if PAYLOAD_BASE not in tb or PAYLOAD_OFFSET not in tb or PAYLOAD_LEN not in tb:
        raise _err(Errno.EINVAL)
    base = _u32(tb, PAYLOAD_BASE)
    if base > 3:                                  # LL, NETWORK, TRANSPORT, INNER
        raise _err(Errno.EOPNOTSUPP)
    if PAYLOAD_SREG in tb and PAYLOAD_DREG in tb:
        raise _err(Errno.EINVAL)
    if PAYLOAD_SREG not in tb and PAYLOAD_DREG not in tb:
        raise _err(Errno.EINVAL)
    offset, length = _u32(tb, PAYLOAD_OFFSET), _u32(tb, PAYLOAD_LEN)
    if offset > 0xFFFF or length > 0xFF:
        raise _err(Errno.ERANGE)
    head = a32(PAYLOAD_BASE, base) + a32(PAYLOAD_OFFSET, offset) + a32(PAYLOAD_LEN, length)
    if PAYLOAD_DREG in tb:
        return areg(PAYLOAD_DREG, store(ctx, tb[PAYLOAD_DREG], length)) + head
    csum = _u32(tb, PAYLOAD_CSUM_TYPE) if PAYLOAD_CSUM_TYPE in tb else 0
    csum_offset = _u32(tb, PAYLOAD_CSUM_OFFSET) if PAYLOAD_CSUM_OFFSET in tb else 0
    if csum_offset > 0xFF:
        raise _err(Errno.ERANGE)
    csum_flags = _u32(tb, PAYLOAD_CSUM_FLAGS) if PAYLOAD_CSUM_FLAGS in tb else 0
    if csum_flags & ~1:                           # NFT_PAYLOAD_L4CSUM_PSEUDOHDR
        raise _err(Errno.EINVAL)
    if csum == 2:                                 # NFT_PAYLOAD_CSUM_SCTP
        if base != 2 or csum_offset != 8:
            raise _err(Errno.EINVAL)
    elif csum not in (0, 1):
        raise _err(Errno.EOPNOTSUPP)
    sreg = load(ctx, tb[PAYLOAD_SREG], length)
    return areg(PAYLOAD_SREG, sreg) + head + a32(PAYLOAD_CSUM_TYPE, csum) + \
        a32(PAYLOAD_CSUM_OFFSET, csum_offset) + a32(PAYLOAD_CSUM_FLAGS, csum_flags)


# -- meta -------------------------------------------------------------------------------------

META_DREG, META_KEY, META_SREG = 1, 2, 3
META_POLICY: Policy = {META_DREG: (Kind.U32, 0), META_KEY: (Kind.BE32_MAX, 255),
                       META_SREG: (Kind.U32, 0)}
# enum nft_meta_keys -> the length nft_meta_get_init stores.
META_LENGTHS = {0: 4, 1: 2, 2: 4, 3: 4, 4: 4, 5: 4, 6: 16, 7: 16, 8: 2, 9: 2, 10: 4, 11: 4,
                12: 1, 13: 4, 14: 4, 15: 1, 16: 1, 19: 1, 20: 4, 21: 4, 22: 4, 23: 4, 24: 4,
                25: 1, 26: 16, 27: 16, 30: 8, 31: 1, 32: 4, 33: 4, 34: 16}
META_SET_LENGTHS = {2: 4, 3: 4, 12: 1, 19: 1}    # PRIORITY, MARK, NFTRACE, PKTTYPE


def meta(ctx: ExprContext, tb: dict[int, bytes]) -> bytes:
    """nft_meta_select_ops, nft_meta_get_init, nft_meta_set_init; their dumps."""
    if META_KEY not in tb or (META_DREG in tb and META_SREG in tb):
        raise _err(Errno.EINVAL)
    key = _u32(tb, META_KEY)
    if META_DREG in tb:
        if key not in META_LENGTHS:
            raise _err(Errno.EOPNOTSUPP)
        return a32(META_KEY, key) + areg(META_DREG, store(ctx, tb[META_DREG], META_LENGTHS[key]))
    if META_SREG in tb:
        if key not in META_SET_LENGTHS:
            raise _err(Errno.EOPNOTSUPP)
        sreg = load(ctx, tb[META_SREG], META_SET_LENGTHS[key])
        return a32(META_KEY, key) + areg(META_SREG, sreg)
    raise _err(Errno.EINVAL)


# -- cmp ----------------------------------------------------------------------------------------

CMP_SREG, CMP_OP, CMP_DATA = 1, 2, 3
CMP_POLICY: Policy = {CMP_SREG: (Kind.U32, 0), CMP_OP: (Kind.U32, 0),
                      CMP_DATA: (Kind.NESTED, 0)}


def cmp(ctx: ExprContext, tb: dict[int, bytes]) -> bytes:
    """nft_cmp_select_ops, nft_cmp_init; nft_cmp_dump."""
    if CMP_SREG not in tb or CMP_OP not in tb or CMP_DATA not in tb:
        raise _err(Errno.EINVAL)
    op = _u32(tb, CMP_OP)
    if op > 5:                                    # EQ NEQ LT LTE GT GTE
        raise _err(Errno.EINVAL)
    data = value(tb[CMP_DATA])
    sreg = load(ctx, tb[CMP_SREG], len(data))
    return areg(CMP_SREG, sreg) + a32(CMP_OP, op) + adata(CMP_DATA, data)


# -- bitwise ----------------------------------------------------------------------------------

BW_SREG, BW_DREG, BW_LEN, BW_MASK, BW_XOR, BW_OP, BW_DATA, BW_SREG2 = 1, 2, 3, 4, 5, 6, 7, 8
BITWISE_POLICY: Policy = {
    BW_SREG: (Kind.U32, 0), BW_DREG: (Kind.U32, 0), BW_LEN: (Kind.U32, 0),
    BW_MASK: (Kind.NESTED, 0), BW_XOR: (Kind.NESTED, 0), BW_OP: (Kind.U32, 0),
    BW_DATA: (Kind.NESTED, 0), BW_SREG2: (Kind.U32, 0)}
NFT_BITWISE_MASK_XOR, NFT_BITWISE_LSHIFT, NFT_BITWISE_RSHIFT = 0, 1, 2
NFT_BITWISE_AND, NFT_BITWISE_OR, NFT_BITWISE_XOR = 3, 4, 5


def bitwise(ctx: ExprContext, tb: dict[int, bytes]) -> bytes:
    """nft_bitwise_init and its mask/xor, shift and boolean forms; nft_bitwise_dump."""
    if BW_SREG not in tb or BW_DREG not in tb or BW_LEN not in tb:
        raise _err(Errno.EINVAL)
    length = _u32(tb, BW_LEN)
    if length > 255:
        raise _err(Errno.ERANGE)
    sreg = load(ctx, tb[BW_SREG], length)
    dreg = store(ctx, tb[BW_DREG], length)
    op = _u32(tb, BW_OP) if BW_OP in tb else NFT_BITWISE_MASK_XOR
    out = areg(BW_SREG, sreg) + areg(BW_DREG, dreg) + a32(BW_LEN, length) + a32(BW_OP, op)
    if op == NFT_BITWISE_MASK_XOR:
        if BW_DATA in tb or BW_SREG2 in tb or BW_MASK not in tb or BW_XOR not in tb:
            raise _err(Errno.EINVAL)
        mask = value(tb[BW_MASK], length=length)
        xor = value(tb[BW_XOR], length=length)
        return out + adata(BW_MASK, mask) + adata(BW_XOR, xor)
    if op in (NFT_BITWISE_LSHIFT, NFT_BITWISE_RSHIFT):
        if BW_MASK in tb or BW_XOR in tb or BW_SREG2 in tb or BW_DATA not in tb:
            raise _err(Errno.EINVAL)
        shift = value(tb[BW_DATA], length=4)
        if struct.unpack("<I", shift)[0] >= 32:
            raise _err(Errno.EINVAL)
        return out + adata(BW_DATA, shift)
    if op in (NFT_BITWISE_AND, NFT_BITWISE_OR, NFT_BITWISE_XOR):
        if BW_MASK in tb or BW_XOR in tb or BW_DATA in tb or BW_SREG2 not in tb:
            raise _err(Errno.EINVAL)
        return out + areg(BW_SREG2, load(ctx, tb[BW_SREG2], length))
    raise _err(Errno.EOPNOTSUPP)


# -- ct -------------------------------------------------------------------------------------------

CT_DREG, CT_KEY, CT_DIRECTION, CT_SREG = 1, 2, 3, 4
CT_POLICY: Policy = {CT_DREG: (Kind.U32, 0), CT_KEY: (Kind.BE32_MAX, 255),
                     CT_DIRECTION: (Kind.U8, 0), CT_SREG: (Kind.U32, 0)}
# enum nft_ct_keys -> (length, direction: 0 refused, 1 required, 2 either).
CT_KEYS = {0: (4, 0), 1: (1, 0), 2: (4, 0), 3: (4, 0), 4: (4, 0), 5: (4, 0), 6: (16, 0),
           7: (1, 2), 10: (1, 2), 11: (2, 1), 12: (2, 1), 13: (16, 0), 14: (8, 2),
           15: (8, 2), 16: (8, 2), 17: (2, 2), 19: (4, 1), 20: (4, 1), 21: (16, 1),
           22: (16, 1), 23: (4, 0)}
CT_SET_LENGTHS = {3: 4, 4: 4, 13: 16, 17: 2, 18: 4}    # MARK SECMARK LABELS ZONE EVENTMASK


# Keys whose dump carries the direction: always, or only when one was given.
CT_DIR_ALWAYS = frozenset((7, 8, 9, 10, 11, 12, 19, 20, 21, 22))
CT_DIR_IF_SET = frozenset((14, 15, 16, 17))


def ct(ctx: ExprContext, tb: dict[int, bytes]) -> bytes:
    """nft_ct_select_ops, nft_ct_get_init, nft_ct_set_init; their dumps."""
    if CT_KEY not in tb or (CT_DREG in tb and CT_SREG in tb):
        raise _err(Errno.EINVAL)
    key = _u32(tb, CT_KEY)
    direction = tb[CT_DIRECTION][0] if CT_DIRECTION in tb else None
    if CT_DREG in tb:
        if key in (8, 9):                         # SRC, DST: the family's address
            if direction is None:
                raise _err(Errno.EINVAL)
            if ctx.table.family == NFPROTO_IPV4:
                length = 4
            elif ctx.table.family in (NFPROTO_IPV6, NFPROTO_INET):
                length = 16
            else:
                raise _err(Errno.EAFNOSUPPORT)
        elif key in CT_KEYS:
            length, need = CT_KEYS[key]
            if need == 0 and direction is not None:
                raise _err(Errno.EINVAL)
            if need == 1 and direction is None:
                raise _err(Errno.EINVAL)
        else:
            raise _err(Errno.EOPNOTSUPP)
        if direction is not None and direction > 1:     # ORIGINAL, REPLY
            raise _err(Errno.EINVAL)
        out = areg(CT_DREG, store(ctx, tb[CT_DREG], length)) + a32(CT_KEY, key)
        if key in CT_DIR_ALWAYS or (key in CT_DIR_IF_SET and direction is not None):
            out += nlattr.attr(CT_DIRECTION, bytes([direction or 0]))
        return out
    if CT_SREG in tb:
        if key not in CT_SET_LENGTHS:
            raise _err(Errno.EOPNOTSUPP)
        if direction is not None and direction > 1:
            raise _err(Errno.EINVAL)
        out = areg(CT_SREG, load(ctx, tb[CT_SREG], CT_SET_LENGTHS[key])) + a32(CT_KEY, key)
        if key == 17 and direction is not None:
            out += nlattr.attr(CT_DIRECTION, bytes([direction]))
        return out
    raise _err(Errno.EINVAL)


# -- nat, masq -------------------------------------------------------------------------------

NAT_TYPE, NAT_FAMILY, NAT_ADDR_MIN, NAT_ADDR_MAX, NAT_PROTO_MIN, NAT_PROTO_MAX, NAT_FLAGS = \
    1, 2, 3, 4, 5, 6, 7
NAT_POLICY: Policy = {k: (Kind.U32, 0) for k in range(1, 8)}


def nat(ctx: ExprContext, tb: dict[int, bytes]) -> bytes:
    """nft_nat_init and nft_nat_validate; nft_nat_dump."""
    if NAT_TYPE not in tb or (NAT_ADDR_MIN not in tb and NAT_PROTO_MIN not in tb):
        raise _err(Errno.EINVAL)
    ntype = _u32(tb, NAT_TYPE)
    if ntype not in (0, 1):                       # NFT_NAT_SNAT, NFT_NAT_DNAT
        raise _err(Errno.EOPNOTSUPP)
    if NAT_FAMILY not in tb:
        raise _err(Errno.EINVAL)
    family = _u32(tb, NAT_FAMILY)
    if ctx.table.family != NFPROTO_INET and ctx.table.family != family:
        raise _err(Errno.EOPNOTSUPP)
    alen = {NFPROTO_IPV4: 4, NFPROTO_IPV6: 16}.get(family, 0)
    out = a32(NAT_TYPE, ntype) + a32(NAT_FAMILY, family)
    flags = 0
    if NAT_ADDR_MIN in tb:
        if not alen:
            raise _err(Errno.EAFNOSUPPORT)
        lo = load(ctx, tb[NAT_ADDR_MIN], alen)
        hi = load(ctx, tb[NAT_ADDR_MAX], alen) if NAT_ADDR_MAX in tb else lo
        out += areg(NAT_ADDR_MIN, lo) + areg(NAT_ADDR_MAX, hi)
        flags |= 1                                # NF_NAT_RANGE_MAP_IPS
    if NAT_PROTO_MIN in tb:
        lo = load(ctx, tb[NAT_PROTO_MIN], 2)
        hi = load(ctx, tb[NAT_PROTO_MAX], 2) if NAT_PROTO_MAX in tb else lo
        out += areg(NAT_PROTO_MIN, lo) + areg(NAT_PROTO_MAX, hi)
        flags |= 2                                # NF_NAT_RANGE_PROTO_SPECIFIED
    if NAT_FLAGS in tb:
        user = _u32(tb, NAT_FLAGS)
        if user & ~NF_NAT_RANGE_MASK:
            raise _err(Errno.EOPNOTSUPP)
        flags |= user
    hooks = (1 << NF_INET_POST_ROUTING | 1 << NF_INET_LOCAL_IN) if ntype == 0 else \
        (1 << NF_INET_PRE_ROUTING | 1 << NF_INET_LOCAL_OUT)
    _hooks(ctx, hooks, b"nat")
    return out + (a32(NAT_FLAGS, flags) if flags else b"")


MASQ_FLAGS, MASQ_PROTO_MIN, MASQ_PROTO_MAX = 1, 2, 3
MASQ_POLICY: Policy = {k: (Kind.U32, 0) for k in range(1, 4)}


def masq(ctx: ExprContext, tb: dict[int, bytes]) -> bytes:
    """nft_masq_init and nft_masq_validate; nft_masq_dump."""
    flags = _u32(tb, MASQ_FLAGS) if MASQ_FLAGS in tb else 0
    if flags & ~NF_NAT_RANGE_MASK:
        raise _err(Errno.EINVAL)
    out = a32(MASQ_FLAGS, flags) if flags else b""
    if MASQ_PROTO_MIN in tb:
        lo = load(ctx, tb[MASQ_PROTO_MIN], 2)
        hi = load(ctx, tb[MASQ_PROTO_MAX], 2) if MASQ_PROTO_MAX in tb else lo
        out += areg(MASQ_PROTO_MIN, lo) + areg(MASQ_PROTO_MAX, hi)
    _hooks(ctx, 1 << NF_INET_POST_ROUTING, b"nat")
    return out


# -- lookup, fib, counter ------------------------------------------------------------------

LOOKUP_SET, LOOKUP_SREG, LOOKUP_DREG, LOOKUP_SET_ID, LOOKUP_FLAGS = 1, 2, 3, 4, 5
LOOKUP_POLICY: Policy = {LOOKUP_SET: (Kind.STRING, 255), LOOKUP_SREG: (Kind.U32, 0),
                         LOOKUP_DREG: (Kind.U32, 0), LOOKUP_SET_ID: (Kind.U32, 0),
                         LOOKUP_FLAGS: (Kind.U32, 0)}


def lookup(ctx: ExprContext, tb: dict[int, bytes]) -> bytes:
    """nft_lookup_init (nft_set_lookup_global, then the registers); nft_lookup_dump."""
    from pyvisor.sentry.socket.netlink import nft_sets
    if LOOKUP_SET not in tb or LOOKUP_SREG not in tb:
        raise _err(Errno.EINVAL)
    try:
        s = nft_sets.find(ctx.table, tb[LOOKUP_SET])
    except SyscallError:
        found = ctx.set_ids.get((ctx.table, be32(tb[LOOKUP_SET_ID]))) \
            if LOOKUP_SET_ID in tb else None
        if found is None:
            raise
        s = found
    sreg = load(ctx, tb[LOOKUP_SREG], s.klen)
    flags = _u32(tb, LOOKUP_FLAGS) if LOOKUP_FLAGS in tb else 0
    if flags & ~1:                                # NFT_LOOKUP_F_INV
        raise _err(Errno.EOPNOTSUPP)
    if flags and s.flags & nft_sets.F_MAP:
        raise _err(Errno.EINVAL)
    out = nlattr.attr_str(LOOKUP_SET, s.name) + areg(LOOKUP_SREG, sreg)
    if LOOKUP_DREG in tb:
        if flags or not s.flags & nft_sets.F_MAP:
            raise _err(Errno.EINVAL)
        out += areg(LOOKUP_DREG, store(ctx, tb[LOOKUP_DREG], s.dlen))
    s.use += 1
    ctx.sets.append(s)
    return out + a32(LOOKUP_FLAGS, flags)


FIB_DREG, FIB_RESULT, FIB_FLAGS = 1, 2, 3
FIB_POLICY: Policy = {k: (Kind.U32, 0) for k in range(1, 4)}
F_SADDR, F_DADDR, F_MARK, F_IIF, F_OIF, F_PRESENT = 1, 2, 4, 8, 16, 32


def fib(ctx: ExprContext, tb: dict[int, bytes]) -> bytes:
    """nft_fib_init and nft_fib_validate; nft_fib_dump."""
    if FIB_DREG not in tb or FIB_RESULT not in tb or FIB_FLAGS not in tb:
        raise _err(Errno.EINVAL)
    flags = _u32(tb, FIB_FLAGS)
    if flags == 0 or flags & ~0x3F:
        raise _err(Errno.EINVAL)
    if flags & (F_SADDR | F_DADDR) in (0, F_SADDR | F_DADDR):
        raise _err(Errno.EINVAL)
    if flags & (F_IIF | F_OIF) == F_IIF | F_OIF:
        raise _err(Errno.EINVAL)
    result = _u32(tb, FIB_RESULT)
    if result in (1, 2):                          # OIF, OIFNAME
        if flags & F_OIF:
            raise _err(Errno.EINVAL)
        length = 4 if result == 1 else 16
        hooks = 1 << NF_INET_PRE_ROUTING | 1 << NF_INET_LOCAL_IN | 1 << NF_INET_FORWARD
    elif result == 3:                             # ADDRTYPE
        length = 4
        if flags & F_IIF:
            hooks = 1 << NF_INET_PRE_ROUTING | 1 << NF_INET_LOCAL_IN | 1 << NF_INET_FORWARD
        elif flags & F_OIF:
            hooks = 1 << NF_INET_LOCAL_OUT | 1 << NF_INET_POST_ROUTING | 1 << NF_INET_FORWARD
        else:
            hooks = 0b111111
    else:
        raise _err(Errno.EINVAL)
    dreg = store(ctx, tb[FIB_DREG], length)
    _hooks(ctx, hooks)
    return areg(FIB_DREG, dreg) + a32(FIB_RESULT, result) + a32(FIB_FLAGS, flags)


COUNTER_POLICY: Policy = {1: (Kind.U64, 0), 2: (Kind.U64, 0)}


def counter(ctx: ExprContext, tb: dict[int, bytes]) -> bytes:
    """nft_counter_init: both counters are optional; the dump has both."""
    packets = nlattr.be64(tb[2]) if 2 in tb else 0
    nbytes = nlattr.be64(tb[1]) if 1 in tb else 0
    return nlattr.attr_be64(1, nbytes) + nlattr.attr_be64(2, packets)


# name -> (policy, checker returning the dump).  Types Linux has that are not listed
# are kept as sent, unchecked.
EXPRS: dict[bytes, tuple[Policy, Callable[[ExprContext, dict[int, bytes]], bytes]]] = {
    b"payload": (PAYLOAD_POLICY, payload), b"meta": (META_POLICY, meta),
    b"cmp": (CMP_POLICY, cmp), b"bitwise": (BITWISE_POLICY, bitwise), b"ct": (CT_POLICY, ct),
    b"nat": (NAT_POLICY, nat), b"masq": (MASQ_POLICY, masq),
    b"lookup": (LOOKUP_POLICY, lookup), b"fib": (FIB_POLICY, fib),
    b"counter": (COUNTER_POLICY, counter)}
