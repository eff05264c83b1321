"""Transport input and output over netstack's NICs: UDP datagrams, ICMP echo
("ping") sockets, ICMP errors for sockets, and the reset a closed TCP port
answers with.  Linux: net/ipv4/udp.c (__udp4_lib_rcv, udp_send_skb,
__udp4_lib_err), net/ipv4/ping.c, net/ipv4/tcp_ipv4.c (tcp_v4_send_reset).
gVisor: tcpip/transport/udp/endpoint.go, transport/icmp, tcp's replyWithReset.

Between sockets of the sandbox, datagrams still go straight from socket to
socket (udp.py); what leaves through a NIC is built here and handed to
Stack.send_ip, and what arrives is demultiplexed here after the IP layer:

  * UDP: length and checksum checked (a zero checksum is allowed over IPv4
    only, RFC 768/8200), then the socket udp.py's lookup picks; none: a port
    unreachable (IPv4 ICMP type 3 code 3, ICMPv6 type 1 code 4) for a
    unicast datagram;
  * TCP: the handler registered in Stack.transport_handlers[6] (the
    segment-level endpoint, tcpseg.py) if there is one; otherwise, and for
    segments it does not claim, `tcp_reset` answers as RFC 9293 §3.10.7.1
    does for a CLOSED port: no reply to a RST, ACK -> <SEQ=SEG.ACK><CTL=RST>,
    otherwise <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>;
  * anything else: protocol unreachable (ICMP type 3 code 2, ICMPv6
    parameter problem code 1 pointing at the next-header field).

Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

from pyvisor.abi.linux.inet import (IP_MULTICAST_TTL, IP_TOS, IP_TTL, IPPROTO_ICMP,
                                    IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
                                    IPV6_MULTICAST_HOPS, IPV6_TCLASS, IPV6_UNICAST_HOPS)
from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.waitqueue import EVENT_ERR
from pyvisor.sentry.socket.netstack import ipv4, ipv6
from pyvisor.sentry.socket.netstack.ipv4 import checksum, pseudo_header

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netstack import Stack
    from pyvisor.sentry.socket.netstack.link import NIC
    from pyvisor.sentry.socket.netstack.udp import UDPSocket

UDP_HDR = struct.Struct("!HHHH")
TCP_HDR = struct.Struct("!HHIIBBHHH")        # ports, seq, ack, offset, flags, window, csum, urg
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


def _hops(sock: UDPSocket, v4: bool) -> tuple[int, int]:
    """(TTL or hop limit, TOS or traffic class) for a datagram of `sock`."""
    if v4:
        ttl = sock.ip.get(IP_TTL, -1)
        ttl, tos = (ipv4.DEFAULT_TTL if ttl < 0 else ttl), sock.ip.get(IP_TOS, 0)
    else:
        hops = sock.ip6.get(IPV6_UNICAST_HOPS, -1)
        ttl, tos = (ipv6.DEFAULT_HOPS if hops < 0 else hops), sock.ip6.get(IPV6_TCLASS, 0)
    # The control messages of the sendmsg(2) in progress (IP_TTL, IPV6_TCLASS, ...) win.
    return (ttl if sock.cm_ttl is None else sock.cm_ttl), \
        (tos if sock.cm_tos is None else sock.cm_tos)


# -- UDP ----------------------------------------------------------------------------------------


def _check_source(src: bytes) -> None:
    """An IPv4 loopback source never leaves through a NIC: ip_route_output_key_hash_rcu
    refuses it (EINVAL), as Linux answers sendto(2) from a socket bound to 127.0.0.1."""
    if len(src) == 4 and src[0] == 127:
        raise SyscallError(Errno.EINVAL)


def udp_output(sock: UDPSocket, data: bytes, src: bytes, dst: bytes, dport: int,
               mcast_index: int = 0) -> None:
    """A datagram of `sock` that leaves through a NIC.  Linux: udp_send_skb.  A multicast
    leaves by NIC `mcast_index` with IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS."""
    _check_source(src)
    stack = sock.stack
    ulen = 8 + len(data)
    seg = UDP_HDR.pack(sock.lport, dport, ulen, 0) + data
    c = checksum(pseudo_header(src, dst, IPPROTO_UDP, ulen) + seg) or 0xFFFF
    seg = seg[:6] + c.to_bytes(2, "big") + seg[8:]
    stack.udp_out += 1
    ttl, tos = _hops(sock, len(dst) == 4)
    if mcast_index:
        ttl = sock.ip.get(IP_MULTICAST_TTL, 1) if len(dst) == 4 \
            else sock.ip6.get(IPV6_MULTICAST_HOPS, 1)
    stack.send_ip(IPPROTO_UDP, src, dst, seg, ttl=ttl, tos=tos, oif=mcast_index)


def udp_receive(stack: Stack, src: bytes, dst: bytes, seg: bytes, header: bytes,
                unicast: bool, nic: NIC | None = None) -> None:
    """A UDP datagram for us.  Linux: __udp4_lib_rcv / __udp6_lib_rcv."""
    from pyvisor.sentry.socket.netstack.udp import Datagram, truesize
    v4 = len(src) == 4
    if len(seg) < 8:
        stack.udp_in_errors += 1
        return
    sport, dport, ulen, csum = UDP_HDR.unpack_from(seg)
    if ulen < 8 or ulen > len(seg):
        stack.udp_in_errors += 1
        return
    seg = seg[:ulen]
    if csum or not v4:
        if checksum(pseudo_header(src, dst, IPPROTO_UDP, ulen) + seg) != 0:
            stack.udp_in_errors += 1
            stack.udp_csum_errors += 1
            return
    if dport == 0:                      # (a zero source port is fine, for IPv6 too)
        stack.udp_in_errors += 1
        return
    if not unicast:
        from pyvisor.sentry.socket.netstack.udp import udp_deliver_all
        tos = header[1] if v4 else (int.from_bytes(header[0:4], "big") >> 20) & 0xFF
        udp_deliver_all(stack, seg[8:], src, sport, dst, dport,
                        nic.index if nic is not None else stack.lo.index, tos,
                        (header[8] if v4 else header[7]) if len(header) > 8 else 64)
        return
    rcv = stack.udp_receiver(dst, dport, src, sport)
    if rcv is None:
        stack.udp_noport += 1
        if unicast:
            _unreachable(stack, header, seg)
        return
    tos = header[1] if v4 else (int.from_bytes(header[0:4], "big") >> 20) & 0xFF
    ttl = (header[8] if v4 else header[7]) if len(header) > 8 else 64
    data = seg[8:]
    rcv.deliver(Datagram(data, src, sport, dst, tos, time.time_ns(), truesize(len(data)),
                         ttl, dport))


def _unreachable(stack: Stack, header: bytes, seg: bytes) -> None:
    if len(header) >= 20 and header[0] >> 4 == 4:
        ipv4.send_error(stack, header, seg, ipv4.ICMP_DEST_UNREACH, ipv4.ICMP_PORT_UNREACH)
    elif len(header) >= 40:
        ipv6.send_error(stack, header, seg, ipv6.ICMPV6_DEST_UNREACH, ipv6.ICMPV6_PORT_UNREACH)


# (ICMP type, code) -> errno, for IPv4 (type 3) and ICMPv6 (type 1).  Linux: icmp_err_convert,
# icmpv6_err_convert.
_UNREACH_ERRNO = {(3, 0): Errno.ENETUNREACH, (3, 1): Errno.EHOSTUNREACH,
                  (3, 2): Errno.ENOPROTOOPT, (3, 3): Errno.ECONNREFUSED,
                  (3, 4): Errno.EMSGSIZE, (3, 5): Errno.EOPNOTSUPP,
                  (3, 6): Errno.ENETUNREACH, (3, 7): Errno.EHOSTDOWN,
                  (3, 9): Errno.ENETUNREACH, (3, 10): Errno.EHOSTUNREACH,
                  (3, 13): Errno.EHOSTUNREACH,
                  (1, 0): Errno.ENETUNREACH, (1, 1): Errno.EACCES, (1, 3): Errno.EHOSTUNREACH,
                  (1, 4): Errno.ECONNREFUSED}


def transport_error(stack: Stack, proto: int, src: bytes, dst: bytes, head: bytes, mtype: int,
                    code: int, hard: bool, mtu: int = 0) -> None:
    """An ICMP error quoting a datagram we sent from (`src`, port) to (`dst`, port).
    UDP: __udp4_lib_err: a hard error becomes the socket's error only when connected.
    TCP: to the segment-level layer if there is one (tcp_v4_err decides there)."""
    if proto == IPPROTO_TCP:
        layer = getattr(stack, "tcpseg", None)
        if layer is not None and len(head) >= 8:
            err = 0 if mtu else _UNREACH_ERRNO.get((mtype, code), Errno.EHOSTUNREACH)
            layer.icmp_error(src, dst, head, err, mtu)
        return
    if proto != IPPROTO_UDP or len(head) < 4 or not hard:
        return
    sport, dport = struct.unpack_from("!HH", head)
    for b in stack.udp_ports.on(sport):
        rport = getattr(b, "rport", 0)
        if rport != dport or getattr(b, "raddr", b"") != dst:
            continue
        s = b  # a connected UDPSocket
        s.err = Errno.ECONNREFUSED if (mtype, code) in ((3, 3), (1, 4)) \
            else Errno.EHOSTUNREACH
        s.wq.notify(EVENT_ERR)  # type: ignore[attr-defined]


# -- ping ---------------------------------------------------------------------------------------


def ping_output(sock: UDPSocket, data: bytes, src: bytes, dst: bytes) -> None:
    """An echo request of a ping socket: the socket's identifier in place of the
    application's, the checksum computed here.  Linux: ping_v4_sendmsg."""
    _check_source(src)
    stack = sock.stack
    v4 = len(dst) == 4
    body = data[:2] + b"\0\0" + sock.lport.to_bytes(2, "big") + data[6:]
    if v4:
        msg = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
        stack.icmp_out += 1
    else:
        c = checksum(pseudo_header(src, dst, IPPROTO_ICMPV6, len(body)) + body)
        msg = body[:2] + c.to_bytes(2, "big") + body[4:]
        stack.icmp6_out += 1
    ttl, tos = _hops(sock, v4)
    stack.send_ip(IPPROTO_ICMP if v4 else IPPROTO_ICMPV6, src, dst, msg, ttl=ttl, tos=tos)


