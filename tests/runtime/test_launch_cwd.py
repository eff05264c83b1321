"""`python3 -m pyvisor` from a working directory whose modules would shadow the ones
pyvisor imports (the package's own directory holds a `seccomp` package, as the
libseccomp binding is named): pyvisor still boots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pvtest import REPO, pyvisor_env


def test_runs_from_inside_the_package() -> None:
    r = subprocess.run([sys.executable, "-m", "pyvisor", "do", "--", "/bin/echo", "ok"],
                       cwd=Path(REPO) / "pyvisor", capture_output=True, timeout=120,
                       env=pyvisor_env(None))
    assert (r.returncode, r.stdout) == (0, b"ok\n"), r.stderr
