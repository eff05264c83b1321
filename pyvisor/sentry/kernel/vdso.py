"""The vDSO and its parameter page.  Linux: arch/x86/entry/vdso/, kernel/time/vsyscall.c;
gVisor: pkg/sentry/kernel/vdso.go, pkg/sentry/time/calibrated_clock.go, loader/vdso.go.

Every address space gets two mappings from the memory file, one after the other:

  [vvar]  one page, read-only and shared (maxperms READ: mprotect cannot make it
          writable): the parameter page the Sentry keeps current.
  [vdso]  the image built from pyvisor/sentry/vdso/vdso.c (checked in as image.py),
          private read+exec; its code finds [vvar] one page below itself.

The page holds, for CLOCK_REALTIME and CLOCK_MONOTONIC, a base TSC value, the
clock's value at that TSC value (ns) and a multiplier (ns per cycle << 32), under a
sequence count that is odd while the Sentry writes (layout: `_PARAMS`).  The vDSO
computes base_ns + (rdtsc - base_cycles) * mult >> 32; clocks it does not serve go
to the real syscall.

Calibration (as gVisor's CalibratedClock): the TSC frequency is measured against
the host's CLOCK_MONOTONIC over the whole life of the sandbox (so its error shrinks
with time); at each update the clocks stay continuous (the new base is the old
estimate) and the rate is set so that the estimate meets the host clock one update
interval later: errors are slewed away, never stepped, except for a realtime error
above MAX_STEP_ERROR_NS (the host's clock was set), which is stepped.

Security: the Sentry only writes this page, never reads it back, so nothing an
application does to its own memory reaches the Sentry; and the page is mapped
read-only with no way to make it writable, so one application cannot disturb
another's clocks.  TSC usability: the host must say constant_tsc and nonstop_tsc
(/proc/cpuinfo, read at import, before confinement; rdtsc is arch/native's);
otherwise every clock read goes to the syscall.

Concurrency: Sentry loop only (updates run from a kernel timer).
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from pyvisor.abi.linux.mman import (MAP_PRIVATE, MAP_SHARED, PAGE_SIZE, PROT_EXEC, PROT_READ,
                                    page_round_up)
from pyvisor.sentry.arch import native
from pyvisor.sentry.mm.memfile import MappedRange
from pyvisor.sentry.vdso.image import IMAGE

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Kernel
    from pyvisor.sentry.mm.memory_manager import MemoryManager

log = logging.getLogger("pyvisor.sentry")

# struct params in vdso.c: seq, flags, then (base_cycles, base_ns, mult) for
# CLOCK_REALTIME and CLOCK_MONOTONIC.
_PARAMS = struct.Struct("<II QqQ QqQ")
_SEQ = struct.Struct("<I")
F_CLOCKS = 1            # the clock parameters are valid
F_GETCPU = 2            # rdtscp's TSC_AUX holds (node << 12) | cpu
IMAGE_SIZE = page_round_up(len(IMAGE))
VVAR_SIZE = PAGE_SIZE

# Updates: soon after start (the first frequency estimate is the roughest), then
# every UPDATE_INTERVAL_NS.  The first estimate needs MIN_CALIBRATION_NS of history.
UPDATE_INTERVAL_NS = 1_000_000_000
_FIRST_UPDATES_NS = (20_000_000, 100_000_000, 400_000_000)
MIN_CALIBRATION_NS = 10_000_000
MAX_STEP_ERROR_NS = 1_000_000     # a larger realtime error is stepped, not slewed
_MAX_RATE_CHANGE = 0.05           # a slew changes the rate by at most 5%
_SHIFT = 32


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


_FLAGS = _cpu_flags()
TSC_USABLE = {"constant_tsc", "nonstop_tsc"} <= _FLAGS
HAS_RDTSCP = "rdtscp" in _FLAGS


rdtsc: Callable[[], int] | None = native.rdtsc if TSC_USABLE else None


@dataclass(slots=True)
class Sample:
    """One reading of the TSC and the host's clocks, taken as close together as we can."""

    cycles: int
    mono: int
    real: int


