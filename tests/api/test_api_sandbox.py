"""pyvisor.Sandbox, the Python API (issue #7): one warm sandbox serving many runs.

Exit codes and signal deaths are compared with the host's own /bin/sh; stdin, stdout and
stderr carry binary data exactly; a popen streams before its process ends; a timed-out
run is killed with its children and the sandbox keeps serving; the memory limit's OOM
kill is an OutOfMemory; files and directory trees round-trip byte for byte (also on a
busybox-only rootfs, where no tar or cat is assumed); a hundred runs, and runs from many
threads at once, all answer correctly; and close() leaves no process, state or cgroup.
Most tests share one module-wide sandbox (it costs a Sentry boot, about a second).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

import pyvisor
from pvtest import make_world_readable

BUSYBOX = "/bin/busybox"


@pytest.fixture(scope="module")
def sb() -> Iterator[pyvisor.Sandbox]:
    with pyvisor.Sandbox() as s:
        yield s


@pytest.fixture(scope="module")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rootfs holding only a static busybox and its applet links."""
    root = tmp_path_factory.mktemp("bbroot")
    (root / "bin").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for name in ("sh", "echo", "cat", "sleep", "ls", "true"):
        (root / "bin" / name).symlink_to("busybox")
    for d in ("tmp", "proc", "dev", "etc"):
        (root / d).mkdir()
    make_world_readable(root, tmp_path_factory)
    return root


def _native_sh(script: str) -> int:
    """What the host's sh reports for `script` as an exit status (128+N for signal N)."""
    rc = subprocess.run(["/bin/sh", "-c", script]).returncode
    return 128 - rc if rc < 0 else rc


# -- exit status, stdio ------------------------------------------------------------------

@pytest.mark.parametrize("script", ["exit 0", "exit 7", "exit 255", "kill -9 $$",
                                    "kill -TERM $$", "kill -SEGV $$"])
def test_exit_status_matches_the_host(sb: pyvisor.Sandbox, script: str) -> None:
    r = sb.run(script)
    native = subprocess.run(["/bin/sh", "-c", script]).returncode
    assert r.returncode == _native_sh(script)
    assert r.signal == (-native if native < 0 else None)


def test_list_command_and_separate_streams(sb: pyvisor.Sandbox) -> None:
    r = sb.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    assert r.args == ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert r.duration > 0 and r.pid > 1
    t = sb.run("echo hi", text=True)
    assert t.stdout == "hi\n"


def test_stdin_bytes_are_delivered_exactly(sb: pyvisor.Sandbox) -> None:
    data = bytes(range(256)) * 1024 + b"\0tail"        # 256 KiB: more than a pipe holds
    r = sb.run(["cat"], input=data)
    assert r.returncode == 0 and r.stdout == data
    r = sb.run(["wc", "-c"], input=data)
    assert r.stdout.split()[0] == str(len(data)).encode()


def test_env_cwd_user(sb: pyvisor.Sandbox) -> None:
    r = sb.run('echo "$GREETING $PWD $(id -u):$(id -g)"', env={"GREETING": "hello"},
               cwd="/tmp", user="1234:99", text=True)
    assert r.stdout == "hello /tmp 1234:99\n"
    assert "PATH=" in sb.run(["env"], text=True).stdout


def test_popen_streams_before_the_process_ends(sb: pyvisor.Sandbox) -> None:
    p = sb.popen(["sh", "-c", "echo ready; read x; echo got $x; echo bye >&2"])
    assert p.stdout is not None and p.stdin is not None and p.stderr is not None
    assert p.stdout.readline() == b"ready\n"
    assert p.poll() is None                  # still waiting for its input
    p.stdin.write(b"ping\n")
    p.stdin.close()
    assert p.stdout.read() == b"got ping\n"
    assert p.stderr.read() == b"bye\n"
    assert p.wait(timeout=60) == 0 and p.returncode == 0


