"""The syscall gate: only the 64-bit `syscall` instruction is served, and only
by the Sentry.

int 0x80, sysenter, and code running in a 32-bit code segment (a far return
to selector 0x23) must get -ENOSYS or a signal inside -- never a host
service (natively, on this AMD host with IA-32 emulation, int 0x80 and
compat-mode syscall really run: getpid answers, exit(42) exits 42). Code
written at run time is served by the Sentry (getpid answers the sandbox's
PID). The Sentry's own injection page (`syscall; int3` at a fixed address in
every stub) cannot be used or changed. Signals and traps of every kind do not
detach the tracer: a raw `syscall` afterwards still answers getpid() == 1.

Every attack runs in a forked child of the program (PID 2 inside); the
parent reports the child's fate and then its own raw getpid.
"""

from __future__ import annotations

import pytest

from seclib import assert_native_ran, assert_sandbox_ran

import os

if os.environ.get("PYVISOR_PLATFORM") == "systrap":
    from pyvisor.sentry.platform.systrap.stub import SYSCALL_ADDR
else:
    from pyvisor.sentry.platform.ptrace.stub import SYSCALL_ADDR

ENOSYS = "-38"
REFUSED_SIGNALS = ("signal:11", "signal:31", "signal:4")


def _native(run, secprog, attack, *args):
    return assert_native_ran(run("native", [secprog("gate"), attack, *args], timeout=30))


def _sandbox(run, secprog, attack, *args):
    r = run("pyvisor", [secprog("gate"), attack, *args], timeout=60)
    rep = assert_sandbox_ran(r)
    # The tracer is still there: the parent's raw getpid is the sandbox's.
    assert rep["after_getpid"] == "1" and rep["after_raw_getpid"] == "1", r.output
    assert rep.get("child_timeout") is None, f"the attack hung\n{r.output}"
    return rep, r


def _refused(rep, r, key="ret"):
    """-ENOSYS, or the child died of SIGSEGV/SIGSYS/SIGILL before an answer."""
    if rep["status"] in REFUSED_SIGNALS:
        return
    assert rep["status"] == "exit:0", f"child: {rep['status']}\n{r.output}"
    assert rep[key] == ENOSYS, f"{key} = {rep[key]}, not -ENOSYS\n{r.output}"


@pytest.mark.parametrize("attack", ["int80_getpid", "compat_int80_getpid"])
def test_32bit_getpid(attack, run, secprog):
    """int 0x80 getpid (eax=20), from 64-bit code and from a 32-bit segment."""
    n = _native(run, secprog, attack)
    assert n["ret"] == n["getpid"], n
    rep, r = _sandbox(run, secprog, attack)
    _refused(rep, r)


@pytest.mark.parametrize("attack", ["int80_exit", "compat_int80_exit",
                                    "compat_syscall_exit"])
def test_32bit_exit(attack, run, secprog):
    """exit(42) through int 0x80 (64-bit and 32-bit code) and through `syscall`
    in a 32-bit segment: natively the child exits 42, except that Intel CPUs
    make `syscall` in a 32-bit segment #UD (SIGILL); AMD ones serve it."""
    n = _native(run, secprog, attack)
    native_ok = ("exit:42", "signal:4") if attack == "compat_syscall_exit" else ("exit:42",)
    assert n["status"] in native_ok, n
    rep, r = _sandbox(run, secprog, attack)
    assert rep["status"] != "exit:42", f"a 32-bit exit was served\n{r.output}"
    _refused(rep, r)


def test_int80_abi_confusion(run, secprog):
    """int 0x80 with 64-bit numbers (60 = exit, 39 = getpid): natively they are
    the 32-bit umask and mkdir; inside they are neither."""
    n = _native(run, secprog, "int80_abi_confusion")
    assert n["ret39"] == "-14" and n["status"] == "exit:0", n
    rep, r = _sandbox(run, secprog, "int80_abi_confusion")
    assert rep["status"] != "exit:42", r.output
    _refused(rep, r, "ret60")
    _refused(rep, r, "ret39")


@pytest.mark.parametrize("attack", ["sysenter_exit", "sysenter_getpid",
                                    "compat_sysenter_exit", "compat_syscall_getpid"])
def test_sysenter_and_compat_syscall(attack, run, secprog):
    """sysenter (64-bit and 32-bit segments) and compat-mode `syscall` getpid.
    On this AMD CPU sysenter in long mode is #UD natively (SIGILL), and the
    compat getpid returns into a missing 32-bit vDSO (SIGSEGV): recorded, not
    required. Inside: never exit 42, never a host pid."""
    n = _native(run, secprog, attack)
    assert n["status"] in ("exit:42", "signal:4", "signal:11", "exit:0"), n
    rep, r = _sandbox(run, secprog, attack)
    assert rep["status"] != "exit:42", r.output
    _refused(rep, r)


