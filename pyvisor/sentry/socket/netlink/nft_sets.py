"""nftables sets and maps: NEWSET/GETSET/DELSET and their elements (NEWSETELEM,
GETSETELEM, DELSETELEM).  Linux: net/netfilter/nf_tables_api.c (nf_tables_newset,
nf_tables_fill_set, nft_add_set_elem, nft_del_setelem, nf_tables_fill_setelem).

A set keeps its key and data types and lengths and its elements: (key, data,
flags), the catch-all element (NFT_SET_ELEM_CATCHALL) having no key.  Interval
sets, timeouts, element expressions and stateful objects are not modelled: their
flags and attributes are refused with EOPNOTSUPP (TODO(#10)).
Concurrency: Sentry loop only; changes go through a batch's copy (netfilter.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.netlink import NLM_F_CREATE, NLM_F_EXCL, NLM_F_NONREC, NLM_F_REPLACE
from pyvisor.sentry.socket.netlink import nlattr
from pyvisor.sentry.socket.netlink.nlattr import Kind, Policy, be32, be64, string

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netlink.nftables import Table

# From <linux/netfilter/nf_tables.h>.
(SET_TABLE, SET_NAME, SET_FLAGS, SET_KEY_TYPE, SET_KEY_LEN, SET_DATA_TYPE, SET_DATA_LEN,
 SET_POLICY, SET_DESC, SET_ID, SET_TIMEOUT, SET_GC_INTERVAL, SET_USERDATA, SET_PAD,
 SET_OBJ_TYPE, SET_HANDLE, SET_EXPR, SET_EXPRESSIONS, SET_TYPE, SET_COUNT) = range(1, 21)
F_ANONYMOUS, F_CONSTANT, F_INTERVAL, F_MAP, F_TIMEOUT, F_EVAL, F_OBJECT, F_CONCAT, F_EXPR = \
    1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80, 0x100
F_ALL = 0x1FF
NFT_DATA_VERDICT = 0xFFFFFF00
NFT_DATA_RESERVED_MASK = 0xFFFFFF00
NFT_DATA_VALUE_MAXLEN = 64
LIST_TABLE, LIST_SET, LIST_ELEMENTS, LIST_SET_ID = 1, 2, 3, 4
ELEM_KEY, ELEM_DATA, ELEM_FLAGS, ELEM_TIMEOUT, ELEM_EXPIRATION, ELEM_USERDATA = 1, 2, 3, 4, 5, 6
ELEM_EXPR, ELEM_OBJREF, ELEM_KEY_END, ELEM_EXPRESSIONS = 7, 8, 9, 10
ELEM_INTERVAL_END, ELEM_CATCHALL = 1, 2
NFTA_LIST_ELEM = 1
NFTA_DATA_VALUE = 1

SET_POLICY_ATTRS: Policy = {
    SET_TABLE: (Kind.STRING, 255), SET_NAME: (Kind.STRING, 255), SET_FLAGS: (Kind.U32, 0),
    SET_KEY_TYPE: (Kind.U32, 0), SET_KEY_LEN: (Kind.U32, 0), SET_DATA_TYPE: (Kind.U32, 0),
    SET_DATA_LEN: (Kind.U32, 0), SET_POLICY: (Kind.U32, 0), SET_DESC: (Kind.NESTED, 0),
    SET_ID: (Kind.U32, 0), SET_TIMEOUT: (Kind.U64, 0), SET_GC_INTERVAL: (Kind.U32, 0),
    SET_USERDATA: (Kind.BINARY, 256), SET_OBJ_TYPE: (Kind.U32, 0), SET_HANDLE: (Kind.U64, 0),
    SET_EXPR: (Kind.NESTED, 0), SET_EXPRESSIONS: (Kind.NESTED, 0)}
LIST_POLICY: Policy = {LIST_TABLE: (Kind.STRING, 255), LIST_SET: (Kind.STRING, 255),
                       LIST_ELEMENTS: (Kind.NESTED, 0), LIST_SET_ID: (Kind.U32, 0)}
ELEM_POLICY: Policy = {
    ELEM_KEY: (Kind.NESTED, 0), ELEM_DATA: (Kind.NESTED, 0), ELEM_FLAGS: (Kind.U32, 0),
    ELEM_TIMEOUT: (Kind.U64, 0), ELEM_EXPIRATION: (Kind.U64, 0),
    ELEM_USERDATA: (Kind.BINARY, 256), ELEM_EXPR: (Kind.NESTED, 0),
    ELEM_OBJREF: (Kind.STRING, 255), ELEM_KEY_END: (Kind.NESTED, 0),
    ELEM_EXPRESSIONS: (Kind.NESTED, 0)}
DATA_POLICY: Policy = {1: (Kind.BINARY, 64), 2: (Kind.NESTED, 0)}


def _err(e: Errno) -> SyscallError:
    return SyscallError(e)


@dataclass(eq=False)
class Element:
    """Linux: an nft_set_ext with key, data and flags."""

    key: bytes | None                # None: the catch-all element
    data: bytes | None
    flags: int = 0
    udata: bytes | None = None


@dataclass(eq=False)
class Set:
    """Linux: struct nft_set."""

    table: Table
    name: bytes
    handle: int
    flags: int
    ktype: int
    klen: int
    dtype: int = 0
    dlen: int = 0
    policy: int = 0
    udata: bytes | None = None
    elements: list[Element] = field(default_factory=list)
    use: int = 0                     # lookups referring to it


def find(table: Table, name: bytes | None) -> Set:
    """nft_set_lookup: EINVAL without a name, ENOENT if absent."""
    if name is None:
        raise _err(Errno.EINVAL)
    want = string(name)
    for s in table.sets:
        if s.name == want:
            return s
    raise _err(Errno.ENOENT)


def new_set(table: Table, attrs: dict[int, bytes], flags: int, ids: dict[tuple[Table, int], Set]
            ) -> None:
    """nf_tables_newset (the table already found)."""
    if SET_NAME not in attrs or SET_KEY_LEN not in attrs or SET_ID not in attrs:
        raise _err(Errno.EINVAL)
    ktype = be32(attrs[SET_KEY_TYPE]) if SET_KEY_TYPE in attrs else 0
    if ktype & NFT_DATA_RESERVED_MASK == NFT_DATA_RESERVED_MASK:
        raise _err(Errno.EINVAL)
    klen = be32(attrs[SET_KEY_LEN])
    if klen == 0 or klen > NFT_DATA_VALUE_MAXLEN:
        raise _err(Errno.EINVAL)
    sflags = be32(attrs[SET_FLAGS]) if SET_FLAGS in attrs else 0
    if sflags & ~F_ALL or sflags & (F_MAP | F_OBJECT) == F_MAP | F_OBJECT or \
            sflags & (F_EVAL | F_OBJECT) == F_EVAL | F_OBJECT or \
            sflags & (F_ANONYMOUS | F_TIMEOUT | F_EVAL) == F_ANONYMOUS | F_TIMEOUT or \
            sflags & (F_CONSTANT | F_TIMEOUT) == F_CONSTANT | F_TIMEOUT:
        raise _err(Errno.EOPNOTSUPP)
    dtype = dlen = 0
    if SET_DATA_TYPE in attrs:
        if not sflags & F_MAP:
            raise _err(Errno.EINVAL)
        dtype = be32(attrs[SET_DATA_TYPE])
        if dtype & NFT_DATA_RESERVED_MASK == NFT_DATA_RESERVED_MASK and \
                dtype != NFT_DATA_VERDICT:
            raise _err(Errno.EINVAL)
        if dtype != NFT_DATA_VERDICT:
            if SET_DATA_LEN not in attrs:
                raise _err(Errno.EINVAL)
            dlen = be32(attrs[SET_DATA_LEN])
            if dlen == 0 or dlen > NFT_DATA_VALUE_MAXLEN:
                raise _err(Errno.EINVAL)
        else:
            dlen = 16                                  # sizeof(struct nft_verdict)
    elif sflags & F_MAP:
        raise _err(Errno.EINVAL)
    if sflags & (F_INTERVAL | F_TIMEOUT | F_OBJECT | F_CONCAT | F_EXPR) or \
            SET_TIMEOUT in attrs or SET_EXPR in attrs or SET_EXPRESSIONS in attrs:
        raise _err(Errno.EOPNOTSUPP)                   # not modelled
    name = string(attrs[SET_NAME])
    try:
        old: Set | None = find(table, attrs[SET_NAME])
    except SyscallError:
        old = None
    if old is not None:
        if flags & NLM_F_EXCL:
            raise _err(Errno.EEXIST)
        if flags & NLM_F_REPLACE:
            raise _err(Errno.EOPNOTSUPP)
        if (old.flags, old.ktype, old.klen, old.dtype, old.dlen) != \
                (sflags, ktype, klen, dtype, dlen):
            raise _err(Errno.EEXIST)
        return
    if not flags & NLM_F_CREATE:
        raise _err(Errno.ENOENT)
    if b"%" in name:
        name = _anonymous_name(table, name)
    policy = be32(attrs[SET_POLICY]) if SET_POLICY in attrs else 0
    s = Set(table, name, table.alloc_handle(), sflags, ktype, klen, dtype, dlen, policy,
            attrs.get(SET_USERDATA))
    table.sets.append(s)
    ids[(table, be32(attrs[SET_ID]))] = s


def _anonymous_name(table: Table, pattern: bytes) -> bytes:
    """nf_tables_set_alloc_name: "__set%d" becomes the first unused number."""
    if pattern.count(b"%") != 1 or b"%d" not in pattern:
        raise _err(Errno.EINVAL)
    taken = {s.name for s in table.sets}
    n = 0
    while pattern.replace(b"%d", b"%d" % n) in taken:
        n += 1
    return pattern.replace(b"%d", b"%d" % n)


def del_set(table: Table, attrs: dict[int, bytes], flags: int, destroy: bool) -> None:
    """nf_tables_delset."""
    try:
        if SET_HANDLE in attrs:
            h = be64(attrs[SET_HANDLE])
            found = [s for s in table.sets if s.handle == h]
            if not found:
                raise _err(Errno.ENOENT)
            s = found[0]
        else:
            s = find(table, attrs.get(SET_NAME))
    except SyscallError as e:
        if e.errno == Errno.ENOENT and destroy:
            return
        raise
    if s.use or (flags & NLM_F_NONREC and s.elements):
        raise _err(Errno.EBUSY)
    table.sets.remove(s)


def set_info(s: Set) -> bytes:
    """nf_tables_fill_set's attributes (after the nfgenmsg)."""
    b = nlattr.attr_str(SET_TABLE, s.table.name) + nlattr.attr_str(SET_NAME, s.name)
    b += nlattr.attr_be64(SET_HANDLE, s.handle)
    if s.flags:
        b += nlattr.attr_be32(SET_FLAGS, s.flags)
    b += nlattr.attr_be32(SET_KEY_TYPE, s.ktype) + nlattr.attr_be32(SET_KEY_LEN, s.klen)
    if s.flags & F_MAP:
        b += nlattr.attr_be32(SET_DATA_TYPE, s.dtype) + nlattr.attr_be32(SET_DATA_LEN, s.dlen)
    if s.policy:
        b += nlattr.attr_be32(SET_POLICY, s.policy)
    if s.udata is not None:
        b += nlattr.attr(SET_USERDATA, s.udata)
    b += nlattr.attr(SET_DESC, b"")
    return b + nlattr.attr_be32(SET_COUNT, sum(1 for e in s.elements if e.key is not None))


