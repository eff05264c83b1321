"""pyvisor.AsyncSandbox: the Sandbox API for asyncio.

    async with pyvisor.AsyncSandbox() as sb:
        r = await sb.run(["echo", "hi"])
        p = await sb.popen(["sh", "-c", "echo one; sleep 1; echo two"])
        line = await p.stdout.readline()          # b"one\\n", while it still runs
        await p.wait()

run(), file transfer and the lifecycle calls run the synchronous Sandbox's code in a worker
thread (asyncio.to_thread: the event loop never blocks, and many runs proceed at once,
each on its own control connection).  popen() is native: its pipes are asyncio streams
(StreamWriter for stdin, StreamReader for stdout/stderr) and wait() is a reader callback on
the control connection, which turns readable when the process exits.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Iterable, Mapping, Sequence

from pyvisor.api.errors import Timeout
from pyvisor.api.process import PIPE, Process, Result, Stdio
from pyvisor.api.sandbox import Sandbox


class AsyncProcess:
    """A process in a sandbox with asyncio streams: .stdin (StreamWriter), .stdout and
    .stderr (StreamReader) for PIPE; .pid, .returncode; await wait(), communicate();
    send_signal(), terminate(), kill()."""

    def __init__(self, proc: Process) -> None:
        self._p = proc
        self.pid = proc.pid
        self.args = proc.args
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        p = self._p
        for name in ("stdout", "stderr"):
            f = getattr(p, name)
            if f is not None:
                reader = asyncio.StreamReader(limit=1 << 20)
                await loop.connect_read_pipe(lambda r=reader: asyncio.StreamReaderProtocol(r),
                                             f)
                setattr(self, name, reader)
        if p.stdin is not None:
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, p.stdin)
            self.stdin = asyncio.StreamWriter(transport, protocol, None, loop)

    @property
    def returncode(self) -> int | None:
        return self._p.returncode

    @property
    def signal(self) -> int | None:
        return self._p.signal

    def poll(self) -> int | None:
        return self._p.poll()

    async def wait(self, timeout: float | None = None) -> int:
        """Waits for the exit (without a thread); Timeout after `timeout` seconds."""
        p = self._p
        if p.returncode is None:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            fd = p.fileno()
            loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
            try:
                await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise Timeout(f"{p.args!r} did not exit within {timeout} s") from None
            finally:
                loop.remove_reader(fd)
            p._take_status(True, 30.0)
        assert p.returncode is not None
        return p.returncode

    async def communicate(self, input: bytes | None = None,
                          timeout: float | None = None) -> tuple[bytes | None, bytes | None]:
        """Feeds `input`, collects stdout and stderr until the exit; Timeout after
        `timeout` seconds (the process runs on)."""
        async def feed() -> None:
            if self.stdin is None:
                return
            try:
                if input:
                    self.stdin.write(input)
                    await self.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.stdin.close()

        async def collect(r: asyncio.StreamReader | None, done: asyncio.Event) -> bytes | None:
            if r is None:
                return None
            parts = []
            while True:
                if done.is_set():          # exited: what it wrote is there, take it
                    try:
                        b = await asyncio.wait_for(r.read(1 << 16), 0.05)
                    except asyncio.TimeoutError:
                        break
                else:
                    rd = asyncio.ensure_future(r.read(1 << 16))
                    ev = asyncio.ensure_future(done.wait())
                    await asyncio.wait({rd, ev}, return_when=asyncio.FIRST_COMPLETED)
                    ev.cancel()
                    if not rd.done():
                        rd.cancel()
                        continue
                    b = rd.result()
                if not b:
                    break
                parts.append(b)
            return b"".join(parts)

        done = asyncio.Event()

        async def waiter() -> None:
            await self.wait()
            done.set()
        try:
            _, out, err, _ = await asyncio.wait_for(asyncio.gather(
                feed(), collect(self.stdout, done), collect(self.stderr, done), waiter()),
                timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"{self.args!r} did not exit within {timeout} s") from None
        return out, err

    async def send_signal(self, sig: int, session: bool = False) -> None:
        await asyncio.to_thread(self._p.send_signal, sig, session)

    async def terminate(self) -> None:
        await asyncio.to_thread(self._p.terminate)

    async def kill(self) -> None:
        """SIGKILL to the process and its session."""
        await asyncio.to_thread(self._p.kill)


class AsyncSandbox:
    """Sandbox for asyncio: the same arguments; `async with`, or `await sb.start()` and
    `await sb.close()`.

    >>> async def main():                                             # doctest: +SKIP
    ...     async with pyvisor.AsyncSandbox() as sb:
    ...         r = await sb.run("echo hi")
    ...         return r.stdout
    >>> asyncio.run(main())                                           # doctest: +SKIP
    b'hi\\n'
    """

    def __init__(self, image_or_rootfs: str | os.PathLike[str] | None = None,
                 **options: Any) -> None:
        self._args = (image_or_rootfs,)
        self._options = options
        self.sync: Sandbox | None = None

    async def start(self) -> AsyncSandbox:
        if self.sync is None:
            self.sync = await asyncio.to_thread(Sandbox, *self._args, **self._options)
        return self

    async def __aenter__(self) -> AsyncSandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.sync is not None:
            await asyncio.to_thread(self.sync.close)

    def _sb(self) -> Sandbox:
        if self.sync is None:
            raise RuntimeError("the AsyncSandbox is not started (use `async with` or start())")
        return self.sync

    async def run(self, cmd: str | Sequence[str], **kw: Any) -> Result:
        """As Sandbox.run (input, env, cwd, timeout, user, text, check, fresh)."""
        return await asyncio.to_thread(self._sb().run, cmd, **kw)

    async def exec(self, *args: str, **kw: Any) -> tuple[str, str]:
        return await asyncio.to_thread(self._sb().exec, *args, **kw)

    async def popen(self, cmd: str | Sequence[str], *, stdin: Stdio = PIPE,
                    stdout: Stdio = PIPE, stderr: Stdio = PIPE,
                    env: Mapping[str, str] | Iterable[str] | None = None,
                    cwd: str | None = None, user: int | str | tuple[int, int] | None = None
                    ) -> AsyncProcess:
        """As Sandbox.popen, with asyncio streams."""
        p = await asyncio.to_thread(self._sb().popen, cmd, stdin=stdin, stdout=stdout,
                                    stderr=stderr, env=env, cwd=cwd, user=user)
        ap = AsyncProcess(p)
        await ap._connect()
        return ap

    async def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        await asyncio.to_thread(self._sb().write_file, path, data, mode)

    async def read_file(self, path: str) -> bytes:
        return await asyncio.to_thread(self._sb().read_file, path)

    async def upload(self, host_path: str, sandbox_path: str) -> None:
        await asyncio.to_thread(self._sb().upload, host_path, sandbox_path)

    async def download(self, sandbox_path: str, host_path: str) -> None:
        await asyncio.to_thread(self._sb().download, sandbox_path, host_path)

    async def stats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._sb().stats)

    async def ps(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._sb().ps)

    async def kill(self, sig: int = 9) -> int:
        return await asyncio.to_thread(self._sb().kill, sig)

    async def reset(self) -> None:
        await asyncio.to_thread(self._sb().reset)
