"""netstack's packet path without ptrace: a Stack with one NIC whose fd is one end of an
AF_UNIX datagram socketpair (each datagram one Ethernet frame), driven by a fake kernel
(a clock and timers).  Frames are built by hand here and checked field by field: ARP,
ICMP echo, UDP delivery and port unreachable, TCP resets, IPv4/IPv6 reassembly with its
bounds, fragmentation on output, NDP, neighbour queues; and a frame fuzz calling the
stack directly, so that any exception fails the test (on a real NIC, link.NIC.input
would only count it)."""

from __future__ import annotations

import heapq
import os
import random
import socket
import struct
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import IPPROTO_ICMP, IPPROTO_UDP
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.sysctl import CoreSysctls
from pyvisor.sentry.socket.inet import Route
from pyvisor.sentry.socket.netstack import Stack
from pyvisor.sentry.socket.netstack import ipv4 as ip4mod
from pyvisor.sentry.socket.netstack import link
from pyvisor.sentry.socket.netstack.ipv4 import FRAG_HIGH, Reassembler, checksum
from pyvisor.sentry.socket.netstack.udp import PingSocket, UDPSocket
from pyvisor.sentry.socket.netstack.udp import checksum as ref_checksum

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "network"))
import framefuzz as ff  # noqa: E402

MAC = bytes.fromhex("020000000002")
PEER_MAC = bytes.fromhex("020000000001")
IP, PEER, OTHER = bytes([10, 9, 8, 2]), bytes([10, 9, 8, 1]), bytes([10, 9, 8, 3])
IP6 = bytes.fromhex("fd000000000000000000000000000002")
PEER6 = bytes.fromhex("fd000000000000000000000000000001")


class _Timer:
    def __init__(self, deadline: int, cb: Callable[[], None]) -> None:
        self.deadline, self.callback, self.cancelled = deadline, cb, False

    def __lt__(self, o: _Timer) -> bool:
        return self.deadline < o.deadline


class FakeKernel:
    def __init__(self) -> None:
        self.t = 10**15
        self.net_core = CoreSysctls()       # net.core.{w,r}mem_max: Linux's defaults
        self.timers: list[_Timer] = []
        self.watch: dict[int, Callable[[int], None]] = {}

    def now(self) -> int:
        return self.t

    def add_timer(self, deadline: int, cb: Callable[[], None]) -> _Timer:
        tm = _Timer(deadline, cb)
        heapq.heappush(self.timers, tm)
        return tm

    def watch_fd(self, fd: int, ev: int, cb: Callable[[int], None]) -> None:
        self.watch[fd] = cb

    def unwatch_fd(self, fd: int) -> None:
        self.watch.pop(fd, None)

    def advance(self, ns: int = 0) -> None:
        self.t += ns
        while self.timers and self.timers[0].deadline <= self.t:
            tm = heapq.heappop(self.timers)
            if not tm.cancelled:
                tm.callback()


class Wire:
    """The stack with eth0 = 10.9.8.2/24 and fd00::2/64, default route via 10.9.8.1."""

    def __init__(self) -> None:
        self.kernel = FakeKernel()
        self.stack = Stack(self.kernel)
        a, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        a.setblocking(False)
        self.peer.setblocking(False)
        self.nic = self.stack.attach_nic(
            2, b"eth0", a.detach(), MAC, 1500, [(IP, 24)], [(IP6, 64)],
            [Route(socket.AF_INET, b"\0" * 4, 0, 2, gateway=PEER)])

    def send(self, frame: bytes) -> None:
        self.peer.send(frame)
        self.kernel.watch.pop(self.nic.fd)(1)
        self.kernel.advance()

    def recv_all(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.peer.recv(70000))
            except BlockingIOError:
                return out

    def learn_peer(self) -> None:
        """The peer ARPs for us (which teaches us its MAC); drop our reply."""
        self.send(ff.eth(b"\xff" * 6, PEER_MAC, 0x806, struct.pack(
            "!HHBBH6s4s6s4s", 1, 0x800, 6, 4, 1, PEER_MAC, PEER, b"\0" * 6, IP)))
        self.recv_all()

    def close(self) -> None:
        self.nic.close()
        self.peer.close()


