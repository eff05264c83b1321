"""ETXTBSY: a file being executed cannot be opened for writing, and a file open for
writing cannot be executed.  Linux: inode->i_writecount with deny_write_access() /
get_write_access() (fs/exec.c, fs/open.c), and mm->exe_file holding the denial.

Files are identified by (filesystem dev, inode number), which stay the same for a
file across inode objects (a dentry evicted and looked up again) and across an
overlay copy-up (the overlay keeps the lower file's number).

* An address space holds its executable's denial from exec (or fork) until its last
  user is gone (`exe_acquire` / `exe_release`).
* An open file description with write access holds the file's write access until
  the description itself is freed (its last reference, from an fd, a mapping or a
  message in flight, is gone: Linux's last fput).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Kernel
    from pyvisor.sentry.mm.memory_manager import MemoryManager
    from pyvisor.sentry.vfs.file import FileDescription
    from pyvisor.sentry.vfs.inode import Inode

Key = tuple[int, int]


def _key(inode: Inode) -> Key:
    return (inode.fs.dev, inode.ino)


def _bump(counts: dict[Key, int], key: Key, delta: int) -> None:
    n = counts.get(key, 0) + delta
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)


def check_write(kernel: Kernel, inode: Inode) -> None:
    """Before opening (or truncating) a regular file for writing: ETXTBSY while some
    address space runs it."""
    if inode.is_regular() and _key(inode) in kernel.executing:
        raise SyscallError(Errno.ETXTBSY)


def track_writer(kernel: Kernel, f: FileDescription) -> None:
    """`f` was opened with write access: the file cannot be executed until `f` is freed."""
    if not (f.writable and f.inode.is_regular()):
        return
    key = _key(f.inode)
    _bump(kernel.writers, key, 1)
    weakref.finalize(f, _bump, kernel.writers, key, -1)


def check_exec(kernel: Kernel, inode: Inode) -> None:
    """Before executing a file (or loading its interpreter): ETXTBSY while it is open
    for writing."""
    if _key(inode) in kernel.writers:
        raise SyscallError(Errno.ETXTBSY)


def exe_acquire(kernel: Kernel, mm: MemoryManager) -> None:
    """`mm` runs its executable (a new image, or a fork's copy)."""
    if mm.exe is not None:
        _bump(kernel.executing, _key(mm.exe.dentry.inode), 1)


def exe_release(kernel: Kernel, mm: MemoryManager) -> None:
    """`mm` lost its last user."""
    if mm.exe is not None:
        _bump(kernel.executing, _key(mm.exe.dentry.inode), -1)
