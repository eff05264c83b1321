"""IPv4 and ICMP of netstack's NICs.  Linux: net/ipv4/ip_input.c (ip_rcv_core),
ip_fragment.c, ip_output.c (ip_fragment), icmp.c.  gVisor:
pkg/tcpip/network/ipv4, network/internal/fragmentation.

Input (`receive`), in ip_rcv_core's order: version 4, header length at least
20 and within the packet, total length within the frame (trailing Ethernet
padding is cut), header checksum; a source that is multicast, broadcast,
loopback or 0.0.0.0 is a martian and dropped; the destination must be one
of the NIC's addresses, its subnet broadcast, 255.255.255.255 or 224.0.0.1
(the stack does not forward).  IP options are skipped, not acted on.
Fragments are reassembled (`Reassembler`): at most FRAG_HIGH bytes held
for all incomplete datagrams together (ipfrag_high_thresh; the oldest
queue is dropped to make room), FRAG_TIMEOUT_NS per datagram
(ipfrag_time), nothing past 65535 bytes, and a fragment that overlaps
another with different bytes drops the whole datagram (as Linux since
4.19 and RFC 5722 for IPv6).  The TTL of a received packet is not
decremented (nothing is forwarded); sent packets carry the socket's IP_TTL
(default 64).

ICMP: echo requests to a unicast address of ours are answered (broadcast
ones ignored: icmp_echo_ignore_broadcasts), echo replies go to the ping
socket holding the identifier, destination-unreachable errors are given to
the UDP socket named in the quoted header (ECONNREFUSED for a port
unreachable on a connected socket, as __udp4_lib_err).  Errors we send (port
or protocol unreachable) follow RFC 1122 §3.2.2: never about an ICMP error,
a non-first fragment, or a packet to or from a broadcast/multicast address;
and at most ERROR_BURST per second (icmp_ratelimit's token bucket).

Output (`output`): one datagram, or fragments of (MTU - 20) & ~7 bytes when
it does not fit (IP_PMTUDISC_WANT: a UDP datagram larger than the MTU is
fragmented here, DF clear).  Concurrency: Sentry loop only.
"""

from __future__ import annotations

import collections
import random
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Hashable

from pyvisor.abi.linux.inet import IPPROTO_ICMP, IPPROTO_UDP
from pyvisor.sentry.socket.netstack.link import BROADCAST, ETH_P_IP, ipv4_multicast_mac

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netstack import Stack
    from pyvisor.sentry.socket.netstack.link import NIC

IPV4_HDR = struct.Struct("!BBHHHBBH4s4s")    # struct iphdr without options: 20 bytes
IP_MF = 0x2000
IP_DF = 0x4000
IP_OFFMASK = 0x1FFF
DEFAULT_TTL = 64

ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_NET_UNREACH, ICMP_HOST_UNREACH, ICMP_PROT_UNREACH, ICMP_PORT_UNREACH = 0, 1, 2, 3
ICMP_FRAG_NEEDED = 4

FRAG_HIGH = 4 << 20             # bytes held by incomplete datagrams (ipfrag_high_thresh)
FRAG_TIMEOUT_NS = 30 * 10**9    # ipfrag_time
FRAG_MAX_QUEUES = 1024          # incomplete datagrams at once
IP_MAX = 65535

