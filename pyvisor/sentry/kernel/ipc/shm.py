"""System V shared memory.  Linux: ipc/shm.c; gVisor: pkg/sentry/kernel/shm.

A segment is a run of the memory file (mm/memfile.py), so every process that
attaches it maps the same pages MAP_SHARED, as memfd and shared file
mappings are; a fork's copy of an attachment is the host's shared mapping.

Attachments are counted per VMA, as Linux's shm_open/shm_close do through the
mapping's vm_operations (mm's VMAOps): shmat makes one, a split by munmap or
mprotect adds one, fork copies them, munmap/shmdt/exec/exit drop them.  So
shm_nattch is what Linux shows, and a segment removed with IPC_RMID while
attached (SHM_DEST, its key gone) is destroyed when its last VMA goes.
Its pages return to the host then (the memory-file extent is punched).

Limits: SHMMIN 1, the kernel.shmmax/shmall/shmmni sysctls (kernel/sysctl.py,
settable by config.json) for segment size, total pages and count; and, unlike
Linux, at most a quarter of the memory file's address space (16 GiB) for all
segments (ENOMEM, as Linux without the memory), so segments nobody removes
cannot starve tmpfs.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mman import (MAP_FIXED, MAP_SHARED, PAGE_SIZE, PROT_EXEC, PROT_READ,
                                    PROT_WRITE, page_round_up)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.ipc import (IPC_INFO, IPC_PRIVATE, IPC_RMID, IPC_SET, IPC_STAT,
                                       IPCObject, Registry, get_or_create, namespace,
                                       obtain_by_index, set_from_perm)
from pyvisor.sentry.mm.memfile import MEMFILE_SIZE, MappedRange, MemoryFile
from pyvisor.sentry.mm.memory_manager import VMA

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Kernel
    from pyvisor.sentry.kernel.task import Task

# From <linux/shm.h>.
SHMMIN, SHMMNI, SHMSEG = 1, 4096, 4096
SHM_RDONLY, SHM_RND, SHM_REMAP, SHM_EXEC = 0o10000, 0o20000, 0o40000, 0o100000
SHM_LOCK, SHM_UNLOCK, SHM_STAT, SHM_INFO, SHM_STAT_ANY = 11, 12, 13, 14, 15
SHM_DEST, SHM_LOCKED = 0o1000, 0o2000          # in shm_perm.mode
SHMLBA = PAGE_SIZE
SHMID_DS = struct.Struct("<48sQqqqiiQ16x")     # struct shmid64_ds (112 bytes)
SHMINFO = struct.Struct("<5Q32x")              # struct shminfo64 (72 bytes)
SHM_INFO_S = struct.Struct("<i4x5Q")           # struct shm_info (48 bytes)
CAP_IPC_LOCK = 14
RLIMIT_MEMLOCK = 8
SHM_DEV = 1                                    # the shm "filesystem" (00:01, as Linux)

_MAX = (1 << 64) - 1
SHM_MEM_MAX = MEMFILE_SIZE // 4                # memory-file bytes all segments may hold


@dataclass(eq=False)
class Segment(IPCObject):
    """One segment.  Linux: struct shmid_kernel.  Its pages: [mem, mem + cap)."""

    size: int = 0                 # shm_segsz, as asked (not rounded)
    mem: int = -1                 # memory-file offset of the pages
    cap: int = 0
    atime: int = 0
    dtime: int = 0
    cpid: int = 0
    lpid: int = 0
    nattch: int = 0               # VMAs mapping it, in every address space
    kernel: Kernel | None = None

    @property
    def pages(self) -> int:
        return page_round_up(self.size) // PAGE_SIZE

    def pack(self) -> bytes:
        return SHMID_DS.pack(self.pack_perm(), self.size, self.atime, self.dtime, self.ctime,
                             self.cpid, self.lpid, self.nattch)

    # -- Mappable: the pages, never beyond them --------------------------------------------

    def translate(self, offset: int, length: int, writable_shared: bool) -> list[MappedRange]:
        end = min(offset + length, page_round_up(self.size))
        if offset >= end or self.mem < 0:
            return []        # past the segment: left unmapped (a fault), never other pages
        return [MappedRange(offset, self.mem + offset, end - offset)]

    # -- VMAOps: attachments ---------------------------------------------------------------

    def opened(self, vma: VMA) -> None:
        """shm_open: a new VMA of the segment."""
        self.nattch += 1
        self.atime = int(time.time())
        self.lpid = _current_tgid(self.kernel, self.lpid)

    def closed(self, vma: VMA) -> None:
        """shm_close: a VMA is gone; the last one of a removed segment destroys it."""
        self.nattch -= 1
        self.dtime = int(time.time())
        self.lpid = _current_tgid(self.kernel, self.lpid)
        if self.nattch <= 0 and self.mode & SHM_DEST and self.kernel is not None:
            _destroy(self.kernel, self)


def _current_tgid(kernel: Kernel | None, default: int) -> int:
    cur = kernel.current if kernel is not None else None
    return cur.tg.tgid if cur is not None else default


def registry(kernel: Kernel) -> Registry[Segment]:
    return namespace(kernel).shm


def _limit(kernel: Kernel, name: str) -> int:
    from pyvisor.sentry.kernel import sysctl
    return int(sysctl.get_value(kernel, name).split()[0])


def _destroy(kernel: Kernel, s: Segment) -> None:
    """shm_destroy: the id goes and the pages return to the host."""
    ns = getattr(s, "ipc_ns", None) or namespace(kernel)
    if not s.removed:
        ns.shm.remove(s)
    if s.mem >= 0:
        ns.shm_tot -= s.pages
        ns.shm_mem -= s.cap
        kernel.memfile.free(s.mem, s.cap)
        s.mem = -1


def shmget(t: Task, key: int, size: int, flags: int) -> int:
    """Implements shmget(2) (newseg and shm_more_checks)."""
    kernel = t.kernel
    ns = namespace(kernel)
    reg = ns.shm

    def more_checks(s: Segment) -> None:
        if s.size < size:
            raise SyscallError(Errno.EINVAL)

    def make(**kw: object) -> Segment:
        if size < SHMMIN or size > _limit(kernel, "kernel.shmmax"):
            raise SyscallError(Errno.EINVAL)
        pages = page_round_up(size) // PAGE_SIZE
        if pages == 0 or ns.shm_tot + pages > _limit(kernel, "kernel.shmall"):
            raise SyscallError(Errno.ENOSPC)
        if ns.shm_mem + MemoryFile.size_class(pages * PAGE_SIZE) > SHM_MEM_MAX:
            raise SyscallError(Errno.ENOMEM)      # Linux: security_vm_enough_memory
        if len(reg.by_index) >= min(_limit(kernel, "kernel.shmmni"), reg.limit):
            raise SyscallError(Errno.ENOSPC)        # so reg.add cannot fail
        try:
            mem, cap = kernel.memfile.allocate(pages * PAGE_SIZE)
        except MemoryError:
            raise SyscallError(Errno.ENOMEM) from None
        ns.shm_tot += pages
        ns.shm_mem += cap
        return Segment(size=size, mem=mem, cap=cap, cpid=t.tg.tgid, kernel=kernel,
                       **kw)  # type: ignore[arg-type]

    return get_or_create(t, reg, key, flags, make, more_checks).id


def shmat(t: Task, ident: int, addr: int, flags: int) -> int:
    """Implements shmat(2) (do_shmat); returns the address."""
    if ident < 0:
        raise SyscallError(Errno.EINVAL)
    fixed = False
    if addr:
        if addr & (SHMLBA - 1):
            if not flags & SHM_RND:
                raise SyscallError(Errno.EINVAL)
            addr &= ~(SHMLBA - 1)
            if not addr and flags & SHM_REMAP:
                raise SyscallError(Errno.EINVAL)
        fixed = True
    elif flags & SHM_REMAP:
        raise SyscallError(Errno.EINVAL)
    if flags & SHM_RDONLY:
        prot, want, maxperms = PROT_READ, 0o4, PROT_READ | PROT_EXEC
    else:
        prot, want, maxperms = PROT_READ | PROT_WRITE, 0o6, PROT_READ | PROT_WRITE | PROT_EXEC
    if flags & SHM_EXEC:
        prot |= PROT_EXEC
        want |= 0o1
    s = registry(t.kernel).get(ident)
    s.check(t, want)
    mm = t.mm
    length = page_round_up(s.size)
    if fixed and not flags & SHM_REMAP:
        if addr + length < addr or not mm.is_free(addr, addr + length):
            raise SyscallError(Errno.EINVAL)
    name = b"/SYSV%08x (deleted)" % (s.key & 0xFFFFFFFF)
    return mm.mmap(addr, s.size, prot, MAP_SHARED | (MAP_FIXED if fixed else 0), fixed,
                   mappable=s, offset=0, name=name, dev=SHM_DEV, ino=s.id, extra=s,
                   maxperms=maxperms, ops=s)


def shmdt(t: Task, addr: int) -> None:
    """Implements shmdt(2) (ksys_shmdt): the attachment at `addr`, with the fragments
    munmap/mprotect made of it (VMAs of the same segment at their offset from addr)."""
    if addr & (PAGE_SIZE - 1):
        raise SyscallError(Errno.EINVAL)
    mm = t.mm
    first = None
    for v in mm.vmas:
        if v.end > addr and isinstance(v.ops, Segment) and v.start - addr == v.offset:
            first = v
            break
    if first is None:
        raise SyscallError(Errno.EINVAL)
    seg = first.ops
    assert isinstance(seg, Segment)
    limit = addr + page_round_up(seg.size)
    victims = [first] + [v for v in mm.vmas if v.start > first.start and v.end <= limit and
                         v.ops is seg and v.start - addr == v.offset]
    for v in victims:
        mm.munmap(v.start, v.end - v.start)


def _info(t: Task, cmd: int, buf: int) -> int:
    kernel = t.kernel
    ns = namespace(kernel)
    reg = ns.shm
    if cmd == IPC_INFO:
        data = SHMINFO.pack(_limit(kernel, "kernel.shmmax"), SHMMIN,
                            _limit(kernel, "kernel.shmmni"), SHMSEG,
                            _limit(kernel, "kernel.shmall"))
    else:
        rss = sum(s.pages for s in reg.by_index.values())
        data = SHM_INFO_S.pack(len(reg.by_index), ns.shm_tot, rss, 0, 0, 0)
    t.copy_out(buf, data)
    return reg.max_index()


def shmctl(t: Task, ident: int, cmd: int, buf: int) -> int:
    """Implements shmctl(2)."""
    kernel = t.kernel
    reg = registry(kernel)
    if cmd in (IPC_INFO, SHM_INFO):
        return _info(t, cmd, buf)
    if cmd in (SHM_STAT, SHM_STAT_ANY):
        s = obtain_by_index(t, reg, ident, check_read=cmd == SHM_STAT)
        t.copy_out(buf, s.pack())
        return s.id
    if cmd not in (IPC_STAT, IPC_SET, IPC_RMID, SHM_LOCK, SHM_UNLOCK):
        raise SyscallError(Errno.EINVAL)
    s = reg.get(ident)
    if cmd == IPC_STAT:
        s.check(t, 0o4)
        t.copy_out(buf, s.pack())
        return 0
    if cmd == IPC_SET:
        raw = t.copy_in(buf, SHMID_DS.size)
        s.check_owner(t)
        set_from_perm(s, raw)
        return 0
    if cmd == IPC_RMID:
        s.check_owner(t)
        if s.nattch > 0:
            # Destroyed with its last attachment; its key is free now (ipc_set_key_private).
            s.mode |= SHM_DEST
            reg.forget_key(s)
            s.key = IPC_PRIVATE
        else:
            _destroy(kernel, s)
        return 0
    # SHM_LOCK / SHM_UNLOCK (shmctl_do_lock): the pages are never swapped here anyway.
    c = t.creds
    if not c.capable(CAP_IPC_LOCK):
        if c.euid not in (s.uid, s.cuid):
            raise SyscallError(Errno.EPERM)
        limit = t.tg.rlimits[RLIMIT_MEMLOCK][0]
        if cmd == SHM_LOCK and limit == 0:
            raise SyscallError(Errno.EPERM)
        if cmd == SHM_LOCK and limit != _MAX and s.pages > limit // PAGE_SIZE:
            raise SyscallError(Errno.ENOMEM)
    if cmd == SHM_LOCK:
        s.mode |= SHM_LOCKED
    else:
        s.mode &= ~SHM_LOCKED
    return 0
