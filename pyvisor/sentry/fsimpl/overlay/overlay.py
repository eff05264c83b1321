"""Overlay filesystem: a tmpfs upper layer over a read-only lower tree.
Linux: fs/overlayfs/ (with no on-disk metadata: no whiteout devices, no
xattrs, no workdir).

The default container root: the image, served by the Gofer, is the lower
layer and is never written; every change lands in a TmpFS above it, so the
whole upper layer lives in the memory file and dies with the sandbox.

Model (Linux: struct ovl_entry / ovl_inode):

* An `OverlayInode` pairs an upper inode (TmpFS) and a lower inode (any
  Inode, normally a GoferInode); at least one is set. Attributes, data and
  mappings come from the upper when it exists, else from the lower.
* Lookup: an upper entry wins. A lower entry shows through unless the
  directory has whited the name out or the directory is opaque. A name
  present as a directory in both layers is a merged directory, whose
  listing is the union minus whiteouts.
* What Linux keeps in the upper layer's whiteout devices and xattrs
  (trusted.overlay.opaque, .origin) lives with the upper inode too, in
  `OverlayFS.meta`, a map keyed weakly by upper inode (`UpperMeta`):
  a directory's whiteouts (a name there never shows the lower entry, even
  once a new upper entry uses the name again, so a directory removed and
  made again is opaque, as Linux marks it), its opaque flag, and a
  copied-up file's origin inode number. It goes when the upper inode goes.
* Copy-up (Linux: ovl_copy_up): any change to a lower file or directory
  first gives it an upper twin, parents first: directories with the lower's
  mode, owner and times; regular files with their whole contents (none for
  O_TRUNC or truncate to 0); symlinks recreated. The OverlayInode object
  stays the same, so dentries and open descriptions keep working. A
  copied-up non-directory lets go of its lower inode (and the Gofer fid
  behind it), keeping only its origin number.
* rename of a directory with lower content is EXDEV, as Linux without
  redirect_dir; mv(1) then copies.
* Inode numbers: a file that came from the lower keeps the lower's number,
  also after copy-up; an upper-only file's number has bit 62 set (Linux:
  xino), so it can't collide with the host's numbers in the lower.

Invariants: OverlayInodes are a cache that can be rebuilt from the two
layers: `children` holds them weakly (the VFS dentries hold them; dcache.py
bounds those), and everything that must outlive an evicted OverlayInode
(the upper tree, whiteouts, opaque flags, origins) lives in the upper layer
and `OverlayFS.meta`. A live OverlayInode is the only one for its name, so
copy-up state is never split between two. A child keeps its parent alive
(`parent`), so copy-up can always reach the root. Removal and rename update
`children` and detach (parent = None) a removed inode, so it is never copied
up under its old name again.
Known gaps: a description opened read-only before a copy-up keeps reading
the lower file (as Linux before 4.19); hard links in the lower are broken
by copy-up (Linux without index=on); device nodes can't be copied up.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, cast

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_ACCMODE, O_RDONLY, O_TRUNC
from pyvisor.abi.linux.stat import (DT_DIR, OVERLAYFS_SUPER_MAGIC, S_IFDIR, S_IFLNK, S_IFMT,
                                    S_IFREG, STATFS)
from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS, TmpfsDir, TmpfsFile, TmpfsSymlink
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs.dcache import WeakChildren
from pyvisor.sentry.vfs.file import DirectoryImpl, FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import DirEntry, Filesystem, Inode
from pyvisor.sentry.vfs.vfs import Dentry

if TYPE_CHECKING:
    from pyvisor.sentry.fsimpl.gofer.client import GoferClient
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.waitqueue import WaitQueue
    from pyvisor.sentry.mm.memfile import Mappable, MemoryFile
    from pyvisor.sentry.vfs.vfs import Mount
    from pyvisor.sentry.vfs.xattr import XattrStore

# Set in the inode numbers of upper-only files (Linux: the xino high bits).
XINO_UPPER = 1 << 62

# Bytes read per step when copying a file up.
_COPY_CHUNK = 1 << 20


@dataclass(slots=True)
class UpperMeta:
    """Overlay state of one upper inode.  Linux: whiteout devices and trusted.overlay.* xattrs."""

    whiteouts: set[bytes] = field(default_factory=set)   # directories: lower names hidden
    opaque: bool = False          # a directory showing nothing of the lower
    origin: int | None = None     # the lower inode number a copied-up file came from


class OverlayFS(Filesystem):
    """One overlay mount.  Linux: struct ovl_fs.

    `upper` is a TmpFS directory (normally a fresh root); `lower` is the
    root of the lower tree, which is only ever read.
    """

    name = "overlay"
    magic = OVERLAYFS_SUPER_MAGIC

    def __init__(self, upper: TmpfsDir, lower: Inode, adopt_lower: bool = True) -> None:
        super().__init__()
        if not isinstance(upper.fs, TmpFS):
            raise TypeError("the overlay's upper layer must be a tmpfs directory")
        if not lower.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        self.upper_fs: TmpFS = upper.fs     # immutable
        self.lower_root = lower             # immutable
        # Keyed weakly by upper inode: dies with the upper file.
        self.meta: weakref.WeakKeyDictionary[Inode, UpperMeta] = weakref.WeakKeyDictionary()
        if adopt_lower and not upper.entries:
            # A fresh upper root takes the image root's attributes, as a
            # copy-up would give it.
            upper.mode = S_IFDIR | (lower.mode & 0o7777)
            upper.uid, upper.gid = lower.uid, lower.gid
            upper.atime_ns, upper.mtime_ns = lower.atime_ns, lower.mtime_ns
        self.root = OverlayInode(self, upper, lower, None, b"/")

    def meta_of(self, upper: Inode) -> UpperMeta:
        """The overlay state of `upper`, made on first use."""
        m = self.meta.get(upper)
        if m is None:
            m = self.meta[upper] = UpperMeta()
        return m

    def statfs(self) -> bytes:
        """The upper layer's statfs, with the overlay's f_type (as Linux)."""
        fields = list(STATFS.unpack(self.upper_fs.statfs()))
        fields[0] = OVERLAYFS_SUPER_MAGIC
        if self.readonly:
            fields[11] |= 1     # ST_RDONLY: a sealed read-only root (root.readonly)
        return STATFS.pack(*fields)


def make_overlay_root(client: GoferClient, memfile: MemoryFile,
                      upper: TmpFS | None = None,
                      exclusive: bool = True) -> tuple[OverlayFS, OverlayInode]:
    """The default container root: the Gofer's tree below (read only), tmpfs above.

    `upper` defaults to a new unlimited TmpFS on `memfile`. The Gofer behind
    `client` should itself be read-only: nothing is written to it.  `exclusive`
    (--file-access=exclusive, the default as in runsc): nothing on the host changes
    the image while the sandbox runs, so the lower layer's attributes, failed lookups
    and listings are cached (fsimpl/gofer/goferfs.py).
    """
    from pyvisor.sentry.fsimpl.gofer.goferfs import GoferFS
    lower = GoferFS(client, memfile, readonly=True, exclusive=exclusive)
    if upper is None:
        upper = TmpFS(memfile)
    fs = OverlayFS(upper.new_root(), lower.root)
    return fs, fs.root


def _lookup_or_none(d: Inode | None, name: bytes) -> Inode | None:
    """`d.lookup(name)`, or None if `d` is None or has no such entry."""
    if d is None:
        return None
    try:
        return d.lookup(name)
    except SyscallError as e:
        if e.errno == Errno.ENOENT:
            return None
        raise


class OverlayInode(Inode):
    """A file of the merged tree.  Linux: struct ovl_inode.

    Attributes are those of the backing inode (`upper` if set, else
    `lower`); setting one sets it there. Fields other than the backing
    inodes' attributes are owned by the OverlayFS.
    """

    __slots__ = ("upper", "lower", "parent", "name", "meta", "children")

    def __init__(self, fs: OverlayFS, upper: Inode | None, lower: Inode | None,
                 parent: OverlayInode | None, name: bytes) -> None:
        # Inode.__init__ is not called: the attributes it would set are
        # properties that delegate to the backing inode.
        assert upper is not None or lower is not None
        self.fs = fs
        self.upper = upper                  # set once, by copy-up or creation
        self.lower = lower                  # directories: kept; others: until copy-up
        self.parent = parent                # None: the root, or removed from the tree
        self.name = name                    # the name in `parent`
        # The upper's overlay state (shared with other links to it), if any yet.
        self.meta: UpperMeta | None = fs.meta.get(upper) if upper is not None else None
        self.children: WeakChildren[OverlayInode] = WeakChildren()
        self.lock_ctx = None

    @property
    def whiteouts(self) -> set[bytes] | frozenset[bytes]:
        """Lower names hidden in this directory."""
        m = self.meta
        return m.whiteouts if m is not None else frozenset()

    @property
    def opaque(self) -> bool:
        """Whether this directory shows nothing of the lower."""
        m = self.meta
        return m is not None and m.opaque

    def _upper_meta(self) -> UpperMeta:
        """This file's overlay state, made if need be (the upper must exist)."""
        m = self.meta
        if m is None:
            assert self.upper is not None
            m = self.meta = self.ofs.meta_of(self.upper)
        return m

    def _hide(self, name: bytes) -> None:
        """Whites out lower entry `name` of this (copied-up) directory."""
        self._upper_meta().whiteouts.add(name)

    def __repr__(self) -> str:
        return f"OverlayInode({self.name!r}, upper={self.upper!r}, lower={self.lower!r})"

    @property
    def ofs(self) -> OverlayFS:
        fs = self.fs
        assert isinstance(fs, OverlayFS)
        return fs

    @property
    def backing(self) -> Inode:
        """The inode that holds this file's attributes and data now."""
        up = self.upper
        if up is not None:
            return up
        lower = self.lower
        assert lower is not None
        return lower

    # -- attributes, from the backing inode ----------------------------------------------

    @property  # type: ignore[override]
    def ino(self) -> int:
        lower = self.lower
        if lower is not None:
            return lower.ino
        m = self.meta
        if m is not None and m.origin is not None:
            return m.origin
        return self.backing.ino | XINO_UPPER

    @property  # type: ignore[override]
    def mode(self) -> int:
        # Hot: every is_dir()/is_symlink() and permission check of a walk.
        up = self.upper
        return up.mode if up is not None else self.backing.mode

    @mode.setter
    def mode(self, v: int) -> None:
        self.backing.mode = v

    @property  # type: ignore[override]
    def uid(self) -> int:
        return self.backing.uid

    @uid.setter
    def uid(self, v: int) -> None:
        self.backing.uid = v

    @property  # type: ignore[override]
    def gid(self) -> int:
        return self.backing.gid

    @gid.setter
    def gid(self, v: int) -> None:
        self.backing.gid = v

    @property  # type: ignore[override]
    def nlink(self) -> int:
        b = self.backing
        if (self.upper is not None and self.lower is not None and not self.opaque
                and b.is_dir()):
            # A merged directory: counting subdirectories of both layers is
            # not worth it; 1 tells find(1) not to trust the count (Linux:
            # ovl_getattr does the same).
            return 1
        return b.nlink

    @nlink.setter
    def nlink(self, v: int) -> None:
        self.backing.nlink = v

    @property  # type: ignore[override]
    def rdev(self) -> int:
        return self.backing.rdev

    @rdev.setter
    def rdev(self, v: int) -> None:
        self.backing.rdev = v

    @property  # type: ignore[override]
    def atime_ns(self) -> int:
        return self.backing.atime_ns

    @atime_ns.setter
    def atime_ns(self, v: int) -> None:
        self.backing.atime_ns = v

    @property  # type: ignore[override]
    def mtime_ns(self) -> int:
        return self.backing.mtime_ns

    @mtime_ns.setter
    def mtime_ns(self, v: int) -> None:
        self.backing.mtime_ns = v

    @property  # type: ignore[override]
    def ctime_ns(self) -> int:
        return self.backing.ctime_ns

    @ctime_ns.setter
    def ctime_ns(self, v: int) -> None:
        self.backing.ctime_ns = v

    def size(self) -> int:
        return self.backing.size()

    def blocks(self) -> int:
        return self.backing.blocks()

    def refresh(self) -> None:
        self.backing.refresh()

    def xattr_store(self, create: bool) -> XattrStore | None:
        """Read from the backing inode; a change copies the file up first."""
        if create:
            return self.copy_up().xattr_store(True)
        return self.backing.xattr_store(False)

    def setattr(self, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None,
                atime_ns: int | None = None, mtime_ns: int | None = None) -> None:
        """Copies up (without data when truncating to 0), then changes the upper."""
        up = self.copy_up(data=size != 0)
        up.setattr(mode=mode, uid=uid, gid=gid, size=size, atime_ns=atime_ns,
                   mtime_ns=mtime_ns)

    def truncate(self, size: int) -> None:
        if self.is_dir():
            raise SyscallError(Errno.EISDIR)
        if not self.is_regular():
            raise SyscallError(Errno.EINVAL)
        self.copy_up(data=size != 0).truncate(size)

    # -- copy-up ---------------------------------------------------------------------

    def copy_up(self, data: bool = True) -> Inode:
        """Gives this file an upper inode, copying up its parents first; returns it.

        Linux: ovl_copy_up. `data=False` skips copying a regular file's
        contents (the caller is about to truncate it to 0).
        """
        up = self.upper
        if up is not None:
            return up
        lower = self.lower
        assert lower is not None
        parent = self.parent
        if parent is None:
            # Removed from the tree while still open (fchmod, ftruncate, ...):
            # the copy belongs to no directory, as Linux's tmpfile copy-up.
            up = self._copy_orphan(lower, data)
        else:
            pdir = parent.copy_up()
            up = self._copy_into(pdir, lower, data)
        self.upper = up
        self._upper_meta().origin = lower.ino
        if not up.is_dir():
            self.lower = None     # only a directory merges with its lower
        return up

    def _copy_into(self, pdir: Inode, lower: Inode, data: bool) -> Inode:
        """Makes the upper twin of `lower` as self.name in upper directory `pdir`."""
        name = self.name
        ftype = lower.mode & S_IFMT
        perms = lower.mode & 0o7777
        up: Inode
        if ftype == S_IFDIR:
            up = pdir.mkdir(name, perms, lower.uid, lower.gid)
        elif ftype == S_IFREG:
            up = pdir.create(name, perms, lower.uid, lower.gid)
            if data:
                try:
                    _copy_data(lower, up)
                except BaseException:
                    pdir.unlink(name)
                    raise
        elif ftype == S_IFLNK:
            up = pdir.symlink(name, lower.readlink(), lower.uid, lower.gid)
        else:
            up = pdir.mknod(name, lower.mode, lower.rdev, lower.uid, lower.gid)
        _copy_attrs(lower, up)
        return up

    def _copy_orphan(self, lower: Inode, data: bool) -> Inode:
        """An upper twin of a removed file, linked in no directory."""
        fs = self.ofs.upper_fs
        ftype = lower.mode & S_IFMT
        up: Inode
        if ftype == S_IFREG:
            up = TmpfsFile(fs, lower.mode, lower.uid, lower.gid)
            if data:
                _copy_data(lower, up)
        elif ftype == S_IFLNK:
            up = TmpfsSymlink(fs, lower.readlink(), lower.uid, lower.gid)
        else:
            raise SyscallError(Errno.ENOENT)
        _copy_attrs(lower, up)
        up.nlink = 0
        return up

    # -- directories -----------------------------------------------------------------

    def _lower_child(self, name: bytes) -> Inode | None:
        """The lower entry `name` if it shows through this directory."""
        if self.lower is None or self.opaque or name in self.whiteouts:
            return None
        return _lookup_or_none(self.lower, name)

    def lookup(self, name: bytes) -> Inode:
        child = self.children.get(name)
        if child is not None:
            return child
        if not self.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        upper = _lookup_or_none(self.upper, name)
        lower = None
        if upper is None or upper.is_dir():
            lower = self._lower_child(name)
            if lower is not None and upper is not None and not lower.is_dir():
                lower = None      # an upper directory hides a lower non-directory
        if upper is None and lower is None:
            raise SyscallError(Errno.ENOENT)
        child = OverlayInode(self.ofs, upper, lower, self, name)
        self.children[name] = child
        return child

    def _child_or_none(self, name: bytes) -> OverlayInode | None:
        try:
            child = self.lookup(name)
        except SyscallError as e:
            if e.errno == Errno.ENOENT:
                return None
            raise
        assert isinstance(child, OverlayInode)
        return child

    def readdir(self) -> Iterable[DirEntry]:
        """The union of both layers' entries, minus whiteouts (Linux: ovl_dir_read_merged)."""
        if not self.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        out: dict[bytes, DirEntry] = {}
        up = self.upper
        if up is not None:
            meta = self.ofs.meta
            for e in up.readdir():
                ino = e.ino | XINO_UPPER
                if meta:    # a copied-up file keeps its origin's number
                    m = meta.get(up.lookup(e.name))
                    if m is not None and m.origin is not None:
                        ino = m.origin
                out[e.name] = DirEntry(e.name, ino, e.dtype)
        if self.lower is not None and not self.opaque:
            whiteouts = self.whiteouts
            for e in self.lower.readdir():
                if e.name in whiteouts:
                    continue
                u = out.get(e.name)
                if u is None:
                    out[e.name] = DirEntry(e.name, e.ino, e.dtype)
                elif u.dtype == DT_DIR and e.dtype == DT_DIR:
                    u.ino = e.ino     # merged: numbered as lookup numbers it
        # Inodes already handed out keep the numbers stat reports for them.
        for name, child in self.children.items():
            ent = out.get(name)
            if ent is not None:
                ent.ino = child.ino
        return list(out.values())

    def _is_empty(self) -> bool:
        return not self.readdir()

    def _prepare_new(self, name: bytes) -> Inode:
        """Checks that `name` is free; returns this directory's (copied-up) upper."""
        if not self.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        if self._child_or_none(name) is not None:
            raise SyscallError(Errno.EEXIST)
        return self.copy_up()

    def _adopt(self, name: bytes, up: Inode) -> OverlayInode:
        """Wraps a new upper entry `name`; over a whiteout a directory is opaque."""
        if up.is_dir() and name in self.whiteouts:
            self.ofs.meta_of(up).opaque = True
        child = OverlayInode(self.ofs, up, None, self, name)
        self.children[name] = child
        return child

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        up = self._prepare_new(name)
        return self._adopt(name, up.create(name, mode, uid, gid))

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        up = self._prepare_new(name)
        return self._adopt(name, up.mkdir(name, mode, uid, gid))

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Inode:
        up = self._prepare_new(name)
        return self._adopt(name, up.mknod(name, mode, rdev, uid, gid))

    def tmpfile(self, mode: int, uid: int, gid: int) -> Inode:
        """O_TMPFILE: an unnamed file of the upper layer (Linux: ovl_tmpfile)."""
        if not self.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        up = self.copy_up().tmpfile(mode, uid, gid)
        return OverlayInode(self.ofs, up, None, None, b"")

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> Inode:
        up = self._prepare_new(name)
        return self._adopt(name, up.symlink(name, target, uid, gid))

    def link(self, name: bytes, target: Inode) -> None:
        if not isinstance(target, OverlayInode) or target.fs is not self.fs:
            raise SyscallError(Errno.EXDEV)
        if target.is_dir():
            raise SyscallError(Errno.EPERM)
        up = self._prepare_new(name)
        tup = target.copy_up()
        up.link(name, tup)
        # Shares the target's upper, and with it its origin: one number for both names.
        self._adopt(name, tup)

    def _remove(self, name: bytes, child: OverlayInode, is_dir: bool) -> None:
        """Removes `name` from the upper if there, whiting out a lower entry."""
        hidden = self._lower_child(name) is not None
        up = self.copy_up()
        if child.upper is not None:
            if is_dir:
                up.rmdir(name)
            else:
                up.unlink(name)
        if hidden:
            self._hide(name)
        self.children.pop(name, None)
        child.parent = None

    def unlink(self, name: bytes) -> None:
        if not self.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        child = self.lookup(name)
        assert isinstance(child, OverlayInode)
        if child.is_dir():
            raise SyscallError(Errno.EISDIR)
        self._remove(name, child, False)

    def rmdir(self, name: bytes) -> None:
        if not self.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        child = self.lookup(name)
        assert isinstance(child, OverlayInode)
        if not child.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        if not child._is_empty():
            raise SyscallError(Errno.ENOTEMPTY)
        self._remove(name, child, True)

    def rename(self, old: bytes, newdir: Inode, new: bytes) -> None:
        """Copies the source up and renames within the upper (Linux: ovl_rename)."""
        if not isinstance(newdir, OverlayInode) or newdir.fs is not self.fs:
            raise SyscallError(Errno.EXDEV)
        if not self.is_dir() or not newdir.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        src = self.lookup(old)
        assert isinstance(src, OverlayInode)
        if newdir is self and old == new:
            return
        dst = newdir._child_or_none(new)
        if dst is not None:
            if dst.upper is not None and dst.upper is src.upper:
                return        # two links to one file: rename(2) does nothing
            if src.is_dir():
                if not dst.is_dir():
                    raise SyscallError(Errno.ENOTDIR)
                if not dst._is_empty():
                    raise SyscallError(Errno.ENOTEMPTY)
            elif dst.is_dir():
                raise SyscallError(Errno.EISDIR)
        if src.is_dir():
            d: OverlayInode | None = newdir
            while d is not None:
                if d is src:
                    raise SyscallError(Errno.EINVAL)   # into its own subtree
                d = d.parent
            if src.lower is not None:
                raise SyscallError(Errno.EXDEV)        # no redirect_dir
        src_hidden = self._lower_child(old) is not None
        dst_hidden = newdir._lower_child(new) is not None
        src.copy_up()
        sup = self.copy_up()
        nup = newdir.copy_up()
        sup.rename(old, nup, new)
        if src_hidden:
            self._hide(old)
        if dst_hidden:
            newdir._hide(new)
        self.children.pop(old, None)
        replaced = newdir.children.pop(new, None)
        if replaced is not None and replaced is not src:
            replaced.parent = None
        src.parent, src.name = newdir, new
        newdir.children[new] = src
        newdir._opaque_over_lower(new, src)

    def _opaque_over_lower(self, name: bytes, child: OverlayInode) -> None:
        """A directory of the upper layer now at `name`, where the lower has an entry
        too, shows nothing of the lower's (Linux: an opaque directory)."""
        if child.is_dir() and child.upper is not None and child.lower is None and \
                self._lower_child(name) is not None:
            self.ofs.meta_of(child.upper).opaque = True
            child.meta = self.ofs.meta_of(child.upper)

    def exchange(self, old: bytes, newdir: Inode, new: bytes) -> None:
        """RENAME_EXCHANGE: both sides copied up, swapped in the upper (Linux: ovl_rename)."""
        if not isinstance(newdir, OverlayInode) or newdir.fs is not self.fs:
            raise SyscallError(Errno.EXDEV)
        if not self.is_dir() or not newdir.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        a = self.lookup(old)
        b = newdir.lookup(new)
        assert isinstance(a, OverlayInode) and isinstance(b, OverlayInode)
        if a is b or a.upper is not None and a.upper is b.upper:
            return
        for x, dest in ((a, newdir), (b, self)):
            if x.is_dir():
                d: OverlayInode | None = dest
                while d is not None:
                    if d is x:
                        raise SyscallError(Errno.EINVAL)   # into its own subtree
                    d = d.parent
                if x.lower is not None:
                    raise SyscallError(Errno.EXDEV)        # no redirect_dir
        a.copy_up()
        b.copy_up()
        sup = self.copy_up()
        nup = newdir.copy_up()
        sup.exchange(old, nup, new)
        self.children.pop(old, None)
        newdir.children.pop(new, None)
        a.parent, a.name = newdir, new
        b.parent, b.name = self, old
        newdir.children[new] = a
        self.children[old] = b
        newdir._opaque_over_lower(new, a)
        self._opaque_over_lower(old, b)

    # -- symlinks and files ------------------------------------------------------------

    def readlink(self) -> bytes:
        return self.backing.readlink()

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        """Opens the backing inode; opening a lower file for writing copies it up."""
        if self.is_dir():
            if flags & O_ACCMODE != O_RDONLY:
                raise SyscallError(Errno.EISDIR)
            return DirectoryImpl()      # its listing is our merged readdir()
        b = self.backing
        if self.is_regular() and (flags & O_ACCMODE != O_RDONLY or flags & O_TRUNC):
            trunc = bool(flags & O_TRUNC)
            b = self.copy_up(data=not trunc)
            if trunc and b.size():
                b.truncate(0)
        # The backing file's impl sees a description of the backing inode.
        shadow = FileDescription(fd.mount, Dentry(self.name, fd.dentry.parent, b), fd.flags)
        inner = b.open(shadow, flags)
        shadow.impl = inner
        return OverlayFileImpl(inner, shadow)

    def mappable(self) -> Mappable | None:
        return self.backing.mappable()


