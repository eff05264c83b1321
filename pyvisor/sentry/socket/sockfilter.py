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

Programs are checked at attach time as bpf_check_classic checks them (known
opcodes, jumps inside the program, a return at the end, scratch indices,
no constant division by zero); they only jump forward, so a run ends within
len(program) steps.  Used by UDP, raw and packet sockets (netstack) and by netlink
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
_M32 = 0xFFFFFFFF

_ALU = (S.BPF_ADD, S.BPF_SUB, S.BPF_MUL, S.BPF_DIV, S.BPF_AND, S.BPF_OR, S.BPF_XOR,
        S.BPF_LSH, S.BPF_RSH, S.BPF_MOD)
_JUMPS = frozenset(S.BPF_JMP | op | src for op in (S.BPF_JEQ, S.BPF_JGE, S.BPF_JGT,
                                                   S.BPF_JSET) for src in (S.BPF_K, S.BPF_X))
_CODES = frozenset(
    [S.BPF_ALU | op | src for op in _ALU for src in (S.BPF_K, S.BPF_X)]
    + [S.BPF_LD | size | mode for size in (S.BPF_W, S.BPF_H, S.BPF_B)
       for mode in (S.BPF_ABS, S.BPF_IND)]
    + [S.BPF_ALU | S.BPF_NEG, S.BPF_LD | S.BPF_W | S.BPF_LEN, S.BPF_LDX | S.BPF_W | S.BPF_LEN,
       S.BPF_LD | S.BPF_IMM, S.BPF_LDX | S.BPF_IMM, S.BPF_LD | S.BPF_MEM,
       S.BPF_LDX | S.BPF_MEM, S.BPF_LDX | S.BPF_B | S.BPF_MSH, S.BPF_ST, S.BPF_STX,
       S.BPF_MISC | S.BPF_TAX, S.BPF_MISC | S.BPF_TXA, S.BPF_RET | S.BPF_K,
       S.BPF_RET | S.BPF_A, S.BPF_JMP | S.BPF_JA]
    + list(_JUMPS))
_MEM = (S.BPF_LD | S.BPF_MEM, S.BPF_LDX | S.BPF_MEM, S.BPF_ST, S.BPF_STX)
_SIZES = {S.BPF_W: 4, S.BPF_H: 2, S.BPF_B: 1}

Program = tuple[tuple[int, int, int, int], ...]


@dataclass(slots=True)
class Packet:
    """What a filter sees of one packet."""

    data: bytes                  # from the socket's offset 0
    net: bytes = b""             # from the network header
    ll: bytes = b""              # from the link-layer header
    protocol: int = 0            # the ethertype (SKF_AD_PROTOCOL loads it in host order)
    pkttype: int = 0
    ifindex: int = 0


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
    n = len(insns)
    for pc, (code, jt, jf, k) in enumerate(insns):
        if code not in _CODES:
            raise SyscallError(Errno.EINVAL)
        if code in (S.BPF_ALU | S.BPF_DIV | S.BPF_K, S.BPF_ALU | S.BPF_MOD | S.BPF_K) and k == 0:
            raise SyscallError(Errno.EINVAL)
        if code in (S.BPF_ALU | S.BPF_LSH | S.BPF_K, S.BPF_ALU | S.BPF_RSH | S.BPF_K) \
                and k >= 32:
            raise SyscallError(Errno.EINVAL)
        if code in _MEM and k >= S.BPF_MEMWORDS:
            raise SyscallError(Errno.EINVAL)
        if code == S.BPF_JMP | S.BPF_JA and k >= n - pc - 1:
            raise SyscallError(Errno.EINVAL)
        if code in _JUMPS and (pc + jt + 1 >= n or pc + jf + 1 >= n):
            raise SyscallError(Errno.EINVAL)
    if insns[-1][0] not in (S.BPF_RET | S.BPF_K, S.BPF_RET | S.BPF_A):
        raise SyscallError(Errno.EINVAL)
    return tuple(insns)


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
    a = x = 0
    mem = [0] * S.BPF_MEMWORDS
    pc = 0
    plen = len(p.data)
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 7
        if cls == S.BPF_RET:
            return k if code & S.BPF_A == 0 else a
        if cls == S.BPF_LD:
            mode = code & 0xE0
            if mode in (S.BPF_ABS, S.BPF_IND):
                off = k - (1 << 32) if k & 0x80000000 else k
                if mode == S.BPF_IND:
                    off += x
                size = _SIZES[code & 0x18]
                if mode == S.BPF_ABS and SKF_AD_OFF <= off < 0:
                    a = _ancillary(p, off - SKF_AD_OFF) if off - SKF_AD_OFF < SKF_AD_MAX \
                        else 0
                    continue
                v = _load(p, off, size)
                if v is None:
                    return 0
                a = v
            elif mode == S.BPF_LEN:
                a = plen
            elif mode == S.BPF_IMM:
                a = k
            else:
                a = mem[k]
        elif cls == S.BPF_LDX:
            mode = code & 0xE0
            if mode == S.BPF_MSH:
                v = _load(p, k - (1 << 32) if k & 0x80000000 else k, 1)
                if v is None:
                    return 0
                x = (v & 0xF) << 2
            elif mode == S.BPF_LEN:
                x = plen
            elif mode == S.BPF_IMM:
                x = k
            else:
                x = mem[k]
        elif cls == S.BPF_ST:
            mem[k] = a
        elif cls == S.BPF_STX:
            mem[k] = x
        elif cls == S.BPF_JMP:
            op = code & 0xF0
            if op == S.BPF_JA:
                pc += k
                continue
            v = x if code & S.BPF_X else k
            if op == S.BPF_JEQ:
                cond = a == v
            elif op == S.BPF_JGT:
                cond = a > v
            elif op == S.BPF_JGE:
                cond = a >= v
            else:
                cond = bool(a & v)
            pc += jt if cond else jf
        elif cls == S.BPF_ALU:
            op = code & 0xF0
            if op == S.BPF_NEG:
                a = -a & _M32
                continue
            v = x if code & S.BPF_X else k
            if op == S.BPF_ADD:
                a = (a + v) & _M32
            elif op == S.BPF_SUB:
                a = (a - v) & _M32
            elif op == S.BPF_MUL:
                a = (a * v) & _M32
            elif op in (S.BPF_DIV, S.BPF_MOD):
                if v == 0:
                    return 0          # division by X == 0 ends the program with 0
                a = a // v if op == S.BPF_DIV else a % v
            elif op == S.BPF_AND:
                a &= v
            elif op == S.BPF_OR:
                a |= v
            elif op == S.BPF_XOR:
                a ^= v
            elif op == S.BPF_LSH:
                a = (a << (v & 31)) & _M32
            else:
                a >>= v & 31
        else:
            x, a = (a, a) if code & 0xF8 == S.BPF_TAX else (x, x)


__all__ = ["Packet", "SO_ATTACH_FILTER", "SO_DETACH_FILTER", "SO_LOCK_FILTER", "attach", "run",
           "verify"]
