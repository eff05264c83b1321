"""Hostile Ethernet frames for netstack's NIC: random bytes, truncations, bit flips, and
well-formed ARP/IPv4/IPv6 frames with one field made wrong (checksums fixed up after
the damage where that lets the frame reach deeper code).  Used in-process by
tests/sentry/test_netstack_packets.py and, as a script, from the peer namespace of a
veth pair by tests/network/test_nic_fuzz.py:

    python3 framefuzz.py IFNAME DST_MAC DST_IP4 DST_IP6 SRC_IP4 SRC_IP6 SEED COUNT

writes COUNT frames to IFNAME through an AF_PACKET socket, pausing every SYNC frames
until the target answers a ping (so the frames are consumed, not dropped by a full
socket buffer), and prints "sent N written W synced M" (W: the frames the device took;
it refuses runts and frames past its MTU).
"""

from __future__ import annotations

import random
import struct
import sys
from typing import Callable

IP4 = struct.Struct("!BBHHHBBH4s4s")
IP6 = struct.Struct("!IHBB16s16s")


def csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pseudo(src: bytes, dst: bytes, proto: int, n: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, n)
    return src + dst + struct.pack("!IxxxB", n, proto)


def with_csum(seg: bytes, at: int, src: bytes, dst: bytes, proto: int) -> bytes:
    seg = seg[:at] + b"\0\0" + seg[at + 2:]
    c = csum(pseudo(src, dst, proto, len(seg)) + seg) if proto != 1 else csum(seg)
    return seg[:at] + c.to_bytes(2, "big") + seg[at + 2:]


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int = 1, frag: int = 0,
         ttl: int = 64, ihl: int = 5, total: int | None = None, opts: bytes = b"") -> bytes:
    h = IP4.pack(0x40 | ihl, 0, 20 + len(opts) + len(payload) if total is None else total,
                 ident, frag, ttl, proto, 0, src, dst) + opts
    return h[:10] + csum(h).to_bytes(2, "big") + h[12:] + payload


def ipv6(src: bytes, dst: bytes, nh: int, payload: bytes, hops: int = 64,
         plen: int | None = None) -> bytes:
    return IP6.pack(6 << 28, len(payload) if plen is None else plen, nh, hops, src, dst) + payload


def eth(dst: bytes, src: bytes, etype: int, body: bytes) -> bytes:
    return dst + src + etype.to_bytes(2, "big") + body