@pytest.fixture
def wire() -> Any:
    w = Wire()
    yield w
    w.close()


def udp(src: bytes, dst: bytes, sport: int, dport: int, data: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    return ff.with_csum(seg, 6, src, dst, 17)


def bound_udp(stack: Stack, port: int, family: int = socket.AF_INET) -> UDPSocket:
    s = UDPSocket(stack, family, 0)
    stack.udp_ports.bind(s, port)
    s.bound = True
    return s


def test_checksum_matches_rfc1071() -> None:
    r = random.Random(1)
    for n in list(range(0, 40)) + [1499, 1500, 65535]:
        data = r.randbytes(n)
        assert checksum(data) == ref_checksum(data)
    assert checksum(b"\0" * 20) == 0xFFFF
    assert checksum(b"\xff\xff") == 0


def test_arp_request_answered_stranger_not_learnt(wire: Wire) -> None:
    wire.learn_peer()
    assert wire.nic.arp.lookup(PEER) == PEER_MAC
    wire.send(ff.eth(b"\xff" * 6, PEER_MAC, 0x806, struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x800, 6, 4, 1, PEER_MAC, PEER, b"\0" * 6, IP)))
    [reply] = wire.recv_all()
    assert reply[:6] == PEER_MAC and reply[6:12] == MAC and reply[12:14] == b"\x08\x06"
    op, sha, spa, tha, tpa = struct.unpack_from("!6xH6s4s6s4s", reply, 14)
    assert (op, sha, spa, tha, tpa) == (2, MAC, IP, PEER_MAC, PEER)
    # A request for someone else and a reply from a stranger teach nothing.
    stranger = bytes.fromhex("0200000000ee")
    wire.send(ff.eth(b"\xff" * 6, stranger, 0x806, struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x800, 6, 4, 2, stranger, OTHER, MAC, IP[:3] + b"\x63")))
    assert wire.recv_all() == [] and wire.nic.arp.lookup(OTHER) is None


def test_ping_waits_for_arp_then_replies(wire: Wire) -> None:
    echo = ff.with_csum(bytes([8, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"hello", 2, b"", b"", 1)
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 1, echo)))
    [req] = wire.recv_all()                       # the reply waits on ARP
    assert req[:6] == b"\xff" * 6 and struct.unpack_from("!H", req, 20)[0] == 1
    assert req[38:42] == PEER
    wire.send(ff.eth(MAC, PEER_MAC, 0x806, struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x800, 6, 4, 2, PEER_MAC, PEER, MAC, IP)))
    [rep] = wire.recv_all()
    assert rep[:6] == PEER_MAC
    ip = rep[14:]
    assert checksum(ip[:20]) == 0 and ip[12:16] == IP and ip[16:20] == PEER and ip[9] == 1
    icmp = ip[20:]
    assert icmp[0] == 0 and icmp[4:] == echo[4:] and checksum(icmp) == 0


def test_neighbour_gives_up_after_probes(wire: Wire) -> None:
    s = bound_udp(wire.stack, 4000)
    s.laddr = IP
    s._transmit(b"x", IP, OTHER, 9)
    for _ in range(link.MAX_PROBES):
        frames = wire.recv_all()
        assert len(frames) == 1 and frames[0][12:14] == b"\x08\x06"
        wire.kernel.advance(link.RETRANS_NS)
    assert wire.recv_all() == []
    assert OTHER not in wire.nic.arp.entries and wire.stack.ip_no_routes == 1


