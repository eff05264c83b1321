"""More real programs, compared with Linux: process pools, /proc views, ttys, signals
from outside."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

from pvtest import REPO, Comparer, Runner, pyvisor_env

POOL = ("import multiprocessing as m\n"
        "with m.Pool(2) as p: print(sum(p.map(abs, range(-50, 50))))\n"
        "q = m.Queue(); pr = m.Process(target=q.put, args=('from child',)); pr.start()\n"
        "print(q.get()); pr.join(); print('exit', pr.exitcode)\n")


def test_multiprocessing_pool_and_queue(compare: Comparer) -> None:
    """Pools and queues use SemLock: futexes in shared memory across processes."""
    native, sandboxed = compare(["/usr/bin/python3", "-c", POOL])
    assert sandboxed.stdout == "2500\nfrom child\nexit 0\n"


def test_proc_shows_only_sandbox_processes(run: Runner) -> None:
    result = run("pyvisor", ["/bin/sh", "-c", "ps -e -o pid= | wc -l; ls /proc | grep -c '^[0-9]'"])
    assert result.returncode == 0, result.output
    counts = [int(x) for x in result.stdout.split()]
    # sh, ps (and wc) only: a handful, never the host's hundreds.
    assert all(1 <= c <= 4 for c in counts), result.output


def test_proc_self_status_and_maps(run: Runner) -> None:
    result = run("pyvisor", ["/bin/sh", "-c",
                             "grep -E '^(Name|Pid|PPid):' /proc/self/status; "
                             "grep -c . /proc/self/maps; readlink /proc/self/exe; "
                             "cat /proc/self/cmdline | tr '\\0' ' '"])
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Name:\tgrep"
    assert lines[1].startswith("Pid:\t") and lines[2] == "PPid:\t1"
    assert int(lines[3]) > 5
    assert lines[4] == "/usr/bin/readlink"
    assert lines[5].strip() == "cat /proc/self/cmdline"


def test_threads_exit_many_times(program, run: Runner) -> None:  # type: ignore[no-untyped-def]
    """Multi-threaded exits used to leave a traced zombie thread that hung shutdown."""
    binary = program("threads.c", static=True)
    for _ in range(5):
        result = run("pyvisor", [binary], timeout=60)
        assert result.returncode == 0, result.output


def _in_pty(argv: list[str]) -> tuple[int, bytes]:
    """Runs argv on a fresh pseudo-terminal; returns (exit status, output)."""
    pid, master = pty.fork()
    if pid == 0:
        os.environ.update(pyvisor_env(None))
        os.execv(argv[0], argv)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 1)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(master)
    return os.WEXITSTATUS(status), out


def test_tty_stdio() -> None:
    """On a terminal: isatty holds, and termios/winsize ioctls reach the host tty."""
    cmd = ["/bin/sh", "-c", "test -t 0 && test -t 1 && echo TTY-YES; stty size; stty -a | head -1"]
    nrc, native = _in_pty(cmd)
    src, sandboxed = _in_pty([sys.executable, "-m", "pyvisor", "do", "--", *cmd])
    assert nrc == 0 and src == 0, sandboxed
    assert b"TTY-YES" in sandboxed, sandboxed
    assert sandboxed == native


def test_sigterm_from_outside_reaches_the_program(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A signal to `pyvisor do` is forwarded to the sandbox, whose program handles it."""
    script = "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done"
    p = subprocess.Popen([sys.executable, "-m", "pyvisor", "do", "--", "/bin/sh", "-c", script],
                         stdout=subprocess.PIPE, env=pyvisor_env(None), cwd=str(REPO))
    assert p.stdout is not None
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGTERM)
    try:
        out, _ = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 3
    assert b"got-term" in out
