"""User, UTS, IPC, network and mount namespaces made by the application.
Linux: kernel/user_namespace.c, kernel/nsproxy.c, kernel/utsname.c,
ipc/namespace.c, net/core/net_namespace.c, fs/namespace.c (copy_mnt_ns), fs/nsfs.c.

The sandbox itself is one set of namespaces (the "initial" ones, as a container's
are to Linux's init namespaces): `None` in a task's `nsproxy` fields and in
`Credentials.userns` means those.  unshare(2), clone(2) with CLONE_NEW* and
setns(2) make or join others:

* User namespaces nest (at most 32 deep).  Credentials keep kernel ids (the
  initial namespace's); getuid and friends show them through the caller's maps
  (65534 where unmapped) and set*id maps what they are given (EINVAL where
  unmapped), so a map never lets a process reach ids its creator could not.
  The creator of a namespace has every capability in it (ns_capable), none
  outside it: `Credentials.capable` answers for the sandbox's namespace only,
  except for the few capabilities Linux checks against the caller's own
  namespace (setuid/setgid/setpcap/chroot), and the inode ones (DAC, FOWNER)
  are checked with the inode's owner mapped (perms.py).
* UTS: a hostname and domain name of its own.  IPC: System V registries of
  its own.  Network: a new Sentry network stack with its own loopback, when
  the stack offers a constructor.  Mount: a copy of the mount tree
  (vfs.MountNamespace.clone); mounts copied into a namespace owned by a less
  privileged user namespace are locked, as Linux's lock_mnt_tree.
* /proc/PID/ns/* open to nsfs files that name the namespace object; setns
  takes them (or a pidfd).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import itertools
import weakref
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.capability import CAP_SYS_ADMIN
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.sched import (CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER,
                                     CLONE_NEWUTS)
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Credentials, Task

# Live namespaces made inside, per kind, and how many may live at once (Linux:
# user.max_*_namespaces, ENOSPC past them): a network namespace is a whole Sentry
# network stack, the others are small but held by nsfs files too.
_LIVE: dict[bytes, weakref.WeakSet[Any]] = {}
NS_MAX = {b"user": 1024, b"mnt": 1024, b"uts": 1024, b"ipc": 1024, b"net": 128}


def _count(kind: bytes) -> weakref.WeakSet[Any]:
    ws = _LIVE.get(kind)
    if ws is None:
        ws = _LIVE[kind] = weakref.WeakSet()
    if len(ws) >= NS_MAX[kind]:
        import gc
        gc.collect()                  # namespaces unreachable but in reference cycles
        if len(ws) >= NS_MAX[kind]:
            raise SyscallError(Errno.ENOSPC)
    return ws


# Inode numbers of namespaces made inside (Linux: proc_alloc_inum, above the fixed
# PROC_*_INIT_INO ones).
_inos = itertools.count(0xF0000100)
MAX_USERNS_DEPTH = 32
OVERFLOW_ID = 65534
ID_MAX = 0xFFFFFFFF
MAX_EXTENTS = 340


class UserNamespace:
    """Linux: struct user_namespace.  Maps hold (first, lower_first, count) with
    `lower_first` in the parent's ids."""

    kind = b"user"
    flag = CLONE_NEWUSER

    def __init__(self, parent: UserNamespace | None, owner: int, group: int,
                 ino: int | None = None) -> None:
        self.parent = parent
        self.level = parent.level + 1 if parent is not None else 0
        self.owner, self.group = owner, group           # kernel ids of the creator
        self.uid_map: list[tuple[int, int, int]] = []
        self.gid_map: list[tuple[int, int, int]] = []
        self.setgroups_allowed = parent.setgroups_allowed if parent is not None else True
        self.ino = ino if ino is not None else next(_inos)

    @property
    def userns(self) -> UserNamespace | None:
        """The namespace owning this one (its parent)."""
        return self.parent


# The sandbox's namespace: every id maps to itself.
INIT_USER = UserNamespace(None, 0, 0, ino=0xEFFFFFFD)
INIT_USER.uid_map = [(0, 0, ID_MAX)]
INIT_USER.gid_map = [(0, 0, ID_MAX)]


