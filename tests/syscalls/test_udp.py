"""UDP corners compared with Linux (tests/programs/udp_misc.c, IPv4 and IPv6): what
connect(AF_UNSPEC) keeps, reads after shutdown(SHUT_RD), SIOCGSTAMP, empty datagrams, and
IP_TTL/IP_TOS/IPV6_HOPLIMIT/IPV6_TCLASS control messages on sendmsg and recvmsg."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pvtest import Builder, Comparer


@pytest.mark.parametrize("family", ["4", "6"])
def test_udp_corners(family: str, program: Builder, compare: Comparer) -> None:
    native, _ = compare([program("udp_misc.c"), family])
    out = native.stdout
    assert out.endswith("ok\n"), out
    assert "bound to any:40200, connected: " in out and "port 40200\n" in out, out
    assert "round 2:" in out and " 17 " in out, out
