"""Signal-driven I/O: file owners and SIGIO.  Linux: fs/fcntl.c (f_setown, f_getown,
f_setown_ex, send_sigio, sigio_perm, kill_fasync).

A file description has an owner (a thread, a process or a process group, with
the uid/euid of whoever set it) and a signal (F_SETSIG; 0 means plain SIGIO).
While O_ASYNC is set (F_SETFL or FIOASYNC), a watch sits on the file's wait
queue, the same one poll and epoll sleep on: each readiness notification of
the file (data arrived, room appeared, hang-up) that the file can report
sends the owner one signal, as kill_fasync does.  With F_SETSIG's signal
the siginfo carries si_fd (the fd O_ASYNC was set through), si_code POLL_IN,
POLL_OUT, ... and si_band; plain SIGIO is sent as the kernel's (SI_KERNEL).
A target gets it only if the owner's uid or euid is root or matches its
uid or suid (sigio_perm).

Which files: those whose Linux file_operations have .fasync (`FileImpl.fasync`):
pipes and FIFOs, sockets (Unix, TCP, UDP) and ttys.  Like Linux, O_ASYNC on
any other file (eventfd, regular files, ...) is accepted and sends nothing;
FIOASYNC on them is ENOTTY.
Concurrency: Sentry loop only; a watch sends from inside the notifying call,
never re-entering task code.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.signal import NSIG, SI_KERNEL, Signal
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.kernel.task import sees
from pyvisor.sentry.waitqueue import (EVENT_ALL, EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT,
                                      EVENT_PRI, Waiter, WaitQueue)

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Kernel
    from pyvisor.sentry.kernel.task import Task, ThreadGroup
    from pyvisor.sentry.vfs.file import FileDescription

# From <asm-generic/fcntl.h>.
F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP = 0, 1, 2
# si_code of SIGPOLL.  From <asm-generic/siginfo.h>.
POLL_IN, POLL_OUT, POLL_MSG, POLL_ERR, POLL_PRI, POLL_HUP = 1, 2, 3, 4, 5, 6
SI_SIGIO = -5
_POLLRDNORM, _POLLRDBAND, _POLLWRNORM, _POLLWRBAND = 0x40, 0x80, 0x100, 0x200
# band_table: si_band for each reason.
_BAND = {POLL_IN: EVENT_IN | _POLLRDNORM, POLL_OUT: EVENT_OUT | _POLLWRNORM | _POLLWRBAND,
         POLL_ERR: EVENT_ERR, POLL_PRI: EVENT_PRI | _POLLRDBAND, POLL_HUP: EVENT_HUP | EVENT_ERR}
# Signals with si_codes of their own, for which POLL_* would be ambiguous (sig_specific_sicodes).
_SPECIFIC = {Signal.SIGILL, Signal.SIGFPE, Signal.SIGSEGV, Signal.SIGBUS, Signal.SIGTRAP,
             Signal.SIGCHLD, Signal.SIGSYS}
_WATCHED = EVENT_IN | EVENT_OUT | EVENT_ERR | EVENT_HUP | EVENT_PRI
_M32 = 0xFFFFFFFF


@dataclass(eq=False)
class FileOwner:
    """A file's owner and async state.  Linux: struct fown_struct (+ its fasync entry)."""

    kind: int = F_OWNER_TID           # Linux's default pid_type (PIDTYPE_PID) with no pid
    pid: int = 0
    uid: int = 0
    euid: int = 0
    signum: int = 0                   # F_SETSIG; 0: SIGIO without siginfo
    watch: _Watch | None = field(default=None, repr=False)