ERROR_BURST = 50                # ICMP errors per second, at most (token bucket)


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`: the one's complement of the one's
    complement sum of its 16-bit words.  The sum of the words is the number the bytes
    spell modulo 0xFFFF (65536 = 1 mod 65535), which big integers compute in C."""
    if len(data) & 1:
        data += b"\0"
    n = int.from_bytes(data, "big")
    s = n % 0xFFFF
    if s == 0 and n:
        s = 0xFFFF
    return ~s & 0xFFFF


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """What TCP, UDP (and ICMPv6) checksums cover besides their segment: the IPv4
    pseudo-header (RFC 768), or the IPv6 one (RFC 8200 §8.1) for 16-byte addresses."""
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def is_martian_source(ip: bytes) -> bool:
    return ip[0] == 0 or ip[0] == 127 or ip[0] >= 224


# -- reassembly ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _FragQueue:
    """The fragments of one datagram.  Linux: struct ipq."""

    expires: int
    frags: dict[int, bytes] = field(default_factory=dict)    # offset -> data
    total: int | None = None        # known once the last fragment came
    size: int = 0                   # bytes held
    header: bytes = b""             # the first fragment's header (for the datagram)


class Reassembler:
    """Incomplete datagrams, bounded in memory and time.  Linux: inet_frags."""

    def __init__(self, stack: Stack, high: int = FRAG_HIGH) -> None:
        self.stack = stack
        self.high = high
        self.queues: collections.OrderedDict[Hashable, _FragQueue] = collections.OrderedDict()
        self.mem = 0
        self.fails = self.oks = self.timeouts = 0

    def _drop(self, key: Hashable) -> None:
        q = self.queues.pop(key, None)
        if q is not None:
            self.mem -= q.size
            self.fails += 1

    def _expire(self, now: int) -> None:
        while self.queues:
            key, q = next(iter(self.queues.items()))
            if q.expires > now:
                break
            self._drop(key)
            self.timeouts += 1

    def add(self, key: Hashable, offset: int, data: bytes, more: bool, header: bytes
            ) -> tuple[bytes, bytes] | None:
        """Adds a fragment; returns (first header, whole payload) once complete."""
        now = self.stack.kernel.now()
        self._expire(now)
        end = offset + len(data)
        q = self.queues.get(key)
        if q is None:
            if end > IP_MAX or (more and (not data or len(data) & 7)):
                self.fails += 1
                return None
            while self.queues and (len(self.queues) >= FRAG_MAX_QUEUES
                                   or self.mem + len(data) > self.high):
                self._drop(next(iter(self.queues)))
            q = self.queues[key] = _FragQueue(now + FRAG_TIMEOUT_NS)
        if end > IP_MAX or (more and (not data or len(data) & 7)):
            self._drop(key)
            return None
        if not more:
            if q.total is not None and q.total != end or \
                    any(o + len(d) > end for o, d in q.frags.items()):
                self._drop(key)            # two ends, or data past the end
                return None
            q.total = end
        if q.total is not None and end > q.total:
            self._drop(key)
            return None
        for o, d in q.frags.items():
            if o < end and offset < o + len(d):
                if o == offset and d == data:
                    return None            # an exact duplicate
                self._drop(key)            # overlapping, different bytes: RFC 5722
                return None
        while self.mem + len(data) > self.high and self.queues:
            oldest = next(iter(self.queues))
            self._drop(oldest)
            if oldest == key:
                return None
        q.frags[offset] = data
        q.size += len(data)
        self.mem += len(data)
        if offset == 0:
            q.header = header
        if q.total is None or q.size != q.total:
            return None
        # No overlaps and size == total: the fragments tile [0, total).
        del self.queues[key]
        self.mem -= q.size
        self.oks += 1
        return q.header, b"".join(q.frags[o] for o in sorted(q.frags))


# -- input --------------------------------------------------------------------------------------


def receive(nic: NIC, pkt: bytes) -> None:
    """An IPv4 packet from the wire (the Ethernet header removed)."""
    stack = nic.stack
    if len(pkt) < 20:
        stack.ip_in_hdr_errors += 1
        return
    vihl = pkt[0]
    ihl = (vihl & 0xF) * 4
    if vihl >> 4 != 4 or ihl < 20 or len(pkt) < ihl:
        stack.ip_in_hdr_errors += 1
        return
    total = int.from_bytes(pkt[2:4], "big")
    if total < ihl or total > len(pkt):
        stack.ip_in_hdr_errors += 1
        return
    if len(pkt) > total:
        pkt = pkt[:total]                      # Ethernet padding
    header = pkt[:ihl]
    if checksum(header) != 0:
        stack.ip_in_hdr_errors += 1
        return
    src, dst = pkt[12:16], pkt[16:20]
    if is_martian_source(src) or src == b"\xff" * 4:
        stack.ip_in_addr_errors += 1
        return
    kind = stack.nic_accepts4(nic, dst)
    if not kind:
        stack.ip_in_addr_errors += 1
        return
    frag = int.from_bytes(pkt[6:8], "big")
    proto = pkt[9]
    payload = pkt[ihl:]
    if frag & (IP_MF | IP_OFFMASK):
        key = (src, dst, pkt[4:6], proto)
        done = stack.frags4.add(key, (frag & IP_OFFMASK) * 8, payload, bool(frag & IP_MF),
                                header)
        if done is None:
            return
        header, payload = done
    stack.ip_in_delivers += 1
    stack.deliver_transport(proto, src, dst, payload, nic, header, unicast=kind == 1)


def icmp_receive(stack: Stack, src: bytes, dst: bytes, header: bytes, msg: bytes,
                 unicast: bool) -> None:
    """An ICMP message for us.  Linux: icmp_rcv."""
    stack.icmp_in += 1
    if len(msg) < 8 or checksum(msg) != 0:
        stack.icmp_in_errors += 1
        return
    mtype, code = msg[0], msg[1]
    if mtype == ICMP_ECHO and code == 0:
        if not unicast:
            return                             # icmp_echo_ignore_broadcasts
        body = bytes([ICMP_ECHOREPLY, 0, 0, 0]) + msg[4:]
        reply = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
        stack.icmp_out += 1
        stack.send_ip(IPPROTO_ICMP, dst, src, reply, tos=header[1])
    elif mtype == ICMP_ECHOREPLY and code == 0:
        stack.ping_deliver(src, dst, msg, header[1])
    elif mtype in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED):
        inner = msg[8:]
        if len(inner) < 28 or inner[0] >> 4 != 4:
            return
        ihl = (inner[0] & 0xF) * 4
        if ihl < 20 or len(inner) < ihl + 8:
            return
        hard = mtype == ICMP_DEST_UNREACH and code in (ICMP_PROT_UNREACH, ICMP_PORT_UNREACH)
        mtu = 0
        if mtype == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED:
            mtu = int.from_bytes(msg[6:8], "big")
            if mtu < 68:
                return                         # RFC 1191's plateau guessing: not done
        stack.transport_error(inner[9], inner[12:16], inner[16:20], inner[ihl:ihl + 8],
                              mtype, code, hard, mtu)


# -- output -------------------------------------------------------------------------------------


def output(nic: NIC, hop: bytes, src: bytes, dst: bytes, proto: int, payload: bytes,
           ttl: int = DEFAULT_TTL, tos: int = 0, ident: int | None = None) -> None:
    """Sends `payload` to `dst` through `nic` via the neighbour `hop`, fragmenting it to
    the MTU.  Linux: ip_queue_xmit + ip_fragment."""
    stack = nic.stack
    if ident is None:
        ident = stack.next_ip_id()
    mtu = nic.mtu
    if dst == b"\xff" * 4 or stack.nic_subnet_broadcast(nic, dst):
        mac: bytes | None = BROADCAST
    elif 224 <= dst[0] < 240:
        mac = ipv4_multicast_mac(dst)
    else:
        mac = None
    chunk = (mtu - 20) & ~7
    offset = 0
    while True:
        part = payload[offset:offset + chunk] if len(payload) + 20 > mtu else payload
        more = offset + len(part) < len(payload)
        flags = (IP_MF if more else 0) | (offset >> 3)
        if len(payload) + 20 <= mtu:
            flags = IP_DF if proto != IPPROTO_UDP and proto != IPPROTO_ICMP else 0
        hdr = IPV4_HDR.pack(0x45, tos & 0xFF, 20 + len(part), ident, flags, ttl & 0xFF, proto,
                            0, src, dst)
        hdr = hdr[:10] + checksum(hdr).to_bytes(2, "big") + hdr[12:]
        packet = hdr + part
        stack.ip_out_requests += 1
        if mac is not None:
            nic.transmit(mac, ETH_P_IP, packet)
        else:
            nic.arp.output(hop, ETH_P_IP, packet)
        offset += len(part)
        if not more:
            break


def send_error(stack: Stack, header: bytes, payload: bytes, mtype: int, code: int) -> None:
    """An ICMP error about a received datagram (`header` + `payload`), to its sender, if
    RFC 1122 allows one and the rate limit has a token.  Linux: __icmp_send."""
    if len(header) < 20:
        return
    src, dst = header[12:16], header[16:20]
    if int.from_bytes(header[6:8], "big") & IP_OFFMASK:
        return                                 # not the first fragment
    loopback = src[0] == 127 and dst[0] == 127     # on lo (a raw socket's datagram)
    if (is_martian_source(src) and not loopback) or dst[0] >= 224 or dst == b"\xff" * 4:
        return
    if header[9] == IPPROTO_ICMP and (len(payload) < 1 or payload[0] not in
                                      (ICMP_ECHO, ICMP_ECHOREPLY, 13, 14, 15, 16, 17, 18)):
        return                                 # never about an ICMP error
    if not loopback and not stack.icmp_rate_ok():   # icmpv4_xrlim_allow: lo is not limited
        return
    quoted = (header + payload)[:576 - 20 - 8]     # icmp_send: as much as fits in 576
    body = bytes([mtype, code, 0, 0]) + b"\0\0\0\0" + quoted
    msg = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
    stack.icmp_out += 1
    stack.icmp_out_errors += 1
    stack.send_ip(IPPROTO_ICMP, dst, src, msg, tos=0xC0)


def initial_ident() -> int:
    return random.randrange(1 << 16)


__all__ = ["Reassembler", "checksum", "output", "pseudo_header", "receive", "send_error"]
