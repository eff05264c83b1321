"""Pods: several containers in one sandbox, driven as containerd and CRI-O drive runsc.

The first bundle carries `io.kubernetes.cri.container-type: sandbox`; later ones
`container` and the sandbox's id (containerd's annotations, or CRI-O's, which podman
uses), so pyvisor makes them inside the first one's Sentry (runtime/pod.py,
runtime/sentry_pod.py).  Each bundle has a busybox root of its own holding a file that
names it, so a process shows whose root it sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from engines import busybox_rootfs
from pvtest import REPO, pyvisor_env

CRI_TYPE, CRI_SANDBOX = "io.kubernetes.cri.container-type", "io.kubernetes.cri.sandbox-id"
CRIO_TYPE, CRIO_SANDBOX = "io.kubernetes.cri-o.ContainerType", "io.kubernetes.cri-o.SandboxID"


def make_bundle(base: Path, name: str, args: list[str], annotations: dict[str, str],
                mounts: list[dict[str, Any]] | None = None) -> Path:
    bundle = base / name
    rootfs = busybox_rootfs(bundle / "rootfs")
    (rootfs / "etc" / "whoami").write_text(name + "\n")
    config = {
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": args, "env": ["PATH=/bin"],
                    "cwd": "/"},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": f"host-{name}",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   *(mounts or [])],
        "annotations": annotations,
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts",
                                                        "network")]},
    }
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


class Pyvisor:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "state"
        self.argv = [sys.executable, "-m", "pyvisor", "--root", str(self.root)]
        self.env = pyvisor_env(None)

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, env=self.env,
                              cwd=str(REPO))

    def create(self, cid: str, bundle: Path) -> subprocess.CompletedProcess[str]:
        """create with the container's stdout/stderr in files (out/<cid>, out/<cid>.err)."""
        out = self.base / "out"
        out.mkdir(exist_ok=True)
        with open(out / cid, "w") as f, open(out / f"{cid}.err", "w") as e:
            p = subprocess.run([*self.argv, "create", "--bundle", str(bundle), cid],
                               stdin=subprocess.DEVNULL, stdout=f, stderr=e, text=True,
                               timeout=60, env=self.env, cwd=str(REPO))
        return subprocess.CompletedProcess(p.args, p.returncode, "",
                                           (out / f"{cid}.err").read_text())

    def output(self, cid: str) -> str:
        return (self.base / "out" / cid).read_text()

    def state(self, cid: str) -> dict[str, Any]:
        r = self("state", cid)
        assert r.returncode == 0, r.stderr
        return dict(json.loads(r.stdout))

    def ps(self, cid: str) -> list[str]:
        r = self("ps", cid)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()[1:]


@pytest.fixture
def pv(world_tmp: Path) -> Any:
    os.chmod(world_tmp, 0o755)
    p = Pyvisor(world_tmp)
    yield p
    if p.root.is_dir():
        for cid in sorted(os.listdir(p.root), key=lambda c: not c.startswith("pod")):
            p("delete", "--force", cid)
    assert _leftovers(world_tmp) == []


def _leftovers(base: Path) -> list[str]:
    """Processes still naming the test's directory (monitors, Gofer keepers, Gofers)."""
    found = []
    deadline = time.monotonic() + 10
    while True:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if str(base).encode() in cmd and stat[stat.rfind(")") + 2] != "Z":
                text = cmd.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry} {text}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


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
    assert "Traceback" not in r.stderr


def _ids() -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"pod-{tag}", f"a-{tag}", f"b-{tag}"


