"""Resource limits of the sandbox's processes.

* `pyvisor do` gives the command the caller's RLIMIT_NOFILE and RLIMIT_FSIZE, as
  `runsc do` does (and as running it without a sandbox would): compared with the
  same shell run natively under the same limits.
* process.rlimits of an OCI bundle, compared with runc running the same bundle.
* A caller's hard RLIMIT_FSIZE too small for the sandbox itself is one clear line.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Callable

from pvtest import pyvisor_env
from test_lifecycle import Runtime, _cid, make_bundle  # noqa: F401

SHOW = "ulimit -n; ulimit -Hn; ulimit -f; ulimit -Hf"


def _limits(nofile: tuple[int, int], fsize: tuple[int, int]) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
        resource.setrlimit(resource.RLIMIT_FSIZE, fsize)
    return apply


def test_do_gets_the_callers_limits() -> None:
    inf = resource.RLIM_INFINITY
    for nofile, fsize in (((333, 4444), (5 << 20, inf)), ((2048, 2048), (inf, inf))):
        native = subprocess.run(["/bin/sh", "-c", SHOW], capture_output=True, text=True,
                                preexec_fn=_limits(nofile, fsize), timeout=60)
        got = subprocess.run([sys.executable, "-m", "pyvisor", "do", "--", "/bin/sh", "-c",
                              SHOW], capture_output=True, text=True, env=pyvisor_env(None),
                             preexec_fn=_limits(nofile, fsize), timeout=120)
        assert got.returncode == 0, got.stderr
        assert got.stdout == native.stdout, (nofile, fsize)


def test_small_hard_fsize_is_one_line() -> None:
    small = (1 << 20, 1 << 20)
    r = subprocess.run([sys.executable, "-m", "pyvisor", "do", "--", "/bin/true"],
                       capture_output=True, text=True, env=pyvisor_env(None),
                       preexec_fn=_limits(resource.getrlimit(resource.RLIMIT_NOFILE), small),
                       timeout=120)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "RLIMIT_FSIZE" in lines[0], r.stderr


RLIMITS = [{"type": "RLIMIT_NOFILE", "soft": 1234, "hard": 2345},
           {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
           {"type": "RLIMIT_NPROC", "soft": 77, "hard": 88},
           {"type": "RLIMIT_STACK", "soft": 4 << 20, "hard": 16 << 20}]
SCRIPT = "ulimit -n; ulimit -Hn; ulimit -c; ulimit -p; ulimit -Hp; ulimit -s; ulimit -Hs"


def _bundle(base: Path, rlimits: list[dict[str, object]]) -> Path:
    bundle = make_bundle(base, ["/bin/sh", "-c", SCRIPT.replace("ulimit -p", "ulimit -u")
                                .replace("ulimit -Hp", "ulimit -Hu")])
    doc = json.loads((bundle / "config.json").read_text())
    doc["process"]["rlimits"] = rlimits
    (bundle / "config.json").write_text(json.dumps(doc))
    return bundle


def test_bundle_rlimits_as_runc(world_tmp: Path) -> None:
    runc, pv = Runtime("runc", world_tmp), Runtime("pyvisor", world_tmp)
    want = runc("run", "--bundle", str(_bundle(world_tmp / "runc", RLIMITS)), _cid())
    assert want.returncode == 0, want.stderr
    got = pv("run", "--bundle", str(_bundle(world_tmp / "pyvisor", RLIMITS)), _cid())
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout, f"runc:\n{want.stdout}\npyvisor:\n{got.stdout}"


def test_bundle_soft_above_hard_is_refused(world_tmp: Path) -> None:
    pv = Runtime("pyvisor", world_tmp)
    bad = [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]
    r = pv("run", "--bundle", str(_bundle(world_tmp / "bad", bad)), _cid())
    assert r.returncode != 0 and "rlimits" in r.stderr and "Traceback" not in r.stderr


def test_do_gets_the_callers_nice() -> None:
    """Like its limits, the command's nice value is the caller's (Task.nice)."""
    native = subprocess.run(["nice", "-n", "7", "/bin/sh", "-c", "nice"], capture_output=True,
                            text=True, timeout=60)
    got = subprocess.run(["nice", "-n", "7", sys.executable, "-m", "pyvisor", "do", "--",
                          "/bin/sh", "-c", "nice"], capture_output=True, text=True,
                         env=pyvisor_env(None), timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout == native.stdout
