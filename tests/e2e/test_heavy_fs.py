"""Heavy file-system use in a whole sandbox: walks bigger than the fd budgets,
applications holding more files than the budgets allow, a Gofer killed under load.

The tree has more entries (TREE_FILES) than a Gofer with `--dcache 64` may hold
fds (fd_budget_for(64) = 4096), so these walks only finish because evicted
dentries give their Gofer fds back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pvtest import CliRunner, descendants, execute, is_stub, pyvisor_env
from pyvisor.sentry.fsimpl.gofer.goferfs import FID_BATCH
from pyvisor.sentry.vfs.dcache import fd_budget_for

TREE_DIRS, PER_DIR = 50, 100
TREE_FILES = TREE_DIRS * PER_DIR            # 5000 files, 5101 entries with the directories
DCACHE = 64


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pvtest import make_world_readable
    top = tmp_path_factory.mktemp("heavy")
    make_world_readable(top, tmp_path_factory)
    root = top / "tree"
    for d in range(TREE_DIRS):
        sub = root / f"d{d:02}" / "s"
        sub.mkdir(parents=True)
        for f in range(PER_DIR):
            (sub.parent if f % 2 else sub).joinpath(f"f{f:03}").write_bytes(b"y" * (d * f % 700))
    os.system(f"chmod -R a+rX {root}")
    return root


def _roles(launcher: int) -> dict[str, list[int]]:
    """Host pids of a running sandbox: the Sentry (the launcher's child), its Gofers."""
    roles: dict[str, list[int]] = {"sentry": [], "gofer": [], "stub": []}
    for pid in descendants(launcher):
        try:
            ppid = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1]
        except OSError:
            continue
        if is_stub(pid):
            roles["stub"].append(pid)
        elif ppid == str(launcher):
            roles["sentry"].append(pid)
        else:
            roles["gofer"].append(pid)
    return roles


def _nfds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _max_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no Max open files line")