def test_syscall_in_fresh_code(run, secprog):
    """`syscall; ret` written at run time (RWX page, W-then-X page, a memfd
    mapped RW and RX) with rax=39: served by the Sentry, so it answers the
    sandbox's PID (2 for the child), never the host's. The same bytes then
    rewritten to `int 0x80`: -ENOSYS, or (a stale syscall site the Sentry
    cached, documented in kernel._is_syscall_insn) served by the Sentry as the
    64-bit getpid -- natively it is the 32-bit mkdir (-EFAULT)."""
    n = _native(run, secprog, "rwx")
    for k in ("rwx_getpid", "wx_getpid", "memfd_getpid"):
        assert n[k] == n["getpid"], n
    assert n["rewritten_int80"] == "-14", n
    rep, r = _sandbox(run, secprog, "rwx")
    assert rep["status"] == "exit:0" and rep["getpid"] == "2", r.output
    for k in ("rwx_getpid", "wx_getpid", "memfd_getpid"):
        assert rep[k] == "2", f"{k} = {rep[k]}\n{r.output}"
    for k in ("rewritten_int80", "rewritten_rwx_int80"):
        assert rep[k] in (ENOSYS, "2"), f"{k} = {rep[k]}\n{r.output}"


def test_vsyscall_page(run, secprog):
    """time() and gettimeofday() at the legacy vsyscall page: natively they
    work; inside they either work with a sane value or raise SIGSEGV (or
    SIGSYS) -- no host effect either way, and the sandbox goes on."""
    n = _native(run, secprog, "vsyscall")
    assert abs(int(n["vsyscall_time"]) - int(n["libc_time"])) <= 5, n
    rep, r = _sandbox(run, secprog, "vsyscall")
    if rep["status"] == "exit:0":
        assert abs(int(rep["vsyscall_time"]) - int(rep["libc_time"])) <= 5, r.output
        assert abs(int(rep["vsyscall_tv_sec"]) - int(rep["libc_time"])) <= 5, r.output
    else:
        assert rep["status"] in ("signal:11", "signal:31"), (
            f"the vsyscall page killed the child with {rep['status']} (not SIGSEGV/"
            f"SIGSYS)\n{r.output}")


def test_traps_and_stops_keep_the_tracer(run, secprog):
    """raise(SIGTRAP), int3, `int $3`, single-stepping (EFLAGS.TF) across a raw
    syscall, sigqueue(SIGTRAP), SIGSTOP and SIGTSTP to ourselves (continued by
    the parent), SIGCONT by tgkill: the same traps as natively, and the raw
    syscall made while single-stepping answers the sandbox's PID."""
    n = _native(run, secprog, "signals")
    rep, r = _sandbox(run, secprog, "signals")
    assert rep["status"] == "exit:0", r.output
    for k in ("traps_int3", "single_steps", "traps_total"):
        assert rep[k] == n[k], f"{k}: native {n[k]}, sandbox {rep[k]}\n{r.output}"
    assert rep["tf_syscall_getpid"] == "2" and rep["child_getpid_after"] == "2", r.output


@pytest.mark.parametrize("attack,status", [("int3_unhandled", "signal:5"),
                                           ("raise_kill", "signal:9"),
                                           ("stop_then_kill", "signal:9")])
def test_fatal_signals(attack, status, run, secprog):
    """int3 with no handler (SIGTRAP), raise(SIGKILL), and SIGSTOP, SIGCONT,
    SIGTRAP, SIGKILL in a row: the child dies as natively; the sandbox's
    init still gets sandbox answers."""
    n = _native(run, secprog, attack)
    assert n["status"] == status, n
    rep, r = _sandbox(run, secprog, attack)
    assert rep["status"] == status, r.output


def test_faults(run, secprog):
    """ud2, hlt, cli, divide by zero, a write to a kernel address, mov from
    cr0, port I/O: each the same signal as natively, caught and survived."""
    n = _native(run, secprog, "faults")
    rep, r = _sandbox(run, secprog, "faults")
    for k in ("ud2", "hlt", "cli", "div0", "kernel_write", "mov_cr0", "in_port"):
        assert rep[k] == n[k], f"{k}: native {n[k]}, sandbox {rep[k]}\n{r.output}"
    assert rep["getpid_after"] == "2", r.output


def test_jump_to_injection_point(run, secprog):
    """Jump to the Sentry's injection point (the stub's `syscall; int3`) with
    rax=39. The syscall is an application syscall (PTRACE_SYSEMU): served or
    refused by the Sentry, answering 2 or -ENOSYS, then the int3 traps. There
    is no such page natively, so no native run."""
    rep, r = _sandbox(run, secprog, "stubpage", hex(SYSCALL_ADDR))
    assert rep["status"] == "exit:0", r.output
    assert rep["stub_rax"] in (ENOSYS, "2"), r.output
    assert rep["getpid_after"] == "2", r.output


def test_tamper_with_stub_page(run, secprog):
    """mmap(MAP_FIXED) over, mprotect, mremap onto, munmap, shmat at, and
    /proc/self/mem writes to the stub page: all refused; the page is
    unchanged and the platform still forks. No native run (no stub page)."""
    rep, r = _sandbox(run, secprog, "stub_tamper", hex(SYSCALL_ADDR))
    assert rep["status"] == "exit:0", r.output
    for k in ("mmap_fixed", "mmap_fixed_overlap", "mprotect", "mremap_onto", "shmat"):
        assert rep[k] == "-1", f"{k} accepted on the stub page\n{r.output}"
    assert rep["mmap_hint_is_stub"] == "0", r.output
    assert rep.get("pwrite_self_mem", "-1") == "-1", r.output
    assert rep["stub_unchanged"] == "1", r.output
    assert rep["fork_after"] == "exit:7" and rep["getpid_after"] == "2", r.output
