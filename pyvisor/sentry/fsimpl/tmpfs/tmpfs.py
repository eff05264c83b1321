"""tmpfs: a filesystem in memory.  Linux: mm/shmem.c.

Regular file data lives in the memory file (one extent per file, grown by
doubling), so read/write and shared mappings see the same bytes.  Used for
/tmp, /dev/shm, the overlay's upper layer and memfd_create.

Invariant: a file's bytes past `size` within its extent are zero, so growing
by truncate or by a write past EOF never exposes old data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mman import page_round_up
from pyvisor.abi.linux.stat import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, TMPFS_MAGIC, dtype_of
from pyvisor.sentry.kernel.errors import SyscallError
from pyvisor.sentry.mm.memfile import MappedRange, MemoryFile
from pyvisor.sentry.vfs.file import DirectoryImpl, FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import DirEntry, Filesystem, Inode, now_ns

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

MAX_FILE_SIZE = 1 << 34


class TmpFS(Filesystem):
    """One tmpfs instance."""

    name = "tmpfs"
    magic = TMPFS_MAGIC

    def __init__(self, memfile: MemoryFile, size_limit: int = 0) -> None:
        super().__init__()
        self.memfile = memfile
        self.size_limit = size_limit      # bytes; 0 = unlimited
        self.used = 0

    def new_root(self, mode: int = 0o1777, uid: int = 0, gid: int = 0) -> TmpfsDir:
        return TmpfsDir(self, S_IFDIR | mode, uid, gid)


class TmpfsDir(Inode):
    """A tmpfs directory: a dict of children."""

    __slots__ = ("entries",)

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, mode, uid, gid)
        self.entries: dict[bytes, Inode] = {}

    def lookup(self, name: bytes) -> Inode:
        try:
            return self.entries[name]
        except KeyError:
            raise SyscallError(Errno.ENOENT) from None

    def readdir(self) -> Iterable[DirEntry]:
        return [DirEntry(n, i.ino, dtype_of(i.mode)) for n, i in list(self.entries.items())]

    def _add(self, name: bytes, inode: Inode) -> Inode:
        if self.fs.readonly:
            raise SyscallError(Errno.EROFS)
        if name in self.entries:
            raise SyscallError(Errno.EEXIST)
        self.entries[name] = inode
        if inode.is_dir():
            self.nlink += 1
        self.mtime_ns = self.ctime_ns = now_ns()
        return inode

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        assert isinstance(self.fs, TmpFS)
        return self._add(name, TmpfsFile(self.fs, S_IFREG | (mode & 0o7777), uid, gid))

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        assert isinstance(self.fs, TmpFS)
        return self._add(name, TmpfsDir(self.fs, S_IFDIR | (mode & 0o7777), uid, gid))

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Inode:
        assert isinstance(self.fs, TmpFS)
        ftype = mode & S_IFMT
        if ftype in (S_IFREG, 0):
            return self.create(name, mode, uid, gid)
        from pyvisor.abi.linux.stat import S_IFIFO, S_IFSOCK
        if ftype in (S_IFIFO, S_IFSOCK):
            node = TmpfsSpecial(self.fs, mode, uid, gid)
            return self._add(name, node)
        raise SyscallError(Errno.EPERM)   # device nodes are never created in a sandbox

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> Inode:
        assert isinstance(self.fs, TmpFS)
        return self._add(name, TmpfsSymlink(self.fs, target, uid, gid))

    def link(self, name: bytes, target: Inode) -> None:
        if target.fs is not self.fs:
            raise SyscallError(Errno.EXDEV)
        if target.is_dir():
            raise SyscallError(Errno.EPERM)
        self._add(name, target)
        target.nlink += 1
        target.ctime_ns = now_ns()

    def _remove(self, name: bytes) -> Inode:
        if self.fs.readonly:
            raise SyscallError(Errno.EROFS)
        inode = self.entries.pop(name)
        self.mtime_ns = self.ctime_ns = now_ns()
        if inode.is_dir():
            self.nlink -= 1
            inode.nlink = 0
        else:
            inode.nlink -= 1
            inode.ctime_ns = now_ns()
        if inode.nlink <= 0 and isinstance(inode, TmpfsFile):
            inode.unlinked()
        return inode

    def unlink(self, name: bytes) -> None:
        inode = self.lookup(name)
        if inode.is_dir():
            raise SyscallError(Errno.EISDIR)
        self._remove(name)

    def rmdir(self, name: bytes) -> None:
        inode = self.lookup(name)
        if not inode.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        assert isinstance(inode, TmpfsDir)
        if inode.entries:
            raise SyscallError(Errno.ENOTEMPTY)
        self._remove(name)

    def rename(self, old: bytes, newdir: Inode, new: bytes) -> None:
        if not isinstance(newdir, TmpfsDir) or newdir.fs is not self.fs:
            raise SyscallError(Errno.EXDEV)
        if self.fs.readonly:
            raise SyscallError(Errno.EROFS)
        src = self.lookup(old)
        if newdir is self and old == new:
            return
        dst = newdir.entries.get(new)
        if dst is not None:
            if dst is src:
                return
            if src.is_dir():
                if not dst.is_dir():
                    raise SyscallError(Errno.ENOTDIR)
                assert isinstance(dst, TmpfsDir)
                if dst.entries:
                    raise SyscallError(Errno.ENOTEMPTY)
            elif dst.is_dir():
                raise SyscallError(Errno.EISDIR)
            newdir._remove(new)
        if src.is_dir() and _is_ancestor(src, newdir):
            raise SyscallError(Errno.EINVAL)
        del self.entries[old]
        newdir.entries[new] = src
        if src.is_dir():
            self.nlink -= 1
            newdir.nlink += 1
        t = now_ns()
        self.mtime_ns = self.ctime_ns = newdir.mtime_ns = newdir.ctime_ns = src.ctime_ns = t

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        return DirectoryImpl()


def _is_ancestor(a: Inode, b: Inode) -> bool:
    """Whether directory `a` is `b` or contains it (rename into itself is EINVAL)."""
    if a is b:
        return True
    stack = [a]
    while stack:
        d = stack.pop()
        if isinstance(d, TmpfsDir):
            for c in d.entries.values():
                if c is b:
                    return True
                if c.is_dir():
                    stack.append(c)
    return False


class TmpfsSymlink(Inode):
    __slots__ = ("target",)

    def __init__(self, fs: TmpFS, target: bytes, uid: int, gid: int) -> None:
        super().__init__(fs, S_IFLNK | 0o777, uid, gid)
        self.target = target

    def readlink(self) -> bytes:
        return self.target

    def size(self) -> int:
        return len(self.target)


class TmpfsSpecial(Inode):
    """A FIFO or socket node; opening is handled by the pipe/socket layers."""

    __slots__ = ("bound",)

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, mode, uid, gid)
        self.bound: object = None

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        from pyvisor.abi.linux.stat import S_IFIFO
        if self.ftype == S_IFIFO:
            from pyvisor.sentry.kernel.pipe import open_fifo
            return open_fifo(self, fd, flags)
        raise SyscallError(Errno.ENXIO)


class TmpfsFile(Inode):
    """A regular tmpfs file: bytes in one memory-file extent."""

    __slots__ = ("_size", "extent", "cap", "stale", "seals")

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, mode, uid, gid)
        self._size = 0
        self.extent = -1        # memory-file offset; -1 = no storage yet
        self.cap = 0
        self.stale: list[tuple[int, int]] = []   # old extents possibly still mapped
        self.seals = 0

    @property
    def memfile(self) -> MemoryFile:
        fs = self.fs
        assert isinstance(fs, TmpFS)
        return fs.memfile

    def size(self) -> int:
        return self._size

    def _reserve(self, n: int) -> None:
        """Ensures the extent holds at least `n` bytes, moving it if it must grow."""
        if n <= self.cap:
            return
        if n > MAX_FILE_SIZE:
            raise SyscallError(Errno.EFBIG)
        fs = self.fs
        assert isinstance(fs, TmpFS)
        if fs.size_limit and fs.used - self.cap + page_round_up(n) > fs.size_limit:
            raise SyscallError(Errno.ENOSPC)
        mf = self.memfile
        try:
            off, cap = mf.allocate(max(n, self.cap * 2))
        except MemoryError:
            raise SyscallError(Errno.ENOSPC) from None
        if self.extent >= 0:
            mf.map[off:off + self._size] = mf.map[self.extent:self.extent + self._size]
            # Mappings of the old extent keep their pages until the file dies.
            self.stale.append((self.extent, self.cap))
        fs.used += cap - self.cap
        self.extent, self.cap = off, cap

    def read_at(self, n: int, offset: int) -> bytes:
        if offset >= self._size or n <= 0:
            return b""
        end = min(self._size, offset + n)
        base = self.extent
        return self.memfile.map[base + offset:base + end]

    def write_at(self, data: bytes, offset: int) -> int:
        n = len(data)
        if n == 0:
            return 0
        if self.fs.readonly:
            raise SyscallError(Errno.EROFS)
        end = offset + n
        self._reserve(end)
        base = self.extent
        self.memfile.map[base + offset:base + end] = data
        if end > self._size:
            self._size = end
        self.mtime_ns = self.ctime_ns = now_ns()
        return n

    def truncate(self, size: int) -> None:
        if size < 0:
            raise SyscallError(Errno.EINVAL)
        if size > MAX_FILE_SIZE:
            raise SyscallError(Errno.EFBIG)
        if size < self._size:
            self.memfile.zero(self.extent + size, self._size - size)
        else:
            self._reserve(size)
        self._size = size
        self.mtime_ns = self.ctime_ns = now_ns()

    def unlinked(self) -> None:
        """The last name is gone.  Storage is freed when the inode is collected."""

    def __del__(self) -> None:
        try:
            fs = self.fs
            if isinstance(fs, TmpFS) and self.extent >= 0:
                fs.memfile.free(self.extent, self.cap)
                fs.used -= self.cap
                for off, cap in self.stale:
                    fs.memfile.free(off, cap)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        return TmpfsFileImpl()

    def mappable(self) -> TmpfsFile:
        return self

    def translate(self, offset: int, length: int, writable_shared: bool) -> list[MappedRange]:
        self._reserve(offset + length)
        return [MappedRange(offset, self.extent + offset, length)]


class TmpfsFileImpl(FileImpl):
    """read/write on a tmpfs regular file."""

    seekable = True

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        inode = fd.inode
        assert isinstance(inode, TmpfsFile)
        return inode.read_at(n, offset)

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        inode = fd.inode
        assert isinstance(inode, TmpfsFile)
        return inode.write_at(data, offset)
