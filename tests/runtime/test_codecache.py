"""runtime/codecache.py: dataclasses' compiled methods kept across runs.

Each case runs in a fresh interpreter (install() changes the `dataclasses` module of
the process it runs in) with the cache file redirected to a temp dir.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pvtest import pyvisor_env

PROBE = r"""
import builtins, sys
from pyvisor.runtime import codecache
codecache.PATH = sys.argv[1]
compiles = 0
real_compile = builtins.compile
def counting(*a, **k):
    global compiles
    compiles += 1
    return real_compile(*a, **k)
codecache.compile = counting          # the module's own lookup of compile()
codecache.install()
from dataclasses import dataclass, field
@dataclass(slots=True)
class Point:
    x: int
    y: int = 2
    tags: list = field(default_factory=list)
p = Point(1)
assert (p.x, p.y, p.tags) == (1, 2, []) and p == Point(1, 2) and repr(p) == "Point(x=1, y=2, tags=[])"
codecache.save()
print(compiles)
"""


def _probe(path: Path) -> int:
    r = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True,
                       env=pyvisor_env(None), timeout=60, text=True)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def test_second_run_compiles_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "dc.bin"
    first = _probe(cache)
    assert first > 0 and cache.exists()
    assert _probe(cache) == 0                       # every method came from the cache


def test_damaged_or_foreign_cache_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "dc.bin"
    cache.write_bytes(b"\x00\x01garbage")           # wrong magic: another interpreter's
    n = _probe(cache)
    assert n > 0
    from importlib.util import MAGIC_NUMBER
    cache.write_bytes(MAGIC_NUMBER + b"\xff\xfe")   # right magic, broken marshal data
    assert _probe(cache) == n
    assert _probe(cache) == 0                       # rewritten whole by the last save


def test_unwritable_cache_still_runs(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir" / "dc.bin"
    assert _probe(missing_dir) > 0 and _probe(missing_dir) > 0
