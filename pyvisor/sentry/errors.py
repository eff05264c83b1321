"""Errors and control values that cross the syscall boundary.

A handler raises `SyscallError(errno)` (a fresh instance each time) for the
application; `Interrupted` and `TimedOut` are raised out of `block_on`.
Anything else escaping a handler is a Sentry bug.
"""

from __future__ import annotations

import enum

from pyvisor.abi.linux.errno import ERESTARTSYS, Errno


class SyscallError(Exception):
    """An errno for the application.  Linux: a negative return from a syscall."""

    __slots__ = ("errno",)

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = int(errno)

    def __str__(self) -> str:
        try:
            return Errno(self.errno).name
        except ValueError:
            return str(self.errno)

    @classmethod
    def from_host(cls, e: OSError) -> SyscallError:
        """The only door for host errnos (gofer, host files, memfds)."""
        return cls(e.errno if e.errno else Errno.EIO)


class WouldBlock(SyscallError):
    """EAGAIN from a non-blocking attempt; blocking callers wait and retry."""

    def __init__(self) -> None:
        super().__init__(Errno.EAGAIN)


class Interrupted(SyscallError):
    """A signal interrupted a wait.  The dispatcher turns it into ERESTARTSYS."""

    def __init__(self, errno: int = ERESTARTSYS) -> None:
        super().__init__(errno)


class TimedOut(Exception):
    """A wait's deadline passed."""


class SyscallControl(enum.Enum):
    """Returned (not raised) by handlers that change the task's control flow."""

    EXITED = "exited"          # the task is gone: do not resume it
    EXECED = "execed"          # registers were replaced by the loader
    SIGRETURN = "sigreturn"    # registers were restored from a signal frame
    BLOCKED_STOP = "stop"      # the task stopped (job control); resumed later
