"""TCP sockets of netstack.  Linux: net/ipv4/tcp.c, tcp_input.c (tcp_reset, tcp_fin,
tcp_rcv_state_process), inet_connection_sock.c (accept queue), af_inet.c
(__inet_stream_connect, inet_shutdown).  gVisor: pkg/tcpip/transport/tcp.

Connections within the sandbox are short-circuited: the two ends of a
connection point at each other (`peer`) and a segment is a method call on
the other end (`_on_data`, `_on_fin`, `_on_rst`; a SYN is `_syn` against the
listener).  The state each end goes through is Linux's (SYN_SENT,
ESTABLISHED, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT, CLOSE),
with the handshake, acknowledgements and window updates completing at once,
as they do on Linux's loopback before the sending syscall returns.  What the
application can observe follows Linux:

  * listen(2)'s backlog bounds the accept queue; a SYN to a full queue is
    dropped and the connecting side stays in SYN_SENT (blocking connect
    waits, non-blocking connect reports EINPROGRESS) until accept(2) makes
    room; a SYN to a port nobody listens on is refused (ECONNREFUSED);
  * non-blocking connect(2) returns EINPROGRESS even though the handshake
    is over when it returns; the outcome is in SO_ERROR and poll(2);
  * close(2) with unread data, SO_LINGER {1, 0}, or data arriving at a
    socket closed for reading sends a reset: the peer's next call fails
    with ECONNRESET (EPIPE in CLOSE_WAIT, ECONNREFUSED in SYN_SENT) after
    the data it already has, then sees EOF, and writes get EPIPE/SIGPIPE;
  * the end that closes first goes through TIME_WAIT: a remnant holds the
    port for 60 s, so bind(2) without SO_REUSEADDR gets EADDRINUSE;
  * flow control: a sender may have its peer's receive window (SO_RCVBUF,
    or, autotuned, a window that starts at tcp_rmem[1] and doubles as the
    application reads, up to RCV_AUTO) plus its own send buffer unread at the
    peer; an autotuned send buffer (SND_AUTO) grows to that size when the
    connection is established, as Linux's does (tcp_sndbuf_expand; on lo Linux
    goes to some MiB, here to what this stack really lets a sender queue).

A connection to another host (over a NIC, when the stack has one) has an
`ep` (tcpendpoint.Endpoint) in place of `peer`: it turns these calls into
segments and calls the same hooks back from TCP input (`_on_data`, `_on_fin`,
`_on_fin_acked`, `_on_rst`, `_on_established`, `_on_error`; `wire_child` for
a SYN from the wire to a listener); the socket layer above does not change.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import collections
import struct
import time
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import (IPPROTO_TCP, SOL_TCP, TCP_CLOSE, TCP_CLOSE_WAIT,
                                    TCP_CLOSING, TCP_CONGESTION, TCP_CORK, TCP_DEFER_ACCEPT,
                                    TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_INFO,
                                    TCP_INQ, TCP_KEEPCNT, TCP_KEEPIDLE, TCP_KEEPINTVL,
                                    TCP_LAST_ACK, TCP_LINGER2, TCP_LISTEN, TCP_MAXSEG,
                                    TCP_MSS_DEFAULT, TCP_NODELAY, TCP_NOTSENT_LOWAT,
                                    TCP_QUICKACK, TCP_SYN_RECV, TCP_SYN_SENT, TCP_SYNCNT,
                                    TCP_THIN_DUPACK, TCP_THIN_LINEAR_TIMEOUTS, TCP_TIME_WAIT,
                                    TCP_USER_TIMEOUT, TCP_WINDOW_CLAMP, MAX_TCP_KEEPCNT,
                                    MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_SYNCNT,
                                    TCP_FASTOPEN, TCP_FASTOPEN_CONNECT, TCP_TIMESTAMP,
                                    SCM_TIMESTAMP, SCM_TIMESTAMPNS)
from pyvisor.abi.linux.inet import TCP_INFO_STRUCT
from pyvisor.sentry.errors import Interrupted, SyscallError, TimedOut, WouldBlock
from pyvisor.sentry.waitqueue import (EVENT_ALL, EVENT_ERR, EVENT_HUP, EVENT_IN,
                                             EVENT_OUT, EVENT_PRI, EVENT_RDHUP)
from pyvisor.sentry.socket import inet
from pyvisor.sentry.socket.common import (AF_INET6, AF_UNSPEC, MSG_DONTWAIT, MSG_MORE, MSG_NOSIGNAL,
                                          MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_WAITALL,
                                          RCV_SHUTDOWN, SEND_SHUTDOWN, SHUT_RD, SHUT_RDWR,
                                          SHUTDOWN_MASK, SIOCINQ, SIOCOUTQ, SO_OOBINLINE,
                                          SO_TIMESTAMP, SO_TIMESTAMPNS, SOCK_MIN_RCVBUF,
                                          SOCK_NONBLOCK, SOCK_STREAM, SOL_SOCKET, Control,
                                          Received, deadline_of, new_socket_file, wait)
from pyvisor.sentry.socket.netstack import SOCKET_COST, TIMEWAIT_COST
from pyvisor.sentry.socket.netstack.sock import NetSocket

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Timer
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket.netstack import Stack
    from pyvisor.sentry.socket.netstack.ports import PortTable
    from pyvisor.sentry.socket.netstack.tcpendpoint import Endpoint
    from pyvisor.sentry.vfs.file import FileDescription

# socket_state (struct socket).  From <linux/net.h>.
SS_UNCONNECTED, SS_CONNECTING, SS_CONNECTED, SS_DISCONNECTING = 1, 2, 3, 4

TCP_SNDBUF = 16384            # net.ipv4.tcp_wmem[1]
TCP_RCVBUF = 131072           # net.ipv4.tcp_rmem[1]
RCV_AUTO = 1 << 20            # largest receive window of an autotuned socket (no SO_RCVBUF)
SND_AUTO = 1 << 18            # send buffer of an autotuned socket (no SO_SNDBUF)
TIMEWAIT_NS = 60 * 10**9      # TCP_TIMEWAIT_LEN
FIN_TIMEOUT_NS = 60 * 10**9   # net.ipv4.tcp_fin_timeout: an orphan's FIN_WAIT2
FIN_TIMEOUT_MIN_NS = 700 * 10**6   # tcp_fin_time's floor: 3.5 x TCP_RTO_MIN (200 ms)
CORK_CEILING_NS = 200 * 10**6  # how long TCP_CORK or MSG_MORE may hold a partial segment
LOOPBACK_MSS = 65483          # lo's MTU minus IP and TCP headers and the timestamp option
SIOCATMARK = 0x8905
SIOCOUTQNSD = 0x894B
# tp->urg_data: the urgent byte (URG_VALID | byte), or that it was read.  From net/tcp.h.
URG_VALID = 0x0100
URG_NOTYET = 0x0200
URG_READ = 0x0400
_I32 = struct.Struct("<i")


def _defer_accept_secs(seconds: int) -> int:
    """TCP_DEFER_ACCEPT as Linux keeps it: a count of SYN-ACK retransmissions
    (secs_to_retrans, 1 s doubling up to 120 s), read back as the seconds those
    retransmissions span (retrans_to_secs), so 5 reads back as 7."""
    if seconds <= 0:
        return 0
    timeout = period = 1
    retrans = 1
    while seconds > period and retrans < 255:
        retrans += 1
        timeout = min(timeout * 2, 120)
        period += timeout
    return period


def _is_loopback(ip: bytes) -> bool:
    """127.0.0.0/8 or ::1 (ipv4_is_loopback, ipv6_addr_loopback)."""
    return ip[0] == 127 if len(ip) == 4 else ip == b"\0" * 15 + b"\1"


class TimeWait:
    """What is left of a connection in TIME_WAIT: it only holds the port.
    Linux: struct inet_timewait_sock."""

    tcp_state = TCP_TIME_WAIT

    def __init__(self, s: TCPSocket) -> None:
        self.laddr, self.lport, self.raddr, self.rport = s.laddr, s.lport, s.raddr, s.rport
        self.v6only = s.v6only
        self.reuse, self.reuseport = s.reuse, s.reuseport
        self.owner_uid = s.owner_uid
        self.family = s.family
        self.timer: Timer | None = None
        self.born = s.stack.kernel.now()

    def kill(self, ports: PortTable) -> None:
        """inet_twsk_deschedule_put: the remnant goes before its time."""
        if self.timer is not None:
            self.timer.cancelled = True
            self.timer = None
        ports.remove(self)


class TCPSocket(NetSocket):
    """A TCP socket (either end of a connection, or a listener).  Linux: struct tcp_sock."""

    def __init__(self, stack: Stack, family: int, uid: int) -> None:
        super().__init__(stack, family, SOCK_STREAM, IPPROTO_TCP, uid)
        self.sndbuf = TCP_SNDBUF
        self.rcvbuf = TCP_RCVBUF
        self.state = TCP_CLOSE
        self.ss = SS_UNCONNECTED
        self.peer: TCPSocket | None = None
        self.ep: Endpoint | None = None   # the connection to another host (tcpseg)
        self.rcvq: collections.deque[bytes] = collections.deque()
        self.rcv_stamps: collections.deque[int] = collections.deque()  # arrival, per rcvq entry
        self.read_stamp = 0               # arrival of the last data read (tcp_recv_timestamp)
        self.rcv_off = 0                  # bytes of rcvq[0] already read
        self.rcv_len = 0                  # unread bytes in rcvq
        self.rcv_wnd = TCP_RCVBUF         # autotuned receive window (grows as we read)
        self.rcv_copied = 0               # bytes read since rcv_wnd last grew
        self.done = False                 # SOCK_DONE: the peer's FIN arrived
        # Urgent data (MSG_OOB), counted in stream bytes: rcv_nxt bytes ever queued,
        # copied_seq bytes ever consumed (read, or skipped urgent bytes), urg_seq the index
        # of the urgent byte while urg_data is set.  Linux: tp->rcv_nxt, copied_seq, urg_*.
        self.rcv_nxt = 0
        self.copied_seq = 0
        self.urg_data = 0
        self.urg_seq = 0
        self.lingering = False            # close(2) waits for our data to be taken (SO_LINGER)
        self.backlog = 0                  # sk_max_ack_backlog
        self.acceptq: collections.deque[TCPSocket] = collections.deque()
        self.synq: collections.deque[TCPSocket] = collections.deque()   # dropped SYNs
        self.deferred: dict[TCPSocket, None] = {}   # TCP_DEFER_ACCEPT: waiting for data
        self.defer_parent: TCPSocket | None = None  # the listener deferring us
        self.syn_target: TCPSocket | None = None   # the listener whose synq holds us
        self.released = False             # the file is gone (an orphan, as Linux says)
        self.timer: Timer | None = None   # an orphan's FIN_WAIT2 timeout
        self.tcp: dict[int, int] = {TCP_NODELAY: 0, TCP_CORK: 0, TCP_KEEPIDLE: 7200,
                                    TCP_KEEPINTVL: 75, TCP_KEEPCNT: 9, TCP_SYNCNT: 6,
                                    TCP_LINGER2: 0, TCP_DEFER_ACCEPT: 0, TCP_WINDOW_CLAMP: 0,
                                    TCP_QUICKACK: 1, TCP_USER_TIMEOUT: 0,
                                    TCP_NOTSENT_LOWAT: -1, TCP_MAXSEG: 0, TCP_INQ: 0,
                                    TCP_THIN_LINEAR_TIMEOUTS: 0, TCP_THIN_DUPACK: 0,
                                    TCP_FASTOPEN: 0, TCP_FASTOPEN_CONNECT: 0}
        self.congestion = b"cubic"
        # Data held back by TCP_CORK or MSG_MORE: in our send queue, not yet at the peer
        # (loopback only; an endpoint has its own queue).  Linux: the unsent tail of
        # sk_write_queue that tcp_nagle_test holds while it is less than a segment.
        self.corkq = bytearray()
        self.cork_timer: Timer | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.segs_out = 0
        self.segs_in = 0

    @property
    def tcp_state(self) -> int:
        return self.state

    def connected_for_mtu(self) -> bool:
        return self.state not in (TCP_CLOSE, TCP_LISTEN, TCP_SYN_SENT)

    # -- helpers -----------------------------------------------------------------------------

    def _notify(self, events: int = EVENT_ALL) -> None:
        self.wq.notify(events)

    def window(self) -> int:
        """How much may sit unread in our receive queue."""
        return self.rcvbuf if self.userlocks_rcv else self.rcv_wnd

    def _rcv_space_adjust(self, copied: int) -> None:
        """tcp_rcv_space_adjust, simplified: an autotuned receive window doubles each
        time the application has read a whole window's worth, up to RCV_AUTO, so a
        reader that keeps up gets a large window and one that does not read holds
        about tcp_rmem[1], as on Linux."""
        if self.userlocks_rcv or self.rcv_wnd >= RCV_AUTO:
            return
        self.rcv_copied += copied
        if self.rcv_copied >= self.rcv_wnd:
            self.rcv_copied = 0
            self.rcv_wnd = min(self.rcv_wnd * 2, RCV_AUTO)

    def _init_transfer(self) -> None:
        """tcp_init_transfer: the connection is established; an autotuned send buffer
        grows (tcp_sndbuf_expand) to what the send path allows it (SND_AUTO)."""
        if not self.userlocks_snd:
            self.sndbuf = max(self.sndbuf, SND_AUTO)

    def _send_room(self, peer: TCPSocket) -> int:
        cap = peer.window() + (self.sndbuf if self.userlocks_snd else SND_AUTO)
        return min(cap - peer.rcv_len - len(self.corkq), self.stack.budget_left())

    def _set_error(self, err: int) -> None:
        self.err = err
        self._notify()

    def _done(self) -> None:
        """tcp_done: the connection is over for this end."""
        self.state = TCP_CLOSE
        self.shut = SHUTDOWN_MASK
        peer, self.peer = self.peer, None
        if peer is not None and peer.peer is self:
            pass                      # the peer keeps its pointer until its own end
        ep, self.ep = self.ep, None
        if ep is not None:
            ep.socket_done()          # it may linger in TIME_WAIT without us
        self._drop_corked()
        if self.timer is not None:
            self.timer.cancelled = True
            self.timer = None
        if self.released or not self.user_bound:
            self.unbind()
        self._notify()

    def _enter_time_wait(self) -> None:
        """tcp_time_wait: a remnant keeps the port; this socket is closed.  With no room
        for a remnant (Linux: tcp_max_tw_buckets, "time wait bucket table overflow";
        here the Sentry memory account) the socket just closes."""
        tw = TimeWait(self)
        if not self.stack.charge(tw, TIMEWAIT_COST):
            self.stack.tw_overflows += 1
            self._done()
            return
        ports = self.ports
        ports.add(tw)

        def expire() -> None:
            ports.remove(tw)
        tw.timer = self.stack.kernel.add_timer(self.stack.kernel.now() + TIMEWAIT_NS, expire)
        self.stack.time_waits += 1
        self._done()

    # -- segments from the peer (what tcp input would do) ------------------------------------

    def _on_data(self, data: bytes, urgent: bool = False) -> None:
        if urgent and data:
            self.check_urg(self.rcv_nxt + len(data) - 1)
        start = self.rcv_nxt
        self.rcvq.append(data)
        self.rcv_stamps.append(time.time_ns())
        self.rcv_len += len(data)
        self.rcv_nxt += len(data)
        if self.urg_data == URG_NOTYET and start <= self.urg_seq < self.rcv_nxt:
            self.urg_data = URG_VALID | data[self.urg_seq - start]   # tcp_urg
            self._notify(EVENT_PRI)
        self.stack.buffered += len(data)
        self.bytes_received += len(data)
        self.segs_in += 1
        self._notify(EVENT_IN)
        if self.defer_parent is not None:
            self.defer_parent._undefer(self)

    def _oobinline(self) -> bool:
        return bool(self.opts.get(SO_OOBINLINE, 0))

    def check_urg(self, ptr: int) -> None:
        """tcp_check_urg: a new urgent pointer, as the stream index of the urgent byte
        (before that byte is queued; _on_data then makes it valid)."""
        if self.copied_seq > ptr or ptr < self.rcv_nxt or \
                (self.urg_data and ptr <= self.urg_seq):
            return
        if self.urg_data and self.urg_seq == self.copied_seq and not self._oobinline() \
                and self.copied_seq != self.rcv_nxt:
            # The old urgent byte sits at the read position: step over it, so it is not
            # read again as data once the mark moves (Linux's "double Dutch" case).
            self._consume(1)
        self.urg_data = URG_NOTYET
        self.urg_seq = ptr
        self._sigurg()

    def _sigurg(self) -> None:
        """sk_send_sigurg: SIGURG to the file's owner (F_SETOWN), where the kernel has
        owners."""
        hook = getattr(self, "send_sigurg", None)
        if hook is not None:
            hook()

    def _consume(self, k: int) -> None:
        """Drops `k` bytes from the head of the receive queue (they were read or skipped)."""
        q = self.rcvq
        off = self.rcv_off
        left = k
        while left:
            buf = q[0]
            take = min(left, len(buf) - off)
            left -= take
            self.read_stamp = self.rcv_stamps[0]
            if off + take == len(buf):
                q.popleft()
                self.rcv_stamps.popleft()
                off = 0
            else:
                off += take
        self.rcv_off = off
        self.rcv_len -= k
        self.copied_seq += k
        self.stack.unbuffer(k)
        self._rcv_space_adjust(k)

    def _on_fin(self) -> None:
        """tcp_fin."""
        self.done = True
        self.shut |= RCV_SHUTDOWN
        self.segs_in += 1
        if self.state in (TCP_ESTABLISHED, TCP_SYN_RECV):
            self.state = TCP_CLOSE_WAIT
        elif self.state == TCP_FIN_WAIT1:
            self.state = TCP_CLOSING
        elif self.state == TCP_FIN_WAIT2:
            self._enter_time_wait()
            return
        self._notify(EVENT_IN | EVENT_RDHUP | EVENT_HUP)
        if self.defer_parent is not None:
            self.defer_parent._undefer(self)

    def _on_fin_acked(self) -> None:
        if self.lingering:
            self._notify(EVENT_OUT)
        if self.state == TCP_FIN_WAIT1:
            self.state = TCP_FIN_WAIT2
            if self.released:
                self._arm_fin_timeout()
        elif self.state == TCP_CLOSING:
            self._enter_time_wait()
        elif self.state == TCP_LAST_ACK:
            self._done()

    def _on_rst(self) -> None:
        """tcp_reset: the peer aborted the connection."""
        if self.state == TCP_CLOSE:
            return
        if self.state == TCP_SYN_SENT:
            err = Errno.ECONNREFUSED
        elif self.state == TCP_CLOSE_WAIT:
            err = Errno.EPIPE
        else:
            err = Errno.ECONNRESET
        self.err = err
        self.stack.resets += 1
        self._done()
        if self.defer_parent is not None:           # a deferred child is just dropped
            self.defer_parent.deferred.pop(self, None)
            self.defer_parent = None
            self.parent_gone()

    def _on_established(self) -> None:
        """The handshake finished (a SYN-ACK for our SYN, or the ACK of a child's)."""
        self.state = TCP_ESTABLISHED
        self._init_transfer()
        self._notify(EVENT_OUT)

    def _on_error(self, err: int) -> None:
        """tcp_write_err: the connection died (ETIMEDOUT, an ICMP hard error)."""
        if self.state == TCP_CLOSE:
            return
        self.err = err
        self._done()

    def _fin_time_ns(self) -> int:
        """tcp_fin_time: how long an orphan stays in FIN_WAIT2: TCP_LINGER2 when set,
        else net.ipv4.tcp_fin_timeout, and never under 3.5 RTOs (700 ms on loopback)."""
        secs = self.tcp[TCP_LINGER2]
        ns = secs * 10**9 if secs > 0 else FIN_TIMEOUT_NS
        return max(ns, FIN_TIMEOUT_MIN_NS)

    def _arm_fin_timeout(self) -> None:
        """An orphan reached FIN_WAIT2: it holds its port until the peer's FIN or the FIN
        timeout (tcp_close's and tcp_rcv_state_process's orphan case; Linux moves it to a
        FIN_WAIT2 timewait remnant, which holds the port the same way).  TCP_LINGER2 < 0:
        no FIN_WAIT2 at all: the connection is just gone (tcp_done, no reset: on
        loopback the ACK of our FIN is taken before tcp_close looks at the state)."""
        if self.tcp[TCP_LINGER2] < 0:
            self._done()
            return

        def expire() -> None:
            self.timer = None
            if self.state == TCP_FIN_WAIT2:
                self._done()
        self.timer = self.stack.kernel.add_timer(self.stack.kernel.now() + self._fin_time_ns(),
                                                 expire)

    # -- what we send --------------------------------------------------------------------------

    def _send_fin(self) -> None:
        """tcp_close_state + tcp_send_fin; the peer acknowledges at once."""
        if self.state in (TCP_ESTABLISHED, TCP_SYN_RECV):
            self.state = TCP_FIN_WAIT1
        elif self.state == TCP_CLOSE_WAIT:
            self.state = TCP_LAST_ACK
        else:
            return
        if self.ep is not None:
            self.ep.send_fin()
            return
        self._push_corked()               # the FIN goes after what was held
        self.segs_out += 1
        peer = self.peer
        if peer is not None and peer.state != TCP_CLOSE:
            peer._on_fin()
            self._on_fin_acked()
        else:
            self._done()          # nobody to acknowledge: the connection is gone

    def _abort(self) -> None:
        """Sends a reset and closes (tcp_send_active_reset + tcp_done)."""
        peer = self.peer
        ep, self.ep = self.ep, None
        if ep is not None:
            ep.abort()
        else:
            self.segs_out += 1
        self._done()
        if peer is not None:
            peer._on_rst()

    # -- FileImpl ----------------------------------------------------------------------------

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        return self._try_recv(n, 0).data

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        return self._try_send(t, data, MSG_NOSIGNAL)     # do_write raises SIGPIPE itself

    def readiness(self, fd: FileDescription, mask: int) -> int:
        """tcp_poll."""
        st = self.state
        if st == TCP_LISTEN:
            return (EVENT_IN if self.acceptq else 0) & mask
        ev = 0
        if self.shut == SHUTDOWN_MASK or st == TCP_CLOSE:
            ev |= EVENT_HUP
        if self.shut & RCV_SHUTDOWN:
            ev |= EVENT_IN | EVENT_RDHUP
        if st not in (TCP_SYN_SENT, TCP_SYN_RECV):
            target = self.rcvlowat
            if self.urg_data:
                if self.urg_seq == self.copied_seq and not self._oobinline():
                    target += 1                 # the urgent byte alone is not readable
                if self.urg_data & URG_VALID:
                    ev |= EVENT_PRI
            if self.rcv_len and self.rcv_len >= target:     # tcp_stream_is_readable
                ev |= EVENT_IN
            if not self.shut & SEND_SHUTDOWN:
                if self._writable():
                    ev |= EVENT_OUT
            else:
                ev |= EVENT_OUT
        if self.err:
            ev |= EVENT_ERR
        return ev & (mask | EVENT_HUP | EVENT_ERR)

    def _writable(self) -> bool:
        if self.ep is not None:
            return self.state not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT) or self.ep.writable()
        peer = self.peer
        if peer is None or self.state not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
            return True
        cap = peer.window() + (self.sndbuf if self.userlocks_snd else SND_AUTO)
        return self._send_room(peer) * 3 >= cap      # a third free, as sk_stream_wspace

    def proto_ioctl(self, t: Task, cmd: int, arg: int) -> int:
        if cmd == SIOCINQ:
            if self.state == TCP_LISTEN:
                raise SyscallError(Errno.EINVAL)
            t.copy_out(arg, _I32.pack(min(self._inq(), 0x7FFFFFFF)))
            return 0
        if cmd in (SIOCOUTQ, SIOCOUTQNSD):
            if self.state == TCP_LISTEN:
                raise SyscallError(Errno.EINVAL)
            n = len(self.corkq)       # loopback: only what TCP_CORK/MSG_MORE holds is unsent
            if self.ep is not None:
                n = len(self.ep.sndq) if cmd == SIOCOUTQ else self.ep.info()["notsent"]
            t.copy_out(arg, _I32.pack(n))
            return 0
        if cmd == SIOCATMARK:
            t.copy_out(arg, _I32.pack(int(bool(self.urg_data)
                                          and self.urg_seq == self.copied_seq)))
            return 0
        raise SyscallError(Errno.ENOTTY)

    def _inq(self) -> int:
        """tcp_inq: unread bytes, up to the urgent mark when one is ahead."""
        if self.state in (TCP_SYN_SENT, TCP_SYN_RECV):
            return 0
        if self._oobinline() or not self.urg_data or self.urg_seq < self.copied_seq \
                or self.urg_seq >= self.rcv_nxt:
            return self.rcv_len
        return self.urg_seq - self.copied_seq

    def _unacked(self) -> bool:
        """Whether data we sent is not yet acknowledged, or our FIN (sk_stream_closing).
        On the loopback short-circuit the peer takes (acknowledges) what fits its receive
        window; the rest is, as Linux would have it, still in our send queue."""
        if self.ep is not None:
            return self.state in (TCP_FIN_WAIT1, TCP_CLOSING, TCP_LAST_ACK)
        peer = self.peer
        return peer is not None and peer.peer is self and peer.state != TCP_CLOSE \
            and peer.rcv_len > peer.window()

    async def close_wait(self, t: Task) -> None:
        """close(2) of the last reference with SO_LINGER {1, N > 0}: waits until what we
        sent is acknowledged or N seconds pass (tcp_close's sk_stream_wait_close).  close
        returns 0 either way, and the connection goes on closing in the background."""
        if not self.lingering:
            return
        deadline = t.kernel.now() + self.linger[1] * 10**9
        try:
            while self._unacked():
                await t.kernel.block_on(t, self.wq, EVENT_OUT | EVENT_HUP | EVENT_ERR,
                                        deadline=deadline)
        except (TimedOut, Interrupted):
            pass
        finally:
            self.lingering = False

    def release(self, fd: FileDescription) -> None:
        """tcp_close: the last reference to the file is gone."""
        self.released = True
        st = self.state
        self.shut = SHUTDOWN_MASK
        if st == TCP_LISTEN:
            self._stop_listening()
        elif st == TCP_SYN_SENT:
            self._cancel_syn()
            self._done()
        elif st != TCP_CLOSE:
            if self.rcv_len or (self.linger[0] and self.linger[1] == 0):
                self.stack.aborts_on_close += 1
                self._abort()
            else:
                self._send_fin()
                if self.state == TCP_FIN_WAIT2 and self.timer is None:
                    self._arm_fin_timeout()
                self.lingering = bool(self.linger[0]) and self.linger[1] > 0 \
                    and self._unacked()
        if self.state == TCP_CLOSE:
            self.unbind()
        self._drop_rcvq()

    def _drop_rcvq(self) -> None:
        """Frees what was never read (its bytes leave the stack's budget)."""
        self.stack.unbuffer(self.rcv_len)
        self.copied_seq += self.rcv_len      # dropped bytes count as consumed
        self.rcvq.clear()
        self.rcv_stamps.clear()
        self.rcv_len = self.rcv_off = 0

    # -- connections -------------------------------------------------------------------------

    def listen(self, t: Task, backlog: int) -> None:
        """inet_listen."""
        if self.ss != SS_UNCONNECTED or self.state not in (TCP_CLOSE, TCP_LISTEN):
            raise SyscallError(Errno.EINVAL)
        somaxconn = self.stack.sysctl.somaxconn
        if backlog < 0 or backlog > somaxconn:
            backlog = somaxconn
        if self.state != TCP_LISTEN:
            if not self.bound:
                self.autobind()
            else:
                # inet_csk_listen_start re-checks the port: another socket that shares it
                # through SO_REUSEADDR may not listen beside us.
                for b in self.ports.on(self.lport):
                    if self.ports.conflict(self, b):
                        raise SyscallError(Errno.EADDRINUSE)
            self.state = TCP_LISTEN
            self.ports.listen(self)
        self.backlog = backlog
        self._admit()

    def _stop_listening(self) -> None:
        """inet_csk_listen_stop: connections not yet accepted are reset, dropped SYNs refused."""
        self.state = TCP_CLOSE
        self.ports.unlisten(self)
        pending, self.acceptq = self.acceptq, collections.deque()
        deferred, self.deferred = list(self.deferred), {}
        for child in [*pending, *deferred]:
            child.defer_parent = None
            child.parent_gone()
        layer = self.stack.tcpseg
        if layer is not None:
            layer.listener_closed(self)
        syns, self.synq = self.synq, collections.deque()
        for c in syns:
            c.syn_target = None
            if c.state == TCP_SYN_SENT:
                c._on_rst()
        self._notify()

    def parent_gone(self) -> None:
        """An accepted-queue child whose listener closed: it is reset and freed."""
        self.released = True
        if self.state != TCP_CLOSE:
            self._abort()
        self._drop_rcvq()
        self.unbind()

    def _admit(self) -> None:
        """Room in the accept queue: the next dropped SYN gets through (its retransmission)."""
        while self.synq and len(self.acceptq) <= self.backlog and self.state == TCP_LISTEN:
            c = self.synq[0]
            if c.state == TCP_SYN_SENT and not self._accept_syn(c):
                return                  # no memory for a child: it waits, as a full queue
            self.synq.popleft()
            c.syn_target = None

    def _cancel_syn(self) -> None:
        lst = self.syn_target
        if lst is not None:
            try:
                lst.synq.remove(self)
            except ValueError:
                pass
            self.syn_target = None

    def _accept_syn(self, client: TCPSocket) -> bool:
        """The three-way handshake with `client`, done: a child in our accept queue.
        False (the SYN is dropped, as for a full queue) when the child cannot be
        charged to the Sentry memory account."""
        child = TCPSocket(self.stack, self.family, self.owner_uid)
        if not self.stack.charge(child, SOCKET_COST):
            return False
        child.inherit(self)
        child.laddr, child.lport = client.raddr, self.lport
        child.raddr, child.rport = client.laddr, client.lport
        child.bound = True
        child.user_bound = self.user_bound
        self.ports.add(child)
        child.state = TCP_ESTABLISHED
        child.ss = SS_CONNECTED
        child.peer, client.peer = client, child
        client.state = TCP_ESTABLISHED
        child._init_transfer()
        client._init_transfer()
        child.segs_in = client.segs_out = 2
        child.segs_out = client.segs_in = 1
        self.stack.passive_opens += 1
        if self.tcp[TCP_DEFER_ACCEPT]:
            self._defer(child, self.tcp[TCP_DEFER_ACCEPT])
        else:
            self.acceptq.append(child)
            self._notify(EVENT_IN)
        client._notify(EVENT_OUT)
        return True

    def _defer(self, child: TCPSocket, seconds: int) -> None:
        """TCP_DEFER_ACCEPT: the client is connected, but the child joins the accept
        queue only when the client's first data or FIN arrives, or after `seconds`
        (Linux keeps it a request socket, dropping the client's pure ACKs, until its
        SYN-ACK retransmissions run out; the next ACK then completes it)."""
        child.defer_parent = self
        self.deferred[child] = None
        kernel = self.stack.kernel
        child.timer = kernel.add_timer(kernel.now() + seconds * 10**9,
                                       lambda: self._undefer(child))

    def _undefer(self, child: TCPSocket) -> None:
        """A deferred child is ready: into the accept queue.  (Even past the backlog:
        Linux would drop the client's segment while the queue is full and take its
        retransmission later.)"""
        if self.deferred.pop(child, 0) is not None:
            return
        child.defer_parent = None
        if child.timer is not None:
            child.timer.cancelled = True
            child.timer = None
        self.acceptq.append(child)
        self._notify(EVENT_IN)

    def wire_child(self, ep: Endpoint) -> TCPSocket | None:
        """A handshake from another host completed on this listener: the child socket,
        in the accept queue, or None when the queue is full (the ACK is then dropped
        and the peer retries, as tcp_check_req does)."""
        if self.state != TCP_LISTEN or len(self.acceptq) > self.backlog:
            return None
        child = TCPSocket(self.stack, self.family, self.owner_uid)
        child.inherit(self)
        child.laddr, child.lport = ep.laddr, self.lport
        child.raddr, child.rport = ep.raddr, ep.rport
        child.bound = True
        child.user_bound = self.user_bound
        self.ports.add(child)
        child.state = TCP_ESTABLISHED
        child.ss = SS_CONNECTED
        child.ep = ep
        child._init_transfer()
        self.acceptq.append(child)
        self.stack.passive_opens += 1
        self._notify(EVENT_IN)
        return child

    def inherit(self, parent: TCPSocket) -> None:
        """What a child copies from its listener (sk_clone_lock)."""
        self.sndbuf, self.rcvbuf = parent.sndbuf, parent.rcvbuf
        self.userlocks_snd, self.userlocks_rcv = parent.userlocks_snd, parent.userlocks_rcv
        self.opts = dict(parent.opts)
        self.ip, self.ip6, self.tcp = dict(parent.ip), dict(parent.ip6), dict(parent.tcp)
        self.v6only = parent.v6only
        self.linger = parent.linger
        self.rcvtimeo, self.sndtimeo, self.rcvlowat = parent.rcvtimeo, parent.sndtimeo, \
            parent.rcvlowat
        self.congestion = parent.congestion

    async def accept(self, t: Task, f: FileDescription, flags: int
                     ) -> tuple[FileDescription, bytes]:
        """inet_csk_accept."""
        if self.state != TCP_LISTEN:
            raise SyscallError(Errno.EINVAL)
        deadline = deadline_of(t, self.rcvtimeo)
        while not self.acceptq:
            if f.nonblocking or self.rcvtimeo == 0:
                raise WouldBlock()
            await wait(t, self.wq, EVENT_IN | EVENT_HUP | EVENT_ERR, deadline,
                       self.rcvtimeo is not None)
            if self.state != TCP_LISTEN:
                raise SyscallError(Errno.EINVAL)
        child = self.acceptq.popleft()
        self._admit()
        nf = new_socket_file(child, flags & SOCK_NONBLOCK, t.creds.fsuid, t.creds.fsgid)
        return nf, child._remote_name()

    async def connect(self, t: Task, f: FileDescription, addr: bytes) -> None:
        """__inet_stream_connect."""
        if len(addr) < 2:
            raise SyscallError(Errno.EINVAL)
        if inet.raw_family(addr) == AF_UNSPEC:
            self._disconnect()
            self.ss = SS_UNCONNECTED
            return
        if self.ss == SS_CONNECTED:
            raise SyscallError(Errno.EISCONN)
        if self.ss == SS_CONNECTING:
            if self.state in (TCP_SYN_SENT, TCP_SYN_RECV):
                if f.nonblocking:
                    raise SyscallError(Errno.EALREADY)
                await self._wait_connected(t)
            return self._connect_result()
        if self.state != TCP_CLOSE:
            raise SyscallError(Errno.EISCONN)
        ip, port = self._decode_remote(addr)
        if self.family == AF_INET6 and self.bound and not inet.is_any(self.laddr):
            # tcp_v6_connect: a socket bound to an IPv6 address reaches no IPv4 one (its
            # IPv4 source is a placeholder no route takes), and one bound to a
            # v4-mapped address no IPv6 one.
            if len(ip) == 4 and len(self.laddr) == 16:
                raise SyscallError(Errno.ENETUNREACH)
            if len(ip) == 16 and len(self.laddr) == 4:
                raise SyscallError(Errno.EAFNOSUPPORT)
        self.stack.check_route(ip)
        if len(ip) == 4 and self.family == AF_INET6 and self.v6only:
            raise SyscallError(Errno.ENETUNREACH)
        src = self.source_for(ip)
        was_bound = self.bound
        self.autobind(connecting=True)
        wildcard = inet.is_any(self.laddr)
        if wildcard:
            self.laddr = src
        if was_bound and not self._tuple_free(ip, port):
            # __inet_hash_connect's check_established on a bound port: the four-tuple
            # is another connection's.  The socket stays bound, unconnected.
            if wildcard:
                self.laddr = inet.any_addr(self.family)
            raise SyscallError(Errno.EADDRNOTAVAIL)
        self.raddr, self.rport = ip, port
        self.state = TCP_SYN_SENT
        self.ss = SS_CONNECTING
        self.stack.active_opens += 1
        layer = self.stack.tcpseg
        if layer is not None and not self.stack.is_local(ip):
            self.ep = layer.connect(self)           # the SYN goes out on the wire
        else:
            self.segs_out += 1
            self._syn()
        if self.state == TCP_SYN_SENT:
            if f.nonblocking:
                raise SyscallError(Errno.EINPROGRESS)
            await self._wait_connected(t)
        elif f.nonblocking:
            # Linux: the handshake finishes after the call (in the socket's backlog).
            raise SyscallError(Errno.EINPROGRESS)
        self._connect_result()

    async def _wait_connected(self, t: Task) -> None:
        """inet_wait_for_connect: SO_SNDTIMEO gives EINPROGRESS, a signal EINTR/restart."""
        deadline = deadline_of(t, self.sndtimeo)
        while self.state in (TCP_SYN_SENT, TCP_SYN_RECV):
            try:
                await wait(t, self.wq, EVENT_OUT | EVENT_ERR | EVENT_HUP, deadline,
                           self.sndtimeo is not None)
            except WouldBlock:
                raise SyscallError(Errno.EINPROGRESS) from None

    def _connect_result(self) -> None:
        if self.state == TCP_CLOSE:
            err, self.err = self.err, 0
            self.ss = SS_UNCONNECTED
            raise SyscallError(err or Errno.ECONNABORTED)
        self.ss = SS_CONNECTED

    def _connection(self, laddr: bytes, lport: int, raddr: bytes, rport: int
                    ) -> TCPSocket | TimeWait | None:
        """The connection (or TIME_WAIT remnant) with this four-tuple, if any (Linux: the
        established hash; here a walk of the port's bindings, so callers use it only for
        explicitly bound ports)."""
        for b in self.ports.on(lport):
            if isinstance(b, (TCPSocket, TimeWait)) and b.lport == lport and \
                    b.laddr == laddr and b.rport == rport and b.raddr == raddr and \
                    b.tcp_state not in (TCP_CLOSE, TCP_LISTEN):
                return b
        return None

    def _tuple_free(self, raddr: bytes, rport: int) -> bool:
        """check_established: whether we may connect from our bound address to (raddr,
        rport).  A TIME_WAIT remnant of the same four-tuple gives way to a loopback
        connection once a second has ticked since it was made (net.ipv4.tcp_tw_reuse = 2
        and tcp_twsk_unique's timestamp rule); a live connection never does."""
        other = self._connection(self.laddr, self.lport, raddr, rport)
        if other is None or other is self:
            return True
        if isinstance(other, TimeWait) and _is_loopback(raddr) and \
                self.stack.kernel.now() // 10**9 > other.born // 10**9:
            other.kill(self.ports)
            return True
        return False

    def _syn(self) -> None:
        """Our SYN reaches the stack: a listener takes it, drops it (full), or we are reset.
        From an explicitly bound port, the established hash comes first, as in Linux:
        our own four-tuple is a self-connect (a simultaneous open with ourselves), a
        stale connection of the same four-tuple is reset (its challenge ACK draws our
        reset) and a TIME_WAIT remnant gives way to the new SYN."""
        if self.rport == self.lport and self.raddr == self.laddr:
            self.peer = self
            self.segs_in += 1
            self._on_established()
            return
        if self.user_bound:
            old = self._connection(self.raddr, self.rport, self.laddr, self.lport)
            if isinstance(old, TimeWait):
                old.kill(self.ports)
            elif old is not None and old.state != TCP_SYN_SENT:
                old._on_rst()
        lst = self.stack.tcp_listener(self.raddr, self.rport, self.laddr, self.lport)
        if lst is None:
            self.stack.refused += 1
            self._on_rst()
            return
        if len(lst.acceptq) > lst.backlog or not lst._accept_syn(self):
            lst.synq.append(self)
            self.syn_target = lst
            self.stack.syn_drops += 1

    def _disconnect(self) -> None:
        """tcp_disconnect (connect with AF_UNSPEC)."""
        st = self.state
        if st == TCP_LISTEN:
            self._stop_listening()
        elif st == TCP_SYN_SENT:
            self._cancel_syn()
            self._done()
        elif st != TCP_CLOSE:
            self._abort()
        self.state = TCP_CLOSE
        self.shut = 0
        self.done = False
        self.err = 0
        self._drop_rcvq()
        self.urg_data = 0
        self.raddr, self.rport = inet.any_addr(self.family), 0
        if not self.user_bound:
            self.unbind()
            self.laddr = inet.any_addr(self.family)

    def getpeername(self, t: Task) -> bytes:
        if not self.rport or self.state in (TCP_CLOSE, TCP_SYN_SENT):
            raise SyscallError(Errno.ENOTCONN)
        return self._remote_name()

    def shutdown(self, t: Task, how: int) -> None:
        """inet_shutdown + tcp_shutdown."""
        if how < SHUT_RD or how > SHUT_RDWR:
            raise SyscallError(Errno.EINVAL)
        how += 1
        if self.ss == SS_CONNECTING:
            self.ss = SS_DISCONNECTING if self.state in (TCP_SYN_SENT, TCP_SYN_RECV, TCP_CLOSE) \
                else SS_CONNECTED
        st = self.state
        err = 0
        if st == TCP_CLOSE:
            err = Errno.ENOTCONN
            self.shut |= how
        elif st == TCP_LISTEN:
            if how & RCV_SHUTDOWN:
                self._stop_listening()
                self.ss = SS_UNCONNECTED
        elif st == TCP_SYN_SENT:
            # tcp_disconnect of a connecting socket: it is closed, with ECONNRESET
            # pending (poll: POLLHUP | POLLERR).
            self._cancel_syn()
            self._done()
            self.err = Errno.ECONNRESET
            self.shut = 0
            if not self.user_bound:
                self.laddr = inet.any_addr(self.family)
            self.ss = SS_UNCONNECTED
        else:
            self.shut |= how
            if how & SEND_SHUTDOWN:
                self._send_fin()
        self._notify()
        if err:
            raise SyscallError(err)

    # -- sending -----------------------------------------------------------------------------

    def _sigpipe(self, t: Task, flags: int) -> None:
        if not flags & MSG_NOSIGNAL:
            from pyvisor.abi.linux.signal import Signal
            from pyvisor.sentry.kernel import signal as ksignal
            ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGPIPE, 0, pid=t.tg.tgid))

    def _stream_error(self, t: Task, flags: int) -> SyscallError:
        """sk_stream_error(-EPIPE): a pending error, else EPIPE with SIGPIPE."""
        err, self.err = self.err or Errno.EPIPE, 0
        if err == Errno.EPIPE:
            self._sigpipe(t, flags)
        return SyscallError(err)

    def _try_send(self, t: Task, data: bytes, flags: int) -> int:
        """One non-blocking attempt (tcp_sendmsg_locked without the sleeping).  With
        MSG_OOB the last byte sent is urgent (tcp_mark_urg: SND.UP after it, and the
        receiver's tcp_stdurg=0 reading takes the byte before the pointer)."""
        st = self.state
        if st in (TCP_SYN_SENT, TCP_SYN_RECV) and not self.err:
            raise WouldBlock()               # sk_stream_wait_connect
        if st not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT) or self.err \
                or self.shut & SEND_SHUTDOWN:
            raise self._stream_error(t, flags)
        ep = self.ep
        if ep is not None:
            if not data:
                return 0
            room = ep.send_room()
            if room <= 0:
                raise WouldBlock()
            n = min(room, len(data))
            self.bytes_sent += n
            ep.send(data[:n] if n < len(data) else data, urgent=bool(flags & MSG_OOB))
            return n
        peer = self.peer
        if peer is None:
            raise self._stream_error(t, flags)
        if not data:
            return 0
        if (peer.state in (TCP_FIN_WAIT1, TCP_FIN_WAIT2) and peer.shut & RCV_SHUTDOWN) \
                or peer.state == TCP_CLOSE:
            # Data for an end that is closed for reading: it answers with a reset
            # (tcp_rcv_state_process, "abort on data"); this call still succeeds.
            self.bytes_sent += len(data)
            if peer.state != TCP_CLOSE:
                self.stack.aborts_on_data += 1
                peer._on_rst()
            self._on_rst()
            return len(data)
        room = self._send_room(peer)
        if room <= 0:
            if self.stack.budget_left() <= 0 and self.wq not in self.stack.starved:
                self.stack.starved.append(self.wq)
            raise WouldBlock()
        n = min(room, len(data))
        chunk = data[:n] if n < len(data) else data
        self.bytes_sent += n
        urgent = bool(flags & MSG_OOB)
        if (self.tcp[TCP_CORK] or flags & MSG_MORE) and not urgent:
            # tcp_nagle_test with TCP_NAGLE_CORK: whole segments go, the rest waits for
            # more data, the uncork, a FIN, or the 200 ms ceiling.
            self.corkq += chunk
            mss = self._loopback_mss()
            full = len(self.corkq) // mss * mss
            if full:
                held = bytes(self.corkq[:full])
                del self.corkq[:full]
                self._deliver(peer, held, False)
            if self.corkq and self.cork_timer is None:
                kernel = self.stack.kernel
                self.cork_timer = kernel.add_timer(kernel.now() + CORK_CEILING_NS,
                                                   self._cork_expired)
            return n
        if self.corkq:
            chunk = bytes(self.corkq) + chunk
            self._drop_corked()
        self._deliver(peer, chunk, urgent)
        return n

    def _deliver(self, peer: TCPSocket, chunk: bytes, urgent: bool) -> None:
        """Our segment(s) reach the peer's receive queue."""
        self.segs_out += 1
        self.stack.lo.count(len(chunk) + 52)
        peer._on_data(chunk, urgent)

    def _loopback_mss(self) -> int:
        user = self.tcp[TCP_MAXSEG]
        return min(user, LOOPBACK_MSS) if user else LOOPBACK_MSS

    def _drop_corked(self) -> None:
        self.corkq.clear()
        if self.cork_timer is not None:
            self.cork_timer.cancelled = True
            self.cork_timer = None

    def _push_corked(self) -> None:
        """tcp_push_pending_frames: what TCP_CORK or MSG_MORE held goes now."""
        if not self.corkq:
            return
        data = bytes(self.corkq)
        self._drop_corked()
        peer = self.peer
        if peer is not None and peer.state != TCP_CLOSE and self.state in (
                TCP_ESTABLISHED, TCP_CLOSE_WAIT, TCP_FIN_WAIT1, TCP_LAST_ACK):
            self._deliver(peer, data, False)
        self._notify(EVENT_OUT)

    def _cork_expired(self) -> None:
        self.cork_timer = None
        self._push_corked()

    async def sendmsg(self, t: Task, f: FileDescription, data: bytes, flags: int,
                      addr: bytes | None, control: Control) -> int:
        """tcp_sendmsg: blocking sends queue everything unless a signal or SO_SNDTIMEO
        interrupts, then return what was queued.  A destination address is ignored on a
        connected socket and refused (EPIPE path) on an unconnected one, as Linux."""
        nonblock = f.nonblocking or bool(flags & MSG_DONTWAIT) or self.sndtimeo == 0
        deadline = deadline_of(t, self.sndtimeo)
        timed = self.sndtimeo is not None
        sent = 0
        while True:
            try:
                sent += self._try_send(t, data[sent:] if sent else data,
                                       flags | MSG_NOSIGNAL if sent else flags)
                if sent >= len(data):
                    return sent
                continue            # the rest at once, or WouldBlock
            except WouldBlock:
                if nonblock:
                    if sent:
                        return sent
                    raise
            except SyscallError as e:
                if sent:
                    # tcp_sendmsg returns what it queued; a pending error (a reset) is
                    # left for the next call, which reports it.
                    if e.errno != Errno.EPIPE and not self.err:
                        self.err = e.errno
                    return sent
                raise
            try:
                await wait(t, self.wq, EVENT_OUT | EVENT_HUP | EVENT_ERR, deadline, timed)
            except SyscallError:
                if sent:
                    return sent
                raise

    # -- receiving ---------------------------------------------------------------------------

    def _recv_urg(self, n: int, flags: int) -> Received:
        """tcp_recv_urg: the urgent byte; never blocks."""
        if self._oobinline() or not self.urg_data or self.urg_data == URG_READ:
            raise SyscallError(Errno.EINVAL)
        if self.state == TCP_CLOSE and not self.done:
            raise SyscallError(Errno.ENOTCONN)
        if self.urg_data & URG_VALID:
            byte = bytes([self.urg_data & 0xFF])
            if not flags & MSG_PEEK:
                self.urg_data = URG_READ
            if n > 0:
                return Received(b"" if flags & MSG_TRUNC else byte, 1, MSG_OOB)
            return Received(b"", 0, MSG_OOB | MSG_TRUNC)
        if self.state == TCP_CLOSE or self.shut & RCV_SHUTDOWN:
            return Received(b"", 0)
        raise SyscallError(Errno.EAGAIN)

    def _try_recv(self, n: int, flags: int) -> Received:
        """One non-blocking attempt (tcp_recvmsg_locked without the sleeping)."""
        if self.state == TCP_LISTEN:
            raise SyscallError(Errno.ENOTCONN)
        if flags & MSG_OOB:
            return self._recv_urg(n, flags)
        if self.rcv_len:
            r = self._take(n, flags) if not self.urg_data else self._take_urgent(n, flags)
            if r.length or n == 0 or flags & MSG_TRUNC:
                return r
            # Only an urgent byte was there, stepped over: as if nothing were queued.
        if self.done:
            return Received(b"", 0)
        if self.err:
            err, self.err = self.err, 0
            raise SyscallError(err)
        if self.shut & RCV_SHUTDOWN:
            return Received(b"", 0)
        if self.state == TCP_CLOSE:
            raise SyscallError(Errno.ENOTCONN)
        raise WouldBlock()

    def _take(self, n: int, flags: int) -> Received:
        peek = bool(flags & MSG_PEEK)
        out: list[bytes] = []
        got = 0
        off = self.rcv_off
        i = 0
        q = self.rcvq
        while got < n and i < len(q):
            buf = q[i]
            take = min(n - got, len(buf) - off)
            out.append(buf[off:off + take] if (off or take < len(buf)) else buf)
            got += take
            self.read_stamp = self.rcv_stamps[i]
            if peek:
                i += 1
                off = 0
                continue
            if off + take == len(buf):
                q.popleft()
                self.rcv_stamps.popleft()
                off = 0
            else:
                off += take
        if not peek:
            self.rcv_off = off
            self.rcv_len -= got
            self.copied_seq += got
            self.stack.unbuffer(got)
            self._rcv_space_adjust(got)
            peer = self.peer
            if peer is not None:
                peer._notify(EVENT_OUT)
            elif self.ep is not None:
                self.ep.on_read()             # a window update when it opened enough
        data = b"" if flags & MSG_TRUNC else b"".join(out)
        return Received(data, got)

    def _take_urgent(self, n: int, flags: int) -> Received:
        """_take while an urgent mark is set (tcp_recvmsg_locked's urg_data paths): a read
        stops at the mark once it has data; one starting at the mark steps over the
        urgent byte (unless SO_OOBINLINE) and goes on; passing the mark clears it."""
        peek = bool(flags & MSG_PEEK)
        inline = self._oobinline()
        q = self.rcvq
        buf = b"".join(q)[self.rcv_off:] if len(q) > 1 or self.rcv_off else q[0]
        urg = self.urg_seq - self.copied_seq     # the mark, relative to the read position
        out = bytearray()
        pos = 0
        while len(out) < n and pos < len(buf):
            if pos == urg:
                if out:
                    break
                if not inline:
                    pos += 1                        # the urgent byte is not in the stream
                    continue
            end = urg if pos < urg else len(buf)
            take = min(n - len(out), end - pos)
            out += buf[pos:pos + take]
            pos += take
        if not peek and pos:
            self._consume(pos)
            if self.copied_seq > self.urg_seq:
                self.urg_data = 0
            peer = self.peer
            if peer is not None:
                peer._notify(EVENT_OUT)
            elif self.ep is not None:
                self.ep.on_read()
        got = len(out)
        return Received(b"" if flags & MSG_TRUNC else bytes(out), got)

    async def recvmsg(self, t: Task, f: FileDescription, n: int, flags: int,
                      want_addr: bool) -> Received:
        """tcp_recvmsg, with its control messages: SO_TIMESTAMP(NS) of the last data
        read, and TCP_INQ's count of what is left (tcp_inq_hint)."""
        self.read_stamp = 0
        r = await self._recvmsg(t, f, n, flags)
        cmsgs: list[tuple[int, int, bytes]] = []
        if self.read_stamp and self.opts.get(SO_TIMESTAMPNS):
            ns = self.read_stamp
            cmsgs.append((SOL_SOCKET, SCM_TIMESTAMPNS, struct.pack("<qq", ns // 10**9,
                                                                  ns % 10**9)))
        elif self.read_stamp and self.opts.get(SO_TIMESTAMP):
            us = self.read_stamp // 1000
            cmsgs.append((SOL_SOCKET, SCM_TIMESTAMP, struct.pack("<qq", us // 10**6,
                                                                 us % 10**6)))
        if self.tcp[TCP_INQ]:
            inq = self.rcv_len
            if inq == 0 and self.done:
                inq = 1                   # tcp_inq_hint: EOF reads as one byte
            cmsgs.append((SOL_TCP, TCP_INQ, _I32.pack(inq)))
        if cmsgs:
            r.cmsgs = cmsgs
        return r

    async def _recvmsg(self, t: Task, f: FileDescription, n: int, flags: int) -> Received:
        """tcp_recvmsg: waits for at least SO_RCVLOWAT bytes (all `n` with MSG_WAITALL)."""
        if flags & MSG_OOB:
            return self._try_recv(n, flags)         # never blocks (tcp_recv_urg)
        nonblock = f.nonblocking or bool(flags & MSG_DONTWAIT) or self.rcvtimeo == 0
        deadline = deadline_of(t, self.rcvtimeo)
        timed = self.rcvtimeo is not None
        target = n if flags & MSG_WAITALL and not flags & MSG_PEEK else min(self.rcvlowat, n)
        got: Received | None = None
        while True:
            try:
                r = self._try_recv(n - (got.length if got else 0), flags)
            except WouldBlock:
                if nonblock:
                    if got is not None:
                        return got
                    raise
            except SyscallError:
                if got is not None:
                    return got
                raise
            else:
                got = r if got is None else got.then(r)
                if got.length >= target or r.length == 0 or nonblock or flags & MSG_PEEK \
                        or n == 0:
                    return got
                continue            # more may be queued already: try before sleeping
            try:
                await wait(t, self.wq, EVENT_IN | EVENT_HUP | EVENT_ERR, deadline, timed)
            except SyscallError:
                if got is not None:
                    return got
                raise

    # -- options -----------------------------------------------------------------------------

    def proto_getsockopt(self, t: Task, level: int, name: int) -> bytes:
        if level != SOL_TCP:
            raise self.unknown_level()
        i32 = _I32.pack
        if name == TCP_INFO:
            return self._info()
        if name == TCP_CONGESTION:
            return self.congestion.ljust(16, b"\0")
        if name == TCP_MAXSEG:
            user = self.tcp[TCP_MAXSEG]
            if user and self.state in (TCP_CLOSE, TCP_LISTEN):
                return i32(user)
            if self.ep is not None:
                return i32(self.ep.mss)
            return i32(LOOPBACK_MSS if self.connected_for_mtu() else TCP_MSS_DEFAULT)
        if name == TCP_LINGER2:
            v = self.tcp[name]
            return i32(60 if v == 0 else v)
        if name == TCP_TIMESTAMP:
            return i32(self.stack.kernel.now() // 1_000_000 & 0x7FFFFFFF)
        if name in self.tcp:
            return i32(self.tcp[name])
        raise SyscallError(Errno.ENOPROTOOPT)

    def proto_setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        """do_tcp_setsockopt: the checks Linux makes; values are stored."""
        if level != SOL_TCP:
            raise SyscallError(Errno.ENOPROTOOPT)
        if name == TCP_CONGESTION:
            algo = optval[:16].split(b"\0", 1)[0]
            if algo not in (b"cubic", b"reno"):
                raise SyscallError(Errno.ENOENT)
            self.congestion = algo
            return
        if len(optval) < 4:
            raise SyscallError(Errno.EINVAL)
        (val,) = _I32.unpack_from(optval)
        if name == TCP_MAXSEG:
            if val and not 88 <= val <= 65535:
                raise SyscallError(Errno.EINVAL)
        elif name in (TCP_KEEPIDLE, TCP_KEEPINTVL):
            if not 1 <= val <= (MAX_TCP_KEEPIDLE if name == TCP_KEEPIDLE else MAX_TCP_KEEPINTVL):
                raise SyscallError(Errno.EINVAL)
        elif name == TCP_KEEPCNT:
            if not 1 <= val <= MAX_TCP_KEEPCNT:
                raise SyscallError(Errno.EINVAL)
        elif name == TCP_SYNCNT:
            if not 1 <= val <= MAX_TCP_SYNCNT:
                raise SyscallError(Errno.EINVAL)
        elif name == TCP_USER_TIMEOUT:
            if val < 0:
                raise SyscallError(Errno.EINVAL)
        elif name == TCP_WINDOW_CLAMP:
            # tcp_set_window_clamp: 0 (no clamp) only before a connection; any other
            # value is raised to half the smallest receive buffer.
            if val == 0 and self.state != TCP_CLOSE:
                raise SyscallError(Errno.EINVAL)
            if val:
                val = max(val, SOCK_MIN_RCVBUF // 2)
        elif name == TCP_LINGER2:
            val = -1 if val < 0 else min(val, 120)
        elif name in (TCP_NODELAY, TCP_CORK, TCP_QUICKACK, TCP_THIN_LINEAR_TIMEOUTS,
                      TCP_THIN_DUPACK, TCP_INQ, TCP_FASTOPEN_CONNECT):
            val = int(val != 0)
        elif name == TCP_DEFER_ACCEPT:
            val = _defer_accept_secs(val)
        elif name not in (TCP_NOTSENT_LOWAT, TCP_FASTOPEN):
            raise SyscallError(Errno.ENOPROTOOPT)
        self.tcp[name] = val
        if self.ep is not None:
            self.ep.options_changed()
        elif (name == TCP_CORK and not val) or (name == TCP_NODELAY and val):
            self._push_corked()       # Linux: tcp_push_pending_frames (NODELAY: TCP_NAGLE_PUSH)

    def setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        super().setsockopt(t, level, name, optval)
        if self.ep is not None:
            self.ep.options_changed()             # SO_KEEPALIVE and the TCP_* above

    def _info(self) -> bytes:
        """struct tcp_info, as far as a loopback connection has one."""
        if self.ep is not None:
            return self._info_wire(self.ep)
        est = self.connected_for_mtu()
        mss = LOOPBACK_MSS if est else TCP_MSS_DEFAULT
        return TCP_INFO_STRUCT.pack(
            self.state, 0, 0, 0, 0, 7 if est else 0, 0x77 if est else 0, 0,
            # rto ato snd_mss rcv_mss unacked sacked lost retrans fackets
            203333 if est else 1000000, 40000 if est else 0, mss, TCP_MSS_DEFAULT, 0, 0, 0, 0, 0,
            # last_data_sent last_ack_sent last_data_recv last_ack_recv pmtu rcv_ssthresh
            0, 0, 0, 0, 65535 if est else 0, 65483 if est else 0,
            # rtt rttvar snd_ssthresh snd_cwnd advmss reordering rcv_rtt rcv_space
            30 if est else 0, 15 if est else 250000, 0x7FFFFFFF, 10, mss, 3, 0,
            self.window() if est else 0,
            0,                                                    # total_retrans
            0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF,               # pacing rates
            self.bytes_sent, self.bytes_received,                 # bytes_acked, bytes_received
            self.segs_out, self.segs_in, 0, 30 if est else 0,     # segs, notsent, min_rtt
            self.segs_in, self.segs_out,                          # data_segs_in/out
            0, 0, 0, 0,                                           # delivery_rate ... limited
            self.segs_out, 0,                                     # delivered, delivered_ce
            self.bytes_sent, 0,                                   # bytes_sent, bytes_retrans
            0, 0, 0, self.peer.window() if self.peer is not None else 0)

    def _info_wire(self, ep: Endpoint) -> bytes:
        """struct tcp_info of a connection to another host, from its endpoint."""
        i = ep.info()
        return TCP_INFO_STRUCT.pack(
            self.state, i["ca_state"], i["retransmits"], i["probes"], i["backoff"],
            i["options"], i["wscale"], 0,
            i["rto"], i["ato"], i["snd_mss"], i["rcv_mss"], i["unacked"], i["sacked"], 0,
            i["retrans"], 0,
            0, 0, 0, 0, i["pmtu"], i["rcv_space"],
            i["rtt"], i["rttvar"], i["ssthresh"], i["cwnd"], i["advmss"], 3, 0,
            i["rcv_space"], i["total_retrans"],
            0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF,
            self.bytes_sent - len(ep.sndq), self.bytes_received,
            self.segs_out, self.segs_in, i["notsent"], i["rtt"],
            self.segs_in, self.segs_out,
            0, 0, 0, 0,
            self.segs_out, 0,
            self.bytes_sent + i["bytes_retrans"], i["bytes_retrans"],
            0, 0, 0, i["snd_wnd"])
