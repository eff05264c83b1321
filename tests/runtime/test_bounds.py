"""Honest limits: every task (zombies too) counts against --pids-limit, and what the
Sentry holds for the application (pipe buffers, socket queues, epoll watches, queued
signals) is bounded by --sentry-memory.  Past a bound the program gets the errno Linux
gives for that object, and the sandbox goes on; once released, the room comes back.

The program is tests/programs/bounds.c; it reports key=value lines, including
/proc/meminfo's SUnreclaim (what the sandbox's Sentry holds for it, in kB) before,
at the bound and after release.
"""

from __future__ import annotations

import pytest

from pvtest import Builder, CliRunner, Result, Runner


def _kvs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k] = v
    return out


def _bounds(cli: CliRunner, program: Builder, flags: list[str], *args: str) -> dict[str, str]:
    r: Result = cli([*flags, "do", "--", program("bounds.c"), *args], timeout=180)
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.output
    assert r.returncode == 0, r.output
    kv = _kvs(r.stdout)
    assert kv.get("alive") == "1", r.output
    return kv


def _released(kv: dict[str, str], full_kb: int) -> None:
    """At the bound the Sentry held about `full_kb`; after release, what it held before."""
    assert int(kv["slab_full"]) >= full_kb * 15 // 16, kv
    assert kv["slab_after"] == kv["slab_before"], kv


def test_zombies_count_against_pids_limit(pyvisor_cli: CliRunner, program: Builder) -> None:
    """With --pids-limit 64, init and 63 unreaped zombies fill the pid space: the 64th
    fork gets EAGAIN (as fork does in Linux when pid_max or pids.max is reached); after
    reaping, 63 forks work again."""
    kv = _bounds(pyvisor_cli, program, ["--pids-limit", "64"], "zombies")
    assert kv["zombies"] == "63" and kv["fork_errno"] == "EAGAIN", kv
    assert kv["reaped"] == "63", kv
    assert kv["again"] == "63" and kv["again_errno"] == "EAGAIN", kv


def test_pipe_buffers_bounded(pyvisor_cli: CliRunner, program: Builder) -> None:
    """Filling 64 KiB non-blocking pipes one after another: with --sentry-memory 16M the
    write that reaches the bound writes what fits (and returns at once: it once slept
    after a partial write), the next gets ENOMEM (pipe_write's failed page allocation)
    after 16 MiB in all; closing the pipes gives it back and a new pipe fills."""
    kv = _bounds(pyvisor_cli, program, ["--sentry-memory", "16M"], "pipes")
    assert kv["write_errno"] == "ENOMEM" and kv["pipe_errno"] == "0", kv
    # All of the bound but what the sandbox's own tmpfs roots and /dev hold (a few kB).
    assert 16384 - 64 <= int(kv["filled_kb"]) <= 16384, kv
    _released(kv, 16384)
    assert kv["after"] == "65536", kv


@pytest.mark.parametrize("where", ["native", "pyvisor"])
def test_sigqueue_rlimit_sigpending(where: str, run: Runner, program: Builder) -> None:
    """RLIMIT_SIGPENDING 1000: sigqueue of a blocked real-time signal fails with EAGAIN
    once 1000 are queued (natively the count is per user, so other processes of root may
    hold a few); kill() of another real-time signal still succeeds; every queued signal
    comes out, in order, and sigqueue works again."""
    r = run(where, [program("bounds.c"), "sigqueue", "1000"], timeout=120)
    assert r.returncode == 0, r.output
    kv = _kvs(r.stdout)
    assert kv["sigqueue_errno"] == "EAGAIN" and kv["kill_rt"] == "0", kv
    queued = int(kv["queued"])
    assert (queued == 1000) if where == "pyvisor" else (900 < queued <= 1000), kv
    assert kv["taken"] == kv["queued"] and kv["in_order"] == "1", kv
    assert kv.get("rt1_taken") == "1" and kv["again"] == "0", kv


def test_signal_queue_bounded(pyvisor_cli: CliRunner, program: Builder) -> None:
    """With --sentry-memory 1M (and RLIMIT_SIGPENDING's default, 63704), queued signals
    fill the bound first: sigqueue gets EAGAIN, nothing is lost of what was queued, and
    taking them gives the memory back."""
    kv = _bounds(pyvisor_cli, program, ["--sentry-memory", "1M"], "sigqueue")
    assert kv["sigqueue_errno"] == "EAGAIN" and kv["kill_rt"] == "0", kv
    assert 1000 < int(kv["queued"]) < 63704, kv
    assert kv["taken"] == kv["queued"] and kv["in_order"] == "1", kv
    _released(kv, 1024)
    assert kv["again"] == "0", kv


def test_epoll_watches_bounded(pyvisor_cli: CliRunner, program: Builder) -> None:
    """Ever more epoll instances watching 64 eventfds: with --sentry-memory 8M,
    epoll_ctl(ADD) gets ENOSPC (Linux: past fs.epoll.max_user_watches); closing the
    instances frees the watches."""
    kv = _bounds(pyvisor_cli, program, ["--sentry-memory", "8M"], "epoll")
    assert kv["epoll_errno"] == "ENOSPC", kv
    assert 10000 < int(kv["watches"]) < 64 * 3000, kv
    _released(kv, 8192)
    assert kv["after"] == "64", kv


def test_socket_queues_bounded(pyvisor_cli: CliRunner, program: Builder) -> None:
    """Filling AF_UNIX socketpairs: each stops at its SO_SNDBUF (EAGAIN); with
    --sentry-memory 8M a send then fails with ENOBUFS (sock_alloc_send_pskb), and
    closing the pairs gives the memory back."""
    kv = _bounds(pyvisor_cli, program, ["--sentry-memory", "8M"], "sockets")
    assert kv["send_errno"] == "ENOBUFS" and kv["socketpair_errno"] == "0", kv
    assert int(kv["pairs"]) > 4, kv
    _released(kv, 8192)
    assert kv["after"] == "1000", kv


def test_bad_sentry_memory_flag(pyvisor_cli: CliRunner) -> None:
    r = pyvisor_cli(["--sentry-memory", "lots", "do", "--", "/bin/true"])
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "size" in r.stderr, r.output
