"""One TCP connection to another host: the TCB and what RFC 9293 does with segments
(the design is in tcpseg.py's docstring).  Linux: struct tcp_sock with tcp_input.c,
tcp_output.c and tcp_timer.c.  gVisor: pkg/tcpip/transport/tcp (endpoint, snd, rcv).

Concurrency: Sentry loop only; timer callbacks run on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import (TCP_CLOSE, TCP_CLOSE_WAIT, TCP_CLOSING, TCP_CORK,
                                    TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
                                    TCP_KEEPCNT, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_LAST_ACK,
                                    TCP_MAXSEG, TCP_NODELAY, TCP_SYN_RECV, TCP_SYN_SENT,
                                    TCP_SYNCNT, TCP_TIME_WAIT, TCP_USER_TIMEOUT)
from pyvisor.sentry.waitqueue import EVENT_OUT
from pyvisor.sentry.socket.common import RCV_SHUTDOWN, SO_KEEPALIVE
from pyvisor.sentry.socket.netstack import tcpwire as w
from pyvisor.sentry.socket.netstack.tcpsack import (DUPACK_THRESH, Cubic, Reassembly,
                                                    Scoreboard)
from pyvisor.sentry.socket.netstack.tcpwire import ACK, FIN, PSH, RST, SYN, URG, Segment

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Timer
    from pyvisor.sentry.socket.netstack.tcp import TCPSocket
    from pyvisor.sentry.socket.netstack.tcpseg import TCPLayer

MS = 1_000_000
RTO_INIT = 1000 * MS            # RFC 6298 2.1
RTO_MIN = 200 * MS              # Linux TCP_RTO_MIN (RFC 6298: 1 s)
RTO_MAX = 120_000 * MS          # TCP_RTO_MAX
DELACK = 40 * MS                # TCP_DELACK_MIN
TIME_WAIT_NS = 60_000 * MS      # TCP_TIMEWAIT_LEN (2 MSL)
TIME_WAIT_MAX = 16384           # net.ipv4.tcp_max_tw_buckets (scaled down)
RETRIES2 = 15                   # net.ipv4.tcp_retries2
SYNACK_RETRIES = 5              # net.ipv4.tcp_synack_retries
PERSIST_MAX = 60_000 * MS
INIT_CWND = 10                  # RFC 6928
RCV_WSCALE = 7                  # what Linux offers with default buffers
SND_AUTO = 1 << 18              # tcp.py's send buffer of an autotuned socket


def wrap(x: int) -> int:
    return x & w.MASK


def unwrap(x: int, ref: int) -> int:
    """The unwrapped sequence number nearest to `ref` whose low 32 bits are `x`."""
    return ref + ((x - ref + 0x80000000) & w.MASK) - 0x80000000


class Endpoint:
    """One TCP connection to another host: the TCB of RFC 9293 3.3.1.
    Linux: struct tcp_sock (the protocol half; the socket half is TCPSocket)."""

    def __init__(self, layer: TCPLayer, sock: TCPSocket | None, laddr: bytes, lport: int,
                 raddr: bytes, rport: int) -> None:
        self.layer = layer
        self.kernel = layer.kernel
        self.sock = sock                        # None: half-open, or an orphan in TIME_WAIT
        self.listener: TCPSocket | None = None  # the listener of a half-open endpoint
        self.laddr, self.lport, self.raddr, self.rport = laddr, lport, raddr, rport
        self.key = (laddr, lport, raddr, rport)
        self.state = TCP_CLOSE
        now = self.kernel.now()
        # Send sequence space (unwrapped).
        self.iss = layer.isn.isn(laddr, lport, raddr, rport, now)
        self.snd_una = self.snd_nxt = self.snd_max = self.iss
        self.snd_wnd = 0
        self.max_snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.sndq = bytearray()                 # bytes from SND.UNA (unacked, then unsent)
        self.snd_up = 0                         # SND.UP: just past the urgent byte (0: none)
        self.fin_queued = False                 # our FIN is after the last byte of sndq
        self.snd_wscale = 0
        # Receive sequence space.
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0                        # right edge of the window we advertised
        self.rcv_wscale = 0
        self.syn_wnd = 0                        # the window our SYN advertised
        self.rq = Reassembly()                  # out-of-order data and its SACK blocks
        # Options.
        ipmin = 40 if len(raddr) == 4 else 60
        self.advmss = self.layer.mtu_for(raddr) - ipmin
        self.peer_mss = 536 if len(raddr) == 4 else 1220
        self.mss = self.peer_mss                # send MSS (data per segment), see _set_mss
        self.user_mss = 0
        self.pmtu = self.layer.mtu_for(raddr)
        self.sack_ok = False
        self.ts_ok = False
        self.ts_recent = 0
        self.ts_off = int.from_bytes(layer.isn.secret[:4], "big") ^ self.iss
        self.sb = Scoreboard()                  # what the peer SACKed above SND.UNA
        # Congestion control (bytes).
        self.cwnd = INIT_CWND * self.mss
        self.ssthresh = 1 << 30
        self.dupacks = 0
        self.in_recovery = False
        self.recover = self.iss
        self.cubic = True                       # TCP_CONGESTION "cubic" (else "reno")
        self.cc = Cubic()
        self.rexmit_next = self.iss             # holes below this were retransmitted
        # RTO.
        self.srtt = 0
        self.rttvar = 0
        self.rto = RTO_INIT
        self.backoff = 0                        # expiries since the last new ACK
        self.rtt_seq: int | None = None         # timed segment (without timestamps)
        self.rtt_start = 0
        self.retrans_out = False                # anything retransmitted since last new ACK
        self.first_rexmit_at = 0
        # Delayed ACKs.
        self.ack_pending = 0                    # full segments received, not acknowledged
        # Timers.
        self.t_rtx: Timer | None = None         # retransmission, persist or SYN(-ACK)
        self.t_delack: Timer | None = None
        self.t_keep: Timer | None = None
        self.t_wait: Timer | None = None        # TIME_WAIT
        self.in_tw = False                      # counted in layer.time_waits
        self.persist = False
        self.probes = 0                         # unanswered window or keep-alive probes
        self.syn_retries = 6
        self.keepalive = False
        self.keep_idle, self.keep_intvl, self.keep_cnt = 7200, 75, 9
        self.nodelay = False
        self.cork = False
        self.user_timeout = 0
        self.soft_error = 0
        self.last_recv = now
        self.last_send = now
        # TCP_INFO counters.
        self.total_retrans = 0
        self.retrans_segs = 0
        self.bytes_retrans = 0
        self.segs_out = 0
        self.segs_in = 0

    # -- options from the socket ------------------------------------------------------------

    def apply_socket_options(self, s: TCPSocket) -> None:
        """What the endpoint reads from its socket (or a listener, for a passive open)."""
        self.syn_retries = s.tcp.get(TCP_SYNCNT, 6)
        self.keep_idle = s.tcp.get(TCP_KEEPIDLE, 7200)
        self.keep_intvl = s.tcp.get(TCP_KEEPINTVL, 75)
        self.keep_cnt = s.tcp.get(TCP_KEEPCNT, 9)
        self.keepalive = bool(s.opts.get(SO_KEEPALIVE, 0))
        self.nodelay = bool(s.tcp.get(TCP_NODELAY, 0))
        self.cork = bool(s.tcp.get(TCP_CORK, 0))
        self.user_timeout = s.tcp.get(TCP_USER_TIMEOUT, 0)
        self.cubic = s.congestion != b"reno"
        self.user_mss = s.tcp.get(TCP_MAXSEG, 0)
        if self.user_mss:
            self.advmss = min(self.advmss, self.user_mss)

    def options_changed(self) -> None:
        """setsockopt on the socket: re-read what may change on a live connection."""
        if self.sock is None:
            return
        was_keep, was_cork = self.keepalive, self.cork
        self.apply_socket_options(self.sock)
        if self.keepalive != was_keep or self.keepalive:
            self._arm_keepalive()
        if was_cork and not self.cork or self.nodelay:
            self.output()

    # -- the buffers the socket sees ---------------------------------------------------------

    def _sock_window(self) -> int:
        s = self.sock or self.listener
        return s.window() if s is not None else 65535

    def rcv_space(self) -> int:
        """Free receive buffer: what we may advertise beyond RCV.NXT."""
        s = self.sock
        used = s.rcv_len if s is not None else 0
        space = self._sock_window() - used
        return max(0, min(space, self.layer.stack.budget_left()))

    def sndbuf(self) -> int:
        s = self.sock
        if s is None:
            return SND_AUTO
        return s.sndbuf if s.userlocks_snd else SND_AUTO

    def send_room(self) -> int:
        """Bytes the application may still queue (the send buffer's free space)."""
        return self.sndbuf() - len(self.sndq)

    def writable(self) -> bool:
        return self.send_room() * 3 >= self.sndbuf()     # sk_stream_wspace: a third free

    def unacked(self) -> int:
        return self.snd_nxt - self.snd_una

    # -- opening ---------------------------------------------------------------------------

    def active_open(self) -> None:
        """connect(2): SYN_SENT and the SYN (tcp_connect)."""
        self.state = TCP_SYN_SENT
        self.rcv_wscale = RCV_WSCALE
        self._send_syn(0)
        self.snd_nxt = self.snd_max = self.iss + 1
        self._arm_rtx()

    def passive_open(self, seg: Segment) -> None:
        """A SYN for a listener: SYN_RECV and the SYN-ACK (tcp_conn_request)."""
        self.state = TCP_SYN_RECV
        self._take_syn(seg)
        self.rcv_wscale = RCV_WSCALE if seg.wscale is not None else 0
        self.syn_retries = SYNACK_RETRIES
        self._send_syn(ACK)
        self.snd_nxt = self.snd_max = self.iss + 1
        self._arm_rtx()

    def cookie_open(self, seg: Segment, iss: int, mss: int) -> None:
        """The ACK of a SYN-ACK whose ISN was a SYN cookie (tcp_get_cookie_sock): SYN_RECV
        rebuilt from the ACK alone, with the MSS the cookie kept and no other option
        (the cookie SYN-ACK offered none: no window scale, SACK or timestamps)."""
        self.state = TCP_SYN_RECV
        self.iss = iss
        self.snd_una = self.rexmit_next = self.recover = iss
        self.snd_nxt = self.snd_max = iss + 1
        self.irs = (seg.seq - 1) & w.MASK
        self.rcv_nxt = self.irs + 1
        self.peer_mss = mss
        self.sack_ok = self.ts_ok = False
        self.snd_wscale = self.rcv_wscale = 0
        self.snd_wnd = self.max_snd_wnd = seg.window
        self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
        self.syn_wnd = min(self.rcv_space(), 65535)
        self.rcv_adv = self.rcv_nxt + self.syn_wnd
        self._set_mss()

    def _take_syn(self, seg: Segment) -> None:
        """The peer's SYN: its ISN, MSS and the options both sides must offer."""
        self.irs = seg.seq
        self.rcv_nxt = seg.seq + 1
        self.rcv_adv = self.rcv_nxt + self.syn_wnd   # what our SYN offered (0: passive)
        if seg.mss:
            self.peer_mss = seg.mss
        self.sack_ok = seg.sack_perm and self.layer.sack
        if seg.ts is not None and self.layer.timestamps:
            self.ts_ok = True
            self.ts_recent = seg.ts[0]
        if seg.wscale is not None:
            self.snd_wscale = seg.wscale
        else:
            self.snd_wscale = 0
            self.rcv_wscale = 0
        self.snd_wnd = seg.window               # never scaled in a SYN (RFC 7323 2.2)
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
        self._set_mss()

    def _set_mss(self) -> None:
        """The data per segment: the peer's MSS, our path MTU, less the timestamp option."""
        ipmin = 40 if len(self.raddr) == 4 else 60
        mss = min(self.peer_mss, self.pmtu - ipmin)
        if self.user_mss:
            mss = min(mss, self.user_mss)
        if self.ts_ok:
            mss -= w.TS_OPT_LEN
        first = self.cwnd == INIT_CWND * self.mss
        self.mss = max(mss, 64)
        if first:
            self.cwnd = INIT_CWND * self.mss

    def _send_syn(self, extra: int) -> None:
        """Our SYN (or SYN-ACK) with MSS, SACK-permitted, timestamps and window scale."""
        passive = bool(extra & ACK)
        ts = (self._tsval(), self.ts_recent) if (self.ts_ok or not passive and
                                                 self.layer.timestamps) else None
        ws = self.rcv_wscale if (not passive or self.rcv_wscale) else None
        opts = w.syn_options(self.advmss, ws, self.sack_ok or (not passive and self.layer.sack),
                             ts)
        wnd = min(self.rcv_space(), 65535)
        self.syn_wnd = wnd
        if passive:
            self.rcv_adv = max(self.rcv_adv, self.rcv_nxt + wnd)
        ack = self.rcv_nxt if passive else 0
        self._emit(self.iss, ack, SYN | extra, wnd, opts)

    def _established(self) -> None:
        self.state = TCP_ESTABLISHED
        self.backoff = 0
        self._arm_keepalive()

    # -- output ----------------------------------------------------------------------------

    def _tsval(self) -> int:
        return wrap(self.kernel.now() // MS + self.ts_off)

    def _window_field(self) -> int:
        """The window to advertise (tcp_select_window): never shrinking the right edge,
        not opening by less than min(MSS, half the buffer) (receiver SWS avoidance)."""
        space = self.rcv_space()
        cur = self.rcv_adv - self.rcv_nxt
        if space < min(self._sock_window() // 2, self.advmss) and space > cur:
            space = cur                          # too small an increase: keep the old edge
        space = max(space, cur)
        wnd = min(space >> self.rcv_wscale, 65535)
        self.rcv_adv = max(self.rcv_adv, self.rcv_nxt + (wnd << self.rcv_wscale))
        return wnd

    def _sack_blocks(self) -> list[tuple[int, int]]:
        if not self.sack_ok or not self.rq:
            return []
        return self.rq.sacks

    def _emit(self, seq: int, ack: int, flags: int, wnd: int, opts: bytes = b"",
              data: bytes = b"") -> None:
        urp = 0
        if self.snd_up > seq and self.snd_up > self.snd_una:
            # Urgent mode (tcp_transmit_skb): the pointer, or 0xFFFF while it is further.
            urp = min(self.snd_up - seq, 0xFFFF)
            flags |= URG
        raw = w.build(self.laddr, self.raddr, self.lport, self.rport, seq, ack, flags, wnd,
                      opts, data, urp)
        self.segs_out += 1
        self.last_send = self.kernel.now()
        s = self.sock
        if s is not None:
            s.segs_out += 1
        self.layer.send(self.laddr, self.raddr, raw)

    def _send_segment(self, seq: int, flags: int, data: bytes = b"") -> None:
        """A segment of the synchronized states: ACK, our timestamp and SACK blocks."""
        ts = (self._tsval(), self.ts_recent) if self.ts_ok else None
        opts = w.data_options(ts, self._sack_blocks())
        self._emit(seq, self.rcv_nxt, flags | ACK, self._window_field(), opts, data)
        self.ack_pending = 0
        if self.t_delack is not None:
            self.t_delack.cancelled = True
            self.t_delack = None

    def send_ack(self) -> None:
        self._send_segment(self.snd_nxt, 0)

    def send_rst(self) -> None:
        """tcp_send_active_reset."""
        self.layer.out_rsts += 1
        self._emit(self.snd_nxt, self.rcv_nxt, RST | ACK, 0)

    def _fin_seq(self) -> int:
        return self.snd_una + len(self.sndq)

    def _pipe(self) -> int:
        """RFC 6675 pipe: bytes sent and neither SACKed nor deemed lost (nor acked)."""
        out = self.snd_nxt - self.snd_una
        sb = self.sb
        if not sb:
            return out
        out -= sb.sacked_below(self.snd_nxt)
        if self.in_recovery:
            # Holes deemed lost and not retransmitted yet are not in flight.
            high = min(sb.lost_edge(self.snd_una, self.mss), self.snd_nxt)
            out -= sb.holes(max(self.snd_una, self.rexmit_next), high)
        return max(out, 0)

    def output(self) -> None:
        """tcp_write_xmit: send what the windows allow (new data, or go-back-N after an
        RTO, skipping what was SACKed); arm the retransmission or persist timer."""
        if self.state not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT, TCP_FIN_WAIT1, TCP_CLOSING,
                              TCP_LAST_ACK):
            return
        sent = False
        while True:
            seq = self.sb.skip(self.snd_nxt)
            if seq != self.snd_nxt and seq <= self.snd_max:
                self.snd_nxt = seq
            off = seq - self.snd_una
            avail = len(self.sndq) - off
            fin_here = self.fin_queued and seq <= self._fin_seq() and \
                self.snd_una <= self._fin_seq()
            if avail <= 0 and not (fin_here and seq == self._fin_seq()):
                break
            wnd_left = self.snd_una + self.snd_wnd - seq
            cwnd_left = self.cwnd - self._pipe()
            n = min(self.mss, max(avail, 0))
            if n > 0:
                if wnd_left <= 0 or cwnd_left <= 0:
                    break
                n = min(n, wnd_left)
                if seq >= self.snd_max and n < self.mss and n < avail and \
                        n < self.max_snd_wnd // 2:
                    break                               # sender SWS: wait for more window
                if seq >= self.snd_max and n < self.mss and not self._may_send_small(seq):
                    break                               # Nagle or cork
            elif cwnd_left <= 0 and self.unacked() > 0:
                break
            data = bytes(self.sndq[off:off + n])
            flags = 0
            end = seq + n
            if self.fin_queued and end == self._fin_seq():
                flags |= FIN
            if n and end == self._fin_seq():
                flags |= PSH
            self._xmit(seq, flags, data)
            sent = True
            self.snd_nxt = end + (1 if flags & FIN else 0)
            if self.snd_nxt > self.snd_max:
                self.snd_max = self.snd_nxt
            if flags & FIN:
                break
        if sent or self.unacked():
            if self.t_rtx is None or self.persist:
                self._arm_rtx()
        elif self._has_unsent() and not self.persist:
            self._arm_persist()

    def _has_unsent(self) -> bool:
        return self.snd_nxt < self._fin_seq() + (1 if self.fin_queued else 0)

    def _may_send_small(self, seq: int) -> bool:
        """Nagle (RFC 1122 4.2.3.4): a short segment only with nothing unacknowledged,
        or when it ends the stream; never while corked."""
        if self.cork:
            return self.fin_queued
        if self.nodelay or self.fin_queued:
            return True
        return self.snd_una == self.snd_max

    def _xmit(self, seq: int, flags: int, data: bytes) -> None:
        rexmit = seq < self.snd_max
        if rexmit:
            self.retrans_out = True
            self.retrans_segs += 1
            self.total_retrans += 1
            self.bytes_retrans += len(data)
            self.layer.retrans_segs += 1
            if not self.first_rexmit_at:
                self.first_rexmit_at = self.kernel.now()
            if self.rtt_seq is not None and seq < self.rtt_seq:
                self.rtt_seq = None                     # Karn: that sample is ambiguous
        elif self.rtt_seq is None and not self.ts_ok and data:
            self.rtt_seq, self.rtt_start = seq + len(data), self.kernel.now()
        self._send_segment(seq, flags, data)

    def _retransmit_first(self) -> None:
        """Retransmits the segment at SND.UNA (or the SYN, or a lone FIN)."""
        if self.state == TCP_SYN_SENT:
            self._send_syn(0)
            return
        if self.state == TCP_SYN_RECV:
            self._send_syn(ACK)
            return
        n = min(self.mss, len(self.sndq))
        flags = 0
        if self.fin_queued and self.snd_una + n == self._fin_seq():
            flags |= FIN
        if n == 0 and not flags:
            return
        self._xmit(self.snd_una, flags | (PSH if n else 0), bytes(self.sndq[:n]))

    def _retransmit_holes(self) -> None:
        """RFC 6675 NextSeg: retransmit the lost (un-SACKed, IsLost) ranges while
        pipe < cwnd, then let new data go."""
        if not self.sb:
            return
        high = self.sb.lost_edge(self.snd_una, self.mss)
        seq = max(self.rexmit_next, self.snd_una)
        while seq < high and self._pipe() < self.cwnd:
            seq = self.sb.skip(seq)
            if seq >= high:
                break
            nxt = self.sb.next_start(seq, high)
            n = min(self.mss, nxt - seq, len(self.sndq) - (seq - self.snd_una))
            if n <= 0:
                break
            off = seq - self.snd_una
            self._xmit(seq, 0, bytes(self.sndq[off:off + n]))
            seq += n
            self.rexmit_next = seq
        if self.t_rtx is None:
            self._arm_rtx()

    # -- the application's side ----------------------------------------------------------------

    def send(self, data: bytes, urgent: bool = False) -> None:
        """Queues `data` (the caller checked send_room) and sends what may go; `urgent`
        (MSG_OOB) points SND.UP just past its last byte (tcp_mark_urg)."""
        self.sndq += data
        if urgent:
            self.snd_up = self.snd_una + len(self.sndq)
        self.output()

    def send_fin(self) -> None:
        """shutdown(SHUT_WR) or close: the FIN follows the queued data."""
        if self.fin_queued:
            return
        self.fin_queued = True
        if self.state == TCP_ESTABLISHED:
            self.state = TCP_FIN_WAIT1
        elif self.state == TCP_CLOSE_WAIT:
            self.state = TCP_LAST_ACK
        else:
            return                              # SYN_RECV: sent once established
        self.output()

    def on_read(self) -> None:
        """The application read: send a window update if the window opened enough."""
        if self.state not in (TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2):
            return
        space = self.rcv_space()
        cur = self.rcv_adv - self.rcv_nxt
        if space - cur >= min(2 * self.advmss, self._sock_window() // 2) or \
                (cur < self.advmss <= space):
            self.send_ack()

    def abort(self) -> None:
        """close with unread data, SO_LINGER {1, 0}: a reset, and the endpoint is gone."""
        if self.state in (TCP_SYN_RECV, TCP_ESTABLISHED, TCP_CLOSE_WAIT, TCP_FIN_WAIT1,
                          TCP_FIN_WAIT2, TCP_CLOSING, TCP_LAST_ACK):
            self.send_rst()
        self.sock = None
        self.state = TCP_CLOSE
        self.layer.forget(self)

    def socket_done(self) -> None:
        """The socket is finished with the connection (tcp_done on its side): unless the
        endpoint lingers in TIME_WAIT it goes too."""
        self.sock = None
        if self.state != TCP_TIME_WAIT:
            self.state = TCP_CLOSE
            self.layer.forget(self)

    def fail(self, err: int) -> None:
        """The connection dies with `err` (ETIMEDOUT, an ICMP hard error)."""
        s = self.sock
        self.state = TCP_CLOSE
        self.layer.forget(self)
        self.sock = None
        if s is not None:
            s._on_error(self.soft_error if err == Errno.ETIMEDOUT and self.soft_error else err)

    def path_mtu(self, mtu: int) -> None:
        """A smaller path MTU (RFC 1191/8201): smaller segments, resend the first."""
        if mtu >= self.pmtu or mtu < 68:
            return
        self.pmtu = mtu
        old = self.mss
        self._set_mss()
        if self.mss < old and self.unacked():
            self.snd_nxt = self.snd_una
            self.output()

    # -- input -----------------------------------------------------------------------------

    def segment(self, seg: Segment) -> None:
        """tcp_rcv_state_process for this connection."""
        self.segs_in += 1
        if self.sock is not None:
            self.sock.segs_in += 1
        st = self.state
        if st == TCP_SYN_SENT:
            self._syn_sent(seg)
            return
        seq = unwrap(seg.seq, self.rcv_nxt)
        ack = unwrap(seg.ack, self.snd_una)
        if st == TCP_TIME_WAIT:
            self._time_wait(seg, seq)
            return
        # PAWS (RFC 7323 5.3): an old timestamp marks an old duplicate.
        if self.ts_ok and seg.ts is not None and not seg.flags & RST and \
                ((seg.ts[0] - self.ts_recent) & w.MASK) >= 0x80000000:
            self.send_ack()
            return
        if not self._acceptable(seq, seg):
            if not seg.flags & RST:
                if st == TCP_SYN_RECV and seg.flags & (SYN | ACK) == SYN and seq == self.irs:
                    self._send_syn(ACK)         # the SYN again: our SYN-ACK was lost
                else:
                    self.send_ack()
            return
        if seg.flags & RST:
            self._rst(seq)
            return
        if seg.flags & SYN:
            # RFC 5961 4.2: a SYN in a synchronized state gets a challenge ACK.
            if self.layer.challenge_ack_ok():
                self.send_ack()
            return
        if not seg.flags & ACK:
            return
        if seg.ts is not None and self.ts_ok and seq <= self.rcv_nxt:
            self.ts_recent = seg.ts[0]          # RFC 7323 4.3
        if st == TCP_SYN_RECV:
            if not self.snd_una < ack <= self.snd_max:
                self.layer.send_reset_for(self.raddr, self.laddr, seg)
                return
            if not self._become_established():
                return                          # accept queue full: wait for a retry
        if not self._ack(seg, ack):
            return
        if seg.flags & URG and seg.urg_ptr and self.sock is not None and \
                self.state in (TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2):
            # tcp_urg (tcp_stdurg=0): the urgent byte is the one before the pointer, as
            # a stream index of the socket (the first byte after the SYN is 0).
            self.sock.check_urg(seq + seg.urg_ptr - 1 - (self.irs + 1))
        self._data(seg, seq)
        self.output()

    def _acceptable(self, seq: int, seg: Segment) -> bool:
        """RFC 9293 3.10.7.4 first check, against the window we advertised."""
        rw = self.rcv_adv - self.rcv_nxt
        n = seg.seg_len
        if n == 0:
            if rw == 0:
                return seq == self.rcv_nxt
            return self.rcv_nxt <= seq < self.rcv_nxt + rw
        if rw == 0:
            return False
        return self.rcv_nxt <= seq < self.rcv_nxt + rw or \
            self.rcv_nxt <= seq + n - 1 < self.rcv_nxt + rw

    def _rst(self, seq: int) -> None:
        """RFC 5961 3.2: exactly RCV.NXT resets; elsewhere in the window, a challenge."""
        if seq != self.rcv_nxt:
            if self.layer.challenge_ack_ok():
                self.send_ack()
            return
        s = self.sock
        if self.state == TCP_SYN_RECV and self.listener is not None:
            self.layer.forget(self)             # back to LISTEN: the half-open goes
            return
        self.state = TCP_CLOSE
        self.layer.forget(self)
        self.sock = None
        if s is not None:
            s._on_rst()

    def _become_established(self) -> bool:
        """SYN_RECV + a good ACK: ESTABLISHED; a passive open gets its child socket."""
        lst = self.listener
        if lst is not None:
            child = lst.wire_child(self)
            if child is None:
                self.layer.stack.syn_drops += 1
                return False
            self.layer._unhalf(self)
            self.sock = child
            self.apply_socket_options(child)
        self._established()
        if self.sock is not None:
            self.sock._on_established()
        if self.fin_queued:
            self.state = TCP_FIN_WAIT1
        return True

    def _syn_sent(self, seg: Segment) -> None:
        """RFC 9293 3.10.7.3 (SYN-SENT)."""
        f = seg.flags
        ack = unwrap(seg.ack, self.snd_una)
        if f & ACK and ack != self.iss + 1:
            if not f & RST:
                self.layer.send_reset_for(self.raddr, self.laddr, seg)
            return
        if f & RST:
            if f & ACK:
                s = self.sock
                self.state = TCP_CLOSE
                self.layer.forget(self)
                self.sock = None
                if s is not None:
                    s._on_rst()                 # ECONNREFUSED
            return
        if not f & SYN:
            return
        self._take_syn(seg)
        if f & ACK:
            self.snd_una = ack
            self.snd_nxt = self.snd_max = max(self.snd_nxt, ack)
            if self.rtt_seq is None and not self.retrans_out and self.backoff == 0:
                self._rtt_sample(self.kernel.now() - self.last_send)
            self._stop_rtx()
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
            self._established()
            s = self.sock
            if s is not None:
                s._on_established()
            self.send_ack()
            self.output()
        else:
            # Simultaneous open (RFC 9293 figure 7): SYN-ACK with our ISN again.
            self.state = TCP_SYN_RECV
            if self.sock is not None:
                self.sock.state = TCP_SYN_RECV
            self._send_syn(ACK)

    def _time_wait(self, seg: Segment, seq: int) -> None:
        """tcp_timewait_state_process: a retransmitted FIN is acknowledged again (and the
        2 MSL restart); a reset ends TIME_WAIT early (net.ipv4.tcp_rfc1337=0); a new SYN
        beyond the old sequence space (or with a newer timestamp) starts a new
        connection on a listener (TCP_TW_SYN, RFC 6191)."""
        if seg.flags & RST:
            self.state = TCP_CLOSE
            self.layer.forget(self)
            return
        if seg.flags & (SYN | ACK) == SYN:
            newer_ts = self.ts_ok and seg.ts is not None and \
                0 < ((seg.ts[0] - self.ts_recent) & w.MASK) < 0x80000000
            if seq > self.rcv_nxt or newer_ts:
                lst = self.layer.stack.tcp_listener(self.laddr, self.lport)
                if lst is not None:
                    self.state = TCP_CLOSE
                    self.layer.forget(self)
                    self.layer._listen_syn(lst, self.raddr, self.laddr, seg)
                    return
        if seg.flags & FIN or seg.seg_len or seg.flags & SYN:
            self.send_ack()
            if seg.flags & FIN:
                self._arm_time_wait()

    # -- ACK processing ------------------------------------------------------------------------

    def _ack(self, seg: Segment, ack: int) -> bool:
        """RFC 9293 3.10.7.4 fifth check, with RFC 5961 5.2 and the congestion control.
        False: drop the segment."""
        if ack > self.snd_max:
            if self.layer.challenge_ack_ok():
                self.send_ack()
            return False
        if ack < self.snd_una - max(self.max_snd_wnd, 1):
            if self.layer.challenge_ack_ok():
                self.send_ack()                 # RFC 5961 5.2: too old
            return False
        self.last_recv = self.kernel.now()
        self.probes = 0
        seq = unwrap(seg.seq, self.rcv_nxt)
        new_sack = self._take_sacks(seg) if self.sack_ok and seg.sacks else False
        wnd = seg.window << self.snd_wscale
        wnd_changed = False
        if self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack):
            wnd_changed = wnd != self.snd_wnd
            self.snd_wnd = wnd
            self.max_snd_wnd = max(self.max_snd_wnd, wnd)
            self.snd_wl1, self.snd_wl2 = seq, ack
        if ack > self.snd_una:
            self._new_ack(seg, ack)
        elif ack == self.snd_una and self.unacked() and not seg.data and \
                not seg.flags & FIN and (not wnd_changed or new_sack):
            self._dupack(new_sack)
        if self.persist and self.snd_una + self.snd_wnd > self.snd_nxt:
            self._stop_rtx()
            self.backoff = 0
        return True

    def _take_sacks(self, seg: Segment) -> bool:
        """Merges the segment's SACK blocks into the scoreboard; True if it grew."""
        grew = False
        for left, right in seg.sacks:
            a, b = unwrap(left, self.snd_una), unwrap(right, self.snd_una)
            if not self.snd_una < b <= self.snd_max or a >= b or a < self.snd_una:
                continue                        # D-SACK or a bogus block (RFC 2883)
            grew |= self.sb.add(a, b)
        return grew

    def _new_ack(self, seg: Segment, ack: int) -> None:
        """New data acknowledged: the send queue, RTT, RTO, cwnd, recovery, FIN."""
        acked = ack - self.snd_una
        fin_acked = self.fin_queued and ack == self._fin_seq() + 1
        del self.sndq[:min(acked, len(self.sndq))]
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        if self.rexmit_next < ack:
            self.rexmit_next = ack
        self.sb.trim(ack)
        now = self.kernel.now()
        if self.ts_ok and seg.ts is not None and seg.ts[1]:
            # RFC 7323 4.1: the echoed TSval says which copy this acknowledges.
            self._rtt_sample(((self._tsval() - seg.ts[1]) & w.MASK) * MS)
        elif self.rtt_seq is not None and ack >= self.rtt_seq:
            self._rtt_sample(now - self.rtt_start)
            self.rtt_seq = None
        self.backoff = 0
        self.retrans_out = False
        self.first_rexmit_at = 0
        self.dupacks = 0
        s = self.sock
        if self.in_recovery:
            if ack >= self.recover:
                self.in_recovery = False
                self.cwnd = min(self.ssthresh, max(self._pipe(), 0) + self.mss)
                self.cwnd = max(self.cwnd, 2 * self.mss)
            elif self.sack_ok:
                self._retransmit_holes()
            else:
                # RFC 6582 3.2 step 5: partial ACK, retransmit the next, deflate.
                self._retransmit_first()
                self.cwnd = max(self.cwnd - acked + self.mss, self.mss)
        elif self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.mss)                   # slow start (RFC 3465 L=1)
        elif self.cubic:
            self.cwnd = self.cc.grow(self.cwnd, acked, self.mss, self.srtt or 100 * MS,
                                     self.kernel.now())
        else:
            self.cwnd += max(self.mss * self.mss // self.cwnd, 1)   # congestion avoidance
        if self.unacked():
            self._arm_rtx()
        else:
            self._stop_rtx()
        if s is not None and self.writable():
            s._notify(EVENT_OUT)
        if fin_acked:
            self._our_fin_acked()

    def _dupack(self, new_sack: bool) -> None:
        """A duplicate ACK (RFC 5681 2): the third (or enough SACKed) starts fast
        retransmit; more in recovery inflate cwnd (NewReno) or fill holes (SACK)."""
        self.dupacks += 1
        if self.in_recovery:
            if self.sack_ok:
                self._retransmit_holes()
            else:
                self.cwnd += self.mss
            return
        lost = self.dupacks >= DUPACK_THRESH or \
            (self.sack_ok and self.sb.bytes > DUPACK_THRESH * self.mss)
        if not lost or self.snd_una < self.recover and not self.sack_ok:
            return
        # Enter fast recovery.
        self.layer.fast_retrans += 1
        if self.sack_ok:
            self.layer.sack_recoveries += 1
        else:
            self.layer.reno_recoveries += 1
        self._reduce()
        self.in_recovery = True
        self.recover = self.snd_max
        self.rtt_seq = None
        if self.sack_ok:
            self.cwnd = self.ssthresh
            if self.rexmit_next <= self.snd_una:
                # (A segment the last recovery already resent is not resent again.)
                self._retransmit_first()
                self.rexmit_next = self.snd_una + min(self.mss, len(self.sndq))
            self._retransmit_holes()
        else:
            self.cwnd = self.ssthresh + DUPACK_THRESH * self.mss
            self._retransmit_first()
        self._arm_rtx()

    # -- congestion control: NewReno (RFC 5681/6582) or CUBIC (RFC 9438) ---------------------

    def _reduce(self) -> None:
        """A congestion event (fast retransmit or RTO): the new ssthresh.  NewReno halves
        the flight (RFC 5681 3.1); CUBIC takes beta * cwnd (RFC 9438 4.6)."""
        if self.cubic:
            self.ssthresh = self.cc.reduce(self.cwnd, self.mss)
        else:
            self.ssthresh = max((self.snd_max - self.snd_una) // 2, 2 * self.mss)

    def _rtt_sample(self, r: int) -> None:
        """RFC 6298 2.2-2.3."""
        r = max(r, MS // 10)
        if self.srtt == 0:
            self.srtt, self.rttvar = r, r // 2
        else:
            self.rttvar = (3 * self.rttvar + abs(self.srtt - r)) // 4
            self.srtt = (7 * self.srtt + r) // 8
        self.rto = min(max(self.srtt + max(4 * self.rttvar, MS), RTO_MIN), RTO_MAX)

    def _our_fin_acked(self) -> None:
        st = self.state
        s = self.sock
        if st == TCP_FIN_WAIT1:
            self.state = TCP_FIN_WAIT2
        elif st == TCP_CLOSING:
            self.state = TCP_TIME_WAIT
            self._arm_time_wait()
        elif st == TCP_LAST_ACK:
            self.state = TCP_CLOSE
            self.layer.forget(self)
            self.sock = None
        if s is not None:
            s._on_fin_acked()

    # -- data and FIN ---------------------------------------------------------------------

    def _data(self, seg: Segment, seq: int) -> None:
        """RFC 9293 3.10.7.4 seventh and eighth checks."""
        st = self.state
        data = seg.data
        fin = bool(seg.flags & FIN)
        if not data and not fin:
            return
        if st not in (TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2):
            if data or fin:
                self.send_ack()                 # after our FIN was acknowledged... or theirs
            return
        s = self.sock
        if data and s is not None and s.shut & RCV_SHUTDOWN and \
                st in (TCP_FIN_WAIT1, TCP_FIN_WAIT2):
            # Data for an end closed for reading: a reset (tcp_rcv_state_process, "abort
            # on data"), as the loopback short-circuit does.
            self.layer.stack.aborts_on_data += 1
            self.send_rst()
            self.state = TCP_CLOSE
            self.layer.forget(self)
            self.sock = None
            s._on_rst()
            return
        # Trim to the window: what is before RCV.NXT was had, what is past the edge dropped.
        if seq < self.rcv_nxt:
            cut = self.rcv_nxt - seq
            data = data[cut:]
            seq = self.rcv_nxt
        edge = self.rcv_adv
        if seq + len(data) > edge:
            data = data[:max(edge - seq, 0)]
            fin = False
        if seq == self.rcv_nxt:
            if data:
                self._deliver(data)
            if fin:
                self.rcv_nxt += 1
                self._fin()
                return
            had_ooo = bool(self.rq)
            for piece in self.rq.drain(self.rcv_nxt):
                self._deliver(piece)
            if had_ooo or self.rq.fin == self.rcv_nxt:
                if self.rq.fin == self.rcv_nxt:
                    self.rq.fin = None
                    self.rcv_nxt += 1
                    self._fin()
                    return
                self.send_ack()                 # a hole filled: ACK at once (RFC 5681 4.2)
                return
            self._ack_data()
            return
        # Out of order: keep it within the window, ACK at once with SACK (RFC 5681 4.2).
        if data:
            self.rq.insert(seq, data)
        if fin:
            self.rq.fin = seq + len(data)
        self.send_ack()

    def _ack_data(self) -> None:
        """Delayed ACK (RFC 1122 4.2.3.2, RFC 5681 4.2): every second segment at once,
        else after DELACK."""
        self.ack_pending += 1
        if self.ack_pending >= 2:
            self.send_ack()
            return
        if self.t_delack is None:
            def fire() -> None:
                self.t_delack = None
                if self.ack_pending and self.state != TCP_CLOSE:
                    self.send_ack()
            self.t_delack = self.kernel.add_timer(self.kernel.now() + DELACK, fire)

    def _deliver(self, data: bytes) -> None:
        self.rcv_nxt += len(data)
        s = self.sock
        if s is not None:
            s._on_data(data)

    def _fin(self) -> None:
        """tcp_fin: the peer's FIN in order."""
        st = self.state
        if st == TCP_ESTABLISHED:
            self.state = TCP_CLOSE_WAIT
        elif st == TCP_FIN_WAIT1:
            self.state = TCP_CLOSING             # simultaneous close
        elif st == TCP_FIN_WAIT2:
            self.state = TCP_TIME_WAIT
            self._arm_time_wait()
        self.send_ack()
        s = self.sock
        if s is not None:
            s._on_fin()

    # -- timers ------------------------------------------------------------------------------

    def _timer(self, old: Timer | None, delay: int, cb: Callable[[], None]) -> Timer:
        if old is not None:
            old.cancelled = True
        return self.kernel.add_timer(self.kernel.now() + delay, cb)

    def cancel_timers(self) -> None:
        for tm in (self.t_rtx, self.t_delack, self.t_keep, self.t_wait):
            if tm is not None:
                tm.cancelled = True
        self.t_rtx = self.t_delack = self.t_keep = self.t_wait = None

    def _arm_rtx(self) -> None:
        self.persist = False
        delay = min(self.rto << self.backoff, RTO_MAX)
        self.t_rtx = self._timer(self.t_rtx, delay, self._on_rtx)

    def _stop_rtx(self) -> None:
        if self.t_rtx is not None:
            self.t_rtx.cancelled = True
            self.t_rtx = None
        self.persist = False

    def _arm_persist(self) -> None:
        self.persist = True
        delay = min(max(self.rto, RTO_MIN) << self.backoff, PERSIST_MAX)
        self.t_rtx = self._timer(self.t_rtx, delay, self._on_persist)
        self.persist = True

    def _on_persist(self) -> None:
        """tcp_probe_timer.  With no usable window: a zero-window probe the receiver must
        answer with its window (Linux's SND.UNA-1 probe).  With a window too small for
        a full segment (sender SWS avoidance, RFC 9293 3.8.6.2.1): the override timeout,
        send what fits."""
        self.t_rtx = None
        self.persist = False
        if not self._has_unsent() or self.state == TCP_CLOSE:
            return
        usable = self.snd_una + self.snd_wnd - self.snd_nxt
        unsent = self._fin_seq() - self.snd_nxt
        if usable > 0 and unsent > 0:
            n = min(usable, self.mss, unsent)
            off = self.snd_nxt - self.snd_una
            self._xmit(self.snd_nxt, 0, bytes(self.sndq[off:off + n]))
            self.snd_nxt += n
            self.snd_max = max(self.snd_max, self.snd_nxt)
            self._arm_rtx()
            return
        self.probes += 1
        if self.probes > RETRIES2:
            self.fail(Errno.ETIMEDOUT)
            return
        self._send_segment(self.snd_una - 1, 0)
        self.backoff = min(self.backoff + 1, 16)
        self._arm_persist()

    def _on_rtx(self) -> None:
        """tcp_retransmit_timer: RFC 6298 5.4-5.7 and RFC 5681 3.1 (cwnd = 1 MSS)."""
        self.t_rtx = None
        st = self.state
        if st == TCP_CLOSE or st == TCP_TIME_WAIT:
            return
        limit = self.syn_retries if st in (TCP_SYN_SENT, TCP_SYN_RECV) else RETRIES2
        now = self.kernel.now()
        timed_out = self.backoff >= limit
        if self.user_timeout and self.first_rexmit_at and \
                now - self.first_rexmit_at >= self.user_timeout * MS:
            timed_out = True
        if timed_out:
            if st == TCP_SYN_RECV and self.listener is not None:
                self.layer.forget(self)          # a half-open that never completed
                return
            self.fail(Errno.ETIMEDOUT)
            return
        self.layer.timeouts += 1
        if st in (TCP_SYN_SENT, TCP_SYN_RECV):
            self.retrans_out = True
            self.total_retrans += 1
            self.layer.retrans_segs += 1
            if not self.first_rexmit_at:
                self.first_rexmit_at = now
            self._retransmit_first()
        else:
            if self.backoff == 0:
                self._reduce()
            self.cwnd = self.mss
            self.in_recovery = False
            self.dupacks = 0
            self.recover = self.snd_max
            self.rexmit_next = self.snd_una
            self.rtt_seq = None
            self._retransmit_first()            # then go-back-N, skipping SACKed ranges
            n = min(self.mss, len(self.sndq))
            self.snd_nxt = self.snd_una + n + (1 if self.fin_queued and n == len(self.sndq)
                                               else 0)
        self.backoff += 1
        self._arm_rtx()

    def _arm_keepalive(self) -> None:
        if not self.keepalive or self.state not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT,
                                                    TCP_FIN_WAIT2):
            if self.t_keep is not None:
                self.t_keep.cancelled = True
                self.t_keep = None
            return
        idle = self.kernel.now() - self.last_recv
        delay = max(self.keep_idle * 1_000_000_000 - idle, 0) if not self.probes else \
            self.keep_intvl * 1_000_000_000
        self.t_keep = self._timer(self.t_keep, delay, self._on_keepalive)

    def _on_keepalive(self) -> None:
        """tcp_keepalive_timer: after KEEPIDLE of silence, a probe each KEEPINTVL; KEEPCNT
        unanswered and the connection is dead (ETIMEDOUT)."""
        self.t_keep = None
        if not self.keepalive or self.state == TCP_CLOSE:
            return
        idle = self.kernel.now() - self.last_recv
        if idle < self.keep_idle * 1_000_000_000 and not self.probes:
            self._arm_keepalive()
            return
        if self.probes >= self.keep_cnt:
            self.send_rst()
            self.fail(Errno.ETIMEDOUT)
            return
        if self.unacked() == 0:
            self.probes += 1
            self._send_segment(self.snd_una - 1, 0)
        self.t_keep = self._timer(None, self.keep_intvl * 1_000_000_000, self._on_keepalive)

    def _arm_time_wait(self) -> None:
        """2 MSL in TIME_WAIT; past TIME_WAIT_MAX lingering endpoints the connection
        closes at once, as Linux does past tcp_max_tw_buckets."""
        self._stop_rtx()
        if not self.in_tw:
            if self.layer.time_waits >= TIME_WAIT_MAX:
                self.state = TCP_CLOSE
                self.layer.forget(self)
                return
            self.in_tw = True
            self.layer.time_waits += 1

        def expire() -> None:
            self.t_wait = None
            self.state = TCP_CLOSE
            self.layer.forget(self)
        self.t_wait = self._timer(self.t_wait, TIME_WAIT_NS, expire)
        if self.t_keep is not None:
            self.t_keep.cancelled = True
            self.t_keep = None

    # -- TCP_INFO ----------------------------------------------------------------------------

    def info(self) -> dict[str, int]:
        """The values struct tcp_info reports for this connection."""
        return {
            "ca_state": 3 if self.in_recovery else (4 if self.backoff else 0),
            "retransmits": self.backoff, "probes": self.probes, "backoff": self.backoff,
            "options": (1 if self.ts_ok else 0) | (2 if self.sack_ok else 0) |
            (4 if self.rcv_wscale or self.snd_wscale else 0),
            "wscale": (self.snd_wscale & 15) | (self.rcv_wscale & 15) << 4,
            "rto": (self.rto << self.backoff) // 1000, "ato": DELACK // 1000,
            "snd_mss": self.mss, "rcv_mss": self.advmss,
            "unacked": (self.unacked() + self.mss - 1) // max(self.mss, 1),
            "sacked": len(self.sb.blocks), "retrans": self.retrans_segs,
            "pmtu": self.pmtu, "rtt": self.srtt // 1000, "rttvar": self.rttvar // 1000,
            "ssthresh": min(self.ssthresh // max(self.mss, 1), 0x7FFFFFFF),
            "cwnd": max(self.cwnd // max(self.mss, 1), 1), "advmss": self.advmss,
            "rcv_space": self.rcv_adv - self.rcv_nxt, "total_retrans": self.total_retrans,
            "bytes_retrans": self.bytes_retrans, "snd_wnd": self.snd_wnd,
            "notsent": max(self._fin_seq() - self.snd_nxt, 0),
        }


__all__ = ["Endpoint", "unwrap"]
