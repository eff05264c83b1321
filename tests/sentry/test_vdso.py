"""The vDSO: its checked-in image is what its source builds, and the parameter page
the Sentry publishes gives the host's clocks (tests/programs/vdso.c checks the
rest end to end, natively and in the sandbox)."""

from __future__ import annotations

import struct
import time
from typing import Any, Callable

from pyvisor.sentry.kernel import vdso as V
from pyvisor.sentry.mm.memfile import MemoryFile
from pyvisor.sentry.vdso import build
from pyvisor.sentry.vdso.image import IMAGE


def test_image_is_what_the_source_builds() -> None:
    assert build.build() == IMAGE, "run `python3 -m pyvisor.sentry.vdso.build` and commit"


def test_image_layout() -> None:
    ident, etype, machine = struct.unpack_from("<16sHH", IMAGE)
    assert ident[:4] == b"\x7fELF" and etype == 3 and machine == 62
    # One PT_LOAD at address 0, read+exec: the code reaches [vvar] one page below it.
    phoff, = struct.unpack_from("<Q", IMAGE, 32)
    phnum, = struct.unpack_from("<H", IMAGE, 56)
    loads = [struct.unpack_from("<IIQQQQQQ", IMAGE, phoff + 56 * i) for i in range(phnum)]
    loads = [p for p in loads if p[0] == 1]
    assert len(loads) == 1 and loads[0][3] == 0 and loads[0][1] == 5
    assert len(IMAGE) <= V.IMAGE_SIZE
    for name in (b"__vdso_clock_gettime", b"__vdso_gettimeofday", b"__vdso_time",
                 b"__vdso_getcpu", b"LINUX_2.6"):
        assert name + b"\0" in IMAGE


def test_params_continuous_and_converging() -> None:
    freq = 3e9
    p = V.next_params(None, 1000, 5_000_000_000, freq, 10**9, may_step=False)
    assert p.at(1000) == 5_000_000_000
    # One second later by the TSC, but the true clock says 100 µs less: the clock
    # does not jump back; it slows so it meets the truth one horizon later.
    c1 = 1000 + int(freq)
    est = p.at(c1)
    assert abs(est - 6_000_000_000) <= 1
    q = V.next_params(p, c1, 6_000_000_000 - 100_000, freq, 10**9, may_step=False)
    assert q.at(c1) == est                                       # continuous
    assert abs(q.at(c1 + int(freq)) - (7_000_000_000 - 100_000)) <= 2   # converged
    # A huge error: monotonic slews at the clamped rate, never backwards.
    r = V.next_params(p, c1, 6_000_000_000 - 10**9, freq, 10**9, may_step=False)
    assert r.at(c1) == est and r.at(c1 + 1000) >= est
    # Realtime steps to the truth (the host's clock was set).
    s = V.next_params(p, c1, 9_000_000_000, freq, 10**9, may_step=True)
    assert s.at(c1) == 9_000_000_000


class _FakeKernel:
    def __init__(self) -> None:
        self.memfile = MemoryFile()
        self.timers: list[tuple[int, Callable[[], None]]] = []
        self.vdso: Any = None

    def now(self) -> int:
        return time.monotonic_ns()

    def add_timer(self, deadline: int, callback: Callable[[], None]) -> None:
        self.timers.append((deadline, callback))


def _page(k: _FakeKernel, v: V.VDSO) -> tuple[int, ...]:
    return V._PARAMS.unpack_from(k.memfile.map, v.vvar.mem_offset)


def test_page_gives_the_host_clocks() -> None:
    assert V.rdtsc is not None, "this host's TSC is usable (constant_tsc, nonstop_tsc)"
    k = _FakeKernel()
    v = V.get(k)  # type: ignore[arg-type]
    assert k.memfile.map[v.image.mem_offset:v.image.mem_offset + len(IMAGE)] == IMAGE
    v.start()                      # waits out the calibration, publishes, arms a timer
    assert k.timers
    for _ in range(3):
        time.sleep(0.02)
        v.update()
    seq, flags, rt_c, rt_ns, rt_m, mo_c, mo_ns, mo_m = _page(k, v)
    assert seq % 2 == 0 and flags & V.F_CLOCKS
    for base_c, base_ns, mult, clock in ((rt_c, rt_ns, rt_m, time.CLOCK_REALTIME),
                                         (mo_c, mo_ns, mo_m, time.CLOCK_MONOTONIC)):
        before = time.clock_gettime_ns(clock)
        ns = base_ns + (((V.rdtsc() - base_c) * mult) >> 32)
        after = time.clock_gettime_ns(clock)
        assert before - 1_000_000 <= ns <= after + 1_000_000
    v.disable("test")
    assert not _page(k, v)[1] & V.F_CLOCKS
