"""Dentries, mounts and path resolution.  Linux: fs/dcache.c, fs/namespace.c, fs/namei.c.

A Dentry names an inode within one filesystem tree; a Mount grafts a
filesystem's root dentry onto a (mount, dentry) mountpoint.  A location in
the sandbox's file tree is therefore the pair (Mount, Dentry), as Linux's
struct path.  Resolution walks components with the dentry cache, crosses
mounts downward at mountpoints and upward at '..' from a mount's root,
follows symlinks (at most MAXSYMLINKS) and never leaves the task's root.

Invariants: a Dentry's `children` cache only holds positive entries that the
filesystem returned; operations that change a directory update the cache.
The cache is bounded (dcache.py): unused dentries are evicted LRU-first, and
a dentry in use (open file, cwd, root, mountpoint, a descendant's parent)
stays the one object for its name as long as it lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs import atime
from pyvisor.sentry.vfs.dcache import WeakChildren, dcache
from pyvisor.sentry.vfs.inode import Filesystem, Inode

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

MAXSYMLINKS = 40
PATH_MAX = 4096
NAME_MAX = 255


class Dentry:
    """A name in a filesystem tree.  Linux: struct dentry.

    `children` maps names to weak references: a child lives while it is used
    or cached by the dcache (dcache.py), and drops out of the map when it dies.
    """

    __slots__ = ("name", "parent", "inode", "children", "__weakref__")

    def __init__(self, name: bytes, parent: Dentry | None, inode: Inode) -> None:
        self.name = name
        self.parent = parent           # None for a filesystem root; keeps the parent alive
        self.inode = inode
        self.children: WeakChildren[Dentry] | None = None   # made with the first child

    def child(self, name: bytes) -> Dentry:
        """Looks up `name` through the cache, then the filesystem."""
        ch = self.children
        if ch is not None:
            d = ch.get(name)
            if d is not None:
                try:
                    _lru.move_to_end(d)     # the hot path: a hit already in the LRU
                except KeyError:
                    dcache.touch(d)
                return d
        inode = self.inode.lookup(name)
        d = Dentry(name, self, inode)
        if inode.fs.cache_dentries:
            if ch is None:
                ch = self.children = WeakChildren()
            ch[name] = d
            dcache.touch(d)
        return d

    def forget(self, name: bytes) -> None:
        """Drops the cached child `name` (its file was removed or replaced)."""
        d = self.children.pop(name) if self.children is not None else None
        if d is not None:
            dcache.drop(d)


# The dcache's LRU, bound once: Dentry.child touches it on every cache hit.
_lru = dcache._lru


@dataclass(eq=False)
class Mount:
    """A filesystem grafted into the tree.  Linux: struct mount."""

    fs: Filesystem
    root: Dentry
    parent: Mount | None = None          # None for the namespace root
    mountpoint: Dentry | None = None      # in `parent`
    source: str = "none"
    options: str = "rw"
    flags_readonly: bool = False
    children: dict[int, Mount] = field(default_factory=dict)  # id(mountpoint dentry) -> mount
    id: int = 0          # /proc/PID/mountinfo's, given by the namespace (0: anonymous)
    # The filesystem's own options, apart from `options` (then the mount's own: ro/rw,
    # nosuid, ..., relatime), for mounts made with mount(2); None: `options` has both.
    super_options: str | None = None


class MountNamespace:
    """The tree of mounts.  Linux: struct mnt_namespace."""

    kind = b"mnt"              # for nsfs and setns (kernel/namespaces.py)
    flag = 0x00020000          # CLONE_NEWNS

    def __init__(self, root_fs: Filesystem, root_inode: Inode, source: str = "none",
                 options: str = "rw") -> None:
        self.root = Mount(root_fs, Dentry(b"/", None, root_inode), source=source,
                          options=options, id=1)
        self.mounts: list[Mount] = [self.root]
        self.last_id = 1
        self.userns = None              # the owning user namespace (None: the sandbox's)
        self.ns_ino = 0xF0000000        # its nsfs inode number (kernel/namespaces.py)
        self.root.ns = self             # type: ignore[attr-defined]

    @classmethod
    def anonymous(cls, root: Mount, userns: object = None) -> MountNamespace:
        """A detached tree of its own (Linux: an anonymous mount namespace, what
        fsmount and open_tree(OPEN_TREE_CLONE) make), rooted at `root`."""
        ns = cls.__new__(cls)
        ns.root = root
        ns.mounts = [root]
        ns.last_id = 0
        ns.userns = userns
        ns.ns_ino = 0
        ns.anon = True                  # type: ignore[attr-defined]
        root.ns = ns                    # type: ignore[attr-defined]
        return ns

    def clone(self, ino: int, userns: object) -> tuple[MountNamespace, dict[int, Mount]]:
        """A copy of the tree for a new mount namespace (Linux: copy_mnt_ns): the same
        filesystems and dentries, new Mount objects, new ids.  Returns it and a map
        from id(old mount) to its copy.  Iterative (nesting is bounded by the tree)."""
        new = MountNamespace.__new__(MountNamespace)
        new.last_id = self.last_id
        new.userns = userns
        new.ns_ino = ino
        old_root = self.root
        root = Mount(old_root.fs, old_root.root, source=old_root.source,
                     options=old_root.options, flags_readonly=old_root.flags_readonly,
                     id=new.new_id(), super_options=old_root.super_options)
        root.ns = new                   # type: ignore[attr-defined]
        new.root = root
        new.mounts = [root]
        copies = {id(old_root): root}
        todo = [old_root]
        while todo:
            p = todo.pop()
            parent = copies[id(p)]
            for key, m in p.children.items():
                c = Mount(m.fs, m.root, parent, m.mountpoint, source=m.source,
                          options=m.options, flags_readonly=m.flags_readonly,
                          super_options=m.super_options)
                parent.children[key] = c
                copies[id(m)] = c
                todo.append(m)
        order = {id(m): i for i, m in enumerate(self.mounts)}
        rest = sorted((m for m in self._walk() if m is not old_root),
                      key=lambda m: order.get(id(m), len(order)))
        for m in rest:
            c = copies[id(m)]
            c.id = new.new_id()
            new.mounts.append(c)
        return new, copies

    def _walk(self) -> list[Mount]:
        out, todo = [], [self.root]
        while todo:
            m = todo.pop()
            out.append(m)
            todo.extend(m.children.values())
        return out

    def touch(self) -> None:
        """A mount, unmount, remount or move happened (Linux: touch_mnt_namespace):
        open mounts/mountinfo files poll with EPOLLPRI|EPOLLERR once."""
        self.event = getattr(self, "event", 0) + 1
        wq = getattr(self, "event_wq", None)
        if wq is not None:
            wq.notify(0x00A)                # EVENT_PRI | EVENT_ERR

    def new_id(self) -> int:
        """A mount id never given before in this namespace (stable while mounted)."""
        self.last_id += 1
        return self.last_id

    def mount(self, parent: Mount, mountpoint: Dentry, fs: Filesystem, root_inode: Inode,
              source: str = "none", options: str = "rw") -> Mount:
        """Mounts `fs` at (parent, mountpoint), stacking over an existing mount."""
        while id(mountpoint) in parent.children:   # mount on top of the top-most
            parent = parent.children[id(mountpoint)]
            mountpoint = parent.root
        m = Mount(fs, Dentry(mountpoint.name, None, root_inode), parent, mountpoint,
                  source=source, options=options, id=self.new_id())
        parent.children[id(mountpoint)] = m
        self.mounts.append(m)
        return m


@dataclass(slots=True)
class Location:
    """A resolved path: (mount, dentry).  Linux: struct path."""

    mount: Mount
    dentry: Dentry

    @property
    def inode(self) -> Inode:
        return self.dentry.inode


def _step_down(mnt: Mount, d: Dentry) -> tuple[Mount, Dentry]:
    """Crosses into mounts stacked on (mnt, d)."""
    while mnt.children:
        child = mnt.children.get(id(d))
        if child is None:
            break
        mnt, d = child, child.root
    return mnt, d


def _step_up(mnt: Mount, d: Dentry, root: Location) -> tuple[Mount, Dentry]:
    """'..' from (mnt, d), never above the task's root."""
    while True:
        if mnt is root.mount and d is root.dentry:
            return mnt, d
        if d is mnt.root:
            if mnt.parent is None or mnt.mountpoint is None:
                return mnt, d
            mnt, d = mnt.parent, mnt.mountpoint
            continue
        assert d.parent is not None
        return mnt, d.parent


