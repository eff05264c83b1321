"""mount(2) and umount2(2) inside the sandbox.  Linux: fs/namespace.c.

They change only the Sentry's mount tree (vfs.MountNamespace): new tmpfs, proc
and sysfs instances, bind mounts (MS_BIND, MS_REC) of what the sandbox sees,
remounts (read-only, nosuid, nodev, noexec; of the mount with MS_BIND, of the
filesystem without), MS_MOVE, and propagation changes (accepted: every mount
of a sandbox is private to it, so there is nothing to propagate to).  The host
is never asked for anything.  CAP_SYS_ADMIN is required, as in Linux.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import AT_FDCWD
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import CAP_SYS_ADMIN, Task
from pyvisor.sentry.vfs import inotify, ops
from pyvisor.sentry.vfs import propagation as P
from pyvisor.sentry.vfs.vfs import PATH_MAX, Location, Mount, MountNamespace, _step_down

if TYPE_CHECKING:
    from pyvisor.sentry.vfs.inode import Filesystem, Inode

# From <linux/mount.h>.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MS_NOUSER = 1 << 31
MS_MGC_VAL = 0xC0ED0000
MS_MGC_MSK = 0xFFFF0000
_PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE

MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

PAGE = 4096
MOUNT_MAX = 10000      # mounts per namespace (Linux: fs.mount-max, 100000): ENOSPC past it
# Mounts the application's calls made, in every namespace and detached tree together:
# namespaces, open_tree copies and nsfs-held namespaces cannot multiply the Sentry's
# memory past this (ENOSPC).
TOTAL_MOUNTS_MAX = 50000
_live: weakref.WeakSet[Mount] = weakref.WeakSet()


def check_total(n: int) -> None:
    """ENOSPC unless `n` more mounts fit under TOTAL_MOUNTS_MAX."""
    if len(_live) + n > TOTAL_MOUNTS_MAX:
        import gc
        gc.collect()                  # trees unreachable but in reference cycles
        if len(_live) + n > TOTAL_MOUNTS_MAX:
            raise SyscallError(Errno.ENOSPC)


def track(ms: Any) -> None:
    """Counts mounts just made against TOTAL_MOUNTS_MAX."""
    for m in ms:
        _live.add(m)

# Mounts the application made; the others (the runtime's: the root, /proc, /dev, the
# spec's mounts and masks) are locked, as Linux locks a container's mounts in a user
# namespace: never unmounted, never made writable again if read-only (EINVAL, EPERM).
_app_made: weakref.WeakSet[Mount] = weakref.WeakSet()
# App-made binds of a locked read-only mount inherit that lock (MNT_LOCK_READONLY).
_ro_locked: weakref.WeakSet[Mount] = weakref.WeakSet()
# The per-mount flags (MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC) a mount copied
# into a less privileged user namespace keeps set (Linux: MNT_LOCK_*), and its
# binds inherit.
_locked_flags: weakref.WeakKeyDictionary[Mount, int] = weakref.WeakKeyDictionary()
_LOCKABLE = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC


def _flags_of(m: Mount) -> int:
    """The lockable MS_* flags the mount has now."""
    opts = str(m.options).split(",")
    out = MS_RDONLY if m.flags_readonly or opts[0] == "ro" else 0
    for name, bit in (("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC)):
        if name in opts:
            out |= bit
    return out


def lock_flags(copy: Mount, src: Mount) -> None:
    """`copy` (of `src`, into a less privileged namespace) keeps src's flags set."""
    f = _flags_of(src) | _locked_flags.get(src, 0)
    if f:
        _locked_flags[copy] = f


# Mounts made shared (MS_SHARED); pivot_root refuses to move them.
_shared: weakref.WeakSet[Mount] = weakref.WeakSet()


def _locked(m: Mount) -> bool:
    return m not in _app_made


def _ro_lock(m: Mount) -> bool:
    if m in _ro_locked:
        return True
    return _locked(m) and (m.flags_readonly or m.fs.readonly or
                           str(m.options).split(",")[0] == "ro")


def _str(t: Task, addr: int) -> bytes | None:
    """copy_mount_string: NULL is None."""
    return t.copy_in_str(addr, PAGE) if addr else None


def _mount_flags(flags: int) -> list[str]:
    """The per-mount options in /proc/PID/mounts order."""
    out = ["ro" if flags & MS_RDONLY else "rw"]
    for bit, name in ((MS_NOSUID, "nosuid"), (MS_NODEV, "nodev"), (MS_NOEXEC, "noexec")):
        if flags & bit:
            out.append(name)
    if flags & MS_STRICTATIME:
        pass                  # strictatime overrides noatime (Linux: do_new_mount)
    elif flags & MS_NOATIME:
        out.append("noatime")
    else:
        out.append("relatime")
    return out


