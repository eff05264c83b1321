"""Memory syscalls.  Linux: mm/mmap.c, mm/mprotect.c, mm/mremap.c, mm/madvise.c."""

from __future__ import annotations

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_ACCMODE, O_RDONLY, O_WRONLY
from pyvisor.abi.linux.mman import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE,
                                    MAP_SHARED, MAP_SHARED_VALIDATE, MAP_TYPE, PAGE_SIZE,
                                    PROT_EXEC, PROT_READ, PROT_WRITE, page_round_up)
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.fsimpl.tmpfs import seals
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import Task

_KNOWN_FLAGS = 0x1FFFFF


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
    fixed = bool(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
    prot &= 7
    if flags & MAP_ANONYMOUS:
        return t.mm.mmap(addr, length, prot, flags, fixed, noreplace=bool(flags & MAP_FIXED_NOREPLACE))
    f = t.fd_table.get(fd)
    if f.flags & 0o10000000:      # O_PATH
        raise SyscallError(Errno.EBADF)
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
    if off + page_round_up(length) > 1 << 46:
        raise SyscallError(Errno.EOVERFLOW)
    return t.mm.mmap(addr, length, prot, flags, fixed, mappable=mappable, offset=off,
                     name=f.path(), dev=f.inode.fs.dev, ino=f.inode.ino, extra=f,
                     noreplace=bool(flags & MAP_FIXED_NOREPLACE), maxperms=maxperms)


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
    return t.mm.set_brk(r.pointer(0))


def sys_mremap(t: Task, r: SyscallArguments) -> int:
    """Implements mremap(2)."""
    return t.mm.mremap(r.pointer(0), r.uint64(1), r.uint64(2), r.int32(3), r.pointer(4))


def sys_madvise(t: Task, r: SyscallArguments) -> int:
    """Implements madvise(2): DONTNEED zeroes private anonymous memory; other advice is a hint."""
    addr, length, advice = r.pointer(0), r.uint64(1), r.int32(2)
    if addr % PAGE_SIZE:
        raise SyscallError(Errno.EINVAL)
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
    """Implements msync(2): mappings share the page cache, so there is nothing to flush."""
    if r.pointer(0) % PAGE_SIZE or r.int32(2) & ~7:
        raise SyscallError(Errno.EINVAL)
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


def sys_mlock(t: Task, r: SyscallArguments) -> int:
    return 0
