"""Segment-level TCP: connections to other hosts, over the IP layer.  This module is
the layer (the connection table, demultiplexing, SYNs for listeners); tcpendpoint.py
is one connection, tcpsack.py its SACK scoreboard, reassembly queue and CUBIC,
tcpwire.py the segment format.  RFC 9293 with
RFC 7323 (window scale, timestamps, PAWS), RFC 2018 + 6675 (SACK and loss recovery),
RFC 6298 (RTO), RFC 5681 + 6582 (NewReno), RFC 5961 (RST/SYN/ACK validation),
RFC 6528 (ISNs), RFC 1122 (delayed ACKs, keep-alive, zero-window probes).
Linux: net/ipv4/tcp_input.c, tcp_output.c, tcp_timer.c, tcp_minisocks.c.
gVisor: pkg/tcpip/transport/tcp (endpoint, snd, rcv, sack_scoreboard).

Where it sits.  `TCPSocket` (tcp.py) is the socket: the accept queue, errnos, poll
masks, the receive queue the application reads.  For a connection inside the
sandbox its other end is another TCPSocket (`peer`, a method-call short-circuit).
For a connection to another host it is an `Endpoint` (tcpendpoint.py; `TCPSocket.ep`),
which turns the socket's calls into segments and calls the socket back from TCP
input with the same hooks the short-circuit uses (`_on_data`, `_on_fin`,
`_on_fin_acked`, `_on_rst`, plus `_on_established`, `_on_error`).

The IP layer (netstack's NIC path) is below; the interface is two calls:

  * down: ``stack.send_ip(6, src_ip, dst_ip, segment_bytes)``: the segment, checksum
    filled in (the pseudo-header is this module's);
  * up: ``stack.transport_handlers[6](src_ip, dst_ip, segment_bytes, nic)``, which
    `attach(stack)` points at `TCPLayer.input`; addresses are 4 or 16 bytes;
  * optionally ``layer.icmp_error(local_ip, remote_ip, quoted_tcp, errno, mtu)`` from
    the IP layer's ICMP/ICMPv6 input for destination-unreachable and
    fragmentation-needed / packet-too-big (path MTU, RFC 1191/8201), and
    ``stack.mtu_for(remote_ip)`` when the stack has it (else 1500).

Design.
  * Sequence numbers are kept unwrapped (Python ints that only grow); a 32-bit wire
    value is unwrapped against the nearest reference (RCV.NXT, SND.UNA), so every
    comparison is a plain `<`.
  * The send queue is one bytearray from SND.UNA (acknowledged bytes are deleted from
    its front, which CPython makes O(1)); SND.NXT is an offset into it.  After an RTO
    SND.NXT goes back to SND.UNA (go-back-N) but skips what the peer SACKed.
  * Loss recovery is RFC 6675 with a scoreboard of SACKed ranges when the peer
    allows SACK, else NewReno (RFC 6582): three duplicate ACKs (or more than
    3*MSS SACKed above SND.UNA) start fast retransmit; partial ACKs retransmit the
    next hole; `pipe` bounds what is in flight by cwnd.  Congestion control is
    CUBIC (RFC 9438, beta 0.7, fast convergence, the Reno-friendly region) as
    Linux's default, or NewReno with TCP_CONGESTION "reno"; slow start with
    RFC 3465 L=1, cwnd = 1 MSS after an RTO, initial window 10 MSS (RFC 6928).
  * RTO per RFC 6298 (SRTT/RTTVAR, Karn's rule: no samples from retransmitted
    segments unless the timestamp echo says which copy was acknowledged), doubled
    on each expiry up to 120 s, 200 ms minimum as Linux (RFC 6298 says 1 s).
    Give-up after 15 expiries (tcp_retries2) or TCP_USER_TIMEOUT: ETIMEDOUT.
  * The receiver reassembles out-of-order segments in a sorted list bounded by the
    window it advertised (itself bounded by the socket's receive buffer and the
    stack's budget), and reports them in SACK blocks.  The window never shrinks
    (RFC 9293 3.8.6.2.2), small increases are not advertised (receiver SWS), and
    after a read a window update goes out when the window grew by 2 MSS or half the
    buffer.  ACKs are delayed (40 ms, or every second full segment; at once for
    out-of-order data, FIN and window probes).  Nagle unless TCP_NODELAY; TCP_CORK
    sends only full segments.
  * Timers are the Sentry's: `kernel.add_timer(deadline_ns, callback)` with a
    `cancelled` flag, the one mechanism TIME_WAIT, SO_RCVTIMEO and nanosleep use.
    A connection has at most five (retransmit/persist, delayed ACK, keep-alive,
    TIME_WAIT or SYN-ACK); each is re-armed by cancelling the old one.
  * Passive opens: a SYN for a listener makes a half-open `Endpoint` (SYN_RECV) in
    the layer's table, not a socket; the listener's half-open count is bounded by
    its backlog (at least 8, at most 1024) and the layer's by 4096, so a SYN flood
    costs bounded memory (drops counted in ListenDrops); SYN-ACKs are retransmitted
    5 times (tcp_synack_retries).  The final ACK makes the child socket and puts it
    in the accept queue (full queue: the ACK is dropped and the SYN-ACK timer
    retries, as Linux).  SYN cookies (net.ipv4.tcp_syncookies=1): when the
    half-open bound is reached (and the accept queue is not full) the SYN-ACK's ISN
    is a cookie (a keyed hash of the 4-tuple and a minute counter, plus the client's
    ISN, with one of four MSS values in its low bits, as Linux's
    secure_tcp_syn_cookie) and no state is kept; the ACK that returns it rebuilds the
    connection.  Such a SYN-ACK offers only the MSS option (Linux would hide window
    scale and SACK in the timestamp; we offer neither).
  * TIME_WAIT: the endpoint stays 60 s answering retransmitted FINs; the socket's
    `TimeWait` remnant holds the port as before.

Why our own and not PyPI's pmd-pytcp (docs/networking.md, "Own stack or pmd-pytcp?"):
GPL-3.0 licence, its own asyncio loop and module-global state, a socket facade at
the wrong seam, 58k lines; and, measured on the same TUN path against Linux's TCP
(tests/sentry/tcpseg_tun.py), 0.06 MiB/s with its defaults where this module moves
25-65 MiB/s.

Concurrency: Sentry loop only; timer callbacks and `input` run on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.inet import (TCP_CLOSE_WAIT, TCP_CLOSING, TCP_ESTABLISHED,
                                    TCP_FIN_WAIT1, TCP_LAST_ACK, TCP_SYN_RECV,
                                    TCP_SYN_SENT)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.netstack import tcpwire as w
from pyvisor.sentry.socket.netstack.tcpendpoint import Endpoint, unwrap
from pyvisor.sentry.socket.netstack.tcpwire import ACK, RST, SYN, Segment

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netstack import Stack
    from pyvisor.sentry.socket.netstack.tcp import TCPSocket

IPPROTO_TCP = 6
HALF_OPEN_MAX = 4096            # all listeners together (tcp_max_syn_backlog-ish)
LISTEN_HALF_OPEN_MAX = 1024
CHALLENGE_ACKS_PER_S = 1000     # net.ipv4.tcp_challenge_ack_limit
COOKIE_MSS4 = (536, 1300, 1440, 1460)            # msstab (syncookies.c)
COOKIE_MSS6 = (1220, 1420, 1440, 8940)           # msstab for IPv6 (syncookies.c)
COOKIE_BITS = 24
COOKIE_MAX_AGE = 2                               # MAX_SYNCOOKIE_AGE, minutes
MINUTE_NS = 60 * 10**9
# Our data or FIN may still be unacknowledged (ESTABLISHED/CLOSE_WAIT only before the FIN
# is queued, which a closed socket always has).
SENDING_STATES = (TCP_ESTABLISHED, TCP_CLOSE_WAIT, TCP_FIN_WAIT1, TCP_CLOSING, TCP_LAST_ACK)


class TCPLayer:
    """The stack's TCP over IP: the connection table and the demultiplexer.
    Linux: tcp_v4_rcv / tcp_v6_rcv and the established/listening hash tables."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.kernel = stack.kernel
        self.conns: dict[tuple[bytes, int, bytes, int], Endpoint] = {}
        self.half_open: dict[TCPSocket, list[Endpoint]] = {}
        self.half_open_total = 0
        self.time_waits = 0                     # endpoints lingering in TIME_WAIT
        self.isn = w.ISNGenerator()
        self.sack = True                    # offer/accept SACK (net.ipv4.tcp_sack)
        self.timestamps = True              # net.ipv4.tcp_timestamps
        self.syncookies = True              # net.ipv4.tcp_syncookies = 1
        self.cookies_sent = self.cookies_recv = self.cookies_failed = 0
        self.challenge_window = 0           # second of the last challenge ACK
        self.challenge_count = 0
        # Counters (/proc/net/snmp Tcp: and TcpExt:).
        self.in_segs = self.out_segs = self.retrans_segs = self.in_errs = self.out_rsts = 0
        self.fast_retrans = self.timeouts = self.sack_recoveries = self.reno_recoveries = 0

    # -- down ------------------------------------------------------------------------------

    def send(self, src: bytes, dst: bytes, seg: bytes) -> None:
        self.out_segs += 1
        try:
            self.stack.send_ip(IPPROTO_TCP, src, dst, seg)   # type: ignore[attr-defined]
        except (OSError, SyscallError):
            pass                        # no route, a full or gone link: a lost segment

    def send_reset_for(self, src: bytes, dst: bytes, seg: Segment) -> None:
        """A reset for a segment no connection takes (RFC 9293 3.10.7.1, CLOSED)."""
        if seg.flags & RST:
            return
        self.out_rsts += 1
        if seg.flags & ACK:
            raw = w.build(dst, src, seg.dport, seg.sport, seg.ack, 0, RST, 0)
        else:
            raw = w.build(dst, src, seg.dport, seg.sport, 0, seg.seq + seg.seg_len,
                          RST | ACK, 0)
        self.send(dst, src, raw)

    def mtu_for(self, dst: bytes) -> int:
        f = getattr(self.stack, "mtu_for", None)
        return int(f(dst)) if f is not None else 1500

    def challenge_ack_ok(self) -> bool:
        """RFC 5961 section 7: at most CHALLENGE_ACKS_PER_S challenge ACKs a second."""
        sec = self.kernel.now() // 1_000_000_000
        if sec != self.challenge_window:
            self.challenge_window, self.challenge_count = sec, 0
        self.challenge_count += 1
        return self.challenge_count <= CHALLENGE_ACKS_PER_S

    # -- up --------------------------------------------------------------------------------

    def input(self, src: bytes, dst: bytes, payload: bytes, nic: Any = None) -> None:
        """One TCP segment from the IP layer (src, dst: its IP addresses)."""
        seg = w.parse(src, dst, payload)
        if seg is None:
            self.in_errs += 1
            return
        self.in_segs += 1
        ep = self.conns.get((dst, seg.dport, src, seg.sport))
        if ep is not None:
            ep.segment(seg)
            return
        if seg.flags & (SYN | ACK | RST) == SYN:
            lst = self.stack.tcp_listener(dst, seg.dport)
            if lst is not None:
                self._listen_syn(lst, src, dst, seg)
                return
        elif seg.flags & (SYN | ACK | RST) == ACK and self.syncookies:
            lst = self.stack.tcp_listener(dst, seg.dport)
            if lst is not None and self._cookie_ack(lst, src, dst, seg):
                return
        self.send_reset_for(src, dst, seg)

    def _listen_syn(self, lst: TCPSocket, src: bytes, dst: bytes, seg: Segment) -> None:
        """A SYN for a listener (tcp_conn_request): a half-open endpoint, or a drop."""
        pending = self.half_open.setdefault(lst, [])
        limit = min(max(lst.backlog + 1, 8), LISTEN_HALF_OPEN_MAX)
        if len(lst.acceptq) > lst.backlog:
            self.stack.syn_drops += 1           # ListenOverflows: cookies do not help
            return
        if len(pending) >= limit or self.half_open_total >= HALF_OPEN_MAX:
            if self.syncookies:
                self._send_cookie(src, dst, seg)
            else:
                self.stack.syn_drops += 1
            return
        ep = Endpoint(self, None, dst, seg.dport, src, seg.sport)
        ep.listener = lst
        ep.apply_socket_options(lst)
        pending.append(ep)
        self.half_open_total += 1
        self.conns[ep.key] = ep
        ep.passive_open(seg)

    # -- SYN cookies (Linux: net/ipv4/syncookies.c) -------------------------------------

    def _cookie(self, src: bytes, dst: bytes, sport: int, dport: int, sseq: int,
                mssind: int) -> int:
        count = self.kernel.now() // MINUTE_NS
        h = self.isn.cookie_hash
        return (h(src, dst, sport, dport, 0, 0) + sseq + (count << COOKIE_BITS)
                + ((h(src, dst, sport, dport, count, 1) + mssind) & ((1 << COOKIE_BITS) - 1))
                ) & w.MASK

    def _check_cookie(self, src: bytes, dst: bytes, sport: int, dport: int, sseq: int,
                      cookie: int) -> int:
        """The MSS index a cookie holds, or -1 (forged, or older than 2 minutes)."""
        count = self.kernel.now() // MINUTE_NS
        h = self.isn.cookie_hash
        c = (cookie - h(src, dst, sport, dport, 0, 0) - sseq) & w.MASK
        diff = (count - (c >> COOKIE_BITS)) & (w.MASK >> COOKIE_BITS)
        if diff >= COOKIE_MAX_AGE:
            return -1
        mssind = (c - h(src, dst, sport, dport, count - diff, 1)) & ((1 << COOKIE_BITS) - 1)
        return mssind if mssind < len(COOKIE_MSS4) else -1

    def _send_cookie(self, src: bytes, dst: bytes, seg: Segment) -> None:
        """tcp_conn_request with want_cookie: a SYN-ACK and no state."""
        table = COOKIE_MSS4 if len(src) == 4 else COOKIE_MSS6
        mss = seg.mss or table[0]
        mssind = len(table) - 1
        while mssind and mss < table[mssind]:
            mssind -= 1
        iss = self._cookie(src, dst, seg.sport, seg.dport, seg.seq, mssind)
        advmss = self.mtu_for(src) - (40 if len(src) == 4 else 60)
        raw = w.build(dst, src, seg.dport, seg.sport, iss, seg.seq + 1, SYN | ACK, 65535,
                      w.syn_options(advmss, None, False, None))
        self.cookies_sent += 1
        self.send(dst, src, raw)

    def _cookie_ack(self, lst: TCPSocket, src: bytes, dst: bytes, seg: Segment) -> bool:
        """cookie_v4_check: an ACK for a listener that returns a valid cookie becomes a
        connection (through SYN_RECV, as any passive open); False: not a cookie."""
        mssind = self._check_cookie(src, dst, seg.sport, seg.dport, (seg.seq - 1) & w.MASK,
                                    (seg.ack - 1) & w.MASK)
        if mssind < 0:
            self.cookies_failed += 1
            return False
        self.cookies_recv += 1
        if len(lst.acceptq) > lst.backlog:
            self.stack.syn_drops += 1
            return True                         # dropped: the client retransmits
        table = COOKIE_MSS4 if len(src) == 4 else COOKIE_MSS6
        ep = Endpoint(self, None, dst, seg.dport, src, seg.sport)
        ep.listener = lst
        ep.apply_socket_options(lst)
        ep.cookie_open(seg, (seg.ack - 1) & w.MASK, table[mssind])
        self.conns[ep.key] = ep
        ep.segment(seg)
        if ep.state == TCP_SYN_RECV:            # no child (a full queue): no state kept
            self.forget(ep)
        return True

    def connect(self, sock: TCPSocket) -> Endpoint:
        """An active open for `sock` (laddr/lport/raddr/rport set): the SYN goes out."""
        ep = Endpoint(self, sock, sock.laddr, sock.lport, sock.raddr, sock.rport)
        ep.apply_socket_options(sock)
        self.conns[ep.key] = ep
        ep.active_open()
        return ep

    def forget(self, ep: Endpoint) -> None:
        """The endpoint is gone (CLOSED): out of the tables, its timers stopped."""
        if self.conns.get(ep.key) is ep:
            del self.conns[ep.key]
        if ep.in_tw:
            ep.in_tw = False
            self.time_waits -= 1
        ep.cancel_timers()
        self._unhalf(ep)

    def _unhalf(self, ep: Endpoint) -> None:
        lst = ep.listener
        if lst is None:
            return
        ep.listener = None
        pending = self.half_open.get(lst)
        if pending is not None and ep in pending:
            pending.remove(ep)
            self.half_open_total -= 1
            if not pending:
                del self.half_open[lst]

    def orphans_sending(self) -> list[Endpoint]:
        """Connections whose socket was closed (an orphan, or a released socket) with
        data or the FIN not yet acknowledged: close(2) returned, but Linux's kernel keeps
        sending them (tcp_close + the orphan's timers)."""
        out = []
        for ep in self.conns.values():
            s = ep.sock
            if (s is None or s.released) and ep.listener is None and \
                    ep.state in SENDING_STATES and ep.fin_queued:
                out.append(ep)
        return out

    def abort_orphans(self) -> int:
        """The stack goes away (the sandbox exits past its linger bound): orphans that
        still owe data or a FIN are reset, so the peer does not wait on them forever."""
        eps = self.orphans_sending()
        for ep in eps:
            ep.abort()
        return len(eps)

    def listener_closed(self, lst: TCPSocket) -> None:
        """inet_csk_listen_stop: the half-open connections of `lst` are reset."""
        for ep in list(self.half_open.get(lst, ())):
            ep.send_rst()
            self.forget(ep)

    def icmp_error(self, local: bytes, remote: bytes, quoted: bytes, err: int,
                   mtu: int = 0) -> None:
        """An ICMP error about a segment we sent (`quoted`: at least its first 8 bytes).
        Linux: tcp_v4_err.  Fragmentation needed / packet too big lowers the path MTU;
        an unreachable destination fails a connection still in SYN_SENT, otherwise it is
        a soft error (RFC 1122 4.2.3.9)."""
        if len(quoted) < 8:
            return
        sport, dport = int.from_bytes(quoted[0:2], "big"), int.from_bytes(quoted[2:4], "big")
        ep = self.conns.get((local, sport, remote, dport))
        if ep is None:
            return
        seq = unwrap(int.from_bytes(quoted[4:8], "big"), ep.snd_una)
        if not ep.snd_una <= seq <= ep.snd_max:
            return                              # RFC 5927: not a segment in flight
        if mtu:
            ep.path_mtu(mtu)
        elif err and ep.state == TCP_SYN_SENT:
            ep.fail(err)
        elif err:
            ep.soft_error = err


def attach(stack: Stack) -> TCPLayer:
    """Gives `stack` a TCP layer on its IP layer (idempotent)."""
    layer: TCPLayer | None = getattr(stack, "tcpseg", None)
    if layer is None:
        layer = TCPLayer(stack)
        stack.tcpseg = layer                    # type: ignore[attr-defined]
    stack.transport_handlers[IPPROTO_TCP] = layer.input   # type: ignore[attr-defined]
    return layer


__all__ = ["TCPLayer", "Endpoint", "attach"]
