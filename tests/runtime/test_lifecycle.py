"""The OCI lifecycle, verb by verb, compared with runc running the same busybox bundle.

create -> created -> start -> running -> (kill) -> stopped -> delete -> gone, each
verb's error cases (unknown id, wrong state, duplicate id), exec with its exit
status and stdio, and that nothing (process, cgroup, state directory) is left
behind after delete, even when the sandbox was SIGKILLed.  Each runtime gets its
own --root under the test's temp dir.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from pvtest import REPO, pyvisor_env

BUSYBOX = "/bin/busybox"
RUNTIMES = ["pyvisor", "runc"]


def make_bundle(base: Path, args: list[str]) -> Path:
    """A busybox-static rootfs (applet symlinks) with a config.json both runtimes accept."""
    bundle = base / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for name in ("sh", "echo", "cat", "sleep", "true", "ls", "id"):
        (rootfs / "bin" / name).symlink_to("busybox")
    for d in ("proc", "tmp", "dev", "etc", "sys"):
        (rootfs / d).mkdir()
    write_config(bundle, args)
    os.chmod(base, 0o755)
    return bundle


def write_config(bundle: Path, args: list[str]) -> None:
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/bin", "GREETING=hello"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "lifecycle",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "annotations": {"org.example.test": "yes"},
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts",
                                                        "network")]},
    }
    (bundle / "config.json").write_text(json.dumps(config))


class Runtime:
    """One runtime's command line with a --root of its own."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.root = base / f"state-{name}"
        self.base = base
        if name == "runc" and shutil.which("runc") is None:
            pytest.skip("runc is not installed (scripts/install.sh installs it)")
        self.argv = ([sys.executable, "-m", "pyvisor"] if name == "pyvisor" else ["runc"]) + \
            ["--root", str(self.root)]
        self.env = pyvisor_env(None)

    def __call__(self, *args: str, stdin: Any = subprocess.DEVNULL, input: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], stdin=None if input is not None else stdin,
                              input=input, capture_output=True, text=True, timeout=timeout,
                              env=self.env, cwd=str(REPO))

    def create(self, cid: str, bundle: Path, out: Path,
               *extra: str) -> subprocess.CompletedProcess[str]:
        """create with the container's stdout/stderr in a file (a pipe would stay open for
        the container's lifetime, with runc as with pyvisor)."""
        err = out.with_name(out.name + ".err")
        with open(out, "w") as f, open(err, "w") as e:
            p = subprocess.run([*self.argv, "create", "--bundle", str(bundle), *extra, cid],
                               stdin=subprocess.DEVNULL, stdout=f, stderr=e,
                               text=True, timeout=60, env=self.env, cwd=str(REPO))
        return subprocess.CompletedProcess(p.args, p.returncode, "", err.read_text())

    def state(self, cid: str) -> dict[str, Any]:
        r = self("state", cid)
        assert r.returncode == 0, r.stderr
        return dict(json.loads(r.stdout))

    def wait_status(self, cid: str, status: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st["status"] == status or time.monotonic() > deadline:
                return st
            time.sleep(0.05)


@pytest.fixture(params=RUNTIMES)
def rt(request: pytest.FixtureRequest, world_tmp: Path) -> Any:
    r = Runtime(request.param, world_tmp)
    yield r
    # Leave nothing running whatever the test did.
    if r.root.is_dir():
        for cid in os.listdir(r.root):
            r("delete", "--force", cid)


def _cid() -> str:
    return f"lc-{uuid.uuid4().hex[:10]}"


def _wait_for(pred: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _one_error_line(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode != 0, r
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_state_machine(rt: Runtime, world_tmp: Path) -> None:
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "echo started $GREETING; sleep 60"])
    cid, out, pidfile = _cid(), world_tmp / "out", world_tmp / "pid"
    r = rt.create(cid, bundle, out, "--pid-file", str(pidfile))
    assert r.returncode == 0, r.stderr
    st = rt.state(cid)
    assert st["status"] == "created" and st["id"] == cid and st["bundle"] == str(bundle)
    assert st["pid"] > 0 and int(pidfile.read_text()) == st["pid"]
    assert st["ociVersion"].startswith("1.0")
    assert out.read_text() == ""                     # held: the program has not run
    r = rt("start", cid)
    assert r.returncode == 0, r.stderr
    assert rt.state(cid)["status"] == "running"
    assert _wait_for(lambda: out.read_text() == "started hello\n"), out.read_text()
    listed = json.loads(rt("list", "--format", "json").stdout)
    assert [(c["id"], c["status"]) for c in listed] == [(cid, "running")]
    assert rt("list", "-q").stdout.split() == [cid]
    r = rt("kill", cid, "KILL")
    assert r.returncode == 0, r.stderr
    st = rt.wait_status(cid, "stopped")
    assert st["status"] == "stopped" and st["pid"] == 0
    r = rt("delete", cid)
    assert r.returncode == 0, r.stderr
    _one_error_line(rt("state", cid))
    assert json.loads(rt("list", "--format", "json").stdout) is None   # runc prints null


def test_error_cases(rt: Runtime, world_tmp: Path) -> None:
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60"])
    unknown = "no-such-container"
    for verb in (["state"], ["start"], ["kill"], ["delete"], ["exec"], ["pause"], ["ps"]):
        args = [*verb, unknown] + (["true"] if verb == ["exec"] else [])
        _one_error_line(rt(*args))
    assert rt("delete", "--force", unknown).returncode == 0        # runc: not an error
    cid = _cid()
    assert rt.create(cid, bundle, world_tmp / "out").returncode == 0
    _one_error_line(rt.create(cid, bundle, world_tmp / "out2"))    # duplicate id
    assert rt.state(cid)["status"] == "created"                    # untouched by it
    _one_error_line(rt("kill", cid, "NOSUCHSIGNAL"))
    assert rt("start", cid).returncode == 0
    _one_error_line(rt("start", cid))                              # already running
    r = rt("delete", cid)                                          # running, no --force
    _one_error_line(r)
    assert "not stopped" in r.stderr
    assert rt.state(cid)["status"] == "running"
    assert rt("kill", cid, "9").returncode == 0
    assert rt.wait_status(cid, "stopped")["status"] == "stopped"
    _one_error_line(rt("kill", cid))                               # not running
    _one_error_line(rt("start", cid))                              # has stopped
    _one_error_line(rt("exec", cid, "true"))                       # stopped
    assert rt("delete", cid).returncode == 0


def test_delete_of_created_container_needs_no_force(rt: Runtime, world_tmp: Path) -> None:
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "echo ran"])
    cid, out = _cid(), world_tmp / "out"
    assert rt.create(cid, bundle, out).returncode == 0
    pid = rt.state(cid)["pid"]
    r = rt("delete", cid)
    assert r.returncode == 0, r.stderr
    assert _wait_for(lambda: not _alive(pid)), "the sandbox outlived delete"
    assert out.read_text() == ""                                    # never started


