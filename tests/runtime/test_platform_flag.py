"""--platform (runsc's global flag): ptrace runs the sandbox; a planned platform
(systrap) and an unknown name are refused with one line, before anything boots."""

from __future__ import annotations

import pytest

from tests.pvtest import CliRunner


def test_ptrace_runs(pyvisor_cli: CliRunner) -> None:
    r = pyvisor_cli(["--platform=ptrace", "do", "--", "/bin/sh", "-c", "echo in; exit 3"])
    assert (r.returncode, r.stdout) == (3, "in\n"), r.output


@pytest.mark.parametrize("name, says", [("systrap", "not available yet"),
                                        ("kvm", "unknown platform")])
def test_other_platforms_refused(pyvisor_cli: CliRunner, name: str, says: str) -> None:
    for verb in (["do", "--", "/bin/true"], ["run", "--bundle", "/nonexistent", "x"]):
        r = pyvisor_cli([f"--platform={name}", *verb])
        assert r.returncode == 125, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and name in lines[0], r.stderr
        assert r.stdout == ""
