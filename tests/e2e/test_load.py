"""Faults and load: a SIGKILLed Sentry, 50 sandboxes at once, 1,000 in a row.

What must hold each time: every sandbox prints its own output and exit status, and
nothing is left behind of the sandboxes this test started: no process, no cgroup
(named after our launchers' pids), no host mount, no file under our --root, no fd in
this process.  Other helpers may run sandboxes on the same machine at the same time,
so only what is attributable to our own sandboxes is measured.

`test_many_in_a_row` is marked `load`: PYVISOR_LOAD_COUNT sandboxes one after another
(300 by default, to keep CI within its budget; 1000 for the full run).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pvtest import REPO, descendants, is_stub, pyvisor_env

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _launch(args: list[str], **kw) -> subprocess.Popen[bytes]:  # noqa: ANN003
    return subprocess.Popen([sys.executable, "-m", "pyvisor", *args], env=pyvisor_env(None),
                            cwd=str(REPO), stdin=subprocess.DEVNULL, **kw)


def _cgroup_parents() -> list[Path]:
    """The cgroup directories our launchers create their sandboxes' cgroups in: the
    children of this process's own cgroup, per hierarchy (v1) or the unified one."""
    out = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        names = [c.removeprefix("name=") for c in ctrls.split(",")] if ctrls else [""]
        for n in names:
            d = CGROUP_ROOT / n / path.lstrip("/")
            if d.is_dir():
                out.append(d)
    return out


def _our_cgroups(parents: list[Path], launchers: set[int]) -> list[Path]:
    """Cgroups named pyvisor-<pid>-<random> for one of our launchers' pids (look while
    the launcher's pid is fresh: once recycled it may name another helper's sandbox)."""
    found = []
    for d in parents:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            parts = n.split("-")
            if len(parts) == 3 and parts[0] == "pyvisor" and parts[1].isdigit() and \
                    int(parts[1]) in launchers:
                found.append(d / n)
    return found


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36


def _children() -> list[int]:
    """This process's children (of any of its threads)."""
    out: list[int] = []
    for task in os.listdir("/proc/self/task"):
        try:
            out += map(int, Path(f"/proc/self/task/{task}/children").read_text().split())
        except OSError:
            pass
    return out


def _mountinfo(tmp_path: Path) -> list[str]:
    """The host mounts our sandboxes could have left: the Sentry's empty root (a tmpfs
    whose source is pyvisor-root), anything under our temp dir, and the host's root
    mount itself (a Gofer serving / remounts its bind of it read-only).  Other
    helpers' container engines mount and unmount on this host at the same time, so the
    whole table is not ours to compare."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        source = line.split(" - ", 1)[1].split()[1]
        if source == "pyvisor-root" or str(tmp_path) in line or fields[4] == "/":
            out.append(line)
    return out


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _alive(pids: list[int]) -> list[int]:
    out = []
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(p)
    return out


def _wait_for_sandbox(launcher: subprocess.Popen[bytes], stubs: int) -> tuple[int, list[int]]:
    """The Sentry's pid (the launcher's child) and every process under it, once the
    application has `stubs` stub processes and the Sentry has confined itself."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert launcher.poll() is None, "the sandbox ended early"
        kids = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        if kids:
            sentry = int(kids[0])
            below = descendants(sentry)
            try:
                confined = "Seccomp:\t2" in Path(f"/proc/{sentry}/status").read_text()
            except OSError:
                confined = False
            nstubs = 0
            for p in below:
                try:
                    if is_stub(p):
                        nstubs += 1
                except OSError:
                    pass
            if confined and nstubs >= stubs:
                return sentry, below
        time.sleep(0.05)
    pytest.fail("the sandbox did not start within 60 s")


def _sentry_cgroups(sentry: int) -> list[Path]:
    out = []
    for line in Path(f"/proc/{sentry}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if "pyvisor-" in path:
            name = ctrls.split(",")[0].removeprefix("name=") if ctrls else ""
            out.append(CGROUP_ROOT / name / path.lstrip("/"))
    return out


@pytest.mark.parametrize("verb", ["do", "run"])
def test_sentry_sigkill_leaves_nothing(verb: str, tmp_path: Path) -> None:
    """SIGKILL to the Sentry (and to nothing else): the launcher exits 137, and no
    process, cgroup, host mount or state file of the sandbox is left."""
    mounts = _mountinfo(tmp_path)
    root = tmp_path / "state"
    cmd = ["/bin/sh", "-c", "sleep 60 & sleep 60 & wait"]
    if verb == "do":
        launcher = _launch(["--root", str(root), "do", "--", *cmd])
    else:
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps({
            "ociVersion": "1.0.2", "process": {"args": cmd, "cwd": "/"},
            "root": {"path": "/", "readonly": True}}))
        launcher = _launch(["--root", str(root), "run", "--bundle", str(bundle), "killed"])
    try:
        sentry, below = _wait_for_sandbox(launcher, stubs=3)
        cgroups = _sentry_cgroups(sentry)
        assert cgroups, "the Sentry is in no cgroup of its own"
        if verb == "run":
            assert (root / "killed" / "state.json").exists()
        os.kill(sentry, signal.SIGKILL)
        assert launcher.wait(timeout=60) == 128 + signal.SIGKILL
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert _alive([sentry, *below]) == [], "processes of the sandbox outlived it"
    left = [c for c in cgroups if c.exists()]
    assert left == [], f"cgroups left behind: {left}"
    assert _mountinfo(tmp_path) == mounts, "the host mount table changed"
    assert not root.exists() or list(root.iterdir()) == [], list(root.rglob("*"))