def test_exec(rt: Runtime, world_tmp: Path) -> None:
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60"])
    cid = _cid()
    assert rt.create(cid, bundle, world_tmp / "out").returncode == 0
    r = rt("exec", cid, "sh", "-c", "echo in-created; exit 4")      # runc allows it
    assert (r.returncode, r.stdout) == (4, "in-created\n"), r.stderr
    assert rt("start", cid).returncode == 0
    r = rt("exec", cid, "sh", "-c", "echo $GREETING; echo err >&2; exit 5")
    assert (r.returncode, r.stdout, r.stderr.strip()) == (5, "hello\n", "err")
    r = rt("exec", cid, "cat", input="through stdin\n")
    assert (r.returncode, r.stdout) == (0, "through stdin\n"), r.stderr
    r = rt("exec", "--env", "X=1", "--cwd", "/proc", cid, "sh", "-c", "echo $X $(pwd)")
    assert (r.returncode, r.stdout) == (0, "1 /proc\n"), r.stderr
    r = rt("exec", "--user", "1000:1000", cid, "id")
    assert r.returncode == 0 and r.stdout.startswith("uid=1000 gid=1000"), r
    r = rt("exec", cid, "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM, r
    _one_error_line(rt("exec", cid, "no-such-program"))
    proc = {"args": ["sh", "-c", "echo from-process-file; exit 3"], "cwd": "/",
            "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}, "terminal": False}
    (world_tmp / "process.json").write_text(json.dumps(proc))
    r = rt("exec", "--process", str(world_tmp / "process.json"), cid)
    assert (r.returncode, r.stdout) == (3, "from-process-file\n"), r.stderr


def test_exec_detach_pid_file(rt: Runtime, world_tmp: Path) -> None:
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60"])
    cid, out = _cid(), world_tmp / "exec-out"
    assert rt.create(cid, bundle, world_tmp / "out").returncode == 0
    assert rt("start", cid).returncode == 0
    with open(out, "w") as f:
        r = subprocess.run([*rt.argv, "exec", "--detach", "--pid-file",
                            str(world_tmp / "exec.pid"), cid, "sh", "-c", "echo detached"],
                           stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                           text=True, timeout=60, env=rt.env, cwd=str(REPO))
    assert r.returncode == 0, r.stderr
    assert int((world_tmp / "exec.pid").read_text()) > 0
    assert _wait_for(lambda: out.read_text() == "detached\n"), out.read_text()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _cgroups(name: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/*/**/{name}", recursive=True)


@pytest.mark.parametrize("how", ["delete-force", "sigkill-then-delete"])
def test_nothing_left_behind(how: str, world_tmp: Path) -> None:
    rt = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60"])
    cid = _cid()
    assert rt.create(cid, bundle, world_tmp / "out").returncode == 0
    assert rt("start", cid).returncode == 0
    saved = json.loads((rt.root / cid / "state.json").read_text())
    monitor, sentry, cgroup = saved["pid"], saved["sentry_pid"], saved["cgroup"]
    assert _alive(monitor) and _alive(sentry) and _cgroups(cgroup)
    if how == "sigkill-then-delete":
        os.kill(monitor, signal.SIGKILL)
        assert _wait_for(lambda: rt.state(cid)["status"] == "stopped")
        r = rt("delete", cid)
    else:
        r = rt("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert _wait_for(lambda: not _alive(monitor) and not _alive(sentry))
    assert not (rt.root / cid).exists()
    assert not _cgroups(cgroup)


def test_exit_status_recorded(world_tmp: Path) -> None:
    """The init's own exit: stopped, with its status for `wait`, and `delete` cleans up."""
    rt = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "exit 7"])
    cid = _cid()
    assert rt.create(cid, bundle, world_tmp / "out").returncode == 0
    assert rt("start", cid).returncode == 0
    r = rt("wait", cid)
    assert r.returncode == 0 and json.loads(r.stdout) == {"id": cid, "exitStatus": 7}, r
    assert rt.state(cid)["status"] == "stopped"
    assert rt("delete", cid).returncode == 0


def test_run_detach_ps_events_pause_update(world_tmp: Path) -> None:
    rt = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60; echo done"])
    cid = _cid()
    with open(world_tmp / "out", "w") as f:
        r = subprocess.run([*rt.argv, "run", "--detach", "--bundle", str(bundle), cid],
                           stdin=subprocess.DEVNULL, stdout=f, stderr=f, text=True,
                           timeout=60, env=rt.env, cwd=str(REPO))
    assert r.returncode == 0, r.stderr
    assert rt.state(cid)["status"] == "running"
    assert rt.state(cid)["annotations"] == {"org.example.test": "yes"}
    assert _wait_for(lambda: len(rt("ps", cid).stdout.splitlines()) == 3)
    rows = [ln.split() for ln in rt("ps", cid).stdout.splitlines()[1:]]
    assert [(int(r[1]), int(r[2]), r[6]) for r in rows] == [(1, 0, "/bin/sh"), (2, 1, "sleep")]
    # --format json is runc's: the host pids of the container's own processes (each one's
    # stub), named after its program on the host, as engines show them (docker top).
    pids = json.loads(rt("ps", "--format", "json", cid).stdout)
    assert rt.state(cid)["pid"] not in pids                   # not the monitor
    assert sorted(Path(f"/proc/{p}/comm").read_text().strip() for p in pids) == \
        ["sh", "sleep"], pids
    stats = json.loads(rt("events", "--stats", cid).stdout)
    assert stats["type"] == "stats" and stats["id"] == cid
    assert stats["data"]["memory"]["usage"]["usage"] > 0
    assert stats["data"]["pids"]["current"] >= 3          # Sentry, Gofer, stubs
    assert rt("update", "--pids-limit", "100", "--memory", "512M", cid).returncode == 0
    stats = json.loads(rt("events", "--stats", cid).stdout)
    assert stats["data"]["pids"]["limit"] == 100
    assert stats["data"]["memory"]["usage"]["limit"] == 512 << 20
    assert rt("pause", cid).returncode == 0
    assert rt.state(cid)["status"] == "paused"
    _one_error_line(rt("pause", cid))
    assert rt("resume", cid).returncode == 0
    assert rt.state(cid)["status"] == "running"
    r = rt("exec", cid, "echo", "after-resume")
    assert (r.returncode, r.stdout) == (0, "after-resume\n"), r.stderr
    assert rt("delete", "--force", cid).returncode == 0


def test_spec_features_version(world_tmp: Path) -> None:
    rt = Runtime("pyvisor", world_tmp)
    d = world_tmp / "spec"
    d.mkdir()
    assert rt("spec", "--bundle", str(d)).returncode == 0
    spec = json.loads((d / "config.json").read_text())
    assert spec["process"]["args"] == ["sh"] and spec["root"]["path"] == "rootfs"
    _one_error_line(rt("spec", "--bundle", str(d)))          # exists already, as runc
    feats = json.loads(rt("features").stdout)
    assert feats["ociVersionMin"] == "1.0.0" and "linux" in feats
    assert "pyvisor" in rt("--version").stdout


def test_a_venv_interpreter_works(world_tmp: Path) -> None:
    """A venv (no system site-packages, so no python3-seccomp) still runs sandboxes: the
    system's seccomp extension is loaded when its ABI matches (runtime/interp.py)."""
    venv = world_tmp / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    py = str(venv / "bin" / "python3")
    probe = subprocess.run([py, "-c", "import seccomp"], capture_output=True)
    assert probe.returncode != 0               # the venv alone cannot import it
    r = subprocess.run([py, "-m", "pyvisor", "do", "--", "/bin/sh", "-c", "echo ok; exit 3"],
                       capture_output=True, text=True, timeout=60, env=pyvisor_env(None),
                       cwd=str(REPO))
    assert (r.returncode, r.stdout) == (3, "ok\n"), r.stderr


def test_concurrent_starts_are_serialised(world_tmp: Path) -> None:
    """Two `start`s at once: the lock lets exactly one through; the other sees `running`."""
    rt = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "echo once; sleep 60"])
    cid, out = _cid(), world_tmp / "out"
    assert rt.create(cid, bundle, out).returncode == 0
    procs = [subprocess.Popen([*rt.argv, "start", cid], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=rt.env,
                              cwd=str(REPO)) for _ in range(2)]
    codes = sorted(p.wait(timeout=60) for p in procs)
    assert codes[0] == 0 and codes[1] != 0, codes
    assert _wait_for(lambda: out.read_text() == "once\n"), out.read_text()
    assert rt.state(cid)["status"] == "running"


