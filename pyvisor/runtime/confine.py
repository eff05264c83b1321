"""Confinement of the Sentry: namespaces, an empty root, no capabilities.

gVisor: runsc/sandbox and runsc/boot (the sandbox process is started in new
namespaces, pivots into an empty root and drops capabilities before the
Sentry runs).  The seccomp filter comes last, from pyvisor.seccomp.

Ordering rules (each step needs what the previous ones still allow):
 1. unshare_pid() in the launcher, then fork: the child is PID 1 of a new
    PID namespace, so when it dies the kernel kills every stub and Gofer in it.
 2. In the child, enter_namespaces(): new mount, IPC, UTS and network
    namespaces; mounts become private.
 3. boot(): reads what it needs from the host (/proc/self/auxv, cpuinfo),
    forks the Gofers (which confine themselves) and the master stub.
 4. preload() imports every module the Sentry may need later, since after
    pivot_to_empty() no file of the host is reachable.
 5. pivot_to_empty(), drop_capabilities(), then the seccomp filter.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import os
import sys
import re

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
CAP_LAST_CAP = 63


class ConfinementError(Exception):
    """A confinement step failed: the sandbox must not start without it."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise ConfinementError(f"{what}: {os.strerror(e)}")


def unshare_pid() -> None:
    """The next fork's child starts a new PID namespace (as its PID 1)."""
    _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")


def unshare_net() -> None:
    """A network namespace of its own for the calling process (the sandbox's monitor)."""
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")


def enter_namespaces(host_network: bool = False, keep_network: bool = False) -> None:
    """New mount, IPC, UTS and network namespaces; nothing mounted here reaches the host.
    With `host_network` (--network=host, hostinet) the Sentry keeps the host's network
    namespace, since it makes the application's sockets there; with `keep_network` it
    keeps the container's, which it joined to take over its interfaces (runtime/netns.py)."""
    new_net = not (host_network or keep_network)
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (CLONE_NEWNET if new_net else 0)
    _check(_libc.unshare(flags), "unshare(mount, ipc, uts" + (", net" if new_net else "")
           + ")")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")


def pivot_to_empty() -> None:
    """Makes the root an empty read-only tmpfs: the host's files are unreachable."""
    where = b"/tmp" if os.path.isdir("/tmp") else b"/"
    _check(_libc.mount(b"pyvisor-root", where, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                       b"size=4k,mode=0555"), "mount empty root")
    os.chdir(where)
    # pivot_root(".", "."): the old root is stacked under the new one; detach it.
    _check(_libc.syscall(155, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detach old root")
    os.chdir("/")
    _check(_libc.mount(None, b"/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
                       | MS_NODEV | MS_NOEXEC, None), "remount empty root read-only")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_bounding_set() -> None:
    """Empties the capability bounding set, so no later exec regains capabilities."""
    for cap in range(CAP_LAST_CAP + 1):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == 22:     # EINVAL: past the kernel's last capability
                break
            _check(-1, f"drop capability {cap} from the bounding set")


def drop_capabilities() -> None:
    """No capabilities at all: the Sentry needs none to trace and serve its own stubs."""
    drop_bounding_set()
    hdr = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(126, ctypes.byref(hdr), ctypes.byref(data)), "capset")


# Filesystems that expose the host kernel rather than files: never served by a Gofer.
PSEUDO_FS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "mqueue", "debugfs",
    "tracefs", "securityfs", "pstore", "bpf", "configfs", "fusectl", "hugetlbfs",
    "binfmt_misc", "efivarfs", "autofs", "rpc_pipefs", "nsfs", "selinuxfs", "nfsd",
})
# Where the Sentry mounts its own procfs, sysfs and devfs: the host's are never needed.
PSEUDO_DIRS = (b"/proc", b"/sys", b"/dev")

# From <linux/mount.h>.
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
AT_RECURSIVE = 0x8000
AT_FDCWD = -100
_SYS_mount_setattr = 442


class _MountAttr(ctypes.Structure):
    """struct mount_attr (MOUNT_ATTR_SIZE_VER0)."""

    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _unescape(field: bytes) -> bytes:
    """A mountinfo path: octal escapes (\\040 for a space, ...) decoded."""
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field)


def read_mounts() -> list[tuple[bytes, str]]:
    """(mount point, filesystem type) of every mount this process sees, parents first."""
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            sep = fields.index(b"-")
            out.append((_unescape(fields[4]), fields[sep + 1].decode(errors="replace")))
    return out


def _under(path: bytes, top: bytes) -> bool:
    return path == top or path.startswith(top.rstrip(b"/") + b"/")


def detach_pseudo_mounts(root: bytes) -> list[bytes]:
    """Detaches, below `root` (never `root` itself), every mount of a pseudo
    filesystem (PSEUDO_FS) and everything at or below root/proc, root/sys and
    root/dev. Returns the mount points detached.  Preconditions: a private mount
    namespace of our own (enter it first: this changes only our copy)."""
    base = root.rstrip(b"/")
    dirs = [base + d for d in PSEUDO_DIRS]
    gone: list[bytes] = []
    for mp, fstype in read_mounts():
        if mp == root or not _under(mp, root):
            continue
        if fstype not in PSEUDO_FS and not any(_under(mp, d) for d in dirs):
            continue
        if any(_under(mp, g) for g in gone):
            continue        # went with a mount above it
        if _libc.umount2(mp, MNT_DETACH) != 0:
            e = ctypes.get_errno()
            if e not in (errno.EINVAL, errno.ENOENT):   # not (or no longer) a mount point
                raise ConfinementError(f"detach {mp.decode(errors='replace')}: {os.strerror(e)}")
        gone.append(mp)
    return gone


