"""The memory file: one memfd holding all shared and file-backed memory.

Linux analogue: the page cache and shmem; gVisor: pgalloc.MemoryFile ("runsc-memory").

Every stub inherits it at host fd STUB_MEMFD, so any range of it can be
mapped into any address space (MAP_SHARED for shared mappings, MAP_PRIVATE
for private file mappings, where the host does the copy-on-write).  The
Sentry maps the whole file once into its own address space, so reading and
writing file data is a memmove or a process_vm_{readv,writev} straight from
this mapping, with no extra copy in Python.

Allocation: extents of power-of-two sizes (>= one page), with a free list per
size; freed extents are punched out of the file so their memory returns to
the host.  Concurrency: Sentry loop only.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from dataclasses import dataclass
from typing import Protocol

from pyvisor.abi.linux.mman import PAGE_SIZE

# 64 GiB of address space; sparse, so only used pages cost memory.  Never grown:
# mm/memory_manager.py maps the range past it (SIGBUS_OFFSET) for file pages past
# end of file, relying on every access there raising SIGBUS.
MEMFILE_SIZE = 1 << 36

_libc = ctypes.CDLL(None, use_errno=True)
_FALLOC_FL_KEEP_SIZE = 1
_FALLOC_FL_PUNCH_HOLE = 2


class MemoryFile:
    """The sandbox's memory file.  Owned by the Kernel."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("pyvisor-memory", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, MEMFILE_SIZE)
        self.map = mmap.mmap(self.fd, MEMFILE_SIZE, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self._bump = 0
        self._free: dict[int, list[int]] = {}

    @staticmethod
    def size_class(n: int) -> int:
        """The capacity of the extent `allocate(n)` gives."""
        return MemoryFile._size_class(max(n, 1))

    @staticmethod
    def _size_class(n: int) -> int:
        size = PAGE_SIZE
        while size < n:
            size <<= 1
        return size

    def allocate(self, n: int) -> tuple[int, int]:
        """An extent of at least `n` bytes: (offset, capacity).  Contents are zero."""
        cap = self._size_class(max(n, 1))
        free = self._free.get(cap)
        if free:
            return free.pop(), cap
        off = (self._bump + cap - 1) & ~(cap - 1) if cap <= (1 << 21) else \
            (self._bump + (1 << 21) - 1) & ~((1 << 21) - 1)
        if off + cap > MEMFILE_SIZE:
            raise MemoryError("memory file exhausted")
        self._bump = off + cap
        return off, cap

    def free(self, off: int, cap: int) -> None:
        """Returns an extent; its pages go back to the host."""
        _libc.fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE,
                        ctypes.c_long(off), ctypes.c_long(cap))
        self._free.setdefault(cap, []).append(off)

    def zero(self, off: int, n: int) -> None:
        """Zeroes a range (punching whole pages, memset for the edges)."""
        if n <= 0:
            return
        head = min(n, -off % PAGE_SIZE)
        if head:
            ctypes.memset(self.base + off, 0, head)
        mid = (n - head) & ~(PAGE_SIZE - 1)
        if mid:
            # Never memset whole pages: that would allocate them (a truncate of a large,
            # sparse file would fill the host's memory with zeros).
            _libc.fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE,
                            ctypes.c_long(off + head), ctypes.c_long(mid))
        tail = n - head - mid
        if tail:
            ctypes.memset(self.base + off + head + mid, 0, tail)


@dataclass(slots=True)
class MappedRange:
    """A run of a file's pages in the memory file."""

    file_offset: int      # offset in the file, page-aligned
    mem_offset: int       # offset in the memory file
    length: int


class Mappable(Protocol):
    """Something mmap can map: memory-file ranges for file pages.  Linux: address_space."""

    def translate(self, offset: int, length: int, writable_shared: bool) -> list[MappedRange]:
        """Memory-file ranges covering [offset, offset+length) of the file.

        Pages past end of file are backed too (zero-filled), as the host does
        for a mapping past EOF of a memfd range that exists.
        """
        ...