def _expected(i: int) -> tuple[str, int]:
    return f"sandbox-{i}\n{i % 9 + 1}\n", i % 7


def _script(i: int) -> list[str]:
    """A small mix: a pipeline, a subshell and an exit status of its own."""
    return ["/bin/sh", "-c", f"echo sandbox-{i}; seq 1 {i % 9 + 1} | (wc -l); exit {i % 7}"]


def test_fifty_at_once(tmp_path: Path) -> None:
    """50 sandboxes started at once on this machine's 2 cores: each prints its own
    output and exits with its own status; nothing of them is left."""
    mounts = _mountinfo(tmp_path)
    parents = _cgroup_parents()
    procs = []
    for i in range(50):
        procs.append(_launch(["--root", str(tmp_path / "state"), "do", "--", *_script(i)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    failures = []
    for i, p in enumerate(procs):
        try:
            out, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        want_out, want_rc = _expected(i)
        if out.decode() != want_out or p.returncode != want_rc:
            failures.append(f"#{i}: rc {p.returncode} (want {want_rc}), "
                            f"out {out!r}, err {err.decode()[-300:]!r}")
        # Checked as each one ends: pids recycle (other helpers' sandboxes run too).
        failures += [f"#{i}: cgroup left: {c}" for c in _our_cgroups(parents, {p.pid})]
    assert not failures, "\n".join(failures)
    assert _mountinfo(tmp_path) == mounts, "the host mount table changed"


@pytest.mark.load
def test_many_in_a_row(tmp_path: Path) -> None:
    """PYVISOR_LOAD_COUNT (default 300; 1000 for the full run) sandboxes one after
    another (`do` with a small mix of programs, every tenth an OCI `run` with a --root
    of our own) leak nothing: not this process's fds, cgroups, host mounts, state files
    or processes."""
    count = int(os.environ.get("PYVISOR_LOAD_COUNT", "300"))
    root = tmp_path / "state"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    fds, mounts, parents = _fds(), _mountinfo(tmp_path), _cgroup_parents()
    launchers: set[int] = set()
    before = set(_children())
    assert _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        _in_a_row(count, root, bundle, launchers, fds, parents)
    finally:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    assert _fds() == fds, "fds of this process leaked"
    assert _mountinfo(tmp_path) == mounts, "the host mount table changed"
    assert not root.exists() or list(root.iterdir()) == [], "state files leaked"
    # No process of ours is left: we are a child subreaper for the whole run, so
    # anything a sandbox left alive was re-parented to us.
    left = sorted(set(_children()) - before)
    for pid in left:        # re-parented zombies: reap them
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    assert _alive(left) == [], "processes left behind"


def _in_a_row(count: int, root: Path, bundle: Path, launchers: set[int], fds: set[str],
              parents: list[Path]) -> None:
    t0 = time.monotonic()
    for i in range(count):
        want_out, want_rc = _expected(i)
        if i % 10 == 9:
            (bundle / "config.json").write_text(json.dumps({
                "ociVersion": "1.0.2", "process": {"args": _script(i), "cwd": "/"},
                "root": {"path": "/", "readonly": True}}))
            args = ["--root", str(root), "run", "--bundle", str(bundle), f"c{i}"]
        elif i % 10 == 4:
            args = ["--root", str(root), "do", "--", "/bin/true"]
            want_out, want_rc = "", 0
        else:
            args = ["--root", str(root), "do", "--", *_script(i)]
        p = _launch(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        launchers.add(p.pid)
        out, err = p.communicate(timeout=120)
        assert (out.decode(), p.returncode) == (want_out, want_rc), \
            f"sandbox #{i}: rc {p.returncode}, out {out!r}, err {err.decode()!r}"
        # Its cgroup is gone as soon as its launcher is (checked at once: pids recycle,
        # and another helper's sandbox may later have a launcher with this pid).
        assert _our_cgroups(parents, {p.pid}) == [], f"sandbox #{i} left its cgroup"
        if i % 100 == 99:
            assert _fds() == fds, f"fds of this process grew after {i + 1} sandboxes"
    took = time.monotonic() - t0
    print(f"{count} sandboxes in a row: {took:.1f}s, {took / count * 1000:.0f} ms each")
