"""podman with pyvisor as its OCI runtime: `podman --runtime LAUNCHER run --rm IMG CMD`.

Everything podman keeps is the test's own: --root, --runroot and --tmpdir under
the test's temp dir, the vfs storage driver, cgroupfs, no events log, and always
--network none (podman must not touch the host's network) and --ipc host (else
podman mounts a tmpfs for the container's /dev/shm on the host, which the
security suite's mount-table guard would see; the sandbox has its own /dev/shm
either way).  The image is a
busybox-static rootfs imported with `podman import`.  The launcher runs this
worktree's pyvisor with a --root of the test's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from pvtest import REPO

IMAGE = "localhost/pyvisor-busybox:test"
ISOLATED = ("--network", "none", "--ipc", "host")


class Podman:
    def __init__(self, base: Path, short: Path) -> None:
        self.base = base
        self.state = base / "runtime-state"
        launcher = base / "pyvisor-launcher"
        launcher.write_text(
            "#!/bin/sh\n"
            f"PYTHONPATH={REPO} exec {sys.executable} -m pyvisor --root {self.state} \"$@\"\n")
        launcher.chmod(0o755)
        self.argv = ["podman", "--root", str(base / "storage"), "--runroot", str(short / "run"),
                     "--tmpdir", str(base / "tmp"), "--storage-driver", "vfs",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "none",
                     "--runtime", str(launcher)]

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def podman(world_tmp: Path) -> Iterator[Podman]:
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.skip("podman is not installed (scripts/install.sh installs it when available)")
    short = Path(tempfile.mkdtemp(prefix="pvpm-", dir="/tmp"))   # podman: runroot <= 50 chars
    pm = Podman(world_tmp, short)
    rootfs = world_tmp / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    for name in ("sh", "echo", "cat", "sleep", "id", "ls"):
        (rootfs / "bin" / name).symlink_to("busybox")
    for d in ("proc", "tmp", "dev", "etc", "sys", "run"):
        (rootfs / d).mkdir()
    with tarfile.open(world_tmp / "rootfs.tar", "w") as tar:
        tar.add(rootfs, arcname=".")
    r = pm("import", str(world_tmp / "rootfs.tar"), IMAGE)
    assert r.returncode == 0, r.stderr
    try:
        yield pm
    finally:
        pm("rm", "--all", "--force", "--time", "0")
        shutil.rmtree(short, ignore_errors=True)


def test_podman_run_rm(podman: Podman) -> None:
    mounts = Path("/proc/self/mountinfo").read_text()
    r = podman("run", "--rm", *ISOLATED, IMAGE,
               "sh", "-c", "echo out; echo err >&2; echo $((6*7)); exit 3")
    assert (r.returncode, r.stdout) == (3, "out\n42\n"), r.stderr
    assert r.stderr == "err\n"
    assert Path("/proc/self/mountinfo").read_text() == mounts
    assert not podman.state.exists() or os.listdir(podman.state) == []


def test_podman_detached_exec_stop_rm(podman: Podman) -> None:
    r = podman("run", "-d", "--name", "pv", *ISOLATED, IMAGE, "sleep", "60")
    assert r.returncode == 0, r.stderr
    assert os.listdir(podman.state) == [r.stdout.strip()]
    r = podman("exec", "pv", "sh", "-c", "echo shm > /dev/shm/f; cat /dev/shm/f; exit 4")
    assert (r.returncode, r.stdout) == (4, "shm\n"), r.stderr
    r = podman("inspect", "--format", "{{.State.Status}}", "pv")
    assert r.stdout.strip() == "running", r.stderr
    r = podman("stop", "--time", "2", "pv")
    assert r.returncode == 0, r.stderr
    r = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "pv")
    assert r.stdout.strip() == "exited 143", r.stdout + r.stderr
    assert podman("rm", "pv").returncode == 0
    assert os.listdir(podman.state) == []