class Fuzzer:
    """Frames for one target (MAC and addresses) from one seed."""

    def __init__(self, seed: int, mac: bytes, ip4: bytes, ip6: bytes, peer4: bytes,
                 peer6: bytes, peer_mac: bytes = b"\x02\0\0\0\0\x01") -> None:
        self.r = random.Random(seed)
        self.mac, self.ip4, self.ip6 = mac, ip4, ip6
        self.peer4, self.peer6, self.peer_mac = peer4, peer6, peer_mac
        self.kinds: list[Callable[[], bytes]] = [
            self.random_frame, self.truncated, self.flipped, self.bad_ipv4, self.fragment4,
            self.bad_ipv6, self.fragment6, self.bad_arp, self.bad_ndp, self.bad_transport,
            self.vlan_and_odd_types]

    def rb(self, n: int) -> bytes:
        return self.r.randbytes(n)

    def dst_mac(self) -> bytes:
        return self.r.choice([self.mac, self.mac, b"\xff" * 6, b"\x33\x33\xff" + self.ip6[13:],
                              b"\x01\x00\x5e\0\0\1", self.rb(6)])

    def src4(self) -> bytes:
        return self.r.choice([self.peer4, self.peer4, self.rb(4), b"\0" * 4, b"\xff" * 4,
                              b"\x7f\0\0\1", b"\xe0\0\0\1", self.ip4])

    def src6(self) -> bytes:
        return self.r.choice([self.peer6, self.peer6, self.rb(16), b"\0" * 16,
                              b"\xfe\x80" + b"\0" * 6 + self.rb(8), b"\xff\x02" + b"\0" * 13 + b"\1"])

    def dst4(self) -> bytes:
        return self.r.choice([self.ip4, self.ip4, self.ip4[:3] + b"\xff", b"\xff" * 4,
                              b"\xe0\0\0\1", self.rb(4)])

    def dst6(self) -> bytes:
        return self.r.choice([self.ip6, self.ip6, bytes.fromhex("ff02" + "0" * 27 + "1"),
                              bytes.fromhex("ff0200000000000000000001ff") + self.ip6[13:],
                              self.rb(16)])

    # -- valid-looking frames ---------------------------------------------------------------

    def valid(self) -> bytes:
        r = self.r
        k = r.randrange(6)
        if k == 0:
            arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x800, 6, 4, 1, self.peer_mac, self.peer4,
                              b"\0" * 6, self.ip4)
            return eth(b"\xff" * 6, self.peer_mac, 0x806, arp)
        if k == 1:
            body = bytes([8, 0, 0, 0]) + self.rb(4) + self.rb(r.randrange(64))
            return eth(self.mac, self.peer_mac, 0x800,
                       ipv4(self.peer4, self.ip4, 1, with_csum(body, 2, b"", b"", 1)))
        if k == 2:
            data = self.rb(r.randrange(100))
            udp = struct.pack("!HHHH", r.randrange(1, 65536), r.randrange(1, 65536),
                              8 + len(data), 0) + data
            return eth(self.mac, self.peer_mac, 0x800,
                       ipv4(self.peer4, self.ip4, 17, with_csum(udp, 6, self.peer4, self.ip4, 17)))
        if k == 3:
            tcp = struct.pack("!HHIIBBHHH", r.randrange(65536), r.randrange(65536),
                              r.randrange(1 << 32), r.randrange(1 << 32), 5 << 4,
                              r.randrange(256), r.randrange(65536), 0, 0) + self.rb(r.randrange(40))
            return eth(self.mac, self.peer_mac, 0x800,
                       ipv4(self.peer4, self.ip4, 6, with_csum(tcp, 16, self.peer4, self.ip4, 6)))
        if k == 4:
            body = bytes([128, 0, 0, 0]) + self.rb(4) + self.rb(r.randrange(64))
            return eth(self.mac, self.peer_mac, 0x86DD,
                       ipv6(self.peer6, self.ip6, 58, with_csum(body, 2, self.peer6, self.ip6, 58)))
        target = self.ip6
        ns = bytes([135, 0, 0, 0, 0, 0, 0, 0]) + target + bytes([1, 1]) + self.peer_mac
        group = bytes.fromhex("ff0200000000000000000001ff") + target[13:]
        return eth(b"\x33\x33" + group[12:], self.peer_mac, 0x86DD,
                   ipv6(self.peer6, group, 58, with_csum(ns, 2, self.peer6, group, 58), hops=255))

    # -- hostile frames ---------------------------------------------------------------------

    def random_frame(self) -> bytes:
        return self.dst_mac() + self.rb(self.r.randrange(0, 1600))

    def truncated(self) -> bytes:
        f = self.valid()
        return f[:self.r.randrange(len(f) + 1)]

    def flipped(self) -> bytes:
        f = bytearray(self.valid())
        keep = range(0)                     # the peer's own link address stays right
        if f[12:14] == b"\x08\x06":
            keep = range(22, 28)
        elif f[12:14] == b"\x86\xdd" and len(f) > 54 and f[54] == 135:
            keep = range(len(f) - 6, len(f))
        for _ in range(self.r.randrange(1, 5)):
            i = self.r.randrange(len(f))
            if i not in keep:
                f[i] ^= 1 << self.r.randrange(8)
        return bytes(f)

    def bad_ipv4(self) -> bytes:
        r = self.r
        payload = self.rb(r.randrange(0, 200))
        ihl = r.choice([0, 1, 4, 5, 5, 6, 15])
        opts = self.rb(max(0, ihl - 5) * 4) if ihl > 5 and r.random() < 0.5 else b""
        total = r.choice([None, 0, 19, 20, 65535, r.randrange(65536)])
        pkt = ipv4(self.src4(), self.dst4(), r.choice([1, 6, 17, 0, 41, 58, 255, r.randrange(256)]),
                   payload, r.randrange(65536), r.choice([0, 0x2000, 0x4000, r.randrange(65536)]),
                   r.choice([0, 1, 64, 255]), ihl, total, opts)
        if r.random() < 0.2:
            pkt = pkt[:10] + self.rb(2) + pkt[12:]         # bad header checksum
        return eth(self.dst_mac(), self.peer_mac, 0x800, pkt)

    def fragment4(self) -> bytes:
        r = self.r
        ident = r.randrange(8)                              # few ids: queues meet and overlap
        off = r.choice([0, 1, 2, 8, 100, 8000, 8191, r.randrange(8192)])
        more = r.random() < 0.7
        data = self.rb(r.choice([0, 7, 8, 16, 512, 1400, r.randrange(1480)]))
        proto = r.choice([1, 17, 6])
        pkt = ipv4(self.peer4, self.ip4, proto, data, ident, (0x2000 if more else 0) | off)
        return eth(self.mac, self.peer_mac, 0x800, pkt)

    def bad_ipv6(self) -> bytes:
        r = self.r
        nh = r.choice([0, 43, 44, 60, 59, 58, 17, 6, 255, r.randrange(256)])
        body = b""
        for _ in range(r.randrange(0, 10)):                # an extension header chain
            nxt = r.choice([0, 43, 44, 60, 58, 17])
            ln = r.randrange(0, 4)
            body += bytes([nxt, ln]) + self.rb(6 + ln * 8)
        body += self.rb(r.randrange(0, 120))
        plen = r.choice([None, None, 0, 1, 65535, r.randrange(65536)])
        pkt = ipv6(self.src6(), self.dst6(), nh, body, r.choice([0, 1, 64, 255]), plen)
        if r.random() < 0.1:
            pkt = bytes([r.randrange(256)]) + pkt[1:]       # version
        return eth(self.dst_mac(), self.peer_mac, 0x86DD, pkt)

    def fragment6(self) -> bytes:
        r = self.r
        off = r.choice([0, 8, 16, 1232, 65528, r.randrange(8192) * 8])
        more = 1 if r.random() < 0.7 else 0
        data = self.rb(r.choice([0, 8, 9, 64, 1232, r.randrange(1400)]))
        fh = struct.pack("!BxHI", r.choice([58, 17, 6, 44]), off | more, r.randrange(8))
        return eth(self.mac, self.peer_mac, 0x86DD, ipv6(self.peer6, self.ip6, 44, fh + data))

    def bad_arp(self) -> bytes:
        r = self.r
        arp = struct.pack("!HHBBH6s4s6s4s", r.choice([1, 1, 6, r.randrange(65536)]),
                          r.choice([0x800, 0x800, 0x86DD, r.randrange(65536)]),
                          r.choice([6, 6, 0, 255]), r.choice([4, 4, 16, 0]),
                          r.choice([1, 2, 2, 0, 3, r.randrange(65536)]),
                          *self.sender4(), self.rb(6), r.choice([self.ip4, self.rb(4)]))
        return eth(self.dst_mac(), self.peer_mac, 0x806, arp[:r.choice([len(arp), 27, 8, 0])])

    def sender4(self) -> tuple[bytes, bytes]:
        """(MAC, IPv4) of an ARP sender: the peer itself only with its own MAC, so the
        frames test the parser, not how long a spoofed neighbour entry lasts."""
        ip = self.src4()
        if ip == self.peer4:
            return self.peer_mac, ip
        return self.r.choice([self.rb(6), b"\xff" * 6, b"\0" * 6, self.peer_mac]), ip

    def bad_ndp(self) -> bytes:
        r = self.r
        mtype = r.choice([133, 134, 135, 136, 137])
        target = r.choice([self.ip6, self.peer6, self.rb(16), b"\xff" * 16])
        src, dst = self.src6(), self.dst6()
        opts = b""
        for _ in range(r.randrange(0, 4)):
            ln = r.choice([0, 1, 1, 2, 255])
            value = self.rb(max(0, ln * 8 - 2))
            if ln == 1 and self.peer6 in (target, src):
                value = self.peer_mac        # no spoofing of the peer (see sender4)
            opts += bytes([r.choice([1, 2, 3, 5, r.randrange(256)]), ln]) + value
        body = bytes([mtype, r.choice([0, 0, 1])]) + b"\0\0" + self.rb(4) + target + opts
        msg = with_csum(body, 2, src, dst, 58) if r.random() < 0.9 else body
        return eth(self.dst_mac(), self.peer_mac, 0x86DD,
                   ipv6(src, dst, 58, msg, hops=r.choice([255, 255, 254, 1])))

    def bad_transport(self) -> bytes:
        r = self.r
        v6 = r.random() < 0.4
        src, dst = (self.peer6, self.ip6) if v6 else (self.peer4, self.ip4)
        proto = r.choice([17, 6, 58 if v6 else 1])
        seg = self.rb(r.choice([0, 3, 8, 20, r.randrange(100)]))
        if len(seg) >= 8 and proto == 17:
            seg = seg[:4] + r.choice([len(seg), 0, 7, 65535, r.randrange(65536)]).to_bytes(2, "big") + seg[6:]
        if len(seg) >= 20 and proto == 6:
            seg = seg[:12] + bytes([r.choice([0, 0x50, 0xF0, r.randrange(256)])]) + seg[13:]
        if len(seg) >= 8 and proto in (1, 58):
            seg = bytes([r.choice([0, 3, 8, 11, 128, 129, 1, 2, r.randrange(256)])]) + seg[1:]
        at = {17: 6, 6: 16, 1: 2, 58: 2}[proto]
        if len(seg) >= at + 2 and r.random() < 0.8:
            seg = with_csum(seg, at, src, dst, proto)
        pkt = ipv6(src, dst, proto, seg) if v6 else ipv4(src, dst, proto, seg)
        return eth(self.mac, self.peer_mac, 0x86DD if v6 else 0x800, pkt)

    def vlan_and_odd_types(self) -> bytes:
        return eth(self.dst_mac(), self.rb(6), self.r.choice([0x8100, 0x88CC, 0, 0xFFFF, 0x0801]),
                   self.rb(self.r.randrange(100)))

    def frame(self) -> bytes:
        return self.r.choice(self.kinds)()


