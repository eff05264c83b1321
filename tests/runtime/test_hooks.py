"""OCI hooks (runtime/hooks.py): each kind at its point of the lifecycle with the state on
stdin, timeouts, and which failures abort; compared with runc where runc 1.1 behaves as
the spec says (it runs poststart hooks already in `create` and stops at the first
failing poststop hook: there only pyvisor is checked, against the spec)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from test_lifecycle import Runtime, _alive, _cid, _one_error_line, make_bundle, rt  # noqa: F401


def _recorder(log: Path, kind: str, extra: str = "") -> dict[str, Any]:
    """A hook appending `kind <state JSON>` to `log` (the host's /bin/sh)."""
    return {"path": "/bin/sh",
            "args": ["sh", "-c", f'{extra}printf "%s %s\\n" {kind} "$(cat)" >> {log}']}


def _set_hooks(bundle: Path, hooks: dict[str, Any], **config: Any) -> None:
    path = bundle / "config.json"
    doc = json.loads(path.read_text())
    doc["hooks"] = hooks
    doc.update(config)
    path.write_text(json.dumps(doc))


def _records(log: Path) -> list[tuple[str, dict[str, Any]]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        kind, _, state = line.partition(" ")
        out.append((kind, json.loads(state)))
    return out


def test_runtime_hooks_in_order_with_state(rt: Runtime, world_tmp: Path) -> None:
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60"])
    log = world_tmp / "hooks.log"
    _set_hooks(bundle, {k: [_recorder(log, k)] for k in
                        ("prestart", "createRuntime", "poststart", "poststop")})
    cid = _cid()
    r = rt.create(cid, bundle, world_tmp / "out")
    assert r.returncode == 0, r.stderr
    pid = rt.state(cid)["pid"]
    recs = [(k, s) for k, s in _records(log) if k != "poststart"]   # runc 1.1: in create
    assert [k for k, _ in recs] == ["prestart", "createRuntime"]
    for _, s in recs:
        assert (s["id"], s["status"], s["pid"], s["bundle"]) == (cid, "creating", pid,
                                                                 str(bundle))
    assert rt("start", cid).returncode == 0
    assert [k for k, _ in _records(log)].count("poststart") == 1
    assert rt("kill", cid, "KILL").returncode == 0
    rt.wait_status(cid, "stopped")
    assert not [k for k, _ in _records(log) if k == "poststop"]      # not before delete
    r = rt("delete", cid)
    assert r.returncode == 0, r.stderr
    kind, s = _records(log)[-1]
    assert (kind, s["id"], s["status"]) == ("poststop", cid, "stopped")


def test_poststart_runs_at_start_with_running_state(world_tmp: Path) -> None:
    rt = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60"])
    log = world_tmp / "hooks.log"
    _set_hooks(bundle, {"poststart": [_recorder(log, "poststart")]})
    cid = _cid()
    try:
        assert rt.create(cid, bundle, world_tmp / "out").returncode == 0
        assert _records(log) == []                      # the spec: after start, not create
        assert rt("start", cid).returncode == 0
        [(kind, s)] = _records(log)
        assert (kind, s["status"], s["pid"]) == ("poststart", "running", rt.state(cid)["pid"])
    finally:
        rt("delete", "--force", cid)


def test_failing_create_hook_aborts_create(rt: Runtime, world_tmp: Path) -> None:
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "echo ran"])
    log = world_tmp / "hooks.log"
    _set_hooks(bundle, {"createRuntime": [{"path": "/bin/sh", "args": [
        "sh", "-c", "echo to-out; echo to-err >&2; exit 3"]}],
        "poststop": [_recorder(log, "poststop")]})
    cid, out = _cid(), world_tmp / "out"
    r = rt.create(cid, bundle, out)
    _one_error_line(r)
    assert "exit status 3" in r.stderr and "to-out" in r.stderr and "to-err" in r.stderr
    _one_error_line(rt("state", cid))                   # nothing left
    assert out.read_text() == ""
    if rt.name == "pyvisor":        # the spec: "continue the lifecycle at step 12"
        assert [k for k, _ in _records(log)] == ["poststop"]
        assert os.listdir(rt.root) == []