def _copy_attrs(lower: Inode, up: Inode) -> None:
    """Gives a copied-up inode the lower's mode, owner, times (ctime is now) and
    extended attributes, POSIX ACLs included (Linux: ovl_copy_xattr)."""
    up.mode = (up.mode & S_IFMT) | (lower.mode & 0o7777)
    up.uid, up.gid = lower.uid, lower.gid
    up.atime_ns, up.mtime_ns = lower.atime_ns, lower.mtime_ns
    src = lower.xattr_store(False)
    if src is not None and src.attrs:
        dst = up.xattr_store(True)
        if dst is not None:
            for name, value in src.attrs.items():
                dst.set(name, value, 0)


def _copy_data(lower: Inode, up: Inode) -> None:
    """Copies a regular file's contents from `lower` into the new TmpfsFile `up`.

    Reads through the lower's own open (one host fd for a gofer file).
    """
    assert isinstance(up, TmpfsFile)
    shadow = FileDescription(cast("Mount", None), Dentry(b"", None, lower), O_RDONLY)
    impl = lower.open(shadow, O_RDONLY)
    shadow.impl = impl
    no_task = cast("Task", None)
    try:
        off = 0
        while True:
            chunk = impl.read(shadow, no_task, _COPY_CHUNK, off)
            if not chunk:
                break
            up.write_at(chunk, off)
            off += len(chunk)
    finally:
        impl.release(shadow)


