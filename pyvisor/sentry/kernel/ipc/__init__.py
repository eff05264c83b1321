"""System V IPC: the id and permission registry the three families share.

Linux: ipc/util.c (ipcget, ipcperms, ipc_buildid, ipcctl_obtain_check),
ipc/namespace.c.  The families: msgqueue.py (ipc/msg.c), semaphore.py
(ipc/sem.c), shm.py (ipc/shm.c).

The sandbox's IPC namespace is `kernel.ipc` (an `IPCNamespace`); a task that
unshares CLONE_NEWIPC gets a fresh one (kernel/namespaces.py).  Each has one
`Registry` per family.  An object's id is seq * IPCMNI + index, as
ipc_buildid makes it, so a removed object's id is not reused at once.
Permissions follow ipcperms: the owner's, the group's or the other bits of
the object's mode; CAP_IPC_OWNER passes.  IPC_SET and IPC_RMID need the
owner, the creator or CAP_SYS_ADMIN (ipcctl_obtain_check).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.ipc.msgqueue import MsgQueue
    from pyvisor.sentry.kernel.ipc.semaphore import SemSet
    from pyvisor.sentry.kernel.ipc.shm import Segment
    from pyvisor.sentry.kernel.task import Task

# From <linux/ipc.h>.
IPC_PRIVATE = 0
IPC_CREAT, IPC_EXCL, IPC_NOWAIT = 0o1000, 0o2000, 0o4000
IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO = 0, 1, 2, 3
IPC_64 = 0x100
IPCMNI = 32768
SEQ_MULTIPLIER = IPCMNI
IPC_PERM = struct.Struct("<iIIIIIHH4xQQ")       # struct ipc64_perm (48 bytes)
CAP_IPC_OWNER, CAP_SYS_ADMIN = 15, 21


@dataclass(eq=False)
class IPCObject:
    key: int
    uid: int
    gid: int
    cuid: int
    cgid: int
    mode: int
    seq: int = 0
    index: int = 0
    ctime: int = field(default_factory=lambda: int(time.time()))
    removed: bool = False

    @property
    def id(self) -> int:
        return self.seq * SEQ_MULTIPLIER + self.index

    def pack_perm(self) -> bytes:
        return IPC_PERM.pack(self.key, self.uid, self.gid, self.cuid, self.cgid, self.mode,
                             self.seq, 0, 0, 0)

    def check(self, t: Task, want: int) -> None:
        """ipcperms: `want` is a mask of the 0o4 (read), 0o2 (write), 0o1 (execute) bits."""
        c = t.creds
        if c.euid in (self.uid, self.cuid):
            granted = self.mode >> 6
        elif c.fsgid in (self.gid, self.cgid) or self.gid in c.groups or self.cgid in c.groups:
            granted = self.mode >> 3
        else:
            granted = self.mode
        if want & ~granted & 0o7 and not c.capable(CAP_IPC_OWNER):
            raise SyscallError(Errno.EACCES)

    def check_owner(self, t: Task) -> None:
        """IPC_SET/IPC_RMID: the owner, the creator or CAP_SYS_ADMIN (EPERM)."""
        c = t.creds
        if c.euid not in (self.uid, self.cuid) and not c.capable(CAP_SYS_ADMIN):
            raise SyscallError(Errno.EPERM)

    def set_perm(self, uid: int, gid: int, mode: int) -> None:
        self.uid, self.gid = uid, gid
        self.mode = (self.mode & ~0o777) | (mode & 0o777)
        self.ctime = int(time.time())


T = TypeVar("T", bound=IPCObject)


class Registry(Generic[T]):
    """One kind of object (Linux: struct ipc_ids)."""

    def __init__(self, limit: int, owner: Any = None) -> None:
        self.limit = limit
        self.owner = owner           # the IPCNamespace (an object remembers its own)
        self.by_index: dict[int, T] = {}
        self.by_key: dict[int, T] = {}
        self.seq = 0
        self.hint = 0                # no free index below it (ids: lowest free, as idr)

    def find_key(self, key: int) -> T | None:
        return self.by_key.get(key) if key != IPC_PRIVATE else None

    def add(self, obj: T) -> T:
        if len(self.by_index) >= self.limit:
            raise SyscallError(Errno.ENOSPC)
        index = self.hint
        while index in self.by_index:
            index += 1
        if index >= IPCMNI:
            raise SyscallError(Errno.ENOSPC)
        self.hint = index + 1
        obj.index, obj.seq = index, self.seq
        obj.ipc_ns = self.owner      # type: ignore[attr-defined]
        self.seq = (self.seq + 1) % (0x7FFFFFFF // SEQ_MULTIPLIER)
        self.by_index[index] = obj
        if obj.key != IPC_PRIVATE:
            self.by_key[obj.key] = obj
        return obj

    def get(self, ident: int) -> T:
        """The object with id `ident`; EINVAL if none (a stale id included)."""
        if ident < 0:
            raise SyscallError(Errno.EINVAL)
        obj = self.by_index.get(ident % SEQ_MULTIPLIER)
        if obj is None or obj.seq != ident // SEQ_MULTIPLIER:
            raise SyscallError(Errno.EINVAL)
        return obj

    def remove(self, obj: T) -> None:
        obj.removed = True
        if self.by_index.get(obj.index) is obj:
            del self.by_index[obj.index]
            self.hint = min(self.hint, obj.index)
        self.forget_key(obj)

    def forget_key(self, obj: T) -> None:
        """The object can no longer be found by its key (ipc_set_key_private)."""
        if obj.key != IPC_PRIVATE and self.by_key.get(obj.key) is obj:
            del self.by_key[obj.key]

    def max_index(self) -> int:
        return max(self.by_index, default=0)


class IPCNamespace:
    """One IPC namespace.  Linux: struct ipc_namespace.  Owned by the Kernel."""

    def __init__(self) -> None:
        from pyvisor.sentry.kernel.ipc.msgqueue import MSGMNI
        from pyvisor.sentry.kernel.ipc.semaphore import SEMMNI
        self.msg: Registry[MsgQueue] = Registry(MSGMNI, self)
        self.sem: Registry[SemSet] = Registry(SEMMNI, self)
        self.shm: Registry[Segment] = Registry(IPCMNI, self)   # shmmni: checked by shmget
        self.shm_tot = 0                                 # pages of every segment
        self.shm_mem = 0                                 # their memory-file extents, bytes


def namespace(kernel: Any) -> IPCNamespace:
    """The IPC namespace of the task being served: the sandbox's unless it made or
    joined another (kernel/namespaces.py)."""
    cur = getattr(kernel, "current", None)
    p = getattr(cur, "nsproxy", None) if cur is not None else None
    if p is None or p.ipc is None:
        root: IPCNamespace = kernel.ipc
        return root
    ns: IPCNamespace = p.ipc.ipc
    return ns


def get_or_create(t: Task, reg: Registry[T], key: int, flags: int, make: Callable[..., T],
                  more_checks: Callable[[T], None] | None = None, **extra: object) -> T:
    """The common part of msgget/semget/shmget (ipcget): `make` builds a new object
    (and may refuse it), `more_checks` vets an existing one before its permissions."""
    c = t.creds
    obj = reg.find_key(key)
    if obj is None:
        if key != IPC_PRIVATE and not flags & IPC_CREAT:
            raise SyscallError(Errno.ENOENT)
        new = make(key=key, uid=c.euid, gid=c.egid, cuid=c.euid, cgid=c.egid,
                   mode=flags & 0o777, **extra)
        return reg.add(new)
    if flags & IPC_CREAT and flags & IPC_EXCL:
        raise SyscallError(Errno.EEXIST)
    if more_checks is not None:
        more_checks(obj)
    obj.check(t, (flags >> 6) & 0o7 | (flags >> 3) & 0o7 | flags & 0o7)
    return obj


def obtain_by_index(t: Task, reg: Registry[T], index: int, check_read: bool) -> T:
    """The object at `index` for MSG_STAT/SEM_STAT/SHM_STAT (read permission) and
    their *_STAT_ANY forms (none)."""
    obj = reg.by_index.get(index) if index >= 0 else None
    if obj is None:
        raise SyscallError(Errno.EINVAL)
    if check_read:
        obj.check(t, 0o4)
    return obj


def set_from_perm(obj: IPCObject, raw: bytes) -> None:
    """IPC_SET's common part: uid, gid and the mode's permission bits from the
    ipc64_perm at the start of the caller's *id64_ds."""
    _key, uid, gid, _cuid, _cgid, mode = struct.unpack_from("<iIIIII", raw, 0)
    obj.set_perm(uid, gid, mode)
