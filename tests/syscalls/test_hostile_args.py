"""Regressions for the classes of Sentry crash the syscall fuzzer found
(tests/fuzz): tests/programs/hostile_args.c checks each errno or signal
against Linux, natively and in the sandbox, with a terminal on stdin (for
the tty ioctls)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pvtest import Builder, CliRunner, pyvisor_env

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


@pytest.mark.parametrize("where", WHERE)
def test_far_times_on_bind_mount(where: str, program: Builder, pyvisor_cli: CliRunner,
                                 world_tmp: Path) -> None:
    """utimensat/utimes with seconds near +-2^63 on a host directory (a writable
    bind mount in the sandbox, so the Gofer's SETATTR): clamped to what the
    filesystem holds, never an error (they overflowed the Gofer protocol's
    64-bit nanoseconds)."""
    binary = program("hostile_args.c", static=True)
    data = world_tmp / "data"
    data.mkdir(mode=0o777)
    if where == "native":
        p = subprocess.run([binary, "far-times", str(data)], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0 and "ok" in p.stdout.split(), p.stdout + p.stderr
        return
    bundle = world_tmp / "bundle"
    (bundle / "rootfs").mkdir(parents=True, mode=0o755)
    for d in ("dev", "proc", "sys", "tmp", "data"):      # the read-only root's mount points
        (bundle / "rootfs" / d).mkdir(mode=0o755)
    shutil.copy2(binary, bundle / "rootfs" / "hostile_args")
    config = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "cwd": "/",
                    "args": ["/hostile_args", "far-times", "/data"], "env": ["PATH=/"]},
        "root": {"path": "rootfs", "readonly": True},
        "mounts": [{"destination": "/data", "type": "bind", "source": str(data),
                    "options": ["rbind", "rw"]}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts",
                                                        "network")]},
    }
    (bundle / "config.json").write_text(json.dumps(config))
    state = world_tmp / "state"
    state.mkdir(mode=0o700)
    r = pyvisor_cli(["--root", str(state), "run", "--bundle", str(bundle),
                     f"pyvisor-test-{uuid.uuid4().hex[:12]}"])
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0 and "ok" in r.stdout.split(), r.output
