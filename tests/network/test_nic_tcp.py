"""TCP over a taken-over eth0: the segment-level endpoint (netstack/tcpseg.py) on this
packet path, through the seam netstack/__init__.py describes
(send_ip down, transport_handlers[6] up).  A server inside reached from the peer side
of the veth, and a client inside reaching a server on the peer side, IPv4 and IPv6,
with a megabyte each way checked byte for byte."""

from __future__ import annotations

from netpair import Box, NetPair, finish
from pvtest import Builder


def test_tcp_server_inside(netpair: NetPair, box: Box, program: Builder) -> None:
    prog = program("net_peer")
    p = box.start([prog, "tcpecho", "7000", "2"], netpair.box_path)
    try:
        r = netpair.peer([prog, "tcpask", netpair.box4, "7000", "1000000"], timeout=120)
        assert r.returncode == 0 and "tcp 1000000 ok" in r.stdout, r.output
        r = netpair.peer([prog, "tcpask", netpair.box6, "7000", "100000"], timeout=120)
        assert r.returncode == 0 and "tcp 100000 ok" in r.stdout, r.output
    finally:
        code, out = finish(p, timeout=120)
    assert code == 0 and "served 1 1000000" in out and "served 2 100000" in out, out


def test_tcp_client_inside(netpair: NetPair, box: Box, program: Builder) -> None:
    prog = program("net_peer")
    server = netpair.peer_popen([prog, "tcpecho", "7001", "2"])
    try:
        script = (f"{prog} tcpask {netpair.peer4} 7001 1000000 && "
                  f"{prog} tcpask {netpair.peer6} 7001 100000")
        r = box.run(["/bin/sh", "-c", script], netpair.box_path, timeout=180)
    finally:
        try:
            out, _ = server.communicate(timeout=60)
        except Exception:
            server.kill()
            out, _ = server.communicate()
    assert r.returncode == 0, r.output
    assert "tcp 1000000 ok" in r.stdout and "tcp 100000 ok" in r.stdout, r.output
    text = out.decode()
    assert "served 1 1000000" in text and "served 2 100000" in text, text
