"""System V message queues.  Linux: ipc/msg.c.

A queue holds (type, bytes) messages up to `qbytes` bytes (MSGMNB by
default) and as many messages; a message is at most MSGMAX bytes.  Senders
wait for room and receivers for a matching message unless IPC_NOWAIT;
removal wakes both with EIDRM.  msgrcv picks the first message (type 0), the
first of a type (or, with MSG_EXCEPT, of any other type), or the lowest type
not above -type; MSG_COPY reads the n-th message without removing it.
Queued bytes are charged to the Sentry memory account (ENOMEM when full).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import collections
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.ipc import (IPC_INFO, IPC_NOWAIT, IPC_RMID, IPC_SET, IPC_STAT,
                                       IPCObject, Registry, get_or_create, namespace,
                                       obtain_by_index, set_from_perm)
from pyvisor.sentry.kernel.memacct import Kind
from pyvisor.sentry.waitqueue import WaitQueue

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

# From <linux/msg.h>.
MSGMAX, MSGMNB, MSGMNI = 8192, 16384, 32000
MSG_STAT, MSG_INFO, MSG_STAT_ANY = 11, 12, 13
MSG_NOERROR, MSG_EXCEPT, MSG_COPY = 0o10000, 0o20000, 0o40000
MSQID_DS = struct.Struct("<48sqqqQQQii16x")      # struct msqid64_ds after its ipc64_perm
MSGINFO = struct.Struct("<iiiiiiiH2x")
CAP_SYS_RESOURCE = 24


@dataclass(eq=False)
class MsgQueue(IPCObject):
    messages: collections.deque[tuple[int, bytes]] = field(default_factory=collections.deque)
    cbytes: int = 0
    qbytes: int = MSGMNB
    stime: int = 0
    rtime: int = 0
    lspid: int = 0
    lrpid: int = 0
    wq: WaitQueue = field(default_factory=WaitQueue)

    def pack(self) -> bytes:
        return MSQID_DS.pack(self.pack_perm(), self.stime, self.rtime, self.ctime, self.cbytes,
                             len(self.messages), self.qbytes, self.lspid, self.lrpid)


def registry(t: Task) -> Registry[MsgQueue]:
    return namespace(t.kernel).msg


def msgget(t: Task, key: int, flags: int) -> int:
    return get_or_create(t, registry(t), key, flags, MsgQueue).id


def _check_live(q: MsgQueue) -> None:
    if q.removed:
        raise SyscallError(Errno.EIDRM)


async def msgsnd(t: Task, ident: int, mtype: int, data: bytes, flags: int) -> None:
    if mtype < 1:
        raise SyscallError(Errno.EINVAL)
    q = registry(t).get(ident)
    q.check(t, 0o2)
    acct = t.kernel.memory
    while True:
        _check_live(q)
        if q.cbytes + len(data) <= q.qbytes and len(q.messages) + 1 <= q.qbytes:
            break
        if flags & IPC_NOWAIT:
            raise SyscallError(Errno.EAGAIN)
        await t.kernel.block_on(t, q.wq)
    if not acct.try_charge(Kind.IPC, len(data) + 48):
        raise SyscallError(Errno.ENOMEM)
    q.messages.append((mtype, data))
    q.cbytes += len(data)
    q.lspid, q.stime = t.tg.tgid, int(time.time())
    q.wq.notify()


def _pick(q: MsgQueue, msgtyp: int, flags: int) -> int | None:
    """Index of the message msgrcv would take (find_msg), or None."""
    best = None
    for i, (mtype, _) in enumerate(q.messages):
        if msgtyp == 0:
            return i
        if msgtyp > 0:
            if (mtype != msgtyp) if flags & MSG_EXCEPT else (mtype == msgtyp):
                return i
        elif mtype <= -msgtyp and (best is None or mtype < q.messages[best][0]):
            best = i
    return best


async def msgrcv(t: Task, ident: int, size: int, msgtyp: int, flags: int) -> tuple[int, bytes]:
    """Returns (type, text) of the message taken (or copied, MSG_COPY)."""
    if size < 0:
        raise SyscallError(Errno.EINVAL)
    if flags & MSG_COPY and (not flags & IPC_NOWAIT or flags & MSG_EXCEPT):
        raise SyscallError(Errno.EINVAL)
    q = registry(t).get(ident)
    q.check(t, 0o4)
    while True:
        _check_live(q)
        if flags & MSG_COPY:
            i = msgtyp if 0 <= msgtyp < len(q.messages) else None
        else:
            i = _pick(q, msgtyp, flags)
        if i is not None:
            break
        if flags & IPC_NOWAIT:
            raise SyscallError(Errno.ENOMSG)
        await t.kernel.block_on(t, q.wq)
    mtype, data = q.messages[i]
    if len(data) > size:
        if flags & MSG_COPY and flags & MSG_NOERROR:
            raise SyscallError(Errno.EINVAL)       # a copy is never truncated
        if not flags & MSG_NOERROR:
            raise SyscallError(Errno.E2BIG)
    if not flags & MSG_COPY:
        del q.messages[i]
        q.cbytes -= len(data)
        t.kernel.memory.uncharge(Kind.IPC, len(data) + 48)
        q.lrpid, q.rtime = t.tg.tgid, int(time.time())
        q.wq.notify()
    return mtype, data[:size]


def _remove(t: Task, q: MsgQueue) -> None:
    registry(t).remove(q)
    t.kernel.memory.uncharge(Kind.IPC, q.cbytes + 48 * len(q.messages))
    q.messages.clear()
    q.cbytes = 0
    q.wq.notify()


def msgctl(t: Task, ident: int, cmd: int, buf: int) -> int:
    reg = registry(t)
    if cmd in (IPC_INFO, MSG_INFO):
        nq = len(reg.by_index)
        used = sum(len(q.messages) for q in reg.by_index.values())
        nbytes = sum(q.cbytes for q in reg.by_index.values())
        # msgpool, msgmap, msgmax, msgmnb, msgmni, msgssz, msgtql, msgseg (msg_info).
        if cmd == MSG_INFO:
            info = MSGINFO.pack(nq, used, MSGMAX, MSGMNB, MSGMNI, 16, nbytes, 0xFFFF)
        else:
            info = MSGINFO.pack(MSGMNI * MSGMNB // 1024, MSGMNB, MSGMAX, MSGMNB, MSGMNI, 16,
                                MSGMNB, 0xFFFF)
        t.copy_out(buf, info)
        return reg.max_index()
    if cmd in (MSG_STAT, MSG_STAT_ANY):
        q = obtain_by_index(t, reg, ident, check_read=cmd == MSG_STAT)
        t.copy_out(buf, q.pack())
        return q.id
    q = reg.get(ident)
    if cmd == IPC_STAT:
        q.check(t, 0o4)
        t.copy_out(buf, q.pack())
        return 0
    if cmd == IPC_SET:
        raw = t.copy_in(buf, MSQID_DS.size)
        qbytes = struct.unpack_from("<Q", raw, 48 + 40)[0]
        q.check_owner(t)
        if qbytes > MSGMNB and not t.creds.capable(CAP_SYS_RESOURCE):
            raise SyscallError(Errno.EPERM)
        q.qbytes = qbytes
        set_from_perm(q, raw)
        q.wq.notify()
        return 0
    if cmd == IPC_RMID:
        q.check_owner(t)
        _remove(t, q)
        return 0
    raise SyscallError(Errno.EINVAL)
