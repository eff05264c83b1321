"""linux.readonlyPaths and linux.maskedPaths, in the Sentry's VFS, as runc makes them.

runc: libcontainer/rootfs_linux.go (readonlyPath, maskPath).  runsc (release
20221219, measured with the bundle of tests/runtime/test_masks.py) ignores both: a
masked file stays readable and a read-only path writable.  pyvisor copies runc:

* readonlyPaths: the path is bind-mounted over itself read-only (a Mount with
  flags_readonly): every write there is EROFS, reads are as before, mountinfo shows
  a mount of its own with "ro".
* maskedPaths: a file gets /dev/null mounted over it (it reads as empty, stat shows
  the character device 1:3, writes vanish); a directory gets an empty read-only
  tmpfs (lists as empty, EROFS on creating anything).

A path missing from the sandbox is skipped, as runc skips ENOENT (pyvisor's /proc
has no /proc/kcore, /proc/acpi, ... to begin with).  Read-only paths are applied
first, then masks, in the order given (runc's order).  Paths are resolved in the
sandbox (symlinks followed within its root) after every mount of config.json.

Mounts on procfs need one more step: procfs never caches dentries (a dead pid must
not linger), but a mount is found by its mount point's dentry, so the dentries
from the procfs root down to the mount point are pinned in their parents'
children maps (held by the new mount) for the sandbox's life.
"""

from __future__ import annotations

import os
from typing import Any

from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.vfs.vfs import Location, MountNamespace, Resolver

MASK_TMPFS_SIZE = 4096


def _resolve(ns: MountNamespace, t: Any, path: str) -> Location | None:
    root = Location(ns.root, ns.root.root)
    try:
        return Resolver(root).walk(t, root, os.path.normpath(path).encode(), True)[0]
    except SyscallError:
        return None            # missing (or unreachable): skipped, as runc skips ENOENT


def _pin(loc: Location) -> list[Any]:
    """Pins the dentries from the mount's root down to loc.dentry (see the module doc)."""
    from pyvisor.sentry.vfs.dcache import WeakChildren
    chain = []
    d = loc.dentry
    while d is not loc.mount.root and d.parent is not None:
        parent = d.parent
        if parent.children is None:
            parent.children = WeakChildren()
        parent.children[d.name] = d
        chain.append(d)
        d = parent
    return chain


def _mount_over(ns: MountNamespace, loc: Location, fs: Any, inode: Any, source: str,
                options: str) -> None:
    pinned = _pin(loc)
    m = ns.mount(loc.mount, loc.dentry, fs, inode, source=source, options=options)
    m.flags_readonly = options.split(",")[0] == "ro"
    m.pinned = pinned          # type: ignore[attr-defined]  # keeps the chain alive


def apply(kernel: Any, ns: MountNamespace, t: Any, readonly: list[str], masked: list[str],
          devroot: Any) -> None:
    """Makes `readonly` read-only and masks `masked` in the sandbox's mount namespace."""
    from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS
    for path in readonly:
        loc = _resolve(ns, t, path)
        if loc is None:
            continue
        opts = "ro" + "".join("," + o for o in loc.mount.options.split(",")[1:] if o)
        _mount_over(ns, loc, loc.inode.fs, loc.inode, loc.mount.source, opts)
    null = devroot.entries[b"null"]
    for path in masked:
        loc = _resolve(ns, t, path)
        if loc is None:
            continue
        if loc.inode.is_dir():
            fs = TmpFS(kernel.memfile, MASK_TMPFS_SIZE, 1, getattr(kernel, "memory", None))
            root = fs.new_root(0o1777)    # runc: a tmpfs of its default mode
            fs.readonly = True
            _mount_over(ns, loc, fs, root, "tmpfs", "ro")
        else:
            _mount_over(ns, loc, null.fs, null, "udev", "rw,nosuid")
