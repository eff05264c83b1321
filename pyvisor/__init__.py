"""pyvisor: an application kernel for sandboxing untrusted programs, after gVisor.

The Python API (pyvisor/api) is importable from here without loading the Sentry:

    >>> import pyvisor
    >>> with pyvisor.Sandbox() as sb:                      # doctest: +SKIP
    ...     sb.run("echo hi").stdout
    b'hi\\n'
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:        # typing itself is left to the modules that need it at run time
    from typing import Any

__version__ = "0.1.0"

_API = {"Sandbox", "AsyncSandbox", "Result", "Process", "AsyncProcess", "Mount",
        "SandboxError", "Timeout", "OutOfMemory", "CommandNotFound", "CommandError",
        "SandboxClosed", "PIPE", "DEVNULL", "STDOUT"}


def __getattr__(name: str) -> Any:
    """Lazy: `import pyvisor` stays cheap for the CLI; pyvisor.Sandbox loads the API."""
    if name in _API:
        from pyvisor import api
        return getattr(api, name)
    raise AttributeError(f"module 'pyvisor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