def userns_of(c: Credentials) -> UserNamespace:
    ns = getattr(c, "userns", None)
    return ns if ns is not None else INIT_USER


def _down(extents: list[tuple[int, int, int]], x: int) -> int | None:
    for first, lower, count in extents:
        if first <= x < first + count:
            return lower + (x - first)
    return None


def _up(extents: list[tuple[int, int, int]], x: int) -> int | None:
    for first, lower, count in extents:
        if lower <= x < lower + count:
            return first + (x - lower)
    return None


def make_kid(ns: UserNamespace | None, x: int, uid: bool) -> int | None:
    """The kernel id of id `x` of namespace `ns` (make_kuid), None if unmapped."""
    cur: UserNamespace | None = ns
    while cur is not None and cur is not INIT_USER:
        y = _down(cur.uid_map if uid else cur.gid_map, x)
        if y is None:
            return None
        x = y
        cur = cur.parent
    return x


def from_kid(ns: UserNamespace | None, k: int, uid: bool) -> int | None:
    """Kernel id `k` as namespace `ns` sees it (from_kuid), None if unmapped."""
    chain = []
    cur = ns
    while cur is not None and cur is not INIT_USER:
        chain.append(cur)
        cur = cur.parent
    for n in reversed(chain):
        y = _up(n.uid_map if uid else n.gid_map, k)
        if y is None:
            return None
        k = y
    return k


def show_id(c: Credentials, k: int, uid: bool = True) -> int:
    """from_kuid_munged: an id as the caller's namespace shows it."""
    ns = getattr(c, "userns", None)
    if ns is None:
        return k
    v = from_kid(ns, k, uid)
    return OVERFLOW_ID if v is None else v


def take_id(c: Credentials, x: int, uid: bool = True) -> int:
    """An id given by the caller as a kernel id (make_kuid); -1 stays -1; EINVAL if
    unmapped."""
    ns = getattr(c, "userns", None)
    if ns is None or x == -1:
        return x
    k = make_kid(ns, x & ID_MAX, uid)
    if k is None:
        raise SyscallError(Errno.EINVAL)
    return k


def has_mapping(c: Credentials, k: int, uid: bool = True) -> bool:
    ns = getattr(c, "userns", None)
    return ns is None or from_kid(ns, k, uid) is not None


def ns_capable(c: Credentials, ns: UserNamespace | None, cap: int) -> bool:
    """Whether `c` has `cap` in namespace `ns` (None: the sandbox's).  Linux:
    cap_capable: the caller's own namespace by its effective set; a namespace
    its euid created (directly below the caller's), every capability; above or
    beside, nothing."""
    target = ns if ns is not None else INIT_USER
    mine = userns_of(c)
    while True:
        if target is mine:
            eff = c.caps[0] if c.caps is not None else (-1 if c.euid == 0 else 0)
            return bool(eff >> cap & 1)
        if target.level <= mine.level:
            return False
        if target.parent is mine and target.owner == c.euid:
            return True
        assert target.parent is not None
        target = target.parent


class UTSNamespace:
    """Linux: struct uts_namespace."""

    kind = b"uts"
    flag = CLONE_NEWUTS

    def __init__(self, userns: UserNamespace | None, hostname: bytes, domainname: bytes
                 ) -> None:
        self.userns = userns
        self.hostname, self.domainname = hostname, domainname
        self.ino = next(_inos)


class IPCNamespaceRef:
    """A System V IPC namespace made inside, with its owner (the registries are
    kernel/ipc's IPCNamespace)."""

    kind = b"ipc"
    flag = CLONE_NEWIPC

    def __init__(self, userns: UserNamespace | None) -> None:
        from pyvisor.sentry.kernel.ipc import IPCNamespace
        self.userns = userns
        self.ipc = IPCNamespace()
        self.ino = next(_inos)


class NetNamespace:
    """A network namespace made inside: its own Sentry network (`stack`, a
    socket.Network)."""

    kind = b"net"
    flag = CLONE_NEWNET

    def __init__(self, userns: UserNamespace | None, stack: Any) -> None:
        self.userns = userns
        self.stack = stack
        self.ino = next(_inos)


