"""Syscalls made from `mov $nr,%eax; syscall` sites (programs/syscall_sites.c), the
pattern the systrap platform rewrites into a jump to a trampoline (platform/systrap,
SECURITY.md *systrap*): registers, flags, red zone, a garbage rsp, signals with FP state,
a restarted read, threads, fork and exec, a gs base of the program's own.  The program
checks itself natively, on the suite's platform, and on systrap with patching on and
off ($PYVISOR_SYSTRAP_PATCHING), whatever platform the suite was given."""

from __future__ import annotations

import os

import pytest

from pvtest import Builder, Runner

MODES = {
    "native": None,
    "pyvisor": None,
    "systrap-patching": {"PYVISOR_PLATFORM": "systrap", "PYVISOR_SYSTRAP_PATCHING": "1"},
    "systrap-no-patching": {"PYVISOR_PLATFORM": "systrap", "PYVISOR_SYSTRAP_PATCHING": "0"},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_syscall_sites(mode: str, program: Builder, run: Runner) -> None:
    extra = MODES[mode]
    env = None if extra is None else dict(os.environ, **extra)
    where = "native" if mode == "native" else "pyvisor"
    result = run(where, [program("syscall_sites.c")], env=env)
    assert result.returncode == 0, result.output
    assert "ok" in result.stdout.split(), result.output


@pytest.mark.parametrize("patching", ["1", "0"])
def test_site_is_rewritten(patching: str, program: Builder, run: Runner) -> None:
    """After a few calls from a site, the program reads its own code there: on systrap with
    patching, the jump (ff 24 25 ...: the one place a program can see the rewrite, as on
    gVisor); without, the mov it was built with (b8), as natively."""
    env = dict(os.environ, PYVISOR_PLATFORM="systrap", PYVISOR_SYSTRAP_PATCHING=patching)
    result = run("pyvisor", [program("syscall_sites.c"), "probe"], env=env)
    assert result.returncode == 0, result.output
    want = "site=ff" if patching == "1" else "site=b8"
    assert f"getpid=1 {want}" in result.stdout, result.output