def test_popen_signals_and_wait_timeout(sb: pyvisor.Sandbox) -> None:
    p = sb.popen(["sleep", "100"], stdin=pyvisor.DEVNULL, stdout=pyvisor.DEVNULL,
                 stderr=pyvisor.DEVNULL)
    with pytest.raises(pyvisor.Timeout):
        p.wait(timeout=0.2)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == -signal.SIGTERM      # as subprocess.Popen reports it
    assert p.signal == signal.SIGTERM and p.exit_code == 128 + signal.SIGTERM


def test_popen_communicate_and_stderr_to_stdout(sb: pyvisor.Sandbox) -> None:
    p = sb.popen("cat; echo e >&2", stderr=pyvisor.STDOUT)
    out, err = p.communicate(b"abc", timeout=60)
    assert (out, err, p.returncode) == (b"abce\n", None, 0)


# -- limits -------------------------------------------------------------------------------

def test_timeout_kills_the_run_and_its_children(sb: pyvisor.Sandbox) -> None:
    with pytest.raises(pyvisor.Timeout) as info:
        sb.run("echo started; sleep 100 & sleep 100", timeout=0.5)
    res = info.value.result
    assert res is not None and res.timed_out and res.returncode == 137
    assert res.stdout == b"started\n"
    deadline = time.monotonic() + 10
    while [p for p in sb.ps() if p["pid"] != 1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in sb.ps() if p["pid"] != 1] == []     # the background sleep too
    assert sb.run(["echo", "after"]).stdout == b"after\n"


def test_sandbox_default_timeout() -> None:
    with pyvisor.Sandbox(timeout=0.3) as s:
        with pytest.raises(pyvisor.Timeout):
            s.run(["sleep", "50"])
        assert s.run(["true"], timeout=30).returncode == 0


def test_out_of_memory_is_an_exception(program) -> None:  # type: ignore[no-untyped-def]
    alloc = program("alloc.c")
    with pyvisor.Sandbox(memory="128M") as s:
        assert s.run([alloc, "8"]).stdout == b"done\n"
        with pytest.raises(pyvisor.OutOfMemory) as info:
            s.run([alloc, "1024"])
        assert info.value.result is not None and info.value.result.oom_killed
        assert info.value.result.signal == signal.SIGKILL
        assert s.stats()["memory"]["oom_kills"] >= 1
        assert s.run(["echo", "alive"]).stdout == b"alive\n"      # the Sentry survived


def test_stats_and_ps(sb: pyvisor.Sandbox) -> None:
    st = sb.stats()
    assert st["memory"]["usage"] > 0 and st["memory"]["limit"] > 0
    assert st["processes"] >= 1 and st["tasks"] >= 1 and st["cpu"]["usage"] > 0
    p = sb.popen(["sleep", "30"], stdout=pyvisor.DEVNULL, stderr=pyvisor.DEVNULL)
    try:
        assert any(x["pid"] == p.pid and x["args"] == ["sleep", "30"] for x in sb.ps())
    finally:
        p.kill()
        p.wait(60)


def test_kill_ends_every_run_but_not_the_sandbox(sb: pyvisor.Sandbox) -> None:
    procs = [sb.popen(["sleep", "60"], stdout=pyvisor.DEVNULL) for _ in range(3)]
    assert sb.kill() >= 3
    assert [p.wait(60) for p in procs] == [-signal.SIGKILL] * 3
    assert sb.run(["true"]).returncode == 0


def test_orphans_are_reaped(sb: pyvisor.Sandbox) -> None:
    """A run that leaves a short-lived background child: the idle init adopts it, and the
    kernel reaps it when it dies (no zombie piles up in a warm sandbox)."""
    sb.run("sleep 0.2 & exit 0")               # adopted alive, dies later
    sb.run("true & exec sleep 0.3")            # a zombie child when its parent exits
    deadline = time.monotonic() + 20
    while [p for p in sb.ps() if p["pid"] != 1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in sb.ps() if p["pid"] != 1] == []