class NsProxy:
    """A task's namespaces other than the mount one (which its root names) and the
    user one (in its credentials).  Linux: struct nsproxy.  None: the sandbox's."""

    __slots__ = ("uts", "ipc", "net")

    def __init__(self, uts: UTSNamespace | None = None, ipc: IPCNamespaceRef | None = None,
                 net: NetNamespace | None = None) -> None:
        self.uts, self.ipc, self.net = uts, ipc, net

    def copy(self) -> NsProxy:
        return NsProxy(self.uts, self.ipc, self.net)


def nsproxy(t: Task) -> NsProxy:
    p = getattr(t, "nsproxy", None)
    return p if p is not None else _INIT_PROXY


_INIT_PROXY = NsProxy()


# -- what the rest of the kernel asks ------------------------------------------------------


def uts_names(t: Task) -> tuple[bytes, bytes]:
    """(hostname, domainname) of the task's UTS namespace."""
    uts = nsproxy(t).uts
    if uts is None:
        return t.kernel.hostname, t.kernel.domainname
    return uts.hostname, uts.domainname


class Event:
    """A change counter readers poll (MountsFileImpl in procfs): for the UTS names,
    Linux's uts_proc_notify on /proc/sys/kernel/{hostname,domainname}."""

    def __init__(self) -> None:
        self.event = 0
        self.event_wq: Any = None

    def touch(self) -> None:
        self.event += 1
        if self.event_wq is not None:
            self.event_wq.notify(0x00A)          # EVENT_PRI | EVENT_ERR


UTS_EVENTS = {"hostname": Event(), "domainname": Event()}


def set_uts_name(t: Task, which: str, value: bytes | None) -> None:
    """sethostname/setdomainname: CAP_SYS_ADMIN over the UTS namespace's owner
    (`value` None: only that check)."""
    uts = nsproxy(t).uts
    if not ns_capable(t.creds, uts.userns if uts is not None else None, CAP_SYS_ADMIN):
        raise SyscallError(Errno.EPERM)
    if value is not None:
        setattr(uts if uts is not None else t.kernel, which, value)
        UTS_EVENTS[which].touch()


def ipc_of(kernel: Any) -> Any:
    """The System V IPC registries of the task being served (kernel.current)."""
    cur = getattr(kernel, "current", None)
    p = getattr(cur, "nsproxy", None) if cur is not None else None
    if p is not None and p.ipc is not None:
        return p.ipc.ipc
    return kernel.ipc


def mount_ns_of(t: Task) -> Any:
    """The task's mount namespace: the one whose tree holds its root."""
    top = t.fs.root.mount
    while top.parent is not None:
        top = top.parent
    ns = getattr(top, "ns", None)
    if ns is not None:
        return ns
    k = t.kernel
    for cand in [getattr(k, "root_ns", None), *getattr(k, "mount_namespaces", ())]:
        if cand is not None and cand.root is top:
            return cand
    raise SyscallError(Errno.EINVAL)


def kind_of(obj: Any) -> bytes:
    return obj.kind


def of_task(t: Task, kind: bytes) -> Any:
    """The namespace object of `kind` the task is in (for /proc/PID/ns and setns)."""
    if kind == b"user":
        return userns_of(t.creds)
    if kind == b"mnt":
        return mount_ns_of(t)
    p = nsproxy(t)
    obj = getattr(p, kind.decode(), None)
    if obj is not None:
        return obj
    return _init_object(t.kernel, kind)


class _InitNs:
    """The sandbox's own UTS, IPC or network namespace as an nsfs object."""

    def __init__(self, kind: bytes, ino: int) -> None:
        self.kind = kind
        self.ino = ino
        self.userns = None
        self.flag = {b"uts": CLONE_NEWUTS, b"ipc": CLONE_NEWIPC, b"net": CLONE_NEWNET}[kind]


_INIT_NS: dict[bytes, _InitNs] = {}
INIT_INOS = {b"uts": 0xEFFFFFFE, b"ipc": 0xEFFFFFFF, b"net": 0xF0000001}


