"""The new mount API: fsopen, fsconfig, fsmount, move_mount, open_tree.
Linux: fs/fsopen.c, fs/fs_context.c, fs/namespace.c.

fsopen gives a filesystem context (an anon file) that fsconfig fills with
parameters and then creates the filesystem from (sys_mount's `_new_fs`, so the
same types and options as mount(2)); fsmount makes a detached mount of it and
open_tree(OPEN_TREE_CLONE) a detached copy of a tree, each an anonymous mount
namespace of its own held by an O_PATH file; move_mount attaches a detached
tree, or moves an attached mount, in the Sentry's mount tree.  Nothing reaches
the host.
"""

from __future__ import annotations

from typing import Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, O_CLOEXEC
from pyvisor.abi.linux.fcntl import O_PATH, O_RDWR
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.syscalls.linux import sys_mount as SM
from pyvisor.sentry.vfs import ops
from pyvisor.sentry.vfs import propagation as P
from pyvisor.sentry.vfs.file import FileImpl
from pyvisor.sentry.vfs.vfs import PATH_MAX, Location, Mount, MountNamespace

# From <linux/mount.h>.
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_SET_BINARY = 0, 1, 2
FSCONFIG_SET_PATH, FSCONFIG_SET_PATH_EMPTY, FSCONFIG_SET_FD = 3, 4, 5
FSCONFIG_CMD_CREATE, FSCONFIG_CMD_RECONFIGURE, FSCONFIG_CMD_CREATE_EXCL = 6, 7, 8
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 1, 2, 4, 8
MOUNT_ATTR__ATIME, MOUNT_ATTR_NOATIME, MOUNT_ATTR_STRICTATIME = 0x70, 0x10, 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
_ATTRS = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC | \
    MOUNT_ATTR__ATIME | MOUNT_ATTR_NODIRATIME | MOUNT_ATTR_NOSYMFOLLOW
MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH = 0x04, 0x40
MOVE_MOUNT_F_SYMLINKS, MOVE_MOUNT_T_SYMLINKS = 0x01, 0x10
MOVE_MOUNT__MASK = 0x77
OPEN_TREE_CLONE = 1
AT_NO_AUTOMOUNT = 0x800
AT_RECURSIVE = 0x8000
_KNOWN_TYPES = (b"tmpfs", b"proc", b"sysfs", b"overlay", b"mqueue")
_SB_FLAGS = {b"ro", b"rw", b"sync", b"dirsync", b"lazytime", b"nolazytime", b"mand",
             b"nomand", b"silent", b"async"}
_PARAM_MAX = 256


class FsContext(FileImpl):
    """An fsopen file: the filesystem being configured.  Linux: struct fs_context."""

    splice_read = False

    def __init__(self, fstype: bytes) -> None:
        self.fstype = fstype
        self.source: bytes | None = None
        self.params: list[bytes] = []
        self.readonly = False
        self.made: Any = None           # (fs, root inode, superblock options) once created
        self.mounted = False
        self.ro_change: bool | None = None   # fspick: "ro"/"rw" for the next RECONFIGURE


def _context(t: Task, fd: int) -> FsContext:
    impl = t.fd_table.get(fd).impl
    if not isinstance(impl, FsContext):
        raise SyscallError(Errno.EINVAL)
    return impl


def sys_fsopen(t: Task, r: SyscallArguments) -> int:
    """Implements fsopen(2)."""
    name_addr, flags = r.pointer(0), r.uint32(1)
    if flags & ~FSOPEN_CLOEXEC:
        raise SyscallError(Errno.EINVAL)
    SM._may_mount(t, SM._namespace(t))
    fstype = t.copy_in_str(name_addr, _PARAM_MAX)
    if fstype not in _KNOWN_TYPES:
        raise SyscallError(Errno.ENODEV)
    from pyvisor.sentry.syscalls.linux.sys_poll import anon_file
    f = anon_file(b"[fscontext]", FsContext(fstype), O_RDWR)
    return t.fd_table.install(f, cloexec=bool(flags & FSOPEN_CLOEXEC))


