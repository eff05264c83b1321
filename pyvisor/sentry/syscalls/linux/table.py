"""The syscall table type: explicit entries, one table per architecture.

Keys are Sysno members; an entry says whether the call is supported, partly
supported (with a note) or refused (with an errno and a reason).  A number
with no entry gives ENOSYS, logged once.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError


@dataclass(frozen=True, slots=True)
class Entry:
    """One syscall's handler and its support status."""

    fn: Callable[..., Any]
    blocking: bool                # a coroutine function: may sleep
    status: str                   # "supported" | "partial" | "refused"
    note: str = ""


def supported(fn: Callable[..., Any]) -> Entry:
    return Entry(fn, inspect.iscoroutinefunction(fn), "supported")


def partial(fn: Callable[..., Any], note: str) -> Entry:
    return Entry(fn, inspect.iscoroutinefunction(fn), "partial", note)


def refused(errno: Errno, note: str) -> Entry:
    def handler(t: Any, args: Any) -> int:
        raise SyscallError(errno)
    return Entry(handler, False, "refused", note)


class SyscallTable:
    """number -> Entry."""

    def __init__(self, arch: str, entries: dict[int, Entry]) -> None:
        self.arch = arch
        self.entries = {int(k): v for k, v in entries.items()}
