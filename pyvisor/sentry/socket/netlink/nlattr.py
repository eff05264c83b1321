"""Netlink attributes: parsing against a policy and building.  Linux: lib/nlattr.c
(nla_parse_deprecated, validate_nla), include/net/netlink.h.

Parsing is Linux's "deprecated" (liberal) mode, the one nfnetlink uses: a
truncated attribute ends the list without an error, a duplicate overrides
the earlier one, unknown types are ignored; the policy checks lengths
(ERANGE when an attribute is shorter than its type or longer than its limit).
"""

from __future__ import annotations

import enum
import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

NLA_HDR = struct.Struct("<HH")              # len, type
NLA_F_NESTED, NLA_F_NET_BYTEORDER = 0x8000, 0x4000
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF


class Kind(enum.Enum):
    """The policy types used here.  Linux: enum nla_types."""

    U8 = 1
    U32 = 4
    U64 = 8
    STRING = 0
    BINARY = -1
    NESTED = -2
    BE32_MAX = -3              # a big-endian u32 no greater than the limit (NLA_POLICY_MAX)


Policy = dict[int, tuple[Kind, int]]        # attribute type -> (kind, max length or 0)


def align(n: int) -> int:
    return (n + 3) & ~3


def split(data: bytes) -> list[tuple[int, bytes]]:
    """The attributes of a buffer in order as (type without flags, payload)."""
    out = []
    off = 0
    while len(data) - off >= NLA_HDR.size:
        ln, atype = NLA_HDR.unpack_from(data, off)
        if ln < NLA_HDR.size or off + ln > len(data):
            break
        out.append((atype & NLA_TYPE_MASK, data[off + NLA_HDR.size:off + ln]))
        off += align(ln)
    return out


def parse(data: bytes, policy: Policy) -> dict[int, bytes]:
    """nla_parse_deprecated: the attributes the policy knows, validated."""
    out: dict[int, bytes] = {}
    for atype, payload in split(data):
        rule = policy.get(atype)
        if rule is None:
            continue
        kind, limit = rule
        n = len(payload)
        if kind in (Kind.U8, Kind.U32, Kind.U64):
            if n < kind.value:
                raise SyscallError(Errno.ERANGE)
        elif kind is Kind.BE32_MAX:
            if n < 4:
                raise SyscallError(Errno.ERANGE)
            if int.from_bytes(payload[:4], "big") > limit:
                raise SyscallError(Errno.ERANGE)
        elif kind is Kind.STRING:
            if limit:
                if n and payload[-1] == 0:
                    n -= 1
                if n > limit:
                    raise SyscallError(Errno.ERANGE)
        elif kind is Kind.BINARY:
            if limit and n > limit:
                raise SyscallError(Errno.ERANGE)
        elif kind is Kind.NESTED:
            if 0 < n < NLA_HDR.size:
                raise SyscallError(Errno.ERANGE)
        out[atype] = payload
    return out


def string(payload: bytes) -> bytes:
    """An NLA_STRING's value: up to its first NUL."""
    nul = payload.find(b"\0")
    return payload if nul < 0 else payload[:nul]


def be32(payload: bytes) -> int:
    return int(struct.unpack_from(">I", payload)[0])


def be64(payload: bytes) -> int:
    return int(struct.unpack_from(">Q", payload)[0])


def attr(atype: int, data: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    ln = NLA_HDR.size + len(data)
    return NLA_HDR.pack(ln, atype) + data + b"\0" * (align(ln) - ln)


def attr_str(atype: int, s: bytes) -> bytes:
    return attr(atype, s + b"\0")


def attr_be32(atype: int, v: int) -> bytes:
    return attr(atype, struct.pack(">I", v & 0xFFFFFFFF))


def attr_be64(atype: int, v: int) -> bytes:
    return attr(atype, struct.pack(">Q", v & 0xFFFFFFFFFFFFFFFF))
