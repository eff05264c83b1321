"""tmpfs: a filesystem in memory.  Linux: mm/shmem.c.

Regular file data lives in the memory file (one extent per file, grown by
doubling), so read/write and shared mappings see the same bytes.  Used for
/tmp, /dev/shm, the overlay's upper layer and memfd_create.

Invariant: a file's bytes past `size` within its extent are zero, so growing
by truncate or by a write past EOF never exposes old data.

Limits, as Linux's tmpfs (mount options `size=` and `nr_inodes=`), ENOSPC past
either:
  * size: the pages of file data a file holds (those written, fallocated or
    mapped; a hole left by truncate or a seek costs nothing, as Linux's sparse
    tmpfs files) and one page per symlink whose target does not fit inline
    (SHORT_SYMLINK_LEN);
  * nr_inodes: every inode (the root directory too) until it is freed, and
    every extra hard link (Linux: shmem_reserve_inode in shmem_link).
What lives in the Sentry's heap rather than in the memory file (inode objects,
directory entries, inline symlink targets) is also charged to the sandbox's
Sentry memory account (memacct.py) when the TmpFS has one: ENOSPC when it is
full, as shmem_get_inode gives when an inode cannot be allocated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from pyvisor.sentry.vfs.xattr import XattrStore
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import F_SEAL_SEAL
from pyvisor.abi.linux.mman import PAGE_SIZE, page_round_up
from pyvisor.abi.linux.stat import (S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, STATFS, TMPFS_MAGIC,
                                    dtype_of)
from pyvisor.sentry.fsimpl.tmpfs import seals
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.memacct import Kind, SentryMemory
from pyvisor.sentry.mm.memfile import MappedRange, MemoryFile
from pyvisor.sentry.mm.memory_manager import truncate_mappings
from pyvisor.sentry.vfs.dirent import FIRST_CHILD_OFF, pack_dirents
from pyvisor.sentry.vfs.file import DirectoryImpl, FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import DirEntry, Filesystem, Inode, now_ns
from pyvisor.sentry.vfs.vfs import NAME_MAX

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

MAX_FILE_SIZE = 1 << 34
SHORT_SYMLINK_LEN = 128          # targets (with their NUL) up to this are kept inline
INODE_COST = 512                 # Sentry heap per inode (object, dict slot, dentry)
DIRENT_COST = 64                 # Sentry heap per directory entry, plus its name


class TmpFS(Filesystem):
    """One tmpfs instance.  Linux: struct shmem_sb_info."""

    name = "tmpfs"
    magic = TMPFS_MAGIC

    def __init__(self, memfile: MemoryFile, size_limit: int = 0, nr_inodes: int = 0,
                 acct: SentryMemory | None = None) -> None:
        super().__init__()
        self.memfile = memfile
        self.size_limit = size_limit      # bytes; 0 = unlimited
        self.used = 0                     # bytes charged against size_limit (whole pages)
        self.nr_inodes = nr_inodes        # 0 = unlimited
        self.inodes = 0                   # inodes and extra links charged against nr_inodes
        self.acct = acct                  # the Sentry memory account, if any

    def new_root(self, mode: int = 0o1777, uid: int = 0, gid: int = 0) -> TmpfsDir:
        return TmpfsDir(self, S_IFDIR | mode, uid, gid)

    # -- accounting ------------------------------------------------------------------

    def reserve_inode(self, heap: int = INODE_COST) -> None:
        """One more inode (or hard link); ENOSPC past nr_inodes or the Sentry's bound."""
        if self.nr_inodes and self.inodes >= self.nr_inodes:
            raise SyscallError(Errno.ENOSPC)
        if not self.charge_heap(heap):
            raise SyscallError(Errno.ENOSPC)
        self.inodes += 1

    def free_inode(self, heap: int = INODE_COST) -> None:
        self.inodes -= 1
        self.uncharge_heap(heap)

    def charge_heap(self, n: int) -> bool:
        return self.acct is None or self.acct.try_charge(Kind.TMPFS, n)

    def uncharge_heap(self, n: int) -> None:
        if self.acct is not None:
            self.acct.uncharge(Kind.TMPFS, n)

    def reserve_space(self, n: int) -> None:
        """`n` more bytes (whole pages) of data; ENOSPC past size_limit."""
        if self.size_limit and self.used + n > self.size_limit:
            raise SyscallError(Errno.ENOSPC)
        self.used += n

    def free_space(self, n: int) -> None:
        self.used -= n

    def statfs(self) -> bytes:
        """struct statfs as Linux's shmem_statfs: blocks and inodes of the limits."""
        if not self.size_limit and not self.nr_inodes:
            return super().statfs()
        blocks = self.size_limit // PAGE_SIZE
        bfree = max(0, self.size_limit - self.used) // PAGE_SIZE
        files = self.nr_inodes
        ffree = max(0, self.nr_inodes - self.inodes)
        return STATFS.pack(self.magic, PAGE_SIZE, blocks, bfree, bfree, files, ffree,
                           0, 0, NAME_MAX, PAGE_SIZE, 0)