class _Watch:
    """O_ASYNC set: re-arms on the file's queue after every notification."""

    __slots__ = ("kernel", "file", "fd", "queue", "waiter", "alive")

    def __init__(self, kernel: Kernel, f: FileDescription, fd: int) -> None:
        self.kernel = kernel
        self.file = f
        self.fd = fd
        self.alive = True
        self.queue: WaitQueue = f.impl.waitq(f)
        self.waiter = Waiter(EVENT_ALL, self._fired)
        self.queue.add(self.waiter)

    def _fired(self, events: int) -> None:
        if not self.alive:
            return
        self.waiter = Waiter(EVENT_ALL, self._fired)
        self.queue.add(self.waiter)
        f = self.file
        if events & _WATCHED == _WATCHED:
            # An unspecific wake-up: report what the file is ready for now.
            band = f.impl.readiness(f, _WATCHED)
        else:
            can = EVENT_ERR | EVENT_HUP | (EVENT_IN | EVENT_PRI if f.readable else 0) | \
                (EVENT_OUT if f.writable else 0)
            band = events & can
        reason = (POLL_IN if band & EVENT_IN else POLL_OUT if band & EVENT_OUT else
                  POLL_HUP if band & EVENT_HUP else POLL_ERR if band & EVENT_ERR else
                  POLL_PRI if band & EVENT_PRI else 0)
        if reason:
            send_sigio(self.kernel, f, self.fd, reason)

    def cancel(self) -> None:
        self.alive = False
        self.waiter.cancel()


def owner(f: FileDescription) -> FileOwner:
    if f.fown is None:
        f.fown = FileOwner()
    return f.fown


def _targets(kernel: Kernel, own: FileOwner) -> list[tuple[ThreadGroup, Task | None]]:
    """The live processes (and thread, for F_OWNER_TID) the owner names."""
    if own.pid <= 0:
        return []
    if own.kind == F_OWNER_TID:
        t = kernel.tasks_by_tid.get(own.pid)
        return [] if t is None or t.exited else [(t.tg, t)]
    if own.kind == F_OWNER_PID:
        tg = kernel.groups.get(own.pid)
        return [] if tg is None or tg.zombie else [(tg, None)]
    return [(tg, None) for tg in list(kernel.groups.values())
            if tg.pgid == own.pid and not tg.zombie]


def _exists(t: Task, kind: int, pid: int) -> bool:
    """find_vpid: does any task of the caller's view use `pid` (as tid, tgid or pgid)?
    A zombie's pid is in use until it is reaped."""
    k = t.kernel
    if pid in k.tasks_by_tid and sees(t.tg, k.tasks_by_tid[pid].tg):
        return True
    tg = k.groups.get(pid)
    if tg is not None and not tg.reaped and sees(t.tg, tg):
        return True
    return any(tg.pgid == pid and not tg.reaped and sees(t.tg, tg)
               for tg in k.groups.values())


def _named(kernel: Kernel, own: FileOwner) -> bool:
    """Whether the owner's pid still names something (F_GETOWN: pid_vnr of f_owner.pid,
    0 once the process is reaped; a zombie still counts)."""
    if own.pid <= 0:
        return False
    if own.kind == F_OWNER_TID:
        return own.pid in kernel.tasks_by_tid or _group_in_use(kernel.groups.get(own.pid))
    if own.kind == F_OWNER_PID:
        return _group_in_use(kernel.groups.get(own.pid))
    return any(tg.pgid == own.pid and not tg.reaped for tg in kernel.groups.values())


def _group_in_use(tg: ThreadGroup | None) -> bool:
    return tg is not None and not tg.reaped


def set_owner(t: Task, f: FileDescription, kind: int, pid: int) -> None:
    """f_modown after the checks: records who set it, for sigio_perm."""
    own = owner(f)
    own.kind, own.pid = kind, pid
    own.uid, own.euid = t.creds.uid, t.creds.euid
    if hasattr(f.impl, "send_sigurg"):
        # A socket: urgent data arriving signals the owner (send_sigurg below).  The
        # reference cycle (file -> socket -> hook -> file) is cut by release().
        f.impl.send_sigurg = functools.partial(send_sigurg, t.kernel, f)


def f_setown(t: Task, f: FileDescription, who: int) -> None:
    """F_SETOWN, FIOSETOWN, SIOCSPGRP: a pid (the process), -pgid (the group), 0 (none)."""
    kind = F_OWNER_PID
    if who < 0:
        if who == -(1 << 31):
            raise SyscallError(Errno.EINVAL)
        kind, who = F_OWNER_PGRP, -who
    if who and not _exists(t, kind, who):
        raise SyscallError(Errno.ESRCH)
    set_owner(t, f, kind, who)


