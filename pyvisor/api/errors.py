"""Exceptions of the Python API: one base class, and the cases worth catching on their own.

    SandboxError                 anything the sandbox could not do (base class)
    ├── Timeout                  a run or wait passed its deadline (also a TimeoutError)
    ├── OutOfMemory              the sandbox's memory limit killed the process
    ├── CommandNotFound          the program does not exist in the sandbox
    ├── CommandError             Sandbox.exec's command exited non-zero
    └── SandboxClosed            the sandbox was closed (or its Sentry died)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyvisor.api.sandbox import Result


class SandboxError(Exception):
    """Base class of every error the API raises."""


class SandboxClosed(SandboxError):
    """The sandbox is closed, or its Sentry is gone."""


class CommandNotFound(SandboxError):
    """The program to run does not exist in the sandbox (ENOENT; a program that exists but
    cannot be executed, EACCES or ENOEXEC, is a plain SandboxError naming the errno)."""

    def __init__(self, message: str, errno: int = 2) -> None:
        super().__init__(message)
        self.errno = errno


class Timeout(SandboxError, TimeoutError):
    """A run passed its timeout.  The process and its session were killed (by run());
    `result` holds what it wrote before (returncode 137, timed_out=True)."""

    def __init__(self, message: str, result: Result | None = None) -> None:
        super().__init__(message)
        self.result = result


class OutOfMemory(SandboxError):
    """The sandbox's memory limit was hit and the process was killed (the cgroup's OOM
    killer; the Sentry and Gofer are exempt and keep serving).  `result` is the run's."""

    def __init__(self, message: str, result: Result | None = None) -> None:
        super().__init__(message)
        self.result = result


class CommandError(SandboxError):
    """Sandbox.exec (the gVisor bindings' call): the command exited non-zero."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message)
        self.result = result
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