def _main() -> int:
    import socket
    import time
    ifname, mac, ip4, ip6, src4, src6, seed, count = sys.argv[1:9]
    dst_mac = bytes.fromhex(mac.replace(":", ""))
    f = Fuzzer(int(seed), dst_mac, socket.inet_pton(socket.AF_INET, ip4),
               socket.inet_pton(socket.AF_INET6, ip6), socket.inet_pton(socket.AF_INET, src4),
               socket.inet_pton(socket.AF_INET6, src6))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((ifname, 0))
    f.peer_mac = s.getsockname()[4]
    ping = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ping.settimeout(0.5)
    total, synced, sync_every = int(count), 0, 1000

    def sync() -> None:
        # The frames before this echo are consumed once its reply comes (one fd, in order).
        nonlocal synced
        for seq in range(120):
            tag = b"sync%08d%04d" % (synced, seq)
            ping.sendto(with_csum(bytes([8, 0, 0, 0, 0x50, 0x56, 0, seq & 0xFF]) + tag, 2,
                                  b"", b"", 1), (ip4, 0))
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                try:
                    pkt = ping.recv(2048)
                except socket.timeout:
                    break
                ihl = (pkt[0] & 15) * 4
                if pkt[ihl] == 0 and pkt[ihl + 8:] == tag:
                    synced += 1
                    return
        raise SystemExit(f"no answer to the sync ping after {synced} syncs")

    written = 0
    for i in range(total):
        frame = f.frame()
        for _ in range(100):
            try:
                s.send(frame)
                written += 1
                break
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                break                                     # EMSGSIZE for an oversized one
        if (i + 1) % sync_every == 0:
            sync()
    sync()
    print(f"sent {total} written {written} synced {synced}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