# -- many runs ----------------------------------------------------------------------------

def test_a_hundred_runs_in_one_sandbox(sb: pyvisor.Sandbox) -> None:
    for i in range(100):
        r = sb.run(["echo", str(i)])
        assert (r.returncode, r.stdout) == (0, f"{i}\n".encode())


def test_concurrent_runs(sb: pyvisor.Sandbox) -> None:
    def one(i: int) -> tuple[int, bytes, bytes]:
        r = sb.run(f"cat; echo {i} >&2; exit {i % 5}", input=f"in{i}".encode())
        return r.returncode, r.stdout, r.stderr
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(one, range(40)))
    assert results == [(i % 5, f"in{i}".encode(), f"{i}\n".encode()) for i in range(40)]


# -- files --------------------------------------------------------------------------------

def test_write_and_read_binary_file(sb: pyvisor.Sandbox) -> None:
    data = os.urandom(200_000) + b"\0" * 10
    sb.write_file("/tmp/api-bin", data, mode=0o640)
    assert sb.read_file("/tmp/api-bin") == data
    assert sb.run("stat -c %a /tmp/api-bin", text=True).stdout == "640\n"
    assert sb.run("md5sum < /tmp/api-bin", text=True).stdout.split()[0] == \
        subprocess.run(["md5sum"], input=data, capture_output=True,
                       text=False).stdout.split()[0].decode()
    sb.write_file("/tmp/api-bin", "short")                # truncates
    assert sb.read_file("/tmp/api-bin") == b"short"
    sb.write_file("/tmp/api-empty", b"")
    assert sb.read_file("/tmp/api-empty") == b""
    assert not os.path.exists("/tmp/api-bin")             # the host root is untouched


def test_file_errors_are_oserrors(sb: pyvisor.Sandbox) -> None:
    with pytest.raises(FileNotFoundError):
        sb.read_file("/no/such/file")
    with pytest.raises(IsADirectoryError):
        sb.read_file("/tmp")
    with pytest.raises(ValueError):
        sb.read_file("relative/path")


