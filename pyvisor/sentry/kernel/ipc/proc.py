"""/proc/sysvipc/{msg,sem,shm}.  Linux: ipc/util.c sysvipc_proc_show, with
sysvipc_msg_proc_show (msg.c), sysvipc_sem_proc_show (sem.c) and
sysvipc_shm_proc_show (shm.c): a header line, then one line per object in
index order, in Linux's exact column widths.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from pyvisor.abi.linux.mman import PAGE_SIZE
from pyvisor.sentry.kernel.ipc import IPCObject, namespace

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Kernel

_MSG_HEAD = (b"       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid"
             b"  cgid      stime      rtime      ctime\n")
_SEM_HEAD = (b"       key      semid perms      nsems   uid   gid  cuid  cgid      otime"
             b"      ctime\n")
_SHM_HEAD = (b"       key      shmid perms                  size  cpid  lpid nattch   uid   gid"
             b"  cuid  cgid      atime      dtime      ctime                   rss"
             b"                  swap\n")


def _key(o: IPCObject) -> int:
    """The key as Linux prints it (%d of a key_t)."""
    return o.key - (1 << 32) if o.key >= 1 << 31 else o.key


def gen_msg(kernel: Kernel) -> bytes:
    out = [_MSG_HEAD]
    for _, q in sorted(namespace(kernel).msg.by_index.items()):
        out.append(b"%10d %10d  %4o  %10d %10d %5d %5d %5d %5d %5d %5d %10d %10d %10d\n" % (
            _key(q), q.id, q.mode, q.cbytes, len(q.messages), q.lspid, q.lrpid, q.uid, q.gid,
            q.cuid, q.cgid, q.stime, q.rtime, q.ctime))
    return b"".join(out)


def gen_sem(kernel: Kernel) -> bytes:
    out = [_SEM_HEAD]
    for _, s in sorted(namespace(kernel).sem.by_index.items()):
        out.append(b"%10d %10d  %4o %10d %5d %5d %5d %5d %10d %10d\n" % (
            _key(s), s.id, s.mode, s.nsems, s.uid, s.gid, s.cuid, s.cgid, s.otime, s.ctime))
    return b"".join(out)


def gen_shm(kernel: Kernel) -> bytes:
    out = [_SHM_HEAD]
    for _, s in sorted(namespace(kernel).shm.by_index.items()):
        out.append(b"%10d %10d  %4o %21d %5d %5d  %5d %5d %5d %5d %5d %10d %10d %10d %21d %21d\n"
                   % (_key(s), s.id, s.mode, s.size, s.cpid, s.lpid, s.nattch, s.uid, s.gid,
                      s.cuid, s.cgid, s.atime, s.dtime, s.ctime, s.pages * PAGE_SIZE, 0))
    return b"".join(out)


def spec(kernel: Kernel) -> dict[bytes, Callable[[], bytes]]:
    """The directory, for procfs."""
    return {b"msg": lambda: gen_msg(kernel), b"sem": lambda: gen_sem(kernel),
            b"shm": lambda: gen_shm(kernel)}
