"""The syscall-argument accessors truncate and sign-extend as SYSCALL_DEFINE's casts do."""

from __future__ import annotations

import pytest

from pyvisor.sentry.arch.registers import Registers
from pyvisor.sentry.arch.syscall_args import MAX_RW_COUNT, SyscallArguments

M64 = (1 << 64) - 1


def args(*vals: int) -> SyscallArguments:
    r = Registers()
    for name, v in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), vals):
        setattr(r, name, v & M64)
    return SyscallArguments(r)


@pytest.mark.parametrize("raw, i32, u32, i64", [
    (0, 0, 0, 0),
    (0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF),
    (0x80000000, -(1 << 31), 0x80000000, 0x80000000),
    (0xFFFFFFFF, -1, 0xFFFFFFFF, 0xFFFFFFFF),
    (0x1_0000_0005, 5, 5, 0x1_0000_0005),              # high bits of an int are dropped
    (M64, -1, 0xFFFFFFFF, -1),
    (1 << 63, 0, 0, -(1 << 63)),
])
def test_integer_accessors(raw: int, i32: int, u32: int, i64: int) -> None:
    a = args(raw)
    assert (a.int32(0), a.fd(0), a.uint32(0)) == (i32, i32, u32)
    assert (a.int64(0), a.offset(0)) == (i64, i64)
    assert a.uint64(0) == a.pointer(0) == a.size(0) == a.raw(0) == raw


def test_count_mode_and_positions() -> None:
    a = args(1, 2, 3, 4, 5, M64)
    assert [a.raw(i) for i in range(5)] == [1, 2, 3, 4, 5]
    assert a.count(5) == MAX_RW_COUNT and args(100).count(0) == 100
    assert args(0o1_170_755).mode(0) == 0o170_755 & 0xFFFF
    with pytest.raises(IndexError):
        a.raw(6)