def ping_deliver(stack: Stack, src: bytes, dst: bytes, msg: bytes, tos: int) -> None:
    """An echo reply: to the ping socket holding its identifier.  Linux: ping_rcv."""
    from pyvisor.sentry.socket.netstack.udp import Datagram, truesize
    ident = int.from_bytes(msg[4:6], "big")
    table = stack.icmp_ports if len(src) == 4 else stack.icmp6_ports
    for b in table.on(ident):
        la = b.laddr
        if len(la) == len(dst) and (la == dst or not any(la)):
            b.deliver(Datagram(msg, src, 0, dst, tos, time.time_ns(),   # type: ignore[attr-defined]
                               truesize(len(msg))))
            return


# -- TCP ----------------------------------------------------------------------------------------


def tcp_reset(stack: Stack, src: bytes, dst: bytes, seg: bytes, header: bytes) -> None:
    """The reset a CLOSED port sends for segment `seg` from `src` (RFC 9293 §3.10.7.1).
    Linux: tcp_v4_send_reset / tcp_v6_send_reset."""
    if len(seg) < 20:
        return
    sport, dport, seq, ack, off, flags, _win, _c, _u = TCP_HDR.unpack_from(seg)
    doff = (off >> 4) * 4
    if doff < 20 or doff > len(seg):
        return
    if checksum(pseudo_header(src, dst, IPPROTO_TCP, len(seg)) + seg) != 0:
        stack.tcp_in_csum_errors += 1
        return
    if flags & TCP_RST:
        return
    stack.tcp_out_rsts += 1
    if flags & TCP_ACK:
        r_seq, r_ack, r_flags = ack, 0, TCP_RST
    else:
        seglen = len(seg) - doff + (1 if flags & TCP_SYN else 0) + (1 if flags & TCP_FIN else 0)
        r_seq, r_ack, r_flags = 0, (seq + seglen) & 0xFFFFFFFF, TCP_RST | TCP_ACK
    rst = TCP_HDR.pack(dport, sport, r_seq, r_ack, 5 << 4, r_flags, 0, 0, 0)
    c = checksum(pseudo_header(dst, src, IPPROTO_TCP, len(rst)) + rst)
    rst = rst[:16] + c.to_bytes(2, "big") + rst[18:]
    stack.send_ip(IPPROTO_TCP, dst, src, rst)


# -- anything else ------------------------------------------------------------------------------


def protocol_unreachable(stack: Stack, proto: int, header: bytes, payload: bytes) -> None:
    if len(header) >= 20 and header[0] >> 4 == 4:
        ipv4.send_error(stack, header, payload, ipv4.ICMP_DEST_UNREACH, ipv4.ICMP_PROT_UNREACH)
    elif len(header) >= 40:
        # The pointer names the next-header field that held `proto` (the last one).
        ipv6.send_error(stack, header, payload, ipv6.ICMPV6_PARAMPROB, ipv6.ICMPV6_UNK_NEXTHDR,
                        6 if len(header) == 40 else len(header) - 8)


__all__ = ["ping_deliver", "ping_output", "protocol_unreachable", "tcp_reset", "transport_error",
           "udp_output", "udp_receive"]
