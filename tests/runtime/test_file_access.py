"""--file-access: the root image cached (exclusive, the default, as runsc) or asked
afresh on every stat (shared).

The sandbox prints a host file's size and a host directory's listing, the test then
changes both on the host and lets the sandbox print them again: with `shared` it sees
the changes, with `exclusive` it keeps what it saw (nothing but the sandbox is assumed
to change the image; the image below the root overlay is never written from inside).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from pvtest import pyvisor_env

SCRIPT = 'stat -c %s "$0/f"; ls "$0"; read go; stat -c %s "$0/f"; ls "$0"'


@pytest.fixture
def hostdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pyvisor-fa-", dir="/var/tmp"))
    os.chmod(d, 0o755)
    (d / "f").write_bytes(b"1234")
    try:
        yield d
    finally:
        shutil.rmtree(d)


def _run(mode: str, d: Path) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyvisor", f"--file-access={mode}", "do", "--",
         "/bin/sh", "-c", SCRIPT, str(d)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=pyvisor_env(None), start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        first = [proc.stdout.readline().decode().strip() for _ in range(2)]
        (d / "f").write_bytes(b"123456789")          # changed on the host ...
        (d / "g").write_bytes(b"")
        rest, err = proc.communicate(b"go\n", timeout=60)   # ... before the second look
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    return first + rest.decode().split()


def test_exclusive_root_is_cached(hostdir: Path) -> None:
    assert _run("exclusive", hostdir) == ["4", "f", "4", "f"]


def test_shared_root_sees_host_changes(hostdir: Path) -> None:
    assert _run("shared", hostdir) == ["4", "f", "9", "f", "g"]


def test_bad_file_access_is_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "pyvisor", "--file-access=sometimes", "do",
                        "--", "/bin/true"], capture_output=True, env=pyvisor_env(None),
                       timeout=60)
    assert r.returncode != 0 and b"Traceback" not in r.stderr
    assert b"--file-access" in r.stderr