# -- elements ----------------------------------------------------------------------------


def _value(payload: bytes, length: int) -> bytes:
    """nft_data_init of a key or data value that must be `length` bytes."""
    tb = nlattr.parse(payload, DATA_POLICY)
    if NFTA_DATA_VALUE not in tb:
        raise _err(Errno.EINVAL)
    v = tb[NFTA_DATA_VALUE]
    if not v or len(v) != length:
        raise _err(Errno.EINVAL)
    return v


def _elem(s: Set, payload: bytes) -> tuple[dict[int, bytes], int, bytes | None]:
    """An element's attributes, flags and key (None for the catch-all)."""
    tb = nlattr.parse(payload, ELEM_POLICY)
    eflags = be32(tb[ELEM_FLAGS]) if ELEM_FLAGS in tb else 0
    if eflags & ~(ELEM_INTERVAL_END | ELEM_CATCHALL):
        raise _err(Errno.EOPNOTSUPP)
    if eflags & ELEM_INTERVAL_END and not s.flags & F_INTERVAL:
        raise _err(Errno.EINVAL)
    if ELEM_KEY not in tb and not eflags & ELEM_CATCHALL:
        raise _err(Errno.EINVAL)
    if ELEM_KEY in tb and eflags & ELEM_CATCHALL:
        raise _err(Errno.EINVAL)
    key = _value(tb[ELEM_KEY], s.klen) if ELEM_KEY in tb else None
    return tb, eflags, key


