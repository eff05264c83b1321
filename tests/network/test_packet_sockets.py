"""AF_PACKET, raw sockets and ephemeral ports of the sandbox's stack, compared with Linux.

tests/programs/packet_sock.c runs natively only in a network namespace made for it
(`unshare -n`, lo brought up and net.ipv4.conf.lo.accept_local/route_localnet set in
that namespace), so that it never opens a packet socket in the host's namespace and sees
only its own traffic; under pyvisor it runs as is (the sandbox has its own stack).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pvtest import Builder, Runner

NETNS_SETUP = ("ip link set lo up && echo 1 > /proc/sys/net/ipv4/conf/lo/accept_local"
               " && echo 1 > /proc/sys/net/ipv4/conf/lo/route_localnet && exec \"$0\"")


# program -> (what it covers, lines the native output must hold: the feature really ran).
NETNS_PROGRAMS = {
    "packet_sock": ("AF_PACKET sockets on lo; the ETH_P_ALL socket sees a datagram cross lo "
                    "twice, sent then received",
                    ("all/raw 1: 54 bytes", "pkttype OUTGOING",
                     'udp socket got 12 "from a frame"')),
    "raw_more": ("raw socket names, a raw IPPROTO_UDP socket seeing UDP between two sockets, "
                 "TTL/traffic class control messages, IPV6_CHECKSUM", ("cmsg ttl 21",)),
    "sock_filter": ("SO_ATTACH_FILTER programs on UDP, raw and packet sockets (dropping, "
                    "cutting short, SKF_NET_OFF and ancillary loads) and the programs attach "
                    "refuses", ('source-port filter: [6 "from b"]\n',)),
    "udp_ports": ("net.ipv4.ip_local_port_range written through /proc/sys (per namespace), "
                  "then bind and connect running out of ephemeral ports",
                  ("bind: 51 sockets, then EADDRINUSE",)),
    "packet_ring": ("PACKET_RX_RING (TPACKET_V1/V2) mapped from the socket, frames handed back "
                    "and forth, drops counted by PACKET_STATISTICS; the port unreachables that "
                    "cross lo are in the ring as natively", ('after handing back: "again!!"',)),
}


@pytest.mark.parametrize("name", sorted(NETNS_PROGRAMS))
def test_netns_program(name: str, program: Builder, run: Runner) -> None:
    """tests/programs/NAME.c of NETNS_PROGRAMS, natively in a network namespace of its own
    (no other loopback traffic of the host reaches it) and in the sandbox: the same
    output, ending "ok", and its marker lines."""
    prog = program(name)
    native = run("native", ["unshare", "-n", "sh", "-c", NETNS_SETUP, prog])
    boxed = run("pyvisor", [prog])
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{boxed.output}"
    assert native.returncode == 0 and native.stdout.endswith("ok\n"), detail
    assert boxed.returncode == native.returncode, detail
    assert boxed.stdout == native.stdout, f"stdout differs\n{detail}"
    for marker in NETNS_PROGRAMS[name][1]:
        assert marker in native.stdout, detail