def test_udp_delivered_and_port_unreachable(wire: Wire) -> None:
    wire.learn_peer()
    s = bound_udp(wire.stack, 5000)
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 17, udp(PEER, IP, 999, 5000, b"hi"))))
    assert len(s.rcvq) == 1 and s.rcvq[0].data == b"hi" and s.rcvq[0].src == PEER
    assert s.rcvq[0].sport == 999
    # A bad checksum is dropped; a zero one (no checksum) is fine over IPv4.
    bad = bytearray(udp(PEER, IP, 999, 5000, b"zz"))
    bad[6] ^= 1
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 17, bytes(bad))))
    assert len(s.rcvq) == 1 and wire.stack.udp_csum_errors == 1
    nocs = struct.pack("!HHHH", 999, 5000, 10, 0) + b"ok"
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 17, nocs)))
    assert len(s.rcvq) == 2 and s.rcvq[1].data == b"ok"
    assert wire.recv_all() == []
    # A closed port: ICMP port unreachable quoting the datagram, as much of it as fits in
    # 576 bytes (icmp_send; RFC 1812 4.3.2.3): here all of it.
    pkt = ff.ipv4(PEER, IP, 17, udp(PEER, IP, 999, 5001, b"nobody"))
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, pkt))
    [err] = wire.recv_all()
    icmp = err[34:]
    assert (icmp[0], icmp[1]) == (3, 3) and checksum(icmp) == 0 and icmp[8:] == pkt
    big = ff.ipv4(PEER, IP, 17, udp(PEER, IP, 999, 5001, b"x" * 1000))
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, big))
    [err] = wire.recv_all()
    assert len(err) - 34 == 576 - 20 and err[34 + 8:] == big[:548]
    # ... but never for a broadcast.
    wire.send(ff.eth(b"\xff" * 6, PEER_MAC, 0x800,
                     ff.ipv4(PEER, IP[:3] + b"\xff", 17, udp(PEER, IP[:3] + b"\xff", 1, 5001, b""))))
    assert wire.recv_all() == []


def test_tcp_reset_for_closed_port(wire: Wire) -> None:
    wire.learn_peer()
    syn = struct.pack("!HHIIBBHHH", 40000, 80, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 6, ff.with_csum(syn, 16, PEER, IP, 6))))
    [rst] = wire.recv_all()
    sport, dport, seq, ack, off, flags = struct.unpack_from("!HHIIBB", rst, 34)
    assert (sport, dport, seq, ack, flags) == (80, 40000, 0, 1001, 0x14)
    assert checksum(ff.pseudo(IP, PEER, 6, len(rst) - 34) + rst[34:]) == 0
    ackseg = struct.pack("!HHIIBBHHH", 40000, 80, 5, 777, 5 << 4, 0x10, 100, 0, 0)
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 6, ff.with_csum(ackseg, 16, PEER, IP, 6))))
    [rst] = wire.recv_all()
    assert struct.unpack_from("!IIxB", rst, 38) == (777, 0, 0x04)
    rstseg = struct.pack("!HHIIBBHHH", 40000, 80, 5, 0, 5 << 4, 0x04, 0, 0, 0)
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 6, ff.with_csum(rstseg, 16, PEER, IP, 6))))
    assert wire.recv_all() == []                  # never a reset for a reset
    # A registered handler takes TCP instead.
    got: list[tuple[bytes, bytes, bytes]] = []
    wire.stack.transport_handlers[6] = lambda s, d, seg, nic: got.append((s, d, seg))
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 6, ff.with_csum(syn, 16, PEER, IP, 6))))
    assert wire.recv_all() == [] and got and got[0][:2] == (PEER, IP)