def add_elements(s: Set, elements: bytes, flags: int) -> None:
    """nft_add_set_elem for each element of NFTA_SET_ELEM_LIST_ELEMENTS."""
    for atype, payload in nlattr.split(elements):
        if atype != NFTA_LIST_ELEM:
            raise _err(Errno.EINVAL)
        tb, eflags, key = _elem(s, payload)
        if s.flags & F_MAP:
            if ELEM_DATA not in tb:
                raise _err(Errno.EINVAL)
        elif ELEM_DATA in tb:
            raise _err(Errno.EINVAL)
        if ELEM_TIMEOUT in tb or ELEM_EXPIRATION in tb or ELEM_EXPR in tb or \
                ELEM_EXPRESSIONS in tb or ELEM_OBJREF in tb or ELEM_KEY_END in tb:
            raise _err(Errno.EOPNOTSUPP)               # not modelled
        data = None
        if ELEM_DATA in tb:
            if s.dtype == NFT_DATA_VERDICT:
                raise _err(Errno.EOPNOTSUPP)           # verdict maps: not modelled
            data = _value(tb[ELEM_DATA], s.dlen)
        old = [e for e in s.elements if e.key == key]
        if old:
            if flags & NLM_F_EXCL or old[0].data != data:
                raise _err(Errno.EEXIST)
            continue
        s.elements.append(Element(key, data, eflags, tb.get(ELEM_USERDATA)))


