"""The bookkeeping of a TCP connection's loss recovery, apart from its state machine:
the sender's SACK scoreboard (RFC 2018, RFC 6675), the receiver's reassembly queue
with the SACK blocks it reports, and CUBIC's window function (RFC 9438).
Linux: net/ipv4/tcp_input.c (tcp_sacktag_write_queue, tcp_data_queue_ofo),
tcp_cubic.c.  gVisor: pkg/tcpip/transport/tcp (sack_scoreboard.go, segment_queue.go,
cubic.go).

Sequence numbers here are unwrapped (tcpendpoint.py).  Data only, no timers or I/O.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import bisect

DUPACK_THRESH = 3               # RFC 5681 / RFC 6675 DupThresh
OOO_SEGMENTS_MAX = 1024         # pieces a reassembly queue may hold, whatever their size
CUBIC_C = 0.4                   # RFC 9438 4.1
CUBIC_BETA = 0.7
CUBIC_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)


def _first(p: tuple[int, bytes]) -> int:
    return p[0]


class Scoreboard:
    """What the peer SACKed above SND.UNA: sorted, disjoint [start, end) ranges."""

    __slots__ = ("blocks", "bytes")

    def __init__(self) -> None:
        self.blocks: list[list[int]] = []
        self.bytes = 0                          # total SACKed bytes

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def add(self, a: int, b: int) -> bool:
        """Merges [a, b); True if the scoreboard grew."""
        sb = self.blocks
        i = bisect.bisect_left(sb, [a, a])
        if i and sb[i - 1][1] >= a:
            i -= 1
        j = i
        na, nb = a, b
        while j < len(sb) and sb[j][0] <= nb:
            na, nb = min(na, sb[j][0]), max(nb, sb[j][1])
            j += 1
        if j == i + 1 and sb[i] == [na, nb]:
            return False
        removed = sum(y - x for x, y in sb[i:j])
        sb[i:j] = [[na, nb]]
        self.bytes += (nb - na) - removed
        return True

    def trim(self, una: int) -> None:
        """Forgets what SND.UNA passed."""
        sb = self.blocks
        while sb and sb[0][1] <= una:
            a, b = sb.pop(0)
            self.bytes -= b - a
        if sb and sb[0][0] < una:
            self.bytes -= una - sb[0][0]
            sb[0][0] = una

    def clear(self) -> None:
        self.blocks.clear()
        self.bytes = 0

    def skip(self, seq: int) -> int:
        """`seq`, or the end of the SACKed range holding it."""
        for a, b in self.blocks:
            if a <= seq < b:
                return b
            if a > seq:
                break
        return seq

    def next_start(self, seq: int, default: int) -> int:
        """The start of the first SACKed range above `seq` (the end of a hole)."""
        for a, _b in self.blocks:
            if a > seq:
                return a
        return default

    def lost_edge(self, una: int, mss: int) -> int:
        """RFC 6675 IsLost: a hole is lost once more than (DupThresh - 1) * MSS bytes are
        SACKed above it; holes below the returned sequence number are lost."""
        acc = 0
        for a, b in reversed(self.blocks):
            acc += b - a
            if acc > (DUPACK_THRESH - 1) * mss:
                return a
        return una

    def sacked_below(self, nxt: int) -> int:
        n = 0
        for a, b in self.blocks:
            if a >= nxt:
                break
            n += min(b, nxt) - a
        return n

    def holes(self, start: int, high: int) -> int:
        """Bytes in the holes between `start` and `high` (not SACKed)."""
        n = 0
        prev = start
        for a, b in self.blocks:
            if a > prev and prev < high:
                n += min(a, high) - prev
            prev = max(prev, b)
        return n


class Reassembly:
    """Out-of-order data above RCV.NXT: sorted, disjoint (seq, bytes) pieces, and the SACK
    blocks to report, the one holding the newest segment first (RFC 2018 4)."""

    __slots__ = ("pieces", "bytes", "fin", "sacks")

    def __init__(self) -> None:
        self.pieces: list[tuple[int, bytes]] = []
        self.bytes = 0
        self.fin: int | None = None             # sequence number of an early FIN
        self.sacks: list[tuple[int, int]] = []

    def __bool__(self) -> bool:
        return bool(self.pieces)

    def insert(self, seq: int, data: bytes) -> None:
        """Keeps the parts of [seq, seq+len) not held yet (at most OOO_SEGMENTS_MAX
        pieces; the caller keeps them inside the window it advertised)."""
        end = seq + len(data)
        q = self.pieces
        k = bisect.bisect_left(q, seq, key=_first)
        pos = seq
        if k and q[k - 1][0] + len(q[k - 1][1]) > pos:
            pos = q[k - 1][0] + len(q[k - 1][1])
        new: list[tuple[int, bytes]] = []
        while pos < end:
            nxt = q[k][0] if k < len(q) else end
            if nxt > pos:
                stop = min(nxt, end)
                new.append((pos, data[pos - seq:stop - seq]))
                pos = stop
            if k < len(q) and q[k][0] <= pos:
                pos = max(pos, q[k][0] + len(q[k][1]))
                k += 1
        if len(q) + len(new) > OOO_SEGMENTS_MAX:
            return
        for piece in new:
            q.insert(bisect.bisect_left(q, piece[0], key=_first), piece)
            self.bytes += len(piece[1])
        i = bisect.bisect_right(q, seq, key=_first) - 1
        if i < 0:
            return
        lo = i
        while lo > 0 and q[lo - 1][0] + len(q[lo - 1][1]) == q[lo][0]:
            lo -= 1
        hi = i
        while hi + 1 < len(q) and q[hi][0] + len(q[hi][1]) == q[hi + 1][0]:
            hi += 1
        blk = (q[lo][0], q[hi][0] + len(q[hi][1]))
        older = [b for b in self.sacks if not (blk[0] <= b[0] and b[1] <= blk[1])]
        self.sacks = [blk] + older[:3]

    def drain(self, rcv_nxt: int) -> list[bytes]:
        """The data that became in-order at `rcv_nxt` (consecutive pieces)."""
        out: list[bytes] = []
        q = self.pieces
        while q and q[0][0] <= rcv_nxt:
            s0, d0 = q.pop(0)
            self.bytes -= len(d0)
            e0 = s0 + len(d0)
            if e0 > rcv_nxt:
                out.append(d0[rcv_nxt - s0:])
                rcv_nxt = e0
        self.sacks = [(a, b) for a, b in self.sacks if a > rcv_nxt]
        return out


class Cubic:
    """CUBIC's state (RFC 9438): W_max, K and the epoch; windows in bytes."""

    __slots__ = ("wmax", "wlast", "k", "origin", "west", "epoch")

    def __init__(self) -> None:
        self.wmax = 0.0
        self.wlast = 0                          # cwnd at the last congestion event
        self.k = 0.0                            # seconds
        self.origin = 0.0
        self.west = 0.0                         # W_est (the Reno-friendly window)
        self.epoch = 0                          # ns; 0: none yet

    def reduce(self, cwnd: int, mss: int) -> int:
        """A congestion event: remember W_max (lower when it shrank since the last one:
        fast convergence, 4.7) and return ssthresh = beta * cwnd (4.6)."""
        if cwnd < self.wlast:
            self.wmax = cwnd * (1 + CUBIC_BETA) / 2
        else:
            self.wmax = float(cwnd)
        self.wlast = cwnd
        self.epoch = 0
        return max(int(cwnd * CUBIC_BETA), 2 * mss)

    def grow(self, cwnd: int, acked: int, mss: int, rtt_ns: int, now: int) -> int:
        """Congestion avoidance (4.2-4.3): cwnd moves toward W_cubic one RTT ahead,
        W_cubic(t) = C (t - K)^3 + W_max in segments, never below W_est."""
        if not self.epoch:
            self.epoch = now
            wmax = max(self.wmax, float(cwnd))
            self.k = ((wmax - cwnd) / mss / CUBIC_C) ** (1 / 3)
            self.origin = wmax
            self.west = float(cwnd)
        t = (now - self.epoch + rtt_ns) / 1e9
        target = self.origin + CUBIC_C * (t - self.k) ** 3 * mss
        target = min(max(target, float(cwnd)), 1.5 * cwnd)
        self.west += CUBIC_ALPHA * acked * mss / cwnd
        grow = (target - cwnd) * acked / cwnd
        return max(cwnd + int(grow), int(self.west), cwnd)


__all__ = ["Scoreboard", "Reassembly", "Cubic", "DUPACK_THRESH", "OOO_SEGMENTS_MAX"]
