"""End to end: real workloads in sandboxes whose Sentry and Gofers run under their
seccomp filters, installed exactly where production installs them.

Each workload is a fresh `pyvisor` process started through
pyvisor.seccomp.harness: the Sentry filter is installed (default action: kill)
at run_sandbox's filter point, after boot() and confinement and before
kernel.run(); each Gofer installs its filter in its forked child just before
serve().  A filter that misses a syscall kills the sandbox by SIGSYS (exit
status 159, or -31 unconfined); the failure message then names the syscall
from the kernel's audit record (dmesg, "type=1326 ... syscall=NR").

To find a missing syscall by hand:
    python3 -m pyvisor.seccomp.discover --enforce log --only NAME   (logs, keeps running)
    python3 -m pyvisor.seccomp.discover --only NAME                 (strace-based discovery)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytest.importorskip("seccomp")

from pyvisor.seccomp import discover as D

WORKLOADS = {w.name: w for w in D.workloads()}

# The brief's core set first, then everything discover.py runs.
CORE = ["sh-pipeline", "python-threads-subprocess", "gcc-hello", "ls-usr", "oci-bind-rw"]
ALL = CORE + [n for n in WORKLOADS if n not in CORE]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> D.Workspace:
    root = tmp_path_factory.mktemp("seccomp")
    top = tmp_path_factory.getbasetemp().resolve().parent
    for p in [root, *root.parents]:           # the sandbox reads programs as any user
        p.chmod(0o755)
        if p == top:
            break
    return D.Workspace(root / "ws")


def _dmesg() -> list[str]:
    try:
        return subprocess.run(["dmesg"], check=False, capture_output=True, text=True,
                              timeout=30).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return []


def _explain(before: int, o: D.Outcome) -> str:
    audit = D.explain_audit([ln for ln in _dmesg()[before:] if "type=1326" in ln])
    return (f"{o.name}: rc={o.returncode}\nreports: {o.reports}\n"
            f"audit (the syscall that killed it): {audit or 'none found'}\n"
            f"--- stdout ---\n{o.stdout[-3000:]}\n--- stderr ---\n{o.stderr[-3000:]}")


@pytest.mark.parametrize("name", ALL)
def test_workload_under_filters(name: str, workspace: D.Workspace) -> None:
    w = WORKLOADS[name]
    before = len(_dmesg())
    o = D.run_workload(w, workspace, sentry_action="kill", gofer_action="kill")
    why = D.check(w, o)
    assert not why, f"{why}\n{_explain(before, o)}"
    # Both filters were really active: the host's /proc status of each process.
    assert "sentry-status Seccomp:\t2" in o.reports, _explain(before, o)
    gofers = [r for r in o.reports if r.startswith("gofer-status ")]
    assert gofers and all(r.endswith("Seccomp:\t2") for r in gofers), _explain(before, o)


def test_forced_unlisted_syscall_kills_the_sandbox(workspace: D.Workspace) -> None:
    """A test build that makes socket(2) in the Sentry after the filter: SIGSYS."""
    w = WORKLOADS["ls-usr"]
    before = len(_dmesg())
    o = D.run_workload(w, workspace, sentry_action="kill", gofer_action="kill", force="socket")
    assert o.killed_by_sigsys, _explain(before, o)
    assert "forcing socket" in o.reports and "forced syscall survived" not in o.reports, \
        _explain(before, o)
    assert "lib" not in o.stdout          # the program never ran
    audit = D.explain_audit([ln for ln in _dmesg()[before:] if "type=1326" in ln])
    if audit:                               # the kernel log may be unreadable or rate-limited
        assert any("syscall socket " in a for a in audit), audit


def test_host_proc_status_of_running_sandbox(workspace: D.Workspace) -> None:
    """While a sandbox runs, the host's /proc/PID/status shows Seccomp: 2 (filter mode)
    and NoNewPrivs: 1 for its Sentry and each Gofer."""
    seen: dict[int, str] = {}

    def on_report(line: str) -> None:
        if line.startswith("pids "):
            for pid in map(int, line.split()[1:]):
                seen[pid] = Path(f"/proc/{pid}/status").read_text()

    w = D.Workload("status-probe", ["do", "--", "/bin/sh", "-c", "sleep 0.5; echo done"],
                   expect_out="done")
    o = D.run_workload(w, workspace, sentry_action="kill", gofer_action="kill",
                       on_report=on_report)
    assert not D.check(w, o), o
    assert len(seen) >= 2, (seen.keys(), o.reports)      # the Sentry and the root Gofer
    for pid, text in seen.items():
        assert "\nSeccomp:\t2\n" in text, (pid, text)
        assert "\nNoNewPrivs:\t1\n" in text, (pid, text)
