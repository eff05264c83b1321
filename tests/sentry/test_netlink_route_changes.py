"""NETLINK_ROUTE changes on a real netstack without ptrace (pyvisor/sentry/socket/netlink/
route_change.py, route_link.py; netstack/devinet.py, vlink.py): what an address, a route
and a link change do to the stack and who is notified, and a seeded fuzz of mutated
requests that must each end in an errno or an acknowledgement, never an exception."""

from __future__ import annotations

import random
import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.socket import Network
from pyvisor.sentry.socket.netlink import (NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
                                           NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_ERROR,
                                           NLMSGHDR, NetlinkSocket, rta)
from pyvisor.sentry.socket.netlink.route import (IFINFOMSG, RTM_DELADDR, RTM_NEWADDR,
                                                 RTM_NEWLINK, RTM_NEWROUTE, RTMSG,
                                                 RTM_DELROUTE, RTM_SETLINK)


class _Kernel:
    """What the stack asks of a kernel here: a clock and timers run by hand."""

    def __init__(self) -> None:
        self.timers: list[object] = []

    def now(self) -> int:
        return 0

    def add_timer(self, when: int, fn: object) -> object:
        self.timers.append(fn)
        return type("T", (), {"cancelled": False})()


def _socket() -> tuple[Network, NetlinkSocket]:
    net = Network("sandbox", _Kernel())
    return net, NetlinkSocket(net.stack, 3, 42, 0, net)


def _ask(s: NetlinkSocket, mtype: int, flags: int, body: bytes) -> int:
    """The errno of the request's acknowledgement (0: done)."""
    s.rcvq.clear()
    s.queued = 0
    req = NLMSGHDR.pack(NLMSGHDR.size + len(body), mtype, NLM_F_REQUEST | NLM_F_ACK | flags,
                        9, 0) + body
    s._request(req)
    for q in s.rcvq:
        _ln, t, _f, seq, _pid = NLMSGHDR.unpack_from(q.data)
        if t == NLMSG_ERROR and seq == 9:
            return -int(struct.unpack_from("<i", q.data, NLMSGHDR.size)[0])
    raise AssertionError("no acknowledgement")


def _addr(family: int, plen: int, index: int, ip: bytes) -> bytes:
    return struct.pack("<BBBBi", family, plen, 0, 0, index) + rta(2, ip)


def test_address_makes_local_and_goes() -> None:
    net, s = _socket()
    stack = net.stack
    ip = bytes([10, 1, 2, 3])
    assert not stack.is_local(ip)
    assert _ask(s, RTM_NEWADDR, 0, _addr(2, 24, 1, ip)) == 0
    assert stack.is_local(ip) and stack.is_local(bytes([10, 1, 2, 77]))   # lo's subnet
    assert stack.is_broadcast(bytes([10, 1, 2, 255]))
    assert _ask(s, RTM_NEWADDR, 0, _addr(2, 24, 1, ip)) == Errno.EEXIST
    assert _ask(s, RTM_NEWADDR, NLM_F_REPLACE, _addr(2, 24, 1, ip)) == 0
    assert _ask(s, RTM_NEWADDR, NLM_F_EXCL | NLM_F_REPLACE, _addr(2, 24, 1, ip)) == \
        Errno.EEXIST
    assert _ask(s, RTM_DELADDR, 0, _addr(2, 24, 1, ip)) == 0
    assert not stack.is_local(ip)
    assert _ask(s, RTM_DELADDR, 0, _addr(2, 24, 1, ip)) == Errno.EADDRNOTAVAIL
    assert _ask(s, RTM_NEWADDR, 0, _addr(2, 33, 1, ip)) == Errno.EINVAL
    assert _ask(s, RTM_NEWADDR, 0, _addr(2, 24, 77, ip)) == Errno.ENODEV
    assert _ask(s, RTM_NEWADDR, 0, _addr(2, 24, 1, ip[:2])) == Errno.ERANGE
    loop6 = bytes(15) + b"\1"
    assert _ask(s, RTM_DELADDR, 0, _addr(10, 128, 1, loop6)) == 0
    assert not stack.is_local(loop6)
    assert _ask(s, RTM_NEWADDR, 0, _addr(10, 128, 1, loop6)) == 0


