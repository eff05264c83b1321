"""The layers behind the syscall gate, seen from the host while a sandbox runs:
the Sentry, the Gofer and every stub must run under a seccomp filter
(`Seccomp: 2` in their host /proc status), with no new privileges, in
namespaces of their own (not the host's PID, mount and network ones), and
the Sentry and the stubs without capabilities."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pvtest import descendants as _descendants
from pvtest import is_stub
from pvtest import proc_status as _status
from seclib import REPO


def test_host_processes_are_confined():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pyvisor", "do", "--", "sleep", "3"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        time.sleep(1.5)
        assert proc.poll() is None, proc.stderr.read().decode()
        report, problems = [], []
        ours = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("pid", "mnt", "net")}
        for pid in _descendants(proc.pid):
            try:
                st = _status(pid)
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                nss = {ns: os.readlink(f"/proc/{pid}/ns/{ns}") for ns in ours}
            except OSError:
                continue
            stub = is_stub(pid)
            role = "stub" if stub else ("sentry" if st["NSpid"].split()[-1] == "1"
                                        else "gofer/other")
            report.append(f"{pid} {role} ({comm}): Seccomp {st['Seccomp']}, NoNewPrivs "
                          f"{st['NoNewPrivs']}, CapEff {st['CapEff']}")
            if st["Seccomp"] != "2":
                problems.append(f"{role} {pid}: no seccomp filter (Seccomp: {st['Seccomp']})")
            if st["NoNewPrivs"] != "1":
                problems.append(f"{role} {pid}: NoNewPrivs is {st['NoNewPrivs']}")
            if role in ("stub", "sentry") and int(st["CapEff"], 16) != 0:
                problems.append(f"{role} {pid}: capabilities {st['CapEff']}")
            shared = [ns for ns in ours if nss[ns] == ours[ns]]
            if shared:
                problems.append(f"{role} {pid}: in the host's {shared} namespace(s)")
        print("\n".join(report))
        assert report, "found no sandbox processes"
        assert not problems, "\n".join(problems + ["--"] + report)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)   # the launcher and the Sentry
        proc.wait(timeout=30)
        proc.stderr.close()
        time.sleep(0.3)


def test_no_stray_processes_when_launcher_killed():
    """`pyvisor do` is SIGKILLed (by a user, an OOM killer, a timeout): the
    Sentry, the Gofer and the stubs must go with it, not run on unattended
    (the issue: "no stray processes ... remain"). The guard fixture also
    fails the test if anything is left."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pyvisor", "do", "--", "sleep", "30"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    time.sleep(1.0)
    family = _descendants(proc.pid)
    assert family, "the sandbox did not start"
    proc.kill()          # the launcher only
    proc.wait(timeout=30)
    deadline = time.monotonic() + 3
    left = family
    while time.monotonic() < deadline:
        left = [p for p in family if Path(f"/proc/{p}").exists()
                and Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()[0] != "Z"]
        if not left:
            break
        time.sleep(0.1)
    described = [f"{p} {Path(f'/proc/{p}/comm').read_text().strip()}" for p in left
                 if Path(f"/proc/{p}").exists()]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.3)
    assert not left, f"still running 3 s after the launcher was killed: {described}"
