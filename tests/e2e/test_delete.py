"""`pyvisor delete`: what a killed container leaves behind is removed; bad ids are refused."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pvtest import REPO, CliRunner, pyvisor_env
from test_run import Bundle, bundle, make_config  # noqa: F401 - the fixture


def _cgroups(pid: int) -> list[str]:
    return [p for p in glob.glob("/sys/fs/cgroup/**/pyvisor-%d-*" % pid, recursive=True)]


def _start(bundle: Bundle, cid: str) -> subprocess.Popen[bytes]:
    """`pyvisor run` of a bundle that prints "started" and sleeps."""
    bundle.write_config(make_config(["/bin/sh", "-c", "echo started; sleep 60"], bundle.data))
    return subprocess.Popen([sys.executable, "-m", "pyvisor", "--root", str(bundle.state), "run",
                             "--bundle", str(bundle.dir), cid], stdout=subprocess.PIPE,
                            env=pyvisor_env(None), cwd=str(REPO))


def test_delete_after_the_launcher_was_killed(bundle: Bundle, pyvisor_cli: CliRunner) -> None:
    cid = "killed-one"
    p = _start(bundle, cid)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"started\n"
        # Still running: delete without --force refuses, with a one-line error.
        busy = pyvisor_cli(["--root", str(bundle.state), "delete", cid])
        assert busy.returncode != 0 and len(busy.stderr.strip().splitlines()) == 1
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        p.kill()
    time.sleep(0.2)
    assert (bundle.state / cid / "state.json").exists()      # left behind by the kill
    left = _cgroups(p.pid)
    assert left, "a killed launcher leaves its cgroup"
    r = pyvisor_cli(["--root", str(bundle.state), "delete", cid])
    assert r.returncode == 0, r.stderr
    assert not (bundle.state / cid).exists()
    assert not _cgroups(p.pid)


def test_delete_force_kills_a_running_container(bundle: Bundle, pyvisor_cli: CliRunner) -> None:
    cid = "running-one"
    p = _start(bundle, cid)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"started\n"
        r = pyvisor_cli(["--root", str(bundle.state), "delete", "--force", cid])
        assert r.returncode == 0, r.stderr
        assert p.wait(timeout=30) == -signal.SIGKILL
    finally:
        p.kill()
    assert not (bundle.state / cid).exists()
    assert not _cgroups(p.pid)


def test_delete_unknown_and_hostile_ids(bundle: Bundle, pyvisor_cli: CliRunner,
                                        tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "state.json").write_text('{"pid": 1}')
    for cid in ("../" + os.path.relpath(victim, bundle.state), "..", "/etc"):
        r = pyvisor_cli(["--root", str(bundle.state), "delete", "--force", cid])
        assert r.returncode != 0, cid
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    # An unknown (well-formed) id: an error, but not with --force (as runc and runsc).
    r = pyvisor_cli(["--root", str(bundle.state), "delete", "no-such-container"])
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = pyvisor_cli(["--root", str(bundle.state), "delete", "--force", "no-such-container"])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert (victim / "state.json").exists()                  # nothing outside --root touched