def test_route_and_notification() -> None:
    net, s = _socket()
    watcher = NetlinkSocket(net.stack, 3, 43, 0, net)
    watcher.groups = 1 << 6                   # RTNLGRP_IPV4_ROUTE, as bind(2) would set it
    watcher._membership()
    body = RTMSG.pack(2, 24, 0, 0, 254, 3, 0, 1, 0) + rta(4, struct.pack("<I", 1)) + \
        rta(1, bytes([192, 0, 2, 0]))
    assert _ask(s, RTM_NEWROUTE, NLM_F_CREATE, body) == 0
    assert net.stack.route_table.lookup(bytes([192, 0, 2, 9])) is not None
    assert _ask(s, RTM_NEWROUTE, NLM_F_CREATE, body) == Errno.EEXIST
    assert [NLMSGHDR.unpack_from(q.data)[1] for q in watcher.rcvq] == [RTM_NEWROUTE]
    assert _ask(s, RTM_DELROUTE, 0, body) == 0
    assert _ask(s, RTM_DELROUTE, 0, body) == Errno.ESRCH
    assert net.stack.route_table.lookup(bytes([192, 0, 2, 9])) is None


def test_link_events_and_overrun() -> None:
    net, s = _socket()
    small = NetlinkSocket(net.stack, 3, 44, 0, net)
    small.groups = 1                          # RTNLGRP_LINK
    small._membership()
    small.rcvbuf = 2304
    for n in range(20):
        name = b"lo%d\0" % n
        assert _ask(s, RTM_SETLINK, 0, IFINFOMSG.pack(0, 0, 1, 0, 0) + rta(3, name)) == 0
    assert net.stack.lo.name == b"lo19"
    assert small.sk_err == Errno.ENOBUFS and small.rcvq          # some kept, the rest lost
    assert _ask(s, RTM_NEWLINK, NLM_F_CREATE, IFINFOMSG.pack(0, 0, 0, 0, 0) +
                rta(3, b"x0\0") + rta(18, rta(1, b"bogus"))) == Errno.EOPNOTSUPP


def test_fuzzed_requests_always_answered() -> None:
    """Mutations of valid requests (cut, flipped, lengths lied about) of every changing
    type: each gets an acknowledgement with an errno, and the stack stays usable."""
    rng = random.Random(1234)
    templates = [
        (RTM_NEWADDR, _addr(2, 24, 1, bytes([10, 0, 0, 1])) + rta(3, b"lo\0") +
         rta(4, bytes([10, 0, 0, 255])) + rta(6, bytes(16))),
        (RTM_NEWADDR, _addr(10, 64, 1, bytes(15) + b"\5")),
        (RTM_DELADDR, _addr(2, 8, 1, bytes([127, 0, 0, 1]))),
        (RTM_NEWROUTE, RTMSG.pack(2, 24, 0, 0, 254, 3, 0, 1, 0) + rta(4, b"\1\0\0\0") +
         rta(1, bytes([192, 0, 2, 0])) + rta(5, bytes([127, 0, 0, 9]))),
        (RTM_NEWROUTE, RTMSG.pack(10, 64, 0, 0, 0, 0, 0, 1, 0) + rta(4, b"\1\0\0\0") +
         rta(1, b"\x20\x01\x0d\xb8" + bytes(12)) + rta(6, b"\x10\0\0\0")),
        (RTM_DELROUTE, RTMSG.pack(2, 0, 0, 0, 254, 0, 255, 0, 0)),
        (RTM_NEWLINK, IFINFOMSG.pack(0, 0, 0, 1, 1) + rta(3, b"va\0") +
         rta(18, rta(1, b"veth") + rta(2, rta(1, IFINFOMSG.pack(0, 0, 0, 0, 0) +
                                              rta(3, b"vb\0"))))),
        (RTM_SETLINK, IFINFOMSG.pack(0, 0, 1, 1, 1) + rta(4, b"\0\x10\0\0") +
         rta(28, b"\0\0\0\0")),
    ]
    for i in range(3000):
        if rng.random() < 0.05 or i == 0:      # now and then a fresh namespace
            net, s = _socket()
        mtype, body = rng.choice(templates)
        b = bytearray(body)
        for _m in range(rng.randint(0, 4)):
            op = rng.random()
            if op < 0.4 and b:
                b[rng.randrange(len(b))] = rng.randrange(256)
            elif op < 0.6:
                b = b[:rng.randrange(len(b) + 1)]
            elif op < 0.8 and len(b) > 20:
                at = rng.randrange(16, len(b) - 2)
                b[at:at + 2] = struct.pack("<H", rng.choice([0, 3, 4, 5, 0xFFFF,
                                                             rng.randrange(65536)]))
            else:
                b += bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
        flags = rng.choice([0, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE,
                            NLM_F_CREATE | NLM_F_EXCL])
        if not b:
            continue
        err = _ask(s, mtype, flags, bytes(b))
        assert 0 <= err < 4096
    assert _ask(s, RTM_NEWADDR, NLM_F_REPLACE, _addr(2, 32, 1, bytes([10, 9, 9, 9]))) == 0