def sys_fsconfig(t: Task, r: SyscallArguments) -> int:
    """Implements fsconfig(2): string and flag parameters, create, reconfigure."""
    fd, cmd, key_addr, value_addr, aux = r.int32(0), r.uint32(1), r.pointer(2), \
        r.pointer(3), r.int32(4)
    fc = _context(t, fd)
    if cmd in (FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING):
        if not key_addr or aux:
            raise SyscallError(Errno.EINVAL)
        if cmd == FSCONFIG_SET_FLAG and value_addr:
            raise SyscallError(Errno.EINVAL)
        if cmd == FSCONFIG_SET_STRING and not value_addr:
            raise SyscallError(Errno.EINVAL)
        key = t.copy_in_str(key_addr, _PARAM_MAX)
        value = t.copy_in_str(value_addr, _PARAM_MAX) if value_addr else None
        if fc.made is not None and fc.mounted:
            if getattr(fc, "picked", None) is not None:     # fspick: kept for RECONFIGURE
                if value is None and key in (b"ro", b"rw"):
                    fc.ro_change = key == b"ro"
                elif key != b"source":
                    fc.params.append(key if value is None else key + b"=" + value)
            return 0        # a reconfiguration's parameters (FSCONFIG_CMD_RECONFIGURE)
        if key == b"source":
            if value is None:
                raise SyscallError(Errno.EINVAL)
            if fc.source is not None:
                raise SyscallError(Errno.EINVAL)       # "VFS: Multiple sources"
            fc.source = value
        elif value is None:
            if key in (b"ro", b"rw"):
                fc.readonly = key == b"ro"
            elif key not in _SB_FLAGS:
                fc.params.append(key)
        else:
            fc.params.append(key + b"=" + value)
        return 0
    if cmd in (FSCONFIG_SET_BINARY, FSCONFIG_SET_PATH, FSCONFIG_SET_PATH_EMPTY,
               FSCONFIG_SET_FD):
        raise SyscallError(Errno.EINVAL)     # no filesystem here takes these
    if cmd in (FSCONFIG_CMD_CREATE, FSCONFIG_CMD_CREATE_EXCL):
        if key_addr or value_addr or aux:
            raise SyscallError(Errno.EINVAL)
        if fc.made is not None:
            raise SyscallError(Errno.EBUSY)
        SM._may_mount(t, SM._namespace(t))
        fc.made = SM._new_fs(t, SM._namespace(t), fc.fstype, b",".join(fc.params),
                             fc.readonly)
        return 0
    if cmd == FSCONFIG_CMD_RECONFIGURE:
        if fc.made is None:
            raise SyscallError(Errno.EBUSY)
        picked = getattr(fc, "picked", None)
        if picked is not None:          # fspick: the filesystem's options change
            SM._may_mount(t, SM._namespace(t))
            SM._remount_fs(picked.fs, b",".join(fc.params))
            if fc.ro_change is not None:
                if SM._locked(picked) and fc.ro_change != picked.fs.readonly:
                    raise SyscallError(Errno.EPERM)
                picked.fs.readonly = fc.ro_change
            fc.params, fc.ro_change = [], None
        return 0             # an fsmount'ed context: parameters are not applied here
    raise SyscallError(Errno.EOPNOTSUPP)


def _o_path(t: Task, m: Mount, cloexec: bool) -> int:
    f = ops._open(t, m, m.root, O_PATH)
    return t.fd_table.install(f, cloexec=cloexec)


