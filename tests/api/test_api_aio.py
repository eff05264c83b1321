"""pyvisor.AsyncSandbox: the API under asyncio, with streaming popen and concurrent runs."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

import pyvisor


def test_async_run_popen_and_files() -> None:
    async def main() -> None:
        async with pyvisor.AsyncSandbox(timeout=60) as sb:
            r = await sb.run("echo out; echo err >&2; exit 5")
            assert (r.returncode, r.stdout, r.stderr) == (5, b"out\n", b"err\n")
            assert (await sb.run(["cat"], input=b"\0bytes")).stdout == b"\0bytes"

            p = await sb.popen(["sh", "-c", "echo ready; read x; echo got $x"])
            assert p.stdout is not None and p.stdin is not None
            assert await asyncio.wait_for(p.stdout.readline(), 60) == b"ready\n"
            assert p.poll() is None
            p.stdin.write(b"async\n")
            await p.stdin.drain()
            p.stdin.close()
            assert await asyncio.wait_for(p.stdout.read(), 60) == b"got async\n"
            assert await p.wait(60) == 0

            p = await sb.popen(["sh", "-c", "cat; echo done >&2"])
            out, err = await p.communicate(b"x" * 300_000, timeout=60)
            assert (len(out or b""), err, p.returncode) == (300_000, b"done\n", 0)

            p = await sb.popen(["sleep", "100"], stdout=pyvisor.DEVNULL)
            with pytest.raises(pyvisor.Timeout):
                await p.wait(0.2)
            await p.kill()
            assert await p.wait(60) == -signal.SIGKILL

            with pytest.raises(pyvisor.Timeout):
                await sb.run(["sleep", "100"], timeout=0.3)

            results = await asyncio.gather(*(sb.run(f"echo {i}; exit {i % 3}")
                                              for i in range(20)))
            assert [(r.returncode, r.stdout) for r in results] == \
                [(i % 3, f"{i}\n".encode()) for i in range(20)]

            data = os.urandom(70_000)
            await sb.write_file("/tmp/a", data)
            assert await sb.read_file("/tmp/a") == data
            assert (await sb.stats())["processes"] >= 1
            runtime_dir = sb.sync.runtime_dir if sb.sync else ""
        assert runtime_dir and not os.path.exists(runtime_dir)
    asyncio.run(main())


def test_async_errors() -> None:
    async def main() -> None:
        with pytest.raises(pyvisor.SandboxError):
            await pyvisor.AsyncSandbox("/no/such/dir").start()
        sb = pyvisor.AsyncSandbox()
        with pytest.raises(RuntimeError, match="not started"):
            await sb.run(["true"])
        await sb.start()
        try:
            with pytest.raises(pyvisor.CommandNotFound):
                await sb.run(["no-such-program"])
        finally:
            await sb.close()
    asyncio.run(main())
