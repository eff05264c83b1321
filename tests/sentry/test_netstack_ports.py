"""netstack's port table (pyvisor/sentry/socket/netstack/ports.py) without ptrace: Linux's
bind-conflict rules for TCP and UDP, address overlap with the dual-stack wildcard, and
ephemeral ports."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import EPHEMERAL_HIGH, EPHEMERAL_LOW, TCP_CLOSE, TCP_LISTEN, \
    TCP_TIME_WAIT
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.netstack.ports import PortTable, overlap

ANY4, LO4, OTHER4 = b"\0\0\0\0", b"\x7f\0\0\1", b"\x7f\0\0\2"
ANY6, LO6 = b"\0" * 16, b"\0" * 15 + b"\1"


@dataclass(eq=False)
class B:
    laddr: bytes
    reuse: bool = False
    reuseport: bool = False
    v6only: bool = False
    owner_uid: int = 0
    tcp_state: int = TCP_CLOSE
    lport: int = 0


def test_overlap() -> None:
    assert overlap(B(LO4), B(LO4)) and overlap(B(ANY4), B(LO4)) and overlap(B(LO4), B(ANY4))
    assert not overlap(B(LO4), B(OTHER4))
    assert overlap(B(ANY6), B(LO4))                     # the dual-stack wildcard
    assert not overlap(B(ANY6, v6only=True), B(LO4))
    assert not overlap(B(LO6), B(LO4))
    assert overlap(B(ANY6), B(LO6)) and not overlap(B(LO6), B(b"\0" * 15 + b"\2"))


def test_tcp_rules() -> None:
    t = PortTable(tcp=True)
    a = B(LO4)
    t.bind(a, 5000)
    with pytest.raises(SyscallError) as e:
        t.bind(B(ANY4), 5000)
    assert e.value.errno == Errno.EADDRINUSE
    t.bind(B(OTHER4), 5000)                             # a different address: fine
    # SO_REUSEADDR on both, nobody listening: shared; not with a listener.
    r1, r2 = B(LO4, reuse=True), B(LO4, reuse=True)
    t.bind(r1, 6000)
    t.bind(r2, 6000)
    r1.tcp_state = TCP_LISTEN
    assert t.conflict(B(LO4, reuse=True), r1)
    # SO_REUSEPORT: same owner only, unless the other is in TIME_WAIT.
    p1 = B(LO4, reuseport=True, owner_uid=1)
    t.bind(p1, 7000)
    assert not t.conflict(B(LO4, reuseport=True, owner_uid=1), p1)
    assert t.conflict(B(LO4, reuseport=True, owner_uid=2), p1)
    tw = B(LO4, reuseport=True, owner_uid=3, tcp_state=TCP_TIME_WAIT)
    assert not t.conflict(B(LO4, reuseport=True, owner_uid=2), tw)
    assert t.conflict(B(LO4), tw)                       # TIME_WAIT holds the port
    t.remove(a)
    assert a not in t.on(5000)


def test_udp_rules() -> None:
    t = PortTable(tcp=False)
    t.bind(B(ANY4, reuse=True), 53)
    t.bind(B(LO4, reuse=True), 53)                      # both SO_REUSEADDR: shared
    with pytest.raises(SyscallError):
        t.bind(B(LO4), 53)


def test_ephemeral_ports_are_in_range_and_distinct() -> None:
    t = PortTable(tcp=True)
    ports = {t.bind(B(LO4), 0) for _ in range(200)}
    assert len(ports) == 200
    assert all(EPHEMERAL_LOW <= p <= EPHEMERAL_HIGH for p in ports)


def test_connect_reuses_time_wait_ports() -> None:
    """tcp_tw_reuse=2: when every ephemeral port is held in TIME_WAIT, connect still gets
    one; bind(0) does not."""
    t = PortTable(tcp=True)
    for port in range(EPHEMERAL_LOW, EPHEMERAL_HIGH + 1):
        t.add(B(LO4, tcp_state=TCP_TIME_WAIT, lport=port))
    with pytest.raises(SyscallError):
        t.bind(B(LO4), 0)
    assert EPHEMERAL_LOW <= t.bind(B(LO4), 0, connecting=True) <= EPHEMERAL_HIGH


def test_ephemeral_parity_and_tcp_autobind() -> None:
    """bind(0) prefers ports at an odd offset from the range's low end, connect(2) even
    ones (Linux: inet_csk_find_open_port, __inet_hash_connect); a TCP bind(0) never
    shares a port, SO_REUSEADDR or not (ip_autobind_reuse = 0), where UDP may."""
    from pyvisor.sentry.kernel.sysctl import NetSysctls
    sysctl = NetSysctls(port_range=(100, 109))
    t = PortTable(tcp=True, sysctl=sysctl)
    binds = [t.bind(B(LO4, reuse=True), 0) for _ in range(5)]
    assert sorted(binds) == [101, 103, 105, 107, 109]
    conns = [t.bind(B(LO4), 0, connecting=True) for _ in range(5)]
    assert sorted(conns) == [100, 102, 104, 106, 108]
    with pytest.raises(SyscallError) as e:
        t.bind(B(LO4, reuse=True), 0)                   # every port is held
    assert e.value.errno == Errno.EADDRINUSE
    assert t.bind(B(OTHER4, reuse=True), 0) % 2 == 1    # no overlap: any port will do
    u = PortTable(tcp=False, sysctl=NetSysctls(port_range=(100, 101)))
    assert u.bind(B(LO4), 0) == 101
    assert u.bind(B(LO4), 0) == 100
    with pytest.raises(SyscallError):
        u.bind(B(LO4), 0)
    u2 = PortTable(tcp=False, sysctl=NetSysctls(port_range=(100, 100)))
    u2.bind(B(LO4, reuse=True), 0)
    assert u2.bind(B(LO4, reuse=True), 0) == 100        # UDP shares with SO_REUSEADDR
@dataclass
class Range:
    port_range: tuple[int, int]


@pytest.mark.parametrize("tcp", [True, False])
def test_ephemeral_ports_avoid_shared_ports(tcp: bool) -> None:
    """bind(port 0) with SO_REUSEADDR: TCP never picks a port another SO_REUSEADDR socket
    holds (inet_csk_find_open_port), so a full range is EADDRINUSE; UDP shares it (gVisor's
    TCPBindAvoidsOtherBoundPortsReuseAddr and UDPBindMayBindOtherBoundPortsReuseAddr)."""
    t = PortTable(tcp=tcp, sysctl=Range((40000, 40009)))
    ports = {t.bind(B(LO4, reuse=True), 0) for _ in range(10)}
    assert ports <= set(range(40000, 40010))
    if tcp:
        assert len(ports) == 10
        with pytest.raises(SyscallError) as e:
            t.bind(B(LO4, reuse=True), 0)
        assert e.value.errno == Errno.EADDRINUSE
        assert 40000 <= t.bind(B(OTHER4, reuse=True), 0) <= 40009   # no overlap: fine
    else:
        assert 40000 <= t.bind(B(LO4, reuse=True), 0) <= 40009
