"""Raw sockets and multicast on an interface the sandbox took over (the veth pair of
netpair.py; the peer namespace's Linux is the other host).

  * ping with raw sockets: with net.ipv4.ping_group_range "1 0" in the bundle, ping
    sockets are refused and iputils' ping falls back to SOCK_RAW/IPPROTO_ICMP(V6),
    to the peer and to loopback;
  * multicast: a receiver in the sandbox joined to a group on eth0 gets what the
    peer sends to the group (the Sentry accepts the group's frames), and what the
    sandbox sends to a group leaves eth0 with the group's MAC and IP_MULTICAST_TTL,
    for a receiver the peer's kernel has joined.
"""

from __future__ import annotations

import subprocess
import sys
import time

from netpair import Box, NetPair, finish

RECEIVER = """
import socket, struct, sys
group, port, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4si", socket.inet_aton(group), b"\\0" * 4,
                         socket.if_nametoindex(sys.argv[4])))
print("joined", flush=True)
s.settimeout(30)
for _ in range(want):
    data, (src, sport) = s.recvfrom(100)
    print("got", data.decode(), "from", src, flush=True)
"""

SENDER = """
import socket, struct, sys, time
group, port, src, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
for i in range(count):
    s.sendto(b"hello%d" % i, (group, port))
    time.sleep(0.3)
"""


def test_ping_with_raw_sockets(netpair: NetPair, box: Box) -> None:
    script = (f"ping -c 2 -i 0.2 -W 5 {netpair.peer4} && ping -c 1 -W 5 {netpair.peer6} "
              "&& ping -c 1 -W 5 127.0.0.1")
    r = box.run(["/bin/sh", "-c", script], netpair.box_path,
                sysctl={"net.ipv4.ping_group_range": "1\t0"})
    assert r.returncode == 0, r.output
    assert r.stdout.count(" 0% packet loss") == 3, r.output
    assert f"bytes from {netpair.peer4}: icmp_seq=1 ttl=64" in r.stdout, r.output
    assert f"bytes from {netpair.peer6}: icmp_seq=1 ttl=64" in r.stdout, r.output
    assert "internal error" not in box.log_text(), box.log_text()


def test_multicast_peer_to_sandbox(netpair: NetPair, box: Box) -> None:
    group = "239.7.7.7"
    p = box.start([sys.executable, "-c", RECEIVER, group, "5007", "2", "eth0"],
                  netpair.box_path)
    try:
        # The peer sends until the sandbox's receiver has had its two datagrams.
        sender = netpair.peer_popen([sys.executable, "-c", SENDER, group, "5007",
                                     netpair.peer4, "40"])
        code, out = finish(p, timeout=90)
    finally:
        sender.kill()
        sender.communicate()
    assert code == 0, out
    assert out.count(f"from {netpair.peer4}") == 2, out


def test_multicast_sandbox_to_peer(netpair: NetPair, box: Box) -> None:
    group = "239.8.8.8"
    receiver = netpair.peer_popen([sys.executable, "-c", RECEIVER, group, "5008", "2",
                                   netpair.peer_if])
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().decode().strip() == "joined"
        r = box.run([sys.executable, "-c", SENDER, group, "5008", netpair.box4, "3"],
                    netpair.box_path)
        assert r.returncode == 0, r.output
        out, _ = receiver.communicate(timeout=30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.communicate()
    text = out.decode()
    assert text.count(f"from {netpair.box4}") == 2, text


SYN_FLOOD = """
import random, socket, struct, sys
dst, port, count, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def csum(b):
    if len(b) % 2:
        b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(count):
    # Sources on the link that nobody holds: the SYN-ACKs are never answered, so each
    # SYN leaves a half-open connection in the sandbox until its retries run out.
    src = prefix + str(100 + i)
    tcp = struct.pack("!HHIIBBHHH", 40000 + i, port, random.getrandbits(32), 0, 5 << 4, 2,
                      64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, 20)
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i, 0, 64, 6, 0, socket.inet_aton(src),
                     socket.inet_aton(dst))
    s.sendto(ip + tcp, (dst, 0))
print("flooded", count)
"""

CLIENT = """
import socket, struct, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
info = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
options, total_retrans = info[5], struct.unpack_from("I", info, 100)[0]
c.sendall(b"through the cookie")
print("echo:", c.recv(100).decode())
print("window scale offered:", bool(options & 4), "retransmitted SYNs:", total_retrans)
"""

LISTENER = """
import socket, sys
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
c.sendall(c.recv(100))
c.close()
"""


def test_syn_cookies_under_a_syn_flood(netpair: NetPair, box: Box) -> None:
    """A listener (backlog 1: 8 half-open connections at most) flooded by SYNs whose
    sources never answer: a real client still connects at its first SYN, through a
    cookie SYN-ACK (which offers no window scale), and exchanges data."""
    p = box.start([sys.executable, "-c", LISTENER, "7070"], netpair.box_path)
    try:
        assert p.stdout is not None
        assert p.stdout.readline().decode().strip() == "listening"
        prefix = netpair.peer4.rsplit(".", 1)[0] + "."
        r = netpair.peer([sys.executable, "-c", SYN_FLOOD, netpair.box4, "7070", "40", prefix])
        assert r.returncode == 0, r.output
        time.sleep(0.5)
        r = netpair.peer([sys.executable, "-c", CLIENT, netpair.box4, "7070"])
        assert r.returncode == 0, r.output
        assert "echo: through the cookie" in r.stdout, r.output
        assert "window scale offered: False retransmitted SYNs: 0" in r.stdout, r.output
    finally:
        code, out = finish(p, timeout=60)
    assert code == 0, out