def f_getown(t: Task, f: FileDescription) -> int:
    """F_GETOWN: the owner's pid, -pgid for a group, 0 if none or it is gone."""
    own = f.fown
    if own is None or not _named(t.kernel, own):
        return 0
    return -own.pid if own.kind == F_OWNER_PGRP else own.pid


def f_setown_ex(t: Task, f: FileDescription, kind: int, pid: int) -> None:
    if kind not in (F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP):
        raise SyscallError(Errno.EINVAL)
    if pid and (pid < 0 or not _exists(t, kind, pid)):
        raise SyscallError(Errno.ESRCH)
    set_owner(t, f, kind, pid)


def f_getown_ex(t: Task, f: FileDescription) -> tuple[int, int]:
    own = f.fown
    if own is None:
        return F_OWNER_TID, 0
    return own.kind, own.pid if _named(t.kernel, own) else 0


def f_setsig(f: FileDescription, sig: int) -> None:
    if sig < 0 or sig > NSIG:
        raise SyscallError(Errno.EINVAL)
    owner(f).signum = sig


def f_getsig(f: FileDescription) -> int:
    return f.fown.signum if f.fown is not None else 0


def set_async(t: Task, f: FileDescription, fd: int, on: bool) -> None:
    """The file's fasync hook for O_ASYNC turning on or off (F_SETFL, FIOASYNC)."""
    if not f.impl.fasync:
        return
    own = owner(f)
    if own.watch is not None:
        own.watch.cancel()
        own.watch = None
    if on:
        own.watch = _Watch(t.kernel, f, fd)


def release(f: FileDescription) -> None:
    """The description's last reference is gone: no more signals (__fput's fasync off)."""
    if f.fown is not None and f.fown.watch is not None:
        f.fown.watch.cancel()
        f.fown.watch = None
    if getattr(f.impl, "send_sigurg", None) is not None:
        f.impl.send_sigurg = None


def _perm(own: FileOwner, tg: ThreadGroup, t: Task | None) -> bool:
    """sigio_perm: the owner's ids against the target's."""
    target = t if t is not None else (tg.tasks[0] if tg.tasks else None)
    if target is None:
        return False
    c = target.creds
    return own.euid == 0 or own.euid in (c.suid, c.uid) or own.uid in (c.suid, c.uid)


def _info(sig: int, reason: int, fd: int) -> ksignal.SigInfo:
    if sig == 0:
        return ksignal.SigInfo(Signal.SIGIO, SI_KERNEL)
    code = SI_SIGIO if sig != Signal.SIGIO and sig in _SPECIFIC else reason
    raw = struct.pack("<iii4xqi", sig, 0, code, _BAND[reason], fd).ljust(128, b"\0")
    return ksignal.SigInfo(sig, code, raw=raw)


def send_sigurg(kernel: Kernel, f: FileDescription) -> None:
    """send_sigurg (fs/fcntl.c): urgent data arrived on socket `f` (TCP's urgent
    pointer moved): SIGURG, as the kernel's (SI_KERNEL), to every target the owner may
    signal, whether or not O_ASYNC is set."""
    own = f.fown
    if own is None or not own.pid:
        return
    info = ksignal.SigInfo(Signal.SIGURG, SI_KERNEL)
    for tg, t in _targets(kernel, own):
        if not _perm(own, tg, t):
            continue
        if t is not None:
            ksignal.send_to_task(t, info)
        else:
            ksignal.send_to_group(tg, info)


def send_sigio(kernel: Kernel, f: FileDescription, fd: int, reason: int) -> None:
    """send_sigio: the owner's signal to every target it may signal."""
    own = f.fown
    if own is None or not own.pid:
        return
    info = _info(own.signum, reason, fd)
    for tg, t in _targets(kernel, own):
        if not _perm(own, tg, t):
            continue
        if t is not None:
            ksignal.send_to_task(t, info)
        else:
            ksignal.send_to_group(tg, info)
