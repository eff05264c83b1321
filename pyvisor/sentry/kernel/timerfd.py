"""timerfd: a timer read as a file.  Linux: fs/timerfd.c.

A read returns the number of expirations since the last read (a u64) and
resets it, waiting while it is zero unless the file is non-blocking; the file
is readable while the count is not zero.  Setting the timer resets the
count.  CLOCK_REALTIME_ALARM and CLOCK_BOOTTIME_ALARM need CAP_WAKE_ALARM,
which the sandbox's root has.  TFD_TIMER_CANCEL_ON_SET is accepted: the
sandbox cannot set the clock, so a read never gets ECANCELED.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Callable

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.kernel.ktimer import KTimer
from pyvisor.sentry.waitqueue import EVENT_IN, WaitQueue
from pyvisor.sentry.vfs.file import FileDescription, FileImpl

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Kernel
    from pyvisor.sentry.kernel.task import Task

# From <linux/timerfd.h>.
TFD_TIMER_ABSTIME = 1 << 0
TFD_TIMER_CANCEL_ON_SET = 1 << 1
TFD_IOC_SET_TICKS = 0x40085400
_U64 = (1 << 64) - 1


class TimerFD(FileImpl):
    """An open timerfd."""

    splice_read = False

    def __init__(self, kernel: Kernel, clock: int, now: Callable[[], int]) -> None:
        self.clock = clock
        self.ticks = 0
        self.wq = WaitQueue()
        self.timer = KTimer(kernel, now, False, self._expired)

    def _expired(self, count: int) -> None:
        self.ticks = min(_U64, self.ticks + count)
        self.wq.notify(EVENT_IN)

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        if n < 8:
            raise SyscallError(Errno.EINVAL)
        if self.ticks == 0:
            raise WouldBlock()
        v, self.ticks = self.ticks, 0
        return struct.pack("<Q", v)

    def readiness(self, fd: FileDescription, mask: int) -> int:
        return (EVENT_IN if self.ticks else 0) & mask

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.wq

    def ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        if cmd == TFD_IOC_SET_TICKS:
            (v,) = struct.unpack("<Q", t.copy_in(arg, 8))
            if v == 0:
                raise SyscallError(Errno.EINVAL)
            self.ticks = v
            self.wq.notify(EVENT_IN)
            return 0
        raise SyscallError(Errno.ENOTTY)

    def settime(self, flags: int, value: int, interval: int) -> tuple[int, int]:
        self.ticks = 0
        return self.timer.set(value, interval, bool(flags & TFD_TIMER_ABSTIME))

    def release(self, fd: FileDescription) -> None:
        self.timer.stop()