def _init_object(kernel: Any, kind: bytes) -> Any:
    obj = _INIT_NS.get(kind)
    if obj is None:
        obj = _INIT_NS[kind] = _InitNs(kind, INIT_INOS[kind])
    return obj


def ino_of(obj: Any) -> int:
    ino = getattr(obj, "ino", None)
    if ino is None:           # a mount namespace (vfs.MountNamespace)
        ino = obj.ns_ino
    return int(ino)


def flag_of(obj: Any) -> int:
    return int(getattr(obj, "flag", CLONE_NEWNS))


# -- unshare, clone, setns ------------------------------------------------------------------

ALL_CAPS_SET = (1 << 41) - 1


def _enter_userns(c: Credentials, ns: UserNamespace) -> Credentials:
    """set_cred_user_ns: every capability in `ns`, nothing inheritable."""
    from pyvisor.sentry.kernel.task import ALL_CAPS
    new = c.copy()
    new.userns = ns if ns is not INIT_USER else None
    new.caps = (ALL_CAPS, ALL_CAPS, 0)
    new.bset = ALL_CAPS
    new.ambient = 0
    new.securebits = 0
    return new


def _chrooted(t: Task) -> bool:
    """current_chrooted: the root is not its mount namespace's root."""
    root = t.fs.root
    ns = mount_ns_of(t)
    from pyvisor.sentry.vfs.vfs import _step_down
    m, d = _step_down(ns.root, ns.root.root)
    return not (root.mount is m and root.dentry is d)


def new_userns(t: Task, c: Credentials) -> Credentials:
    """create_user_ns for `c`: new credentials in a new child namespace."""
    parent = userns_of(c)
    if parent.level + 1 > MAX_USERNS_DEPTH:
        raise SyscallError(Errno.EUSERS)
    if _chrooted(t):
        raise SyscallError(Errno.EPERM)
    if not has_mapping(c, c.euid) or not has_mapping(c, c.egid, False):
        raise SyscallError(Errno.EPERM)
    live = _count(b"user")
    ns = UserNamespace(parent, c.euid, c.egid)
    live.add(ns)
    return _enter_userns(c, ns)


def _new_net(t: Task, userns: UserNamespace | None) -> NetNamespace:
    """A fresh Sentry network (socket/__init__.py's Network): a netstack of its own
    with only its loopback, AF_UNIX and netlink, whatever the sandbox's mode."""
    from pyvisor.sentry.socket import Network
    net = Network("sandbox", t.kernel)
    net.userns = userns
    return NetNamespace(userns, net)


def prepare(t: Task, flags: int) -> tuple[Credentials, NsProxy | None, Any]:
    """The credentials, namespaces and mount-tree copy a task gets for CLONE_NEW*
    `flags` (unshare and clone; Linux: unshare_userns, create_new_namespaces).
    Nothing changes until the caller installs them.  The mount copy is a function of
    the task's FSContext (it remaps root and cwd) or None."""
    c = t.creds
    if flags & CLONE_NEWUSER:
        c = new_userns(t, c)
    rest = flags & (CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWNS)
    if not rest:
        return c, None, None
    owner = c.userns
    if not ns_capable(c, owner, CAP_SYS_ADMIN):
        raise SyscallError(Errno.EPERM)
    for bit, kind in ((CLONE_NEWUTS, b"uts"), (CLONE_NEWIPC, b"ipc"), (CLONE_NEWNET, b"net"),
                      (CLONE_NEWNS, b"mnt")):
        if flags & bit:
            _count(kind)                 # ENOSPC before anything is made
    old = nsproxy(t)
    p = old.copy()
    if flags & CLONE_NEWUTS:
        host, dom = uts_names(t)
        p.uts = UTSNamespace(owner, host, dom)
        _LIVE[b"uts"].add(p.uts)
    if flags & CLONE_NEWIPC:
        p.ipc = IPCNamespaceRef(owner)
        _LIVE[b"ipc"].add(p.ipc)
    if flags & CLONE_NEWNET:
        p.net = _new_net(t, owner)
        _LIVE[b"net"].add(p.net)
    remap = None
    if flags & CLONE_NEWNS:
        src = mount_ns_of(t)
        from pyvisor.sentry.syscalls.linux import sys_mount as SM
        SM.check_total(len(src.mounts))
        new, copies = src.clone(next(_inos), owner)
        SM.track(new.mounts)
        _LIVE[b"mnt"].add(new)
        less_privileged = owner is not src.userns
        _carry_locks(src, copies, less_privileged)
        from pyvisor.sentry.vfs import propagation
        for m in src.mounts:
            twin = copies.get(id(m))
            if twin is not None:
                propagation.clone_relation(m, twin, slave=less_privileged)

        def remap(fs: Any, new: Any = new, copies: dict[int, Any] = copies) -> None:
            from pyvisor.sentry.vfs.vfs import Location
            for name in ("root", "cwd"):
                loc = getattr(fs, name)
                m = copies.get(id(loc.mount))
                if m is not None:
                    setattr(fs, name, Location(m, loc.dentry))
    return c, p, remap


