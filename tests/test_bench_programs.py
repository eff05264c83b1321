"""bench/'s C programs compile cleanly, so a broken benchmark is caught by CI
and not first by whoever runs bench/run.py on a quiet machine."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench" / "programs"


@pytest.mark.parametrize("src", sorted(p.name for p in BENCH.glob("*.c")))
def test_bench_program_compiles(src: str, tmp_path: pathlib.Path) -> None:
    out = subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(tmp_path / "prog"),
                          str(BENCH / src), "-lpthread"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_microbench_prints_usage_on_bad_mode(tmp_path: pathlib.Path) -> None:
    exe = tmp_path / "microbench"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(BENCH / "microbench.c")], check=True)
    out = subprocess.run([str(exe), "nosuchmode", "1"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("usage: microbench")
