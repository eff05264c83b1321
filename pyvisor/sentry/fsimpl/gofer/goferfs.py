"""The gofer filesystem: files served by the Gofer process.
Linux: fs/9p/ (v9fs); gVisor: pkg/sentry/fsimpl/gofer over lisafs.

Each `GoferInode` holds one gofer fid (a server-side O_PATH handle) and a
cached copy of the file's attributes. Path lookups are RPCs, so a directory
inode caches its children by name (positive results only; a failed lookup is
asked again next time); the VFS's own Dentry cache sits on top of that.
File data never goes through the gofer socket: opening a file asks the Gofer
for a host fd, and reads and writes are pread/pwrite on it.

Attributes: `refresh()` (called by stat) re-stats over RPC; opening a file
re-stats it for free with fstat on the donated fd.

Exclusive access (runsc's --file-access=exclusive, its default for the root): the
filesystem assumes nothing but this sandbox changes the files behind it, as for the
read-only image below the root overlay. Then attributes are never re-fetched (stat
answers from the cache), failed lookups are remembered per directory (an import
probing sys.path asks once per name) and a directory's listing is read once. Bind
mounts are shared (runsc's --file-access-mounts default): every stat asks the host. Inode numbers are the
host's; the device number is this filesystem's own. Owners are the host's
(no uid mapping here).

Page cache: mmap needs the file's pages in the memory file. The first
`translate` allocates an extent, fills it from a read-only host fd and keeps
it for the inode's life; it is refilled in place when the host file's mtime
or size no longer match what was loaded, and write(2) through the Sentry
writes through to it, so read/write and mappings agree.
Known gap, TODO(#2): writes made through shared writable mappings stay in
the memory file and are never written back to the host file.
TODO(#2): the page cache is never evicted while the inode lives.

Fids: an inode's fid is released when the inode is collected, which the
bounded dentry cache makes happen (vfs/dcache.py): the VFS dentry holds the
inode, and a directory's `children` map holds its inodes only weakly.
Finalizers may run in the middle of an RPC, so `__del__` only queues the fid;
queued fids go to the Gofer in one CLOSE message, before the next RPC once
FID_BATCH of them are waiting.

Host fds: every fd the Gofer donates counts against the Sentry's file budget
(dcache.files) from before the request until it is closed. A Gofer at its
own fd budget answers ENFILE; the Sentry then shrinks the dcache, releases
the fids that frees and asks once more, and only then gives the application
ENFILE. A dead Gofer (its connection closed) makes every later call EIO.

Concurrency: Sentry loop only; every RPC is synchronous.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Iterable, TypeVar

import errno as host_errno

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_ACCMODE, O_RDONLY, O_RDWR, O_TRUNC, RENAME_EXCHANGE
from pyvisor.abi.linux.mman import page_round_up
from pyvisor.abi.linux.stat import (S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
                                    STATFS, V9FS_MAGIC)
from pyvisor.gofer.protocol import SetattrMask, Stat
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.memfile import MappedRange, MemoryFile
from pyvisor.sentry.mm.memory_manager import truncate_mappings
from pyvisor.sentry.vfs import dcache
from pyvisor.sentry.vfs.dcache import WeakChildren
from pyvisor.sentry.vfs.file import DirectoryImpl, FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import DirEntry, Filesystem, Inode, now_ns

if TYPE_CHECKING:
    from pyvisor.sentry.fsimpl.gofer.client import GoferClient
    from pyvisor.sentry.kernel.task import Task

_T = TypeVar("_T")

# uid/gid value meaning "leave unchanged" (chown(2)'s -1 as a u32).
_NO_ID = 0xFFFFFFFF

# From <linux/statfs.h>.
_ST_RDONLY = 1

# Released fids sent to the Gofer in one CLOSE once this many are queued.
FID_BATCH = 64
_ABSENT_MAX = 1024        # failed lookups remembered per directory (exclusive access)

# Host errnos meaning "out of file descriptors" (the Gofer's or ours).
_NO_FDS = (host_errno.EMFILE, host_errno.ENFILE)


class GoferFS(Filesystem):
    """One gofer mount (the container root or a bind mount).  Linux: a v9fs super_block.

    `root` is the attached root inode. `readonly` makes every mutation EROFS
    before any RPC (the Gofer enforces its own read-only flag too).
    """

    name = "9p"
    magic = V9FS_MAGIC

    def __init__(self, client: GoferClient, memfile: MemoryFile,
                 readonly: bool = False, exclusive: bool = False) -> None:
        super().__init__()
        self.client = client              # shared with nobody else
        self.memfile = memfile
        self.readonly = readonly
        # Nothing outside the sandbox changes these files (module docstring): cached
        # attributes, failed lookups and listings stay valid.  Only for a read-only
        # filesystem, so nothing inside changes them either.
        self.exclusive = exclusive and readonly
        self._dead_fids: list[int] = []   # queued by GoferInode.__del__
        self._chown_ok = True             # False once the Gofer refused a chown
        fid, st = self.call(client.attach)
        self.root = GoferInode(self, fid, st)

    def call(self, fn: Callable[..., _T], *args: object) -> _T:
        """Runs one client call; host errors become SyscallError.

        Fids of collected inodes are released first, here and never from a
        finalizer, so no CLOSE can interleave with another request. A Gofer
        out of fds gets them back from a dcache shrink, then one more try.
        """
        if len(self._dead_fids) >= FID_BATCH:
            self.flush_dead_fids()
        try:
            return fn(*args)
        except OSError as e:
            if e.errno not in _NO_FDS:
                raise SyscallError.from_host(e) from None
        dcache.reclaim()
        self.flush_dead_fids()
        try:
            return fn(*args)
        except OSError as e:
            if e.errno in _NO_FDS:
                raise SyscallError(Errno.ENFILE) from None
            raise SyscallError.from_host(e) from None

    def flush_dead_fids(self) -> None:
        """Sends the Gofer every queued fid release, in one message."""
        fids, self._dead_fids = self._dead_fids, []
        if fids:
            try:
                self.client.close_many(fids)
            except OSError:
                pass    # connection gone: the Gofer has dropped every fid

    def close_fd(self, fd: int) -> None:
        """Closes a host fd the Gofer donated, returning it to the file budget."""
        try:
            os.close(fd)
        finally:
            dcache.files.release()

    def open_fd(self, fid: int, flags: int) -> int:
        """OPEN over RPC, the donated fd counted against the file budget."""
        dcache.files.acquire()
        try:
            return self.call(self.client.open, fid, flags)
        except BaseException:
            dcache.files.release()
            raise

    def check_writable(self) -> None:
        """EROFS on a read-only mount."""
        if self.readonly:
            raise SyscallError(Errno.EROFS)

    def statfs(self) -> bytes:
        """struct statfs of the host filesystem behind the root."""
        s = self.call(self.client.statfs, self.root.fid)
        return STATFS.pack(V9FS_MAGIC, s.bsize, s.blocks, s.bfree, s.bavail, s.files,
                           s.ffree, 0, 0, s.namelen, s.bsize,
                           _ST_RDONLY if self.readonly else 0)


def make_gofer_root(client: GoferClient, memfile: MemoryFile,
                    readonly: bool = False) -> tuple[GoferFS, GoferInode]:
    """Attaches to a Gofer (shared access); returns the filesystem and its root inode."""
    fs = GoferFS(client, memfile, readonly)
    return fs, fs.root


class GoferInode(Inode):
    """A file held by one gofer fid.  Linux: a v9fs inode with its fid.

    Attributes are a cache of the host's lstat (see the module docstring).
    """

    __slots__ = ("fid", "parent", "_size", "_blocks", "children", "_link", "_donated", "_rofd",
                 "_pc_off", "_pc_cap", "_pc_filled", "_pc_key", "_pc_stale", "_absent",
                 "_listing")

    def __init__(self, fs: GoferFS, fid: int, st: Stat,
                 parent: GoferInode | None = None) -> None:
        super().__init__(fs, st.mode, st.uid, st.gid, ino=st.ino)
        self.fid = fid                        # owned; released in __del__
        # The directory this was found in, kept alive so that a live inode is
        # always the one in its parent's `children` (None for the root).
        self.parent = parent
        self._size = 0
        self._blocks = 0
        # Positive lookups, held weakly: the dentries above hold the inodes.
        self.children: WeakChildren[GoferInode] = WeakChildren()
        self._link: bytes | None = None       # cached symlink target
        self._donated = -1                    # O_RDWR host fd from create, for the next open
        # A read-only host fd shared by every read-only open of this file: reads are
        # positional (pread), so descriptions need no fd of their own, and a repeat
        # open costs an fstat instead of a Gofer round trip.
        self._rofd = -1
        # Page cache (see translate): memory-file extent, its capacity, bytes
        # of file data in it (the rest is zero), the (mtime_ns, size) loaded,
        # and old extents that mappings may still use.
        self._pc_off = -1
        self._pc_cap = 0
        self._pc_filled = 0
        self._pc_key: tuple[int, int] = (0, 0)
        self._pc_stale: list[tuple[int, int]] = []
        # Exclusive filesystems only (GoferFS.exclusive): names known not to exist here
        # (at most _ABSENT_MAX), and the directory's listing once read.
        self._absent: set[bytes] | None = None
        self._listing: tuple[DirEntry, ...] | None = None
        self.apply_stat(st)

    @property
    def gfs(self) -> GoferFS:
        fs = self.fs
        assert isinstance(fs, GoferFS)
        return fs

    def __del__(self) -> None:
        try:
            fs = self.gfs
            fs._dead_fids.append(self.fid)
            if self._donated >= 0:
                fs.close_fd(self._donated)
            if self._rofd >= 0:
                fs.close_fd(self._rofd)
            if self._pc_off >= 0:
                fs.memfile.free(self._pc_off, self._pc_cap)
            for off, cap in self._pc_stale:
                fs.memfile.free(off, cap)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- attributes ------------------------------------------------------------------

    def apply_stat(self, st: Stat) -> None:
        """Replaces the cached attributes with a fresh host lstat."""
        self.mode = st.mode
        self.uid = st.uid
        self.gid = st.gid
        self.nlink = st.nlink
        self.rdev = st.rdev
        self._size = st.size
        self._blocks = st.blocks
        self.atime_ns = st.atime_ns
        self.mtime_ns = st.mtime_ns
        self.ctime_ns = st.ctime_ns

    def size(self) -> int:
        return self._size

    def blocks(self) -> int:
        return self._blocks

    def refresh(self) -> None:
        """Re-stats the file over RPC (one round trip); nothing on an exclusive
        filesystem, whose cached attributes cannot have changed."""
        fs = self.gfs
        if not fs.exclusive:
            self.apply_stat(fs.call(fs.client.stat, self.fid))

    def setattr(self, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None,
                atime_ns: int | None = None, mtime_ns: int | None = None) -> None:
        """chmod/chown/truncate/utimes through one SETATTR RPC."""
        fs = self.gfs
        fs.check_writable()
        mask = 0
        if mode is not None:
            mask |= SetattrMask.MODE
        u = -1 if uid is None or uid == _NO_ID else uid
        g = -1 if gid is None or gid == _NO_ID else gid
        if u != -1 or g != -1:
            mask |= SetattrMask.UID_GID
        if size is not None:
            if size < 0:
                raise SyscallError(Errno.EINVAL)
            if self.is_dir():
                raise SyscallError(Errno.EISDIR)
            if not self.is_regular():
                raise SyscallError(Errno.EINVAL)
            mask |= SetattrMask.SIZE
        if atime_ns is not None:
            mask |= SetattrMask.ATIME
        if mtime_ns is not None:
            mask |= SetattrMask.MTIME
        if not mask:
            return
        st = fs.call(fs.client.setattr, self.fid, mask, (mode or 0) & 0o7777, u, g,
                     size or 0, _clamp_ns(atime_ns or 0), _clamp_ns(mtime_ns or 0))
        self.apply_stat(st)
        if size is not None:
            self._pc_resized(st)

    def truncate(self, size: int) -> None:
        # open(O_TRUNC) already truncated on the host and fstat'ed; the VFS's
        # truncate(0) after it would be a second RPC that changes nothing.
        if size == 0 and self._size == 0 and self.is_regular():
            self.gfs.check_writable()
            return
        self.setattr(size=size)

    # -- directories -----------------------------------------------------------------

    def lookup(self, name: bytes) -> Inode:
        child = self.children.get(name)
        if child is not None:
            return child
        if not self.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        absent = self._absent
        if absent is not None and name in absent:
            raise SyscallError(Errno.ENOENT)
        fs = self.gfs
        try:
            fid, st = fs.call(fs.client.walk, self.fid, name)
        except SyscallError as e:
            if e.errno == Errno.ENOENT and fs.exclusive:
                if absent is None:
                    absent = self._absent = set()
                if len(absent) < _ABSENT_MAX:
                    absent.add(name)
            raise
        child = GoferInode(fs, fid, st, self)
        self.children[name] = child
        return child

    def readdir(self) -> Iterable[DirEntry]:
        if not self.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        if self._listing is not None:
            return self._listing
        fs = self.gfs
        out = tuple(DirEntry(n, ino, dt) for n, ino, dt in fs.call(fs.client.readdir, self.fid))
        if fs.exclusive:
            self._listing = out
        return out

    def _new_child(self, name: bytes, fid: int, st: Stat, uid: int, gid: int) -> GoferInode:
        """Caches a just-created child and gives it the caller's owner if it can."""
        fs = self.gfs
        child = GoferInode(fs, fid, st, self)
        self.children[name] = child
        if fs._chown_ok and (uid, gid) != (st.uid, st.gid):
            # Best effort, as gVisor's gofer: only a privileged Gofer may chown.
            try:
                child.apply_stat(fs.call(fs.client.setattr, fid, SetattrMask.UID_GID, 0,
                                         uid, gid, 0, 0, 0))
            except SyscallError as e:
                if e.errno in (Errno.EPERM, Errno.EINVAL):
                    fs._chown_ok = False
                else:
                    raise
        return child

    def _check_dir_mutation(self) -> GoferFS:
        fs = self.gfs
        if not self.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        fs.check_writable()
        return fs

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        """Creates and opens the file; the O_RDWR fd waits for the open that follows."""
        fs = self._check_dir_mutation()
        dcache.files.acquire()
        try:
            fid, st, hostfd = fs.call(fs.client.create, self.fid, name, O_RDWR, mode & 0o7777)
        except BaseException:
            dcache.files.release()
            raise
        try:
            child = self._new_child(name, fid, st, uid, gid)
        except BaseException:
            fs.close_fd(hostfd)
            raise
        if child._donated >= 0:
            fs.close_fd(child._donated)
        child._donated = hostfd
        return child

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        fs = self._check_dir_mutation()
        fid, st = fs.call(fs.client.mkdir, self.fid, name, mode & 0o7777)
        return self._new_child(name, fid, st, uid, gid)

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Inode:
        """Regular files only: special files are never made on the host."""
        if mode & S_IFMT in (0, S_IFREG):
            child = self.create(name, mode, uid, gid)
            assert isinstance(child, GoferInode)
            if child._donated >= 0:
                self.gfs.close_fd(child._donated)
                child._donated = -1
            return child
        fs = self._check_dir_mutation()
        fs.call(fs.client.mknod, self.fid, name, mode, rdev)
        raise SyscallError(Errno.EPERM)   # the Gofer never succeeds

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> Inode:
        fs = self._check_dir_mutation()
        fid, st = fs.call(fs.client.symlink, self.fid, name, target)
        child = self._new_child(name, fid, st, uid, gid)
        child._link = target
        return child

    def link(self, name: bytes, target: Inode) -> None:
        fs = self._check_dir_mutation()
        if not isinstance(target, GoferInode) or target.fs is not fs:
            raise SyscallError(Errno.EXDEV)
        if target.is_dir():
            raise SyscallError(Errno.EPERM)
        fid, st = fs.call(fs.client.link, target.fid, self.fid, name)
        # A fid of its own: the Gofer reopens files by (directory, name), and
        # the target's name may go away while this one stays.
        self.children[name] = GoferInode(fs, fid, st, self)
        target.nlink = st.nlink
        target.ctime_ns = st.ctime_ns

    def _remove(self, name: bytes, is_dir: bool) -> None:
        fs = self._check_dir_mutation()
        fs.call(fs.client.unlink, self.fid, name, is_dir)
        child = self.children.pop(name, None)
        if child is not None:
            child.nlink = 0 if is_dir else max(child.nlink - 1, 0)

    def unlink(self, name: bytes) -> None:
        self._remove(name, False)

    def rmdir(self, name: bytes) -> None:
        self._remove(name, True)

    def rename(self, old: bytes, newdir: Inode, new: bytes) -> None:
        fs = self._check_dir_mutation()
        if not isinstance(newdir, GoferInode) or newdir.fs is not fs:
            raise SyscallError(Errno.EXDEV)
        fs.call(fs.client.rename, self.fid, old, newdir.fid, new)
        if newdir is self and old == new:
            return
        moved = self.children.pop(old, None)
        newdir.children.pop(new, None)
        if moved is not None:
            newdir.children[new] = moved
            moved.parent = newdir

    def exchange(self, old: bytes, newdir: Inode, new: bytes) -> None:
        """RENAME_EXCHANGE on the host, through the Gofer."""
        fs = self._check_dir_mutation()
        if not isinstance(newdir, GoferInode) or newdir.fs is not fs:
            raise SyscallError(Errno.EXDEV)
        fs.call(fs.client.rename2, self.fid, old, newdir.fid, new, RENAME_EXCHANGE)
        a = self.children.pop(old, None)
        b = newdir.children.pop(new, None)
        if a is not None:
            newdir.children[new] = a
            a.parent = newdir
        if b is not None:
            self.children[old] = b
            b.parent = self

    # -- symlinks ----------------------------------------------------------------------

    def readlink(self) -> bytes:
        if self._link is None:
            if not self.is_symlink():
                raise SyscallError(Errno.EINVAL)
            fs = self.gfs
            self._link = fs.call(fs.client.readlink, self.fid)
        return self._link

    # -- files -------------------------------------------------------------------------

    def open_host(self, flags: int) -> int:
        """A host fd for this file (O_ACCMODE, O_TRUNC of `flags`), owned by the caller.

        Also refreshes the cached attributes from the fd, with no extra RPC.
        """
        acc = flags & O_ACCMODE
        gflags = (O_RDWR if acc == O_ACCMODE else acc) | (flags & O_TRUNC)
        if acc != O_RDONLY or flags & O_TRUNC:
            self.gfs.check_writable()
        fs = self.gfs
        hostfd = fs.open_fd(self.fid, gflags)
        try:
            self.apply_stat(Stat.from_os(os.fstat(hostfd)))
        except OSError as e:
            fs.close_fd(hostfd)
            raise SyscallError.from_host(e) from None
        return hostfd

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        ftype = self.mode & S_IFMT
        if ftype == S_IFDIR:
            if flags & O_ACCMODE != O_RDONLY:
                raise SyscallError(Errno.EISDIR)
            return DirectoryImpl()
        if ftype == S_IFREG:
            if self._donated >= 0:
                # The file was just created by us: its O_RDWR fd serves any
                # access mode (the FileDescription enforces the mode), and
                # the creator may write even if the new mode denies it.
                hostfd, self._donated = self._donated, -1
                try:
                    if flags & O_TRUNC:
                        os.ftruncate(hostfd, 0)
                    self.apply_stat(Stat.from_os(os.fstat(hostfd)))
                except OSError as e:
                    self.gfs.close_fd(hostfd)
                    raise SyscallError.from_host(e) from None
            elif flags & (O_ACCMODE | O_TRUNC) == O_RDONLY:
                if self._rofd < 0:
                    self._rofd = self.open_host(O_RDONLY)
                else:
                    try:
                        self.apply_stat(Stat.from_os(os.fstat(self._rofd)))
                    except OSError as e:
                        raise SyscallError.from_host(e) from None
                return GoferFileImpl(self, self._rofd, owned=False)
            else:
                hostfd = self.open_host(flags)
            return GoferFileImpl(self, hostfd)
        if ftype == S_IFIFO:
            from pyvisor.sentry.kernel.pipe import open_fifo
            return open_fifo(self, fd, flags)
        if ftype == S_IFSOCK:
            raise SyscallError(Errno.ENXIO)
        if ftype == S_IFLNK:
            raise SyscallError(Errno.ELOOP)
        raise SyscallError(Errno.EPERM)   # device nodes are never opened on the host

    # -- page cache (Mappable) ---------------------------------------------------------

    def mappable(self) -> GoferInode | None:
        return self if self.is_regular() else None

    def translate(self, offset: int, length: int, writable_shared: bool) -> list[MappedRange]:
        """The file's pages [offset, offset+length) in the memory file.

        TODO(#2): with `writable_shared`, stores through the mapping are not
        written back to the host file.
        """
        end = offset + length
        if (self._pc_off < 0 or end > self._pc_cap
                or self._pc_key != (self.mtime_ns, self._size)):
            self._pc_load(end)
        return [MappedRange(offset, self._pc_off + offset, length)]

    def _pc_load(self, need: int) -> None:
        """(Re)fills the page cache from the host so that it covers `need` bytes.

        Refills in place when the extent is big enough, so existing mappings
        see the new contents; otherwise moves to a bigger extent and keeps the
        old one (still mapped, perhaps) until the inode dies.
        """
        mf = self.gfs.memfile
        # The inode's shared read-only fd, kept until it dies: an mmap'd file was
        # mostly open(O_RDONLY)'d just before (the dynamic loader's open, fstat, mmap),
        # so this saves the Gofer an open per mapped file.
        if self._rofd < 0:
            self._rofd = self.open_host(O_RDONLY)
        hostfd = self._rofd
        size = self._size
        want = page_round_up(max(need, size, 1))
        if self._pc_off < 0 or want > self._pc_cap:
            try:
                off, cap = mf.allocate(want)
            except MemoryError:
                raise SyscallError(Errno.ENOMEM) from None
            if self._pc_off >= 0:
                self._pc_stale.append((self._pc_off, self._pc_cap))
            self._pc_off, self._pc_cap, self._pc_filled = off, cap, 0
        base = self._pc_off
        got = 0
        try:
            # sendfile: the host kernel copies straight into the memory file's pages,
            # about twice as fast as preadv into the Sentry's mapping of them, which
            # takes a page fault (and zeroes a page) per 4 KiB first.  Nothing else
            # uses the memory file's own offset (its users map it or give offsets).
            os.lseek(mf.fd, base, os.SEEK_SET)
            while got < size:
                n = os.sendfile(mf.fd, hostfd, got, size - got)
                if n == 0:
                    break       # shrank meanwhile: the rest reads as zero
                got += n
        except OSError as e:
            raise SyscallError.from_host(e) from None
        if got < self._pc_filled:
            mf.zero(base + got, self._pc_filled - got)
        self._pc_filled = got
        self._pc_key = (self.mtime_ns, self._size)

    def _pc_drop(self) -> None:
        """Forgets the page cache (its extent may still be mapped: keep it)."""
        if self._pc_off >= 0:
            self._pc_stale.append((self._pc_off, self._pc_cap))
            self._pc_off, self._pc_cap, self._pc_filled = -1, 0, 0

    def pc_written(self, data: bytes, offset: int, hostfd: int) -> None:
        """Keeps the page cache equal to the host file after a write through `hostfd`."""
        if self._pc_off < 0:
            return
        end = offset + len(data)
        if end > self._pc_cap:
            self._pc_drop()
            return
        mf = self.gfs.memfile
        base = self._pc_off
        # A hole between _pc_filled and offset is already zero (invariant).
        mf.map[base + offset:base + end] = data
        self._pc_filled = max(self._pc_filled, end)
        try:
            self.apply_stat(Stat.from_os(os.fstat(hostfd)))
        except OSError:
            self._pc_drop()
            return
        self._pc_key = (self.mtime_ns, self._size)

    def _pc_resized(self, st: Stat) -> None:
        """Keeps the page cache in step with a truncate that returned `st`."""
        if self._pc_off < 0:
            return
        truncate_mappings(self, st.size)        # mapped pages past the end now SIGBUS
        if st.size > self._pc_cap:
            self._pc_drop()
            return
        if st.size < self._pc_filled:
            self.gfs.memfile.zero(self._pc_off + st.size, self._pc_filled - st.size)
            self._pc_filled = st.size
        self._pc_key = (self.mtime_ns, self._size)


