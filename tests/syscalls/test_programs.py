"""Runs each self-checking program of tests/programs natively and under
pyvisor (gVisor's test/syscalls in miniature): a program prints "ok" and
exits 0, or names the failed check on stderr and exits 1."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Builder, Runner

WHERE = ["native", "pyvisor"]

# Programs that print "ok" and exit 0 with no arguments.
SELF_CHECKING = [
    "pipe.c",
    "fork_wait.c",
    "exec.c",
    "exec_args.c",
    "signals.c",
    "threads.c",
    "mmap.c",
    "files.c",
    "dup_fcntl.c",
    "poll.c",
    "time.c",
    "misc.c",
    "tty.c",
    "efault.c",
    "partial_writes.c",
    "vdso.c",
    "avx_signal.c",
    "mremap_file.c",
    "wakeups.c",
    "timers.c",
    "signalfd.c",
    "xattr.c",
    "locks.c",
    "pidfd.c",
    "msgqueue.c",
    "semaphore.c",
    "cputimers.c",
    "fifo_open.c",
    "wipeonfork.c",
    "proc_mem_guard.c",
    "seccomp.c",
    "memfd_seals.c",
    "mqueue.c",
    "getdents.c",
    "shm.c",
    "sigio.c",
    "caps.c",
    "mlock.c",
    "mremap_vmas.c",
    "getdents_old.c",
    "mmap_sigbus.c",
    "proc_pid.c",
    "pty.c",
    "pipe_reopen.c",
    "inet_sigurg.c",
    "netns_userns_caps.c",
    "big_writes.c",
]

# Also run statically linked: no dynamic loader, glibc's static start-up
# (TLS set-up, IRELATIVE relocations) runs from the binary itself.
STATIC = ["pipe.c", "fork_wait.c", "exec.c", "signals.c", "threads.c", "mmap.c", "vdso.c",
          "avx_signal.c", "seccomp.c"]


def _ids(name: str) -> str:
    return name.removesuffix(".c")


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("name", SELF_CHECKING, ids=_ids)
def test_program(name: str, where: str, program: Builder, run: Runner) -> None:
    result = run(where, [program(name)])
    assert result.returncode == 0, result.output
    assert "ok" in result.stdout.split(), result.output


def test_proc_anon_vma_names(program: Builder, run: Runner) -> None:
    """prctl(PR_SET_VMA_ANON_NAME) works in the sandbox whatever the host kernel was
    built with (proc_pid.c checks it where supported, and says whether it was)."""
    result = run("pyvisor", [program("proc_pid.c")])
    assert result.returncode == 0, result.output
    assert "anon_names=supported" in result.stdout.split(), result.output


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("name", STATIC, ids=lambda n: _ids(n) + "-static")
def test_program_static(name: str, where: str, program: Builder, run: Runner) -> None:
    result = run(where, [program(name, static=True)])
    assert result.returncode == 0, result.output
    assert "ok" in result.stdout.split(), result.output


@pytest.mark.parametrize("where", WHERE)
def test_isolation(where: str, program: Builder, run: Runner) -> None:
    mode = "native" if where == "native" else "sandbox"
    result = run(where, [program("isolation.c"), mode])
    assert result.returncode == 0, result.output
    assert "ok" in result.stdout.split(), result.output
    # The sandbox's mount of /mnt stayed in the Sentry: the host has none there.
    mounts = open("/proc/self/mountinfo").read().splitlines()
    assert not [m for m in mounts if m.split()[4] == "/mnt"], mounts


@pytest.mark.parametrize("where", WHERE)
def test_pid1(where: str, program: Builder, run: Runner) -> None:
    result = run(where, [program("pid1.c")])
    assert result.returncode == 0, result.output
    pid = result.stdout.strip()
    assert pid.isdigit(), result.output
    if where == "pyvisor":
        # The first process is init of the sandbox's PID namespace.
        assert pid == "1", result.output