def test_pod_lifecycle_and_loopback(pv: Pyvisor, world_tmp: Path) -> None:
    """A sandbox, a server member (containerd's annotations) and a client member (CRI-O's):
    each sees its own root and the pod's hostname; the client reaches the server at
    127.0.0.1; each member's verbs act on it alone; deleting one leaves the pod running."""
    sid, srv, cli = _ids()
    shared = world_tmp / "shared"
    shared.mkdir()
    (shared / "note").write_text("bound\n")
    make_bundle(world_tmp, "sandbox", ["sleep", "1000"], {CRI_TYPE: "sandbox"})
    make_bundle(world_tmp, "server", ["sh", "-c", "cat /etc/whoami; hostname; cat /data/note; "
                                      "echo served-by-$(cat /etc/whoami) | nc -l -p 7070"],
                {CRI_TYPE: "container", CRI_SANDBOX: sid},
                [{"destination": "/data", "type": "bind", "source": str(shared),
                  "options": ["rbind", "ro"]}])
    make_bundle(world_tmp, "client", ["sh", "-c", "cat /etc/whoami; hostname; "
                                      "until nc 127.0.0.1 7070 </dev/null; do sleep 0.1; "
                                      "done; exit 5"],
                {CRIO_TYPE: "container", CRIO_SANDBOX: sid})
    assert pv.create(sid, world_tmp / "sandbox").returncode == 0
    assert pv("start", sid).returncode == 0
    r = pv.create(srv, world_tmp / "server")
    assert r.returncode == 0, r.stderr
    st = pv.state(srv)
    assert st["status"] == "created" and st["pid"] > 0
    assert pv.output(srv) == ""                       # held until start
    assert pv("start", srv).returncode == 0
    assert pv.state(srv)["status"] == "running"
    assert _wait_for(lambda: pv.output(srv).count("\n") >= 3), pv.output(srv)
    # The member's root is its own, the hostname the pod's (the sandbox's UTS).
    assert pv.output(srv) == "server\nhost-sandbox\nbound\n"
    # Only the member's own processes, in its ps and not in the sandbox's.
    assert any("nc -l -p 7070" in ln for ln in pv.ps(srv))
    assert not any("sleep 1000" in ln for ln in pv.ps(srv))
    assert [ln for ln in pv.ps(sid) if "nc" in ln or "cat" in ln] == []
    # exec in a member runs in its root.
    r = pv("exec", srv, "cat", "/etc/whoami")
    assert (r.returncode, r.stdout) == (0, "server\n"), r.stderr
    r = pv("exec", sid, "cat", "/etc/whoami")
    assert (r.returncode, r.stdout) == (0, "sandbox\n"), r.stderr
    # The client reaches the server over the pod's loopback.
    assert pv.create(cli, world_tmp / "client").returncode == 0
    assert pv("start", cli).returncode == 0
    r = pv("wait", cli, timeout=60)
    assert json.loads(r.stdout)["exitStatus"] == 5, (r.stdout, pv.output(cli))
    assert pv.output(cli) == "client\nhost-sandbox\nserved-by-server\n"
    assert pv.state(cli)["status"] == "stopped"
    # The server's nc exits once served: its init's exit stops the member.
    assert _wait_for(lambda: pv.state(srv)["status"] == "stopped")
    assert json.loads(pv("wait", srv).stdout)["exitStatus"] == 0
    # Deleting the members leaves the pod running.
    for cid in (cli, srv):
        assert pv("delete", cid).returncode == 0
        _one_error_line(pv("state", cid))
    assert pv.state(sid)["status"] == "running"
    r = pv("exec", sid, "echo", "still")
    assert (r.returncode, r.stdout) == (0, "still\n"), r.stderr


