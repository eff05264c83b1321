"""Classic BPF: checking and running programs, for seccomp filters (kernel/seccomp.py)
and socket filters (socket/sockfilter.py), one interpreter for both as gVisor's
pkg/bpf is.  Linux: net/core/filter.c (bpf_check_classic, check_load_and_stores),
kernel/bpf/core.c (the interpreter classic programs are converted for).

A program is a tuple of (code, jt, jf, k).  verify() checks it as bpf_check_classic
does, over the opcodes its user allows; run() interprets a checked program over an
Input, which serves the loads that read the packet or the seccomp data (absolute,
indirect, the IP header length of BPF_MSH) and its length.  Jumps only go forward,
so a run ends within len(program) steps.  Concurrency: Sentry loop only.
"""

from __future__ import annotations

from typing import Protocol

from pyvisor.abi.linux import seccomp as S
from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

Insn = tuple[int, int, int, int]
Program = tuple[Insn, ...]

_M32 = 0xFFFFFFFF
ALU_OPS = (S.BPF_ADD, S.BPF_SUB, S.BPF_MUL, S.BPF_DIV, S.BPF_AND, S.BPF_OR, S.BPF_XOR,
           S.BPF_LSH, S.BPF_RSH)
COND_JUMPS = frozenset(S.BPF_JMP | op | src for op in (S.BPF_JEQ, S.BPF_JGE, S.BPF_JGT,
                                                       S.BPF_JSET) for src in (S.BPF_K, S.BPF_X))
MEM_CODES = (S.BPF_LD | S.BPF_MEM, S.BPF_LDX | S.BPF_MEM, S.BPF_ST, S.BPF_STX)
RETURNS = (S.BPF_RET | S.BPF_K, S.BPF_RET | S.BPF_A)
# What every classic program may use, whatever reads its input: arithmetic (no MOD),
# immediates, scratch memory, register moves, jumps and returns.
COMMON_CODES = frozenset(
    [S.BPF_ALU | op | src for op in ALU_OPS for src in (S.BPF_K, S.BPF_X)]
    + [S.BPF_ALU | S.BPF_NEG, S.BPF_LD | S.BPF_IMM, S.BPF_LDX | S.BPF_IMM, *MEM_CODES,
       S.BPF_MISC | S.BPF_TAX, S.BPF_MISC | S.BPF_TXA, *RETURNS, S.BPF_JMP | S.BPF_JA]
    + list(COND_JUMPS))


class Input(Protocol):
    """What a program reads."""

    @property
    def length(self) -> int:
        """BPF_LEN: the packet's length (sizeof(seccomp_data) for seccomp)."""
        ...

    def load(self, mode: int, k: int, x: int, size: int) -> int | None:
        """A BPF_ABS/BPF_IND load of BPF_W/H/B `size`, or BPF_MSH's byte; None ends the
        program with 0 (a load past the end of the packet)."""
        ...


def verify(insns: list[Insn] | Program, codes: frozenset[int]) -> Program:
    """bpf_check_classic over the opcodes in `codes`: a known opcode, no constant
    division by zero or shift by 32 or more, scratch indices below BPF_MEMWORDS, jumps
    inside the program, a return at its end, and no scratch word loaded before every
    path to the load stored it.  EINVAL for anything Linux refuses."""
    n = len(insns)
    if n == 0 or n > S.BPF_MAXINSNS:
        raise SyscallError(Errno.EINVAL)
    for pc, (code, jt, jf, k) in enumerate(insns):
        if code not in codes:
            raise SyscallError(Errno.EINVAL)
        if code in (S.BPF_ALU | S.BPF_DIV | S.BPF_K, S.BPF_ALU | S.BPF_MOD | S.BPF_K) and k == 0:
            raise SyscallError(Errno.EINVAL)
        if code in (S.BPF_ALU | S.BPF_LSH | S.BPF_K, S.BPF_ALU | S.BPF_RSH | S.BPF_K) \
                and k >= 32:
            raise SyscallError(Errno.EINVAL)
        if code in MEM_CODES and k >= S.BPF_MEMWORDS:
            raise SyscallError(Errno.EINVAL)
        if code == S.BPF_JMP | S.BPF_JA and k >= n - pc - 1:
            raise SyscallError(Errno.EINVAL)
        if code in COND_JUMPS and (pc + jt + 1 >= n or pc + jf + 1 >= n):
            raise SyscallError(Errno.EINVAL)
    if insns[-1][0] not in RETURNS:
        raise SyscallError(Errno.EINVAL)
    _check_load_and_stores(insns)
    return tuple(insns)


def _check_load_and_stores(insns: list[Insn] | Program) -> None:
    """A scratch word may be loaded only if every path to the load stored it first.
    Linux: check_load_and_stores."""
    masks = [0xFFFF] * len(insns)
    valid = 0
    for pc, (code, jt, jf, k) in enumerate(insns):
        valid &= masks[pc]
        if code in (S.BPF_ST, S.BPF_STX):
            valid |= 1 << k
        elif code in (S.BPF_LD | S.BPF_MEM, S.BPF_LDX | S.BPF_MEM):
            if not valid & (1 << k):
                raise SyscallError(Errno.EINVAL)
        elif code == S.BPF_JMP | S.BPF_JA:
            masks[pc + 1 + k] &= valid
            valid = 0xFFFF
        elif code in COND_JUMPS:
            masks[pc + 1 + jt] &= valid
            masks[pc + 1 + jf] &= valid
            valid = 0xFFFF


def run(prog: Program, inp: Input) -> int:
    """Runs a checked program over `inp`; its 32-bit return value."""
    a = x = 0
    mem = [0] * S.BPF_MEMWORDS
    pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 7
        if cls == S.BPF_RET:
            return k if code & S.BPF_A == 0 else a
        if cls == S.BPF_LD:
            mode = code & 0xE0
            if mode == S.BPF_IMM:
                a = k
            elif mode == S.BPF_MEM:
                a = mem[k]
            elif mode == S.BPF_LEN:
                a = inp.length
            else:
                v = inp.load(mode, k, x, code & 0x18)
                if v is None:
                    return 0
                a = v
        elif cls == S.BPF_LDX:
            mode = code & 0xE0
            if mode == S.BPF_IMM:
                x = k
            elif mode == S.BPF_MEM:
                x = mem[k]
            elif mode == S.BPF_LEN:
                x = inp.length
            else:
                v = inp.load(S.BPF_MSH, k, x, S.BPF_B)
                if v is None:
                    return 0
                x = (v & 0xF) << 2
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
        elif code & 0xF8 == S.BPF_TAX:      # BPF_MISC
            x = a
        else:
            a = x
