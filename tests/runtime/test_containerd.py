"""containerd with pyvisor as the runc binary of its runc v2 shim: `ctr run --runc-binary`.

One containerd per test session (Debian's containerd, 1.6), started by the fixture
with a config of its own: root, state, gRPC/ttrpc addresses and the opt plugin's
path under a temp dir, the CRI plugin disabled.  The image is an OCI archive of a
busybox-static tree built by engines.busybox_oci_archive, imported with `ctr images
import`; containers use the native snapshotter (a bind mount under containerd's own
state, undone at task delete).  pyvisor's --root is `ctr --runc-root` under the temp
dir.  Teardown stops containerd and any shim left, and unmounts anything under the
temp dir.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from engines import (EngineHostDirs, busybox_oci_archive, kill_leftovers, stop_process,
                     unmount_under, wait_for_socket, write_launcher)
from ttydriver import UserTerminal

pytestmark = pytest.mark.engines

IMAGE = "docker.io/library/pv-busybox:test"
NS = "pyvisor-test"


class Ctr:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.address = base / "containerd.sock"
        self.launcher = base / "pyvisor-launcher"
        self.runtime_root = base / "runc-root"

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", str(self.address), "--namespace", NS,
                               *args], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self("run", "--fifo-dir", str(self.base / "fifo"),
                    "--runc-binary", str(self.launcher),
                    "--runc-root", str(self.runtime_root), "--snapshotter", "native", *args)


CONFIG = """\
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.overlayfs"]

[grpc]
  address = "{base}/containerd.sock"

[ttrpc]
  address = "{base}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
"""


@pytest.fixture(scope="module")
def ctr() -> Iterator[Ctr]:
    if shutil.which("containerd") is None or shutil.which("ctr") is None or \
            shutil.which("containerd-shim-runc-v2") is None:
        pytest.skip("containerd is not installed (scripts/install.sh installs it)")
    host_dirs = EngineHostDirs("/run/containerd/s", "/run/containerd/fifo", "/run/containerd")
    base = Path(tempfile.mkdtemp(prefix="pvct-", dir="/tmp"))    # short: socket paths
    base.chmod(0o755)
    c = Ctr(base)
    write_launcher(c.launcher)
    config = base / "config.toml"
    config.write_text(CONFIG.format(base=base))
    log = base / "containerd.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(["containerd", "--config", str(config)],
                                stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_socket(c.address, proc, log)
        r = c("images", "import", "--snapshotter", "native",
              str(busybox_oci_archive(base, IMAGE)))
        assert r.returncode == 0, r.stdout + r.stderr
        yield c
    finally:
        for cid in c("containers", "list", "--quiet").stdout.split():
            c("task", "kill", "--signal", "SIGKILL", cid)
            c("task", "delete", "--force", cid)
            c("containers", "delete", cid)
        stop_process(proc.pid, timeout=30)
        procs = kill_leftovers(base)
        left = unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        host_dirs.remove()
        assert left == [], f"containerd left mounts: {left}"
        assert procs == [], f"containerd left processes: {procs}"


def test_ctr_run_rm(ctr: Ctr) -> None:
    r = ctr.run("--rm", "--env", "FOO=bar", "--cwd", "/tmp", IMAGE, "ct-1",
                "sh", "-c", "echo out $FOO; pwd; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out bar\n/tmp\n", "err\n")
    assert list((ctr.runtime_root / NS).iterdir()) == []     # the shim adds the namespace
    assert ctr("containers", "list", "--quiet").stdout == ""


def test_ctr_detached_exec_ps_kill_delete(ctr: Ctr) -> None:
    r = ctr.run("--detach", "--null-io", IMAGE, "ct-2", "sh", "-c",
                "trap 'exit 7' TERM; while true; do sleep 0.2; done")
    assert r.returncode == 0, r.stderr
    r = ctr("task", "exec", "--fifo-dir", str(ctr.base / "fifo"), "--exec-id", "e1", "ct-2",
            "sh", "-c", "echo in exec; exit 4")
    assert (r.returncode, r.stdout) == (4, "in exec\n"), r.stderr
    r = ctr("task", "ps", "ct-2")              # ps --format json: the sandbox's host pids
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) >= 3, r.stdout
    r = ctr("task", "list")
    assert "ct-2" in r.stdout and "RUNNING" in r.stdout, r.stdout
    assert ctr("task", "kill", "--signal", "SIGTERM", "ct-2").returncode == 0
    deadline = time.monotonic() + 30
    while "STOPPED" not in ctr("task", "list").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    r = ctr("task", "delete", "ct-2")
    assert r.returncode == 0, r.stderr
    assert "non-zero exit code 7" in r.stderr, r.stderr   # ctr reports the exit status
    assert ctr("containers", "delete", "ct-2").returncode == 0
    assert list((ctr.runtime_root / NS).iterdir()) == []


def test_ctr_run_and_exec_with_terminal(ctr: Ctr) -> None:
    """`ctr run -t` and `ctr task exec -t`: the shim receives the pty master over
    --console-socket; typing, the window size, a resize and the exit status.  (ctr
    leaves output processing on in the user's terminal: lines end in \\r\\r\\n.)"""
    ctr_argv = ["ctr", "--address", str(ctr.address), "--namespace", NS]
    term = UserTerminal([*ctr_argv, "run", "-t", "--rm", "--fifo-dir", str(ctr.base / "fifo"),
                         "--runc-binary", str(ctr.launcher), "--runc-root",
                         str(ctr.runtime_root), "--snapshotter", "native", IMAGE, "ct-t", "sh"],
                        rows=30, cols=100)
    try:
        term.expect(b"# ")
        term.retype_until(b"stty size\r", b"30 100\r")
        term.resize(41, 123)
        term.retype_until(b"stty size\r", b"41 123\r")
        term.write(b"echo hi; exit 3\r")
        term.expect(b"\nhi\r")
        assert term.wait() == 3, bytes(term.out)
    finally:
        term.close()
    r = ctr.run("--detach", "--null-io", IMAGE, "ct-te", "sleep", "100")
    assert r.returncode == 0, r.stderr
    term = UserTerminal([*ctr_argv, "task", "exec", "-t", "--fifo-dir", str(ctr.base / "fifo"),
                         "--exec-id", "te", "ct-te", "sh"], rows=22, cols=77)
    try:
        term.expect(b"# ")
        term.retype_until(b"stty size\r", b"22 77\r")
        term.resize(33, 99)
        term.retype_until(b"stty size\r", b"33 99\r")
        term.write(b"echo hi; exit 4\r")
        term.expect(b"\nhi\r")
        assert term.wait() == 4, bytes(term.out)
    finally:
        term.close()
        ctr("task", "kill", "--signal", "SIGKILL", "ct-te")
        ctr("task", "delete", "--force", "ct-te")
        ctr("containers", "delete", "ct-te")
