"""IPv6, ICMPv6 and NDP of netstack's NICs.  Linux: net/ipv6/ip6_input.c,
exthdrs.c, reassembly.c, ip6_output.c, icmp.c, ndisc.c.  gVisor:
pkg/tcpip/network/ipv6 (ipv6.go, icmp.go, ndp.go).

Input (`receive`): version 6, the payload length within the frame (padding
cut), a source that is not multicast, loopback or (except for NDP's
duplicate address detection) unspecified; the destination one of the NIC's
addresses, ff02::1 (all nodes) or the solicited-node group of one of them.
Extension headers are walked (at most MAX_EXT_HEADERS): hop-by-hop,
destination options and routing headers (segments left 0) are skipped,
fragments reassembled by ipv4.Reassembler under the same bounds; anything
else is dropped.

NDP (RFC 4861): a neighbour solicitation for one of our addresses is
answered with an advertisement (solicited, override, our link address);
its source link-layer option creates the neighbour entry, as ndisc_recv_ns
does.  Advertisements update existing entries and release the packets
queued on them.  Every NDP message must arrive with hop limit 255, a zero
code and a valid checksum, or it is ignored (§7.1.1); router
advertisements and redirects are ignored (no SLAAC, no redirects: the
routes are those copied from the container's namespace).  Link-local
addresses: the NIC keeps those it had on the host; an interface without
one gets fe80::/64 with the modified EUI-64 of its MAC (RFC 4291 App. A).

ICMPv6: echo requests to a unicast address are answered; echo replies go
to ping sockets; destination unreachable errors are given to the UDP socket
they quote.  Errors we send (port unreachable, parameter problem for an
unknown next header) quote as much of the packet as fits in 1280 bytes, are
never about an ICMPv6 error or a multicast destination, and share the ICMP
rate limit.  Concurrency: Sentry loop only.
"""

from __future__ import annotations

import random
import struct
from typing import TYPE_CHECKING

from pyvisor.abi.linux.inet import IPPROTO_ICMPV6
from pyvisor.sentry.socket.netstack.ipv4 import checksum, pseudo_header
from pyvisor.sentry.socket.netstack.link import ETH_P_IPV6, ipv6_multicast_mac

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netstack import Stack
    from pyvisor.sentry.socket.netstack.link import NIC

IPV6_HDR = struct.Struct("!IHBB16s16s")     # struct ipv6hdr: 40 bytes
DEFAULT_HOPS = 64
MIN_MTU = 1280
MAX_EXT_HEADERS = 8

NEXTHDR_HOP, NEXTHDR_ROUTING, NEXTHDR_FRAGMENT, NEXTHDR_NONE, NEXTHDR_DEST = 0, 43, 44, 59, 60

ICMPV6_DEST_UNREACH = 1
ICMPV6_PKT_TOOBIG = 2
ICMPV6_TIME_EXCEED = 3
ICMPV6_PARAMPROB = 4
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
NDISC_ROUTER_SOLICITATION = 133
NDISC_ROUTER_ADVERTISEMENT = 134
NDISC_NEIGHBOUR_SOLICITATION = 135
NDISC_NEIGHBOUR_ADVERTISEMENT = 136
NDISC_REDIRECT = 137
ND_OPT_SOURCE_LL_ADDR = 1
ND_OPT_TARGET_LL_ADDR = 2
ICMPV6_PORT_UNREACH = 4
ICMPV6_UNK_NEXTHDR = 1

ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
UNSPECIFIED = b"\0" * 16


def solicited_node(ip: bytes) -> bytes:
    """ff02::1:ffXX:XXXX, the group a solicitation for `ip` goes to."""
    return bytes.fromhex("ff0200000000000000000001ff") + ip[13:16]


def link_local_from_mac(mac: bytes) -> bytes:
    """fe80::/64 with the modified EUI-64 interface identifier of `mac`."""
    return b"\xfe\x80" + b"\0" * 6 + bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:6]


