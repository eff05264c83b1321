"""Attacks on the systrap platform's own machinery (platform/systrap, SECURITY.md
*systrap*): the stub's signal handler, whose few syscall instructions the stub's
seccomp filters let through, each application thread's region (ucontext, state
word, fs base) that the handler and the Sentry share, and the trampolines of patched
syscall sites (their code, the table, the gs base that names a thread's region).

These run with --platform=systrap whatever platform the suite was given (they make
sense on no other).  Each attack runs in a forked child of programs/systrap.c (its
own stub process); the parent reports the child's fate and then its own getpid and
raw getpid: 1, so the Sentry still serves the sandbox.  What an attack may cost is
the attacking process itself (a signal, a kill), never the Sentry (no internal
error), the parent, or the host.  No native runs: there is no handler natively
(except raise_sigsys, which must behave as natively).
"""

from __future__ import annotations

import pytest

from seclib import assert_native_ran, assert_no_internal_error, kvs
from pyvisor.sentry.platform.systrap import region as R
from pyvisor.sentry.platform.systrap import stub as S
from pyvisor.sentry.platform.systrap import trampolines as T

ENOSYS = "-38"
# The platform's grace before it kills a process that ignores interrupts
# (systrap/subprocess.py INTERRUPT_GRACE_NS: 5 s), plus slack for a loaded machine.
WATCHDOG_S = 5


def _args(attack: str, child_secs: float = 20) -> list[str]:
    return [attack, hex(S.HANDLER), str(S.SITE_WRITE), str(S.SITE_FUTEX), str(S.SITE_EXIT),
            str(S.SITE_SIGRETURN), hex(R.REGIONS_START), str(R.REGION_SIZE),
            str(R.OFF_REGS + 8 * 21), str(child_secs),            # REGS.fs_base
            hex(S.TRAMPOLINE), hex(S.FAST_END), hex(T.TABLE_ADDR), hex(T.TABLE_SIZE)]


def _sandbox(pyvisor_cli, secprog, attack: str, child_secs: float = 20):  # noqa: ANN001, ANN202
    r = pyvisor_cli(["--platform=systrap", "do", "--", secprog("systrap"),
                     *_args(attack, child_secs)], timeout=90)
    assert_no_internal_error(r)
    assert r.returncode == 0, r.output
    rep = kvs(r.stdout)
    # The Sentry still serves the sandbox: the parent's libc and raw getpid are its.
    assert rep["after_getpid"] == "1" and rep["after_raw_getpid"] == "1", r.output
    return rep, r


def test_handler_syscall_sites(pyvisor_cli, secprog):
    """Jump to each syscall instruction of the handler with registers of our own: write
    to a pipe and to fd 3 (the memory file's number in the stub), futex WAKE and
    REQUEUE, getpid, kill and open at the exit and rt_sigreturn sites.  Every one traps
    (the filters allow only the handler's own calls: FUTEX_WAIT, a write to the wake
    eventfd, rt_sigreturn, exit) and is refused by the Sentry (ENOSYS: its syscall
    instruction is not application code); 200 writes of a near-maximal count to the
    wake eventfd (allowed: a spurious wake-up) leave the Sentry serving."""
    rep, r = _sandbox(pyvisor_cli, secprog, "sites")
    assert rep["status"] == "exit:0", r.output
    assert rep["pipe_read"] == "-1", f"a handler-site write reached the pipe\n{r.output}"
    for k in ("exit_site_getpid", "sigreturn_site_getpid", "exit_site_kill",
              "sigreturn_site_open"):
        assert rep[k] == ENOSYS, f"{k} = {rep[k]}: served\n{r.output}"
    assert rep["getpid_after"] == "2" and rep["raw_getpid_after"] == "2", r.output


def test_exit_group_at_handler_site(pyvisor_cli, secprog):
    """exit_group(77) at the handler's exit instruction traps like any other call (it
    is not the exit the filter allows) and gets ENOSYS: the child goes on."""
    rep, r = _sandbox(pyvisor_cli, secprog, "exit_group_site")
    assert rep["status"] == "exit:0" and rep.get("survived") == "1", r.output


def test_exit_at_handler_site(pyvisor_cli, secprog):
    """exit(0) at the handler's exit instruction is allowed: the host thread ends under
    the Sentry.  The thread never stops again; when its parent kills it, the Sentry
    finds it gone and the child is reaped (SIGKILL) at once."""
    rep, r = _sandbox(pyvisor_cli, secprog, "exit_site", child_secs=1)
    assert rep["status"] == "signal:9", r.output
    assert float(rep["child_seconds"]) < 1 + WATCHDOG_S, r.output


@pytest.mark.parametrize("attack", ["block_all_spin", "move_altstack"])
def test_unstoppable_thread_is_killed(pyvisor_cli, secprog, attack):
    """rt_sigreturn (the handler's own instruction) of a forged frame that blocks every
    host signal, the Sentry's interrupt signal too, then spins; or that moves the
    altstack into the application's memory, then makes a syscall (the handler then
    waits on memory the Sentry never reads).  Either way the thread no longer answers
    the Sentry's interrupt; when its parent kills it, the platform's watchdog kills its
    stub process after the grace period."""
    rep, r = _sandbox(pyvisor_cli, secprog, attack, child_secs=1)
    assert rep["child_timeout"] == "1" and rep["status"] == "signal:9", r.output
    assert float(rep["child_seconds"]) < 1 + 3 * WATCHDOG_S, r.output