def test_control_socket_survives_bad_requests(world_tmp: Path) -> None:
    """Garbage on the control socket gets error replies; the Sentry serves on."""
    import array
    import socket
    rt = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60"])
    cid = _cid()
    assert rt.create(cid, bundle, world_tmp / "out").returncode == 0
    assert rt("start", cid).returncode == 0
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(30)
    s.connect(str(rt.root / cid / "control.sock"))
    bad: list[bytes] = [b"not json", b"[1, 2]", b'{"id": 1}', b'{"id": 2, "method": 5}',
                        b'{"id": 3, "method": "nope"}',
                        b'{"id": 4, "method": "exec", "params": {"args": "sh"}}',
                        b'{"id": 5, "method": "exec", "params": {"args": ["sh"], "uid": -1}}',
                        b'{"id": 6, "method": "kill", "params": {"signal": 99}}',
                        b'{"id": 7, "method": "wait_pid", "params": {"pid": 12345}}',
                        b'{"id": 8, "method": "start", "params": {}}',
                        b'{"id": 9, "method": "signal_process", "params": {"pid": 999, '
                        b'"signal": 9}}',
                        b'{"id": 10, "method": "update", "params": {"pids_limit": "x"}}',
                        b'{"id": 11, "method": "exec", "params": {"args": ["a\\u0000b"]}}']
    for msg in bad:
        s.send(msg)
        reply = json.loads(s.recv(65536))
        assert "error" in reply and "result" not in reply, (msg, reply)
    # Four fds where exec takes three: refused, and the fds are not kept.
    r, w = os.pipe()
    s.sendmsg([b'{"id": 12, "method": "exec", "params": {"args": ["true"]}}'],
              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r, w, r, w]))])
    os.close(w)
    assert "error" in json.loads(s.recv(65536))
    assert os.read(r, 1) == b""                  # no writer left anywhere: the Sentry closed it
    os.close(r)
    s.close()
    r2 = rt("exec", cid, "echo", "still-serving")
    assert (r2.returncode, r2.stdout) == (0, "still-serving\n"), r2.stderr
