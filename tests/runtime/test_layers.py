"""The layers behind the syscall path: namespaces, capabilities, seccomp, cgroups, limits.

Each test looks at the host's view of a running sandbox's processes (/proc of
the launcher's descendants) or at what the limits do to a program inside.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pvtest import REPO, is_stub, pyvisor_env
from pvtest import descendants as _descendants
from pvtest import proc_status as _status


@pytest.fixture
def running_sandbox():  # type: ignore[no-untyped-def]
    """A sandbox running `sleep`, with the host pids of its processes by role."""
    p = subprocess.Popen([sys.executable, "-m", "pyvisor", "do", "--", "/bin/sleep", "30"],
                         env=pyvisor_env(None), cwd=str(REPO))
    try:
        roles: dict[str, list[int]] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            roles = {"sentry": [], "gofer": [], "stub": []}
            for pid in _descendants(p.pid):
                try:
                    st = _status(pid)
                except OSError:
                    continue
                if is_stub(pid):
                    roles["stub"].append(pid)
                elif st.get("PPid") == str(p.pid):
                    roles["sentry"].append(pid)
                else:
                    roles["gofer"].append(pid)
            if roles["sentry"] and roles["gofer"] and len(roles["stub"]) >= 2:
                try:    # confinement ends with the seccomp filter: wait for it
                    if _status(roles["sentry"][0]).get("Seccomp") == "2":
                        break
                except OSError:
                    pass
            time.sleep(0.05)
        yield p, roles
    finally:
        p.kill()
        p.wait()


def test_sentry_is_confined(running_sandbox) -> None:  # type: ignore[no-untyped-def]
    _, roles = running_sandbox
    assert len(roles["sentry"]) == 1, roles
    sentry = roles["sentry"][0]
    st = _status(sentry)
    assert st["NSpid"].split()[-1] == "1"          # PID 1 of its own PID namespace
    assert int(st["CapEff"], 16) == 0 and int(st["CapBnd"], 16) == 0
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2"                    # the allow-list of pyvisor/seccomp
    for ns in ("mnt", "net", "ipc", "uts", "pid"):
        assert os.readlink(f"/proc/{sentry}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}") \
            or ns == "pid", ns                      # pid: its children are in the new one
    assert os.listdir(f"/proc/{sentry}/root") == []  # an empty root


def test_gofer_keeps_only_file_capabilities(running_sandbox) -> None:  # type: ignore[no-untyped-def]
    _, roles = running_sandbox
    assert roles["gofer"], roles
    for g in roles["gofer"]:
        st = _status(g)
        # The read-only root's Gofer: CAP_DAC_READ_SEARCH alone (SECURITY.md).
        assert int(st["CapEff"], 16) == 1 << 2, st["CapEff"]
        assert int(st["CapPrm"], 16) == 1 << 2 and int(st["CapBnd"], 16) == 1 << 2
        assert st["NoNewPrivs"] == "1"
        assert st["Seccomp"] == "2"
        assert os.readlink(f"/proc/{g}/ns/mnt") != os.readlink("/proc/self/ns/mnt")


PSEUDO = {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "mqueue", "debugfs",
          "tracefs", "securityfs", "bpf", "configfs", "fusectl", "hugetlbfs", "binfmt_misc"}


def test_gofer_sees_only_read_only_file_mounts(running_sandbox) -> None:  # type: ignore[no-untyped-def]
    """Every mount in the Gofer's namespace is read-only (and nosuid, nodev, noexec),
    and none is a host pseudo filesystem: /proc, /sys, /dev are not there at all."""
    _, roles = running_sandbox
    for g in roles["gofer"]:
        mounts = []
        for line in Path(f"/proc/{g}/mountinfo").read_text().splitlines():
            f = line.split()
            fstype = f[f.index("-") + 1]
            opts = set(f[5].split(","))
            mounts.append((f[4], fstype))
            assert {"ro", "nosuid", "nodev", "noexec"} <= opts, line
            assert fstype not in PSEUDO, line
            assert not any(f[4] == d or f[4].startswith(d + "/")
                           for d in ("/proc", "/sys", "/dev")), line
        assert mounts and mounts[0][0] == "/", mounts     # the host's root, served


def test_stubs_have_seccomp_and_no_capabilities(running_sandbox) -> None:  # type: ignore[no-untyped-def]
    _, roles = running_sandbox
    assert roles["stub"], roles
    for s in roles["stub"]:
        st = _status(s)
        assert st["Seccomp"] == "2", st
        assert int(st["CapEff"], 16) == 0 and int(st["CapBnd"], 16) == 0
        assert st["TracerPid"] == str(roles["sentry"][0])


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyvisor", *args], env=pyvisor_env(None),
                          cwd=str(REPO), capture_output=True, text=True, timeout=timeout)


def test_memory_limit_kills_inside_and_the_sandbox_goes_on() -> None:
    r = _run(["--memory", "256M", "do", "--", "/bin/sh", "-c",
              "python3 -c 'x = bytearray(600 << 20)'; echo child=$?; echo still-here"])
    assert r.returncode == 0, r.stderr
    assert "child=137" in r.stdout and "still-here" in r.stdout, r.stdout + r.stderr


def test_task_limit_stops_a_fork_bomb(program) -> None:  # type: ignore[no-untyped-def]
    r = _run(["--pids-limit", "30", "do", "--", "/bin/sh", "-c",
              "i=0; while [ $i -lt 60 ]; do sleep 3 & i=$((i+1)); done; echo spawned"],
             timeout=120)
    # fork fails with EAGAIN at the limit: dash reports "Cannot fork" and gives up.
    assert r.returncode == 2 and "spawned" not in r.stdout, r.stdout + r.stderr
    assert "Cannot fork" in r.stderr, r.stderr


def test_tmpfs_size_limit_gives_enospc() -> None:
    r = _run(["--tmpfs-size", "8M", "do", "--", "/bin/sh", "-c",
              "dd if=/dev/zero of=/tmp/fill bs=1M count=32; echo rc=$?"])
    assert "No space left on device" in r.stdout + r.stderr, r.stdout + r.stderr


def test_no_cgroup_left_behind() -> None:
    """The sandbox's cgroups (named pyvisor-<launcher pid>-<random>, v1 or v2) are gone
    when `do` returns.  Only this launcher's are looked at: other sandboxes on the
    machine (a concurrent run, a container still stopping) have cgroups of their own."""
    proc = subprocess.Popen([sys.executable, "-m", "pyvisor", "do", "--", "/bin/sleep", "1"],
                            env=pyvisor_env(None), cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen: set[str] = set()
    while proc.poll() is None:        # the cgroup exists while the sandbox runs
        seen |= {p.name for p in _cgroups_of(proc.pid)}
        time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert seen, "the sandbox's cgroup was never seen: the name pattern is wrong"
    assert not _cgroups_of(proc.pid), f"left behind: {_cgroups_of(proc.pid)} (seen {seen})"


def _cgroups_of(launcher: int) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    return [*root.glob(f"*/pyvisor-{launcher}-*"), *root.glob(f"pyvisor-{launcher}-*")]


def test_bad_limit_flags_are_one_line_errors() -> None:
    for args in (["--memory", "lots"], ["--pids-limit", "0"], ["--cpus", "-1"]):
        r = _run([*args, "do", "--", "/bin/true"])
        assert r.returncode != 0
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def _stub_pids() -> set[str]:
    r = subprocess.run(["pgrep", "-f", "^pyvisor-stub"], capture_output=True, text=True)
    return set(r.stdout.split())


def test_internal_error_kills_the_sandbox_cleanly() -> None:
    """A Sentry bug (forced) ends the sandbox: one line naming the syscall, status 137,
    no traceback on stderr, and no stub left behind (a background child included)."""
    before = _stub_pids()
    r = _run(["do", "--test-panic", "getppid", "--", "/bin/sh", "-c",
              "sleep 30 & python3 -c 'import os; os.getppid()'; echo not-reached"], timeout=60)
    assert r.returncode == 137, r.stdout + r.stderr
    assert "not-reached" not in r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "internal error in syscall getppid" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    deadline = time.monotonic() + 5
    while _stub_pids() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _stub_pids() - before