def test_member_kill_exec_and_sandbox_delete(pv: Pyvisor, world_tmp: Path) -> None:
    """kill acts on the member only; a member's init dying takes its other processes
    with it; deleting the sandbox container stops every member."""
    sid, a, b = _ids()
    make_bundle(world_tmp, "sandbox", ["sleep", "1000"], {CRI_TYPE: "sandbox"})
    make_bundle(world_tmp, "a", ["sh", "-c", "(sleep 1001 &); sleep 1000"],
                {CRI_TYPE: "container", CRI_SANDBOX: sid})
    make_bundle(world_tmp, "b", ["sleep", "1000"], {CRI_TYPE: "container", CRI_SANDBOX: sid})
    assert pv.create(sid, world_tmp / "sandbox").returncode == 0
    assert pv("start", sid).returncode == 0
    for cid, name in ((a, "a"), (b, "b")):
        r = pv.create(cid, world_tmp / name)
        assert r.returncode == 0, r.stderr
        assert pv("start", cid).returncode == 0
    assert _wait_for(lambda: sum("sleep 100" in ln for ln in pv.ps(a)) == 2), pv.ps(a)
    # The orphaned `sleep 1001` was adopted by the member's init, not the sandbox's.
    rows = {ln.split(None, 6)[6]: ln.split() for ln in pv.ps(a)}
    # (sh exec'd its last command: the init is `sleep 1000` now, without a parent.)
    assert rows["sleep 1000"][2] == "0" and rows["sleep 1001"][2] == rows["sleep 1000"][1], \
        rows
    r = subprocess.run([*pv.argv, "exec", "--detach", a, "sleep", "999"], timeout=60,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=pv.env)   # the process keeps its stdio
    assert r.returncode == 0
    assert _wait_for(lambda: any("sleep 999" in ln for ln in pv.ps(a)))
    assert pv("kill", a, "TERM").returncode == 0
    assert _wait_for(lambda: pv.state(a)["status"] == "stopped")
    assert json.loads(pv("wait", a).stdout)["exitStatus"] == 143
    # The pod and the other member run on; no process of `a` is left in the sandbox.
    assert pv.state(sid)["status"] == "running" and pv.state(b)["status"] == "running"
    r = pv("exec", sid, "ps")
    assert "sleep 999" not in r.stdout and "sleep 1001" not in r.stdout, r.stdout
    _one_error_line(pv("exec", a, "true"))            # a stopped member
    # Each member sees and signals its own processes only, as in a PID namespace of its
    # own; its init ignores its own processes' signals it has no handler for, as PID 1.
    assert r.stdout.count("sleep 1000") == 1, r.stdout        # the sandbox's own
    sandbox_sleep = next(ln.split()[1] for ln in pv.ps(sid) if ln.endswith("sleep 1000"))
    b_init = next(ln.split()[1] for ln in pv.ps(b) if ln.endswith("sleep 1000"))
    r = pv("exec", b, "sh", "-c", f"ps; kill -9 {sandbox_sleep}; echo $?; "
           f"ls /proc/{sandbox_sleep} 2>&1 >/dev/null | wc -l; kill -9 -1; kill {b_init}; "
           "sleep 0.2; echo survived")
    assert r.stdout.count("sleep 1000") == 1 and r.stdout.endswith("1\n1\nsurvived\n"), \
        r.stdout + r.stderr
    assert pv.state(sid)["status"] == "running" and pv.state(b)["status"] == "running"
    assert any(ln.endswith("sleep 1000") for ln in pv.ps(b))
    # Deleting the sandbox container ends the pod: `b` is stopped (killed with it).
    assert pv("delete", "--force", sid).returncode == 0
    assert _wait_for(lambda: pv.state(b)["status"] == "stopped")
    assert json.loads(pv("wait", b).stdout)["exitStatus"] == 137
    for cid in (a, b):
        assert pv("delete", cid).returncode == 0


def test_pod_errors(pv: Pyvisor, world_tmp: Path) -> None:
    """Bad pod annotations and a missing sandbox: one line, nothing left behind."""
    sid, a, b = _ids()
    cases = [({CRI_TYPE: "container", CRI_SANDBOX: "no-such-sandbox"}, "does not exist"),
             ({CRI_TYPE: "container"}, "no sandbox ID"),
             ({CRIO_TYPE: "sidecar", CRIO_SANDBOX: sid}, "unknown container-type")]
    for i, (notes, message) in enumerate(cases):
        make_bundle(world_tmp, f"bad{i}", ["true"], notes)
        r = pv.create(f"{a}-{i}", world_tmp / f"bad{i}")
        _one_error_line(r)
        assert message in r.stderr
        _one_error_line(pv("state", f"{a}-{i}"))
    # A member whose program is missing fails at create, as any container (127 for runc).
    make_bundle(world_tmp, "sandbox", ["sleep", "1000"], {CRI_TYPE: "sandbox"})
    make_bundle(world_tmp, "missing", ["/no/such/program"],
                {CRI_TYPE: "container", CRI_SANDBOX: sid})
    assert pv.create(sid, world_tmp / "sandbox").returncode == 0
    r = pv.create(b, world_tmp / "missing")
    _one_error_line(r)
    assert "no such file or directory" in r.stderr
    _one_error_line(pv("state", b))
    # The sandbox is unharmed, and a stopped sandbox takes no members.
    assert pv.state(sid)["status"] == "created"
    assert pv("start", sid).returncode == 0
    assert pv("kill", sid, "KILL").returncode == 0
    assert _wait_for(lambda: pv.state(sid)["status"] == "stopped")
    make_bundle(world_tmp, "late", ["true"], {CRI_TYPE: "container", CRI_SANDBOX: sid})
    r = pv.create(a, world_tmp / "late")
    _one_error_line(r)
    assert "stopped" in r.stderr


