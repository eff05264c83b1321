"""NETLINK_ROUTE replies (pyvisor/sentry/socket/netlink/route.py) without ptrace: dumps end
with NLMSG_DONE, single requests are answered or refused with Linux's errno."""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.socket import inet
from pyvisor.sentry.socket.netlink import (NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE,
                                           NLMSG_ERROR, NLMSGHDR, NetlinkSocket)
from pyvisor.sentry.socket.netlink.route import (IFINFOMSG, RTM_GETADDR, RTM_GETLINK,
                                                 RTM_GETROUTE, RTM_NEWADDR, RTM_NEWLINK,
                                                 RTM_NEWROUTE)


class _Stack:
    def interfaces(self) -> list[inet.Interface]:
        return [inet.loopback()]

    def routes(self) -> list[inet.Route]:
        return inet.loopback_routes()

    def proc_net(self, name: str) -> bytes | None:
        return None


def _ask(mtype: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
    s = NetlinkSocket(_Stack(), 3, 42)
    req = NLMSGHDR.pack(NLMSGHDR.size + len(body), mtype, flags, 7, 0) + body
    assert s._request(req) == len(req)
    out = []
    for q in s.rcvq:
        dgram = q.data
        off = 0
        while off < len(dgram):
            ln, t, _, seq, pid = NLMSGHDR.unpack_from(dgram, off)
            assert seq == 7 and pid == 42
            out.append((t, dgram[off + NLMSGHDR.size:off + ln]))
            off += (ln + 3) & ~3
    return out


def test_link_dump() -> None:
    msgs = _ask(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, b"\0" * IFINFOMSG.size)
    assert [t for t, _ in msgs] == [RTM_NEWLINK, NLMSG_DONE]
    assert b"lo\0" in msgs[0][1] and IFINFOMSG.unpack_from(msgs[0][1])[2] == 1


def test_addr_and_route_dumps() -> None:
    addrs = _ask(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, b"\0" * 8)
    assert [t for t, _ in addrs] == [RTM_NEWADDR, RTM_NEWADDR, NLMSG_DONE]
    assert b"\x7f\0\0\1" in addrs[0][1]
    routes = _ask(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, b"\x02" + b"\0" * 11)
    assert [t for t, _ in routes] == [RTM_NEWROUTE] * 3 + [NLMSG_DONE]


def test_single_link_and_errors() -> None:
    one = _ask(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, IFINFOMSG.pack(0, 0, 1, 0, 0))
    assert [t for t, _ in one] == [RTM_NEWLINK, NLMSG_ERROR]
    assert struct.unpack_from("<i", one[1][1])[0] == 0                  # the ACK
    missing = _ask(RTM_GETLINK, NLM_F_REQUEST, IFINFOMSG.pack(0, 0, 99, 0, 0))
    assert missing[0][0] == NLMSG_ERROR
    assert struct.unpack_from("<i", missing[0][1])[0] == -Errno.ENODEV
    # No family has an RTM_NEWADDR handler for AF_UNSPEC (rtnl_get_link finds none).
    change = _ask(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK, b"\0" * 8)
    assert struct.unpack_from("<i", change[0][1])[0] == -Errno.EOPNOTSUPP
    unknown = _ask(99, NLM_F_REQUEST, b"\0")
    assert struct.unpack_from("<i", unknown[0][1])[0] == -Errno.EOPNOTSUPP
    # rtnetlink_rcv_msg ignores a message without even a family byte.
    assert _ask(99, NLM_F_REQUEST, b"") == []
    assert _ask(200, NLM_F_REQUEST, b"\0")[0][0] == NLMSG_ERROR     # > RTM_MAX
