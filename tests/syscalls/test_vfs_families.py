"""inotify, renameat2, O_TMPFILE and openat2: the same program natively and in the
sandbox, with identical output, on tmpfs (/dev/shm) and on the overlay root (a
directory of the host seen through the sandbox's overlay, with files of the
layer below that the program changes, so they are copied up)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pvtest import Builder, Runner


def _lower(where: Path) -> Path:
    """A fresh directory with a file "lower" and a directory "lowerdir/inner"."""
    if where.exists():
        shutil.rmtree(where)
    (where / "lowerdir").mkdir(parents=True)
    (where / "lower").write_text("abc\n")
    (where / "lowerdir" / "inner").write_text("")
    for p in (where, where / "lowerdir"):
        p.chmod(0o777)
    return where


def _compare(run: Runner, argv: list[str], prepare=None) -> str:  # type: ignore[no-untyped-def]
    if prepare:
        prepare()
    native = run("native", argv)
    if prepare:
        prepare()
    sandboxed = run("pyvisor", argv)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and "ok" in native.stdout.split(), detail
    assert sandboxed.returncode == native.returncode, detail
    assert sandboxed.stdout == native.stdout, detail
    return sandboxed.stdout


PROGRAMS = ["inotify.c", "renameat2.c", "tmpfile.c", "openat2.c"]


@pytest.mark.parametrize("name", PROGRAMS, ids=lambda n: n.removesuffix(".c"))
@pytest.mark.parametrize("fs", ["tmpfs", "overlay"])
def test_vfs_family(name: str, fs: str, program: Builder, run: Runner,
                    world_tmp: Path) -> None:
    if fs == "tmpfs":
        out = _compare(run, [program(name), "/dev/shm"])
    else:
        d = world_tmp / "t"
        out = _compare(run, [program(name), str(d)], lambda: _lower(d))
    if name == "inotify.c":
        # The events the program prints are the point: a few of them, for the record.
        assert "wd=1 MOVED_FROM name=f cookie#1" in out
        assert "overflow events: 1" in out
        assert ("wd=8 DELETE_SELF" in out) == (fs == "overlay")