def sys_fsmount(t: Task, r: SyscallArguments) -> int:
    """Implements fsmount(2): a detached mount of a created context."""
    fd, flags, attrs = r.int32(0), r.uint32(1), r.uint32(2)
    if flags & ~FSMOUNT_CLOEXEC or attrs & ~_ATTRS:
        raise SyscallError(Errno.EINVAL)
    atime = attrs & MOUNT_ATTR__ATIME
    if atime not in (0, MOUNT_ATTR_NOATIME, MOUNT_ATTR_STRICTATIME):
        raise SyscallError(Errno.EINVAL)
    fc = _context(t, fd)
    ns = SM._namespace(t)
    SM._may_mount(t, ns)
    if fc.made is None:
        raise SyscallError(Errno.EINVAL)
    if fc.mounted:
        raise SyscallError(Errno.EBUSY)
    fs, root, sb = fc.made
    ms = (SM.MS_RDONLY if attrs & MOUNT_ATTR_RDONLY else 0) | \
        (SM.MS_NOSUID if attrs & MOUNT_ATTR_NOSUID else 0) | \
        (SM.MS_NODEV if attrs & MOUNT_ATTR_NODEV else 0) | \
        (SM.MS_NOEXEC if attrs & MOUNT_ATTR_NOEXEC else 0) | \
        (SM.MS_NOATIME if atime == MOUNT_ATTR_NOATIME else 0) | \
        (SM.MS_STRICTATIME if atime == MOUNT_ATTR_STRICTATIME else 0)
    from pyvisor.sentry.vfs.vfs import Dentry
    SM.check_total(1)
    m = Mount(fs, Dentry(b"/", None, root), source=(fc.source or b"none").decode(
        errors="replace"), options=",".join(SM._mount_flags(ms)))
    m.super_options = sb
    m.flags_readonly = bool(ms & SM.MS_RDONLY)
    MountNamespace.anonymous(m, ns.userns)
    SM._app_made.add(m)
    SM.track([m])
    fc.mounted = True
    return _o_path(t, m, bool(flags & FSMOUNT_CLOEXEC))


def _anon_ns(m: Mount) -> Any:
    ns = SM._ns_of(m)
    return ns if ns is not None and getattr(ns, "anon", False) else None


def _is_mounted(m: Mount) -> bool:
    """Part of a tree: a namespace's, or a detached one's (not unmounted)."""
    ns = SM._ns_of(m)
    return ns is not None and m in ns.mounts


def _loc(t: Task, dfd: int, addr: int, empty_ok: bool, follow: bool) -> Location:
    path = t.copy_in_str(addr, PATH_MAX) if addr else b""
    if not path and not empty_ok:
        raise SyscallError(Errno.ENOENT)
    return ops.lookup_at(t, dfd, path, follow=follow, empty_path=empty_ok)


def sys_move_mount(t: Task, r: SyscallArguments) -> int:
    """Implements move_mount(2)."""
    from_dfd, from_addr, to_dfd, to_addr, flags = r.int32(0), r.pointer(1), r.int32(2), \
        r.pointer(3), r.uint32(4)
    if flags & ~MOVE_MOUNT__MASK:
        raise SyscallError(Errno.EINVAL)
    ns = SM._namespace(t)
    SM._may_mount(t, ns)
    src = _loc(t, from_dfd, from_addr, bool(flags & MOVE_MOUNT_F_EMPTY_PATH),
               bool(flags & MOVE_MOUNT_F_SYMLINKS))
    dst = _loc(t, to_dfd, to_addr, bool(flags & MOVE_MOUNT_T_EMPTY_PATH),
               bool(flags & MOVE_MOUNT_T_SYMLINKS))
    m = src.mount
    if not SM._is_mount_root(src) or not _is_mounted(m):
        raise SyscallError(Errno.EINVAL)
    src_anon = _anon_ns(m)
    attached = m.parent is not None
    if attached:
        if SM._ns_of(m) is not ns:
            raise SyscallError(Errno.EINVAL)       # a submount of a detached tree
    elif src_anon is None:
        raise SyscallError(Errno.EINVAL)
    dst_ns = SM._ns_of(dst.mount)
    if dst_ns is None or not (dst_ns is ns or (src_anon is not None and
                                               getattr(dst_ns, "anon", False))):
        raise SyscallError(Errno.EINVAL)
    if dst_ns is src_anon:
        raise SyscallError(Errno.ELOOP)
    if src.inode.is_dir() != dst.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    if attached:
        return SM._touched(ns, SM._move_loc(ns, src, dst))
    return SM._touched(dst_ns, _attach(dst_ns, src_anon, dst))


def _attach(ns: MountNamespace, anon: MountNamespace, dst: Location) -> int:
    """Grafts detached tree `anon` at `dst` (Linux: attach_recursive_mnt)."""
    if P.is_shared(dst.mount) and any(P.is_unbindable(x) for x in anon.mounts):
        raise SyscallError(Errno.EINVAL)
    SM._check_room(ns, len(anon.mounts))
    root = anon.root
    parent, mp = dst.mount, dst.dentry
    while id(mp) in parent.children:              # over the top-most mount there
        parent = parent.children[id(mp)]
        mp = parent.root
    root.parent, root.mountpoint = parent, mp
    parent.children[id(mp)] = root
    try:
        del root.ns                    # type: ignore[attr-defined]
    except AttributeError:
        pass
    for x in SM._subtree(root):
        if x in anon.mounts:
            x.id = ns.new_id()
            ns.mounts.append(x)
    anon.mounts = []
    SM._propagate(ns, root, undo=False)
    return 0


