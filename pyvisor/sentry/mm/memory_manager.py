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
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mman import (MAP_PRIVATE, MAP_SHARED,
                                    PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE, page_round_up)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.memfile import MEMFILE_SIZE
from pyvisor.sentry.platform.platform import MAX_USER_ADDRESS, AddressSpace, PlatformError

if TYPE_CHECKING:
    from pyvisor.sentry.mm.memfile import Mappable

MMAP_MIN_ADDR = 0x10000
MMAP_BASE = 0x7FE000000000      # top of the mmap area (grows down); below the stub
TASK_SIZE = MAX_USER_ADDRESS
_CHECK_VMAS_ABOVE = 1 << 16     # copy_in lengths beyond this are checked against the VMAs
_MREMAP_MAYMOVE = 1
_MREMAP_FIXED = 2
_MREMAP_DONTUNMAP = 4
VM_LOCKED = 1                   # VMA lock flags (Linux: VM_LOCKED, VM_LOCKONFAULT)
VM_LOCKONFAULT = 2


# File pages wholly past end of file are mapped on the host from the memory file
# beyond its own end, so the host raises SIGBUS on any access (after its permission
# check: a write to a read-only page is still SIGSEGV) and process_vm_readv/writev
# (the Sentry's copy_in/copy_out) fail with EFAULT, as Linux's syscalls do there.
SIGBUS_OFFSET = MEMFILE_SIZE

# Every live address space, for truncate's invalidation of file pages (Linux:
# unmap_mapping_range over the file's i_mmap).
_LIVE: weakref.WeakSet[MemoryManager] = weakref.WeakSet()


def _file_size(mappable: Mappable) -> int | None:
    """The size of a mapped file (pages past it SIGBUS); None for fixed ranges."""
    size = getattr(mappable, "size", None)
    return size() if callable(size) else None


# Files that have been mapped: a truncate of any other needs no search of the VMAs.
_EVER_MAPPED: weakref.WeakSet[Any] = weakref.WeakSet()


