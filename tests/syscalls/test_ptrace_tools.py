"""strace and gdb, run inside the sandbox on sandboxed programs (kernel/ptrace.py):
the tracer and its tracees are all application tasks; nothing reaches the host's
ptrace but the platform's own.  scripts/install.sh installs both."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Builder, Runner


def test_strace_follows_a_pipeline(run: Runner) -> None:
    """`strace -f` of `sh -c 'ls / | wc -l'`: both children, their execs and every exit
    are in the trace, and the pipeline's output is what Linux prints."""
    native = run("native", ["sh", "-c", "ls / | wc -l"])
    script = "strace -f -o /tmp/trace sh -c 'ls / | wc -l'; echo status=$?; cat /tmp/trace"
    r = run("pyvisor", ["sh", "-c", script], timeout=120)
    assert r.returncode == 0, r.output
    out = r.stdout
    assert out.splitlines()[0] == native.stdout.strip(), r.output
    assert "status=0" in out, r.output
    trace = out.split("status=0", 1)[1]
    pids = {int(m) for m in re.findall(r"^(\d+) ", trace, re.M)}
    assert len(pids) == 3, trace            # sh and its two children
    assert re.search(r'execve\("/usr/bin/sh", \["sh", "-c", "ls / \| wc -l"\]', trace), trace
    assert re.search(r'execve\("[^"]*/ls", \["ls", "/"\]', trace), trace
    assert re.search(r'execve\("[^"]*/wc", \["wc", "-l"\]', trace), trace
    assert len(re.findall(r"^\d+ +\+\+\+ exited with 0 \+\+\+$", trace, re.M)) == 3, trace
    # sh reaps both children: wait4 returns each child's pid with its exit status.
    children = pids - {min(pids)}
    for c in children:
        assert re.search(rf"(wait4\(|wait4 resumed>).*WEXITSTATUS\(s\) == 0.* = {c}$", trace, re.M), trace
    # ls read /; strace splits the call in two when another traced process stops
    # in between ("getdents64(3, <unfinished ...>" ... "<... getdents64 resumed>...").
    assert re.search(r"(getdents64\(\d+, |getdents64 resumed>).* = [1-9]\d*$", trace,
                     re.M), trace
    assert re.search(r"clone\(|vfork\(", trace), trace


def test_gdb_backtrace_of_a_crash(program: Builder, run: Runner) -> None:
    prog = program("gdb_target.c")
    r = run("pyvisor", ["gdb", "-batch", "-nx", "-ex", "run", "-ex", "bt", "--args", prog, "x"],
            timeout=120)
    out = r.stdout + r.stderr
    assert "Program received signal SIGSEGV" in out, out
    frames = re.findall(r"^#(\d+) +(?:0x[0-9a-f]+ in )?(\w+) \(", out, re.M)
    assert [f for _, f in frames][:3] == ["crash_here", "middle_function", "main"], out


def test_gdb_breakpoint(program: Builder, run: Runner) -> None:
    prog = program("gdb_target.c")
    r = run("pyvisor", ["gdb", "-batch", "-nx", "-ex", "break f", "-ex", "run",
                        "-ex", "info registers rip", "-ex", "continue", prog], timeout=120)
    out = r.stdout + r.stderr
    assert re.search(r"^Breakpoint 1, (0x[0-9a-f]+ in )?f \(", out, re.M), out
    assert re.search(r"^rip +0x[0-9a-f]+ +0x[0-9a-f]+ <f(\+\d+)?>", out, re.M), out
    assert "f=42" in out, out
    assert "exited normally" in out, out
