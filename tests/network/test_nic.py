"""The packet path: a sandbox whose OCI bundle names a network namespace takes over its
eth0 (runtime/netns.py) and serves it with netstack's own ARP, IPv4, IPv6/NDP, ICMP and
UDP (sentry/socket/netstack).  Each test makes a veth pair between two namespaces of
its own (conftest.py); the "peer" side plays the host of a container network.

What the peer sees is Linux's own view of the sandbox: its kernel resolves the
sandbox's addresses with ARP/NDP, pings them, exchanges UDP with a server inside, gets
ICMP port unreachable from closed UDP ports and resets from closed TCP ports.  After
the sandbox is gone, nothing answers on those addresses: the answers came from the
Sentry, not from the box namespace's kernel (whose addresses the sandbox removed).
"""

from __future__ import annotations

import os
import re
import subprocess

from netpair import Box, NetPair, finish
from pvtest import Builder


def test_takeover_shows_eth0_inside(netpair: NetPair, box: Box) -> None:
    r = box.run(["/bin/sh", "-c", "ip addr show eth0; ip route; ip -6 route; "
                 "cat /proc/net/dev"], netpair.box_path)
    assert r.returncode == 0, r.output
    out = r.stdout
    assert f"inet {netpair.box4}/24" in out, out
    assert f"inet6 {netpair.box6}/64" in out, out
    assert re.search(r"inet6 fe80::\S+/64 scope link", out), out
    assert f"link/ether {netpair.box_mac}" in out, out
    assert "mtu 1500" in out, out
    assert f"default via {netpair.peer4} dev eth0" in out, out
    assert re.search(rf"{re.escape(netpair.box4[:-1])}0/24 dev eth0 .*src {netpair.box4}", out), out
    assert "eth0:" in out, out
    # The box namespace's kernel no longer holds the addresses: only the Sentry answers.
    host_view = netpair.box_addrs()
    assert "inet " not in host_view and "inet6" not in host_view, host_view
    assert "UP" in host_view, host_view


def test_ping_udp_tcp_from_peer(netpair: NetPair, box: Box, program: Builder) -> None:
    peer_prog = program("net_peer")
    p = box.start([peer_prog, "echo", "7777", "3"], netpair.box_path)
    try:
        # ask retries until the server inside answers (the sandbox is starting meanwhile).
        r = netpair.peer([peer_prog, "ask", netpair.box4, "7777", "5"])
        assert r.returncode == 0 and "reply 5 ok" in r.stdout, r.output
        # ICMP echo, answered by netstack (v4, v6, link-local through NDP).
        for target in (netpair.box4, netpair.box6):
            r = netpair.peer(["ping", "-c", "2", "-i", "0.2", "-W", "5", target])
            assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.output
        r = netpair.peer(["ping", "-c", "1", "-W", "5", "-s", "3000", netpair.box4])
        assert r.returncode == 0 and "3008 bytes from" in r.stdout, r.output   # fragmented
        # A closed UDP port: ICMP port unreachable; a closed TCP port: a reset.
        for target in (netpair.box4, netpair.box6):
            r = netpair.peer([peer_prog, "refused", target, "7778"])
            assert r.returncode == 0 and "refused" in r.stdout, r.output
            r = netpair.peer([peer_prog, "tcp", target, "80"])
            assert r.stdout.strip() == "ECONNREFUSED", r.output
        # UDP over IPv6, and datagrams larger than the MTU (reassembled and fragmented by
        # the sandbox both ways).
        r = netpair.peer([peer_prog, "ask", netpair.box6, "7777", "4000"])
        assert r.returncode == 0 and "reply 4000 ok" in r.stdout, r.output
        r = netpair.peer([peer_prog, "ask", netpair.box4, "7777", "9000"])
        assert r.returncode == 0 and "reply 9000 ok" in r.stdout, r.output
    finally:
        code, out = finish(p)
    assert code == 0, out
    assert "echoed 3 9000" in out, out
    assert "internal error" not in box.log_text(), box.log_text()
    # The sandbox is gone: nobody answers for its address any more.
    r = netpair.peer(["ping", "-c", "1", "-W", "1", netpair.box4])
    assert r.returncode != 0, r.output


def test_udp_and_ping_from_sandbox(netpair: NetPair, box: Box, program: Builder) -> None:
    peer_prog = program("net_peer")
    server = netpair.peer_popen([peer_prog, "echo", "7779", "3"])
    try:
        script = "; ".join([
            f"{peer_prog} ask {netpair.peer4} 7779 5",
            f"{peer_prog} ask {netpair.peer6} 7779 3000",
            f"{peer_prog} ask {netpair.peer4} 7779 20000",
            f"{peer_prog} ping {netpair.peer4}",
            f"{peer_prog} ping {netpair.peer6}",
            f"{peer_prog} refused {netpair.peer4} 7780",
            f"{peer_prog} refused {netpair.peer6} 7780",
            f"ping -c 1 -W 5 {netpair.peer4}",
        ])
        r = box.run(["/bin/sh", "-c", script], netpair.box_path)
    finally:
        try:
            out, _ = server.communicate(timeout=30)
        except Exception:
            server.kill()
            out, _ = server.communicate()
    assert r.returncode == 0, r.output
    for line in ("reply 5 ok", "reply 3000 ok", "reply 20000 ok", "refused",
                 "1 packets transmitted, 1 received"):
        assert line in r.stdout, r.output
    assert r.stdout.count("pong 3") == 2, r.output
    text = out.decode()
    assert "echoed 1 5" in text and "echoed 2 3000" in text and "echoed 3 20000" in text, text


def test_network_none_keeps_loopback_only(netpair: NetPair, box: Box) -> None:
    r = box.run(["/bin/sh", "-c", "ip addr"], netpair.box_path, network="none")
    assert r.returncode == 0, r.output
    assert "lo:" in r.stdout and "eth0" not in r.stdout, r.output
    assert f"inet {netpair.box4}/24" in netpair.box_addrs()       # untouched


def test_host_namespace_is_refused() -> None:
    """The guard that keeps a bundle from stripping the host's own interfaces: init's
    namespace and the caller's own are refused (checked in this process: join refuses
    before it enters anything, and these are namespaces this process is already in or
    that `ip` cannot reach through the bundle anyway)."""
    import pytest
    from pyvisor.runtime import netns
    from pyvisor.runtime.errors import BootError
    for path in ("/proc/self/ns/net", f"/proc/{os.getpid()}/ns/net"):
        with pytest.raises(BootError, match="host's"):
            netns.join(path)
    with pytest.raises(BootError):     # refused, or not even openable from here
        netns.join("/proc/1/ns/net")


def test_host_namespace_bundle_fails_cleanly(box: Box) -> None:
    """A bundle naming the host's namespace: one clear line, exit 125, nothing changed."""
    before = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    r = box.run(["/bin/true"], f"/proc/{os.getpid()}/ns/net")
    assert r.returncode == 125, r.output
    assert "is the host's: refusing" in r.stderr, r.output
    assert "Traceback" not in r.output
    after = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert before == after
