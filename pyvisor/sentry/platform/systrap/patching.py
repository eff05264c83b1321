"""Syscall-site patching, the Sentry's side: which syscall sites are rewritten into a
jump to a trampoline, when, and how; and the stops a patched site adds.  The stub's
side (the table, the slots' entries, the trampoline code) is trampolines.py.
README, *Syscall-site patching*; SECURITY.md, *systrap*.

gVisor: pkg/sentry/platform/systrap/usertrap (usertrap_amd64.go).

A site that keeps trapping (its PATCH_AFTER-th SIGSYS in an address space) is
rewritten when that is safe (`Patcher.try_patch`): its 7 bytes match one of the two
recognised patterns and lie in one page, the memory was never mapped shared in that
address space, and no other thread of it runs.  The Sentry writes the slot's words
(TABLE_INFO) and the jump with PTRACE_POKEDATA through the stub's traced syscall
thread (read-only private code is written copy-on-write, never the file), after
mapping the table at TABLE_ADDR on first use.  Each address space keeps what was
patched in a `SitePatches`; forks copy it (the host copies the code and the table).

Concurrency: Sentry loop only.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyvisor.abi.linux import ptrace as P
from pyvisor.abi.linux.sysno_amd64 import Sysno
from pyvisor.sentry.arch import native
from pyvisor.sentry.arch.registers import Registers
from pyvisor.sentry.platform.ptrace import binding as B
from pyvisor.sentry.platform.ptrace.subprocess import StubError
from pyvisor.sentry.platform.systrap.region import REGION_FD
from pyvisor.sentry.platform.systrap.trampolines import (GEN_SLOTS, MAX_SLOTS, TABLE_ADDR,
                                                         TABLE_INFO, TABLE_SIZE)

if TYPE_CHECKING:
    from pyvisor.sentry.platform.systrap.subprocess import AppThread

# Syscall-site patching: on unless $PYVISOR_SYSTRAP_PATCHING is 0
# (gVisor: --systrap-disable-syscall-patching).
# The trampoline checks its gs base with pext (BMI2): without it, no patching.
PATCHING = (os.environ.get("PYVISOR_SYSTRAP_PATCHING", "1") != "0"
            and bool(native.cpuid(7)[1] & (1 << 8)))
# A site is patched at its PATCH_AFTER-th trap in an address space.
_after = os.environ.get("PYVISOR_SYSTRAP_PATCH_AFTER", "4")
PATCH_AFTER = max(1, int(_after)) if _after.isdigit() else 4     # a bad value: the default
_MAX_SHARED = 4096          # shared ranges tracked per address space (then no patching)
_MAX_TRIED = 1 << 16        # sites looked at per address space (then no more)
_MAP_PRIVATE, _MAP_FIXED_NOREPLACE = 0x02, 0x100000
_PROT_READ = 1
# The two sites recognised, matched exactly backwards from the trapping instruction.
_SITE = b"\xb8"                   # mov $nr, %eax (then 4 bytes of nr, then syscall 0f 05)
_SITE_GEN = b"\x4c\x8b\x4c\x24\x08\x0f\x05"   # mov 8(%rsp), %r9; syscall (glibc's syscall())
_U64 = struct.Struct("<Q")


@dataclass(slots=True)
class SitePatches:
    """The patched syscall sites of one address space (owned by the platform; copied by
    fork: the host copies the patched code and the table with the rest of the address
    space)."""

    patchable: bool = True          # False: the table could not be mapped, or patching off
    table: bool = False             # the trampoline table is mapped at TABLE_ADDR
    sites: dict[int, int] = field(default_factory=dict)   # patched site -> its slot
    mids: dict[int, int] = field(default_factory=dict)    # site + 5 -> site + 7
    slots: dict[int, int] = field(default_factory=dict)   # slot -> its site
    nimm: int = 0                   # slots given to `mov $nr,%eax` sites: 0, 1, ...
    ngen: int = 0                   # ... to `mov 8(%rsp),%r9` sites: from the top down
    tried: set[int] = field(default_factory=set)          # sites looked at (patched or not)
    seen: dict[int, int] = field(default_factory=dict)    # site -> traps so far
    shared: list[tuple[int, int]] = field(default_factory=list)  # ranges ever mapped shared

    def copy(self) -> SitePatches:
        """A fork's copy."""
        return SitePatches(self.patchable, self.table, dict(self.sites), dict(self.mids),
                           dict(self.slots), self.nimm, self.ngen, set(self.tried),
                           dict(self.seen), list(self.shared))

    def add_shared(self, lo: int, hi: int) -> None:
        """[lo, hi) was mapped shared: no site in it is ever patched (another process
        could run the half-written code)."""
        if len(self.shared) >= _MAX_SHARED:
            self.patchable = False        # (too many to track: no more patching here)
        else:
            self.shared.append((lo, hi))

    def remap_shared(self, old: int, old_size: int, new_size: int,
                     new_addr: int | None) -> None:
        """A shared range moved (mremap): its new place is shared too (conservatively,
        everywhere)."""
        for lo, hi in list(self.shared):
            if lo < old + old_size and old < hi:
                start = new_addr if new_addr is not None else old
                self.add_shared(start, start + max(new_size, old_size))

    def pieces(self, addr: int, length: int) -> list[tuple[int, int]]:
        """[addr, addr + length) without the table.  mm never maps below MMAP_MIN_ADDR,
        but munmap, mprotect and madvise of a range that holds mappings reach the host
        for the whole range: the table is cut out of them, so the application can
        neither unmap it nor make it writable."""
        end = addr + length
        if not self.table or end <= TABLE_ADDR or addr >= TABLE_ADDR + TABLE_SIZE:
            return [(addr, length)]
        out = []
        if addr < TABLE_ADDR:
            out.append((addr, TABLE_ADDR - addr))
        if end > TABLE_ADDR + TABLE_SIZE:
            out.append((TABLE_ADDR + TABLE_SIZE, end - TABLE_ADDR - TABLE_SIZE))
        return out

    def move_sites(self, pid: int, old: int, size: int, new: int) -> None:
        """Patched sites moved with their pages (mremap, done): their slots' return
        addresses follow (a patched jump is position independent, its slot's words are
        not).  `pid`: the stub process, stopped in its syscall thread."""
        moved = [site for site in self.sites if old <= site and site + 7 <= old + size]
        for site in moved:
            slot = self.sites.pop(site)
            self.mids.pop(site + 5, None)
            to = site - old + new
            try:
                B.ptrace(P.PTRACE_POKEDATA, pid, TABLE_INFO + 16 * slot, to + 7)
            except OSError:
                self.patchable = False
                continue
            self.sites[to] = slot
            self.mids[to + 5] = to + 7
            self.slots[slot] = to


