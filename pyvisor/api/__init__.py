"""pyvisor's Python API (issue #7): warm sandboxes for running untrusted commands.

    import pyvisor
    with pyvisor.Sandbox() as sb:
        print(sb.run(["echo", "hello"]).stdout)

Sandbox (sync) and AsyncSandbox (asyncio) in sandbox.py and aio.py; Process and Result in
process.py; file transfer in files.py; exceptions in errors.py.
"""

from pyvisor.api.aio import AsyncProcess, AsyncSandbox
from pyvisor.api.errors import (CommandError, CommandNotFound, OutOfMemory, SandboxClosed,
                                SandboxError, Timeout)
from pyvisor.api.process import DEVNULL, PIPE, STDOUT, Process, Result
from pyvisor.api.sandbox import Mount, Sandbox

__all__ = ["AsyncProcess", "AsyncSandbox", "CommandError", "CommandNotFound", "DEVNULL",
           "Mount", "OutOfMemory", "PIPE", "Process", "Result", "STDOUT", "Sandbox",
           "SandboxClosed", "SandboxError", "Timeout"]