def is_link_local(ip: bytes) -> bool:
    return ip[0] == 0xFE and ip[1] & 0xC0 == 0x80


def _icmp6(src: bytes, dst: bytes, body: bytes) -> bytes:
    """An ICMPv6 message with its checksum filled in (`body` has 0 in bytes 2-3)."""
    c = checksum(pseudo_header(src, dst, IPPROTO_ICMPV6, len(body)) + body)
    return body[:2] + c.to_bytes(2, "big") + body[4:]


# -- input --------------------------------------------------------------------------------------


def receive(nic: NIC, pkt: bytes) -> None:
    """An IPv6 packet from the wire (the Ethernet header removed)."""
    stack = nic.stack
    if len(pkt) < 40 or pkt[0] >> 4 != 6:
        stack.ip6_in_hdr_errors += 1
        return
    plen = int.from_bytes(pkt[4:6], "big")
    if 40 + plen > len(pkt):
        stack.ip6_in_hdr_errors += 1
        return
    pkt = pkt[:40 + plen]
    nexthdr, hops = pkt[6], pkt[7]
    src, dst = pkt[8:24], pkt[24:40]
    if src[0] == 0xFF or src == b"\0" * 15 + b"\1":
        stack.ip6_in_addr_errors += 1
        return
    kind = stack.nic_accepts6(nic, dst)
    if not kind:
        stack.ip6_in_addr_errors += 1
        return
    header = pkt[:40]
    off = 40
    for _ in range(MAX_EXT_HEADERS):
        if nexthdr in (NEXTHDR_HOP, NEXTHDR_DEST, NEXTHDR_ROUTING):
            if len(pkt) < off + 8:
                return
            if nexthdr == NEXTHDR_ROUTING and pkt[off + 3] != 0:
                return                         # segments left: we route nowhere
            nexthdr, off = pkt[off], off + (pkt[off + 1] + 1) * 8
            if off > len(pkt):
                return
            continue
        if nexthdr == NEXTHDR_FRAGMENT:
            if len(pkt) < off + 8:
                return
            frag = int.from_bytes(pkt[off + 2:off + 4], "big")
            ident = pkt[off + 4:off + 8]
            inner = pkt[off]
            data = pkt[off + 8:]
            offset, more = frag & ~7, bool(frag & 1)
            if offset == 0 and not more:       # an atomic fragment (RFC 6946)
                nexthdr, off = inner, off + 8
                continue
            done = stack.frags6.add((src, dst, ident), offset, data, more,
                                    header[:6] + bytes([inner]) + header[7:])
            if done is None:
                return
            header, payload = done
            nexthdr, pkt, off = header[6], header + payload, 40
            continue
        break
    else:
        return
    if nexthdr == NEXTHDR_NONE:
        return
    payload = pkt[off:]
    stack.ip6_in_delivers += 1
    if nexthdr == IPPROTO_ICMPV6:
        if stack.raw_socks:                    # raw6_local_deliver, before icmpv6_rcv
            from pyvisor.sentry.socket.netstack import raw
            raw.deliver(stack, nexthdr, src, dst, pkt[:off], payload)
        icmp6_receive(stack, nic, src, dst, hops, pkt[:40], payload, kind == 1)
        return
    if src == UNSPECIFIED:
        return
    stack.deliver_transport(nexthdr, src, dst, payload, nic, pkt[:off], unicast=kind == 1)


def _options(body: bytes) -> dict[int, bytes] | None:
    """NDP options (type -> value); None if one is malformed (length 0 or too long)."""
    out: dict[int, bytes] = {}
    i = 0
    while i + 2 <= len(body):
        ln = body[i + 1] * 8
        if ln == 0 or i + ln > len(body):
            return None
        out.setdefault(body[i], body[i + 2:i + ln])
        i += ln
    return out


