"""System V semaphores.  Linux: ipc/sem.c.

A set holds `nsems` counters in [0, SEMVMX].  semop applies all its
operations or none: a positive op adds, a negative one subtracts if the
result stays >= 0, a zero op needs the value to be 0; when any cannot
proceed the caller waits (EAGAIN with IPC_NOWAIT or at the semtimedop
deadline; EIDRM if the set is removed; counted in GETNCNT/GETZCNT while it
waits) and tries again whenever the set changes.  SEM_UNDO records the
opposite of each op for the process (shared by its threads, not inherited by
fork), applied when the process exits, clamped to [0, SEMVMX].
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import Interrupted, SyscallError, TimedOut
from pyvisor.sentry.kernel.ipc import (IPC_INFO, IPC_NOWAIT, IPC_RMID, IPC_SET, IPC_STAT,
                                       IPCObject, Registry, get_or_create, namespace,
                                       obtain_by_index, set_from_perm)
from pyvisor.sentry.waitqueue import WaitQueue

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task, ThreadGroup

# From <linux/sem.h>.
SEMMNI, SEMMSL, SEMMNS, SEMOPM, SEMVMX, SEMAEM = 32000, 32000, 1024000000, 500, 32767, 32767
SEMMAP, SEMMNU, SEMUME, SEMUSZ = 1024000000, 1024000000, 500, 20
GETPID, GETVAL, GETALL, GETNCNT, GETZCNT, SETVAL, SETALL = 11, 12, 13, 14, 15, 16, 17
SEM_STAT, SEM_INFO, SEM_STAT_ANY = 18, 19, 20
SEM_UNDO = 0x1000
SEMID_DS = struct.Struct("<48sqQqQQQQ")        # struct semid64_ds
SEMINFO = struct.Struct("<10i")


@dataclass(eq=False)
class SemSet(IPCObject):
    nsems: int = 0
    values: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    ncnt: list[int] = field(default_factory=list)
    zcnt: list[int] = field(default_factory=list)
    otime: int = 0
    wq: WaitQueue = field(default_factory=WaitQueue)

    def __post_init__(self) -> None:
        self.values = [0] * self.nsems
        self.pids = [0] * self.nsems
        self.ncnt = [0] * self.nsems
        self.zcnt = [0] * self.nsems

    def pack(self) -> bytes:
        return SEMID_DS.pack(self.pack_perm(), self.otime, 0, self.ctime, 0, self.nsems, 0, 0)


def registry(t: Task) -> Registry[SemSet]:
    return namespace(t.kernel).sem


def semget(t: Task, key: int, nsems: int, flags: int) -> int:
    if nsems < 0 or nsems > SEMMSL:
        raise SyscallError(Errno.EINVAL)
    reg = registry(t)
    existing = reg.find_key(key)
    if existing is None and nsems == 0:
        raise SyscallError(Errno.EINVAL)
    if existing is not None and nsems > existing.nsems and not (flags & 0o3000 == 0o3000):
        raise SyscallError(Errno.EINVAL)
    return get_or_create(t, reg, key, flags, SemSet, nsems=nsems).id


def _try(s: SemSet, ops: list[tuple[int, int, int]]) -> int | None:
    """Applies every op or none; the index of the op that must wait, else None."""
    vals = list(s.values)
    for i, (num, op, _flg) in enumerate(ops):
        v = vals[num]
        if op > 0:
            if v + op > SEMVMX:
                raise SyscallError(Errno.ERANGE)
            vals[num] = v + op
        elif op < 0:
            if v + op < 0:
                return i
            vals[num] = v + op
        elif v != 0:
            return i
    s.values[:] = vals
    return None


async def semop(t: Task, ident: int, ops: list[tuple[int, int, int]],
                deadline: int | None) -> None:
    s = registry(t).get(ident)
    if any(num >= s.nsems for num, _, _ in ops):
        raise SyscallError(Errno.EFBIG)
    s.check(t, 0o2 if any(op for _, op, _ in ops) else 0o4)
    while True:
        if s.removed:
            raise SyscallError(Errno.EIDRM)
        blocked = _try(s, ops)
        if blocked is None:
            break
        num, op, flg = ops[blocked]
        if flg & IPC_NOWAIT:
            raise SyscallError(Errno.EAGAIN)
        counts = s.zcnt if op == 0 else s.ncnt
        counts[num] += 1
        try:
            await t.kernel.block_on(t, s.wq, deadline=deadline)
        except TimedOut:
            raise SyscallError(Errno.EAGAIN) from None
        except Interrupted:
            raise SyscallError(Errno.EINTR) from None     # never restarted (do_semtimedop)
        finally:
            counts[num] -= 1
    pid = t.tg.tgid
    for num, op, flg in ops:
        s.pids[num] = pid
        if flg & SEM_UNDO and op:
            key = (s, num)
            undo = t.tg.sem_undo
            undo[key] = undo.get(key, 0) - op
    s.otime = int(time.time())
    s.wq.notify()


def exit_undo(tg: ThreadGroup) -> None:
    """The process is gone: its SEM_UNDO adjustments are applied (exit_sem)."""
    undo, tg.sem_undo = tg.sem_undo, {}
    for (s, num), adj in undo.items():
        if s.removed or not adj:
            continue
        s.values[num] = max(0, min(SEMVMX, s.values[num] + adj))
        s.pids[num] = tg.tgid
        s.wq.notify()


def _clear_undo(t: Task, s: SemSet, num: int | None) -> None:
    """SETVAL/SETALL reset the adjustments every process holds for the semaphores."""
    for tg in t.kernel.groups.values():
        for key in [k for k in tg.sem_undo if k[0] is s and (num is None or k[1] == num)]:
            del tg.sem_undo[key]


def semctl(t: Task, ident: int, num: int, cmd: int, arg: int) -> int:
    reg = registry(t)
    if cmd in (IPC_INFO, SEM_INFO):
        usz = len(reg.by_index) if cmd == SEM_INFO else SEMUSZ
        aem = sum(s.nsems for s in reg.by_index.values()) if cmd == SEM_INFO else SEMAEM
        t.copy_out(arg, SEMINFO.pack(SEMMAP, SEMMNI, SEMMNS, SEMMNU, SEMMSL, SEMOPM, SEMUME,
                                     usz, SEMVMX, aem))
        return reg.max_index()
    if cmd in (SEM_STAT, SEM_STAT_ANY):
        s = obtain_by_index(t, reg, ident, check_read=cmd == SEM_STAT)
        t.copy_out(arg, s.pack())
        return s.id
    s = reg.get(ident)
    if cmd == IPC_RMID:
        s.check_owner(t)
        reg.remove(s)
        s.wq.notify()
        return 0
    if cmd == IPC_SET:
        raw = t.copy_in(arg, 24)
        s.check_owner(t)
        set_from_perm(s, raw)
        return 0
    if cmd == IPC_STAT:
        s.check(t, 0o4)
        t.copy_out(arg, s.pack())
        return 0
    if cmd == GETALL:
        s.check(t, 0o4)
        t.copy_out(arg, struct.pack(f"<{s.nsems}H", *s.values))
        return 0
    if cmd == SETALL:
        s.check(t, 0o2)
        vals = struct.unpack(f"<{s.nsems}H", t.copy_in(arg, 2 * s.nsems))
        if any(v > SEMVMX for v in vals):
            raise SyscallError(Errno.ERANGE)
        s.values[:] = vals
        pid = t.tg.tgid
        s.pids[:] = [pid] * s.nsems
        _clear_undo(t, s, None)
        s.ctime = int(time.time())
        s.wq.notify()
        return 0
    if cmd not in (GETPID, GETVAL, GETNCNT, GETZCNT, SETVAL):
        raise SyscallError(Errno.EINVAL)
    if not 0 <= num < s.nsems:
        raise SyscallError(Errno.EINVAL)
    if cmd == SETVAL:
        s.check(t, 0o2)
        val = struct.unpack("<i", struct.pack("<I", arg & 0xFFFFFFFF))[0]
        if not 0 <= val <= SEMVMX:
            raise SyscallError(Errno.ERANGE)
        s.values[num] = val
        s.pids[num] = t.tg.tgid
        _clear_undo(t, s, num)
        s.ctime = int(time.time())
        s.wq.notify()
        return 0
    s.check(t, 0o4)
    return {GETPID: s.pids, GETVAL: s.values, GETNCNT: s.ncnt, GETZCNT: s.zcnt}[cmd][num]