def _carry_locks(src: Any, copies: dict[int, Any], lock_all: bool) -> None:
    """Mounts the application made stay its own in the copy unless the copy belongs
    to a less privileged user namespace (Linux: lock_mnt_tree locks every mount but
    the root there)."""
    from pyvisor.sentry.syscalls.linux import sys_mount as SM
    for m in src.mounts:
        c = copies.get(id(m))
        if c is None:
            continue
        if m in SM._ro_locked or (lock_all and SM._ro_lock(m)):
            SM._ro_locked.add(c)
        if m in SM._app_made and not lock_all:
            SM._app_made.add(c)
        if lock_all:
            SM.lock_flags(c, m)
        elif m in SM._locked_flags:
            SM._locked_flags[c] = SM._locked_flags[m]


def install(t: Task, creds: Credentials, p: NsProxy | None, remap: Any) -> None:
    """Gives task `t` what `prepare` made (its fs context already its own)."""
    t.creds = creds
    if p is not None:
        t.nsproxy = p
    if remap is not None:
        remap(t.fs)


def setns(t: Task, obj: Any, nstype: int) -> None:
    """Joins the namespace `obj` (an nsfs file's).  Linux: kernel/nsproxy.c
    validate_ns and each type's install."""
    flag = flag_of(obj)
    if nstype and nstype != flag:
        raise SyscallError(Errno.EINVAL)
    if isinstance(obj, StaticNs):
        return                      # the one namespace of its kind: already in it
    c = t.creds
    if flag == CLONE_NEWUSER:
        if obj is userns_of(c):
            raise SyscallError(Errno.EINVAL)        # userns_install: already in it
        if sum(1 for x in t.tg.tasks if not x.exited) > 1 or _fs_shared(t):
            raise SyscallError(Errno.EINVAL)
        if not ns_capable(c, obj, CAP_SYS_ADMIN):
            raise SyscallError(Errno.EPERM)
        t.creds = _enter_userns(c, obj)
        return
    owner = getattr(obj, "userns", None)
    if not ns_capable(c, owner, CAP_SYS_ADMIN) or not ns_capable(c, c.userns, CAP_SYS_ADMIN):
        raise SyscallError(Errno.EPERM)
    if flag == CLONE_NEWNS:
        from pyvisor.abi.linux.capability import CAP_SYS_CHROOT
        if not ns_capable(c, c.userns, CAP_SYS_CHROOT):
            raise SyscallError(Errno.EPERM)
        if _fs_shared(t):
            raise SyscallError(Errno.EINVAL)
        from pyvisor.sentry.vfs.vfs import Location, _step_down
        m, d = _step_down(obj.root, obj.root.root)
        t.fs.root = Location(m, d)
        t.fs.cwd = Location(m, d)
        return
    p = nsproxy(t).copy()
    attr = obj.kind.decode()
    setattr(p, attr, obj if not isinstance(obj, _InitNs) else None)
    t.nsproxy = p


def _fs_shared(t: Task) -> bool:
    fs = t.fs
    return any(x.fs is fs and x is not t for x in t.kernel.tasks_by_tid.values())


def may_setgroups(c: Credentials) -> bool:
    """userns_may_setgroups: in a namespace made inside, only once its gid map is
    written and while setgroups is allowed."""
    ns = getattr(c, "userns", None)
    if ns is None:
        return True
    return bool(ns.gid_map) and ns.setgroups_allowed