def icmp6_receive(stack: Stack, nic: NIC | None, src: bytes, dst: bytes, hops: int,
                  header: bytes, msg: bytes, unicast: bool) -> None:
    """An ICMPv6 message for us (`nic` None: from the stack itself).  Linux: icmpv6_rcv,
    ndisc_rcv."""
    stack.icmp6_in += 1
    if len(msg) < 4 or checksum(pseudo_header(src, dst, IPPROTO_ICMPV6, len(msg)) + msg) != 0:
        stack.icmp6_in_errors += 1
        return
    mtype, code = msg[0], msg[1]
    if mtype in (NDISC_NEIGHBOUR_SOLICITATION, NDISC_NEIGHBOUR_ADVERTISEMENT):
        if nic is None or hops != 255 or code != 0 or len(msg) < 24:
            return
        target = msg[8:24]
        if target[0] == 0xFF:
            return
        opts = _options(msg[24:])
        if opts is None:
            return
        if mtype == NDISC_NEIGHBOUR_SOLICITATION:
            _ns(nic, src, dst, target, opts)
        else:
            _na(nic, dst, msg[4], target, opts)
        return
    if src == UNSPECIFIED:
        return
    if mtype == ICMPV6_ECHO_REQUEST and code == 0 and len(msg) >= 8:
        if not unicast:
            return
        reply = _icmp6(dst, src, bytes([ICMPV6_ECHO_REPLY, 0, 0, 0]) + msg[4:])
        stack.icmp6_out += 1
        stack.send_ip(IPPROTO_ICMPV6, dst, src, reply)
    elif mtype == ICMPV6_ECHO_REPLY and code == 0 and len(msg) >= 8:
        stack.ping_deliver(src, dst, msg, (int.from_bytes(header[0:4], "big") >> 20) & 0xFF)
    elif mtype in (ICMPV6_DEST_UNREACH, ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED) \
            and len(msg) >= 8 + 40 + 8:
        inner = msg[8:]
        if inner[0] >> 4 != 6 or inner[6] in (NEXTHDR_HOP, NEXTHDR_ROUTING, NEXTHDR_FRAGMENT,
                                              NEXTHDR_DEST):
            return
        hard = mtype == ICMPV6_DEST_UNREACH and code == ICMPV6_PORT_UNREACH
        mtu = 0
        if mtype == ICMPV6_PKT_TOOBIG:
            mtu = int.from_bytes(msg[4:8], "big")
            if mtu < MIN_MTU:
                return
        stack.transport_error(inner[6], inner[8:24], inner[24:40], inner[40:48], mtype, code,
                              hard, mtu)


def _ns(nic: NIC, src: bytes, dst: bytes, target: bytes, opts: dict[int, bytes]) -> None:
    """A neighbour solicitation (RFC 4861 §7.2.3)."""
    stack = nic.stack
    lladdr = opts.get(ND_OPT_SOURCE_LL_ADDR)
    dad = src == UNSPECIFIED
    if dad and (lladdr is not None or dst != solicited_node(target)):
        return                                 # §7.1.1: DAD from :: to the solicited group
    if not stack.nic_owns6(nic, target):
        return
    if not dad and lladdr is not None and len(lladdr) >= 6:
        nic.ndp.update(src, lladdr[:6], create=True)
    flags = 0x20000000 if dad else 0x60000000  # (S)olicited unless DAD, (O)verride
    to = ALL_NODES if dad else src
    body = bytes([NDISC_NEIGHBOUR_ADVERTISEMENT, 0, 0, 0]) + flags.to_bytes(4, "big") + \
        target + bytes([ND_OPT_TARGET_LL_ADDR, 1]) + nic.mac
    na = _icmp6(target, to, body)
    stack.icmp6_out += 1
    packet = IPV6_HDR.pack(6 << 28, len(na), IPPROTO_ICMPV6, 255, target, to) + na
    if dad:
        nic.transmit(ipv6_multicast_mac(to), ETH_P_IPV6, packet)
    elif lladdr is not None and len(lladdr) >= 6 and lladdr[0] & 1 == 0:
        nic.transmit(lladdr[:6], ETH_P_IPV6, packet)
    else:
        nic.ndp.output(src, ETH_P_IPV6, packet)


