"""ptrace(2) between sandboxed processes (kernel/ptrace.py, sys_ptrace.py): each
sub-test of tests/programs/ptrace.c prints what a tracer observes, natively and in
the sandbox, and the two must match line for line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Builder, Comparer

SUBTESTS = ["traceme_exec", "peekpoke", "regs", "count", "seize", "events", "signals",
            "step", "perm", "exit_event", "exec_thread"]


@pytest.mark.parametrize("sub", SUBTESTS)
def test_ptrace(sub: str, program: Builder, compare: Comparer) -> None:
    native, sandboxed = compare([program("ptrace.c"), sub], timeout=60)
    assert native.returncode == 0, native.output
    assert "ok" in sandboxed.stdout.split(), sandboxed.output
