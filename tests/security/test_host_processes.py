"""Host processes: signals, ptrace, memory access and /proc of host PIDs.

A host `sleep 60` (the `sleeper` fixture) is started before each attack; the
attack gets its host PID (and the address of one of its mappings). Natively
the attack reaches it; from the sandbox it must not: the sleeper is still
alive, untraced, afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from seclib import alive, assert_native_ran, assert_sandbox_ran, proc_state

REPO = Path(__file__).resolve().parents[2]


def _first_mapping(pid: int) -> str:
    line = Path(f"/proc/{pid}/maps").read_text().splitlines()[0]
    return line.split("-")[0]


def _tracer(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return -1


def _sched_state(pid: int) -> tuple[str, ...]:
    """Nice value, policy and allowed CPUs of a host process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    cpus = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Cpus_allowed_list")]
    return (fields[16], fields[38], *cpus)


def _another_sleeper():
    return subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL,
                            start_new_session=True)


def test_proc_lists_sandbox_pids_only(run, secprog, sleeper):
    """/proc inside lists the sandbox's PIDs only (natively: every host PID)."""
    n = assert_native_ran(run("native", [secprog("procs"), "proclist", "native"], timeout=30))
    assert int(n["proc_count"]) >= 10, n
    assert str(sleeper.pid) in n["proc_list"].split()
    r = run("pyvisor", [secprog("procs"), "proclist", "sandbox"], timeout=60)
    s = assert_sandbox_ran(r)
    assert int(s["proc_count"]) < 10, r.output
    assert s["getpid"] == "1"
    assert str(sleeper.pid) not in s["proc_list"].split() or sleeper.pid < 10, r.output


