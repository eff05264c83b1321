"""Segment-level TCP (pyvisor/sentry/socket/netstack/tcpseg.py) between two netstack
Stacks wired back to back in-process (tests/sentry/tcpseg_harness.py): real segments
with checksums, a fake clock, and a wire with loss, reordering, duplication and delay.
The sockets are netstack's TCPSocket, driven through the calls the syscalls make."""

from __future__ import annotations

import hashlib
import os
import struct
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from tcpseg_harness import (A, B, MS, S, TASK, Wire, accept, connect,  # noqa: E402
                            established, listener, pair, recv_some, send_some, transfer)

from pyvisor.abi.linux.errno import Errno  # noqa: E402
from pyvisor.abi.linux.inet import (SOL_TCP, TCP_CLOSE, TCP_CLOSE_WAIT,  # noqa: E402
                                    TCP_CLOSING, TCP_ESTABLISHED, TCP_FIN_WAIT2,
                                    TCP_INFO, TCP_INFO_STRUCT, TCP_KEEPCNT, TCP_KEEPIDLE,
                                    TCP_KEEPINTVL, TCP_LAST_ACK, TCP_SYN_SENT,
                                    TCP_TIME_WAIT, TCP_USER_TIMEOUT, TCP_CONGESTION)
from pyvisor.sentry.errors import SyscallError  # noqa: E402
from pyvisor.sentry.socket import inet  # noqa: E402
from pyvisor.sentry.socket.common import (AF_INET, SHUT_WR, SO_KEEPALIVE,  # noqa: E402
                                          SO_RCVBUF, SOL_SOCKET)
from pyvisor.sentry.socket.netstack import tcpwire as w  # noqa: E402
from pyvisor.sentry.socket.netstack.tcp import TCPSocket  # noqa: E402

I32 = struct.Struct("<i")


def data_segs(wire: Wire, src: bytes) -> list[w.Segment]:
    return [s for a, _b, s in wire.sent if a == src and s.data]


# -- the wire format ----------------------------------------------------------------------


