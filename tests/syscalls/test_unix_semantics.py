"""AF_UNIX details and transfers with partly bad buffers, compared with Linux
(tests/programs/unix_dgram_semantics.c, unix_peek_off.c, unix_pidfd.c,
unix_peergroups.c, unix_gc.c, partial_buffers.c);
and the network sysctls root may write through /proc/sys
(tests/programs/sysctl_write.c), in the sandbox only, since natively it would
change the host's."""

from __future__ import annotations

from pvtest import Builder, Comparer, Runner


def test_unix_dgram_semantics(program: Builder, compare: Comparer) -> None:
    native, sandboxed = compare([program("unix_dgram_semantics.c")])
    assert native.returncode == 0 and "ok" in sandboxed.stdout.split(), sandboxed.output
    assert "dgram write after SHUT_WR: -1 EPIPE sigpipes 0" in sandboxed.stdout


def test_partial_bad_buffers(program: Builder, compare: Comparer) -> None:
    native, sandboxed = compare([program("partial_buffers.c")])
    assert native.returncode == 0 and "ok" in sandboxed.stdout.split(), sandboxed.output
    assert "read big: 1 byte h pos 1" in sandboxed.stdout
    assert "pwritev second partly bad: 8192 size 8192" in sandboxed.stdout


def test_net_sysctls_written_by_root(program: Builder, run: Runner) -> None:
    r = run("pyvisor", [program("sysctl_write.c")])
    assert r.returncode == 0, r.output
    expected = [
        "default: 32768 60999",
        "write 40000 40001: ok",
        "now: 40000 40001",
        "bind udp: port in range yes",
        "bind udp: port in range yes",
        "bind udp: EADDRINUSE",
        "bind tcp: port in range yes",
        "write 500 40001: EINVAL",
        "write 40001 40000: EINVAL",
        "write 70000 70001: EINVAL",
        "write junk: EINVAL",
        "still: 40000 40001",
        "unprivileged start 50000: EINVAL",
        "unprivileged start 80: ok now 80",
        "somaxconn 77: ok now 77",
        "wmem_max: open EACCES",
        "ip_forward 0 tcp_sack 1 write: open EACCES",
        "ipv6: auto_flowlabels 1 bindv6only 0 ip_nonlocal_bind 0 ip6frag_time 30",
        "as uid 1000: open EACCES",
        "restore: ok",
        "after: 32768 60999",
        "ok",
    ]
    assert r.stdout.splitlines() == expected, r.output


def test_unix_peergroups(program: Builder, compare: Comparer) -> None:
    native, sandboxed = compare([program("unix_peergroups.c")])
    assert native.returncode == 0 and "ok" in sandboxed.stdout.split(), sandboxed.output
    assert "accepted sees the client's: len 4: 55" in sandboxed.stdout


def test_unix_garbage_collection(program: Builder, compare: Comparer) -> None:
    native, sandboxed = compare([program("unix_gc.c")], timeout=60)
    assert native.returncode == 0 and "ok" in sandboxed.stdout.split(), sandboxed.output
    assert "two-socket cycle: EOF" in sandboxed.stdout and "reachable: open" in sandboxed.stdout


def test_unix_peek_off(program: Builder, compare: Comparer) -> None:
    native, sandboxed = compare([program("unix_peek_off.c")])
    assert native.returncode == 0 and "ok" in sandboxed.stdout.split(), sandboxed.output
    assert 'peek 5 at 7: 4 "nopq" off 11' in sandboxed.stdout


# unix_pidfd.c's transcript on Linux 6.18 (SO_PEERPIDFD came in 6.5, a reaped peer's
# pidfd in 6.15): the sandbox must print it; so must the host when its kernel is new
# enough, which makes it a comparison there.
PIDFD_TRANSCRIPT = """\
unconnected SO_PEERPIDFD: -1 ENODATA
SO_PASSPIDFD default 0, set 1
SO_PEERPIDFD: fd, cloexec 1
waitid on it reaps: the child
SO_PEERPIDFD of a reaped peer: fd
pidfd only:
  flags: SCM_PIDFD(fd, cloexec 1)
waitid on the received pidfd: the child
creds and pidfd:
  flags: SCM_CREDENTIALS SCM_PIDFD(fd, cloexec 1)
control of 16 bytes:
  flags: MSG_CTRUNC SCM_CREDENTIALS
room for creds only:
  flags: MSG_CTRUNC SCM_CREDENTIALS
no control:
  flags: MSG_CTRUNC
sender reaped:
  flags: SCM_CREDENTIALS SCM_PIDFD(fd, cloexec 1)
ok
"""


def test_unix_pidfds(program: Builder, run: Runner) -> None:
    prog = program("unix_pidfd.c")
    sandboxed = run("pyvisor", [prog])
    assert sandboxed.returncode == 0, sandboxed.output
    assert sandboxed.stdout == PIDFD_TRANSCRIPT, sandboxed.output
    native = run("native", [prog])
    if native.returncode == 0 and "ENOPROTOOPT" not in native.stdout and \
            "reaped peer: ESRCH" not in native.stdout:
        assert native.stdout == sandboxed.stdout, native.output