def test_container_type_and_gofer_plan(world_tmp: Path) -> None:
    """runsc's annotation rules, and the Gofers a member needs: its root, one per bound
    directory, one for its read-only files and one for the others, in mount order."""
    from pyvisor.runtime import pod
    from pyvisor.runtime.boot import MountSpec, SandboxConfig
    from pyvisor.runtime.errors import BootError
    T = pod.ContainerType
    assert pod.container_type({}) is T.UNSPECIFIED
    assert pod.container_type({CRI_TYPE: "sandbox"}) is T.SANDBOX
    assert pod.container_type({CRIO_TYPE: "container"}) is T.CONTAINER
    # containerd's annotation is read first, as runsc reads it.
    assert pod.container_type({CRI_TYPE: "container", CRIO_TYPE: "sandbox"}) is T.CONTAINER
    with pytest.raises(BootError):
        pod.container_type({CRI_TYPE: "pause"})
    assert pod.sandbox_id({CRIO_SANDBOX: "s1"}) == "s1"
    with pytest.raises(BootError):
        pod.sandbox_id({CRI_TYPE: "container"})
    for d in ("root", "dir"):
        (world_tmp / d).mkdir()
    for f in ("hosts", "resolv", "env"):
        (world_tmp / f).write_text(f)
    cfg = SandboxConfig(root=str(world_tmp / "root"), argv=["true"], mounts=[
        MountSpec("/proc", "proc", "proc"),
        MountSpec("/etc/hosts", "bind", str(world_tmp / "hosts"), ["rbind"]),
        MountSpec("/run", "tmpfs", "tmpfs", ["size=1m"]),
        MountSpec("/run/env", "bind", str(world_tmp / "env"), ["bind", "ro"]),
        MountSpec("/data", "bind", str(world_tmp / "dir"), ["rbind", "ro"]),
        MountSpec("/etc/resolv.conf", "bind", str(world_tmp / "resolv"), ["rbind"])])
    gofers, mounts = pod.plan(cfg)
    assert [(g.root, g.readonly, g.files) for g in gofers] == [
        (str(world_tmp / "root"), True, []),
        (str(world_tmp), True, [str(world_tmp / "env")]),
        (str(world_tmp), False, [str(world_tmp / "hosts"), str(world_tmp / "resolv")]),
        (str(world_tmp / "dir"), True, [])]
    assert [(m["destination"], m.get("gofer"), m.get("file")) for m in mounts] == [
        ("/etc/hosts", 2, 0), ("/run", None, None), ("/run/env", 1, 0),
        ("/data", 3, None), ("/etc/resolv.conf", 2, 1)]
    cfg.mounts.append(MountSpec("/x", "nfs", "server:/x"))
    with pytest.raises(BootError, match="unsupported mount type"):
        pod.plan(cfg)


def test_bad_pod_requests_leave_the_sandbox_running(pv: Pyvisor, world_tmp: Path) -> None:
    """Malformed create_container (and other pod) requests on the control socket are
    error replies: the Sentry, and the fds sent with them, are looked after."""
    from pyvisor.runtime import control
    sid, a, _ = _ids()
    make_bundle(world_tmp, "sandbox", ["sleep", "1000"], {CRI_TYPE: "sandbox"})
    assert pv.create(sid, world_tmp / "sandbox").returncode == 0
    assert pv("start", sid).returncode == 0
    path = str(pv.root / sid / "control.sock")
    r, w = os.pipe()
    base = {"id": a, "argv": ["true"], "stdio": [False, False, False], "gofers": [{}]}
    bad: list[tuple[str, dict[str, Any], list[int]]] = [
        ("create_container", {**base, "stdio": [True]}, [r]),         # flags/fds mismatch
        ("create_container", {**base, "gofers": []}, []),               # no root Gofer
        ("create_container", base, [r]),                                # a pipe, not a Gofer
        ("create_container", {**base, "argv": "true"}, [w]),
        ("create_container", {**base, "mounts": [{"destination": "/x", "type": "bind",
                                                  "gofer": 7}]}, [w]),
        ("create_container", {**base, "uid": -1}, [w]),
        ("start_container", {"id": "nobody"}, []),
        ("wait_container", {"id": 5}, []),
        ("destroy_container", {"id": "nobody"}, []),
        ("kill", {"container": "nobody", "signal": 9}, []),
        ("exec", {"container": "nobody", "args": ["true"]}, [r, w]),
    ]
    with control.Client(path) as client:
        for method, params, fds in bad:
            with pytest.raises(control.ControlError):
                client.call(method, params, fds=fds)
    os.close(r)
    os.close(w)
    assert pv.state(sid)["status"] == "running"
    r2 = pv("exec", sid, "echo", "alive")
    assert (r2.returncode, r2.stdout) == (0, "alive\n"), r2.stderr