def path_of(mnt: Mount, d: Dentry, root: Location | None = None) -> bytes:
    """The absolute path of (mnt, d), as getcwd and /proc/PID/fd report it."""
    parts: list[bytes] = []
    while True:
        if root is not None and mnt is root.mount and d is root.dentry:
            break
        if d is mnt.root:
            if mnt.parent is None or mnt.mountpoint is None:
                break
            mnt, d = mnt.parent, mnt.mountpoint
            continue
        parts.append(d.name)
        if d.parent is None:
            break
        d = d.parent
    return b"/" + b"/".join(reversed(parts))


class Resolver:
    """Resolves paths for one task: its root and cwd, following symlinks.

    Linux: fs/namei.c (path_lookupat, link_path_walk).  openat2's RESOLVE_* flags
    restrict the walk (Linux: LOOKUP_NO_XDEV, LOOKUP_NO_MAGICLINKS,
    LOOKUP_NO_SYMLINKS, LOOKUP_BENEATH, LOOKUP_IN_ROOT, LOOKUP_CACHED); for
    RESOLVE_IN_ROOT the caller makes `root` the starting directory.
    """

    __slots__ = ("root", "symlinks", "no_symlinks", "beneath", "no_xdev", "no_magiclinks",
                 "scoped", "cached")

    def __init__(self, root: Location) -> None:
        self.root = root
        self.symlinks = 0
        self.no_symlinks = False
        self.beneath: Location | None = None   # RESOLVE_BENEATH: never above it
        self.no_xdev = False                   # RESOLVE_NO_XDEV: never cross a mount
        self.no_magiclinks = False             # RESOLVE_NO_MAGICLINKS
        self.scoped = False                    # RESOLVE_BENEATH or RESOLVE_IN_ROOT
        self.cached = False                    # RESOLVE_CACHED: only what the dcache holds

    def walk(self, t: Task, start: Location, path: bytes, follow_last: bool,
             want_parent: bool = False) -> tuple[Location, bytes]:
        """Walks `path` from `start`.

        Returns (location, b"") for a full walk, or with `want_parent`
        (location of the parent directory, last component) where the last
        component need not exist.  A trailing slash requires a directory.
        """
        if not path:
            raise SyscallError(Errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise SyscallError(Errno.ENAMETOOLONG)
        if path[:1] == b"/":
            mnt, d = self._jump_root(None)
        else:
            mnt, d = start.mount, start.dentry
        trailing_slash = path.endswith(b"/")
        comps = [c for c in path.split(b"/") if c and c != b"."]
        n = len(comps)
        if want_parent:
            if n == 0:
                # "/" or "." has no last component to create or remove.
                raise SyscallError(Errno.EEXIST if path.strip(b"/.") == b"" else Errno.ENOENT)
            last = comps[-1]
            if last == b"..":
                raise SyscallError(Errno.EEXIST)
            mnt, d = self._walk_comps(t, mnt, d, comps[:-1])
            if not d.inode.is_dir():
                raise SyscallError(Errno.ENOTDIR)
            t.check_exec(d.inode)       # Linux: may_lookup before the last component too
            if len(last) > NAME_MAX:
                raise SyscallError(Errno.ENAMETOOLONG)
            return Location(mnt, d), last
        mnt, d = self._walk_comps(t, mnt, d, comps, follow_last or trailing_slash)
        if trailing_slash and not d.inode.is_dir():
            raise SyscallError(Errno.ENOTDIR)
        return Location(mnt, d), b""

    def _jump_root(self, cur: Location | None) -> tuple[Mount, Dentry]:
        """An absolute path or symlink target starts again at the root (Linux:
        nd_jump_root): never under RESOLVE_BENEATH, nor onto another mount under
        RESOLVE_NO_XDEV (`cur`: where the walk is, None at its start)."""
        if self.beneath is not None:
            raise SyscallError(Errno.EXDEV)
        if self.no_xdev and cur is not None and cur.mount is not self.root.mount:
            raise SyscallError(Errno.EXDEV)
        mnt, d = self.root.mount, self.root.dentry
        if self.no_xdev:
            return mnt, d
        return _step_down(mnt, d)

    def _walk_comps(self, t: Task, mnt: Mount, d: Dentry, comps: list[bytes],
                    follow_last: bool = True) -> tuple[Mount, Dentry]:
        n = len(comps)
        for i, name in enumerate(comps):
            inode = d.inode
            if not inode.is_dir():
                raise SyscallError(Errno.ENOTDIR)
            if name == b"..":
                if self.beneath is not None and mnt is self.beneath.mount and \
                        d is self.beneath.dentry:
                    raise SyscallError(Errno.EXDEV)
                m2, d2 = _step_up(mnt, d, self.root)
                if self.no_xdev and m2 is not mnt:
                    raise SyscallError(Errno.EXDEV)
                mnt, d = m2, d2
                continue
            if len(name) > NAME_MAX:
                raise SyscallError(Errno.ENAMETOOLONG)
            t.check_exec(inode)
            if self.cached and inode.fs.cache_dentries and \
                    (d.children is None or name not in d.children):
                raise SyscallError(Errno.EAGAIN)
            child = d.child(name)
            mnt2, d2 = _step_down(mnt, child)
            if self.no_xdev and mnt2 is not mnt:
                raise SyscallError(Errno.EXDEV)
            cinode = d2.inode
            if cinode.is_symlink() and (i < n - 1 or follow_last):
                mnt, d = self._follow(t, mnt, d, mnt2, d2)
                continue
            mnt, d = mnt2, d2
        return mnt, d

    def _follow(self, t: Task, mnt: Mount, d: Dentry, lmnt: Mount, ld: Dentry
                ) -> tuple[Mount, Dentry]:
        """Follows the symlink (lmnt, ld) found in directory (mnt, d)."""
        if self.no_symlinks:
            raise SyscallError(Errno.ELOOP)
        self.symlinks += 1
        if self.symlinks > MAXSYMLINKS:
            raise SyscallError(Errno.ELOOP)
        magic = ld.inode.magic_link(t)
        if magic is not None:
            assert isinstance(magic, Location)
            # Linux: nd_jump_link.
            if self.no_magiclinks:
                raise SyscallError(Errno.ELOOP)
            if self.no_xdev and magic.mount is not mnt:
                raise SyscallError(Errno.EXDEV)
            if self.scoped:
                raise SyscallError(Errno.EXDEV)
            return magic.mount, magic.dentry
        target = ld.inode.readlink()
        if not target:
            raise SyscallError(Errno.ENOENT)
        atime.touch_inode(ld.inode, mnt)     # Linux: pick_link's touch_atime
        if target[:1] == b"/":
            self._jump_root(Location(mnt, d))
        loc, _ = self.walk(t, Location(mnt, d), target, True)
        return loc.mount, loc.dentry
