"""--platform (runsc's global flag): ptrace and systrap run the sandbox; an unknown name
is refused with one line, before anything boots.  $PYVISOR_PLATFORM is the default."""

from __future__ import annotations

import os

import pytest

from tests.pvtest import CliRunner


@pytest.mark.parametrize("name", ["ptrace", "systrap"])
def test_platform_runs(pyvisor_cli: CliRunner, name: str) -> None:
    r = pyvisor_cli([f"--platform={name}", "do", "--", "/bin/sh", "-c", "echo in; exit 3"])
    assert (r.returncode, r.stdout) == (3, "in\n"), r.output


def test_unknown_platform_refused(pyvisor_cli: CliRunner) -> None:
    for verb in (["do", "--", "/bin/true"], ["run", "--bundle", "/nonexistent", "x"]):
        r = pyvisor_cli(["--platform=kvm", *verb])
        assert r.returncode == 125, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "unknown platform" in lines[0] and "kvm" in lines[0], \
            r.stderr
        assert r.stdout == ""


def test_environment_default(pyvisor_cli: CliRunner) -> None:
    """$PYVISOR_PLATFORM chooses the platform when the flag is absent (the suite's
    --platform option uses it); the flag wins over it."""
    env = dict(os.environ, PYVISOR_PLATFORM="kvm")
    r = pyvisor_cli(["do", "--", "/bin/true"], env=env)
    assert r.returncode == 125 and "kvm" in r.stderr, r.output
    r = pyvisor_cli(["--platform=ptrace", "do", "--", "/bin/true"], env=env)
    assert r.returncode == 0, r.output