class OverlayFileImpl(FileImpl):
    """An open overlay file: forwards to the backing inode's implementation.

    The inner impl gets a shadow description whose inode is the backing
    inode (tmpfs impls look at fd.inode); its flags follow the real
    description's (F_SETFL) at every call.
    """

    def __init__(self, inner: FileImpl, shadow: FileDescription) -> None:
        self.inner = inner          # immutable
        self.shadow = shadow        # immutable; owned
        self.seekable = inner.seekable

    def _sync(self, fd: FileDescription) -> FileDescription:
        s = self.shadow
        s.flags = fd.flags
        s.offset = fd.offset
        return s

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        return self.inner.read(self._sync(fd), t, n, offset)

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        return self.inner.write(self._sync(fd), t, data, offset)

    def readiness(self, fd: FileDescription, mask: int) -> int:
        return self.inner.readiness(self._sync(fd), mask)

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.inner.waitq(self._sync(fd))

    def ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        return self.inner.ioctl(self._sync(fd), t, cmd, arg)

    def size(self, fd: FileDescription) -> int:
        return self.inner.size(self._sync(fd))

    def release(self, fd: FileDescription) -> None:
        self.inner.release(self._sync(fd))

    def fsync(self, fd: FileDescription) -> None:
        self.inner.fsync(self._sync(fd))

    def __getattr__(self, name: str) -> object:
        # Anything else a subsystem asks of the inner impl (a pipe, ...).
        if name in ("inner", "shadow"):
            raise AttributeError(name)
        return getattr(self.inner, name)
