"""signalfd: pending signals read as a file.  Linux: fs/signalfd.c.

A read dequeues the reading thread's pending signals in the file's mask (its
own first, then the process's, lowest number first, as dequeue_signal) as
struct signalfd_siginfo records of 128 bytes, as many as fit; with none it
waits unless the file is non-blocking.  Readiness is that of the thread that
asks (poll from another process sees its own signals, as on Linux).  Every
queued signal wakes the signalfd waiters of its process (sighand's
signalfd_wq).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.signal import Signal
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.waitqueue import EVENT_IN, WaitQueue
from pyvisor.sentry.vfs.file import FileDescription, FileImpl

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Kernel
    from pyvisor.sentry.kernel.task import Task

SIGINFO_SIZE = 128
_UNBLOCKABLE = (1 << (Signal.SIGKILL - 1)) | (1 << (Signal.SIGSTOP - 1))
_M32 = 0xFFFFFFFF
_M64 = (1 << 64) - 1


def pack_siginfo(info: ksignal.SigInfo) -> bytes:
    """struct signalfd_siginfo (signalfd_copyinfo)."""
    code = info.code
    tid = overrun = status = 0
    pid, uid, value = info.pid, info.uid, info.value
    if info.raw is not None:               # a siginfo taken verbatim (rt_sigqueueinfo)
        pid, uid, value = struct.unpack_from("<iIQ", info.raw, 16)
    if code == -2:                         # SI_TIMER: si_tid, si_overrun
        tid, overrun, pid, uid = info.pid, info.uid, 0, 0
    if info.signo == Signal.SIGCHLD and code > 0:
        status = info.status
    head = struct.pack("<IiiIIiIIIIiiQQQQ", info.signo, info.errno, code, pid & _M32,
                       uid & _M32, 0, tid & _M32, 0, overrun & _M32, 0, status,
                       value & _M32 if value & 0x80000000 == 0 else (value & _M32) - (1 << 32),
                       value & _M64, 0, 0, info.addr & _M64)
    return head.ljust(SIGINFO_SIZE, b"\0")


class SignalFD(FileImpl):
    """An open signalfd."""

    splice_read = False

    def __init__(self, kernel: Kernel, mask: int, wq: WaitQueue) -> None:
        self.kernel = kernel
        self.mask = mask & ~_UNBLOCKABLE
        self.wq = wq                        # the creating process's sighand.signalfd_wq

    def set_mask(self, mask: int) -> None:
        self.mask = mask & ~_UNBLOCKABLE
        self.wq.notify(EVENT_IN)

    def _pending(self, t: Task) -> int:
        return (t.pending_mask | t.tg.pending_mask) & self.mask

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        if n < SIGINFO_SIZE:
            raise SyscallError(Errno.EINVAL)
        out = bytearray()
        while len(out) + SIGINFO_SIZE <= n:
            avail = self._pending(t)
            if not avail:
                break
            for src in (t, t.tg):
                own = src.pending_mask & self.mask
                if own:
                    sig = (own & -own).bit_length()
                    out += pack_siginfo(ksignal.take(src, sig))
                    break
        if not out:
            raise WouldBlock()
        return bytes(out)

    def readiness(self, fd: FileDescription, mask: int) -> int:
        t = self.kernel.current
        if t is None:
            return 0
        return (EVENT_IN if self._pending(t) else 0) & mask

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.wq
