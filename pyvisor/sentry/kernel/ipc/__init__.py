"""System V IPC.  Linux: ipc/util.c (the registry), ipc/msg.c (message queues).

The sandbox is one IPC namespace: its objects live in `Registry`s on the
kernel (`kernel.ipc`).  An object's id is seq * IPCMNI + index, as
ipc_buildid makes it, so a removed object's id is not reused at once.
Permissions follow ipcperms: the owner's, the group's or the other bits of
the object's mode; the sandbox's root (CAP_IPC_OWNER) passes.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

# From <linux/ipc.h>.
IPC_PRIVATE = 0
IPC_CREAT, IPC_EXCL, IPC_NOWAIT = 0o1000, 0o2000, 0o4000
IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO = 0, 1, 2, 3
IPC_64 = 0x100
IPCMNI = 32768
SEQ_MULTIPLIER = IPCMNI
IPC_PERM = struct.Struct("<iIIIIIHH4xQQ")       # struct ipc64_perm (48 bytes)


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
        """ipcperms: `want` is a mask of the 0o4 (read) and 0o2 (write) bits."""
        c = t.creds
        if c.euid == 0:
            return
        if c.euid in (self.uid, self.cuid):
            granted = self.mode >> 6
        elif c.egid in (self.gid, self.cgid) or self.gid in c.groups:
            granted = self.mode >> 3
        else:
            granted = self.mode
        if want & ~granted & 0o7:
            raise SyscallError(Errno.EACCES)

    def check_owner(self, t: Task) -> None:
        """IPC_SET/IPC_RMID: the owner, the creator or CAP_SYS_ADMIN (EPERM)."""
        c = t.creds
        if c.euid != 0 and c.euid not in (self.uid, self.cuid):
            raise SyscallError(Errno.EPERM)

    def set_perm(self, uid: int, gid: int, mode: int) -> None:
        self.uid, self.gid = uid, gid
        self.mode = (self.mode & ~0o777) | (mode & 0o777)
        self.ctime = int(time.time())


T = TypeVar("T", bound=IPCObject)


class Registry(Generic[T]):
    """One kind of object (Linux: struct ipc_ids)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.by_index: dict[int, T] = {}
        self.by_key: dict[int, T] = {}
        self.seq = 0

    def find_key(self, key: int) -> T | None:
        return self.by_key.get(key) if key != IPC_PRIVATE else None

    def add(self, obj: T) -> T:
        if len(self.by_index) >= self.limit:
            raise SyscallError(Errno.ENOSPC)
        index = next(i for i in range(IPCMNI) if i not in self.by_index)
        obj.index, obj.seq = index, self.seq
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
        self.by_index.pop(obj.index, None)
        if obj.key != IPC_PRIVATE and self.by_key.get(obj.key) is obj:
            del self.by_key[obj.key]

    def max_index(self) -> int:
        return max(self.by_index, default=0)


def get_or_create(t: Task, reg: Registry[T], key: int, flags: int, make: type[T],
                  **extra: object) -> T:
    """The common part of msgget/semget/shmget (ipcget)."""
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
    obj.check(t, (flags >> 6) & 0o7 | (flags >> 3) & 0o7 | flags & 0o7)
    return obj
