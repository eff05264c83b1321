"""Memory syscalls.  Linux: mm/mmap.c, mm/mprotect.c, mm/mremap.c, mm/madvise.c."""

from __future__ import annotations

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_ACCMODE, O_RDONLY, O_WRONLY
from pyvisor.abi.linux.mman import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_LOCKED,
                                    MAP_PRIVATE,
                                    MAP_SHARED, MAP_SHARED_VALIDATE, MAP_TYPE, PAGE_SIZE,
                                    PROT_EXEC, PROT_READ, PROT_WRITE, page_round_up)
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.fsimpl.tmpfs import seals
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import (RLIM_INFINITY, RLIMIT_AS, RLIMIT_DATA, RLIMIT_MEMLOCK,
                                        Task)
from pyvisor.sentry.mm.memory_manager import VM_LOCKED, VM_LOCKONFAULT

_KNOWN_FLAGS = 0x1FFFFF
# Linux's LEGACY_MAP_MASK: what MAP_SHARED_VALIDATE accepts (MAP_SYNC needs DAX; not
# even MAP_FIXED_NOREPLACE is in it).
_LEGACY_MAP_MASK = 0x0F | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x800 | 0x1000 | 0x2000 | \
    0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x4000000 | 0xFC000000
_MAP_32BIT = 0x40
_MAP_32BIT_LO, _MAP_32BIT_HI = 0x40000000, 0x80000000


