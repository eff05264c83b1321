"""ETXTBSY, natively and in the sandbox (tests/programs/textbusy.c): a running
executable, /proc/self/exe included, cannot be opened for writing or truncated, and a
file open for writing (through any duplicate of its description) cannot be executed."""

from __future__ import annotations

from pathlib import Path

from pvtest import Builder, Comparer


def test_textbusy(program: Builder, compare: Comparer, world_tmp: Path) -> None:
    native, sandboxed = compare([program("textbusy.c"), str(world_tmp)])
    assert native.returncode == 0 and "ok" in sandboxed.stdout.split(), sandboxed.output