def test_kill_minus_one(run, secprog, sleeper):
    """kill(-1, SIGKILL) from inside kills the sandbox's own processes only:
    a host process and another sandbox stay alive. Natively it is run only as
    the init of a new PID namespace (where it kills our own child, showing
    what it does); run natively on the host it would kill everything."""
    n = assert_native_ran(run("native", [secprog("procs"), "kill_all", "native"], timeout=30))
    assert n["kill_all"] == "0" and n["own_child"] == "signal:9", n
    assert alive(sleeper)
    # Another sandbox, which the attack must not reach either.
    env = dict(os.environ, PYTHONPATH=str(REPO))
    other = subprocess.Popen([sys.executable, "-m", "pyvisor", "do", "--", "sleep", "30"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        time.sleep(1.0)
        assert other.poll() is None, "the other sandbox did not start"
        r = run("pyvisor", [secprog("procs"), "kill_all", "sandbox"], timeout=60)
        s = assert_sandbox_ran(r)
        assert s["own_child"] == "signal:9", r.output
        assert s["survivor_getpid"] == "1", r.output
        assert alive(sleeper), "kill(-1) in the sandbox killed a host process"
        assert other.poll() is None, "kill(-1) in the sandbox killed another sandbox"
    finally:
        if other.poll() is None:
            os.killpg(other.pid, signal.SIGKILL)
        other.wait(timeout=30)
        other.stderr.close()
        time.sleep(0.2)


def test_kill_host_pid(run, secprog, sleeper):
    """kill/tgkill/tkill/sigqueue/pidfd/setpriority of a host PID: ESRCH (or a
    refusal) inside; natively they kill our own sleeper."""
    victim = _another_sleeper()
    try:
        n = assert_native_ran(run("native", [secprog("procs"), "kill_pid", "native",
                                             str(victim.pid)], timeout=30))
        assert n["kill_0"] == "0" and n["kill_kill"] == "0", n
        victim.wait(timeout=10)
        assert victim.returncode == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
    sched = _sched_state(sleeper.pid)
    r = run("pyvisor", [secprog("procs"), "kill_pid", "sandbox", str(sleeper.pid)],
            timeout=60)
    s = assert_sandbox_ran(r)
    assert alive(sleeper), f"the sandbox killed a host process\n{r.output}"
    assert _sched_state(sleeper.pid) == sched, "the sandbox changed a host process"
    for k in ("kill_0", "kill_kill", "tgkill", "tkill", "kill_pgrp_0", "kill_pgrp"):
        assert s[k] == "-1" and s[f"{k}_errno"] == "ESRCH", f"{k}\n{r.output}"
    for k in ("rt_sigqueueinfo", "pidfd_open", "pidfd_send_signal"):
        assert s[k] == "-1", f"{k} reached a host pid\n{r.output}"


def test_host_pid_is_unknown_inside(run, secprog, sleeper):
    """A host PID does not exist in the sandbox: every call naming it
    (setpriority, sched_setaffinity, sched_setscheduler, prlimit, getpgid,
    getsid) fails with ESRCH, as Linux does for a PID outside the caller's
    PID namespace (natively they all succeed on our sleeper)."""
    victim = _another_sleeper()
    try:
        n = assert_native_ran(run("native", [secprog("procs"), "kill_pid", "native",
                                             str(victim.pid)], timeout=30))
    finally:
        victim.kill()
        victim.wait()
    for k in ("setpriority", "sched_setaffinity", "sched_setscheduler", "prlimit",
              "getpgid", "getsid"):
        assert n[k] != "-1", (k, n)
    sched = _sched_state(sleeper.pid)
    r = run("pyvisor", [secprog("procs"), "kill_pid", "sandbox", str(sleeper.pid)],
            timeout=60)
    s = assert_sandbox_ran(r)
    assert _sched_state(sleeper.pid) == sched, "the sandbox changed a host process"
    wrong = {k: f"{s[k]} {s[k + '_errno']}" for k in (
        "setpriority", "sched_setaffinity", "sched_setscheduler", "prlimit", "getpgid",
        "getsid") if s[f"{k}_errno"] != "ESRCH"}
    assert not wrong, f"calls on a PID unknown to the sandbox did not fail with ESRCH: {wrong}"


def test_ptrace_host_pid(run, secprog, sleeper):
    """PTRACE_ATTACH/SEIZE of a host PID (natively: it works) and of the caller itself
    (the sandbox's init) are refused inside; the sleeper is untraced.  PTRACE_TRACEME
    succeeds, as natively, but only makes the sandboxed parent the tracer (the Sentry's
    ptrace, kernel/ptrace.py): no host tracer changes."""
    n = assert_native_ran(run("native", [secprog("procs"), "ptrace", "native",
                                         str(sleeper.pid)], timeout=30))
    assert n["attach"] == "0" and n["seize"] == "0" and n["traceme"] == "0", n
    time.sleep(0.1)
    assert _tracer(sleeper.pid) == 0
    r = run("pyvisor", [secprog("procs"), "ptrace", "sandbox", str(sleeper.pid)],
            timeout=60)
    s = assert_sandbox_ran(r)
    for k in ("attach", "seize", "attach_init", "peek_init"):
        assert s[k] == "-1", f"ptrace {k} succeeded in the sandbox\n{r.output}"
    assert s["attach_errno"] == "ESRCH" and s["seize_errno"] == "ESRCH", r.output
    assert s["traceme"] == "0", r.output        # the sandbox's own ptrace
    assert alive(sleeper) and _tracer(sleeper.pid) == 0
    assert proc_state(sleeper.pid) in ("S", "R"), proc_state(sleeper.pid)


def test_process_vm_readv_host_pid(run, secprog, sleeper):
    """process_vm_readv/writev, /proc/PID/mem, pidfd_getfd, kcmp of a host PID:
    natively readv reads the sleeper's memory; inside everything fails."""
    addr = _first_mapping(sleeper.pid)
    n = assert_native_ran(run("native", [secprog("procs"), "pvm", "native",
                                         str(sleeper.pid), addr], timeout=30))
    assert n["readv"] == "64" and n["pread_mem"] == "64", n
    r = run("pyvisor", [secprog("procs"), "pvm", "sandbox", str(sleeper.pid), addr],
            timeout=60)
    s = assert_sandbox_ran(r)
    for k in ("readv", "writev", "open_mem", "pidfd_getfd", "kcmp"):
        assert s[k] == "-1", f"{k} reached a host pid\n{r.output}"
    assert alive(sleeper)


def test_proc_of_host_pid(run, secprog, sleeper):
    """/proc/HOSTPID/{status,environ,root,cwd,exe,fd,ns,maps} do not exist
    inside (natively they do); /proc/1 is the sandbox's init."""
    n = assert_native_ran(run("native", [secprog("procs"), "procpid", "native",
                                         str(sleeper.pid)], timeout=30))
    assert n["host/status"] == "0" and n["host/root/"] == "0", n
    r = run("pyvisor", [secprog("procs"), "procpid", "sandbox", str(sleeper.pid)],
            timeout=60)
    s = assert_sandbox_ran(r)
    for k, v in s.items():
        if k.startswith("host") and not k.endswith("_errno"):
            assert v == "-1" and s[f"{k}_errno"] == "ENOENT", f"{k}\n{r.output}"
    assert s["init_exe"] == secprog("procs"), r.output
    assert s["init_root"] == "/", r.output
