"""Regressions for the classes of Sentry crash the syscall fuzzer found
(tests/fuzz): tests/programs/hostile_args.c checks each errno or signal
against Linux, natively and in the sandbox, with a terminal on stdin (for
the tty ioctls)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pvtest import Builder, pyvisor_env

WHERE = ["native", "pyvisor"]


def run_on_pty(argv: list[str], env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs argv with a fresh pty as stdin (its output is drained and dropped)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
    finally:
        os.close(slave)

    def drain() -> None:
        try:
            while os.read(master, 4096):
                pass
        except OSError:
            pass

    threading.Thread(target=drain, daemon=True).start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"timed out: {argv}\n{out.decode()}{err.decode()}")
    finally:
        os.close(master)
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace"))


@pytest.mark.parametrize("where", WHERE)
def test_hostile_args(where: str, program: Builder) -> None:
    binary = program("hostile_args.c")
    if where == "native":
        r = run_on_pty([binary])
    else:
        r = run_on_pty([sys.executable, "-m", "pyvisor", "do", "--", binary],
                       env=pyvisor_env(None))
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0 and "ok" in r.stdout.split(), r.stdout + r.stderr


@pytest.mark.parametrize("where", WHERE)
def test_hostile_offsets_on_host_file(where: str, program: Builder, world_tmp: Path) -> None:
    """lseek and pread near 2^63 on a host file given as stdin (fsimpl/host)."""
    data = world_tmp / "data"
    data.write_bytes(b"0123456789" * 10)
    with open(data, "rb") as f:
        argv = [program("hostile_args.c"), "stdin-file"]
        if where == "native":
            p = subprocess.run(argv, stdin=f, capture_output=True, text=True, timeout=60)
        else:
            p = subprocess.run([sys.executable, "-m", "pyvisor", "do", "--", *argv], stdin=f,
                               capture_output=True, text=True, timeout=60,
                               env=pyvisor_env(None))
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 0 and "ok" in p.stdout.split(), p.stdout + p.stderr