class GoferFileImpl(FileImpl):
    """An open regular gofer file: pread/pwrite on a host fd the Gofer donated.

    Offsets come from the FileDescription (for O_APPEND, its size), so the
    host fd is never O_APPEND.
    """

    seekable = True

    def __init__(self, inode: GoferInode, hostfd: int, owned: bool = True) -> None:
        self.inode = inode        # immutable
        self.hostfd = hostfd      # closed in release if owned (else the inode's shared fd)
        self.owned = owned

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        try:
            return os.pread(self.hostfd, n, offset)
        except OSError as e:
            raise SyscallError.from_host(e) from None

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        inode = self.inode
        try:
            n = os.pwrite(self.hostfd, data, offset)
        except OSError as e:
            raise SyscallError.from_host(e) from None
        if inode._pc_off >= 0:
            inode.pc_written(data[:n], offset, self.hostfd)
        else:
            if offset + n > inode._size:
                inode._size = offset + n
            inode.mtime_ns = inode.ctime_ns = now_ns()
        return n

    def size(self, fd: FileDescription) -> int:
        """The host file's current size (for SEEK_END and O_APPEND), no RPC."""
        try:
            size = os.fstat(self.hostfd).st_size
        except OSError as e:
            raise SyscallError.from_host(e) from None
        self.inode._size = size
        return size

    def fsync(self, fd: FileDescription) -> None:
        try:
            os.fsync(self.hostfd)
        except OSError as e:
            raise SyscallError.from_host(e) from None

    def release(self, fd: FileDescription) -> None:
        if self.hostfd >= 0 and self.owned:
            self.inode.gfs.close_fd(self.hostfd)
        self.hostfd = -1


_NS_MIN, _NS_MAX = -(1 << 63), (1 << 63) - 1


def _clamp_ns(ns: int) -> int:
    """A timestamp clamped to what SETATTR carries (64-bit nanoseconds, years
    1677..2262), as Linux clamps to a filesystem's range (timestamp_truncate);
    the host filesystem may clamp further."""
    return max(_NS_MIN, min(ns, _NS_MAX))
