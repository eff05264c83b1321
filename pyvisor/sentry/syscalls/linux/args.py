"""Typed access to syscall arguments (amd64: rdi, rsi, rdx, r10, r8, r9).

Accessors truncate and sign-extend as the kernel does.  A handler reads them
once at the top, so each argument is fetched once (no double fetch).
"""

from __future__ import annotations

import struct

from pyvisor.sentry.platform.ptrace.binding import UserRegs

_M32 = 0xFFFFFFFF


def _nth(r: UserRegs, i: int) -> int:
    if i == 0:
        return int(r.rdi)
    if i == 1:
        return int(r.rsi)
    if i == 2:
        return int(r.rdx)
    if i == 3:
        return int(r.r10)
    if i == 4:
        return int(r.r8)
    return int(r.r9)


def int32(r: UserRegs, i: int) -> int:
    v = _nth(r, i) & _M32
    return v - (1 << 32) if v & 0x80000000 else v


def uint32(r: UserRegs, i: int) -> int:
    return _nth(r, i) & _M32


def int64(r: UserRegs, i: int) -> int:
    v = _nth(r, i)
    return v - (1 << 64) if v & (1 << 63) else v


def uint64(r: UserRegs, i: int) -> int:
    return _nth(r, i)


pointer = uint64
size = uint64


def pack_i32s(vals: list[int]) -> bytes:
    return struct.pack(f"<{len(vals)}i", *vals)
