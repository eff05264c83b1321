"""Socket filters: classic BPF programs attached with SO_ATTACH_FILTER.  Linux:
net/core/filter.c (bpf_check_classic, sk_filter_trim_cap), Documentation/networking/filter.rst.

A filter runs over each packet a socket is about to queue and returns how many of
its bytes to keep: 0 drops the packet.  Offset 0 is where the socket's view
of the packet starts (a UDP socket: the UDP header; an IPv4 raw socket and a
SOCK_DGRAM packet socket: the IP header; a SOCK_RAW packet socket: the
Ethernet header); SKF_NET_OFF + k reaches the network header and SKF_LL_OFF + k
the link-layer header from anywhere.  A load past the end ends the program
with 0 (the packet is dropped), as Linux's interpreter does.  Of the ancillary
loads (SKF_AD_OFF + n), the protocol, packet type, interface index, length
and random are served; the others load 0.

Programs are checked at attach time as bpf_check_classic checks them and run by
the classic BPF interpreter seccomp uses too (sentry/bpf.py); a Packet is its
input.  Used by UDP, raw and packet sockets (netstack) and by netlink
sockets, which see a message as a Packet of its bytes alone.  Concurrency: Sentry
loop only.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyvisor.abi.linux import seccomp as S
from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry import bpf
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
SO_LOCK_FILTER = 44
SKF_AD_OFF = -0x1000
SKF_NET_OFF = -0x100000
SKF_LL_OFF = -0x200000
SKF_AD_PROTOCOL, SKF_AD_PKTTYPE, SKF_AD_IFINDEX = 0, 4, 8
SKF_AD_RANDOM = 56
SKF_AD_MAX = 64
SOCK_FPROG = struct.Struct("<H6xQ")          # struct sock_fprog: len, filter
SOCK_FILTER = struct.Struct("<HBBI")         # struct sock_filter: code, jt, jf, k

# bpf_check_classic's whole set: the common opcodes, MOD, packet loads of every size
# (absolute and indirect), lengths and BPF_MSH.
_CODES = bpf.COMMON_CODES | {S.BPF_ALU | S.BPF_MOD | src for src in (S.BPF_K, S.BPF_X)} | {
    S.BPF_LD | size | mode for size in (S.BPF_W, S.BPF_H, S.BPF_B)
    for mode in (S.BPF_ABS, S.BPF_IND)} | {
    S.BPF_LD | S.BPF_W | S.BPF_LEN, S.BPF_LDX | S.BPF_W | S.BPF_LEN,
    S.BPF_LDX | S.BPF_B | S.BPF_MSH}
_SIZES = {S.BPF_W: 4, S.BPF_H: 2, S.BPF_B: 1}

Program = bpf.Program


@dataclass(slots=True)
class Packet:
    """What a filter sees of one packet."""

    data: bytes                  # from the socket's offset 0
    net: bytes = b""             # from the network header
    ll: bytes = b""              # from the link-layer header
    protocol: int = 0            # the ethertype (SKF_AD_PROTOCOL loads it in host order)
    pkttype: int = 0
    ifindex: int = 0

    @property
    def length(self) -> int:
        return len(self.data)

    def load(self, mode: int, k: int, x: int, size: int) -> int | None:
        """bpf.Input: a big-endian load; BPF_ABS at SKF_AD_OFF + n is ancillary data."""
        off = k - (1 << 32) if k & 0x80000000 else k
        if mode == S.BPF_IND:
            off += x
        elif mode == S.BPF_ABS and SKF_AD_OFF <= off < 0:
            which = off - SKF_AD_OFF
            return _ancillary(self, which) if which < SKF_AD_MAX else 0
        return _load(self, off, _SIZES[size])


def attach(t: Task, optval: bytes) -> Program:
    """SO_ATTACH_FILTER's struct sock_fprog -> a checked program.  EINVAL for a bad one,
    EFAULT for an unreadable one."""
    if len(optval) < SOCK_FPROG.size:
        raise SyscallError(Errno.EINVAL)
    n, ptr = SOCK_FPROG.unpack_from(optval)
    if n == 0 or n > S.BPF_MAXINSNS:
        raise SyscallError(Errno.EINVAL)
    raw = t.copy_in(ptr, n * SOCK_FILTER.size)              # EFAULT
    return verify([SOCK_FILTER.unpack_from(raw, i * SOCK_FILTER.size) for i in range(n)])


def verify(insns: list[tuple[int, int, int, int]]) -> Program:
    """bpf_check_classic."""
    return bpf.verify(insns, _CODES)


def _load(p: Packet, off: int, size: int) -> int | None:
    """A big-endian load at `off` (possibly SKF_NET_OFF/SKF_LL_OFF-relative); None past
    the end."""
    if off >= 0:
        buf = p.data
    elif SKF_LL_OFF <= off < SKF_NET_OFF:
        buf, off = p.ll, off - SKF_LL_OFF
    elif SKF_NET_OFF <= off < SKF_AD_OFF:
        buf, off = p.net, off - SKF_NET_OFF
    else:
        return None
    if off + size > len(buf):
        return None
    return int.from_bytes(buf[off:off + size], "big")


def _ancillary(p: Packet, which: int) -> int:
    if which == SKF_AD_PROTOCOL:
        return p.protocol                   # ntohs(skb->protocol)
    if which == SKF_AD_PKTTYPE:
        return p.pkttype
    if which == SKF_AD_IFINDEX:
        return p.ifindex
    if which == SKF_AD_RANDOM:
        return random.getrandbits(32)
    return 0


def run(prog: Program, p: Packet) -> int:
    """Runs a checked program: how many bytes of the packet to keep (0: drop it)."""
    return bpf.run(prog, p)


__all__ = ["Packet", "SO_ATTACH_FILTER", "SO_DETACH_FILTER", "SO_LOCK_FILTER", "attach", "run",
           "verify"]
