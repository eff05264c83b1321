"""Address spaces.  Linux: mm/mmap.c, mm/mprotect.c, mm/mremap.c; gVisor: mm.MemoryManager.

The Sentry's VMA list is authoritative; the platform's address space (the
stub's host page tables on ptrace) follows it through the platform.AddressSpace
interface: map, unmap, protect, remap.  Private memory is mapped
privately in the stub (so fork's copy-on-write is the host's), shared
anonymous memory as host MAP_SHARED|MAP_ANONYMOUS (shared across fork by the
host), and file pages from the memory file.

Application memory is read and written through the address space (ptrace:
process_vm_{readv,writev}), which honours page protections: a bad pointer is
EFAULT, never a Sentry fault.
Concurrency: Sentry loop only.  Host operations need a stopped thread of the
address space; callers are syscalls of that address space, whose thread is
stopped by definition.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mman import (MAP_PRIVATE, MAP_SHARED,
                                    PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE, page_round_up)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.platform.platform import MAX_USER_ADDRESS, AddressSpace

if TYPE_CHECKING:
    from pyvisor.sentry.mm.memfile import Mappable

MMAP_MIN_ADDR = 0x10000
MMAP_BASE = 0x7FE000000000      # top of the mmap area (grows down); below the stub
TASK_SIZE = MAX_USER_ADDRESS
_CHECK_VMAS_ABOVE = 1 << 16     # copy_in lengths beyond this are checked against the VMAs
_MREMAP_MAYMOVE = 1
_MREMAP_FIXED = 2


class VMAOps(Protocol):
    """Callbacks of a special mapping.  Linux: vm_operations_struct's open and close.

    `opened` runs for every new VMA of the mapping (the first one, a split, a
    fork's copy, an mremap's move), `closed` for every VMA that goes (munmap,
    replacement, exec, exit), so the owner can count them: System V shared
    memory counts its attachments (shm_nattch) this way.  VMAs with ops never
    merge, as in Linux."""

    def opened(self, vma: VMA) -> None: ...

    def closed(self, vma: VMA) -> None: ...


class _SharedAnon:
    """Identity of one shared anonymous region, kept by every VMA (and fork copy) of it."""

    __slots__ = ("__weakref__",)


@dataclass(slots=True)
class VMA:
    """One mapping.  Linux: struct vm_area_struct."""

    start: int                       # page-aligned; start < end
    end: int                         # exclusive
    perms: int                       # PROT_* bits
    shared: bool = False
    mappable: Mappable | None = None  # None: anonymous memory
    offset: int = 0                  # file offset of `start`
    name: bytes = b""                # for /proc/PID/maps
    dev: int = 0
    ino: int = 0
    maxperms: int = PROT_READ | PROT_WRITE | PROT_EXEC
    extra: Any = field(default=None)  # keeps the file description alive
    dontexpand: bool = False         # mremap may not grow it (Linux: VM_DONTEXPAND; the vDSO)
    ops: VMAOps | None = None        # open/close callbacks (SysV shm attachments)

    def split(self, at: int) -> VMA:
        """Cuts at `at`; self keeps [start, at), returns [at, end)."""
        tail = VMA(at, self.end, self.perms, self.shared, self.mappable,
                   self.offset + (at - self.start) if self.mappable is not None or self.shared else 0,
                   self.name, self.dev, self.ino, self.maxperms, self.extra, self.dontexpand,
                   self.ops)
        self.end = at
        if tail.ops is not None:
            tail.ops.opened(tail)
        return tail

    def copy(self) -> VMA:
        """The same mapping in another address space (fork): a new VMA for its ops."""
        v = VMA(self.start, self.end, self.perms, self.shared, self.mappable, self.offset,
                self.name, self.dev, self.ino, self.maxperms, self.extra, self.dontexpand,
                self.ops)
        if v.ops is not None:
            v.ops.opened(v)
        return v


def _closed(v: VMA) -> None:
    if v.ops is not None:
        v.ops.closed(v)


class MemoryManager:
    """One application address space.  Linux: struct mm_struct."""

    def __init__(self, space: AddressSpace) -> None:
        self.space = space                 # the platform's side of this address space
        self.vmas: list[VMA] = []          # sorted by start, non-overlapping
        self.brk_start = 0
        self.brk = 0
        self.users = 0                     # tasks using this mm
        self.argv_start = self.argv_end = self.env_start = self.env_end = 0
        self.auxv: bytes = b""
        self.exe: Any = None
        self.syscall_sites: set[int] = set()   # rips verified to follow a `syscall`

    # -- host access ------------------------------------------------------------------

    def _host(self, op: Callable[..., None], *args: Any) -> None:
        """Runs an address-space operation; its host errno becomes the application's."""
        try:
            op(*args)
        except OSError as e:
            raise SyscallError.from_host(e) from None

    def copy_in(self, addr: int, n: int) -> bytes:
        """Reads [addr, addr+n): EFAULT unless it is all readable user memory.
        A large range is checked against the VMAs first, so a hostile length
        never makes the Sentry allocate more than the application has mapped."""
        if n == 0:
            return b""
        if addr < 0 or addr + n > TASK_SIZE or n < 0:
            raise SyscallError(Errno.EFAULT)
        if n > _CHECK_VMAS_ABOVE:
            self.check_range(addr, n, PROT_READ)
        try:
            data = self.space.read(addr, n)
        except OSError:
            raise SyscallError(Errno.EFAULT) from None
        if len(data) != n:
            raise SyscallError(Errno.EFAULT)
        return data

    def copy_in_partial(self, addr: int, n: int) -> bytes:
        """As much of [addr, addr+n) as is readable (for strings near unmapped pages)."""
        try:
            return self.space.read(addr, n)
        except OSError:
            return b""

    def copy_out(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if n == 0:
            return
        if addr < 0 or addr + n > TASK_SIZE:
            raise SyscallError(Errno.EFAULT)
        try:
            done = self.space.write(addr, data)
        except OSError:
            raise SyscallError(Errno.EFAULT) from None
        if done != n:
            raise SyscallError(Errno.EFAULT)

    def copy_out_from(self, addr: int, local_addr: int, n: int) -> int:
        """Writes from a Sentry-local buffer (e.g. the memory file); EFAULT if none written."""
        if n == 0:
            return 0
        if addr < 0 or addr + n > TASK_SIZE:
            raise SyscallError(Errno.EFAULT)
        try:
            done = self.space.write_from(addr, local_addr, n)
        except OSError:
            raise SyscallError(Errno.EFAULT) from None
        return done

    def copy_in_str(self, addr: int, limit: int) -> bytes:
        """A NUL-terminated string of at most `limit` bytes (including the NUL)."""
        if addr == 0:
            raise SyscallError(Errno.EFAULT)
        out = b""
        while len(out) < limit:
            chunk = min(PAGE_SIZE - (addr % PAGE_SIZE), limit - len(out))
            data = self.copy_in_partial(addr, chunk)
            if not data:
                raise SyscallError(Errno.EFAULT)
            i = data.find(b"\0")
            if i >= 0:
                return out + data[:i]
            out += data
            if len(data) < chunk:
                raise SyscallError(Errno.EFAULT)
            addr += chunk
        raise SyscallError(Errno.ENAMETOOLONG)

    def check_range(self, addr: int, n: int, prot: int) -> None:
        """EFAULT unless [addr, addr+n) is mapped with `prot`.  Used before consuming
        data (a pipe read) that could not be given back if the copy-out failed."""
        if n <= 0:
            return
        end = addr + n
        if addr < 0 or end > TASK_SIZE:
            raise SyscallError(Errno.EFAULT)
        cur = addr
        for v in self._overlapping(addr, end):
            if v.start > cur or v.perms & prot != prot:
                raise SyscallError(Errno.EFAULT)
            cur = v.end
        if cur < end:
            raise SyscallError(Errno.EFAULT)

    def read_u64(self, addr: int) -> int:
        return int(struct.unpack("<Q", self.copy_in(addr, 8))[0])

    # -- VMA bookkeeping --------------------------------------------------------------

    def find(self, addr: int) -> VMA | None:
        """The VMA containing `addr`."""
        i = bisect.bisect_right(self.vmas, addr, key=lambda v: v.start) - 1
        if i >= 0 and self.vmas[i].end > addr:
            return self.vmas[i]
        return None

    def _overlapping(self, start: int, end: int) -> list[VMA]:
        i = bisect.bisect_right(self.vmas, start, key=lambda v: v.start) - 1
        i = max(i, 0)
        out = []
        for v in self.vmas[i:]:
            if v.start >= end:
                break
            if v.end > start:
                out.append(v)
        return out

    def _insert(self, v: VMA) -> None:
        bisect.insort(self.vmas, v, key=lambda x: x.start)

    def _carve(self, start: int, end: int) -> list[VMA]:
        """Splits VMAs so [start, end) is covered by whole VMAs; returns those inside."""
        inside = []
        for v in self._overlapping(start, end):
            if v.start < start:
                tail = v.split(start)
                self._insert(tail)
                v = tail
            if v.end > end:
                tail = v.split(end)
                self._insert(tail)
            inside.append(v)
        return inside

    def _merge(self, start: int, end: int) -> None:
        """Merges VMAs around [start, end) that are adjacent and alike, as Linux's
        vma_merge does, so later calls see one mapping (mremap needs that)."""
        i = max(bisect.bisect_right(self.vmas, start, key=lambda v: v.start) - 2, 0)
        vmas = self.vmas
        while i < len(vmas) - 1:
            a, b = vmas[i], vmas[i + 1]
            if a.start > end:
                break
            if a.end == b.start and a.perms == b.perms and a.shared == b.shared and \
                    a.ops is None and b.ops is None and \
                    a.mappable is b.mappable and a.maxperms == b.maxperms and \
                    a.name == b.name and (a.mappable is None or
                                          a.offset + (a.end - a.start) == b.offset):
                a.end = b.end
                del vmas[i + 1]
                continue
            i += 1

    def is_free(self, start: int, end: int) -> bool:
        return not self._overlapping(start, end)

    def find_gap(self, length: int, hint: int = 0) -> int:
        """An unmapped range of `length` bytes: at `hint` if free, else top-down."""
        if hint and MMAP_MIN_ADDR <= hint and hint + length <= MMAP_BASE and \
                self.is_free(hint, hint + length):
            return hint
        top = MMAP_BASE
        for v in reversed(self.vmas):
            if v.start >= top:
                continue
            if v.end <= top - length:
                if top - length >= MMAP_MIN_ADDR:
                    return top - length
            top = min(top, v.start)
        if top - length >= MMAP_MIN_ADDR:
            return top - length
        raise SyscallError(Errno.ENOMEM)

    # -- operations -------------------------------------------------------------------

    def mmap(self, addr: int, length: int, prot: int, flags: int, fixed: bool,
             mappable: Mappable | None = None, offset: int = 0, name: bytes = b"",
             dev: int = 0, ino: int = 0, extra: Any = None, noreplace: bool = False,
             maxperms: int = 7, dontexpand: bool = False, ops: VMAOps | None = None) -> int:
        """Maps and returns the address.  Preconditions: length > 0, offset page-aligned."""
        length = page_round_up(length)
        if length == 0 or length > TASK_SIZE:
            raise SyscallError(Errno.ENOMEM)
        shared = flags & 0x0F in (MAP_SHARED, 0x03)
        if fixed:
            if addr % PAGE_SIZE:
                raise SyscallError(Errno.EINVAL)
            if addr < MMAP_MIN_ADDR or addr + length > TASK_SIZE:
                raise SyscallError(Errno.ENOMEM if addr else Errno.EPERM)
            if noreplace and not self.is_free(addr, addr + length):
                raise SyscallError(Errno.EEXIST)
        else:
            addr = self.find_gap(length, addr & ~(PAGE_SIZE - 1))
        if mappable is None:
            if shared and extra is None:
                extra = _SharedAnon()      # identity of this shared region (futex keys)
            self._host(self.space.map_anonymous, addr, length, prot, shared)
        else:
            self._map_file(addr, length, prot, shared, mappable, offset)
        # Replace whatever was there (the host did the same with MAP_FIXED).
        for v in self._carve(addr, addr + length):
            self.vmas.remove(v)
            _closed(v)
        new = VMA(addr, addr + length, prot, shared, mappable, offset, name, dev, ino,
                  maxperms, extra, dontexpand, ops)
        self._insert(new)
        if ops is not None:
            ops.opened(new)
        self._merge(addr, addr + length)
        return addr

    def _map_file(self, addr: int, length: int, prot: int, shared: bool, mappable: Mappable,
                  offset: int) -> None:
        """Maps [offset, offset+length) of `mappable` at `addr` on the host: only the
        memory-file ranges its translate() gives, never the memory file's neighbours."""
        ranges = mappable.translate(offset, length, shared and bool(prot & PROT_WRITE))
        for rg in ranges:
            self._host(self.space.map_file, addr + (rg.file_offset - offset), rg.length, prot,
                       shared, rg.mem_offset)

    def munmap(self, addr: int, length: int) -> None:
        if addr % PAGE_SIZE or length == 0:
            raise SyscallError(Errno.EINVAL)
        length = page_round_up(length)
        if addr + length > TASK_SIZE or addr + length < addr:
            raise SyscallError(Errno.EINVAL)
        inside = self._carve(addr, addr + length)
        if not inside:
            return
        self._host(self.space.unmap, addr, length)
        for v in inside:
            self.vmas.remove(v)
            _closed(v)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        if addr % PAGE_SIZE:
            raise SyscallError(Errno.EINVAL)
        if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | 0x03000000):
            raise SyscallError(Errno.EINVAL)
        prot &= 7
        length = page_round_up(length)
        if length == 0:
            return
        end = addr + length
        # The whole range must be mapped.
        cur = addr
        for v in self._overlapping(addr, end):
            if v.start > cur:
                raise SyscallError(Errno.ENOMEM)
            cur = v.end
        if cur < end:
            raise SyscallError(Errno.ENOMEM)
        for v in self._overlapping(addr, end):
            if v.shared and prot & PROT_WRITE and not v.maxperms & PROT_WRITE:
                raise SyscallError(Errno.EACCES)
            if prot & PROT_EXEC and not v.maxperms & PROT_EXEC:
                raise SyscallError(Errno.EACCES)     # a file of a noexec mount (VM_MAYEXEC)
        self._host(self.space.protect, addr, length, prot)
        for v in self._carve(addr, end):
            v.perms = prot
        self._merge(addr, end)

    def set_brk(self, new: int) -> int:
        """brk(2): returns the new break (the old one on failure)."""
        if new < self.brk_start:
            return self.brk
        old_top = page_round_up(self.brk)
        new_top = page_round_up(new)
        if new_top > old_top:
            if not self.is_free(old_top, new_top) or new_top > MMAP_BASE:
                return self.brk
            try:
                self.mmap(old_top, new_top - old_top, PROT_READ | PROT_WRITE, MAP_PRIVATE,
                          fixed=True, name=b"[heap]")
            except SyscallError:
                return self.brk
        elif new_top < old_top:
            try:
                self.munmap(new_top, old_top - new_top)
            except SyscallError:
                return self.brk
        self.brk = new
        return new

    def mremap(self, old: int, old_size: int, new_size: int, flags: int, new_addr: int) -> int:
        if old % PAGE_SIZE or flags & ~(_MREMAP_MAYMOVE | _MREMAP_FIXED | 4):
            raise SyscallError(Errno.EINVAL)
        if flags & _MREMAP_FIXED and not flags & _MREMAP_MAYMOVE:
            raise SyscallError(Errno.EINVAL)
        old_size = page_round_up(old_size)
        new_size = page_round_up(new_size)
        if new_size == 0:
            raise SyscallError(Errno.EINVAL)
        v = self.find(old)
        if v is None or old_size == 0 or v.end < old + old_size:
            raise SyscallError(Errno.EFAULT)
        if new_size > old_size and v.dontexpand:
            raise SyscallError(Errno.EFAULT)        # Linux: vma_to_resize, VM_DONTEXPAND
        # A file mapping grows by mapping more of the file, never by letting the host
        # extend the memory-file mapping (that would show whatever lies next to it).
        grow_file = v.mappable is not None and new_size > old_size
        tail_offset = v.offset + (old - v.start) + old_size
        if not flags & _MREMAP_FIXED:
            if new_size <= old_size:
                if new_size < old_size:
                    self.munmap(old + new_size, old_size - new_size)
                return old
            # Grow in place if the following range is free.
            if self.is_free(old + old_size, old + new_size) and old + new_size <= MMAP_BASE:
                if grow_file:
                    assert v.mappable is not None
                    self._map_file(old + old_size, new_size - old_size, v.perms, v.shared,
                                   v.mappable, tail_offset)
                else:
                    self._host(self.space.remap, old, old_size, new_size, None)
                self._carve(old, old + old_size)
                vv = self.find(old)
                assert vv is not None
                vv.end = old + new_size
                return old
            if not flags & _MREMAP_MAYMOVE:
                raise SyscallError(Errno.ENOMEM)
            new_addr = self.find_gap(new_size)
        else:
            if new_addr % PAGE_SIZE:
                raise SyscallError(Errno.EINVAL)
            if new_addr < old + old_size and old < new_addr + new_size:
                raise SyscallError(Errno.EINVAL)
            self.munmap(new_addr, new_size)
        self._host(self.space.remap, old, old_size, old_size if grow_file else new_size,
                   new_addr)
        if grow_file:
            assert v.mappable is not None
            self._map_file(new_addr + old_size, new_size - old_size, v.perms, v.shared,
                           v.mappable, tail_offset)
        moved = self._carve(old, old + old_size)
        base = moved[0] if moved else None
        for vv in moved:
            self.vmas.remove(vv)
            _closed(vv)
        if base is not None:
            new = VMA(new_addr, new_addr + new_size, base.perms, base.shared, base.mappable,
                      base.offset, base.name, base.dev, base.ino, base.maxperms, base.extra,
                      base.dontexpand, base.ops)
            self._insert(new)
            if new.ops is not None:
                new.ops.opened(new)
        return new_addr

    def madvise_dontneed(self, addr: int, length: int) -> None:
        """MADV_DONTNEED: private anonymous pages read back as zero."""
        length = page_round_up(length)
        if addr + length > MAX_USER_ADDRESS:
            # Not the application's: the platform's own pages lie above (its stub, and
            # systrap's regions).  Linux: ENOMEM for an unmapped range.
            raise SyscallError(Errno.ENOMEM)
        self._host(self.space.discard, addr, length)

    # -- life cycle -------------------------------------------------------------------

    def fork(self) -> MemoryManager:
        """A copy-on-write copy for fork(2): the platform forks the address space."""
        try:
            space = self.space.fork()
        except OSError as e:
            raise SyscallError(Errno.EAGAIN if e.errno is None else e.errno) from None
        mm = MemoryManager(space)
        mm.vmas = [v.copy() for v in self.vmas]
        mm.brk_start, mm.brk = self.brk_start, self.brk
        mm.argv_start, mm.argv_end = self.argv_start, self.argv_end
        mm.env_start, mm.env_end = self.env_start, self.env_end
        mm.auxv, mm.exe = self.auxv, self.exe
        return mm

    def add_user(self) -> None:
        self.users += 1

    def release_user(self) -> None:
        self.users -= 1
        if self.users <= 0:
            vmas, self.vmas = self.vmas, []
            for v in vmas:
                _closed(v)
            self.space.release()

    def vm_size(self) -> int:
        return sum(v.end - v.start for v in self.vmas)
