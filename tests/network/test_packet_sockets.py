"""AF_PACKET, raw sockets and ephemeral ports of the sandbox's stack, compared with Linux.

tests/programs/packet_sock.c runs natively only in a network namespace made for it
(`unshare -n`, lo brought up and net.ipv4.conf.lo.accept_local/route_localnet set in
that namespace), so that it never opens a packet socket in the host's namespace and sees
only its own traffic; under pyvisor it runs as is (the sandbox has its own stack).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pvtest import Builder, Runner

NETNS_SETUP = ("ip link set lo up && echo 1 > /proc/sys/net/ipv4/conf/lo/accept_local"
               " && echo 1 > /proc/sys/net/ipv4/conf/lo/route_localnet && exec \"$0\"")


def test_packet_sockets_on_loopback(program: Builder, run: Runner) -> None:
    prog = program("packet_sock")
    native = run("native", ["unshare", "-n", "sh", "-c", NETNS_SETUP, prog])
    boxed = run("pyvisor", [prog])
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{boxed.output}"
    assert native.returncode == 0 and native.stdout.endswith("ok\n"), detail
    assert boxed.returncode == native.returncode, detail
    assert boxed.stdout == native.stdout, f"stdout differs\n{detail}"
    out = native.stdout
    # The ETH_P_ALL socket sees a datagram crossing lo twice, sent then received.
    assert "all/raw 1: 54 bytes" in out and "pkttype OUTGOING" in out, out
    assert "udp socket got 12 \"from a frame\"" in out, out


def test_raw_sockets_more(program: Builder, run: Runner) -> None:
    """tests/programs/raw_more.c: raw socket names, a raw IPPROTO_UDP socket seeing UDP
    between two sockets, TTL/traffic class control messages, IPV6_CHECKSUM.  Natively in a
    namespace of its own too, so that no other loopback traffic of the host reaches it."""
    prog = program("raw_more")
    native = run("native", ["unshare", "-n", "sh", "-c", NETNS_SETUP, prog])
    boxed = run("pyvisor", [prog])
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{boxed.output}"
    assert native.returncode == 0 and native.stdout.endswith("ok\n"), detail
    assert boxed.returncode == native.returncode, detail
    assert boxed.stdout == native.stdout, f"stdout differs\n{detail}"
    assert "cmsg ttl 21" in native.stdout, detail


def test_socket_filters(program: Builder, run: Runner) -> None:
    """tests/programs/sock_filter.c: SO_ATTACH_FILTER programs on UDP, raw and packet
    sockets (dropping, cutting short, SKF_NET_OFF and ancillary loads) and the programs
    attach refuses."""
    prog = program("sock_filter")
    native = run("native", ["unshare", "-n", "sh", "-c", NETNS_SETUP, prog])
    boxed = run("pyvisor", [prog])
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{boxed.output}"
    assert native.returncode == 0 and native.stdout.endswith("ok\n"), detail
    assert boxed.returncode == native.returncode, detail
    assert boxed.stdout == native.stdout, f"stdout differs\n{detail}"
    assert 'source-port filter: [6 "from b"]\n' in native.stdout, detail


def test_udp_port_range_exhaustion(program: Builder, run: Runner) -> None:
    """tests/programs/udp_ports.c: net.ipv4.ip_local_port_range written through /proc/sys
    (natively in a namespace of its own: the range is per namespace), then bind and connect
    running out of ephemeral ports."""
    prog = program("udp_ports")
    native = run("native", ["unshare", "-n", "sh", "-c", NETNS_SETUP, prog])
    boxed = run("pyvisor", [prog])
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{boxed.output}"
    assert native.returncode == 0 and native.stdout.endswith("ok\n"), detail
    assert boxed.returncode == native.returncode, detail
    assert boxed.stdout == native.stdout, f"stdout differs\n{detail}"
    assert "bind: 51 sockets, then EADDRINUSE" in native.stdout, detail


def test_packet_rx_ring(program: Builder, run: Runner) -> None:
    """tests/programs/packet_ring.c: PACKET_RX_RING (TPACKET_V1/V2) mapped from the socket,
    frames handed back and forth, drops counted by PACKET_STATISTICS; the port unreachables
    that cross lo are in the ring as natively."""
    prog = program("packet_ring")
    native = run("native", ["unshare", "-n", "sh", "-c", NETNS_SETUP, prog])
    boxed = run("pyvisor", [prog])
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{boxed.output}"
    assert native.returncode == 0 and native.stdout.endswith("ok\n"), detail
    assert boxed.returncode == native.returncode, detail
    assert boxed.stdout == native.stdout, f"stdout differs\n{detail}"
    assert 'after handing back: "again!!"' in native.stdout, detail
