"""Syscall families and the file-I/O tail of issue #10 (aio, io_uring, keyrings, rseq,
membarrier, sync/fadvise/readahead, ...): each self-checking program runs natively
and under pyvisor, and must print "ok" in both (Linux is the oracle)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Builder, Runner

WHERE = ["native", "pyvisor"]

PROGRAMS = [
    "fileio_tail.c",
    "fileio_tail2.c",
    "keys.c",
    "io_uring.c",
    "aio.c",
    "rseq.c",
    "landlock.c",
]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("name", PROGRAMS, ids=lambda n: n.removesuffix(".c"))
def test_family(name: str, where: str, program: Builder, run: Runner) -> None:
    result = run(where, [program(name)])
    assert result.returncode == 0, result.output
    assert "ok" in result.stdout.split(), result.output