def _dirent_cost(name: bytes) -> int:
    return DIRENT_COST + len(name)


class TmpfsInode(Inode):
    """What every tmpfs inode shares: its charge against nr_inodes, returned when the
    inode is freed (its last name and its last open file or mapping gone)."""

    __slots__ = ("_counted", "_xattrs")

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int) -> None:
        fs.reserve_inode()             # raises ENOSPC before anything exists
        self._counted = True
        self._xattrs: XattrStore | None = None
        super().__init__(fs, mode, uid, gid)

    def xattr_store(self, create: bool) -> XattrStore | None:
        if self._xattrs is None and create:
            self._xattrs = XattrStore()
        return self._xattrs

    def __del__(self) -> None:
        try:
            if self._counted:
                self._counted = False
                fs = self.fs
                assert isinstance(fs, TmpFS)
                fs.free_inode()
        except Exception:  # noqa: BLE001 - a half-built inode, or interpreter shutdown
            pass


class _Children(dict):
    """A directory's children by name, with their getdents64 records cached until
    the next change.  Every way of changing a dict drops the cache, so no caller
    that adds, removes or renames a child can leave a stale listing behind."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        super().__init__()
        self.records: tuple[bytes, list[int]] | None = None

    def __setitem__(self, key, value) -> None:  # type: ignore[no-untyped-def]
        self.records = None
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:  # type: ignore[no-untyped-def]
        self.records = None
        super().__delitem__(key)

    def pop(self, *args):  # type: ignore[no-untyped-def]
        self.records = None
        return super().pop(*args)

    def popitem(self):  # type: ignore[no-untyped-def]
        self.records = None
        return super().popitem()

    def setdefault(self, *args):  # type: ignore[no-untyped-def]
        self.records = None
        return super().setdefault(*args)

    def update(self, *args, **kw) -> None:  # type: ignore[no-untyped-def]
        self.records = None
        super().update(*args, **kw)

    def clear(self) -> None:
        self.records = None
        super().clear()

    def __ior__(self, other):  # type: ignore[no-untyped-def]
        self.records = None
        return super().__ior__(other)


class TmpfsDir(TmpfsInode):
    """A tmpfs directory: a dict of children."""

    __slots__ = ("entries",)

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, mode, uid, gid)
        self.entries: dict[bytes, Inode] = _Children()

    def lookup(self, name: bytes) -> Inode:
        try:
            return self.entries[name]
        except KeyError:
            raise SyscallError(Errno.ENOENT) from None

    def readdir(self) -> Iterable[DirEntry]:
        return [DirEntry(n, i.ino, dtype_of(i.mode)) for n, i in list(self.entries.items())]

    def dirent_records(self) -> tuple[bytes, list[int]]:
        # A child's number and type never change, so the records stay valid until
        # the set of names changes, which drops the cache (_Children).
        children = self.entries
        if not isinstance(children, _Children):
            return super().dirent_records()
        if children.records is None:
            children.records = pack_dirents(
                [(n, i.ino, dtype_of(i.mode)) for n, i in children.items()], FIRST_CHILD_OFF)
        return children.records

    @property
    def tmpfs(self) -> TmpFS:
        fs = self.fs
        assert isinstance(fs, TmpFS)
        return fs

    def _check_new(self, name: bytes) -> None:
        if self.fs.readonly:
            raise SyscallError(Errno.EROFS)
        if name in self.entries:
            raise SyscallError(Errno.EEXIST)

    def _add(self, name: bytes, inode: Inode) -> Inode:
        self._check_new(name)
        if not self.tmpfs.charge_heap(_dirent_cost(name)):
            raise SyscallError(Errno.ENOSPC)
        self.entries[name] = inode
        if inode.is_dir():
            self.nlink += 1
        self.mtime_ns = self.ctime_ns = now_ns()
        return inode

    def add_child(self, name: bytes, inode: Inode) -> Inode:
        """Links a ready inode (a device node of devfs) under `name`, charged as any."""
        return self._add(name, inode)

    def remove_child(self, name: bytes) -> None:
        """Undoes add_child (the inode's link count is its own: a terminal's, say)."""
        if self.entries.pop(name, None) is not None:
            self.tmpfs.uncharge_heap(_dirent_cost(name))
            self.mtime_ns = self.ctime_ns = now_ns()

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        self._check_new(name)
        return self._add(name, TmpfsFile(self.tmpfs, S_IFREG | (mode & 0o7777), uid, gid))

    def tmpfile(self, mode: int, uid: int, gid: int) -> Inode:
        if self.fs.readonly:
            raise SyscallError(Errno.EROFS)
        f = TmpfsFile(self.tmpfs, S_IFREG | (mode & 0o7777), uid, gid)
        f.nlink = 0
        return f

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        self._check_new(name)
        return self._add(name, TmpfsDir(self.tmpfs, S_IFDIR | (mode & 0o7777), uid, gid))

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Inode:
        assert isinstance(self.fs, TmpFS)
        ftype = mode & S_IFMT
        if ftype in (S_IFREG, 0):
            return self.create(name, mode, uid, gid)
        from pyvisor.abi.linux.stat import S_IFIFO, S_IFSOCK
        if ftype in (S_IFIFO, S_IFSOCK):
            self._check_new(name)
            node = TmpfsSpecial(self.tmpfs, mode, uid, gid)
            return self._add(name, node)
        raise SyscallError(Errno.EPERM)   # device nodes are never created in a sandbox

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> Inode:
        self._check_new(name)
        return self._add(name, TmpfsSymlink(self.tmpfs, target, uid, gid))

    def link(self, name: bytes, target: Inode) -> None:
        if target.fs is not self.fs:
            raise SyscallError(Errno.EXDEV)
        if target.is_dir():
            raise SyscallError(Errno.EPERM)
        self._check_new(name)
        fs = self.tmpfs
        first = target.nlink == 0        # an O_TMPFILE file: its own inode is its charge
        if not first:
            fs.reserve_inode(heap=0)     # a link costs an inode, as in Linux
        try:
            self._add(name, target)
        except SyscallError:
            if not first:
                fs.free_inode(heap=0)
            raise
        target.nlink += 1
        target.ctime_ns = now_ns()

    def _remove(self, name: bytes) -> Inode:
        if self.fs.readonly:
            raise SyscallError(Errno.EROFS)
        inode = self.entries.pop(name)
        self.tmpfs.uncharge_heap(_dirent_cost(name))
        self.mtime_ns = self.ctime_ns = now_ns()
        if inode.is_dir():
            self.nlink -= 1
            inode.nlink = 0
        else:
            if inode.nlink > 1:
                self.tmpfs.free_inode(heap=0)   # an extra link; the last goes with the inode
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
        if src.is_dir() and _is_ancestor(src, newdir):
            raise SyscallError(Errno.EINVAL)
        fs = self.tmpfs
        if not fs.charge_heap(_dirent_cost(new)):
            raise SyscallError(Errno.ENOSPC)
        if dst is not None:
            newdir._remove(new)
        del self.entries[old]
        fs.uncharge_heap(_dirent_cost(old))
        newdir.entries[new] = src
        if src.is_dir():
            self.nlink -= 1
            newdir.nlink += 1
        t = now_ns()
        self.mtime_ns = self.ctime_ns = newdir.mtime_ns = newdir.ctime_ns = src.ctime_ns = t

    def exchange(self, old: bytes, newdir: Inode, new: bytes) -> None:
        """RENAME_EXCHANGE: the two names swap their files (Linux: simple_rename_exchange)."""
        if not isinstance(newdir, TmpfsDir) or newdir.fs is not self.fs:
            raise SyscallError(Errno.EXDEV)
        if self.fs.readonly:
            raise SyscallError(Errno.EROFS)
        a = self.lookup(old)
        b = newdir.lookup(new)
        if a is b:
            return
        if a.is_dir() and _is_ancestor(a, newdir) or b.is_dir() and _is_ancestor(b, self):
            raise SyscallError(Errno.EINVAL)
        self.entries[old] = b
        newdir.entries[new] = a
        if self is not newdir and a.is_dir() != b.is_dir():
            d = 1 if a.is_dir() else -1          # a directory changed parents
            self.nlink -= d
            newdir.nlink += d
        t = now_ns()
        self.mtime_ns = self.ctime_ns = newdir.mtime_ns = newdir.ctime_ns = t
        a.ctime_ns = b.ctime_ns = t

    def rename_whiteout(self, old: bytes, newdir: Inode, new: bytes) -> None:
        """RENAME_WHITEOUT: rename, then a whiteout at the old name (Linux: shmem_whiteout)."""
        from pyvisor.abi.linux.stat import S_IFCHR
        self.rename(old, newdir, new)
        if old not in self.entries:
            self._add(old, TmpfsSpecial(self.tmpfs, S_IFCHR, 0, 0))

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


class TmpfsSymlink(TmpfsInode):
    """A symlink: a short target is kept inline (Sentry heap), a long one takes a page
    of the filesystem's size, as Linux's shmem_symlink."""

    __slots__ = ("target", "charge")

    def __init__(self, fs: TmpFS, target: bytes, uid: int, gid: int) -> None:
        super().__init__(fs, S_IFLNK | 0o777, uid, gid)
        self.charge = 0
        if len(target) + 1 > SHORT_SYMLINK_LEN:
            fs.reserve_space(PAGE_SIZE)
            self.charge = PAGE_SIZE
        elif not fs.charge_heap(len(target)):
            raise SyscallError(Errno.ENOSPC)
        self.target = target

    def __del__(self) -> None:
        try:
            fs = self.fs
            assert isinstance(fs, TmpFS)
            if self.charge:
                fs.free_space(self.charge)
            else:
                fs.uncharge_heap(len(self.target))
        except Exception:  # noqa: BLE001 - a half-built inode, or interpreter shutdown
            pass
        super().__del__()

    def readlink(self) -> bytes:
        """The target; reading or following it touches the atime, as relatime does
        (Linux: touch_atime in pick_link and readlinkat)."""
        a = self.atime_ns
        if not self.fs.readonly and (a <= self.mtime_ns or a <= self.ctime_ns):
            self.atime_ns = now_ns()
        return self.target

    def size(self) -> int:
        return len(self.target)


class TmpfsSpecial(TmpfsInode):
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


class TmpfsFile(TmpfsInode):
    """A regular tmpfs file: bytes in one memory-file extent."""

    __slots__ = ("_size", "extent", "cap", "stale", "seals", "pages")

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int) -> None:
        super().__init__(fs, mode, uid, gid)
        self._size = 0
        self.extent = -1        # memory-file offset; -1 = no storage yet
        self.cap = 0
        self.stale: list[tuple[int, int]] = []   # old extents possibly still mapped
        self.seals = F_SEAL_SEAL     # memfd_create(MFD_ALLOW_SEALING) clears it (seals.py)
        self.pages: set[int] = set()   # indices of the pages charged to fs.used

    @property
    def memfile(self) -> MemoryFile:
        fs = self.fs
        assert isinstance(fs, TmpFS)
        return fs.memfile

    def size(self) -> int:
        return self._size

    @property
    def charged(self) -> int:
        """Bytes (whole pages) charged to the filesystem's size."""
        return len(self.pages) * PAGE_SIZE

    def _charge(self, start: int, end: int, partial: bool) -> int:
        """Charges the pages holding bytes [start, end) that are not yet charged.  With
        `partial`, stops at the first page the size limit refuses and returns where
        (Linux's shmem_write_begin failing at that page); otherwise all or ENOSPC.
        A filesystem without a size limit tracks nothing (its pages cost the memory
        file only).  Work is bounded by the pages the limit allows, not the range."""
        fs = self.fs
        assert isinstance(fs, TmpFS)
        if not fs.size_limit or end <= start:
            return end
        first, last = start // PAGE_SIZE, (end + PAGE_SIZE - 1) // PAGE_SIZE
        room = max(0, (fs.size_limit - fs.used) // PAGE_SIZE)
        already = sum(1 for i in self.pages if first <= i < last)
        if last - first - already <= room:
            new = [i for i in range(first, last) if i not in self.pages]
        elif not partial:
            raise SyscallError(Errno.ENOSPC)
        else:
            new = []
            i = first
            while i < last:
                if i not in self.pages:
                    if len(new) == room:
                        end = i * PAGE_SIZE          # the refused page
                        break
                    new.append(i)
                i += 1
        fs.reserve_space(len(new) * PAGE_SIZE)
        self.pages.update(new)
        return end

    def allocate(self, offset: int, length: int) -> None:
        """fallocate(mode 0): the pages are charged, the size covers them."""
        end = offset + length
        if end > MAX_FILE_SIZE:
            raise SyscallError(Errno.EFBIG)
        if self.fs.readonly:
            raise SyscallError(Errno.EROFS)
        if self.seals & ~F_SEAL_SEAL:
            from pyvisor.abi.linux.fcntl import F_SEAL_FUTURE_WRITE, F_SEAL_WRITE
            if self.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):
                raise SyscallError(Errno.EPERM)     # shmem_fallocate
            if end > self._size:
                seals.check_truncate(self, end)
        self._charge(offset, end, partial=False)
        self._grow(end)
        if end > self._size:
            self._size = end
        self.ctime_ns = now_ns()

    def _reserve(self, n: int) -> None:
        """Ensures the extent holds at least `n` bytes and every page up to `n` is
        charged (a mapping's pages)."""
        if n > MAX_FILE_SIZE:
            raise SyscallError(Errno.EFBIG)
        self._charge(0, n, partial=False)
        self._grow(n)

    def _grow(self, n: int) -> None:
        """Ensures the extent holds at least `n` bytes, moving it if it must grow."""
        if n > MAX_FILE_SIZE:
            raise SyscallError(Errno.EFBIG)
        if n <= self.cap:
            return
        mf = self.memfile
        try:
            off, cap = mf.allocate(max(n, self.cap * 2))
        except MemoryError:
            raise SyscallError(Errno.ENOSPC) from None
        if self.extent >= 0:
            mf.map[off:off + self._size] = mf.map[self.extent:self.extent + self._size]
            # Mappings of the old extent keep their pages until the file dies.
            self.stale.append((self.extent, self.cap))
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
        if self.seals & ~F_SEAL_SEAL:
            n = seals.check_write(self, offset, n)
        end = offset + n
        if end > MAX_FILE_SIZE:
            raise SyscallError(Errno.EFBIG)
        # Write what fits in the pages still free (Linux writes up to the first page it
        # cannot allocate); nothing fits: ENOSPC.
        end = self._charge(offset, end, partial=True)
        if end <= offset:
            raise SyscallError(Errno.ENOSPC)
        n = end - offset
        self._grow(end)
        base = self.extent
        self.memfile.map[base + offset:base + end] = data[:n]
        if end > self._size:
            self._size = end
        self.mtime_ns = self.ctime_ns = now_ns()
        return n

    def truncate(self, size: int) -> None:
        if size < 0:
            raise SyscallError(Errno.EINVAL)
        if size > MAX_FILE_SIZE:
            raise SyscallError(Errno.EFBIG)
        if self.seals & ~F_SEAL_SEAL:
            seals.check_truncate(self, size)
        if size < self._size:
            self.memfile.zero(self.extent + size, self._size - size)
            # The pages past the new end are freed (their charge too).
            keep = page_round_up(size) // PAGE_SIZE
            gone = [i for i in self.pages if i >= keep]
            if gone:
                fs = self.fs
                assert isinstance(fs, TmpFS)
                fs.free_space(len(gone) * PAGE_SIZE)
                self.pages.difference_update(gone)
        else:
            self._grow(size)              # a hole: no page is charged for it
        shrunk = size < self._size
        self._size = size
        self.mtime_ns = self.ctime_ns = now_ns()
        if shrunk:
            truncate_mappings(self, size)       # mapped pages past the end now SIGBUS

    def unlinked(self) -> None:
        """The last name is gone.  Storage is freed when the inode is collected."""

    def __del__(self) -> None:
        try:
            fs = self.fs
            if isinstance(fs, TmpFS):
                if self.extent >= 0:
                    fs.memfile.free(self.extent, self.cap)
                    for off, cap in self.stale:
                        fs.memfile.free(off, cap)
                fs.free_space(self.charged)
                self.pages = set()
        except Exception:  # noqa: BLE001 - a half-built inode, or interpreter shutdown
            pass
        super().__del__()

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
        return inode.read_at(n, offset)     # the atime: vfs/atime.py, after the read

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        inode = fd.inode
        assert isinstance(inode, TmpfsFile)
        n = inode.write_at(data, offset)
        if n and inode._xattrs is not None:
            kill_priv(inode)
        return n




