"""Syscall-site patching's bookkeeping per address space (platform/systrap/patching.py,
SitePatches), without a process: the table cut out of what reaches the host, shared
ranges, a fork's copy.  Patching itself runs in tests/syscalls/test_syscall_sites.py
and tests/security/test_systrap.py."""

from __future__ import annotations

from pyvisor.sentry.platform.systrap import patching
from pyvisor.sentry.platform.systrap.patching import SitePatches
from pyvisor.sentry.platform.systrap.trampolines import MAX_SLOTS, TABLE_ADDR, TABLE_SIZE

END = TABLE_ADDR + TABLE_SIZE


def test_table_is_cut_out_of_host_calls_once_mapped() -> None:
    sp = SitePatches()
    assert sp.pieces(0, 0x20000) == [(0, 0x20000)]         # not mapped yet: untouched
    sp.table = True
    assert sp.pieces(0, 0x20000) == [(0, TABLE_ADDR), (END, 0x20000 - END)]
    assert sp.pieces(TABLE_ADDR, TABLE_SIZE) == []
    assert sp.pieces(TABLE_ADDR + 0x1000, 0x1000) == []
    assert sp.pieces(0x1000, TABLE_ADDR) == [(0x1000, TABLE_ADDR - 0x1000)]
    assert sp.pieces(END, 0x1000) == [(END, 0x1000)]
    assert sp.pieces(0x400000, 0x1000) == [(0x400000, 0x1000)]


def test_shared_ranges_and_their_limit() -> None:
    sp = SitePatches()
    sp.add_shared(0x1000, 0x3000)
    sp.remap_shared(0x2000, 0x1000, 0x4000, 0x900000)       # part of it moves (mremap)
    assert (0x900000, 0x904000) in sp.shared
    sp.remap_shared(0x500000, 0x1000, 0x1000, 0x600000)     # a private range: nothing
    assert len(sp.shared) == 2
    for i in range(patching._MAX_SHARED):
        sp.add_shared(i << 20, (i << 20) + 0x1000)
    assert not sp.patchable, "too many to track: no more patching in this address space"


def test_fork_copy_is_independent() -> None:
    sp = SitePatches(table=True)
    sp.sites[0x401000] = 0
    sp.mids[0x401005] = 0x401007
    sp.slots[0] = 0x401000
    sp.nimm = 1
    sp.tried.add(0x401000)
    sp.seen[0x402000] = 2
    sp.add_shared(0x10000, 0x20000)
    child = sp.copy()
    assert child == sp
    child.sites[0x403000] = 1
    child.tried.add(0x403000)
    child.seen[0x402000] = 3
    child.add_shared(0x30000, 0x40000)
    assert 0x403000 not in sp.sites and 0x403000 not in sp.tried
    assert sp.seen[0x402000] == 2 and len(sp.shared) == 1


def test_jump_encoding() -> None:
    """A patched site: `jmp *abs32` (ff 24 25) through its slot, 7 bytes like the site."""
    assert patching.jmp(0) == b"\xff\x24\x25" + TABLE_ADDR.to_bytes(4, "little")
    last = patching.jmp(MAX_SLOTS - 1)
    assert len(last) == 7 and int.from_bytes(last[3:], "little") == TABLE_ADDR + 8 * (MAX_SLOTS - 1)