def sample(read_tsc: Callable[[], int]) -> Sample:
    """The tightest of a few readings (the TSC read before and after the clocks)."""
    best: tuple[int, Sample] | None = None
    for _ in range(5):
        c0 = read_tsc()
        mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        real = time.clock_gettime_ns(time.CLOCK_REALTIME)
        c1 = read_tsc()
        if c1 < c0:
            continue
        if best is None or c1 - c0 < best[0]:
            best = (c1 - c0, Sample((c0 + c1) // 2, mono, real))
    if best is None:
        raise OSError("the TSC went backwards")
    return best[1]


def _import_sample() -> Sample | None:
    """The first TSC sample, taken when this module is imported (in the launcher, before
    it forks the Sentry): by the init's exec, ~50 ms later, the clocks can be calibrated
    without the wait of VDSO.start (a sample taken at boot was ~10 ms old there)."""
    if rdtsc is None:
        return None
    try:
        return sample(rdtsc)
    except OSError:
        return None


_IMPORT_SAMPLE = _import_sample()


@dataclass(slots=True)
class ClockParams:
    """One clock as the vDSO computes it: base_ns + (cycles - base_cycles) * mult >> 32."""

    base_cycles: int
    base_ns: int
    mult: int

    def at(self, cycles: int) -> int:
        return self.base_ns + ((max(0, cycles - self.base_cycles) * self.mult) >> _SHIFT)


def next_params(old: ClockParams | None, now_cycles: int, true_ns: int, freq: float,
                horizon_ns: int, may_step: bool) -> ClockParams:
    """The parameters to publish at `now_cycles`, when the clock truly reads `true_ns`
    and the TSC runs at `freq` Hz.  Continuous with `old` (no jump) and converging on
    the true clock `horizon_ns` later; a first publication, or a realtime error past
    MAX_STEP_ERROR_NS when `may_step`, starts from the truth instead.  Linux analogue:
    timekeeping_adjust's slewing of the clocksource multiplier."""
    nominal = 1e9 / freq                              # ns per cycle
    if old is None:
        return ClockParams(now_cycles, true_ns, round(nominal * (1 << _SHIFT)))
    est = old.at(now_cycles)
    err = est - true_ns
    if may_step and abs(err) > MAX_STEP_ERROR_NS:
        return ClockParams(now_cycles, true_ns, round(nominal * (1 << _SHIFT)))
    cycles = freq * horizon_ns / 1e9
    rate = (horizon_ns - err) / cycles
    rate = min(max(rate, nominal * (1 - _MAX_RATE_CHANGE)), nominal * (1 + _MAX_RATE_CHANGE))
    return ClockParams(now_cycles, est, round(rate * (1 << _SHIFT)))


class _Range:
    """A fixed run of the memory file, as a Mappable (the vDSO's two mappings)."""

    __slots__ = ("mem_offset", "length")

    def __init__(self, mem_offset: int, length: int) -> None:
        self.mem_offset = mem_offset
        self.length = length

    def translate(self, offset: int, length: int, writable_shared: bool) -> list[MappedRange]:
        assert 0 <= offset and offset + length <= self.length
        return [MappedRange(offset, self.mem_offset + offset, length)]


class VDSO:
    """The sandbox's vDSO image and parameter page.  Owned by the Kernel."""

    def __init__(self, kernel: Kernel, read_tsc: Callable[[], int] | None = None) -> None:
        self.kernel = kernel
        memfile = kernel.memfile
        self.read_tsc = read_tsc if read_tsc is not None else rdtsc
        off, _ = memfile.allocate(VVAR_SIZE)
        self.vvar = _Range(off, VVAR_SIZE)
        off, _ = memfile.allocate(IMAGE_SIZE)
        memfile.map[off:off + len(IMAGE)] = IMAGE
        self.image = _Range(off, IMAGE_SIZE)
        self._map = memfile.map
        self.seq = 0
        self.flags = F_GETCPU if HAS_RDTSCP else 0
        self.params: tuple[ClockParams, ClockParams] | None = None   # realtime, monotonic
        self.first: Sample | None = None
        self.updates = 0
        self._timer_armed = False
        if self.read_tsc is not None:
            if self.read_tsc is rdtsc and _IMPORT_SAMPLE is not None:
                self.first = _IMPORT_SAMPLE      # older: a longer calibration base
            else:
                try:
                    self.first = sample(self.read_tsc)
                except OSError:
                    self.read_tsc = None
        self._publish()

    # -- the parameter page -----------------------------------------------------------

    def _publish(self) -> None:
        """Writes the page under the sequence count (x86 keeps stores in order)."""
        base = self.vvar.mem_offset
        self.seq += 1
        _SEQ.pack_into(self._map, base, self.seq & 0xFFFFFFFF)          # odd: writing
        rt, mono = self.params if self.params is not None else (ClockParams(0, 0, 0),) * 2
        flags = self.flags | (F_CLOCKS if self.params is not None else 0)
        _PARAMS.pack_into(self._map, base, self.seq & 0xFFFFFFFF, flags,
                          rt.base_cycles & (2**64 - 1), rt.base_ns, rt.mult & (2**64 - 1),
                          mono.base_cycles & (2**64 - 1), mono.base_ns,
                          mono.mult & (2**64 - 1))
        self.seq += 1
        _SEQ.pack_into(self._map, base, self.seq & 0xFFFFFFFF)          # even: done

    def update(self) -> None:
        """Re-measures the TSC against the host clocks and publishes new parameters."""
        if self.read_tsc is None or self.first is None:
            return
        try:
            now = sample(self.read_tsc)
        except OSError:
            self.disable("the TSC went backwards")
            return
        elapsed = now.mono - self.first.mono
        if elapsed < MIN_CALIBRATION_NS:
            return
        freq = (now.cycles - self.first.cycles) * 1e9 / elapsed
        if not 1e8 <= freq <= 2e10:
            self.disable(f"implausible TSC frequency {freq:.0f} Hz")
            return
        horizon = self._next_interval()
        old_rt, old_mono = self.params if self.params is not None else (None, None)
        self.params = (next_params(old_rt, now.cycles, now.real, freq, horizon, may_step=True),
                       next_params(old_mono, now.cycles, now.mono, freq, horizon,
                                   may_step=False))
        self.updates += 1
        self._publish()

    def disable(self, why: str) -> None:
        """Every clock read goes to the syscall from now on."""
        log.warning("vDSO clocks disabled: %s", why)
        self.read_tsc = None
        self.params = None
        self._publish()

    def _next_interval(self) -> int:
        if self.updates < len(_FIRST_UPDATES_NS):
            return _FIRST_UPDATES_NS[self.updates]
        return UPDATE_INTERVAL_NS

    def _tick(self) -> None:
        self.update()
        if self.read_tsc is not None:
            self.kernel.add_timer(self.kernel.now() + self._next_interval(), self._tick)
        else:
            self._timer_armed = False

    def start(self) -> None:
        """Publishes the first parameters if enough time has passed, and keeps them
        current from kernel timers.  Idempotent; called at each exec."""
        if self.params is None and self.first is not None:
            # A sandbox that got here within MIN_CALIBRATION_NS of its first sample
            # waits the rest (at most 10 ms, once), so clocks never trap at start.
            wait = self.first.mono + MIN_CALIBRATION_NS - time.monotonic_ns()
            if wait > 0:
                time.sleep(wait / 1e9)
            self.update()
        if not self._timer_armed and self.read_tsc is not None:
            self._timer_armed = True
            self.kernel.add_timer(self.kernel.now() + self._next_interval(), self._tick)

    # -- mapping ----------------------------------------------------------------------

    def map_into(self, mm: MemoryManager) -> int:
        """Maps [vvar] and [vdso] into a new address space; returns the vDSO's address
        (AT_SYSINFO_EHDR).  Linux: arch_setup_additional_pages."""
        self.start()
        base = mm.find_gap(VVAR_SIZE + IMAGE_SIZE)
        mm.mmap(base, VVAR_SIZE, PROT_READ, MAP_SHARED, fixed=True, mappable=self.vvar,
                name=b"[vvar]", maxperms=PROT_READ, dontexpand=True)
        mm.mmap(base + VVAR_SIZE, IMAGE_SIZE, PROT_READ | PROT_EXEC, MAP_PRIVATE, fixed=True,
                mappable=self.image, name=b"[vdso]", dontexpand=True)
        return base + VVAR_SIZE


def get(kernel: Kernel) -> VDSO:
    """The kernel's vDSO, made on first use."""
    v = kernel.vdso
    if v is None:
        v = kernel.vdso = VDSO(kernel)
    return v