def test_walks_bigger_than_the_fd_budget_match_native(big_tree: Path) -> None:
    """du, find and tar over TREE_FILES files give Linux's results, a command after
    them still runs, and the Gofer's open fds stay within its budget all along (and
    near the dcache's size: evicted dentries give theirs back)."""
    script = (f"du -s {big_tree}; find {big_tree} | wc -l; "
              f"tar cf - -C {big_tree} . | md5sum; cat /etc/hostname")
    native = execute(["sh", "-c", script])
    assert native.returncode == 0, native.output
    proc = subprocess.Popen([sys.executable, "-m", "pyvisor", "--dcache", str(DCACHE), "do",
                             "--", "sh", "-c", script], env=pyvisor_env(None),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    peak = {"gofer": 0, "sentry": 0}
    limits: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            roles = _roles(proc.pid)
            for role in ("gofer", "sentry"):
                for pid in roles[role]:
                    n = _nfds(pid)
                    if n and proc.poll() is None:
                        peak[role] = max(peak[role], n)
                        try:
                            limits[role] = _max_open_files(pid)
                        except OSError:
                            pass
            time.sleep(0.02)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.decode() == native.stdout, (out.decode(), native.stdout, err.decode())
    budget = fd_budget_for(DCACHE)
    assert limits == {"gofer": budget, "sentry": budget}, limits
    assert 0 < peak["gofer"] < budget and 0 < peak["sentry"] < budget, peak
    # Each cached or queued-for-release fid holds at most its own fd and its parent's.
    assert peak["gofer"] <= 2 * (DCACHE + FID_BATCH) + 64, peak


def test_holding_more_files_than_the_budget_is_enfile(big_tree: Path,
                                                      pyvisor_cli: CliRunner) -> None:
    """An application that keeps more files open than the sandbox's budgets allow
    gets ENFILE (after the Sentry reclaimed what it could), never a dead sandbox;
    once it lets go, files open again."""
    prog = f"""
import errno, os, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
paths = [os.path.join(d, f) for d, _, fs in os.walk({str(big_tree)!r}) for f in sorted(fs)]
for how, flags in (("path", os.O_PATH), ("rdonly", os.O_RDONLY)):
    held = []
    try:
        for p in paths[:4080]:
            held.append(os.open(p, flags))
        print(how, "no error", len(held))
    except OSError as e:
        print(how, errno.errorcode[e.errno], len(held))
    for fd in held:
        os.close(fd)
print("after", open("/etc/hostname").read() == {open("/etc/hostname").read()!r})
"""
    r = pyvisor_cli(["--dcache", str(DCACHE), "do", "--", sys.executable, "-c", prog],
                    timeout=300)
    assert r.returncode == 0, r.output
    lines = r.stdout.splitlines()
    budget = fd_budget_for(DCACHE)
    for how, line in zip(("path", "rdonly"), lines):
        what, code, n = line.split()
        assert (what, code) == (how, "ENFILE"), r.output
        # Nearly the whole budget was usable before the error.
        assert budget - 600 < int(n) < budget, r.output
    assert lines[2:] == ["after True"], r.output
    assert "Traceback" not in r.stderr and not r.stderr.strip(), r.stderr


def test_gofer_killed_gives_eio_and_a_clean_end(big_tree: Path) -> None:
    """SIGKILL to the Gofer (only it: found as the Sentry's child) while the
    application walks files: its file operations fail with EIO, the sandbox
    ends when it exits, with one line from pyvisor, no traceback and no process left."""
    prog = f"""
import os, sys
print("ready", flush=True)
n = 0
try:
    while True:
        def fail(e):                          # os.walk swallows errors by default: a
            raise e                           # walk that fails must end the loop
        for d, _, fs in os.walk({str(big_tree)!r}, onerror=fail):
            for f in fs:
                os.lstat(os.path.join(d, f))
                n += 1
except OSError as e:
    print("errno", e.errno, flush=True)
try:
    open({str(big_tree / "d00" / "f001")!r}).read()
except OSError as e:
    print("open errno", e.errno, flush=True)
sys.exit(5)
"""
    proc = subprocess.Popen([sys.executable, "-m", "pyvisor", "--dcache", "16", "do", "--",
                             sys.executable, "-c", prog], env=pyvisor_env(None),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    family: list[int] = []
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        roles = _roles(proc.pid)
        assert len(roles["sentry"]) == 1 and len(roles["gofer"]) == 1, roles
        family = roles["sentry"] + roles["gofer"] + roles["stub"]
        time.sleep(0.2)                       # let it get going
        os.kill(roles["gofer"][0], signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stdout, stderr = out.decode(), err.decode()
    assert proc.returncode == 5, stdout + stderr
    assert "errno 5" in stdout and "open errno 5" in stdout, stdout
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("pyvisor: the Gofer serving / is gone"), \
        stderr
    deadline = time.monotonic() + 5
    left = family
    while left and time.monotonic() < deadline:
        left = [p for p in family if Path(f"/proc/{p}").exists()]
        time.sleep(0.05)
    assert not left, left


def test_dcache_flag_errors_are_one_line(pyvisor_cli: CliRunner) -> None:
    for bad in ("0", "-5", "lots", str((1 << 20) + 1)):
        r = pyvisor_cli(["--dcache", bad, "do", "--", "/bin/true"])
        assert r.returncode != 0, r.output
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "--dcache" in r.stderr, r.stderr
    assert pyvisor_cli(["--dcache", "8", "do", "--", "/bin/true"]).returncode == 0


def test_dcache_annotation(tmp_path: Path) -> None:
    """`run` takes the dcache size from the OCI annotation dev.pyvisor.dcache."""
    import json
    from pyvisor.runtime.boot import BootError
    from pyvisor.runtime.spec import load_bundle
    (tmp_path / "rootfs").mkdir()
    spec = {"process": {"args": ["/bin/true"]}, "root": {"path": "rootfs"},
            "annotations": {"dev.pyvisor.dcache": "128"}}
    (tmp_path / "config.json").write_text(json.dumps(spec))
    assert load_bundle(str(tmp_path)).dcache == 128
    spec["annotations"] = {}
    (tmp_path / "config.json").write_text(json.dumps(spec))
    assert load_bundle(str(tmp_path)).dcache is None
    for bad in ("0", "many", 3.5, ["1"]):
        spec["annotations"] = {"dev.pyvisor.dcache": bad}
        (tmp_path / "config.json").write_text(json.dumps(spec))
        with pytest.raises(BootError, match="dev.pyvisor.dcache"):
            load_bundle(str(tmp_path))