def _na(nic: NIC, dst: bytes, flags: int, target: bytes, opts: dict[int, bytes]) -> None:
    """A neighbour advertisement (§7.2.5): updates the entry for `target` if we have one."""
    if dst[0] == 0xFF and flags & 0x40:
        return                                 # solicited, but to a multicast group
    lladdr = opts.get(ND_OPT_TARGET_LL_ADDR)
    if lladdr is None or len(lladdr) < 6:
        return
    nic.ndp.update(target, lladdr[:6], create=False)


# -- output -------------------------------------------------------------------------------------


def solicit(nic: NIC, ip: bytes) -> None:
    """Sends a neighbour solicitation for `ip` to its solicited-node group."""
    src = nic.stack.nic_source6(nic, ip)
    if src is None:
        return
    group = solicited_node(ip)
    body = bytes([NDISC_NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0]) + ip + \
        bytes([ND_OPT_SOURCE_LL_ADDR, 1]) + nic.mac
    ns = _icmp6(src, group, body)
    nic.stack.icmp6_out += 1
    packet = IPV6_HDR.pack(6 << 28, len(ns), IPPROTO_ICMPV6, 255, src, group) + ns
    nic.transmit(ipv6_multicast_mac(group), ETH_P_IPV6, packet)


def output(nic: NIC, hop: bytes, src: bytes, dst: bytes, proto: int, payload: bytes,
           hops: int = DEFAULT_HOPS, tclass: int = 0) -> None:
    """Sends `payload` to `dst` through `nic` via the neighbour `hop`, with a fragment
    header on each piece when it does not fit the MTU.  Linux: ip6_xmit, ip6_fragment."""
    stack = nic.stack
    first = (6 << 28) | ((tclass & 0xFF) << 20)
    mac = ipv6_multicast_mac(dst) if dst[0] == 0xFF else None
    if 40 + len(payload) <= nic.mtu:
        packets = [IPV6_HDR.pack(first, len(payload), proto, hops & 0xFF, src, dst) + payload]
    else:
        ident = stack.next_ip6_id()
        chunk = (nic.mtu - 48) & ~7
        packets = []
        for offset in range(0, len(payload), chunk):
            part = payload[offset:offset + chunk]
            more = 1 if offset + len(part) < len(payload) else 0
            fh = struct.pack("!BxHI", proto, offset | more, ident)
            packets.append(IPV6_HDR.pack(first, 8 + len(part), NEXTHDR_FRAGMENT, hops & 0xFF,
                                         src, dst) + fh + part)
    for packet in packets:
        stack.ip6_out_requests += 1
        if mac is not None:
            nic.transmit(mac, ETH_P_IPV6, packet)
        else:
            nic.ndp.output(hop, ETH_P_IPV6, packet)


def send_error(stack: Stack, header: bytes, payload: bytes, mtype: int, code: int,
               pointer: int = 0) -> None:
    """An ICMPv6 error about a received packet (`header`: its IPv6 header and extension
    headers, `payload` the rest), to its sender.  Linux: icmp6_send."""
    if len(header) < 40:
        return
    src, dst = header[8:24], header[24:40]
    if src == UNSPECIFIED or src[0] == 0xFF or dst[0] == 0xFF:
        return
    if header[6] == IPPROTO_ICMPV6 and (not payload or payload[0] < 128):
        return                                 # never about an ICMPv6 error
    if not stack.icmp_rate_ok():
        return
    quoted = (header + payload)[:MIN_MTU - 40 - 8]
    msg = _icmp6(dst, src, bytes([mtype, code, 0, 0]) + pointer.to_bytes(4, "big") + quoted)
    stack.icmp6_out += 1
    stack.send_ip(IPPROTO_ICMPV6, dst, src, msg)


def initial_ident() -> int:
    return random.randrange(1 << 32)


__all__ = ["is_link_local", "link_local_from_mac", "output", "receive", "send_error", "solicit",
           "solicited_node"]
