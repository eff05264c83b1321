"""File descriptor tables.  Linux: fs/file.c (struct files_struct).

Maps fd numbers to (FileDescription, close-on-exec).  Shared between threads
(and CLONE_FILES children); fork copies it, taking a reference on each
description.  Invariant: every entry holds one reference (FileDescription.refs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.vfs.file import FileDescription


class FDTable:
    """An fd table.  Concurrency: Sentry loop only."""

    def __init__(self, limit: int = 1024) -> None:
        self.files: dict[int, tuple[FileDescription, bool]] = {}
        self.limit = limit            # RLIMIT_NOFILE soft limit, set by the owner

    def get(self, fd: int) -> FileDescription:
        try:
            return self.files[fd][0]
        except KeyError:
            raise SyscallError(Errno.EBADF) from None

    def _lowest_free(self, start: int) -> int:
        fd = start
        files = self.files
        while fd in files:
            fd += 1
        if fd >= self.limit:
            raise SyscallError(Errno.EMFILE)
        return fd

    def install(self, f: FileDescription, cloexec: bool = False, start: int = 0) -> int:
        """Takes ownership of one reference to `f`; returns the new fd."""
        fd = self._lowest_free(start)
        self.files[fd] = (f, cloexec)
        return fd

    def install_at(self, fd: int, f: FileDescription, cloexec: bool = False) -> None:
        """dup2 semantics: replaces whatever `fd` held.  Takes a reference's ownership."""
        if fd < 0 or fd >= self.limit:
            raise SyscallError(Errno.EBADF)
        old = self.files.get(fd)
        self.files[fd] = (f, cloexec)
        if old is not None:
            self._close(old[0])

    def remove(self, fd: int) -> FileDescription:
        try:
            f, _ = self.files.pop(fd)
        except KeyError:
            raise SyscallError(Errno.EBADF) from None
        self._close(f)
        return f

    def get_cloexec(self, fd: int) -> bool:
        try:
            return self.files[fd][1]
        except KeyError:
            raise SyscallError(Errno.EBADF) from None

    def set_cloexec(self, fd: int, cloexec: bool) -> None:
        f = self.get(fd)
        self.files[fd] = (f, cloexec)

    def fork(self) -> FDTable:
        t = FDTable(self.limit)
        t.files = dict(self.files)
        for f, _ in t.files.values():
            f.incref()
        return t

    def close_on_exec(self) -> None:
        for fd, (f, cloexec) in list(self.files.items()):
            if cloexec:
                del self.files[fd]
                self._close(f)

    def release(self) -> None:
        """The last user is gone: close everything."""
        files, self.files = self.files, {}
        for f, _ in files.values():
            self._close(f)

    def _close(self, f: FileDescription) -> None:
        """Drops one fd's reference.  Closing any fd of a file drops the POSIX record
        locks this table's process holds on it (Linux: filp_close's locks_remove_posix)."""
        if f.inode.lock_ctx is not None:
            from pyvisor.sentry.kernel.locks import release_posix
            release_posix(f, self)
        f.decref()
