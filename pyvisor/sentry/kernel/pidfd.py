"""pidfds: a process as a file.  Linux: kernel/pid.c (pidfd_open, pidfd_create),
kernel/signal.c (pidfd_send_signal), kernel/fork.c (pidfd_poll).

A pidfd names a thread group.  It polls readable once the process has exited
(its last thread is gone, zombie or reaped) and adds POLLHUP once it is
reaped; signals sent through it reach the process as kill(2) would, and fail
with ESRCH once it is reaped.  Readiness comes from the group's `exit_wq`,
notified when it dies and when it is reaped.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.sentry.waitqueue import EVENT_HUP, EVENT_IN, WaitQueue
from pyvisor.sentry.vfs.file import FileDescription, FileImpl

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import ThreadGroup

PIDFD_NONBLOCK = 0o4000        # O_NONBLOCK
PIDFD_THREAD = 0o200           # O_EXCL


class PidFD(FileImpl):
    """An open pidfd."""

    splice_read = False

    def __init__(self, tg: ThreadGroup) -> None:
        self.tg = tg

    def readiness(self, fd: FileDescription, mask: int) -> int:
        tg = self.tg
        ev = 0
        if tg.zombie or tg.reaped:
            ev |= EVENT_IN
        if tg.reaped:
            ev |= EVENT_HUP
        return ev & (mask | EVENT_HUP)

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.tg.exit_wq