def seal_mounts(readonly: bool) -> None:
    """Makes every mount of this process's tree nosuid, nodev, noexec and, if
    `readonly`, read-only, recursively (mount_setattr with AT_RECURSIVE; per
    mount with a bind remount on kernels before 5.12).  Preconditions: as for
    detach_pseudo_mounts."""
    flags = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC
    if readonly:
        flags |= MOUNT_ATTR_RDONLY
    attr = _MountAttr(flags, 0, 0, 0)
    if _libc.syscall(_SYS_mount_setattr, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr),
                     ctypes.sizeof(attr)) == 0:
        return
    if ctypes.get_errno() != errno.ENOSYS:
        _check(-1, "mount_setattr(AT_RECURSIVE)")
    ms = MS_NOSUID | MS_NODEV | MS_NOEXEC | (MS_RDONLY if readonly else 0)
    for mp, _ in read_mounts():
        _check(_libc.mount(None, mp, None, MS_REMOUNT | MS_BIND | ms, None),
               f"remount {mp.decode(errors='replace')} read-only")


def set_fd_budget(nofile: int) -> int:
    """Sets RLIMIT_NOFILE (soft and hard) to `nofile`, or as near as allowed; returns it.

    Raising the hard limit needs CAP_SYS_RESOURCE: call before dropping capabilities.
    """
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    except (OSError, ValueError):     # unprivileged: the hard limit caps us
        if hard != resource.RLIM_INFINITY:
            nofile = min(nofile, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    return nofile


def no_new_privs() -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")


# Modules no Sentry ever imports, left out of preload(): the command line, its verbs and
# the OCI bundle and state code (the launcher's side), the Python API (a client of the
# control socket), and development and test tools.  Importing them would cost every
# start-up ~15 ms (the API alone pulls in asyncio and ssl).
# tests/runtime/test_preload.py checks that no other pyvisor module imports one of them.
LAUNCHER_ONLY = (
    "pyvisor.__main__", "pyvisor.api", "pyvisor.runtime.cli", "pyvisor.runtime.cmd",
    "pyvisor.runtime.container", "pyvisor.runtime.pod", "pyvisor.runtime.spec",
    "pyvisor.runtime.specutils", "pyvisor.runtime.state", "pyvisor.runtime.hooks",
    "pyvisor.runtime.terminal", "pyvisor.runtime.interp", "pyvisor.seccomp.discover",
    "pyvisor.seccomp.harness", "pyvisor.sentry.vdso.build", "pyvisor.sentry.platform.fake",
)


def launcher_only(name: str) -> bool:
    """Whether module `name` is one preload() leaves out (LAUNCHER_ONLY or below one)."""
    return any(name == m or name.startswith(m + ".") for m in LAUNCHER_ONLY)


def package_modules() -> list[str]:
    """Every module of the pyvisor package, packages before their modules, found by
    listing its directories (pkgutil.walk_packages would import each package to find
    its submodules, the API's among them)."""
    import pyvisor
    base = os.path.dirname(os.path.abspath(pyvisor.__file__))
    out: list[str] = []

    def walk(path: str, name: str) -> None:
        out.append(name)
        subdirs = []
        with os.scandir(path) as it:
            for e in sorted(it, key=lambda e: e.name):
                if e.is_dir(follow_symlinks=False):
                    if os.path.exists(os.path.join(e.path, "__init__.py")):
                        subdirs.append(e)
                elif e.name.endswith(".py") and e.name != "__init__.py":
                    out.append(f"{name}.{e.name[:-3]}")
        for e in subdirs:
            walk(e.path, f"{name}.{e.name}")
    walk(base, "pyvisor")
    return out


# The packages the last preload() left out; None: none has run in this process.
_preloaded: frozenset[str] | None = None


def preload(skip: tuple[str, ...] = ()) -> None:
    """Imports every pyvisor module a Sentry may import and the standard modules imported
    lazily, so no import needs the host's files once the Sentry has pivoted into an empty
    root.  `skip`: packages this sandbox's configuration never uses (sandbox.preload_skip:
    the other platform, hostinet).  A later call returns at once unless it skips less (a
    Sentry forked before its configuration was known, prefork.py, preloads the common
    set first and the rest of its configuration's after)."""
    global _preloaded
    if _preloaded is not None and _preloaded.issuperset(skip):
        return
    for name in package_modules():
        if name in sys.modules or launcher_only(name) or any(
                name == m or name.startswith(m + ".") for m in skip):
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for name in ("time", "traceback", "linecache", "json", "struct", "fcntl",
                 "termios", "select", "socket", "random", "errno", "tokenize"):
        importlib.import_module(name)
    _preloaded = frozenset(skip) if _preloaded is None else _preloaded & frozenset(skip)
    from pyvisor.runtime import codecache, modcache
    codecache.save()        # every dataclass is made by now (a no-op if none was new)
    modcache.save()         # and every module imported (a no-op if none was missed)
