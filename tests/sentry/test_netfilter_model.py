"""NETLINK_NETFILTER without ptrace (pyvisor/sentry/socket/netlink/netfilter.py): the
ruleset's bound, and malformed or random requests answered with errnos, never a
Sentry exception."""

from __future__ import annotations

import random
import struct

import pytest

from pyvisor.sentry.socket import inet
from pyvisor.sentry.socket.netlink import (NETLINK_NETFILTER, NETLINK_ROUTE, NLM_F_ACK,
                                           NLM_F_REQUEST, NLMSG_ERROR, NLMSGHDR, NetlinkSocket,
                                           nftables)
from pyvisor.sentry.socket.netlink.netfilter import NFGENMSG, NFNL_MSG_BATCH_BEGIN
from pyvisor.sentry.socket.netlink.nlattr import attr, attr_str


class _Stack:
    def interfaces(self) -> list[inet.Interface]:
        return [inet.loopback()]

    def routes(self) -> list[inet.Route]:
        return inet.loopback_routes()

    def proc_net(self, name: str) -> bytes | None:
        return None


def _msg(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    ln = NLMSGHDR.size + len(body)
    return NLMSGHDR.pack(ln, mtype, flags, seq, 0) + body + b"\0" * (-ln % 4)


def _batch(*msgs: bytes) -> bytes:
    gen = NFGENMSG.pack(0, 0, 10)
    return (_msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 1, gen) + b"".join(msgs) +
            _msg(NFNL_MSG_BATCH_BEGIN + 1, NLM_F_REQUEST | NLM_F_ACK, 99, gen))


def _errors(s: NetlinkSocket) -> list[int]:
    out = []
    for q in s.rcvq:
        dgram = q.data
        off = 0
        while off < len(dgram):
            ln, t, _, _, _ = NLMSGHDR.unpack_from(dgram, off)
            if t == NLMSG_ERROR:
                out.append(struct.unpack_from("<i", dgram, off + NLMSGHDR.size)[0])
            off += (ln + 3) & ~3
    s.rcvq.clear()
    return out


def _new_table(name: bytes, seq: int) -> bytes:
    body = NFGENMSG.pack(1, 0, 0) + attr_str(1, name)          # inet, NFTA_TABLE_NAME
    return _msg(10 << 8, NLM_F_REQUEST | NLM_F_CREATE_, seq, body)


NLM_F_CREATE_ = 0x400


def _u32(atype: int, v: int) -> bytes:
    return attr(atype, struct.pack(">I", v))


def _new_chain(seq: int) -> bytes:
    hook = _u32(1, 1) + _u32(2, 0)                              # LOCAL_IN, priority 0
    body = (NFGENMSG.pack(1, 0, 0) + attr_str(1, b"fuzz") + attr_str(3, b"c") +
            attr(4, hook) + _u32(5, 1) + attr_str(7, b"filter"))
    return _msg((10 << 8) | 3, NLM_F_REQUEST | NLM_F_CREATE_, seq, body)


def _new_rule(seq: int) -> bytes:
    def expr(name: bytes, data: bytes) -> bytes:
        return attr(1, attr_str(1, name) + attr(2, data))
    payload = _u32(2, 1) + _u32(3, 9) + _u32(4, 1) + _u32(1, 1)
    cmp = _u32(1, 1) + _u32(2, 0) + attr(3, attr(1, b"\x06"))
    verdict = _u32(1, 0) + attr(2, attr(2, _u32(1, 1)))
    match = attr_str(1, b"tcp") + _u32(2, 0) + attr(3, bytes(12))
    exprs = (expr(b"payload", payload) + expr(b"cmp", cmp) + expr(b"immediate", verdict) +
             expr(b"match", match) + expr(b"counter", b"") + expr(b"ct", _u32(1, 2) + _u32(2, 0)))
    body = (NFGENMSG.pack(1, 0, 0) + attr_str(1, b"fuzz") + attr_str(2, b"c") + attr(4, exprs) +
            attr(5, _u32(1, 6) + _u32(2, 0)))
    return _msg((10 << 8) | 6, NLM_F_REQUEST | NLM_F_CREATE_ | 0x800, seq, body)


def test_ruleset_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    s = NetlinkSocket(_Stack(), 3, 42, NETLINK_NETFILTER)
    monkeypatch.setattr(nftables, "MAX_OBJECTS", 3)
    s._request(_batch(*[_new_table(b"t%d" % i, 2 + i) for i in range(3)]))
    assert _errors(s) == [0]                      # END acknowledged: committed
    s._request(_batch(_new_table(b"t3", 2)))
    assert _errors(s) == [-12]                    # ENOMEM at END: not committed
    assert len(s.handler.state.tables) == 3


def test_seed_requests_are_valid() -> None:
    """The fuzz seeds below make a table, a base chain and a rule of six expressions."""
    s = NetlinkSocket(_Stack(), 3, 42, NETLINK_NETFILTER)
    s._request(_batch(_new_table(b"fuzz", 2), _new_chain(3), _new_rule(4)))
    assert _errors(s) == [0]
    rules = s.handler.state.tables[0].chains[0].rules
    assert len(rules) == 1 and len(rules[0].exprs) == 6


@pytest.mark.parametrize("protocol", [NETLINK_NETFILTER, NETLINK_ROUTE])
def test_random_requests_get_errnos(protocol: int) -> None:
    """Mutated valid requests and random bytes: every answer is an errno or data."""
    rng = random.Random(1234)
    s = NetlinkSocket(_Stack(), 3, 42, protocol)
    seeds = [_batch(_new_table(b"fuzz", 2), _new_chain(3), _new_rule(4)),
             _batch(_new_table(b"fuzz", 2)),
             _msg((10 << 8) | 1, NLM_F_REQUEST | 0x300, 5, NFGENMSG.pack(0, 0, 0)),
             _msg(18, NLM_F_REQUEST | 0x300, 5, b"\0" * 16),
             _msg(32, NLM_F_REQUEST | 0x600, 6, struct.pack("<BBBBBBBBI", 2, 24, 0, 0, 99, 0,
                                                             0, 1, 0) +
                  attr(6, struct.pack("<I", 5)) + attr(1, b"\xc0\0\2\0")),
             _msg(33, NLM_F_REQUEST, 7, struct.pack("<BBBBBBBBI", 2, 0, 0, 0, 0, 0, 0, 0, 0))]
    for _ in range(6000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = bytearray(rng.randbytes(rng.randrange(64)))
        s._request(bytes(data))                   # must not raise
        s.rcvq.clear()
        s.queued = 0