def test_hook_timeout_kills_it(rt: Runtime, world_tmp: Path) -> None:
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "echo ran"])
    pidfile = world_tmp / "hook.pid"
    _set_hooks(bundle, {"prestart": [{"path": "/bin/sh", "args": [
        "sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], "timeout": 1}]})
    cid = _cid()
    t0 = time.monotonic()
    r = rt.create(cid, bundle, world_tmp / "out")
    _one_error_line(r)
    assert "hook ran past specified timeout of 1.0s" in r.stderr
    assert time.monotonic() - t0 < 25
    assert not _alive(int(pidfile.read_text()))
    _one_error_line(rt("state", cid))


def test_hook_args_and_env(rt: Runtime, world_tmp: Path) -> None:
    bundle = make_bundle(world_tmp, ["/bin/true"])
    out = world_tmp / "env.out"
    # args[0] is argv[0]: busybox runs the applet it names.
    _set_hooks(bundle, {"createRuntime": [{
        "path": "/bin/busybox",
        "args": ["sh", "-c", f'echo "$0 $1 $HOOKVAR ${{HOME-unset}}" > {out}', "zero", "first"],
        "env": ["HOOKVAR=set"]}]})
    cid = _cid()
    assert rt.create(cid, bundle, world_tmp / "o").returncode == 0
    rt("delete", "--force", cid)
    assert out.read_text() == "zero first set unset\n"


def test_failing_poststart_and_poststop_only_warn(world_tmp: Path) -> None:
    rt = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60"])
    log = world_tmp / "hooks.log"
    _set_hooks(bundle, {"poststart": [{"path": "/bin/false"}, _recorder(log, "poststart")],
                        "poststop": [{"path": "/bin/false"}, _recorder(log, "poststop")]})
    cid = _cid()
    assert rt.create(cid, bundle, world_tmp / "out").returncode == 0
    r = rt("start", cid)
    assert r.returncode == 0 and "poststart hook #0: exit status 1" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert rt.state(cid)["status"] == "running"
    r = rt("delete", "--force", cid)
    assert r.returncode == 0 and "poststop hook #0: exit status 1" in r.stderr, r.stderr
    assert [k for k, _ in _records(log)] == ["poststart", "poststop"]   # the rest still ran


def test_container_hooks_see_the_container_root(world_tmp: Path) -> None:
    """createContainer/startContainer: path resolves in the container's root, with its
    hostname (pyvisor runs them chrooted there, in mount and UTS namespaces of their own)."""
    rt = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "cat /tmp/cc /tmp/sc"])
    mounts_before = Path("/proc/self/mountinfo").read_text()
    # /bin/busybox of the image (the host's /bin/sh is dash): the hook runs in its root.
    cmd = ('echo "$0 $(busybox hostname) $(busybox grep -c created)" > /tmp/$0; '
           'busybox mkdir -p /tmp/x; busybox mount -t tmpfs none /tmp/x')
    _set_hooks(bundle, {"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", cmd, "cc"]}],
                        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", cmd, "sc"]}]})
    cid, out = _cid(), world_tmp / "out"
    assert rt.create(cid, bundle, out).returncode == 0
    assert (bundle / "rootfs" / "tmp" / "cc").read_text() == "cc lifecycle 0\n"  # creating
    assert rt("start", cid).returncode == 0
    assert rt.wait_status(cid, "stopped")["status"] == "stopped"
    assert out.read_text() == "cc lifecycle 0\nsc lifecycle 1\n"
    assert rt("delete", cid).returncode == 0
    assert Path("/proc/self/mountinfo").read_text() == mounts_before


def test_failing_start_container_hook_stops_the_container(world_tmp: Path) -> None:
    rt = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "echo ran"])
    _set_hooks(bundle, {"startContainer": [{"path": "/bin/false"}]})
    cid, out = _cid(), world_tmp / "out"
    assert rt.create(cid, bundle, out).returncode == 0
    r = rt("start", cid)
    _one_error_line(r)
    assert "startContainer hook #0" in r.stderr
    assert rt.state(cid)["status"] == "stopped"
    assert out.read_text() == ""
    assert rt("delete", cid).returncode == 0


@pytest.mark.parametrize("hook,why", [
    ({"path": "relative/hook"}, "must be an absolute path"),
    ({"path": "/bin/true", "timeout": 0}, "must be greater than zero"),
    ({"path": 7}, "must be a string"),
])
def test_bad_hook_is_one_line(world_tmp: Path, hook: dict[str, Any], why: str) -> None:
    rt = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/true"])
    _set_hooks(bundle, {"prestart": [hook]})
    r = rt.create(_cid(), bundle, world_tmp / "out")
    _one_error_line(r)
    assert why in r.stderr
    assert not rt.root.exists() or os.listdir(rt.root) == []


def test_run_with_hooks(world_tmp: Path) -> None:
    """`run` (foreground) goes through create, start, wait and delete when there are hooks."""
    rt = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "echo hello; exit 4"])
    log = world_tmp / "hooks.log"
    _set_hooks(bundle, {k: [_recorder(log, k)] for k in
                        ("createRuntime", "poststart", "poststop")})
    cid = _cid()
    r = rt("run", "--bundle", str(bundle), cid)
    assert (r.returncode, r.stdout) == (4, "hello\n"), r.stderr
    assert [(k, s["status"]) for k, s in _records(log)] == [
        ("createRuntime", "creating"), ("poststart", "running"), ("poststop", "stopped")]
    assert os.listdir(rt.root) == []


def _procs_naming(text: str) -> list[int]:
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit() and int(e) != os.getpid():
            try:
                if text.encode() in Path(f"/proc/{e}/cmdline").read_bytes():
                    out.append(int(e))
            except OSError:
                pass
    return out


def test_create_failing_after_boot_leaves_nothing(rt: Runtime, world_tmp: Path) -> None:
    """A create that fails once the sandbox is up (here: its pid file cannot be written)
    leaves no sandbox behind (it once kept running, held, with the caller's pipes)."""
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60"])
    cid = _cid()
    r = rt.create(cid, bundle, world_tmp / "out", "--pid-file", "/nonexistent/dir/pid")
    _one_error_line(r)
    _one_error_line(rt("state", cid))
    deadline = time.monotonic() + 10
    while _procs_naming(cid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _procs_naming(cid) == []


def test_prestart_hooks_see_a_network_namespace_of_the_containers_own(
        rt: Runtime, world_tmp: Path) -> None:
    """Docker's libnetwork-setkey prestart hook configures /proc/<state pid>/ns/net (IPv6
    off on its loopback): that namespace must be the container's, never the host's."""
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60"])
    log = world_tmp / "netns"
    probe = ("import json, os, sys; s = json.load(sys.stdin); "
             f"open({str(log)!r}, 'w').write(os.readlink(f'/proc/{{s[\"pid\"]}}/ns/net'))")
    _set_hooks(bundle, {"prestart": [{"path": "/usr/bin/python3",
                                      "args": ["python3", "-c", probe]}]})
    cid = _cid()
    try:
        r = rt.create(cid, bundle, world_tmp / "out")
        assert r.returncode == 0, r.stderr
        assert log.read_text().startswith("net:[")
        assert log.read_text() != os.readlink("/proc/self/ns/net")
    finally:
        rt("delete", "--force", cid)
