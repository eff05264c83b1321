"""A few instructions Python cannot execute itself: rdtsc, cpuid, xgetbv.

They live on one page of the Sentry's own, written and then made read+exec at
import, before the Sentry's seccomp filter forbids PROT_EXEC (seccomp/filters.py):
so every module using them imports this one at start-up.  None of them touches
memory other than the caller's output buffer.
"""

from __future__ import annotations

import ctypes
import mmap
from typing import Callable

from pyvisor.abi.linux.mman import PAGE_SIZE, PROT_EXEC, PROT_READ

_CODE = {
    # uint64_t rdtsc(void): lfence; rdtsc; shl $32, %rdx; or %rdx, %rax; ret
    "rdtsc": "0faee8 0f31 48c1e220 4809d0 c3",
    # void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4])
    "cpuid": "53 89f8 89f1 4989d0 0fa2 418900 41895804 41894808 4189500c 5b c3",
    # uint64_t xgetbv(uint32_t index)
    "xgetbv": "89f9 0f01d0 48c1e220 4809d0 c3",
}


def _load() -> dict[str, int]:
    """Writes the code onto a fresh page, makes it read+exec; {name: address}."""
    page = mmap.mmap(-1, PAGE_SIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    addrs: dict[str, int] = {}
    base = ctypes.addressof(ctypes.c_char.from_buffer(page))
    off = 0
    for name, hexcode in _CODE.items():
        code = bytes.fromhex(hexcode.replace(" ", ""))
        page[off:off + len(code)] = code
        addrs[name] = base + off
        off = (off + len(code) + 15) & ~15
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mprotect(ctypes.c_void_p(base), PAGE_SIZE, PROT_READ | PROT_EXEC) != 0:
        raise OSError(ctypes.get_errno(), "mprotect of the native page")
    _keep.append(page)
    return addrs


_keep: list[mmap.mmap] = []    # the page stays mapped for the life of the process
_ADDRS = _load()

rdtsc: Callable[[], int] = ctypes.CFUNCTYPE(ctypes.c_uint64)(_ADDRS["rdtsc"])
_cpuid = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32,
                          ctypes.POINTER(ctypes.c_uint32))(_ADDRS["cpuid"])
_xgetbv = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint32)(_ADDRS["xgetbv"])


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """(eax, ebx, ecx, edx) of CPUID."""
    out = (ctypes.c_uint32 * 4)()
    _cpuid(leaf, subleaf, out)
    return out[0], out[1], out[2], out[3]


def xgetbv(index: int = 0) -> int:
    """XCR`index` (XCR0: the state components the OS enabled).  Only where
    CPUID.1:ECX.OSXSAVE says so; callers check."""
    return int(_xgetbv(index))