def del_elements(s: Set, elements: bytes | None, destroy: bool) -> None:
    """nf_tables_delsetelem: the listed elements, or all of them."""
    if elements is None:
        s.elements.clear()
        return
    for atype, payload in nlattr.split(elements):
        if atype != NFTA_LIST_ELEM:
            raise _err(Errno.EINVAL)
        _, _, key = _elem(s, payload)
        found = [e for e in s.elements if e.key == key]
        if not found:
            if destroy:
                continue
            raise _err(Errno.ENOENT)
        s.elements.remove(found[0])


def _element_info(e: Element) -> bytes:
    b = b""
    if e.key is not None:
        b += nlattr.attr(ELEM_KEY, nlattr.attr(NFTA_DATA_VALUE, e.key))
    if e.data is not None:
        b += nlattr.attr(ELEM_DATA, nlattr.attr(NFTA_DATA_VALUE, e.data))
    if e.flags:
        b += nlattr.attr_be32(ELEM_FLAGS, e.flags)
    if e.udata is not None:
        b += nlattr.attr(ELEM_USERDATA, e.udata)
    return nlattr.attr(NFTA_LIST_ELEM, b)


def elements_info(s: Set) -> list[bytes]:
    """nf_tables_dump_set: one message of the keyed elements (newest first, as a
    list-backed set walks them), then one for the catch-all element."""
    head = nlattr.attr_str(LIST_TABLE, s.table.name) + nlattr.attr_str(LIST_SET, s.name)
    keyed = [e for e in reversed(s.elements) if e.key is not None]
    catchall = [e for e in s.elements if e.key is None]
    out = []
    if keyed:
        out.append(head + nlattr.attr(LIST_ELEMENTS, b"".join(map(_element_info, keyed))))
    if catchall:
        out.append(head + nlattr.attr(LIST_ELEMENTS, b"".join(map(_element_info, catchall))))
    return out