def truncate_mappings(mappable: Mappable, size: int) -> None:
    """The file behind `mappable` shrank to `size`: its pages past the new end, in
    every mapping (private copies too, as Linux's truncate_pagecache), now SIGBUS."""
    try:
        if mappable not in _EVER_MAPPED:
            return
    except TypeError:
        pass                                  # not weak-referenceable: search anyway
    end = page_round_up(size)
    for mm in list(_LIVE):
        for v in mm.vmas:
            if v.mappable is mappable:
                start = max(v.start, v.start + (end - v.offset))
                if start < v.end:
                    mm._sigbus_range(start, v.end - start, v.perms, v.shared, mappable)


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
    # VM_LOCKED | VM_LOCKONFAULT: mlock(2)ed.  Accounted (RLIMIT_MEMLOCK, VmLck) and
    # reported (msync MS_INVALIDATE is EBUSY, MADV_DONTNEED EINVAL), but host memory is
    # not pinned: the stub's pages stay ordinary, swappable host memory.
    locked: int = 0
    anon_name: bytes | None = None   # prctl(PR_SET_VMA_ANON_NAME): [anon:NAME] in maps
    mempolicy: Any = None            # mbind(2)'s mm/mempolicy.Mempolicy; None: the default

    def split(self, at: int) -> VMA:
        """Cuts at `at`; self keeps [start, at), returns [at, end)."""
        tail = VMA(at, self.end, self.perms, self.shared, self.mappable,
                   self.offset + (at - self.start) if self.mappable is not None or self.shared else 0,
                   self.name, self.dev, self.ino, self.maxperms, self.extra, self.dontexpand,
                   self.ops, self.locked, self.anon_name, self.mempolicy)
        self.end = at
        if tail.ops is not None:
            tail.ops.opened(tail)
        return tail

    def fork_copy(self) -> VMA:
        """The same mapping in another address space (fork): a new VMA for its ops.
        mlock is not inherited (Linux: dup_mmap clears VM_LOCKED in the child)."""
        v = VMA(self.start, self.end, self.perms, self.shared, self.mappable, self.offset,
                self.name, self.dev, self.ino, self.maxperms, self.extra, self.dontexpand,
                self.ops, 0, self.anon_name, self.mempolicy)
        if v.ops is not None:
            v.ops.opened(v)
        return v

    def copy(self, start: int, end: int, offset: int) -> VMA:
        """The same mapping over [start, end) of this address space (mremap), opened."""
        v = VMA(start, end, self.perms, self.shared, self.mappable, offset, self.name,
                self.dev, self.ino, self.maxperms, self.extra, self.dontexpand, self.ops,
                self.locked, self.anon_name, self.mempolicy)
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
        self.def_locked = 0                # mlockall(MCL_FUTURE): lock flags of new mappings
        self.exec_fatal = 0                # errno of an exec failed past its point of no return
        # (credentials, secure) an exec in progress will run the image with (set-id files;
        # kernel/creds.exec_creds), applied at its commit.  Linux: bprm->cred.
        self.exec_creds: Any = None
        # Files truncated while no thread of this address space was stopped: their
        # pages past the end are made SIGBUS at its next stop.
        self.pending_sigbus: list[Mappable] = []
        _LIVE.add(self)
        # The caller's RLIMIT_MEMLOCK (None with CAP_IPC_LOCK), RLIMIT_AS and RLIMIT_DATA
        # (for brk), set by the syscall layer before an operation that may need them;
        # None means unlimited.
        self.lock_limit: int | None = None
        self.as_limit: int | None = None
        self.data_limit: int | None = None

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

    def accessible(self, addr: int, n: int, prot: int) -> int:
        """How many bytes from `addr` (at most `n`) are mapped with `prot` without a
        gap: a read(2) into a buffer whose tail is unmapped fills that much and
        returns its length, as Linux's copy_to_user stops at the first fault."""
        if n <= 0 or addr < 0 or addr >= TASK_SIZE:
            return 0
        end = min(addr + n, TASK_SIZE)
        cur = addr
        for v in self._overlapping(addr, end):
            if v.start > cur or v.perms & prot != prot:
                break
            cur = v.end
        return max(0, min(cur, end) - addr)

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
                    a.name == b.name and a.locked == b.locked and \
                    a.anon_name == b.anon_name and a.mempolicy == b.mempolicy and \
                    (a.mappable is None or
                                          a.offset + (a.end - a.start) == b.offset):
                a.end = b.end
                del vmas[i + 1]
                continue
            i += 1

    def is_free(self, start: int, end: int) -> bool:
        return not self._overlapping(start, end)

    def find_gap(self, length: int, hint: int = 0, low: int = MMAP_MIN_ADDR,
                 high: int = MMAP_BASE) -> int:
        """An unmapped range of `length` bytes in [low, high): at `hint` if free, else
        top-down."""
        if hint and low <= hint and hint + length <= high and \
                self.is_free(hint, hint + length):
            return hint
        top = high
        for v in reversed(self.vmas):
            if v.start >= top:
                continue
            if v.end <= top - length:
                if top - length >= low:
                    return top - length
            top = min(top, v.start)
        if top - length >= low:
            return top - length
        raise SyscallError(Errno.ENOMEM)

    # -- operations -------------------------------------------------------------------

    def mmap(self, addr: int, length: int, prot: int, flags: int, fixed: bool,
             mappable: Mappable | None = None, offset: int = 0, name: bytes = b"",
             dev: int = 0, ino: int = 0, extra: Any = None, noreplace: bool = False,
             maxperms: int = 7, dontexpand: bool = False, ops: VMAOps | None = None,
             locked: int = 0) -> int:
        """Maps and returns the address.  Preconditions: length > 0, offset page-aligned.
        `locked`: VM_LOCKED flags (MAP_LOCKED); mlockall(MCL_FUTURE)'s are added."""
        length = page_round_up(length)
        if length == 0 or length > TASK_SIZE:
            raise SyscallError(Errno.ENOMEM)
        locked |= self.def_locked
        if locked:
            self.check_lock_limit(length)
        if self.as_limit is not None:
            self.check_as_limit(length, addr if fixed else 0)
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
                  maxperms, extra, dontexpand, ops, locked)
        self._insert(new)
        if ops is not None:
            ops.opened(new)
        self._merge(addr, addr + length)
        return addr

    def _map_file(self, addr: int, length: int, prot: int, shared: bool, mappable: Mappable,
                  offset: int) -> None:
        """Maps [offset, offset+length) of `mappable` at `addr` on the host: only the
        memory-file ranges its translate() gives, never the memory file's neighbours.
        Pages wholly past end of file SIGBUS (SIGBUS_OFFSET)."""
        size = _file_size(mappable)
        valid = length if size is None else max(0, min(length, page_round_up(size) - offset))
        writable = shared and bool(prot & PROT_WRITE)
        if size is not None:
            try:
                _EVER_MAPPED.add(mappable)
            except TypeError:
                pass
        try:
            # The whole range is translated (reserved), so that the file growing into
            # the mapping later keeps its pages where they are mapped.
            ranges = mappable.translate(offset, length, writable)
        except SyscallError:
            if valid == length:
                raise
            ranges = mappable.translate(offset, valid, writable) if valid else []
        for rg in ranges:
            n = min(rg.length, offset + valid - rg.file_offset)
            if n > 0:
                self._host(self.space.map_file, addr + (rg.file_offset - offset), n, prot,
                           shared, rg.mem_offset)
        if valid < length:
            self._host(self.space.map_file, addr + valid, length - valid, prot, shared,
                       SIGBUS_OFFSET)

    def _sigbus_range(self, addr: int, length: int, prot: int, shared: bool,
                      mappable: Mappable) -> None:
        """Makes [addr, addr+length) SIGBUS on the host (now, or at the next stop of a
        thread of this address space if none is stopped)."""
        try:
            self._host(self.space.map_file, addr, length, prot, shared, SIGBUS_OFFSET)
        except PlatformError:
            if mappable not in self.pending_sigbus:
                self.pending_sigbus.append(mappable)

    def apply_pending(self) -> None:
        """Applies truncations seen while no thread of this address space was stopped
        (the caller: a stop of one of its threads)."""
        pending, self.pending_sigbus = self.pending_sigbus, []
        for m in pending:
            size = _file_size(m)
            if size is None:
                continue
            end = page_round_up(size)
            for v in self.vmas:
                if v.mappable is m:
                    start = max(v.start, v.start + (end - v.offset))
                    if start < v.end:
                        self._host(self.space.map_file, start, v.end - start, v.perms,
                                   v.shared, SIGBUS_OFFSET)

    def file_fault(self, addr: int) -> bool:
        """A host SIGBUS at `addr`: True if it was a page past end of file that the file
        has since grown over (now mapped: the access is retried); False if the
        application gets the SIGBUS."""
        v = self.find(addr)
        if v is None or v.mappable is None:
            return False
        size = _file_size(v.mappable)
        page = addr & ~(PAGE_SIZE - 1)
        off = v.offset + (page - v.start)
        if size is None or off >= page_round_up(size):
            return False
        self._map_file(page, PAGE_SIZE, v.perms, v.shared, v.mappable, off)
        return True

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

    # -- mlock ------------------------------------------------------------------------

    def locked_vm(self) -> int:
        """Bytes of locked mappings (Linux: mm->locked_vm; /proc/PID/status VmLck)."""
        return sum(v.end - v.start for v in self.vmas if v.locked)

    def check_lock_limit(self, extra: int, already: int = 0) -> None:
        """EAGAIN unless `extra` more locked bytes fit RLIMIT_MEMLOCK (Linux:
        mlock_future_ok); `already`: bytes of the range that are locked now."""
        if self.lock_limit is not None and \
                self.locked_vm() - already + extra > self.lock_limit:
            raise SyscallError(Errno.EAGAIN)

    def check_as_limit(self, extra: int, replaced_at: int = 0) -> None:
        """ENOMEM unless `extra` more bytes fit RLIMIT_AS (Linux: may_expand_vm); with
        replaced_at, what is mapped in [replaced_at, +extra) now is replaced."""
        if self.as_limit is None:
            return
        old = sum(min(v.end, replaced_at + extra) - max(v.start, replaced_at)
                  for v in self._overlapping(replaced_at, replaced_at + extra)) \
            if replaced_at else 0
        if self.vm_size() - old + extra > self.as_limit:
            raise SyscallError(Errno.ENOMEM)

    def _require_mapped(self, start: int, end: int, err: int = Errno.ENOMEM) -> list[VMA]:
        cur = start
        vmas = self._overlapping(start, end)
        for v in vmas:
            if v.start > cur:
                raise SyscallError(err)
            cur = v.end
        if cur < end:
            raise SyscallError(err)
        return vmas

    def mlock(self, addr: int, length: int, flags: int) -> None:
        """mlock/mlock2/munlock (flags 0) of [addr, addr+length).  Linux: do_mlock,
        apply_vma_lock_flags; the caller checked can_do_mlock (EPERM)."""
        start = addr & ~(PAGE_SIZE - 1)
        end = page_round_up(addr + length)
        if end < start or end > TASK_SIZE:
            raise SyscallError(Errno.ENOMEM)
        if end == start:
            return
        if flags and self.lock_limit is not None:
            already = sum(min(v.end, end) - max(v.start, start)
                          for v in self._overlapping(start, end) if v.locked)
            total = sum(min(v.end, end) - max(v.start, start)
                        for v in self._overlapping(start, end))
            if self.locked_vm() - already + total > self.lock_limit:
                raise SyscallError(Errno.ENOMEM)
        # Linux locks the mapped VMAs up to the first hole, then fails with ENOMEM.
        cur = start
        hole = False
        for v in self._overlapping(start, end):
            if v.start > cur:
                hole = True
                break
            cur = v.end
        stop = min(cur, end)
        if stop > start:
            for v in self._carve(start, stop):
                v.locked = flags
            self._merge(start, stop)
        if hole or cur < end:
            raise SyscallError(Errno.ENOMEM)
        # Populating PROT_NONE pages fails (Linux: __mm_populate), yet they stay locked.
        if flags & VM_LOCKED and not flags & VM_LOCKONFAULT and \
                any(not v.perms for v in self._overlapping(start, end)):
            raise SyscallError(Errno.ENOMEM)

    def mlockall(self, current: int, future: int) -> None:
        """mlockall(2): `current` lock flags for every mapping now (0: leave them),
        `future` for mappings to come.  munlockall is mlockall(0, 0) with unlock_all."""
        if current:
            if self.lock_limit is not None and self.vm_size() > self.lock_limit:
                raise SyscallError(Errno.ENOMEM)
            for v in self.vmas:
                v.locked = current
        self.def_locked = future

    def munlockall(self) -> None:
        for v in self.vmas:
            v.locked = 0
        self.def_locked = 0
        self._merge(0, TASK_SIZE)

    def set_anon_name(self, addr: int, length: int, name: bytes | None) -> None:
        """prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME).  Linux: madvise_set_anon_name."""
        if addr % PAGE_SIZE:
            raise SyscallError(Errno.EINVAL)
        end = page_round_up(addr + length)
        if end < addr:
            raise SyscallError(Errno.EINVAL)
        if end == addr:
            return
        vmas = self._require_mapped(addr, end)
        if any(v.mappable is not None for v in vmas):
            raise SyscallError(Errno.EBADF)         # file mappings have their file's name
        for v in self._carve(addr, end):
            v.anon_name = name
        self._merge(addr, end)

    def set_mempolicy(self, start: int, end: int, policy: Any) -> None:
        """mbind(2)'s change of [start, end), page-aligned: EFAULT, changing nothing,
        if part of it is unmapped (queue_pages_range, then mbind_range)."""
        self._require_mapped(start, end, Errno.EFAULT)
        for v in self._carve(start, end):
            v.mempolicy = policy
        self._merge(start, end)

    def msync(self, addr: int, length: int, flags: int) -> None:
        """msync(2)'s checks (Linux: mm/msync.c).  Shared mappings share the Sentry's
        page cache, so there is nothing to write back here."""
        if flags & ~7 or addr % PAGE_SIZE or (flags & 1 and flags & 4):
            raise SyscallError(Errno.EINVAL)
        end = page_round_up(addr + length)
        if end < addr or addr + length < addr:
            raise SyscallError(Errno.ENOMEM)
        if end == addr:
            return
        unmapped = False
        cur = addr
        for v in self._overlapping(addr, end):
            if v.start > cur:
                if flags == 1:             # MS_ASYNC alone stops at the first hole
                    raise SyscallError(Errno.ENOMEM)
                unmapped = True
            if flags & 2 and v.locked:     # MS_INVALIDATE of locked pages
                raise SyscallError(Errno.EBUSY)
            cur = v.end
        if unmapped or cur < end:
            raise SyscallError(Errno.ENOMEM)

    def set_brk(self, new: int) -> int:
        """brk(2): returns the new break (the old one on failure)."""
        if new < self.brk_start:
            return self.brk
        old_top = page_round_up(self.brk)
        new_top = page_round_up(new)
        if self.data_limit is not None and new > self.brk and \
                new - self.brk_start > self.data_limit:
            return self.brk                      # Linux: check_data_rlimit
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
        """mremap(2).  Linux: mm/mremap.c (the order of its checks and partial effects:
        MREMAP_FIXED unmaps the destination and the shrunk tail before failing)."""
        if flags & ~(_MREMAP_MAYMOVE | _MREMAP_FIXED | _MREMAP_DONTUNMAP) or old % PAGE_SIZE:
            raise SyscallError(Errno.EINVAL)
        if flags & (_MREMAP_FIXED | _MREMAP_DONTUNMAP) and not flags & _MREMAP_MAYMOVE:
            raise SyscallError(Errno.EINVAL)
        if flags & _MREMAP_DONTUNMAP and old_size != new_size:
            raise SyscallError(Errno.EINVAL)
        old_size = page_round_up(old_size)
        new_size = page_round_up(new_size)
        if new_size == 0 or new_size > TASK_SIZE or old_size > TASK_SIZE:
            raise SyscallError(Errno.EINVAL)
        v = self.find(old)
        if v is None:
            raise SyscallError(Errno.EFAULT)
        if old_size == 0 and not v.shared:
            raise SyscallError(Errno.EINVAL)       # duplicating a private mapping
        if flags & _MREMAP_DONTUNMAP and v.dontexpand:
            raise SyscallError(Errno.EINVAL)
        if flags & (_MREMAP_FIXED | _MREMAP_DONTUNMAP):
            if flags & _MREMAP_FIXED:
                if new_addr % PAGE_SIZE:
                    raise SyscallError(Errno.EINVAL)
            else:
                new_addr = 0
            if new_addr and (new_addr > TASK_SIZE - new_size or
                             (old + old_size > new_addr and new_addr + new_size > old)):
                raise SyscallError(Errno.EINVAL)
            if flags & _MREMAP_FIXED and new_addr < MMAP_MIN_ADDR:
                raise SyscallError(Errno.EPERM)
            # Everything is checked before anything is unmapped (Linux 6.17+; older
            # kernels unmapped the destination and the tail first).  A move without
            # resizing may span several adjacent VMAs (6.17+), each moved in turn.
            pieces = self._overlapping(old, old + old_size) if old_size else [v]
            multi = len(pieces) > 1 and old_size == new_size and flags == \
                _MREMAP_MAYMOVE | _MREMAP_FIXED
            if multi:
                self._require_mapped(old, old + old_size)
            else:
                v = self._resizable(old, old_size, new_size)
            if flags & _MREMAP_FIXED:
                self.munmap(new_addr, new_size)
            if old_size > new_size:
                self.munmap(old + new_size, old_size - new_size)
                old_size = new_size
            if multi:
                self._carve(old, old + old_size)
                for piece in list(self._overlapping(old, old + old_size)):
                    self._move(piece, piece.start, piece.end - piece.start,
                               piece.end - piece.start, new_addr + (piece.start - old), False)
                return new_addr
            if not flags & _MREMAP_FIXED:
                new_addr = self.find_gap(new_size)
            return self._move(v, old, old_size, new_size, new_addr,
                              bool(flags & _MREMAP_DONTUNMAP))
        if new_size <= old_size:
            if new_size < old_size:
                self.munmap(old + new_size, old_size - new_size)
            return old
        v = self._resizable(old, old_size, new_size)
        if old + old_size == v.end and self.is_free(old + old_size, old + new_size) and \
                old + new_size <= MMAP_BASE:
            # Grow in place.  A file mapping grows by mapping more of the file, never by
            # letting the host extend the memory-file mapping (that would show whatever
            # lies next to it).
            if v.mappable is not None:
                self._map_file(old + old_size, new_size - old_size, v.perms, v.shared,
                               v.mappable, v.offset + (old - v.start) + old_size)
            else:
                self._host(self.space.remap, old, old_size, new_size, None)
            v.end = old + new_size
            self._merge(old, old + new_size)
            return old
        if not flags & _MREMAP_MAYMOVE:
            raise SyscallError(Errno.ENOMEM)
        return self._move(v, old, old_size, new_size, self.find_gap(new_size), False)

    def _resizable(self, old: int, old_size: int, new_size: int) -> VMA:
        """The VMA [old, old+old_size) lies in, checked for growing to new_size.
        Linux: vma_to_resize."""
        v = self.find(old)
        if v is None or old_size > v.end - old:
            raise SyscallError(Errno.EFAULT)       # no remapping across VMAs
        if new_size > old_size:
            if v.dontexpand:
                raise SyscallError(Errno.EFAULT)   # VM_DONTEXPAND (the vDSO)
            if v.locked:
                self.check_lock_limit(new_size - old_size)
            self.check_as_limit(new_size - old_size)
        return v

    def _move(self, v: VMA, old: int, old_size: int, new_size: int, new_addr: int,
              dontunmap: bool) -> int:
        """Moves (old_size 0: duplicates, for shared mappings) [old, old+old_size) of `v`
        to new_addr, grown to new_size.  Linux: move_vma."""
        offset = v.offset + (old - v.start) if v.mappable is not None or v.shared else 0
        grow_file = v.mappable is not None and new_size > old_size
        if old_size == 0:
            # A second mapping of the same shared object (Linux 4.14+: shared only).
            if v.mappable is not None:
                self._map_file(new_addr, new_size, v.perms, True, v.mappable, offset)
            else:
                self._host(self.space.remap, old, 0, new_size, new_addr)
        else:
            self._host(self.space.remap, old, old_size, old_size if grow_file else new_size,
                       new_addr)
            if grow_file:
                assert v.mappable is not None
                self._map_file(new_addr + old_size, new_size - old_size, v.perms, v.shared,
                               v.mappable, offset + old_size)
        moved = v.copy(new_addr, new_addr + new_size, offset)
        if old_size:
            for vv in self._carve(old, old + old_size):
                self.vmas.remove(vv)
                _closed(vv)
            if dontunmap:
                # The old range stays mapped, empty: private anonymous memory reads
                # zeros again; a file or shared mapping shows the object again.
                kept = v.copy(old, old + old_size, offset)
                kept.locked = 0
                if kept.mappable is not None:
                    self._map_file(old, old_size, kept.perms, kept.shared, kept.mappable,
                                   offset)
                elif kept.shared:
                    self._host(self.space.remap, new_addr, 0, old_size, old)
                else:
                    self._host(self.space.map_anonymous, old, old_size, kept.perms, False)
                self._insert(kept)
        self._insert(moved)
        self._merge(new_addr, new_addr + new_size)
        return new_addr

    def madvise_dontneed(self, addr: int, length: int) -> None:
        """MADV_DONTNEED: private anonymous pages read back as zero.  EINVAL for locked
        pages (Linux: can_madv_lru_vma)."""
        length = page_round_up(length)
        if addr + length > MAX_USER_ADDRESS:
            # Not the application's: the platform's own pages lie above (its stub, and
            # systrap's regions).  Linux: ENOMEM for an unmapped range.
            raise SyscallError(Errno.ENOMEM)
        if any(v.locked for v in self._overlapping(addr, addr + length)):
            raise SyscallError(Errno.EINVAL)
        self._host(self.space.discard, addr, length)

    # -- life cycle -------------------------------------------------------------------

    def fork(self) -> MemoryManager:
        """A copy-on-write copy for fork(2): the platform forks the address space."""
        try:
            space = self.space.fork()
        except OSError as e:
            raise SyscallError(Errno.EAGAIN if e.errno is None else e.errno) from None
        mm = MemoryManager(space)
        # Locks are not inherited (Linux: dup_mmap clears VM_LOCKED; def_flags too).
        mm.vmas = [v.fork_copy() for v in self.vmas]
        mm._merge(0, TASK_SIZE)
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