def test_checksum_and_options_roundtrip() -> None:
    raw = w.build(A, B, 1234, 80, 0xFFFFFFF0, 7, w.SYN, 65535,
                  w.syn_options(1460, 7, True, (11, 0)), b"")
    seg = w.parse(A, B, raw)
    assert seg is not None
    assert (seg.sport, seg.dport, seg.seq, seg.mss, seg.wscale, seg.sack_perm, seg.ts) == \
        (1234, 80, 0xFFFFFFF0, 1460, 7, True, (11, 0))
    # Linux's checksum of the same bytes: the one's-complement sum over the pseudo-header.
    words = w.pseudo_header(A, B, len(raw)) + raw
    total = sum(struct.unpack("!%dH" % (len(words) // 2), words))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF
    bad = bytearray(raw)
    bad[-1] ^= 1
    assert w.parse(A, B, bytes(bad)) is None          # corrupted
    assert w.parse(A, bytes([10, 0, 0, 3]), raw) is None   # another pseudo-header
    assert w.parse(A, B, raw[:19]) is None            # truncated
    # Odd-length data, SACK blocks, IPv6 pseudo-header.
    a6, b6 = b"\xfd" + b"\0" * 14 + b"\1", b"\xfd" + b"\0" * 14 + b"\2"
    raw = w.build(a6, b6, 1, 2, 3, 4, w.ACK, 5, w.data_options((1, 2), [(10, 20), (30, 40)]),
                  b"abc")
    seg = w.parse(a6, b6, raw)
    assert seg is not None and seg.data == b"abc" and seg.sacks == [(10, 20), (30, 40)]


def test_malformed_options_never_raise() -> None:
    import random
    rng = random.Random(5)
    for _ in range(2000):
        opts = bytes(rng.randrange(256) for _ in range(rng.choice([4, 8, 20, 40])))
        raw = w.build(A, B, 1, 2, 3, 4, rng.randrange(256), 5, opts, b"x")
        w.parse(A, B, raw)
        w.parse(A, B, raw[:rng.randrange(len(raw))])


def test_isn_rfc6528() -> None:
    g = w.ISNGenerator()
    a = g.isn(A, 1000, B, 80, 0)
    assert g.isn(A, 1000, B, 80, 4000 * 1000) == (a + 1000) & w.MASK   # M: a 4 us clock
    assert g.isn(A, 1001, B, 80, 0) != a                                # F: per 4-tuple
    assert w.ISNGenerator().isn(A, 1000, B, 80, 0) != a                 # secret per stack


# -- connections ------------------------------------------------------------------------------


def test_handshake_and_options() -> None:
    k, wire, a, b = pair()
    c, srv, lst = established(k, a, b)
    assert c.state == srv.state == TCP_ESTABLISHED
    syn, synack = wire.sent[0][2], wire.sent[1][2]
    assert syn.flags == w.SYN and synack.flags == w.SYN | w.ACK
    assert synack.ack == (syn.seq + 1) & w.MASK
    assert syn.mss == synack.mss == 1460 and syn.wscale == 7 and syn.sack_perm and syn.ts
    assert c.ep is not None and c.ep.ts_ok and c.ep.sack_ok and c.ep.snd_wscale == 7
    assert c.ep.mss == 1448                            # 1460 less the timestamp option
    assert srv.getpeername(TASK) == inet.encode(AF_INET, A, c.lport)
    info = TCP_INFO_STRUCT.unpack(c.getsockopt(TASK, SOL_TCP, TCP_INFO))
    assert info[0] == TCP_ESTABLISHED and info[5] == 7 and info[10] == 1448


def test_data_both_ways_megabytes() -> None:
    k, wire, a, b = pair()
    wire.keep_log = False
    c, srv, _ = established(k, a, b)
    up, down = os.urandom(3 << 20), os.urandom(2 << 20)
    assert hashlib.sha256(transfer(k, c, srv, up)).digest() == hashlib.sha256(up).digest()
    assert transfer(k, srv, c, down) == down
    assert a.layer.retrans_segs == b.layer.retrans_segs == 0
    assert a.layer.in_errs == b.layer.in_errs == 0


@pytest.mark.parametrize("sack,cc", [(True, b"cubic"), (False, b"cubic"), (True, b"reno"),
                                     (False, b"reno")])
def test_loss_reorder_duplication_recover(sack: bool, cc: bytes) -> None:
    k, wire, a, b = pair(seed=7)
    a.layer.sack = b.layer.sack = sack
    c, srv, _ = established(k, a, b)
    c.setsockopt(TASK, SOL_TCP, TCP_CONGESTION, cc)
    assert c.ep is not None and c.ep.cubic == (cc == b"cubic")
    wire.loss, wire.reorder, wire.dup = 0.03, 0.03, 0.02
    wire.keep_log = False
    data = os.urandom(1 << 20)
    assert transfer(k, c, srv, data) == data
    back = os.urandom(300_000)
    assert transfer(k, srv, c, back) == back
    assert a.layer.retrans_segs > 0 and a.layer.fast_retrans > 0
    assert (a.layer.sack_recoveries > 0) == sack
    # TCP_INFO reports the endpoint's own numbers (linux/tcp.h field order).
    info = TCP_INFO_STRUCT.unpack(c.getsockopt(TASK, SOL_TCP, TCP_INFO))
    options, rto_us, snd_mss, rtt_us, cwnd, total_retrans = \
        info[5], info[8], info[10], info[23], info[26], info[31]
    assert options & 1 and bool(options & 2) == sack
    # cwnd: at least the loss window (one segment, RFC 5681 3.1), where a tail loss at the
    # end of the transfer leaves it after the RTO.
    assert snd_mss == 1448 and rtt_us >= 1000 and rto_us >= 200_000 and cwnd >= 1
    assert total_retrans == c.ep.total_retrans > 0


def test_rto_backoff_and_karn() -> None:
    """Everything lost for a while: the RTO doubles per expiry (RFC 6298 5.5), then the
    link comes back and the data arrives.  Without timestamps, Karn's rule: the ACK of a
    retransmitted segment gives no RTT sample."""
    k, wire, a, b = pair()
    a.layer.timestamps = False
    c, srv, _ = established(k, a, b)
    assert send_some(c, b"x" * 1000) == 1000
    wire.drop = lambda s, d, seg: True
    times: list[int] = []
    orig = wire.send

    def spy(src: bytes, dst: bytes, p: bytes) -> None:
        seg = w.parse(src, dst, p)
        if seg is not None and seg.data:
            times.append(k.t)
        orig(src, dst, p)
    wire.send = spy  # type: ignore[method-assign]
    k.run_until(lambda: len(times) >= 6, 120 * S)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g2 >= 2 * g1 * 0.99 for g1, g2 in zip(gaps, gaps[1:])), gaps
    assert c.ep is not None and c.ep.backoff >= 5
    wire.drop = None
    k.run_until(lambda: srv.rcv_len == 1000 and c.ep is not None and not c.ep.unacked(),
                300 * S)
    assert c.ep.backoff == 0
    assert c.ep.srtt < 50 * MS                     # retransmissions gave no RTT samples


def test_sack_reduces_retransmissions() -> None:
    """Several segments of one window lost: with SACK only the holes are resent; without
    it NewReno recovers one hole per round trip, and the retransmission timer, going back
    N, resends what had arrived."""
    results = {}
    for sack in (True, False):
        k, wire, a, b = pair(seed=1, delay=20 * MS)
        a.layer.sack = b.layer.sack = sack
        c, srv, _ = established(k, a, b)
        seen: set[int] = set()
        lost = {5, 8, 11, 14, 17, 20, 23}

        def drop(src: bytes, dst: bytes, seg: w.Segment) -> bool:
            if src != A or not seg.data:
                return False
            idx = ((seg.seq - c.ep.iss - 1) & w.MASK) // 1448
            if idx in lost and idx not in seen:
                seen.add(idx)
                return True
            return False
        wire.drop = drop
        start = k.t
        data = os.urandom(200 * 1448)
        assert transfer(k, c, srv, data) == data
        results[sack] = (a.layer.retrans_segs, k.t - start)
    assert results[True][0] == 7                    # exactly the lost segments
    assert results[True][0] < results[False][0] or results[True][1] < results[False][1]
    assert results[True][1] < results[False][1]


def test_window_scaling_allows_more_than_64k_in_flight() -> None:
    k, wire, a, b = pair(delay=50 * MS)
    wire.keep_log = False
    c, srv, _ = established(k, a, b)
    peak = 0

    def watch() -> None:
        nonlocal peak
        assert c.ep is not None
        peak = max(peak, c.ep.snd_nxt - c.ep.snd_una)
    data = os.urandom(4 << 20)
    assert transfer(k, c, srv, data, on_step=watch) == data
    assert c.ep is not None and c.ep.snd_wscale == 7 and c.ep.max_snd_wnd > 65535
    assert peak > 65535


def test_zero_window_and_probe() -> None:
    k, wire, a, b = pair()
    lst = listener(b, 80)
    srv_rcv = 4096
    lst.setsockopt(TASK, SOL_SOCKET, SO_RCVBUF, I32.pack(srv_rcv))
    c = connect(a, B, 80)
    k.run_until(lambda: bool(lst.acceptq))
    srv = accept(lst)
    data = os.urandom(100_000)
    sent = 0
    for _ in range(200):
        sent += send_some(c, data[sent:])
        k.advance(10 * MS)
    assert c.ep is not None and c.ep.snd_wnd == 0 and srv.rcv_len > 0
    # Nobody reads: the sender probes the zero window with backoff, and stays connected.
    before = len([s for x, _y, s in wire.sent if x == A and not s.data])
    k.advance(30 * S)
    probes = len([s for x, _y, s in wire.sent if x == A and not s.data]) - before
    assert 3 <= probes <= 10 and c.state == TCP_ESTABLISHED
    # The reader's window update is lost: the next probe finds the open window.
    wire.drop = lambda s, d, seg: s == B and seg.window > 0
    got = recv_some(srv)
    wire.drop = None
    k.run_until(lambda: bool(c.ep and c.ep.snd_wnd > 0), 120 * S)
    got += transfer(k, c, srv, data[sent:], limit_ns=600 * S)
    while len(got) < len(data):
        sent += send_some(c, data[sent:])
        got += recv_some(srv)
        if not k.step():
            break
    assert got == data


def test_refused_and_reset_cases() -> None:
    k, wire, a, b = pair()
    # No listener: RST|ACK, connect fails with ECONNREFUSED.
    c = connect(a, B, 81)
    k.run_until(lambda: c.state == TCP_CLOSE)
    with pytest.raises(SyscallError) as e:
        c._connect_result()
    assert e.value.errno == Errno.ECONNREFUSED
    # RFC 5961: a reset in the window but not at RCV.NXT gets a challenge ACK.
    c, srv, _ = established(k, a, b)
    assert srv.ep is not None and c.ep is not None
    n = len(wire.sent)
    fake = w.build(A, B, c.lport, 80, srv.ep.rcv_nxt + 100, 0, w.RST, 0)
    b.layer.input(A, B, fake)
    assert srv.state == TCP_ESTABLISHED
    assert [s.flags for x, _y, s in wire.sent[n:]] == [w.ACK]
    # A SYN on an established connection: a challenge ACK, nothing else.
    b.layer.input(A, B, w.build(A, B, c.lport, 80, 12345, 0, w.SYN, 1000))
    assert srv.state == TCP_ESTABLISHED
    # Out of the window: dropped (with an ACK), no reset.
    b.layer.input(A, B, w.build(A, B, c.lport, 80, srv.ep.rcv_nxt - 10**6, 0, w.RST, 0))
    assert srv.state == TCP_ESTABLISHED
    # Exactly RCV.NXT: the connection is reset.
    b.layer.input(A, B, w.build(A, B, c.lport, 80, srv.ep.rcv_nxt, 0, w.RST, 0))
    assert srv.state == TCP_CLOSE
    with pytest.raises(SyscallError) as e:
        srv._try_recv(10, 0)
    assert e.value.errno == Errno.ECONNRESET
    # A bad checksum is dropped and counted.
    before = b.layer.in_errs
    raw = bytearray(w.build(A, B, c.lport, 80, 1, 0, w.RST, 0))
    raw[4] ^= 0xFF
    b.layer.input(A, B, bytes(raw))
    assert b.layer.in_errs == before + 1


def test_close_with_unread_data_resets_peer() -> None:
    k, wire, a, b = pair()
    c, srv, _ = established(k, a, b)
    send_some(c, b"unread")
    k.run_until(lambda: srv.rcv_len == 6)
    srv.release(None)  # type: ignore[arg-type]
    assert any(s.flags & w.RST for x, _y, s in wire.sent if x == B)
    k.run_until(lambda: c.state == TCP_CLOSE)
    with pytest.raises(SyscallError) as e:
        c._try_recv(10, 0)
    assert e.value.errno == Errno.ECONNRESET


def test_orderly_close_and_time_wait() -> None:
    k, wire, a, b = pair()
    c, srv, _ = established(k, a, b)
    send_some(c, b"bye")
    c.shutdown(TASK, SHUT_WR)
    k.run_until(lambda: srv.state == TCP_CLOSE_WAIT and c.state == TCP_FIN_WAIT2)
    assert recv_some(srv) == b"bye" and srv._try_recv(10, 0).data == b""   # EOF
    send_some(srv, b"reply")
    srv.release(None)  # type: ignore[arg-type]
    assert srv.state == TCP_LAST_ACK
    k.run_until(lambda: c.state == TCP_CLOSE and srv.state == TCP_CLOSE)
    assert recv_some(c) == b"reply"
    key = (A, c.lport, B, 80)
    ep = a.layer.conns[key]
    assert ep.state == TCP_TIME_WAIT and (B, 80, A, c.lport) not in b.layer.conns
    # The last ACK was lost: the peer's retransmitted FIN is acknowledged from TIME_WAIT.
    fin = w.build(B, A, 80, c.lport, ep.rcv_nxt - 1, ep.snd_nxt, w.FIN | w.ACK, 100)
    n = len(wire.sent)
    a.layer.input(B, A, fin)
    assert [s.flags for x, _y, s in wire.sent[n:]] == [w.ACK]
    # The port is held (a TimeWait remnant) until 2 MSL pass, then everything is gone.
    assert any(x.tcp_state == TCP_TIME_WAIT for x in a.tcp_ports.on(c.lport))
    k.advance(61 * S)
    assert key not in a.layer.conns and not list(a.tcp_ports.on(c.lport))


def test_simultaneous_close() -> None:
    k, wire, a, b = pair(delay=10 * MS)
    c, srv, _ = established(k, a, b)
    c.shutdown(TASK, SHUT_WR)
    srv.shutdown(TASK, SHUT_WR)               # both FINs cross on the wire
    k.advance(15 * MS)
    assert c.state == srv.state == TCP_CLOSING
    k.run_until(lambda: c.state == TCP_CLOSE and srv.state == TCP_CLOSE)
    assert a.layer.conns[(A, c.lport, B, 80)].state == TCP_TIME_WAIT
    assert b.layer.conns[(B, 80, A, c.lport)].state == TCP_TIME_WAIT


def test_simultaneous_open() -> None:
    k, wire, a, b = pair(delay=10 * MS)
    x, y = TCPSocket(a, AF_INET, 0), TCPSocket(b, AF_INET, 0)
    x.bind(TASK, inet.encode(AF_INET, A, 5000))  # type: ignore[arg-type]
    y.bind(TASK, inet.encode(AF_INET, B, 6000))  # type: ignore[arg-type]
    connect(a, B, 6000, x)
    connect(b, A, 5000, y)
    k.run_until(lambda: x.state == y.state == TCP_ESTABLISHED, 30 * S)
    assert send_some(x, b"hi") == 2
    k.run_until(lambda: y.rcv_len == 2)


@pytest.mark.parametrize("cookies", [True, False])
def test_syn_flood_is_bounded(cookies: bool) -> None:
    """State is bounded either way: past the half-open bound SYNs get cookie SYN-ACKs
    (net.ipv4.tcp_syncookies=1, no state kept) or, without cookies, are dropped."""
    k, wire, a, b = pair()
    b.layer.syncookies = cookies
    lst = listener(b, 80, backlog=16)
    for i in range(20000):
        src = bytes([10, 1, i >> 8 & 255, i & 255])
        b.layer.input(src, B, w.build(src, B, 1024 + i % 60000, 80, i * 7919, 0, w.SYN, 1000,
                                      w.syn_options(1460, 7, True, None)))
    assert len(b.layer.half_open[lst]) <= 17 and len(b.layer.conns) <= 17
    if cookies:
        assert b.layer.cookies_sent >= 20000 - 17 and b.syn_drops == 0
        # A client gets in at once, through a cookie, while the flood's half-open
        # connections still fill the table.
        c = connect(a, B, 80)
        k.run_until(lambda: bool(lst.acceptq), 5 * S)
        assert b.layer.cookies_recv == 1
        assert accept(lst).state == TCP_ESTABLISHED and c.state == TCP_ESTABLISHED
        return
    assert b.syn_drops >= 20000 - 17 and b.layer.cookies_sent == 0
    # The half-open endpoints give up after their SYN-ACK retries; then a client gets in.
    k.advance(200 * S)
    assert not b.layer.conns and not b.layer.half_open
    c = connect(a, B, 80)
    k.run_until(lambda: bool(lst.acceptq))
    assert accept(lst).state == TCP_ESTABLISHED and c.state == TCP_ESTABLISHED


def test_accept_queue_full_drops_final_ack_then_recovers() -> None:
    k, wire, a, b = pair()
    lst = listener(b, 80, backlog=0)
    c1 = connect(a, B, 80)
    k.run_until(lambda: len(lst.acceptq) == 1)
    c2 = connect(a, B, 80)
    k.advance(2 * S)
    assert len(lst.acceptq) == 1 and c2.state in (TCP_ESTABLISHED, TCP_SYN_SENT)
    accept(lst)
    k.run_until(lambda: len(lst.acceptq) == 1, 60 * S)
    assert accept(lst).state == TCP_ESTABLISHED and c1.state == TCP_ESTABLISHED


def test_user_timeout_gives_etimedout() -> None:
    k, wire, a, b = pair()
    c, srv, _ = established(k, a, b)
    c.setsockopt(TASK, SOL_TCP, TCP_USER_TIMEOUT, I32.pack(5000))
    wire.drop = lambda s, d, seg: True
    send_some(c, b"lost")
    k.run_until(lambda: c.state == TCP_CLOSE, 60 * S)
    with pytest.raises(SyscallError) as e:
        c._try_recv(1, 0)
    assert e.value.errno == Errno.ETIMEDOUT


def test_syn_retries_then_etimedout() -> None:
    k, wire, a, b = pair()
    wire.drop = lambda s, d, seg: True
    c = connect(a, B, 80)
    k.run_until(lambda: c.state == TCP_CLOSE, 300 * S)
    syns = [s for x, _y, s in wire.sent if s.flags & w.SYN]
    assert len(syns) == 7                            # the SYN and TCP_SYNCNT (6) retries
    with pytest.raises(SyscallError) as e:
        c._connect_result()
    assert e.value.errno == Errno.ETIMEDOUT


def test_keepalive() -> None:
    k, wire, a, b = pair()
    c, srv, _ = established(k, a, b)
    for name, val in ((TCP_KEEPIDLE, 10), (TCP_KEEPINTVL, 2), (TCP_KEEPCNT, 3)):
        c.setsockopt(TASK, SOL_TCP, name, I32.pack(val))
    c.setsockopt(TASK, SOL_SOCKET, SO_KEEPALIVE, I32.pack(1))
    # A live peer answers the probes: the connection stays.
    k.advance(60 * S)
    assert c.state == TCP_ESTABLISHED
    probes = [s for x, _y, s in wire.sent if x == A and not s.data and not s.flags & w.SYN]
    assert len(probes) >= 4
    # A silent peer: KEEPCNT probes, then ETIMEDOUT.
    wire.drop = lambda s, d, seg: True
    k.run_until(lambda: c.state == TCP_CLOSE, 60 * S)
    with pytest.raises(SyscallError) as e:
        c._try_recv(1, 0)
    assert e.value.errno == Errno.ETIMEDOUT


def test_path_mtu_lowers_segment_size() -> None:
    """ICMP fragmentation-needed (as the IP layer reports it): smaller segments from
    then on, and what was in flight is resent in the new size."""
    k, wire, a, b = pair(delay=5 * MS)
    c, srv, _ = established(k, a, b)
    assert c.ep is not None
    first = os.urandom(20000)
    assert send_some(c, first) == 20000
    n = len(wire.sent)
    a.layer.icmp_error(A, B, w.build(A, B, c.lport, 80, c.ep.snd_una, 0, w.ACK, 0), 0,
                       mtu=1000)
    assert c.ep.mss == 1000 - 40 - 12
    k.run_until(lambda: srv.rcv_len == 20000)
    assert recv_some(srv) == first
    data = os.urandom(50000)
    assert transfer(k, c, srv, data) == data
    assert max(len(s.data) for x, _y, s in wire.sent[n:] if x == A) == 948


def test_out_of_order_bounded_by_window() -> None:
    k, wire, a, b = pair()
    c, srv, _ = established(k, a, b)
    ep = srv.ep
    assert ep is not None and c.ep is not None
    wnd = srv.window()                          # the receive buffer (autotuned size)
    base = ep.rcv_nxt
    ts = (ep.ts_recent + 1, 0)
    for off in range(1000, 2 * wnd, 1400):
        raw = w.build(A, B, c.lport, 80, base + off, c.ep.rcv_nxt, w.ACK, 1000,
                      w.data_options(ts, []), os.urandom(1400))
        b.layer.input(A, B, raw)
    assert ep.rq and ep.rq.bytes <= wnd and len(ep.rq.pieces) <= 1024
    assert all(s0 + len(d0) <= ep.rcv_adv for s0, d0 in ep.rq.pieces)
    last = [s for x, _y, s in wire.sent if x == B][-1]
    assert last.sacks                               # SACK blocks report what is held


def test_time_wait_segment_without_socket_and_stray_segments() -> None:
    k, wire, a, b = pair()
    # A segment for no connection and no listener gets a reset (RFC 9293 3.10.7.1).
    n = len(wire.sent)
    b.layer.input(A, B, w.build(A, B, 999, 4444, 5, 77, w.ACK, 100))
    assert [(s.flags, s.seq) for _x, _y, s in wire.sent[n:]] == [(w.RST, 77)]
    # ...but a reset never answers a reset.
    b.layer.input(A, B, w.build(A, B, 999, 4444, 5, 77, w.RST, 100))
    assert len(wire.sent) == n + 1


def test_many_connections_in_parallel() -> None:
    k, wire, a, b = pair(seed=4)
    wire.loss = 0.01
    wire.keep_log = False
    lst = listener(b, 80, backlog=128)
    clients = [connect(a, B, 80) for _ in range(50)]
    k.run_until(lambda: len(lst.acceptq) == 50, 120 * S)
    servers = {s.rport: s for s in (accept(lst) for _ in range(50))}
    msgs = {c.lport: os.urandom(20000) for c in clients}
    sent = {c.lport: 0 for c in clients}
    got = {p: b"" for p in msgs}
    for _ in range(200000):
        for c in clients:
            m = msgs[c.lport]
            sent[c.lport] += send_some(c, m[sent[c.lport]:])
            got[c.lport] += recv_some(servers[c.lport])
        if all(got[p] == msgs[p] for p in msgs) or not k.step():
            break
    assert got == msgs
    assert all(c.state == TCP_ESTABLISHED for c in clients)


def test_ipv6() -> None:
    """The same over IPv6 addresses: the IPv6 pseudo-header, MSS = MTU - 60."""
    from tcpseg_harness import FakeKernel, WireStack
    from pyvisor.sentry.socket.common import AF_INET6
    from tcpseg_harness import NONBLOCK, run_sync
    k = FakeKernel()
    wire = Wire(k)
    TASK.kernel = k
    a6, b6 = b"\xfd" + b"\0" * 14 + b"\1", b"\xfd" + b"\0" * 14 + b"\2"
    a, b = WireStack(k, a6, wire), WireStack(k, b6, wire)
    lst = TCPSocket(b, AF_INET6, 0)
    lst.bind(TASK, inet.encode(AF_INET6, b6, 80))  # type: ignore[arg-type]
    lst.listen(TASK, 4)  # type: ignore[arg-type]
    c = TCPSocket(a, AF_INET6, 0)
    with pytest.raises(SyscallError):
        run_sync(c.connect(TASK, NONBLOCK, inet.encode(AF_INET6, b6, 80)))  # type: ignore
    k.run_until(lambda: bool(lst.acceptq) and c.state == TCP_ESTABLISHED)
    srv = accept(lst)
    assert wire.sent[0][2].mss == 1440 and c.ep is not None and c.ep.mss == 1428
    data = os.urandom(300_000)
    assert transfer(k, c, srv, data) == data
    assert srv.getpeername(TASK) == inet.encode(AF_INET6, a6, c.lport)


def test_new_syn_reuses_a_time_wait_port() -> None:
    """The server closed first (its end in TIME_WAIT); the client comes back from the
    same port with a new SYN: a new connection (tcp_timewait_state_process TCP_TW_SYN)."""
    k, wire, a, b = pair()
    c, srv, lst = established(k, a, b)
    srv.release(None)  # type: ignore[arg-type]
    k.run_until(lambda: c.state == TCP_CLOSE_WAIT)
    c.release(None)  # type: ignore[arg-type]
    k.run_until(lambda: c.state == TCP_CLOSE and srv.state == TCP_CLOSE)
    port = c.lport
    assert b.layer.conns[(B, 80, A, port)].state == TCP_TIME_WAIT
    c2 = TCPSocket(a, AF_INET, 0)
    c2.bind(TASK, inet.encode(AF_INET, A, port))  # type: ignore[arg-type]
    k.advance(2 * S)
    connect(a, B, 80, c2)
    k.run_until(lambda: bool(lst.acceptq) and c2.state == TCP_ESTABLISHED)
    assert accept(lst).state == TCP_ESTABLISHED


def test_random_segments_never_break_the_stack() -> None:
    """20,000 random and truncated segments (valid checksums, so they reach the state
    machine) at a listener and an established connection: no exception, bounded state,
    and the listener still takes connections that carry data afterwards."""
    import random
    rng = random.Random(11)
    k, wire, a, b = pair()
    c, srv, lst = established(k, a, b)
    assert c.ep is not None and srv.ep is not None
    wire.keep_log = False
    base_seq, base_ack = srv.ep.rcv_nxt, srv.ep.snd_nxt
    for i in range(20000):
        kind = rng.randrange(4)
        sport = c.lport if kind < 2 else rng.randrange(1, 65536)
        dport = 80 if rng.random() < 0.8 else rng.randrange(1, 65536)
        seq = base_seq + rng.randrange(-70000, 70000) if kind == 0 else rng.randrange(1 << 32)
        ack = base_ack + rng.randrange(-70000, 70000) if kind == 0 else rng.randrange(1 << 32)
        flags = rng.randrange(256)
        opts = bytes(rng.randrange(256) for _ in range(rng.choice([0, 4, 12, 20, 40])))
        data = os.urandom(rng.choice([0, 0, 1, 100, 1448]))
        raw = w.build(A, B, sport, dport, seq, ack, flags, rng.randrange(65536), opts, data)
        if kind == 3:
            raw = raw[:rng.randrange(len(raw) + 1)]
        b.layer.input(A, B, raw)
        if i % 100 == 0:
            k.advance(10 * MS)
    assert len(b.layer.conns) <= 1 + 17 + b.layer.time_waits
    # (Blind in-window data or FINs may have reached the real connection, as they would
    # on any TCP; half-open endpoints were reset by stack A, which never sent those SYNs.)
    k.advance(300 * S)
    assert not b.layer.half_open
    c2 = connect(a, B, 80)
    k.run_until(lambda: c2.state == TCP_ESTABLISHED and bool(lst.acceptq), 60 * S)
    s2 = accept(lst)
    data = os.urandom(100_000)
    assert transfer(k, c2, s2, data) == data


@pytest.mark.parametrize("cc", [b"cubic", b"reno"])
def test_congestion_response(cc: bytes) -> None:
    """One loss after slow start on a link with a bottleneck: CUBIC sets ssthresh to
    0.7 cwnd (RFC 9438 4.6), NewReno to half the flight (RFC 5681 3.1 / 6582); both then
    grow cwnd again in congestion avoidance."""
    k, wire, a, b = pair(delay=20 * MS)
    wire.keep_log = False
    c, srv, _ = established(k, a, b)
    c.setsockopt(TASK, SOL_TCP, TCP_CONGESTION, cc)
    ep = c.ep
    assert ep is not None
    seen = {"cwnd": 0, "flight": 0, "dropped": False, "ssthresh": 0}

    def drop(src: bytes, dst: bytes, seg: w.Segment) -> bool:
        if src == A and seg.data and not seen["dropped"] and ep.cwnd >= 60 * ep.mss:
            seen["dropped"] = True
            return True
        return False
    wire.drop = drop
    reduce = ep._reduce

    def spy() -> None:                      # the state at the congestion event
        seen.update(cwnd=ep.cwnd, flight=ep.snd_max - ep.snd_una)
        reduce()
        seen["ssthresh"] = ep.ssthresh
    ep._reduce = spy  # type: ignore[method-assign]
    after: list[int] = []

    def watch() -> None:
        if seen["dropped"] and not ep.in_recovery and ep.ssthresh < 1 << 29:
            after.append(ep.cwnd)
    data = os.urandom(6 << 20)
    assert transfer(k, c, srv, data, on_step=watch) == data
    assert seen["dropped"] and a.layer.fast_retrans == 1 and a.layer.timeouts == 0
    if cc == b"cubic":
        assert seen["ssthresh"] == int(seen["cwnd"] * 0.7)
    else:
        assert seen["ssthresh"] == seen["flight"] // 2
    assert ep.ssthresh == seen["ssthresh"]
    assert after and max(after) > ep.ssthresh + 8 * ep.mss   # growth after recovery


def test_scoreboard_reassembly_cubic_units() -> None:
    from pyvisor.sentry.socket.netstack.tcpsack import Cubic, Reassembly, Scoreboard
    sb = Scoreboard()
    assert sb.add(100, 200) and sb.add(300, 400) and not sb.add(120, 180)
    assert sb.add(200, 300) and sb.blocks == [[100, 400]] and sb.bytes == 300
    sb.add(500, 600)
    assert sb.skip(150) == 400 and sb.skip(450) == 450 and sb.next_start(450, 0) == 500
    assert sb.lost_edge(0, 100) == 100            # 400 bytes above 100 > 2 * 100
    assert sb.holes(0, 500) == 100 + 100 and sb.sacked_below(550) == 350
    sb.trim(350)
    assert sb.blocks == [[350, 400], [500, 600]] and sb.bytes == 150
    rq = Reassembly()
    rq.insert(20, b"c" * 10)
    rq.insert(40, b"e" * 10)
    rq.insert(15, b"x" * 30)                      # overlaps both: only the gaps are kept
    assert rq.bytes == 35 and rq.sacks[0] == (15, 50)
    assert b"".join(rq.drain(10)) == b""          # a hole at 10..15
    assert b"".join(rq.drain(15)) == b"xxxxx" + b"c" * 10 + b"x" * 10 + b"e" * 10
    assert not rq and rq.bytes == 0 and rq.sacks == []
    # CUBIC: ssthresh = 0.7 W; the window returns to W_max after K seconds
    # (K = cbrt(W_max (1 - beta) / C) in segments, RFC 9438 4.2) and then grows past it.
    c = Cubic()
    mss, w0 = 1000, 100_000
    ss = c.reduce(w0, mss)
    assert ss == 70_000
    k = (100 * 0.3 / 0.4) ** (1 / 3)
    cwnd, t = ss, 0
    while t < int(k * 1e9) - 10**8:
        cwnd = c.grow(cwnd, mss, mss, 10**7, 10**9 + t)
        t += 10**6
    assert 0.9 * w0 <= cwnd <= w0 + 2 * mss
    for _ in range(3000):
        cwnd = c.grow(cwnd, mss, mss, 10**7, 10**9 + t)
        t += 10**6
    assert cwnd > w0 * 1.05


# -- close(2) with data still queued (issue #8: the nic echo test stalled) -------------------


def _echo_then_close(k, wire, a, b, size: int = 100_000,  # type: ignore[no-untyped-def]
                     port: int = 80):
    """tests/programs/net_peer.c tcpecho against tcpask: the client writes `size` bytes
    then SHUT_WR; the server reads to EOF, writes the bytes back and closes at once, its
    echo mostly still queued (cwnd-limited behind a 5 ms wire).  Returns the client,
    the data, what the client read so far, and the server's endpoint.  (The trace of the
    failing nic run: the server wrote 65536 + 34464 bytes and closed with 84 KB unsent.)"""
    c, srv, _ = established(k, a, b, port)
    data = os.urandom(size)
    sent, got, echo = 0, bytearray(), bytearray()
    while not srv.shut & 1:                    # the server reads to EOF (the FIN is in)
        if sent < size:
            sent += send_some(c, data[sent:sent + (1 << 16)])
            if sent == size:
                c.shutdown(TASK, SHUT_WR)
        echo += recv_some(srv)
        assert k.step(), "the upload stalled"
    echo += recv_some(srv)
    assert bytes(echo) == data
    for off in range(0, size, 1 << 16):      # then writes it all back, and closes
        assert send_some(srv, bytes(echo[off:off + (1 << 16)])) == min(1 << 16, size - off)
    assert srv._try_recv(10, 0).data == b""                  # the server read its EOF
    ep = srv.ep
    assert ep is not None and len(ep.sndq) > 20_000          # most of the echo still queued
    srv.release(None)  # type: ignore[arg-type]                # close(2), the process exits
    return c, data, got, ep


def test_close_with_queued_data_sends_it_then_fin() -> None:
    """Linux: close() with unsent data (and nothing unread, no SO_LINGER {1, 0}) returns
    at once; the kernel still sends the data, then the FIN; no reset."""
    k, wire, a, b = pair(seed=3, delay=5 * MS)
    wire.reorder = 0.1
    c, data, got, ep = _echo_then_close(k, wire, a, b)
    assert ep.state == TCP_LAST_ACK and ep.fin_queued
    assert b.layer.orphans_sending() == [ep] and ep.key in b.layer.conns
    while True:
        got += recv_some(c)
        if c.shut & 1 and not c.rcv_len:
            break
        assert k.step(), "the closed socket's data or FIN never came"
    assert bytes(got) == data and c._try_recv(10, 0).data == b""
    k.run_until(lambda: not b.layer.orphans_sending())       # the FIN's ACK
    assert not any(s.flags & w.RST for _x, _y, s in wire.sent)
    assert ep.key not in b.layer.conns


class _LingerKernel:
    """What Kernel.linger_tcp uses of the Sentry's Kernel, on the harness's fake clock:
    timers run by _fire_timers, and _poll(timeout) is the wire delivering meanwhile."""

    def __init__(self, k, stack) -> None:  # type: ignore[no-untyped-def]
        import select
        self.k = k
        self.network = type("N", (), {"stack": stack})()
        self.epoll = select.epoll()
        self._platform_fd = os.eventfd(0)
        self.epoll.register(self._platform_fd, select.EPOLLIN)
        self.polls = 0

    def now(self) -> int:
        return self.k.now()

    def _fire_timers(self) -> float:
        import heapq
        self.k.advance(0)
        heap = self.k.heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return -1 if not heap else max(0.0, (heap[0][0] - self.k.now()) / 1e9)

    def _poll(self, timeout: float) -> None:
        self.polls += 1
        self.k.t += int(timeout * 1e9)

    def close(self) -> None:
        self.epoll.close()
        os.close(self._platform_fd)


def test_sentry_exit_lingers_until_closed_sockets_drained() -> None:
    """The Sentry is the kernel: when the sandbox's last task exits right after close(),
    Kernel.run's linger_tcp keeps the stack going until the data and FIN are acknowledged
    (before: the Sentry exited and the peer stalled with the echo cut short, no FIN)."""
    from pyvisor.sentry.kernel.kernel import Kernel
    k, wire, a, b = pair(seed=4, delay=5 * MS)
    wire.reorder = 0.1
    c, data, got, ep = _echo_then_close(k, wire, a, b)
    lk = _LingerKernel(k, b)
    try:
        Kernel.linger_tcp(lk)  # type: ignore[arg-type]
        assert lk.polls > 0 and b.layer.orphans_sending() == []
        got += recv_some(c)
        assert bytes(got) == data and c.shut & 1 and c._try_recv(10, 0).data == b""
        assert not any(s.flags & w.RST for _x, _y, s in wire.sent)
        # A peer that went silent: the linger is bounded, then a reset.
        c2, _data, _got, ep2 = _echo_then_close(k, wire, a, b, 60_000, 81)
        wire.drop = lambda src, dst, seg: True          # the link went down
        start = k.now()
        n = len(wire.sent)
        Kernel.linger_tcp(lk, 3 * S)  # type: ignore[arg-type]
        assert 3 * S <= k.now() - start < 4 * S
        assert b.layer.orphans_sending() == [] and ep2.key not in b.layer.conns
        assert [s.flags for x, _y, s in wire.sent[n:] if x == B][-1] & w.RST
        assert c2.state != TCP_CLOSE                     # (it never heard a thing)
    finally:
        lk.close()
