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
import importlib
import os
import pkgutil

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


def enter_namespaces(host_network: bool = False) -> None:
    """New mount, IPC, UTS and network namespaces; nothing mounted here reaches the host.
    With `host_network` (--network=host, hostinet) the Sentry keeps the host's network
    namespace, since it makes the application's sockets there."""
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (0 if host_network else CLONE_NEWNET)
    _check(_libc.unshare(flags), "unshare(mount, ipc, uts" + ("" if host_network else ", net")
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


def no_new_privs() -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")


def preload() -> None:
    """Imports every pyvisor module and the standard modules imported lazily, so no
    import needs the host's files once the Sentry has pivoted into an empty root."""
    import pyvisor
    for mod in pkgutil.walk_packages(pyvisor.__path__, "pyvisor."):
        name = mod.name
        if name.endswith("__main__") or name.startswith(("pyvisor.runtime.cmd", "pyvisor.seccomp.discover")):
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for name in ("time", "shutil", "traceback", "linecache", "json", "struct", "fcntl",
                 "termios", "select", "socket", "random", "errno", "tokenize"):
        importlib.import_module(name)