def test_reassembly_out_of_order_and_overlap(wire: Wire) -> None:
    s = bound_udp(wire.stack, 5000)
    data = bytes(range(256)) * 12
    seg = udp(PEER, IP, 1, 5000, data)
    parts = [(0, seg[:1000]), (1000, seg[1000:2000]), (2000, seg[2000:])]
    for off, part in reversed(parts):
        more = 0x2000 if off + len(part) < len(seg) else 0
        wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 17, part, 7, more | off // 8)))
    assert len(s.rcvq) == 1 and s.rcvq[0].data == data
    # Overlapping fragments with different bytes: the datagram is dropped.
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 17, seg[:1000], 8, 0x2000)))
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 17, b"x" * 1000, 8, 0x2000 | 64)))
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 17, seg[1000:], 8, 125)))
    assert len(s.rcvq) == 1
    # Only the fragment after the drop waits (in a fresh queue), until it times out.
    [q] = wire.stack.frags4.queues.values()
    assert list(q.frags) == [1000]
    wire.kernel.advance(ip4mod.FRAG_TIMEOUT_NS + 1)
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 17, b"q" * 8, 9, 0x2000)))
    assert list(wire.stack.frags4.queues) == [(PEER, IP, b"\0\x09", 17)]


def test_reassembly_bounded() -> None:
    k = FakeKernel()
    st = Stack(k)
    r = Reassembler(st)
    for i in range(20000):
        r.add(("k", i), 0, b"x" * 1400, True, b"")
        assert r.mem <= FRAG_HIGH
    assert len(r.queues) <= ip4mod.FRAG_MAX_QUEUES
    k.advance(ip4mod.FRAG_TIMEOUT_NS + 1)
    r.add(("late", 0), 0, b"y" * 8, True, b"")
    assert len(r.queues) == 1 and r.mem == 8
    assert r.add(("big", 0), 65528, b"z" * 16, False, b"") is None   # past 65535
    assert ("big", 0) not in r.queues


def test_loopback_source_never_leaves(wire: Wire) -> None:
    """sendto(2) from a socket bound to 127.0.0.1 to another host: EINVAL, as Linux."""
    s = bound_udp(wire.stack, 4001)
    with pytest.raises(SyscallError) as e:
        s._transmit(b"x", b"\x7f\0\0\1", PEER, 9)
    assert e.value.errno == Errno.EINVAL and wire.recv_all() == []


def test_udp_output_fragments_to_mtu(wire: Wire) -> None:
    wire.learn_peer()
    s = bound_udp(wire.stack, 4000)
    data = os.urandom(4000)
    s._transmit(data, IP, PEER, 53)
    frames = wire.recv_all()
    assert len(frames) == 3 and all(len(f) <= 1514 for f in frames)
    r = Reassembler(Stack(FakeKernel()))
    done = None
    for f in frames:
        ip = f[14:]
        assert checksum(ip[:20]) == 0
        frag = struct.unpack_from("!H", ip, 6)[0]
        done = r.add(ip[4:6], (frag & 0x1FFF) * 8, ip[20:], bool(frag & 0x2000), ip[:20]) or done
    assert done is not None
    seg = done[1]
    assert seg[8:] == data and checksum(ff.pseudo(IP, PEER, 17, len(seg)) + seg) == 0


def test_ndp_solicitation_and_echo6(wire: Wire) -> None:
    group = bytes.fromhex("ff0200000000000000000001ff") + IP6[13:]
    ns = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + IP6 + bytes([1, 1]) + PEER_MAC
    frame = ff.eth(b"\x33\x33" + group[12:], PEER_MAC, 0x86DD,
                   ff.ipv6(PEER6, group, 58, ff.with_csum(ns, 2, PEER6, group, 58), hops=254))
    wire.send(frame)
    assert wire.recv_all() == []                  # hop limit not 255: ignored
    wire.send(frame[:21] + b"\xff" + frame[22:])
    [na] = wire.recv_all()
    assert na[:6] == PEER_MAC and na[20] == 58 and na[21] == 255
    msg = na[54:]
    assert msg[0] == 136 and msg[4] & 0x60 == 0x60 and msg[8:24] == IP6
    assert msg[24:26] == b"\x02\x01" and msg[26:32] == MAC
    assert checksum(ff.pseudo(IP6, PEER6, 58, len(msg)) + msg) == 0
    assert wire.nic.ndp.lookup(PEER6) == PEER_MAC
    echo = bytes([128, 0, 0, 0, 0, 7, 0, 1]) + b"six"
    wire.send(ff.eth(MAC, PEER_MAC, 0x86DD,
                     ff.ipv6(PEER6, IP6, 58, ff.with_csum(echo, 2, PEER6, IP6, 58))))
    [rep] = wire.recv_all()
    msg = rep[54:]
    assert msg[0] == 129 and msg[4:] == echo[4:]
    assert checksum(ff.pseudo(IP6, PEER6, 58, len(msg)) + msg) == 0