def _namespace(t: Task) -> MountNamespace:
    """The task's mount namespace: the one whose tree holds its root."""
    from pyvisor.sentry.kernel.namespaces import mount_ns_of
    ns: MountNamespace = mount_ns_of(t)
    return ns


def _may_mount(t: Task, ns: MountNamespace) -> None:
    """may_mount: CAP_SYS_ADMIN over the user namespace owning the mount namespace."""
    from pyvisor.sentry.kernel.namespaces import ns_capable
    if not ns_capable(t.creds, ns.userns, CAP_SYS_ADMIN):
        raise SyscallError(Errno.EPERM)


def _is_mount_root(loc: Location) -> bool:
    return loc.dentry is loc.mount.root


def _tmpfs_defaults(ns: MountNamespace) -> tuple[Any, int, int]:
    """(memory account, size, nr_inodes) of the sandbox's own tmpfs (/dev/shm)."""
    from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS
    for m in ns.mounts:
        if isinstance(m.fs, TmpFS) and m.source == "shm":
            return m.fs.acct, m.fs.size_limit, m.fs.nr_inodes
    return None, 64 << 20, 16384


def _new_fs(t: Task, ns: MountNamespace, fstype: bytes, data: bytes, ro: bool
            ) -> tuple[Filesystem, Inode, str]:
    """A new filesystem instance of `fstype`: (filesystem, root, superblock options)."""
    k = t.kernel
    if fstype == b"tmpfs":
        from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS, parse_options
        acct, size, inodes = _tmpfs_defaults(ns)
        opts = [o for o in data.decode(errors="replace").split(",") if o]
        known = ("size=", "nr_inodes=", "mode=", "uid=", "gid=", "nr_blocks=", "huge=",
                 "mpol=", "inode64", "inode32", "noswap")
        if any(not o.startswith(known) for o in opts):
            raise SyscallError(Errno.EINVAL)
        opts = [_nr_blocks(o) for o in opts]
        try:
            o = parse_options([x for x in opts if not x.startswith(("huge=", "mpol=", "inode",
                                                                   "noswap"))],
                              size, inodes, size * 2)
        except ValueError:
            raise SyscallError(Errno.EINVAL) from None
        # Never more than the sandbox's own tmpfs may hold (Linux bounds it by the
        # memory cgroup; here the bound is --tmpfs-size, as for /dev/shm).
        cap = size if size else o.size
        fs: Any = TmpFS(k.memfile, min(o.size or cap, cap) if cap else o.size,
                        min(o.nr_inodes or inodes, inodes) if inodes else o.nr_inodes, acct)
        fs.size_cap = cap
        root: Any = fs.new_root(o.mode, o.uid, o.gid)
        given = {x.split("=", 1)[0] for x in opts}
        sb = []                          # Linux: shmem_show_options, what differs
        if "size" in given or "nr_blocks" in given:
            sb.append("size=%dk" % (o.size // 1024))
        if "nr_inodes" in given:
            sb.append("nr_inodes=%d" % o.nr_inodes)
        if o.mode != 0o1777:
            sb.append("mode=%03o" % o.mode)
        if o.uid:
            sb.append("uid=%d" % o.uid)
        if o.gid:
            sb.append("gid=%d" % o.gid)
    elif fstype in (b"proc", b"sysfs"):
        # The confined Sentry cannot read the host's /proc: a new instance takes what
        # the sandbox's own procfs captured at start.
        from pyvisor.sentry.fsimpl.proc.procfs import ProcFS, clone_procfs
        proc = next((m.fs for m in ns.mounts if isinstance(m.fs, ProcFS)), None)
        if proc is None:
            raise SyscallError(Errno.ENODEV)
        if fstype == b"proc":
            fs, root = clone_procfs(proc)
        else:
            from pyvisor.sentry.fsimpl.sys.sysfs import new_sysfs
            fs, root = new_sysfs(k.memfile, proc.ncpu)
        sb = []
    elif fstype == b"overlay":
        fs, root, sb = _new_overlay(t, data)
    elif fstype == b"mqueue":
        # The queues of the caller's IPC namespace (Linux: mq_init_ns's mount).
        from pyvisor.sentry.kernel.mqueue import MqueueDir
        root = MqueueDir(k)
        fs = root.fs
        sb = []
    else:
        raise SyscallError(Errno.ENODEV)
    if ro:
        fs.readonly = True
    fs.sb_options = ",".join(sb)        # /proc/PID/mounts shows them (procfs.py)
    return fs, root, fs.sb_options


def _overlay_dir(t: Task, path: bytes) -> Location:
    if not path:
        raise SyscallError(Errno.EINVAL)
    loc = ops.lookup_at(t, AT_FDCWD, path, follow=True)
    if not loc.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    return loc


def _new_overlay(t: Task, data: bytes) -> tuple[Filesystem, Inode, list[str]]:
    """An overlay of directories the sandbox sees: lowerdir=A[:B...], and
    upperdir=U,workdir=W for a writable one.  Linux: fs/overlayfs/params.c.

    The upper directory must be on a tmpfs (pyvisor's overlay keeps its whiteouts
    and opaque flags beside the upper inodes, not in the upper filesystem).  Without
    an upper directory the overlay is read-only.  Known gap: one lower directory
    only (a list of them is EINVAL)."""
    from pyvisor.sentry.fsimpl.overlay.overlay import OverlayFS
    from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS, TmpfsDir
    opts: dict[str, bytes] = {}
    for o in _split_opts(data):
        key, eq, val = o.partition(b"=")
        k = key.decode(errors="replace")
        if k in ("lowerdir", "upperdir", "workdir"):
            if not eq:
                raise SyscallError(Errno.EINVAL)
            opts[k] = val
        elif k in ("redirect_dir", "index", "xino", "metacopy", "nfs_export", "volatile",
                   "userxattr", "uuid", "default_permissions"):
            continue                    # features pyvisor's overlay has or ignores
        else:
            raise SyscallError(Errno.EINVAL)
    lower = opts.get("lowerdir")
    if not lower or ("upperdir" in opts) != ("workdir" in opts):
        raise SyscallError(Errno.EINVAL)
    if b":" in lower.replace(b"\\:", b""):
        raise SyscallError(Errno.EINVAL)    # one lower layer only (a known gap)
    below = _overlay_dir(t, lower.replace(b"\\:", b":")).inode
    memfile = t.kernel.memfile
    if "upperdir" in opts:
        up = _overlay_dir(t, opts["upperdir"])
        work = _overlay_dir(t, opts["workdir"])
        if not isinstance(up.inode, TmpfsDir) or not isinstance(up.inode.fs, TmpFS):
            raise SyscallError(Errno.EINVAL)
        if work.inode.fs is not up.inode.fs or work.inode is up.inode:
            raise SyscallError(Errno.EINVAL)
        if up.inode.fs.readonly or up.mount.flags_readonly:
            raise SyscallError(Errno.EROFS)
        fs: Any = OverlayFS(up.inode, below, adopt_lower=False)
    else:
        fs = OverlayFS(TmpFS(memfile, 1 << 20, 16).new_root(), below, adopt_lower=True)
        fs.readonly = True
    sb = ["lowerdir=" + lower.decode(errors="replace")]
    if "upperdir" in opts:
        sb += ["upperdir=" + opts["upperdir"].decode(errors="replace"),
               "workdir=" + opts["workdir"].decode(errors="replace")]
    return fs, fs.root, sb


def _split_opts(data: bytes) -> list[bytes]:
    """Comma-separated options; a backslash escapes a comma (Linux: ovl_next_opt)."""
    out, cur, esc = [], bytearray(), False
    for c in data:
        if esc:
            cur.append(c)
            esc = False
        elif c == 0x5C:
            esc = True
            cur.append(c)
        elif c == 0x2C:
            out.append(bytes(cur))
            cur.clear()
        else:
            cur.append(c)
    out.append(bytes(cur))
    return [o for o in out if o]


def _nr_blocks(opt: str) -> str:
    """nr_blocks=N is size=N pages (Linux: shmem_parse_one)."""
    if opt.startswith("nr_blocks="):
        from pyvisor.sentry.fsimpl.tmpfs.tmpfs import _memparse
        try:
            return "size=%d" % (_memparse(opt[10:]) * PAGE)
        except ValueError:
            raise SyscallError(Errno.EINVAL) from None
    return opt


def _remount_fs(fs: Any, data: bytes) -> None:
    """A remount's filesystem options: tmpfs's size and nr_inodes (Linux:
    shmem_reconfigure); others take none."""
    opts = [o for o in data.decode(errors="replace").split(",") if o]
    if not opts:
        return
    from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS, parse_options
    if not isinstance(fs, TmpFS) or not hasattr(fs, "sb_options"):
        return
    if any(not o.startswith(("size=", "nr_inodes=", "nr_blocks=")) for o in opts):
        raise SyscallError(Errno.EINVAL)
    opts = [_nr_blocks(o) for o in opts]
    try:
        o = parse_options(opts, 0, 0, fs.size_limit * 2 or 1 << 30)
    except ValueError:
        raise SyscallError(Errno.EINVAL) from None
    given = {x.split("=", 1)[0] for x in opts}
    sb = dict(x.split("=", 1) if "=" in x else (x, "") for x in fs.sb_options.split(",") if x)
    if "size" in given:
        if o.size and o.size < fs.used:
            raise SyscallError(Errno.EINVAL)      # smaller than what is stored
        cap = getattr(fs, "size_cap", 0)
        fs.size_limit = min(o.size, cap) if cap and o.size else o.size
        sb["size"] = "%dk" % (o.size // 1024)
    if "nr_inodes" in given:
        fs.nr_inodes = o.nr_inodes
        sb["nr_inodes"] = str(o.nr_inodes)
    order = ["size", "nr_inodes", "mode", "uid", "gid"]
    fs.sb_options = ",".join(f"{k}={sb[k]}" for k in order if k in sb)


def sys_mount(t: Task, r: SyscallArguments) -> int:
    """Implements mount(2), in Linux's order of checks (do_mount, path_mount)."""
    src_addr, target_addr, type_addr, flags, data_addr = (
        r.pointer(0), r.pointer(1), r.pointer(2), r.uint64(3) & 0xFFFFFFFF, r.pointer(4))
    fstype = _str(t, type_addr)
    source = _str(t, src_addr)
    data = t.copy_in_str(data_addr, PAGE) if data_addr else b""
    target = ops.lookup_at(t, AT_FDCWD, t.copy_in_str(target_addr, PATH_MAX), follow=True)
    if flags & MS_MGC_MSK == MS_MGC_VAL:
        flags &= ~MS_MGC_MSK
    if flags & MS_NOUSER:
        raise SyscallError(Errno.EINVAL)
    ns = _namespace(t)
    _may_mount(t, ns)
    if _ns_of(target.mount) is not ns:
        raise SyscallError(Errno.EINVAL)     # not in our tree (an anon inode, a pipe)
    if flags & (MS_REMOUNT | MS_BIND) == MS_REMOUNT | MS_BIND:
        return _touched(ns, _reconfigure(target, flags, fs_too=False))
    if flags & MS_REMOUNT:
        return _touched(ns, _reconfigure(target, flags, fs_too=True, data=data))
    if flags & MS_BIND:
        return _touched(ns, _bind(t, ns, source, target, bool(flags & MS_REC)))
    if flags & _PROPAGATION:
        kinds = flags & _PROPAGATION
        if flags & ~(_PROPAGATION | MS_REC | MS_SILENT) or kinds & (kinds - 1):
            raise SyscallError(Errno.EINVAL)
        if not _is_mount_root(target):
            raise SyscallError(Errno.EINVAL)
        _change_type(target.mount, kinds, bool(flags & MS_REC))
        return 0
    if flags & MS_MOVE:
        return _touched(ns, _move(t, ns, source, target))
    if fstype is None:
        raise SyscallError(Errno.EINVAL)
    _check_room(ns, 1)
    fs, root, sb = _new_fs(t, ns, fstype, data, bool(flags & MS_RDONLY))
    if target.inode.is_dir() != root.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    m = ns.mount(target.mount, target.dentry, fs, root,
                 source=(source or b"none").decode(errors="replace"),
                 options=",".join(_mount_flags(flags)))
    m.super_options = sb
    m.flags_readonly = bool(flags & MS_RDONLY)
    _app_made.add(m)
    _live.add(m)
    _propagate(ns, m)
    return _touched(ns, 0)


def _touched(ns: MountNamespace, result: int) -> int:
    """The namespace changed: readers polling its mounts files hear it."""
    ns.touch()
    return result


def _set_flags(m: Mount, flags: int, fs_too: bool) -> None:
    """Replaces the per-mount options of `m` (and with `fs_too` its filesystem's
    read-only state), keeping the filesystem's own options."""
    if m.super_options is None:       # the runtime's: its options string holds both
        per = {"ro", "rw", "nosuid", "nodev", "noexec", "noatime", "relatime",
               "strictatime", "nodiratime"}
        m.super_options = ",".join(o for o in str(m.options).split(",") if o not in per)
    m.options = ",".join(_mount_flags(flags))
    m.flags_readonly = bool(flags & MS_RDONLY)
    if fs_too:
        m.fs.readonly = bool(flags & MS_RDONLY)


def _reconfigure(target: Location, flags: int, fs_too: bool, data: bytes = b"") -> int:
    """MS_REMOUNT (with MS_BIND: the mount's flags only).  Linux: do_remount,
    do_reconfigure_mnt."""
    if not _is_mount_root(target):
        raise SyscallError(Errno.EINVAL)
    m = target.mount
    if not flags & MS_RDONLY and _ro_lock(m):
        raise SyscallError(Errno.EPERM)      # can_change_locked_flags
    if _locked_flags.get(m, 0) & ~flags:
        raise SyscallError(Errno.EPERM)      # MNT_LOCK_NOSUID, _NODEV, _NOEXEC, ...
    if fs_too and _locked(m) and not flags & MS_RDONLY != (not m.fs.readonly):
        raise SyscallError(Errno.EPERM)      # the runtime's filesystems keep their state
    if fs_too:
        _remount_fs(m.fs, data)
    _set_flags(m, flags, fs_too)
    return 0


def _bind(t: Task, ns: MountNamespace, source: bytes | None, target: Location,
          recursive: bool) -> int:
    """MS_BIND: the source's (mount, dentry) grafted at the target; with MS_REC its
    submounts too.  Linux: do_loopback."""
    if not source:
        raise SyscallError(Errno.EINVAL if source is None else Errno.ENOENT)
    src = ops.lookup_at(t, AT_FDCWD, source, follow=True)
    if src.inode.is_dir() != target.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    nsfs = getattr(src.inode, "ns_object", None) is not None
    if _namespace_of_mount(src.mount) is not ns.root and not nsfs:
        raise SyscallError(Errno.EINVAL)        # a detached mount, a pipe, a socket
    if not recursive and any(_locked(c) and c.mountpoint is not None and
                             _below(c.mountpoint, src.dentry)
                             for c in src.mount.children.values()):
        raise SyscallError(Errno.EINVAL)    # it would show what a locked mount covers
    if P.is_unbindable(src.mount):
        raise SyscallError(Errno.EINVAL)
    plan = [c for c in _snapshot(src.mount, src.dentry) if not P.is_unbindable(c)] \
        if recursive else []
    _check_room(ns, 1 + len(plan))
    opts = str(src.mount.options)
    new = _graft(ns, target.mount, target.dentry, src.mount, src.dentry, opts)
    new.flags_readonly = src.mount.flags_readonly
    P.clone_relation(src.mount, new)
    copies = _copy_submounts(ns, plan, src.mount, new)
    for child in plan:
        P.clone_relation(child, copies[id(child)])
    _propagate(ns, new)
    return 0


def _check_room(ns: MountNamespace, n: int) -> None:
    if len(ns.mounts) + n > MOUNT_MAX:
        raise SyscallError(Errno.ENOSPC)
    check_total(n)


def _namespace_of_mount(m: Mount) -> Mount:
    while m.parent is not None:
        m = m.parent
    return m


def _graft(ns: MountNamespace, parent: Mount, mountpoint: Any, src_mount: Mount,
           root: Any, options: str, locked: bool = False) -> Mount:
    """A new mount of `src_mount`'s filesystem rooted at dentry `root`."""
    while id(mountpoint) in parent.children:        # over the top-most mount there
        parent = parent.children[id(mountpoint)]
        mountpoint = parent.root
    m = Mount(src_mount.fs, root, parent, mountpoint, source=src_mount.source,
              options=options, id=ns.new_id())
    m.super_options = src_mount.super_options
    parent.children[id(mountpoint)] = m
    ns.mounts.append(m)
    _live.add(m)
    if not locked:                   # copies of locked submounts stay locked (copy_tree)
        _app_made.add(m)
    if _ro_lock(src_mount):
        _ro_locked.add(m)
    if src_mount in _locked_flags:
        _locked_flags[m] = _locked_flags[src_mount]
    return m


def _snapshot(src: Mount, src_root: Any) -> list[Mount]:
    """The mounts below `src_root` in `src`, parents before children, taken before
    anything is grafted (a bind of a tree onto a place inside it copies the tree as it
    was).  Iterative: nesting is bounded by PATH_MAX, not by Python's stack."""
    out: list[Mount] = []
    todo = [c for c in src.children.values()
            if c.mountpoint is not None and _below(c.mountpoint, src_root)]
    while todo:
        m = todo.pop()
        out.append(m)
        todo.extend(m.children.values())
    return out


def _copy_submounts(ns: MountNamespace, plan: list[Mount], src: Mount, new: Mount
                    ) -> dict[int, Mount]:
    """MS_REC: the snapshot's mounts grafted at the same places under `new`, the copy
    of `src` (Linux: copy_tree).  Returns id(original) -> copy."""
    copies = {id(src): new}
    for child in plan:
        parent = copies.get(id(child.parent))
        if parent is None:
            continue                    # below a skipped (unbindable) mount
        c = _graft(ns, parent, child.mountpoint, child, child.root, str(child.options),
                   locked=_locked(child))
        c.flags_readonly = child.flags_readonly
        copies[id(child)] = c
    return copies


def _subtree(m: Mount) -> list[Mount]:
    """`m` and every mount below it, parents first."""
    out, todo = [], [m]
    while todo:
        x = todo.pop(0)
        out.append(x)
        todo.extend(x.children.values())
    return out


def _change_type(m: Mount, kind: int, recursive: bool) -> None:
    """MS_SHARED, MS_SLAVE, MS_PRIVATE, MS_UNBINDABLE (with MS_REC: the whole
    subtree).  Linux: do_change_type."""
    for x in (_subtree(m) if recursive else [m]):
        if kind == MS_SHARED:
            P.make_shared(x)
            _shared.add(x)
        elif kind == MS_SLAVE:
            P.make_slave(x)
        elif kind == MS_PRIVATE:
            P.make_private(x)
        else:
            P.make_unbindable(x)
        if not P.is_shared(x):
            _shared.discard(x)


def _ns_of(m: Mount) -> Any:
    top = m
    while top.parent is not None:
        top = top.parent
    return getattr(top, "ns", None)


def _propagate(ns: MountNamespace, new: Mount, undo: bool = True) -> None:
    """A tree just attached at (dest, mountpoint): below a shared dest it is shared
    too, and copies of it go to every mount the dest propagates to where the
    mountpoint is visible.  Linux: attach_recursive_mnt, propagate_mnt."""
    dest, mp = new.parent, new.mountpoint
    if dest is None or mp is None or not P.is_shared(dest):
        return
    tree = _subtree(new)
    for x in tree:
        P.make_shared(x)
        _shared.add(x)
    in_tree = {id(x) for x in tree}
    groups: dict[tuple[int, int], Any] = {}
    plan = []
    extra: dict[int, int] = {}
    for target, key, via in P.targets(dest):
        if id(target) in in_tree or not _below(mp, target.root):
            continue
        tns = _ns_of(target)
        if tns is None:
            continue
        plan.append((target, key, via, tns))
        extra[id(tns)] = extra.get(id(tns), 0) + len(tree)
    # Room in every namespace first (Linux: count_mounts), so nothing is half done.
    for target, key, via, tns in plan:
        if len(tns.mounts) + extra[id(tns)] > MOUNT_MAX or \
                len(_live) + sum(extra.values()) > TOTAL_MOUNTS_MAX:
            if undo:                         # the mount itself does not happen either
                _umount_tree(ns, new, propagate=False)
            raise SyscallError(Errno.ENOSPC)
    for target, key, via, tns in plan:
        copies: dict[int, Mount] = {}
        for x in tree:
            if x is new:
                c = _graft(tns, target, mp, x, x.root, str(x.options), locked=_locked(x))
            else:
                parent = copies[id(x.parent)]
                c = _graft(tns, parent, x.mountpoint, x, x.root, str(x.options),
                           locked=_locked(x))
            c.flags_readonly = x.flags_readonly
            copies[id(x)] = c
            if key is None:
                P.clone_relation(x, c)
            else:
                master = groups.get((id(via), id(x))) if via is not None else None
                P.set_master(c, master if master is not None else x.group)
                if isinstance(key, P.PeerGroup):
                    g = groups.get((id(key), id(x)))
                    if g is None:
                        g = groups[(id(key), id(x))] = P.PeerGroup()
                    P.join(c, g)
            if P.is_shared(c):
                _shared.add(c)
        tns.touch()


def _propagate_umount(m: Mount) -> list[tuple[Any, Mount]]:
    """The copies an unmount of `m` takes with it: at each mount its parent
    propagates to, what is mounted at the same place, if nothing is mounted on or
    below it.  Linux: propagate_umount."""
    parent, mp = m.parent, m.mountpoint
    out: list[tuple[Any, Mount]] = []
    if parent is None or mp is None or not P.is_shared(parent):
        return out
    for target, _, _ in P.targets(parent):
        c = target.children.get(id(mp))
        if c is None or c is m or c.children or _locked(c):
            continue
        tns = _ns_of(c)
        if tns is not None:
            out.append((tns, c))
    return out


def _below(d: Any, top: Any) -> bool:
    while d is not None:
        if d is top:
            return True
        d = d.parent
    return False


def _move(t: Task, ns: MountNamespace, source: bytes | None, target: Location) -> int:
    """MS_MOVE: the mount at `source` moves to `target`.  Linux: do_move_mount_old."""
    if not source:
        raise SyscallError(Errno.EINVAL if source is None else Errno.ENOENT)
    return _move_loc(ns, ops.lookup_at(t, AT_FDCWD, source, follow=True), target)


def _move_loc(ns: MountNamespace, src: Location, target: Location) -> int:
    m = src.mount
    if not _is_mount_root(src) or m.parent is None or m.mountpoint is None or _locked(m):
        raise SyscallError(Errno.EINVAL)
    if _below_mount(target.mount, m):
        raise SyscallError(Errno.ELOOP)     # into itself
    if src.inode.is_dir() != target.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    if P.is_shared(m.parent):
        raise SyscallError(Errno.EINVAL)    # do_move_mount: a shared parent's child
    del m.parent.children[id(m.mountpoint)]
    parent, mountpoint = target.mount, target.dentry
    while id(mountpoint) in parent.children:
        parent = parent.children[id(mountpoint)]
        mountpoint = parent.root
    m.parent, m.mountpoint = parent, mountpoint
    parent.children[id(mountpoint)] = m
    _propagate(ns, m, undo=False)
    return 0


def _below_mount(m: Mount | None, top: Mount) -> bool:
    while m is not None:
        if m is top:
            return True
        m = m.parent
    return False


def sys_umount2(t: Task, r: SyscallArguments) -> int:
    """Implements umount2(2).  Linux: ksys_umount, path_umount, do_umount."""
    flags = r.int32(1)
    if flags & ~(MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW):
        raise SyscallError(Errno.EINVAL)
    loc = ops.lookup_at(t, AT_FDCWD, t.copy_in_str(r.pointer(0), PATH_MAX),
                        follow=not flags & UMOUNT_NOFOLLOW)
    # LOOKUP_MOUNTPOINT: the last component is the top of what is mounted there ("."
    # included, whose walk stays on the working directory itself).
    mnt, d = _step_down(loc.mount, loc.dentry)
    loc = Location(mnt, d)
    ns = _namespace(t)
    _may_mount(t, ns)
    m = loc.mount
    if not _is_mount_root(loc):
        raise SyscallError(Errno.EINVAL)
    if m not in ns.mounts or _locked(m):
        raise SyscallError(Errno.EINVAL)     # not mounted, or the runtime's (MNT_LOCKED)
    if flags & MNT_EXPIRE and flags & (MNT_FORCE | MNT_DETACH):
        raise SyscallError(Errno.EINVAL)
    if m.parent is None or m.mountpoint is None:
        raise SyscallError(Errno.EINVAL if flags & MNT_DETACH else Errno.EBUSY)
    if not flags & MNT_DETACH and (m.children or _busy(t, m)):
        raise SyscallError(Errno.EBUSY)
    if flags & MNT_EXPIRE:
        raise SyscallError(Errno.EAGAIN)      # first call marks it: never "expired" yet
    _umount_tree(ns, m)
    ns.touch()
    return 0


def _busy(t: Task, m: Mount) -> bool:
    """Whether an open file, a working directory or a root is in mount `m`."""
    seen: set[int] = set()
    for task in list(t.kernel.tasks_by_tid.values()):
        fs = task.fs
        if fs.cwd.mount is m or fs.root.mount is m:
            return True
        table = task.fd_table
        if id(table) in seen:
            continue
        seen.add(id(table))
        for f, _ in table.files.values():
            if f.mount is m:
                return True
    return False


def _umount_tree(ns: MountNamespace, m: Mount, propagate: bool = True) -> None:
    """Detaches `m` and every mount below it (Linux: umount_tree), and the copies its
    peer group's events made."""
    if propagate:
        tree = _subtree(m)
        in_tree = {id(x) for x in tree}
        # One walk of the propagation targets per (peer group, mountpoint): a stack of
        # peers (binds of a shared mount onto itself) is then linear, not quadratic.
        done: set[tuple[int, int]] = set()
        extra = []
        for x in tree:
            par, mp = x.parent, x.mountpoint
            if par is None or mp is None or not P.is_shared(par):
                continue
            key = (id(par.group), id(mp))    # type: ignore[attr-defined]
            if key in done:
                continue
            done.add(key)
            extra.extend((tns, c) for tns, c in _propagate_umount(x)
                         if id(c) not in in_tree)
        for tns, c in extra:
            if c.parent is not None:          # not already gone with an earlier one
                _umount_tree(tns, c, propagate=False)
                tns.touch()
    if m.parent is not None and m.mountpoint is not None:
        m.parent.children.pop(id(m.mountpoint), None)
    m.parent = m.mountpoint = None      # detached: a tree of its own (binds of it: EINVAL)
    gone = []
    todo = [m]
    while todo:
        x = todo.pop()
        gone.append(x)
        todo.extend(x.children.values())
    dead = {id(x) for x in gone}
    ns.mounts[:] = [x for x in ns.mounts if id(x) not in dead]
    for x in gone:
        P.forget(x)
        _shared.discard(x)
    # A filesystem's last mount gone: watches on its files hear IN_UNMOUNT.
    if inotify._watches:
        for fs in {id(x.fs): x.fs for x in gone}.values():
            if not any(x.fs is fs for x in ns.mounts):
                inotify.unmounted(inotify.watched_on(fs.dev))


def _reachable(m: Mount, d: Any, root: Location) -> bool:
    """is_path_reachable: (m, d) is at or below `root`, crossing mountpoints upward."""
    while m is not root.mount:
        if m.parent is None or m.mountpoint is None:
            return False
        m, d = m.parent, m.mountpoint
    return _below(d, root.dentry)


def _dir_at(t: Task, addr: int) -> Location:
    loc = ops.lookup_at(t, AT_FDCWD, t.copy_in_str(addr, PATH_MAX), follow=True)
    if not loc.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    return loc


def sys_pivot_root(t: Task, r: SyscallArguments) -> int:
    """Implements pivot_root(2): the mount at `new_root` becomes the caller's root
    mount and the old root mount moves to `put_old`; every task whose root or
    working directory was the old root follows.  Linux: fs/namespace.c, in its
    order of checks."""
    ns = _namespace(t)
    _may_mount(t, ns)
    new = _dir_at(t, r.pointer(0))
    old = _dir_at(t, r.pointer(1))
    root = t.fs.root
    old_mnt, old_d = _step_down(old.mount, old.dentry)       # lock_mount: the top one
    new_mnt, root_mnt = new.mount, root.mount
    ex_parent, root_parent = new_mnt.parent, root_mnt.parent
    if any(x is not None and x in _shared for x in (old_mnt, ex_parent, root_parent)):
        raise SyscallError(Errno.EINVAL)
    if new_mnt not in ns.mounts or root_mnt not in ns.mounts:
        raise SyscallError(Errno.EINVAL)                     # check_mnt
    if _locked(new_mnt):
        raise SyscallError(Errno.EINVAL)                     # MNT_LOCKED
    if new_mnt is root_mnt or old_mnt is root_mnt:
        raise SyscallError(Errno.EBUSY)
    if root.dentry is not root_mnt.root or root_parent is None or root_mnt.mountpoint is None:
        raise SyscallError(Errno.EINVAL)     # the root is not a mount (or is the namespace's)
    if new.dentry is not new_mnt.root or ex_parent is None or new_mnt.mountpoint is None:
        raise SyscallError(Errno.EINVAL)     # new_root is not a mount
    if not _reachable(old_mnt, old_d, Location(new_mnt, new_mnt.root)):
        raise SyscallError(Errno.EINVAL)     # put_old is not under new_root
    if not _reachable(new_mnt, new.dentry, root):
        raise SyscallError(Errno.EINVAL)     # new_root is not under the root
    root_mp = root_mnt.mountpoint
    # umount_mnt(new_mnt), unhash_mnt(root_mnt).
    ex_parent.children.pop(id(new_mnt.mountpoint), None)
    root_parent.children.pop(id(root_mp), None)
    if _locked(root_mnt):                    # the lock stays with the root's place
        _app_made.discard(new_mnt)
        _app_made.add(root_mnt)
    # The old root goes on put_old (the top of what is mounted there), new_root on /.
    root_mnt.parent, root_mnt.mountpoint = old_mnt, old_d
    old_mnt.children[id(old_d)] = root_mnt
    new_mnt.parent, new_mnt.mountpoint = root_parent, root_mp
    root_parent.children[id(root_mp)] = new_mnt
    ns.touch()
    # chroot_fs_refs: roots and working directories at the old root follow.
    new_loc = Location(new_mnt, new_mnt.root)
    seen: set[int] = set()
    for task in list(t.kernel.tasks_by_tid.values()):
        fs = task.fs
        if id(fs) in seen:
            continue
        seen.add(id(fs))
        if fs.root.mount is root_mnt and fs.root.dentry is root.dentry:
            fs.root = new_loc
        if fs.cwd.mount is root_mnt and fs.cwd.dentry is root.dentry:
            fs.cwd = new_loc
    return 0
