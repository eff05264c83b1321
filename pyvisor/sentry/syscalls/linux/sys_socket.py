"""Sockets.  Linux: net/socket.c.

TODO(#2): AF_UNIX in the Sentry and loopback networking; until then every family
is refused with EAFNOSUPPORT, which programs treat as "no networking".
"""

from __future__ import annotations

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.kernel.errors import SyscallError
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.platform.ptrace.binding import UserRegs


def sys_socket(t: Task, r: UserRegs) -> int:
    """Implements socket(2) (no families yet)."""
    raise SyscallError(Errno.EAFNOSUPPORT)


def sys_socketpair(t: Task, r: UserRegs) -> int:
    """Implements socketpair(2) (no families yet)."""
    raise SyscallError(Errno.EAFNOSUPPORT)