def test_blocked_sigsys(pyvisor_cli, secprog):
    """A forged frame blocks SIGSYS, then a syscall: the host kills the stub process
    (a blocked forced signal takes its default action); the Sentry sees the death and
    the child is SIGKILLed in the sandbox."""
    rep, r = _sandbox(pyvisor_cli, secprog, "block_all_syscall")
    assert rep["status"] == "signal:9" and rep["child_timeout"] == "0", r.output


def test_regions_are_above_the_address_space(pyvisor_cli, secprog):
    """mmap(MAP_FIXED), munmap, mprotect, madvise(DONTNEED), mremap onto a region, munmap
    of the handler's page, /proc/self/mem writes to the handler: all refused by the
    Sentry (above its address space); the region is still there."""
    rep, r = _sandbox(pyvisor_cli, secprog, "tamper")
    assert rep["status"] == "exit:0", r.output
    assert int(rep["regions"]) >= 1, r.output
    for k in ("mmap_fixed", "munmap", "mprotect", "madvise", "mremap_onto", "munmap_handler",
              "pwrite_self_mem"):
        assert rep[k] == "-1", f"{k} accepted on a region or the stub\n{r.output}"
    assert rep["regions_after"] == rep["regions"] and rep["getpid_after"] == "2", r.output


def test_scribble_over_regions(pyvisor_cli, secprog):
    """A thread overwrites its process's regions (ucontexts, state words set to STOPPED,
    fs base) with noise while another makes syscalls: whatever becomes of the child,
    the Sentry reports no error and goes on serving the parent."""
    rep, r = _sandbox(pyvisor_cli, secprog, "scribble", child_secs=2)
    assert rep["status"].startswith(("exit:", "signal:")), r.output
    assert int(rep.get("regions", "0")) >= 1, r.output


def test_raise_sigsys(run, pyvisor_cli, secprog):
    """kill(getpid(), SIGSYS) is the Sentry's signal (the child dies of it, as natively),
    not a trap of the stub's handler."""
    n = assert_native_ran(run("native", [secprog("systrap"), *_args("raise_sigsys")]))
    rep, r = _sandbox(pyvisor_cli, secprog, "raise_sigsys")
    assert n["status"] == "signal:31" and rep["status"] == "signal:31", r.output


def test_jumps_into_the_trampoline(pyvisor_cli, secprog):
    """A jump to every fourth byte of the trampoline's code, each from its own process,
    with hostile registers (rsp garbage, a huge slot index, a fake region in rbx): each
    process dies of a signal (or of its 40 ms timer), none reaches the host (the
    trampoline's only syscalls are the handler's, allowed by the same filter rule), the
    Sentry goes on serving, and the patched site still works."""
    rep, r = _sandbox(pyvisor_cli, secprog, "trampoline_jumps")
    assert rep["status"] == "exit:0", r.output
    assert int(rep["jumps"]) > 50 and rep["ended"] == rep["jumps"], r.output
    assert rep["site_after"] == "1" and rep["getpid_after"] == "2", r.output


def test_overwrite_patched_site(pyvisor_cli, secprog):
    """The program writes the original instructions back over its patched site (they run
    as written), then a jump through a slot never assigned (the caller dies of SIGSEGV:
    the slot's trampoline has no site to return to)."""
    rep, r = _sandbox(pyvisor_cli, secprog, "overwrite_site")
    assert rep["status"] == "exit:0", r.output
    assert rep["patched"] == "1" and rep["restored_ok"] == "1", r.output
    assert rep["forged_slot"] == "signal:11", r.output
    assert rep["site_after"] == "1", r.output


def test_trampoline_table_is_out_of_reach(pyvisor_cli, secprog):
    """The table (below MMAP_MIN_ADDR, not in the Sentry's memory map): a store to it
    faults; mprotect, mmap(MAP_FIXED) and /proc/self/mem writes are refused; mprotect,
    madvise(DONTNEED) and munmap of [0, 0x20000) around a page of the program's own at
    0x10000 leave it alone (the platform cuts it out of what reaches the host): the
    patched site still works."""
    rep, r = _sandbox(pyvisor_cli, secprog, "table")
    assert rep["status"] == "exit:0", r.output
    assert rep["patched"] == "1" and rep["store"] == "signal:11", r.output
    for k in ("mprotect", "mmap_fixed", "pwrite_self_mem"):
        assert rep[k] == "-1", f"{k} reached the table\n{r.output}"
    assert rep["low_page"] == "0" and rep["munmap_around"] == "0", r.output
    assert rep["site_after"] == "1" and rep["getpid_after"] == "2", r.output


def test_gs_base_games(pyvisor_cli, secprog):
    """The program sets its own gs base (wrgsbase) before a patched site: garbage (the
    trampoline falls back to an ordinary trapping syscall: the right pid), a region of
    no thread of its process (it dies of SIGSEGV in the stub), the region of a sibling
    blocked in read() (the caller waits on the sibling's state word: it has hung itself,
    and is killed when its parent gives up).  The Sentry goes on serving."""
    rep, r = _sandbox(pyvisor_cli, secprog, "gs_regions", child_secs=2)
    assert rep["patched"] == "1" and rep["gs_is_region"] == "1", r.output
    assert rep["garbage_gs_getpid"] == "1", r.output
    assert rep["foreign_region"] == "signal:11", r.output
    assert rep["status"] in ("exit:0", "signal:9"), r.output
