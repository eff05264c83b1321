"""File seals on tmpfs files and memfds.  Linux: mm/memfd.c, mm/shmem.c.

Every tmpfs regular file has seals; a fresh one has F_SEAL_SEAL (no more seals), and
memfd_create(MFD_ALLOW_SEALING) clears it.  The checks run where Linux runs them:
writes (page by page, as shmem_write_begin), truncation, new shared mappings and
mprotect (through the mapping's maximum permissions), and F_ADD_SEALS itself.

Mapping rules follow Linux 6.13+: with F_SEAL_WRITE or F_SEAL_FUTURE_WRITE a shared
mapping may be made read-only but can never gain PROT_WRITE; F_SEAL_WRITE is refused
(EBUSY) while any shared mapping that could write (the file open for writing) exists.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import (F_ALL_SEALS, F_SEAL_EXEC, F_SEAL_FUTURE_WRITE,
                                     F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_WRITE,
                                     O_ACCMODE, O_RDONLY)
from pyvisor.abi.linux.mman import PROT_WRITE
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

_PAGE = 4096
_ANY_WRITE = F_SEAL_WRITE | F_SEAL_FUTURE_WRITE


def _sealable(inode: Any) -> bool:
    from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpfsFile
    return isinstance(inode, TmpfsFile)


def get_seals(inode: Any) -> int:
    """F_GET_SEALS: EINVAL for files that cannot be sealed."""
    if not _sealable(inode):
        raise SyscallError(Errno.EINVAL)
    return int(inode.seals)


def add_seals(t: Task, f: Any, seals: int) -> int:
    """F_ADD_SEALS.  Linux: memfd_add_seals."""
    inode = f.inode
    if not _sealable(inode):
        raise SyscallError(Errno.EINVAL)
    if f.flags & O_ACCMODE == O_RDONLY:
        raise SyscallError(Errno.EPERM)
    if seals & ~F_ALL_SEALS:
        raise SyscallError(Errno.EINVAL)
    if inode.seals & F_SEAL_SEAL:
        raise SyscallError(Errno.EPERM)
    if seals & F_SEAL_WRITE and not inode.seals & F_SEAL_WRITE and _writably_mapped(t, inode):
        raise SyscallError(Errno.EBUSY)
    if seals & F_SEAL_EXEC and inode.mode & 0o111:
        seals |= F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE
    inode.seals |= seals
    return 0


def _writably_mapped(t: Task, inode: Any) -> bool:
    """Whether a shared mapping of `inode` that may write exists in any address space
    (Linux: mapping_deny_writable fails on i_mmap_writable > 0)."""
    seen: set[int] = set()
    for task in list(t.kernel.tasks_by_tid.values()):
        mm = task.mm
        if id(mm) in seen:
            continue
        seen.add(id(mm))
        for v in mm.vmas:
            if v.shared and v.mappable is inode and v.maxperms & PROT_WRITE:
                return True
    return False


def check_write(inode: Any, offset: int, n: int) -> int:
    """How many of `n` bytes at `offset` a write may store (EPERM if none).  Linux:
    shmem_write_begin, called per page: F_SEAL_GROW stops at the first page chunk that
    would end past the size."""
    seals = inode.seals
    if not seals & (_ANY_WRITE | F_SEAL_GROW) or n == 0:
        return n
    if seals & _ANY_WRITE:
        raise SyscallError(Errno.EPERM)
    size = inode.size()
    if offset + n <= size:
        return n
    pos, end = offset, offset + n
    while pos < end:
        chunk_end = min(end, (pos // _PAGE + 1) * _PAGE)
        if chunk_end > size:
            break
        pos = chunk_end
    if pos == offset:
        raise SyscallError(Errno.EPERM)
    return pos - offset


def check_truncate(inode: Any, size: int) -> None:
    """Linux: shmem_setattr."""
    seals = inode.seals
    cur = inode.size()
    if (size < cur and seals & F_SEAL_SHRINK) or (size > cur and seals & F_SEAL_GROW):
        raise SyscallError(Errno.EPERM)


def check_mmap(inode: Any, prot: int, maxperms: int) -> int:
    """A new shared mapping: EPERM if it would write a write-sealed file; otherwise the
    mapping's maximum permissions (no PROT_WRITE once sealed).  Linux: memfd_check_seals_mmap."""
    if not _sealable(inode) or not inode.seals & _ANY_WRITE:
        return maxperms
    if prot & PROT_WRITE:
        raise SyscallError(Errno.EPERM)
    return maxperms & ~PROT_WRITE
