"""TCP segments on the wire: the header, its options, the checksum and initial sequence
numbers.  Linux: include/net/tcp.h, net/ipv4/tcp_output.c (tcp_options_write),
tcp_input.c (tcp_parse_options), net/core/secure_seq.c.  RFC 9293 section 3.1,
RFC 7323 (window scale, timestamps), RFC 2018 (SACK), RFC 6528 (ISNs).

Parsing never raises: a segment too short, with a bad data offset, a bad checksum
or malformed options is None (options past a malformed one are ignored, as Linux
does).  Data only: no state.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

try:    # hashlib.blake2s itself, without hashlib's load of OpenSSL (~3 ms of every start-up)
    from _blake2 import blake2s
except ImportError:     # pragma: no cover - an interpreter without CPython's own module
    from hashlib import blake2s

# Header flags.  From <net/tcp.h> (TCPHDR_*).
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

# Option kinds.  From <net/tcp.h> (TCPOPT_*).
OPT_EOL, OPT_NOP, OPT_MSS, OPT_WS, OPT_SACK_PERM, OPT_SACK, OPT_TS = 0, 1, 2, 3, 4, 5, 8

HDR = struct.Struct("!HHIIBBHHH")          # sport dport seq ack doff flags window csum urp
HDR_LEN = HDR.size                          # 20
MASK = 0xFFFFFFFF
TS_OPT_LEN = 12                             # NOP NOP TS(10), as Linux aligns it
MAX_WSCALE = 14                             # RFC 7323 section 2.3


@dataclass(slots=True)
class Segment:
    """One parsed TCP segment (sequence numbers as on the wire, 32 bits)."""

    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int                             # unscaled, as in the header
    data: bytes
    mss: int = 0                            # options (0/None: absent)
    wscale: int | None = None
    sack_perm: bool = False
    ts: tuple[int, int] | None = None       # (TSval, TSecr)
    sacks: list[tuple[int, int]] = field(default_factory=list)
    urg_ptr: int = 0                        # the urgent pointer (with URG)

    @property
    def seg_len(self) -> int:
        """SEG.LEN: the data plus one for each of SYN and FIN."""
        return len(self.data) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)


def pseudo_header(src: bytes, dst: bytes, length: int) -> bytes:
    """The IPv4 (RFC 9293 3.1) or IPv6 (RFC 8200 8.1) pseudo-header for protocol 6."""
    if len(src) == 4:
        return src + dst + struct.pack("!xBH", 6, length)
    return src + dst + struct.pack("!I3xB", length, 6)


def ones_sum(data: bytes) -> int:
    """The 16-bit one's-complement sum of `data` (odd lengths padded with a zero).
    Since 2**16 == 1 (mod 0xFFFF), the sum of the 16-bit words folds to the number
    itself modulo 0xFFFF: one bignum operation in C instead of a loop in Python."""
    if len(data) & 1:
        data += b"\0"
    r = int.from_bytes(data, "big") % 0xFFFF
    if r == 0 and any(data):
        return 0xFFFF                       # one's complement has two zeros; keep "-0"
    return r


def checksum(src: bytes, dst: bytes, seg: bytes) -> int:
    """The TCP checksum of `seg` (its checksum field zero) between `src` and `dst`."""
    return ~ones_sum(pseudo_header(src, dst, len(seg)) + seg) & 0xFFFF


def parse(src: bytes, dst: bytes, raw: bytes) -> Segment | None:
    """The segment in `raw`, or None when it is malformed or its checksum is wrong."""
    if len(raw) < HDR_LEN:
        return None
    sport, dport, seq, ack, doff, flags, window, _csum, urp = HDR.unpack_from(raw)
    hlen = (doff >> 4) * 4
    if hlen < HDR_LEN or hlen > len(raw):
        return None
    if ones_sum(pseudo_header(src, dst, len(raw)) + raw) != 0xFFFF:
        return None
    seg = Segment(sport, dport, seq, ack, flags, window, raw[hlen:])
    if flags & URG:
        seg.urg_ptr = urp
    if hlen > HDR_LEN:
        _parse_options(seg, raw[HDR_LEN:hlen])
    return seg


def _parse_options(seg: Segment, opts: bytes) -> None:
    """tcp_parse_options: MSS, window scale and SACK-permitted count only on a SYN."""
    i, n = 0, len(opts)
    syn = bool(seg.flags & SYN)
    while i < n:
        kind = opts[i]
        if kind == OPT_EOL:
            return
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            return
        ln = opts[i + 1]
        if ln < 2 or i + ln > n:
            return
        body = opts[i + 2:i + ln]
        if kind == OPT_MSS and ln == 4 and syn:
            seg.mss = struct.unpack("!H", body)[0]
        elif kind == OPT_WS and ln == 3 and syn:
            seg.wscale = min(body[0], MAX_WSCALE)
        elif kind == OPT_SACK_PERM and ln == 2 and syn:
            seg.sack_perm = True
        elif kind == OPT_TS and ln == 10:
            seg.ts = struct.unpack("!II", body)
        elif kind == OPT_SACK and (ln - 2) % 8 == 0 and ln > 2:
            seg.sacks = [struct.unpack_from("!II", body, k) for k in range(0, ln - 2, 8)]
        i += ln


def syn_options(mss: int, wscale: int | None, sack_perm: bool,
                ts: tuple[int, int] | None) -> bytes:
    """A SYN's options in Linux's order: MSS, SACK-permitted + timestamps, NOP + WS."""
    out = struct.pack("!BBH", OPT_MSS, 4, mss)
    if ts is not None:
        out += (struct.pack("!BB", OPT_SACK_PERM, 2) if sack_perm else b"\1\1") \
            + struct.pack("!BBII", OPT_TS, 10, ts[0], ts[1])
    elif sack_perm:
        out += struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK_PERM, 2)
    if wscale is not None:
        out += struct.pack("!BBBB", OPT_NOP, OPT_WS, 3, wscale)
    return out


def data_options(ts: tuple[int, int] | None, sacks: list[tuple[int, int]]) -> bytes:
    """Timestamps (NOP NOP TS) and up to 4 SACK blocks (3 beside timestamps)."""
    out = b""
    if ts is not None:
        out = struct.pack("!BBBBII", OPT_NOP, OPT_NOP, OPT_TS, 10, ts[0], ts[1])
    if sacks:
        sacks = sacks[:3 if ts is not None else 4]
        out += struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(sacks))
        for left, right in sacks:
            out += struct.pack("!II", left & MASK, right & MASK)
    return out


def build(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
          window: int, options: bytes = b"", data: bytes = b"", urg_ptr: int = 0) -> bytes:
    """A whole segment with its checksum.  Preconditions: len(options) % 4 == 0, <= 40."""
    hdr = HDR.pack(sport, dport, seq & MASK, ack & MASK, ((HDR_LEN + len(options)) // 4) << 4,
                   flags, window, 0, urg_ptr) + options
    seg = hdr + data
    csum = checksum(src, dst, seg)
    return seg[:16] + csum.to_bytes(2, "big") + seg[18:]


class ISNGenerator:
    """RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, secret), where M
    is a 4-microsecond clock and F a keyed hash (BLAKE2s here; Linux uses SipHash),
    so ISNs of one 4-tuple grow with time and those of others cannot be guessed.
    Linux: secure_tcp_seq.  The secret is made once per stack."""

    def __init__(self) -> None:
        self.secret = os.urandom(16)

    def cookie_hash(self, src: bytes, dst: bytes, sport: int, dport: int, count: int,
                    c: int) -> int:
        """cookie_hash: a keyed hash of the 4-tuple and a minute counter (two keys)."""
        h = blake2s(src + dst + struct.pack("!HHIB", sport, dport, count & MASK, c),
                    key=self.secret, digest_size=4).digest()
        return int.from_bytes(h, "big")

    def isn(self, laddr: bytes, lport: int, raddr: bytes, rport: int, now_ns: int) -> int:
        h = blake2s(laddr + raddr + struct.pack("!HH", lport, rport),
                            key=self.secret, digest_size=4).digest()
        return (int.from_bytes(h, "big") + now_ns // 4000) & MASK


__all__ = ["Segment", "parse", "build", "checksum", "syn_options", "data_options",
           "ISNGenerator", "FIN", "SYN", "RST", "PSH", "ACK", "URG", "MASK", "TS_OPT_LEN"]