def _tree(base: Path) -> None:
    (base / "sub" / "deeper").mkdir(parents=True)
    (base / "a.txt").write_text("alpha\n")
    (base / "sub" / "bin.dat").write_bytes(bytes(range(256)) * 300)
    (base / "sub" / "deeper" / "empty").write_bytes(b"")
    (base / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (base / "run.sh").chmod(0o755)
    (base / "link").symlink_to("a.txt")


def _snapshot(base: Path) -> dict[str, tuple[str, int, bytes]]:
    out = {}
    for p in sorted(base.rglob("*")):
        rel = str(p.relative_to(base))
        if p.is_symlink():
            out[rel] = ("link", 0, os.readlink(p).encode())
        elif p.is_dir():
            out[rel] = ("dir", p.stat().st_mode & 0o777, b"")
        else:
            out[rel] = ("file", p.stat().st_mode & 0o777, p.read_bytes())
    return out


def test_directory_round_trip(sb: pyvisor.Sandbox, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    sb.upload(src, "/work/in")
    assert sb.run("/work/in/run.sh", text=True).stdout == "ran\n"
    assert sb.run("cat /work/in/link", text=True).stdout == "alpha\n"
    dst = tmp_path / "dst"
    sb.download("/work/in", dst)
    assert _snapshot(dst) == _snapshot(src)
    sb.download("/work/in/a.txt", tmp_path / "one.txt")
    assert (tmp_path / "one.txt").read_text() == "alpha\n"


def test_busybox_rootfs(busybox_rootfs: Path, tmp_path: Path) -> None:
    """Everything works on an image with nothing but busybox: runs, and file transfer
    (served by the Sentry, not by a tar inside)."""
    with pyvisor.Sandbox(busybox_rootfs) as s:
        assert s.run(["echo", "bb"]).stdout == b"bb\n"
        assert s.run("exit 9").returncode == 9
        src = tmp_path / "src"
        _tree(src)
        s.upload(src, "/data")
        s.write_file("/data/blob", os.urandom(100_000))
        dst = tmp_path / "dst"
        s.download("/data", dst)
        assert _snapshot(dst) == {**_snapshot(src), "blob": _snapshot(dst)["blob"]}
        assert (dst / "blob").read_bytes() == s.read_file("/data/blob")
    assert sorted(os.listdir(busybox_rootfs)) == ["bin", "dev", "etc", "proc", "tmp"]


def test_readonly_and_mounts(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "in.txt").write_text("from host\n")
    make_world_readable(share, tmp_path_factory)
    with pytest.raises(pyvisor.SandboxError, match="mount point"):
        pyvisor.Sandbox(mounts=[(str(share), "/no-such-dir")], readonly=True)
    with pyvisor.Sandbox(mounts=[pyvisor.Mount.bind(str(share), "/mnt")], readonly=True) as s:
        assert s.run("cat /mnt/in.txt", text=True).stdout == "from host\n"
        r = s.run("echo x > /etc/api-test", text=True)
        assert r.returncode != 0 and "Read-only" in r.stderr
        with pytest.raises(OSError):
            s.write_file("/etc/api-test", b"x")
        s.run("echo back > /mnt/out.txt")
    assert (share / "out.txt").read_text() == "back\n"       # a rw bind mount
    with pyvisor.Sandbox(binds=[(str(share), "/share", "ro")]) as s:   # overlay root: made
        assert s.read_file("/share/in.txt") == b"from host\n"
        assert s.run("echo y > /share/in.txt").returncode != 0


# -- errors -------------------------------------------------------------------------------

def test_bad_rootfs() -> None:
    with pytest.raises(pyvisor.SandboxError, match="not a directory"):
        pyvisor.Sandbox("/no/such/rootfs")
    with pytest.raises(pyvisor.SandboxError, match="image names are not supported"):
        pyvisor.Sandbox("alpine")
    with pytest.raises(pyvisor.SandboxError, match="network"):
        pyvisor.Sandbox(network="bridge")


@pytest.mark.parametrize("network", ["none", "sandbox", "host"])
def test_network_modes(network: str) -> None:
    """Loopback inside works in every mode; only "host" reaches a listener of the host's."""
    import socket
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    probe = ("import socket\n"
             "s = socket.create_server(('127.0.0.1', 0)); p = s.getsockname()[1]\n"
             "c = socket.create_connection(('127.0.0.1', p)); a, _ = s.accept()\n"
             "c.sendall(b'ping'); print(a.recv(4).decode())\n"
             "try:\n"
             f"    socket.create_connection(('127.0.0.1', {port}), timeout=5); print('host')\n"
             "except OSError as e:\n"
             "    print(e.errno)\n")
    try:
        with pyvisor.Sandbox(network=network) as sb:
            r = sb.run(["python3", "-c", probe], timeout=60)
    finally:
        listener.close()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().split()
    assert lines[0] == "ping"
    assert lines[1] == ("host" if network == "host" else "111")     # ECONNREFUSED


def test_rootfs_without_programs(tmp_path: Path,
                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    (tmp_path / "empty").mkdir()
    make_world_readable(tmp_path / "empty", tmp_path_factory)
    with pytest.raises(pyvisor.SandboxError, match="nothing to load"):
        pyvisor.Sandbox(tmp_path / "empty")


def test_command_not_found(sb: pyvisor.Sandbox) -> None:
    with pytest.raises(pyvisor.CommandNotFound, match="no-such-program"):
        sb.run(["no-such-program"])
    with pytest.raises(pyvisor.CommandNotFound):
        sb.run(["/no/such/path"])
    r = sb.run("no-such-program")                   # through sh: the shell's answer
    assert r.returncode == _native_sh("no-such-program-xyz 2>/dev/null")
    sb.write_file("/tmp/no-shebang", b"echo hi\n", mode=0o755)
    with pytest.raises(pyvisor.SandboxError, match="Exec format error") as info:
        sb.run(["/tmp/no-shebang"])                 # exists, cannot be executed (ENOEXEC)
    assert not isinstance(info.value, pyvisor.CommandNotFound)
    with pytest.raises(pyvisor.SandboxError, match="working directory"):
        sb.run(["true"], cwd="/no/such/dir")
    assert sb.run(["true"]).returncode == 0


def test_gvisor_bindings_exec(sb: pyvisor.Sandbox) -> None:
    assert sb.exec("echo", "a", "b") == ("a b\n", "")
    assert sb.exec(["sh", "-c", "echo x >&2"]) == ("", "x\n")
    with pytest.raises(pyvisor.CommandError) as info:
        sb.exec("sh", "-c", "echo bad >&2; exit 4")
    assert info.value.returncode == 4 and "bad" in str(info.value.stderr)
    with pytest.raises(pyvisor.CommandError):
        sb.run("exit 1", check=True)


# -- lifecycle ----------------------------------------------------------------------------

def _host_pids_mentioning(text: str) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmd:
            out.append(int(pid))
    return out


def test_nothing_left_after_close() -> None:
    s = pyvisor.Sandbox()
    s.run("sleep 100 &")
    p = s.popen(["sleep", "100"], stdout=pyvisor.DEVNULL)
    runtime_dir, monitor, cgroups = s.runtime_dir, s.monitor_pid, list(s._cgroup_dirs)
    assert cgroups and all(os.path.isdir(d) for d in cgroups)
    assert _host_pids_mentioning(runtime_dir)
    s.close()
    s.close()                                   # idempotent
    assert p.wait(60) == -signal.SIGKILL
    assert not os.path.exists(runtime_dir)
    assert not os.path.exists(f"/proc/{monitor}") or \
        Path(f"/proc/{monitor}/stat").read_text().split()[2] == "Z"
    assert _host_pids_mentioning(runtime_dir) == []
    assert [d for d in cgroups if os.path.exists(d)] == []
    with pytest.raises(pyvisor.SandboxClosed):
        s.run(["true"])


def test_reset_and_fresh_runs() -> None:
    with pyvisor.Sandbox() as s:
        s.write_file("/tmp/leftover", b"secret")
        s.run("sleep 100 &")
        old = s.id
        s.reset()
        assert s.id != old
        assert s.run("cat /tmp/leftover").returncode != 0
        assert [p for p in s.ps() if p["pid"] != 1] == []
        s.write_file("/tmp/leftover", b"again")
        r = s.run("cat /tmp/leftover 2>/dev/null; echo $$", fresh=True, text=True)
        assert r.stdout == "2\n"                   # a new Sentry: the file gone, pids anew


def test_thread_safety_of_close() -> None:
    s = pyvisor.Sandbox()
    ts = [threading.Thread(target=s.close) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert s.closed and not os.path.exists(s.runtime_dir)


def test_malformed_file_requests_get_errors(sb: pyvisor.Sandbox) -> None:
    """The fs_* control methods refuse bad input with an errno; the Sentry keeps serving."""
    from pyvisor.runtime import control
    bad = [("fs_read", {"path": "relative"}), ("fs_read", {"path": "/etc/hostname",
                                                           "length": 1 << 30}),
           ("fs_write", {"path": "/tmp/x", "data": "!!not base64!!"}),
           ("fs_write", {"path": "/tmp/x", "data": "", "offset": -1}),
           ("fs_mkdir", {"path": 5}), ("fs_symlink", {"path": "/tmp/l", "target": ""}),
           ("fs_list", {"path": "/etc/hostname"}), ("fs_stat", {"path": "/no\0pe"})]
    for method, params in bad:
        with pytest.raises(control.ControlError):
            control.call(sb.control_path, method, params)
    assert sb.read_file("/etc/hostname") == Path("/etc/hostname").read_bytes()
