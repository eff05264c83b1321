"""Sockets served by the Sentry.  Linux: net/socket.c (__sock_create).

`new_socket` and `new_socketpair` pick the family.  Only AF_UNIX exists so
far (unix.py); every other family is refused with EAFNOSUPPORT, which
programs treat as "no networking".  TODO(#2): loopback AF_INET/AF_INET6
(netstack) and host networking (hostinet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.kernel.errors import SyscallError
from pyvisor.sentry.socket.common import AF_MAX, AF_UNIX

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.file import FileDescription


def new_socket(t: Task, family: int, stype: int, protocol: int, flags: int) -> FileDescription:
    """socket(2) minus the fd: an open socket file.  `flags` may hold SOCK_NONBLOCK."""
    if family < 0 or family >= AF_MAX:
        raise SyscallError(Errno.EAFNOSUPPORT)
    if family == AF_UNIX:
        from pyvisor.sentry.socket import unix
        return unix.new_socket(t, stype, protocol, flags)
    raise SyscallError(Errno.EAFNOSUPPORT)


def new_socketpair(t: Task, family: int, stype: int, protocol: int, flags: int
                   ) -> tuple[FileDescription, FileDescription]:
    """socketpair(2) minus the fds."""
    if family < 0 or family >= AF_MAX:
        raise SyscallError(Errno.EAFNOSUPPORT)
    if family == AF_UNIX:
        from pyvisor.sentry.socket import unix
        return unix.new_socketpair(t, stype, protocol, flags)
    raise SyscallError(Errno.EAFNOSUPPORT)