def sys_mmap(t: Task, r: SyscallArguments) -> int:
    """Implements mmap(2)."""
    addr, length, prot, flags, fd, off = (r.pointer(0), r.uint64(1), r.int32(2),
                                          r.int32(3), r.int32(4), r.uint64(5))
    if length == 0 or off % PAGE_SIZE or page_round_up(length) == 0:
        raise SyscallError(Errno.EINVAL)
    if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | 0x03000000):
        raise SyscallError(Errno.EINVAL)
    mtype = flags & MAP_TYPE
    if mtype not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
        raise SyscallError(Errno.EINVAL)
    if mtype == MAP_SHARED_VALIDATE:
        if flags & MAP_ANONYMOUS:
            raise SyscallError(Errno.EINVAL)        # Linux: anonymous maps take only the two
        if flags & 0xFFFFFFFF & ~_LEGACY_MAP_MASK:
            raise SyscallError(Errno.EOPNOTSUPP)
    fixed = bool(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
    prot &= 7
    locked = 0
    if flags & MAP_LOCKED:
        _can_do_mlock(t)
        locked = VM_LOCKED
    _lock_limit(t)
    if not fixed and flags & _MAP_32BIT:
        # x86-64: the first 2 GiB above 1 GiB (Linux: find_start_end).
        addr = t.mm.find_gap(page_round_up(length), 0, _MAP_32BIT_LO, _MAP_32BIT_HI)
        fixed = True
    if flags & MAP_ANONYMOUS:
        return t.mm.mmap(addr, length, prot, flags, fixed,
                         noreplace=bool(flags & MAP_FIXED_NOREPLACE), locked=locked)
    f = t.fd_table.get(fd)
    if f.flags & 0o10000000:      # O_PATH
        raise SyscallError(Errno.EBADF)
    if getattr(f.impl, "anon_mmap", False):
        # /dev/zero: anonymous memory (shared: a shared anonymous region).
        if f.flags & O_ACCMODE == O_WRONLY:
            raise SyscallError(Errno.EACCES)
        return t.mm.mmap(addr, length, prot, flags, fixed,
                         noreplace=bool(flags & MAP_FIXED_NOREPLACE), locked=locked,
                         name=b"/dev/zero (deleted)" if mtype != MAP_PRIVATE else b"")
    acc = f.flags & O_ACCMODE
    if acc == O_WRONLY:
        raise SyscallError(Errno.EACCES)
    shared = mtype != MAP_PRIVATE
    maxperms = 7
    if shared and acc == O_RDONLY:
        if prot & PROT_WRITE:
            raise SyscallError(Errno.EACCES)
        maxperms = PROT_READ | PROT_EXEC
    mappable = f.inode.mappable()
    if mappable is None:
        raise SyscallError(Errno.ENODEV)
    if shared:
        maxperms = seals.check_mmap(f.inode, prot, maxperms)
    if "noexec" in str(f.mount.options).split(","):      # Linux: path_noexec in do_mmap
        if prot & PROT_EXEC:
            raise SyscallError(Errno.EPERM)
        maxperms &= ~PROT_EXEC
    if off + page_round_up(length) > (1 << 63) - 1:
        raise SyscallError(Errno.EOVERFLOW)        # beyond MAX_LFS_FILESIZE
    return t.mm.mmap(addr, length, prot, flags, fixed, mappable=mappable, offset=off,
                     name=f.path(t.fs.root), dev=f.inode.fs.dev, ino=f.inode.ino, extra=f,
                     noreplace=bool(flags & MAP_FIXED_NOREPLACE), maxperms=maxperms,
                     locked=locked)


def sys_munmap(t: Task, r: SyscallArguments) -> int:
    """Implements munmap(2)."""
    t.mm.munmap(r.pointer(0), r.uint64(1))
    return 0


def sys_mprotect(t: Task, r: SyscallArguments) -> int:
    """Implements mprotect(2)."""
    t.mm.mprotect(r.pointer(0), r.uint64(1), r.int32(2))
    return 0


def sys_brk(t: Task, r: SyscallArguments) -> int:
    """Implements brk(2)."""
    _lock_limit(t)
    return t.mm.set_brk(r.pointer(0))


def sys_mremap(t: Task, r: SyscallArguments) -> int:
    """Implements mremap(2)."""
    _lock_limit(t)
    return t.mm.mremap(r.pointer(0), r.uint64(1), r.uint64(2), r.int32(3), r.pointer(4))


def sys_madvise(t: Task, r: SyscallArguments) -> int:
    """Implements madvise(2): DONTNEED zeroes private anonymous memory; other advice is a hint."""
    addr, length, advice = r.pointer(0), r.uint64(1), r.int32(2)
    if addr % PAGE_SIZE:
        raise SyscallError(Errno.EINVAL)
    if length and (page_round_up(length) & ((1 << 64) - 1) == 0 or
                   addr + page_round_up(length) >= 1 << 64):
        raise SyscallError(Errno.EINVAL)        # the rounded length or the end wraps
    if advice in (4, 8):       # MADV_DONTNEED, MADV_FREE
        if length:
            t.mm.madvise_dontneed(addr, length)
        return 0
    if advice in (18, 19):     # MADV_WIPEONFORK, MADV_KEEPONFORK
        # Private anonymous memory only (EINVAL otherwise, as Linux); the address space
        # (platform) keeps the flag for its fork.
        end = page_round_up(addr + length)
        cur = addr
        for v in t.mm._overlapping(addr, end):
            if v.start > cur:
                raise SyscallError(Errno.ENOMEM)
            if v.shared or v.mappable is not None:
                raise SyscallError(Errno.EINVAL)
            cur = v.end
        if cur < end:
            raise SyscallError(Errno.ENOMEM)
        if length:
            t.mm._host(t.mm.space.set_wipe_on_fork, addr, end - addr, advice == 18)
        return 0
    if advice < 0 or advice > 25 and advice not in (100, 101):
        raise SyscallError(Errno.EINVAL)
    return 0


def sys_msync(t: Task, r: SyscallArguments) -> int:
    """Implements msync(2): mappings share the page cache, so there is nothing to flush;
    the range and flags are checked as Linux does (ENOMEM for holes, EBUSY for
    MS_INVALIDATE of locked pages)."""
    t.mm.msync(r.pointer(0), r.uint64(1), r.int32(2))
    return 0


def sys_mincore(t: Task, r: SyscallArguments) -> int:
    addr, length, vec = r.pointer(0), r.uint64(1), r.pointer(2)
    if addr % PAGE_SIZE:
        raise SyscallError(Errno.EINVAL)
    end = page_round_up(addr + length)
    if length and end <= addr:
        raise SyscallError(Errno.ENOMEM)
    # The whole range must be mapped (ENOMEM), which also bounds the vector's size.
    cur = addr
    for v in t.mm._overlapping(addr, end):
        if v.start > cur:
            raise SyscallError(Errno.ENOMEM)
        cur = v.end
    if cur < end:
        raise SyscallError(Errno.ENOMEM)
    n = (end - addr) // PAGE_SIZE
    for off in range(0, n, 1 << 20):
        t.copy_out(vec + off, b"\1" * min(1 << 20, n - off))
    return 0


# mlock.  Linux: mm/mlock.c.  Locks are kept on the Sentry's VMAs and counted against
# RLIMIT_MEMLOCK (unless CAP_IPC_LOCK), shown as VmLck; host memory is not pinned.
_CAP_IPC_LOCK = 14
_MLOCK_ONFAULT = 1
_MCL_CURRENT, _MCL_FUTURE, _MCL_ONFAULT = 1, 2, 4


def _lock_limit(t: Task) -> None:
    """Gives the mm the caller's RLIMIT_MEMLOCK (None with CAP_IPC_LOCK), RLIMIT_AS and
    RLIMIT_DATA (None: unlimited)."""
    mm, lim = t.mm, t.tg.rlimits
    mm.lock_limit = None if t.creds.capable(_CAP_IPC_LOCK) else lim[RLIMIT_MEMLOCK][0]
    mm.as_limit = None if lim[RLIMIT_AS][0] == RLIM_INFINITY else lim[RLIMIT_AS][0]
    mm.data_limit = None if lim[RLIMIT_DATA][0] == RLIM_INFINITY else lim[RLIMIT_DATA][0]


def _can_do_mlock(t: Task) -> None:
    if t.tg.rlimits[RLIMIT_MEMLOCK][0] == 0 and not t.creds.capable(_CAP_IPC_LOCK):
        raise SyscallError(Errno.EPERM)
    _lock_limit(t)


def sys_mlock(t: Task, r: SyscallArguments) -> int:
    """Implements mlock(2)."""
    _can_do_mlock(t)
    t.mm.mlock(r.pointer(0), r.uint64(1), VM_LOCKED)
    return 0


def sys_mlock2(t: Task, r: SyscallArguments) -> int:
    """Implements mlock2(2)."""
    flags = r.int32(2)
    if flags & ~_MLOCK_ONFAULT:
        raise SyscallError(Errno.EINVAL)
    _can_do_mlock(t)
    t.mm.mlock(r.pointer(0), r.uint64(1),
               VM_LOCKED | (VM_LOCKONFAULT if flags & _MLOCK_ONFAULT else 0))
    return 0


def sys_munlock(t: Task, r: SyscallArguments) -> int:
    """Implements munlock(2)."""
    t.mm.mlock(r.pointer(0), r.uint64(1), 0)
    return 0


def sys_mlockall(t: Task, r: SyscallArguments) -> int:
    """Implements mlockall(2)."""
    flags = r.int32(0)
    if not flags or flags & ~(_MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT) or \
            flags == _MCL_ONFAULT:
        raise SyscallError(Errno.EINVAL)
    _can_do_mlock(t)
    lock = VM_LOCKED | (VM_LOCKONFAULT if flags & _MCL_ONFAULT else 0)
    t.mm.mlockall(lock if flags & _MCL_CURRENT else 0, lock if flags & _MCL_FUTURE else 0)
    return 0


def sys_munlockall(t: Task, r: SyscallArguments) -> int:
    """Implements munlockall(2)."""
    t.mm.munlockall()
    return 0