def sys_open_tree(t: Task, r: SyscallArguments) -> int:
    """Implements open_tree(2): an O_PATH file of a place, or (OPEN_TREE_CLONE) of a
    detached copy of the mount there (AT_RECURSIVE: with its submounts)."""
    dfd, addr, flags = r.int32(0), r.pointer(1), r.uint32(2)
    if flags & ~(AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW |
                 OPEN_TREE_CLONE | O_CLOEXEC):
        raise SyscallError(Errno.EINVAL)
    if flags & (AT_RECURSIVE | OPEN_TREE_CLONE) == AT_RECURSIVE:
        raise SyscallError(Errno.EINVAL)
    ns = SM._namespace(t)
    if flags & OPEN_TREE_CLONE:
        SM._may_mount(t, ns)
    loc = _loc(t, dfd, addr, bool(flags & AT_EMPTY_PATH), not flags & AT_SYMLINK_NOFOLLOW)
    cloexec = bool(flags & O_CLOEXEC)
    if not flags & OPEN_TREE_CLONE:
        f = ops._open(t, loc.mount, loc.dentry, O_PATH)
        return t.fd_table.install(f, cloexec=cloexec)
    src = loc.mount
    owner = SM._ns_of(src)
    if owner is None or src not in owner.mounts or not (
            owner is ns or getattr(owner, "anon", False)):
        raise SyscallError(Errno.EINVAL)          # may_copy_tree: not mounted, or foreign
    if P.is_unbindable(src):
        raise SyscallError(Errno.EINVAL)
    if not flags & AT_RECURSIVE and any(
            SM._locked(c) and c.mountpoint is not None and SM._below(c.mountpoint, loc.dentry)
            for c in src.children.values()):
        raise SyscallError(Errno.EINVAL)
    plan = [c for c in SM._snapshot(src, loc.dentry) if not P.is_unbindable(c)] \
        if flags & AT_RECURSIVE else []
    SM.check_total(1 + len(plan))
    new = Mount(src.fs, loc.dentry, source=src.source, options=src.options,
                flags_readonly=src.flags_readonly, super_options=src.super_options)
    anon = MountNamespace.anonymous(new, ns.userns)
    SM._app_made.add(new)
    SM.track([new])
    P.clone_relation(src, new)
    copies = SM._copy_submounts(anon, plan, src, new)
    for child in plan:
        c = copies.get(id(child))
        if c is not None:
            P.clone_relation(child, c)
    return _o_path(t, new, cloexec)


# From <linux/mount.h>.
FSPICK_CLOEXEC, FSPICK_SYMLINK_NOFOLLOW, FSPICK_NO_AUTOMOUNT, FSPICK_EMPTY_PATH = 1, 2, 4, 8
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_SIZE_VER0 = 32
_SETATTR_FLAGS = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | \
    MOUNT_ATTR_NOEXEC | MOUNT_ATTR__ATIME | MOUNT_ATTR_NODIRATIME | MOUNT_ATTR_NOSYMFOLLOW


def sys_fspick(t: Task, r: SyscallArguments) -> int:
    """Implements fspick(2): a context to reconfigure the filesystem of a mount."""
    dfd, addr, flags = r.int32(0), r.pointer(1), r.uint32(2)
    if flags & ~(FSPICK_CLOEXEC | FSPICK_SYMLINK_NOFOLLOW | FSPICK_NO_AUTOMOUNT |
                 FSPICK_EMPTY_PATH):
        raise SyscallError(Errno.EINVAL)
    ns = SM._namespace(t)
    SM._may_mount(t, ns)
    loc = _loc(t, dfd, addr, bool(flags & FSPICK_EMPTY_PATH),
               not flags & FSPICK_SYMLINK_NOFOLLOW)
    if not SM._is_mount_root(loc):
        raise SyscallError(Errno.EINVAL)
    fc = FsContext(loc.mount.fs.name.encode())
    fc.picked = loc.mount                          # type: ignore[attr-defined]
    fc.made = (loc.mount.fs, loc.inode, None)
    fc.mounted = True
    from pyvisor.sentry.syscalls.linux.sys_poll import anon_file
    f = anon_file(b"[fscontext]", fc, O_RDWR)
    return t.fd_table.install(f, cloexec=bool(flags & FSPICK_CLOEXEC))


