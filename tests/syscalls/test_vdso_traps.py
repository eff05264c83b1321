"""Clock reads through the vDSO never reach the Sentry (tests/programs/vdso.c checks
the values, natively and in the sandbox, in test_programs.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Builder, CliRunner


def test_clock_reads_do_not_trap(program: Builder, pyvisor_cli: CliRunner) -> None:
    for static in (False, True):
        exe = program("vdso.c", static=static)
        result = pyvisor_cli(["do", "--strace", "--", exe, "2000"])
        assert result.returncode == 0, result.output
        assert "ok" in result.stdout.split(), result.output
        # The strace line of each syscall the Sentry served: the loader's and exit's.
        served = [ln for ln in result.stderr.splitlines() if " E " in ln]
        assert any("exit_group" in ln for ln in served), result.stderr[-2000:]
        clock = [ln for ln in served if "clock_gettime" in ln]
        assert clock == [], f"{len(clock)} of 2000 clock reads trapped:\n{clock[:5]}"