def kill_priv(inode: Inode) -> None:
    """A write or a change of owner drops the file's capabilities (Linux:
    file_remove_privs / notify_change's ATTR_KILL_PRIV, cap_inode_killpriv)."""
    store = inode.xattr_store(False)
    if store is not None and b"security.capability" in store.attrs:
        store.remove(b"security.capability")


# -- mount options ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TmpfsOptions:
    """What a tmpfs mount asked for.  Linux: shmem_parse_one."""

    size: int           # bytes, a whole number of pages; 0 = unlimited
    nr_inodes: int      # 0 = unlimited
    mode: int = 0o1777
    uid: int = 0
    gid: int = 0


def _memparse(text: str) -> int:
    """Linux's memparse: a number with an optional k/m/g/t/p/e suffix (binary)."""
    t = text.strip().lower()
    shift = 0
    if t and t[-1] in "kmgtpe":
        shift = 10 * ("kmgtpe".index(t[-1]) + 1)
        t = t[:-1]
    try:
        value = int(t, 0)
    except ValueError:
        raise ValueError(f"bad number {text!r}") from None
    if value < 0:
        raise ValueError(f"bad number {text!r}")
    return value << shift


def parse_options(options: list[str], size: int, nr_inodes: int, ram: int) -> TmpfsOptions:
    """The tmpfs options among an OCI mount's `options` (others, such as nosuid, are
    the mount's, not the filesystem's, and are ignored here).  `size` and `nr_inodes`
    are the defaults; `ram` is what `size=N%` is a percentage of.  ValueError on a
    malformed value."""
    mode, uid, gid = 0o1777, 0, 0
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep:
            continue
        if key == "size":
            if value.endswith("%"):
                pct = _memparse(value[:-1])
                size = ram * pct // 100
            else:
                size = _memparse(value)
            size = page_round_up(size)
        elif key == "nr_inodes":
            nr_inodes = _memparse(value)
        elif key == "mode":
            try:
                mode = int(value, 8) & 0o7777
            except ValueError:
                raise ValueError(f"bad mode {value!r}") from None
        elif key in ("uid", "gid"):
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"bad {key} {value!r}") from None
            if not 0 <= n < 1 << 32:
                raise ValueError(f"bad {key} {value!r}")
            uid, gid = (n, gid) if key == "uid" else (uid, n)
    if size > MAX_FILE_SIZE << 4:
        raise ValueError(f"size too large: {size}")
    return TmpfsOptions(size, nr_inodes, mode, uid, gid)


def default_nr_inodes(memory_limit: int) -> int:
    """Linux's default nr_inodes, half the RAM's pages, with the sandbox's memory limit
    as its RAM."""
    return max(1024, memory_limit // PAGE_SIZE // 2)