class StaticNs:
    """A namespace of the sandbox no task can leave (pid, cgroup, time): setns to
    it is accepted and changes nothing."""

    def __init__(self, kind: bytes, ino: int) -> None:
        self.kind, self.ino = kind, ino
        self.userns = None
        self.flag = {b"pid": 0x20000000, b"cgroup": 0x02000000, b"time": 0x80}.get(kind, 0)


def _parse_extents(data: bytes) -> list[tuple[int, int, int]]:
    """map_write's parsing: lines "first lower count", up to the first NUL."""
    text = data.split(b"\0", 1)[0]
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out: list[tuple[int, int, int]] = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise SyscallError(Errno.EINVAL)
        first, lower, count = (int(p) for p in parts)
        if first > ID_MAX or lower > ID_MAX or count == 0 or count > ID_MAX:
            raise SyscallError(Errno.EINVAL)
        if first + count - 1 > ID_MAX or lower + count - 1 > ID_MAX:
            raise SyscallError(Errno.EINVAL)
        for f2, l2, c2 in out:                          # mappings_overlap
            if first < f2 + c2 and f2 < first + count or \
                    lower < l2 + c2 and l2 < lower + count:
                raise SyscallError(Errno.EINVAL)
        out.append((first, lower, count))
        if len(out) > MAX_EXTENTS:
            raise SyscallError(Errno.EINVAL)
    if not out:
        raise SyscallError(Errno.EINVAL)
    return out


def write_idmap(t: Task | None, ns: UserNamespace, data: bytes, uid: bool) -> None:
    """A write to /proc/PID/uid_map or gid_map.  Linux: map_write,
    new_idmap_permitted.  The writer is the task writing (Linux: the opener)."""
    if t is None or ns is INIT_USER:
        raise SyscallError(Errno.EPERM)
    c = t.creds
    mine = userns_of(c)
    if mine is not ns and mine is not ns.parent:
        raise SyscallError(Errno.EPERM)
    if len(data) >= 4096:
        raise SyscallError(Errno.EINVAL)
    cur = ns.uid_map if uid else ns.gid_map
    if cur:
        raise SyscallError(Errno.EPERM)            # one successful write only
    if not ns_capable(c, mine, CAP_SYS_ADMIN):
        raise SyscallError(Errno.EPERM)
    ext = _parse_extents(data)
    assert ns.parent is not None
    cap = 7 if uid else 6                           # CAP_SETUID, CAP_SETGID
    permitted = False
    if len(ext) == 1 and ext[0][2] == 1 and ns.owner == c.euid:
        lower = make_kid(ns.parent, ext[0][1], uid)
        if uid and lower == c.euid:
            permitted = True
        elif not uid and not ns.setgroups_allowed and lower == c.egid:
            permitted = True
    if not permitted and not ns_capable(c, ns.parent, cap):
        raise SyscallError(Errno.EPERM)
    # The lower ids, which are the parent's, must be mapped there.
    for first, lower, count in ext:
        if make_kid(ns.parent, lower, uid) is None or \
                make_kid(ns.parent, lower + count - 1, uid) is None:
            raise SyscallError(Errno.EPERM)
    if uid:
        ns.uid_map = ext
    else:
        ns.gid_map = ext


def write_setgroups(t: Task | None, ns: UserNamespace, data: bytes) -> None:
    """A write to /proc/PID/setgroups ("allow" or "deny").  Linux:
    proc_setgroups_write."""
    if t is None or not ns_capable(t.creds, ns, CAP_SYS_ADMIN):
        raise SyscallError(Errno.EPERM)
    word = data.split(b"\0", 1)[0].strip()
    if word == b"allow":
        allow = True
    elif word == b"deny":
        allow = False
    else:
        raise SyscallError(Errno.EINVAL)
    if allow:
        if not ns.setgroups_allowed:
            raise SyscallError(Errno.EPERM)
    else:
        if ns.gid_map or ns is INIT_USER:
            raise SyscallError(Errno.EPERM)
        ns.setgroups_allowed = False