def test_ping_socket_over_nic(wire: Wire) -> None:
    wire.learn_peer()
    p = PingSocket(wire.stack, socket.AF_INET, 0)
    wire.stack.icmp_ports.bind(p, 0)
    p.bound = True
    p._transmit(bytes([8, 0, 0, 0, 0, 0, 0, 5]) + b"abc", IP, PEER, 0)
    [req] = wire.recv_all()
    icmp = req[34:]
    assert icmp[0] == 8 and icmp[4:6] == p.lport.to_bytes(2, "big") and checksum(icmp) == 0
    reply = ff.with_csum(bytes([0, 0, 0, 0]) + icmp[4:], 2, b"", b"", 1)
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, IPPROTO_ICMP, reply)))
    assert len(p.rcvq) == 1 and p.rcvq[0].data[0] == 0 and p.rcvq[0].data[8:] == b"abc"
    assert IPPROTO_UDP == 17


def test_vnet_header_partial_checksum_completed(wire: Wire) -> None:
    wire.learn_peer()
    s = bound_udp(wire.stack, 5000)
    seg = struct.pack("!HHHH", 999, 5000, 13, 0) + b"hello"
    # CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, not inverted.
    partial = (~checksum(ff.pseudo(PEER, IP, 17, 13))) & 0xFFFF
    seg = seg[:6] + partial.to_bytes(2, "big") + seg[8:]
    frame = ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 17, seg))
    wire.nic.vnet_hdr = True
    hdr = link.VNET_HDR.pack(link.VNET_NEEDS_CSUM, 0, 0, 0, 34, 6)
    wire.send(hdr + frame)
    assert len(s.rcvq) == 1 and s.rcvq[0].data == b"hello"
    wire.send(link.VNET_HDR.pack(link.VNET_NEEDS_CSUM, 0, 0, 0, 4000, 6) + frame)
    assert len(s.rcvq) == 1 and wire.nic.rx_errors == 1


FUZZ_FRAMES = int(os.environ.get("PYVISOR_NIC_FUZZ_FRAMES", "20000"))


def test_frame_fuzz_in_process(wire: Wire) -> None:
    """Frames straight into Stack.nic_input: an exception anywhere fails the test."""
    seed = int(os.environ.get("PYVISOR_NIC_FUZZ_SEED", str(random.randrange(10**9))))
    f = ff.Fuzzer(seed, MAC, IP, IP6, PEER, PEER6, PEER_MAC)
    bound_udp(wire.stack, 7777, socket.AF_INET6)
    stack, nic = wire.stack, wire.nic
    for i in range(FUZZ_FRAMES):
        frame = f.frame()
        try:
            stack.nic_input(nic, frame)
            if i % 64 == 0:
                wire.kernel.advance(50_000_000)
                wire.recv_all()
        except Exception as e:
            raise AssertionError(f"seed {seed}, frame {i}: {frame.hex()}") from e
    assert stack.frags4.mem <= FRAG_HIGH and stack.frags6.mem <= FRAG_HIGH
    assert len(nic.arp.entries) <= link.MAX_NEIGHBORS
    assert len(nic.ndp.entries) <= link.MAX_NEIGHBORS
    # Still answering.
    wire.recv_all()
    wire.learn_peer()
    echo = ff.with_csum(bytes([8, 0, 0, 0, 0, 1, 0, 1]) + b"after", 2, b"", b"", 1)
    wire.send(ff.eth(MAC, PEER_MAC, 0x800, ff.ipv4(PEER, IP, 1, echo)))
    assert any(fr[34] == 0 and fr[42:] == b"after" for fr in wire.recv_all())
