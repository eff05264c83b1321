"""Classic BPF socket filters (SO_ATTACH_FILTER).  Linux: net/core/filter.c
(sk_attach_filter, bpf_check_classic, sk_filter_trim_cap), include/linux/filter.h.

A filter runs over each message delivered to the socket: 0 drops it, n keeps its
first n bytes.  Packet loads (BPF_ABS, BPF_IND: bytes, halfwords and words in
network order, BPF_LDX|BPF_MSH) past the end of the message end the program with
0.  Linux's ancillary loads (negative offsets: SKF_AD_*) are refused at attach
(TODO(#10)).  Used by netlink sockets (netlink/__init__.py).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from pyvisor.abi.linux import seccomp as S
from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

# From <asm-generic/socket.h>.
SO_ATTACH_FILTER, SO_DETACH_FILTER, SO_LOCK_FILTER = 26, 27, 44
SOCK_FPROG = struct.Struct("<H6xQ")            # struct sock_fprog: len, filter pointer
SOCK_FILTER = struct.Struct("<HBBI")           # struct sock_filter: code, jt, jf, k
_M32 = 0xFFFFFFFF

Program = tuple[tuple[int, int, int, int], ...]

_ALU = (S.BPF_ADD, S.BPF_SUB, S.BPF_MUL, S.BPF_DIV, S.BPF_MOD, S.BPF_AND, S.BPF_OR, S.BPF_XOR,
        S.BPF_LSH, S.BPF_RSH)
_JUMPS = frozenset(S.BPF_JMP | op | src for op in (S.BPF_JEQ, S.BPF_JGT, S.BPF_JGE, S.BPF_JSET)
                   for src in (S.BPF_K, S.BPF_X))
_LOADS = frozenset(S.BPF_LD | size | mode for size in (S.BPF_W, S.BPF_H, S.BPF_B)
                   for mode in (S.BPF_ABS, S.BPF_IND))
_CODES = frozenset(
    [S.BPF_ALU | op | src for op in _ALU for src in (S.BPF_K, S.BPF_X)] +
    [S.BPF_ALU | S.BPF_NEG, S.BPF_LD | S.BPF_W | S.BPF_LEN, S.BPF_LDX | S.BPF_W | S.BPF_LEN,
     S.BPF_LD | S.BPF_IMM, S.BPF_LDX | S.BPF_IMM, S.BPF_LDX | S.BPF_B | S.BPF_MSH,
     S.BPF_LD | S.BPF_MEM, S.BPF_LDX | S.BPF_MEM, S.BPF_ST, S.BPF_STX,
     S.BPF_MISC | S.BPF_TAX, S.BPF_MISC | S.BPF_TXA, S.BPF_RET | S.BPF_K,
     S.BPF_RET | S.BPF_A, S.BPF_JMP | S.BPF_JA]) | _JUMPS | _LOADS
_MEM = (S.BPF_LD | S.BPF_MEM, S.BPF_LDX | S.BPF_MEM, S.BPF_ST, S.BPF_STX)


def attach(t: Task, optval: bytes) -> Program:
    """sk_attach_filter: reads struct sock_fprog and its program from the caller."""
    if len(optval) < SOCK_FPROG.size:
        raise SyscallError(Errno.EINVAL)
    n, addr = SOCK_FPROG.unpack_from(optval)
    if n == 0 or n > S.BPF_MAXINSNS:
        raise SyscallError(Errno.EINVAL)
    raw = t.copy_in(addr, n * SOCK_FILTER.size)           # EFAULT
    return check([SOCK_FILTER.unpack_from(raw, i * SOCK_FILTER.size) for i in range(n)])


def check(insns: list[tuple[int, int, int, int]]) -> Program:
    """bpf_check_classic: EINVAL for anything Linux refuses."""
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
        if code in _LOADS and k >= 0x80000000:
            raise SyscallError(Errno.EINVAL)     # SKF_AD_* / SKF_NET_OFF: not modelled
    if insns[-1][0] not in (S.BPF_RET | S.BPF_K, S.BPF_RET | S.BPF_A):
        raise SyscallError(Errno.EINVAL)
    return tuple(insns)


def run(prog: Program, data: bytes) -> int:
    """The number of bytes of `data` to keep (0: drop).  Jumps go forward only."""
    a = x = 0
    mem = [0] * S.BPF_MEMWORDS
    pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 7
        if cls == S.BPF_RET:
            return (a if code & S.BPF_A else k) & _M32
        if cls == S.BPF_LD:
            mode = code & 0xE0
            if mode in (S.BPF_ABS, S.BPF_IND):
                off = k + (x if mode == S.BPF_IND else 0)
                size = {S.BPF_W: 4, S.BPF_H: 2, S.BPF_B: 1}[code & 0x18]
                if off + size > len(data):
                    return 0
                a = int.from_bytes(data[off:off + size], "big")
            elif mode == S.BPF_LEN:
                a = len(data)
            elif mode == S.BPF_IMM:
                a = k
            else:
                a = mem[k]
        elif cls == S.BPF_LDX:
            mode = code & 0xE0
            if mode == S.BPF_MSH:
                if k >= len(data):
                    return 0
                x = (data[k] & 0xF) << 2
            elif mode == S.BPF_LEN:
                x = len(data)
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
            cond = {S.BPF_JEQ: a == v, S.BPF_JGT: a > v, S.BPF_JGE: a >= v}.get(op, bool(a & v))
            pc += jt if cond else jf
        elif cls == S.BPF_ALU:
            op = code & 0xF0
            if op == S.BPF_NEG:
                a = -a & _M32
                continue
            v = x if code & S.BPF_X else k
            if op in (S.BPF_DIV, S.BPF_MOD) and v == 0:
                return 0                             # division by X == 0
            a = {S.BPF_ADD: a + v, S.BPF_SUB: a - v, S.BPF_MUL: a * v,
                 S.BPF_DIV: a // v if v else 0, S.BPF_MOD: a % v if v else 0,
                 S.BPF_AND: a & v, S.BPF_OR: a | v, S.BPF_XOR: a ^ v,
                 S.BPF_LSH: a << (v & 31), S.BPF_RSH: a >> (v & 31)}[op] & _M32
        else:
            a, x = (x, x) if code & 0xF8 == S.BPF_TXA else (a, a)