def sys_mount_setattr(t: Task, r: SyscallArguments) -> int:
    """Implements mount_setattr(2): per-mount flags and propagation of a mount (with
    AT_RECURSIVE, of its subtree), all checked before any changes."""
    dfd, addr, flags, uattr, size = r.int32(0), r.pointer(1), r.uint32(2), r.pointer(3), \
        r.uint64(4)
    if flags & ~(AT_EMPTY_PATH | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT):
        raise SyscallError(Errno.EINVAL)
    if size < MOUNT_ATTR_SIZE_VER0 or size > 4096:
        raise SyscallError(Errno.EINVAL if size < MOUNT_ATTR_SIZE_VER0 else Errno.E2BIG)
    import struct
    raw = t.copy_in(uattr, size)
    if any(raw[MOUNT_ATTR_SIZE_VER0:]):
        raise SyscallError(Errno.E2BIG)
    attr_set, attr_clr, propagation, userns_fd = struct.unpack_from("<QQQQ", raw)
    if (attr_set | attr_clr) & MOUNT_ATTR_IDMAP:
        raise SyscallError(Errno.EINVAL)       # no idmapped mounts
    if (attr_set | attr_clr) & ~_SETATTR_FLAGS or userns_fd:
        raise SyscallError(Errno.EINVAL)
    if propagation not in (0, SM.MS_SHARED, SM.MS_SLAVE, SM.MS_PRIVATE, SM.MS_UNBINDABLE):
        raise SyscallError(Errno.EINVAL)
    if attr_set & MOUNT_ATTR__ATIME and attr_clr & MOUNT_ATTR__ATIME != MOUNT_ATTR__ATIME:
        raise SyscallError(Errno.EINVAL)       # an atime mode replaces the whole field
    ns = SM._namespace(t)
    SM._may_mount(t, ns)
    loc = _loc(t, dfd, addr, bool(flags & AT_EMPTY_PATH), not flags & AT_SYMLINK_NOFOLLOW)
    if not SM._is_mount_root(loc) or SM._ns_of(loc.mount) is not ns:
        raise SyscallError(Errno.EINVAL)
    mounts = SM._subtree(loc.mount) if flags & AT_RECURSIVE else [loc.mount]
    bits = ((MOUNT_ATTR_RDONLY, SM.MS_RDONLY), (MOUNT_ATTR_NOSUID, SM.MS_NOSUID),
            (MOUNT_ATTR_NODEV, SM.MS_NODEV), (MOUNT_ATTR_NOEXEC, SM.MS_NOEXEC))
    plans = []
    for m in mounts:
        cur = SM._flags_of(m)
        opts = str(m.options).split(",")
        atime = SM.MS_NOATIME if "noatime" in opts else \
            SM.MS_STRICTATIME if "strictatime" in opts else 0
        new = cur
        for a, ms in bits:
            if attr_clr & a:
                new &= ~ms
            if attr_set & a:
                new |= ms
        if attr_clr & MOUNT_ATTR__ATIME == MOUNT_ATTR__ATIME:
            mode = attr_set & MOUNT_ATTR__ATIME
            atime = SM.MS_NOATIME if mode == MOUNT_ATTR_NOATIME else \
                SM.MS_STRICTATIME if mode == MOUNT_ATTR_STRICTATIME else 0
        if (cur & ~new) & (SM._locked_flags.get(m, 0) |
                           (SM.MS_RDONLY if SM._ro_lock(m) else 0)):
            raise SyscallError(Errno.EPERM)        # can_change_locked_flags
        plans.append((m, new | atime))
    for m, ms in plans:
        SM._set_flags(m, ms, fs_too=False)
    if propagation:
        SM._change_type(loc.mount, propagation, bool(flags & AT_RECURSIVE))
    ns.touch()
    return 0