class Patcher:
    """The platform's patching: its switch, the table page's offset in the regions
    memfd, and what it did (`stats`, shared with the platform's own counters)."""

    def __init__(self, enabled: bool, table_off: int, stats: dict[str, int]) -> None:
        self.enabled = enabled
        self.table_off = table_off
        self.stats = stats

    def fallback(self, ctx: AppThread, regs: Registers) -> None:
        """A trampoline that found no region in gs made an ordinary syscall with
        rax = (slot + 1) << 32 | nr: the call of that slot's site."""
        site = ctx.process.patches.slots.get((regs.rax >> 32) - 1)
        if site is not None:
            regs.rax &= 0xFFFFFFFF
            regs.rip = regs.rcx = site + 7
            self.stats["fallback"] += 1

    def at_site(self, ctx: AppThread, regs: Registers) -> bool:
        """SIGSEGV at a patched site + 5 (the jmp's last bytes, 00 00: `add %al,(%rax)`
        with rax a syscall number, so it always faults): a thread resumed between the
        site's mov and syscall (a restart, or stopped there when the site was patched).
        True (rip then after the site) if the site still holds the patch.
        Preconditions: regs.rip in ctx.process.patches.mids."""
        proc = ctx.process
        patches = proc.patches
        ret = patches.mids[regs.rip]
        site = ret - 7
        try:
            code = B.vm_read(proc.pid, site, 7)
        except OSError:
            return False
        if code != jmp(patches.sites[site]):
            return False
        regs.rip = regs.rcx = ret
        regs.r11 = regs.eflags
        self.stats["restarted"] += 1
        return True

    def try_patch(self, ctx: AppThread, regs: Registers) -> None:
        """Rewrites the `mov $nr,%eax; syscall` that just trapped again (7 bytes before rip)
        into `jmp *TABLE+8*slot`, when that is safe: the bytes match and sit in one
        page, the memory was never mapped shared, and no other thread of the address
        space runs (so none can execute half-written code).  Once per site."""
        proc = ctx.process
        patches = proc.patches
        rip = regs.rip
        site = rip - 7
        if site in patches.tried or not patches.patchable:
            return
        n = patches.seen.get(site, 0) + 1
        if n < PATCH_AFTER:
            # Only a site that keeps trapping is worth a patch (a few ptrace calls, and
            # the table's mapping for the first): not the exit_group of a child that runs
            # once, nor the dynamic loader's calls in a process that runs briefly.
            if len(patches.seen) < 65536:
                patches.seen[site] = n
            return
        if len(patches.tried) >= _MAX_TRIED:
            patches.patchable = False           # (code without end: JIT output)
            return
        if site < 0x10000 or site >> 12 != (rip - 1) >> 12:
            patches.tried.add(site)
            return
        for other in proc.apps:
            if other.running and other is not ctx:
                return                          # later, when they all stop
        patches.tried.add(site)
        for lo, hi in patches.shared:
            if lo < rip and site < hi:
                return
        nr = regs.rax
        if nr >> 32:
            return                              # (not what either kind of site leaves)
        try:
            code = B.vm_read(proc.pid, site, 7)
            if code == _SITE_GEN:               # glibc's syscall(3): the number in rax
                if patches.ngen >= GEN_SLOTS:
                    return
                slot, word = MAX_SLOTS - 1 - patches.ngen, 0
            elif code == _SITE + struct.pack("<I", nr) + b"\x0f\x05":
                if patches.nimm >= MAX_SLOTS - GEN_SLOTS:
                    return
                slot, word = patches.nimm, nr
            else:
                return
            if not patches.table:
                r = proc.platform.inject(proc.any_thread(), Sysno.mmap, TABLE_ADDR,
                                         TABLE_SIZE, _PROT_READ,
                                         _MAP_PRIVATE | _MAP_FIXED_NOREPLACE, REGION_FD,
                                         self.table_off)
                if r != TABLE_ADDR:
                    patches.patchable = False   # (the host's mmap_min_addr, ...)
                    return
                patches.table = True
            info = TABLE_INFO + 16 * slot
            B.ptrace(P.PTRACE_POKEDATA, proc.pid, info, site + 7)
            B.ptrace(P.PTRACE_POKEDATA, proc.pid, info + 8, (slot + 1) << 32 | word)
            lo = site & ~7
            words = bytearray(B.vm_read(proc.pid, lo, 16 if (site + 7) > lo + 8 else 8))
            words[site - lo:site - lo + 7] = jmp(slot)
            for i in range(0, len(words), 8):
                B.ptrace(P.PTRACE_POKEDATA, proc.pid, lo + i,
                         _U64.unpack_from(words, i)[0])
        except (OSError, StubError):
            patches.patchable = False
            return
        if slot < MAX_SLOTS - GEN_SLOTS:
            patches.nimm += 1
        else:
            patches.ngen += 1
        patches.slots[slot] = site
        patches.sites[site] = slot
        patches.mids[site + 5] = site + 7
        self.stats["patched"] += 1


def jmp(slot: int) -> bytes:
    """A patched site: jmp *(TABLE_ADDR + 8 * slot), 7 bytes."""
    return b"\xff\x24\x25" + struct.pack("<I", TABLE_ADDR + 8 * slot)
