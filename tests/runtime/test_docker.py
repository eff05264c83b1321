"""Docker with pyvisor as a runtime: `docker run --runtime=pyvisor ...`.

One dockerd per test session (Debian's docker.io, 20.10), started by the fixture with
everything of its own under a temp dir: --data-root, --exec-root, --pidfile, a unix
socket, a daemon.json naming the `pyvisor` runtime (a launcher for this checkout) and
its key file, the vfs storage driver, and no host networking changes (--iptables=false
--ip-masq=false --ip-forward=false --bridge=none; every container runs with
--network none).  dockerd starts its own containerd, whose containerd-shim-runc-v2
drives pyvisor with runc's command line (create --bundle --pid-file, start, state,
kill, delete, exec --process --detach, ps --format json).  The image is a
busybox-static tree from `docker import`.  Teardown stops dockerd (and with it its
containerd and shims) and unmounts anything it left under its temp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from engines import (EngineHostDirs, busybox_tar, kill_leftovers, stop_process,
                     unmount_under, wait_for_socket, write_launcher)
from ttydriver import UserTerminal

pytestmark = pytest.mark.engines

IMAGE = "pv-busybox:test"


class Docker:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.sock = base / "docker.sock"
        self.client = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else \
            shutil.which("docker") or "docker"
        self.runtime_root = base / "exec" / "runtime-runc" / "moby"   # dockerd's --root

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.client, "--host", f"unix://{self.sock}", *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self("run", "--runtime=pyvisor", "--network", "none", *args)


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    if shutil.which("dockerd") is None or shutil.which("containerd") is None:
        pytest.skip("docker.io is not installed (scripts/install.sh installs it)")
    host_dirs = EngineHostDirs("/run/docker/plugins", "/run/docker", "/run/containerd/s",
                               "/run/containerd")
    base = Path(tempfile.mkdtemp(prefix="pvdk-", dir="/tmp"))   # short: socket paths
    base.chmod(0o755)
    launcher = write_launcher(base / "pyvisor-launcher")
    config = base / "daemon.json"
    config.write_text(json.dumps({
        "runtimes": {"pyvisor": {"path": str(launcher)}},
        "deprecated-key-path": str(base / "key.json"),      # not /etc/docker/key.json
    }))
    log = base / "dockerd.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            ["dockerd", "--config-file", str(config), "--data-root", str(base / "data"),
             "--exec-root", str(base / "exec"), "--pidfile", str(base / "docker.pid"),
             "-H", f"unix://{base / 'docker.sock'}", "--storage-driver", "vfs",
             "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none",
             "--userland-proxy=false", "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    d = Docker(base)
    try:
        wait_for_socket(d.sock, proc, log)
        r = d("import", str(busybox_tar(base)), IMAGE)
        assert r.returncode == 0, r.stderr
        yield d
    finally:
        d("rm", "--force", *d("ps", "-aq").stdout.split())
        stop_process(proc.pid, timeout=30)
        procs = kill_leftovers(base)
        left = unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        host_dirs.remove()
        assert left == [], f"dockerd left mounts: {left}"
        assert procs == [], f"dockerd left processes: {procs}"


def test_run_exit_code_env_workdir_user(docker: Docker) -> None:
    r = docker.run("--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1001", IMAGE,
                   "sh", "-c", "echo $FOO; pwd; id -u; id -g; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "bar\n/tmp\n1000\n1001\n", "err\n")
    assert list(docker.runtime_root.iterdir()) == []        # deleted


def test_run_engine_files_are_bind_mounted(docker: Docker) -> None:
    # --init: docker-init (tini), a host binary bind-mounted as a single file, is PID 1.
    r = docker.run("--rm", "--init", "--hostname", "pvhost", IMAGE, "sh", "-c",
                   "cat /etc/hostname; grep '^127.0.0.1.*localhost' /etc/hosts;"
                   " test -f /etc/resolv.conf && echo resolv; tr '\\0' ' ' < /proc/1/cmdline")
    assert r.returncode == 0, r.stdout + r.stderr
    expected = "pvhost\n127.0.0.1\tlocalhost\nresolv\n/sbin/docker-init -- sh"
    assert r.stdout.startswith(expected), r.stdout + r.stderr


def test_volumes_ro_rw_dirs_and_files(docker: Docker, world_tmp: Path) -> None:
    (world_tmp / "dir").mkdir()
    (world_tmp / "dir" / "f").write_text("in dir\n")
    (world_tmp / "single").write_text("single\n")
    (world_tmp / "rw").mkdir()
    for p in (world_tmp, world_tmp / "dir", world_tmp / "rw"):
        p.chmod(0o755)
    r = docker.run("--rm", "-v", f"{world_tmp / 'dir'}:/ro:ro",
                   "-v", f"{world_tmp / 'rw'}:/rw",
                   "-v", f"{world_tmp / 'single'}:/etc/single.txt",
                   "-v", f"{world_tmp / 'dir' / 'f'}:/new/dir/f:ro", IMAGE, "sh", "-c",
                   "cat /ro/f /etc/single.txt /new/dir/f; echo x > /ro/g; echo ro=$?;"
                   " echo more >> /etc/single.txt; echo w > /rw/out; echo f > /new/dir/f;"
                   " echo rofile=$?")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "in dir\nsingle\nin dir\nro=1\nrofile=1\n", r.stdout + r.stderr
    assert (world_tmp / "single").read_text() == "single\nmore\n"
    assert (world_tmp / "rw" / "out").read_text() == "w\n"
    assert not (world_tmp / "dir" / "g").exists()


def test_read_only_root(docker: Docker) -> None:
    r = docker.run("--rm", "--read-only", IMAGE, "sh", "-c",
                   "touch /x; echo root=$?; echo y > /etc/hosts; echo hosts=$?;"
                   " cat /etc/hostname >/dev/null && echo ok")
    assert r.returncode == 0, r.stderr
    # docker makes its /etc/hosts bind read-only too under --read-only (as with runc)
    assert r.stdout == "root=1\nhosts=1\nok\n", r.stdout + r.stderr
    assert "Read-only file system" in r.stderr


def test_pids_limit_bites(docker: Docker) -> None:
    r = docker.run("--rm", "--pids-limit", "8", IMAGE, "sh", "-c",
                   "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done; echo spawned")
    assert r.returncode != 0, r.stdout
    assert "can't fork" in r.stderr, r.stderr
    r = docker.run("--rm", "--pids-limit", "64", IMAGE, "sh", "-c",
                   "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 0 & done; wait; echo spawned")
    assert (r.returncode, r.stdout) == (0, "spawned\n"), r.stderr


def test_memory_limit_bites(docker: Docker) -> None:
    # A program growing past the container's memory limit is killed (SIGKILL from the
    # cgroup's OOM killer); the shell that ran it goes on.  Under the limit, it runs.
    grow = "awk 'BEGIN{s=\"x\"; while(length(s)<%d) s=s s; print length(s)}'; echo awk=$?"
    r = docker.run("--rm", "--memory", "128m", IMAGE, "sh", "-c", grow % 200_000_000)
    assert (r.returncode, r.stdout) == (0, "awk=137\n"), r.stdout + r.stderr
    r = docker.run("--rm", "--memory", "128m", IMAGE, "sh", "-c", grow % 8_000_000)
    assert (r.returncode, r.stdout) == (0, "8388608\nawk=0\n"), r.stdout + r.stderr


def test_detached_exec_logs_top_stop_kill_rm(docker: Docker) -> None:
    r = docker.run("-d", "--name", "pv-d", IMAGE, "sh", "-c",
                   "echo started; trap 'echo got term; exit 5' TERM; "
                   "while true; do sleep 0.2; done")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert [p.name for p in docker.runtime_root.iterdir()] == [cid]
    r = docker("exec", "pv-d", "sh", "-c", "echo in exec; exit 4")
    assert (r.returncode, r.stdout) == (4, "in exec\n"), r.stderr
    r = docker("exec", "-e", "A=1", "-w", "/tmp", "-u", "123", "pv-d",
               "sh", "-c", "echo $A; pwd; id -u")
    assert (r.returncode, r.stdout) == (0, "1\n/tmp\n123\n"), r.stderr
    r = docker("exec", "pv-d", "no-such-program")
    assert r.returncode != 0
    assert docker("pause", "pv-d").returncode == 0
    r = docker("inspect", "--format", "{{.State.Status}}", "pv-d")
    assert r.stdout.strip() == "paused", r.stdout + r.stderr
    assert docker("unpause", "pv-d").returncode == 0
    r = docker("update", "--memory", "256m", "--memory-swap", "512m", "--pids-limit", "8",
               "pv-d")                               # update --resources - (all fields)
    assert r.returncode == 0, r.stderr
    r = docker("exec", "pv-d", "sh", "-c",
               "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 2 & done; echo spawned")
    assert r.returncode != 0 and "can't fork" in r.stderr, r.stdout + r.stderr
    r = docker("top", "pv-d")                   # ps --format json: the container's processes
    assert r.returncode == 0, r.stderr
    # The init shell, and its `sleep 0.2` when the listing catches one.
    assert len(r.stdout.splitlines()) >= 2 and "sh" in r.stdout.splitlines()[1], r.stdout
    r = docker("stop", "--time", "10", "pv-d")
    assert r.returncode == 0, r.stderr
    r = docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "pv-d")
    assert r.stdout.strip() == "exited 5", r.stdout + r.stderr
    r = docker("logs", "pv-d")
    assert r.stdout == "started\ngot term\n", r.stdout + r.stderr
    assert docker("rm", "pv-d").returncode == 0
    assert list(docker.runtime_root.iterdir()) == []

    r = docker.run("-d", "--name", "pv-k", IMAGE, "sleep", "100")
    assert r.returncode == 0, r.stderr
    assert docker("kill", "--signal", "USR1", "pv-k").returncode == 0
    r = docker("wait", "pv-k")
    assert r.stdout.strip() == "138", r.stdout + r.stderr     # 128 + SIGUSR1
    assert docker("rm", "pv-k").returncode == 0
    r = docker.run("-d", "--name", "pv-k9", IMAGE, "sleep", "100")
    assert docker("kill", "pv-k9").returncode == 0
    r = docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "pv-k9")
    assert r.stdout.strip() == "exited 137", r.stdout + r.stderr
    assert docker("rm", "pv-k9").returncode == 0
    assert list(docker.runtime_root.iterdir()) == []


def test_missing_program_is_one_error(docker: Docker) -> None:
    r = docker.run("--rm", IMAGE, "/no/such/program")
    assert r.returncode == 127, r.stdout + r.stderr
    assert "no such file or directory" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_run_interactive_terminal(docker: Docker) -> None:
    """`docker run -it`: containerd's shim receives the pty master over --console-socket;
    typing, the initial window size, a resize and the exit status all come through."""
    term = UserTerminal([docker.client, "--host", f"unix://{docker.sock}", "run", "-it",
                         "--rm", "--runtime=pyvisor", "--network", "none", IMAGE, "sh"],
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
    # dockerd's --rm deletes the container after the client has seen it exit.
    deadline = time.monotonic() + 30
    while list(docker.runtime_root.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(docker.runtime_root.iterdir()) == []


def test_exec_interactive_terminal(docker: Docker) -> None:
    """`docker exec -it`: the shim's `exec --detach --console-socket` (process.terminal);
    the exec'd shell's terminal, its resize and its exit status."""
    r = docker.run("-d", "--name", "pv-tty", IMAGE, "sleep", "100")
    assert r.returncode == 0, r.stderr
    term = UserTerminal([docker.client, "--host", f"unix://{docker.sock}", "exec", "-it",
                         "pv-tty", "sh"], rows=22, cols=77)
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
        docker("rm", "--force", "pv-tty")
