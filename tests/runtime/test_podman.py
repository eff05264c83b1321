"""podman with pyvisor as its OCI runtime: `podman --runtime LAUNCHER run --rm IMG CMD`.

Everything podman keeps is the session's own: --root, --runroot and --tmpdir under
a temp dir, the vfs storage driver, cgroupfs, no events log, and always
--network none (podman must not touch the host's network) and --ipc host (else
podman mounts a tmpfs for the container's /dev/shm on the host, which the
security suite's mount-table guard would see; the sandbox has its own /dev/shm
either way).  The image is a busybox-static rootfs imported once per session with
`podman import`.  The launcher runs this worktree's pyvisor with a --root of the
session's own (podman 4.3 does not pass --runtime-flag to its final delete).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from engines import busybox_tar, kill_leftovers, unmount_under, write_launcher
from ttydriver import UserTerminal

pytestmark = pytest.mark.engines

IMAGE = "localhost/pyvisor-busybox:test"
ISOLATED = ("--network", "none", "--ipc", "host")


class Podman:
    def __init__(self, base: Path, short: Path) -> None:
        self.base = base
        self.state = base / "runtime-state"
        launcher = write_launcher(base / "pyvisor-launcher", "--root", str(self.state))
        self.argv = ["podman", "--root", str(base / "storage"), "--runroot", str(short / "run"),
                     "--tmpdir", str(base / "tmp"), "--storage-driver", "vfs",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "none",
                     "--runtime", str(launcher)]

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self("run", "--rm", *ISOLATED, *args)


@pytest.fixture(scope="module")
def podman_session() -> Iterator[Podman]:
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.skip("podman is not installed (scripts/install.sh installs it)")
    base = Path(tempfile.mkdtemp(prefix="pvpm-", dir="/tmp"))   # podman: runroot <= 50 chars
    base.chmod(0o755)
    pm = Podman(base, base)
    try:
        r = pm("import", str(busybox_tar(base)), IMAGE)
        assert r.returncode == 0, r.stderr
        yield pm
    finally:
        pm("rm", "--all", "--force", "--time", "0")
        procs = kill_leftovers(base)
        left = unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        assert left == [], f"podman left mounts: {left}"
        assert procs == [], f"podman left processes: {procs}"


@pytest.fixture
def podman(podman_session: Podman) -> Iterator[Podman]:
    yield podman_session
    podman_session("rm", "--all", "--force", "--time", "0")


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


def test_podman_env_workdir_user(podman: Podman) -> None:
    r = podman.run("-e", "FOO=bar", "--workdir", "/tmp", "--user", "1000:1001", IMAGE,
                   "sh", "-c", "echo $FOO; pwd; id -u; id -g")
    assert (r.returncode, r.stdout) == (0, "bar\n/tmp\n1000\n1001\n"), r.stderr


def test_podman_volumes_dirs_and_files(podman: Podman, world_tmp: Path) -> None:
    (world_tmp / "dir").mkdir()
    (world_tmp / "dir" / "f").write_text("in dir\n")
    (world_tmp / "single").write_text("single\n")
    for p in (world_tmp, world_tmp / "dir"):
        p.chmod(0o755)
    r = podman.run("-v", f"{world_tmp / 'dir'}:/vol:ro", "-v", f"{world_tmp / 'single'}:/etc/s",
                   "-v", f"{world_tmp / 'dir' / 'f'}:/new/f:ro", IMAGE, "sh", "-c",
                   "cat /vol/f /etc/s /new/f; echo x > /vol/g; echo ro=$?; echo more >> /etc/s;"
                   " test -f /run/.containerenv && test -s /etc/hostname && echo engine-files")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "in dir\nsingle\nin dir\nro=1\nengine-files\n", r.stdout + r.stderr
    assert (world_tmp / "single").read_text() == "single\nmore\n"
    assert not (world_tmp / "dir" / "g").exists()


def test_podman_read_only(podman: Podman) -> None:
    r = podman.run("--read-only", IMAGE, "sh", "-c",
                   "touch /x; echo root=$?; echo y > /tmp/y && echo tmp=$?")
    assert (r.returncode, r.stdout) == (0, "root=1\ntmp=0\n"), r.stdout + r.stderr
    assert "Read-only file system" in r.stderr


def test_podman_pids_and_memory_limits_bite(podman: Podman) -> None:
    r = podman.run("--pids-limit", "8", IMAGE, "sh", "-c",
                   "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done; echo spawned")
    assert r.returncode != 0 and "can't fork" in r.stderr, r.stdout + r.stderr
    r = podman.run("--memory", "128m", IMAGE, "sh", "-c",
                   "awk 'BEGIN{s=\"x\"; while(length(s)<200000000) s=s s}'; echo awk=$?")
    assert (r.returncode, r.stdout) == (0, "awk=137\n"), r.stdout + r.stderr


def test_podman_logs_and_kill(podman: Podman) -> None:
    r = podman("run", "-d", "--name", "pvk", *ISOLATED, IMAGE, "sh", "-c",
               "echo started; trap 'echo got term; exit 5' TERM; while true; do sleep 0.2; done")
    assert r.returncode == 0, r.stderr
    assert podman("kill", "--signal", "TERM", "pvk").returncode == 0
    r = podman("wait", "pvk")
    assert r.stdout.strip() == "5", r.stdout + r.stderr
    r = podman("logs", "pvk")
    assert r.stdout == "started\ngot term\n", r.stdout + r.stderr
    assert podman("rm", "pvk").returncode == 0
    r = podman("run", "-d", "--name", "pvk9", *ISOLATED, IMAGE, "sleep", "100")
    assert podman("kill", "pvk9").returncode == 0
    r = podman("wait", "pvk9")
    assert r.stdout.strip() == "137", r.stdout + r.stderr
    assert podman("rm", "pvk9").returncode == 0
    assert os.listdir(podman.state) == []


def test_podman_run_interactive_terminal(podman: Podman) -> None:
    """`podman run -it`: conmon receives the pty master over --console-socket; typing,
    the window size at start and after a resize, and the exit status all come through."""
    term = UserTerminal([*podman.argv, "run", "-it", "--rm", *ISOLATED, IMAGE, "sh"],
                        rows=30, cols=100)
    try:
        term.expect(b"# ")
        term.write(b"stty size; tty\r")
        assert b"30 100\r\n" in term.expect(b"/dev/pts/0\r\n")
        term.resize(41, 123)      # the engine passes it on in its own time
        term.retype_until(b"stty size\r", b"41 123\r\n")
        term.write(b"echo hi; exit 3\r")
        term.expect(b"\r\nhi\r\n")
        assert term.wait() == 3, bytes(term.out)
    finally:
        term.close()
    assert os.listdir(podman.state) == []


def test_podman_exec_interactive_terminal(podman: Podman) -> None:
    """`podman exec -it`: conmon's `exec --detach --tty --console-socket`; the exec'd
    shell's terminal, its resize and its exit status (through the holder conmon reaps)."""
    r = podman("run", "-d", "--name", "pvt", *ISOLATED, IMAGE, "sleep", "100")
    assert r.returncode == 0, r.stderr
    term = UserTerminal([*podman.argv, "exec", "-it", "pvt", "sh"], rows=22, cols=77)
    try:
        term.expect(b"# ")
        term.write(b"stty size\r")
        term.expect(b"22 77\r\n")
        term.resize(33, 99)
        term.retype_until(b"stty size\r", b"33 99\r\n")
        term.write(b"echo hi; exit 4\r")
        term.expect(b"\r\nhi\r\n")
        assert term.wait() == 4, bytes(term.out)
    finally:
        term.close()
