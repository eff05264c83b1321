"""The application seccomp verifier and interpreter (sentry/kernel/seccomp.py), without
a sandbox: Linux's rules for what a filter may contain, and how stacked results combine."""

from __future__ import annotations

import struct

import pytest

from pyvisor.abi.linux import seccomp as S
from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.seccomp import Filter, evaluate, run_filter, verify

LD_ABS = S.BPF_LD | S.BPF_W | S.BPF_ABS
RET_K = S.BPF_RET | S.BPF_K
JEQ_K = S.BPF_JMP | S.BPF_JEQ | S.BPF_K


def data(nr: int, *args: int, ip: int = 0x1000) -> bytes:
    a = list(args) + [0] * (6 - len(args))
    return struct.pack("<iIQ6Q", nr, S.AUDIT_ARCH_X86_64, ip, *a)


def ret(k: int) -> tuple[int, int, int, int]:
    return (RET_K, 0, 0, k)


def einval(insns: list[tuple[int, int, int, int]]) -> None:
    with pytest.raises(SyscallError) as e:
        verify(insns)
    assert e.value.errno == Errno.EINVAL


def test_verifier_rejects_what_linux_rejects() -> None:
    einval([])
    einval([ret(0)] * (S.BPF_MAXINSNS + 1))
    einval([(LD_ABS, 0, 0, 2), ret(0)])                      # unaligned
    einval([(LD_ABS, 0, 0, 64), ret(0)])                     # past seccomp_data
    einval([(S.BPF_LD | S.BPF_H | S.BPF_ABS, 0, 0, 0), ret(0)])
    einval([(S.BPF_ALU | S.BPF_MOD | S.BPF_K, 0, 0, 3), ret(0)])
    einval([(S.BPF_ALU | S.BPF_DIV | S.BPF_K, 0, 0, 0), ret(0)])
    einval([(S.BPF_ALU | S.BPF_RSH | S.BPF_K, 0, 0, 32), ret(0)])
    einval([(JEQ_K, 1, 0, 0), ret(0)])                       # jump past the end
    einval([(S.BPF_JMP | S.BPF_JA, 0, 0, 1), ret(0)])
    einval([(S.BPF_LD | S.BPF_IMM, 0, 0, 0)])                # no final RET
    einval([(S.BPF_LD | S.BPF_MEM, 0, 0, 0), ret(0)])        # load before store
    einval([(S.BPF_ST, 0, 0, 16), ret(0)])
    einval([(JEQ_K, 0, 1, 0), (S.BPF_ST, 0, 0, 1), (S.BPF_LD | S.BPF_MEM, 0, 0, 1), ret(0)])
    assert len(verify([ret(0)] * S.BPF_MAXINSNS)) == S.BPF_MAXINSNS


def test_len_loads_become_the_size_of_seccomp_data() -> None:
    prog = verify([(S.BPF_LD | S.BPF_W | S.BPF_LEN, 0, 0, 0), (S.BPF_RET | S.BPF_A, 0, 0, 0)])
    assert run_filter(prog, data(0)) == S.SECCOMP_DATA_SIZE


def test_interpreter_reads_seccomp_data_and_computes_in_32_bits() -> None:
    prog = verify([
        (LD_ABS, 0, 0, 16),                                  # args[0] low word
        (S.BPF_ALU | S.BPF_SUB | S.BPF_K, 0, 0, 1),
        (S.BPF_RET | S.BPF_A, 0, 0, 0)])
    assert run_filter(prog, data(1, 0)) == 0xFFFFFFFF
    assert run_filter(prog, data(1, (7 << 32) | 5)) == 4
    div_x0 = verify([(S.BPF_LDX | S.BPF_IMM, 0, 0, 0), (S.BPF_ALU | S.BPF_DIV | S.BPF_X, 0, 0, 0),
                     ret(S.SECCOMP_RET_ALLOW)])
    assert run_filter(div_x0, data(1)) == 0                  # ends the program with 0


def only(nr: int, action: int, prev: Filter | None = None) -> Filter:
    return Filter(verify([(LD_ABS, 0, 0, 0), (JEQ_K, 0, 1, nr), ret(action),
                          ret(S.SECCOMP_RET_ALLOW)]), prev)


def test_stacked_filters_take_the_lowest_action_and_newest_data() -> None:
    f = only(39, S.SECCOMP_RET_ERRNO | 10)
    f = only(39, S.SECCOMP_RET_ERRNO | 20, f)
    f = only(39, S.SECCOMP_RET_TRACE, f)
    assert evaluate(f, data(39)) == S.SECCOMP_RET_ERRNO | 20
    assert evaluate(f, data(40)) == S.SECCOMP_RET_ALLOW
    f = only(39, S.SECCOMP_RET_KILL_PROCESS, Filter(f.insns, f))
    assert evaluate(f, data(39)) == S.SECCOMP_RET_KILL_PROCESS   # an s32: the lowest


def test_action_cache_holds_only_argument_independent_allows() -> None:
    # nr == 32 (dup) looks at args[0]; everything else is allowed outright.
    prog = verify([(LD_ABS, 0, 0, 0), (JEQ_K, 0, 3, 32), (LD_ABS, 0, 0, 16),
                   (JEQ_K, 0, 1, 42), ret(S.SECCOMP_RET_ERRNO | 1), ret(S.SECCOMP_RET_ALLOW)])
    f = Filter.attach(prog, None)
    assert 32 not in f.allowed and 0 in f.allowed and 39 in f.allowed
    g = Filter.attach(only(39, S.SECCOMP_RET_ERRNO | 1).insns, f)
    assert 39 not in g.allowed and 0 in g.allowed and 32 not in g.allowed
    assert evaluate(g, data(32, 42)) == S.SECCOMP_RET_ERRNO | 1
    assert evaluate(g, data(32, 43)) == S.SECCOMP_RET_ALLOW
