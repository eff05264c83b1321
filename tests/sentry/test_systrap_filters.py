"""The systrap stub's seccomp filters (platform/systrap/stub.py), run over seccomp_data
with the Sentry's own classic-BPF interpreter (kernel/seccomp.py, checked against Linux
by tests/syscalls/test_appseccomp.py): no process, milliseconds.

The decisions SECURITY.md (*systrap*) relies on: an application thread (both filters,
the most restrictive answer wins) can make no host syscall but the handler's own four
from inside the handler; the syscall thread (the stub's filter only) can make exactly
the injected ones from the injection point."""

from __future__ import annotations

import struct

import pytest

from pyvisor.sentry.kernel.seccomp import run_filter, verify
from pyvisor.sentry.platform.systrap import region as R
from pyvisor.sentry.platform.systrap import stub as S
from pyvisor.sentry.platform.systrap import trampolines as T

X86_64, I386 = 0xC000003E, 0x40000003
ALLOW, TRAP = 0x7FFF0000, 0x00030000
INJ = S.SYSCALL_ADDR + 2                 # seccomp_data.instruction_pointer: after `syscall`
SITES = {name: S.HANDLER + off + 2 for name, off in (
    ("write", S.SITE_WRITE), ("futex", S.SITE_FUTEX), ("exit", S.SITE_EXIT),
    ("sigreturn", S.SITE_SIGRETURN))}


def _prog(raw: bytes) -> tuple[tuple[int, int, int, int], ...]:
    insns = [struct.unpack_from("<HBBI", raw, i) for i in range(0, len(raw), 8)]
    return verify([(c, jt, jf, k) for c, jt, jf, k in insns])


CLONE = S.CLONE_ENTRY + 2              # after the application-thread clone's `syscall`
BASE = _prog(S.base_filter(S.SYSCALL_ADDR + 2, S.HANDLER, S.HANDLER_END, S.SETUP_ALT_IP,
                           S.SETUP_SECCOMP_IP, CLONE, S.SETUP_MMAP_IP, S.SETUP_MADVISE_IP))
APP = _prog(S.app_filter(S.HANDLER, S.HANDLER_END))


def _data(nr: int, ip: int, *args: int, arch: int = X86_64) -> bytes:
    a = list(args) + [0] * (6 - len(args))
    return struct.pack("<iIQ6Q", nr, arch, ip, *(v & (2**64 - 1) for v in a))


def _action(ret: int) -> int:
    return ret & 0xFFFF0000


def app_thread(nr: int, ip: int, *args: int, arch: int = X86_64) -> int:
    """The action for an application thread: the more restrictive of the two filters
    (seccomp's rule; ALLOW is the least restrictive, TRAP more)."""
    d = _data(nr, ip, *args, arch=arch)
    acts = {_action(run_filter(BASE, d)), _action(run_filter(APP, d))}
    return TRAP if TRAP in acts else acts.pop()


def syscall_thread(nr: int, ip: int, *args: int, arch: int = X86_64) -> int:
    return _action(run_filter(BASE, _data(nr, ip, *args, arch=arch)))


def test_the_stub_embeds_these_filters() -> None:
    code = S.build_stub_elf()
    assert S.base_filter(S.SYSCALL_ADDR + 2, S.HANDLER, S.HANDLER_END, S.SETUP_ALT_IP,
                         S.SETUP_SECCOMP_IP, CLONE, S.SETUP_MMAP_IP, S.SETUP_MADVISE_IP) in code
    assert S.app_filter(S.HANDLER, S.HANDLER_END) in code


@pytest.mark.parametrize("nr", [0, 1, 2, 9, 39, 56, 57, 59, 60, 62, 101, 157, 202, 231, 317,
                                0x40000000 | 39, 435, 1000])
@pytest.mark.parametrize("where", ["app", "inject", "vsyscall", "stub"])
def test_application_syscalls_trap(nr: int, where: str) -> None:
    """Anywhere but the handler, every number (x32's too) traps, even at the injection
    point and for the numbers the Sentry injects."""
    ip = {"app": 0x401000, "inject": INJ, "vsyscall": 0xFFFFFFFFFF600400,
          "stub": S.FIRST_TRAP + 7}[where]
    assert app_thread(nr, ip, 0x8000 | 17) == TRAP


@pytest.mark.parametrize("ip", [0x401000, INJ, *SITES.values()])
def test_other_architectures_trap(ip: int) -> None:
    """int 0x80 / 32-bit code (AUDIT_ARCH_I386): a trap, whatever the number or place."""
    for nr in (1, 15, 60, 202):
        assert app_thread(nr, ip, 6, 0, arch=I386) == TRAP
        assert syscall_thread(nr, ip, arch=I386) == TRAP


def test_handler_calls_allowed_only_as_the_handler_makes_them() -> None:
    site = SITES["write"]
    assert app_thread(202, site, 0x7FF000100000, 0, 1) == ALLOW     # FUTEX_WAIT
    assert app_thread(1, site, 6, 0, 8) == ALLOW                    # write(WAKE_FD)
    assert app_thread(15, site) == ALLOW                            # rt_sigreturn
    assert app_thread(60, site) == ALLOW                            # exit
    for op in (1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 0x80 | 1, 0x80):   # WAKE, REQUEUE, PI...
        assert app_thread(202, site, 0, op) == TRAP, op
    for fd in (0, 1, 2, 3, 5, 7, (1 << 32) | 5):
        assert app_thread(1, site, fd, 0, 8) == TRAP, fd
    for nr in (0, 2, 9, 39, 56, 59, 62, 231, 317):
        assert app_thread(nr, site) == TRAP, nr


def test_handler_range_is_exact() -> None:
    """Just outside the handler the same calls trap."""
    for ip in (S.HANDLER, S.HANDLER + 1, S.HANDLER - 1, S.HANDLER_END, S.HANDLER_END + 2,
               S.HANDLER + (1 << 32)):
        assert app_thread(15, ip) == TRAP, hex(ip)
        assert app_thread(202, ip, 0, 0) == TRAP, hex(ip)
    assert all(S.HANDLER < ip <= S.HANDLER_END for ip in SITES.values())


def test_syscall_thread_injection() -> None:
    """The syscall thread (the stub's filter alone): exactly the injected calls, and
    only from the injection point."""
    for nr in S.INJECTED_SYSCALLS:
        assert syscall_thread(nr, INJ) == ALLOW, nr
        assert syscall_thread(nr, 0x401000) == TRAP, nr
    assert syscall_thread(56, INJ, S.CLONE_PROCESS) == ALLOW
    assert syscall_thread(56, INJ, S.CLONE_APP_THREAD) == TRAP       # only at its own site
    assert syscall_thread(56, INJ, 0x10000 | 0x100) == TRAP          # other clone flags
    assert syscall_thread(157, INJ, S.PR_SET_NAME) == ALLOW
    assert syscall_thread(157, INJ, 22) == TRAP                      # PR_SET_SECCOMP
    assert syscall_thread(157, INJ, (1 << 32) | S.PR_SET_NAME) == TRAP
    for nr in (0, 1, 39, 59, 62, 101, 231, 202, 131, 317):
        assert syscall_thread(nr, INJ) == TRAP, nr


def test_thread_setup() -> None:
    """A new thread's own sigaltstack and seccomp, from their set-up instructions only
    (an application thread, under app_filter, traps there too)."""
    assert syscall_thread(131, S.SETUP_ALT_IP) == ALLOW
    assert syscall_thread(317, S.SETUP_SECCOMP_IP) == ALLOW
    for nr in (9, 56, 59, 60, 317):
        assert syscall_thread(nr, S.SETUP_ALT_IP) == TRAP or nr == 131
    for nr in (9, 56, 59, 60, 131):
        assert syscall_thread(nr, S.SETUP_SECCOMP_IP) == TRAP
    for ip in (S.SETUP_ALT_IP, S.SETUP_SECCOMP_IP):
        for nr in (131, 317, 9):
            assert app_thread(nr, ip) == TRAP


def test_application_thread_clone_site() -> None:
    """clone(CLONE_APP_THREAD) (untraced) from its own site in the stub only, with exactly
    those flags; nothing else there; an application thread traps there."""
    assert syscall_thread(56, CLONE, S.CLONE_APP_THREAD) == ALLOW
    for flags in (S.CLONE_PROCESS, S.CLONE_APP_THREAD & ~0x00800000, 0x10000 | 0x100,
                  (1 << 32) | S.CLONE_APP_THREAD):
        assert syscall_thread(56, CLONE, flags) == TRAP, hex(flags)
    for nr in (*S.INJECTED_SYSCALLS, 57, 131, 157, 317):
        assert syscall_thread(nr, CLONE) == TRAP, nr
    assert app_thread(56, CLONE, S.CLONE_APP_THREAD) == TRAP


def test_trampoline_fallback_traps() -> None:
    """The syscall a trampoline falls back to (and any call from the trampolines' entries)
    lies outside the handler's range: it traps, even as the handler's own calls."""
    assert not S.HANDLER < S.FALLBACK_END <= S.HANDLER_END
    for ip in (S.FALLBACK_END, S.ENTRIES + 2, S.ENTRIES + T.ENTRY_SIZE * (T.MAX_SLOTS - 1) + 2):
        assert app_thread(1, ip, 6, 0, 8) == TRAP
        assert app_thread(202, ip, 0, 0) == TRAP
        assert app_thread(15, ip) == TRAP
        assert app_thread(39, ip) == TRAP
        assert syscall_thread(9, ip) == TRAP


def test_thread_maps_its_region() -> None:
    """A new thread's mmap of its region and its MADV_DONTFORK, from their set-up
    instructions only, with exactly those arguments (the regions memfd, shared, fixed,
    one region's size, above the application's address space)."""
    r = R.REGIONS_START + 5 * R.REGION_SIZE
    ok = (r, R.REGION_SIZE, 3, 0x11, R.REGION_FD, 5 * R.REGION_SIZE)
    assert syscall_thread(9, S.SETUP_MMAP_IP, *ok) == ALLOW
    for i, bad in ((0, 0x400000), (1, 2 * R.REGION_SIZE), (2, 7), (3, 0x12), (3, 0x31),
                   (4, 3), (4, (1 << 32) | R.REGION_FD)):
        args = list(ok)
        args[i] = bad
        assert syscall_thread(9, S.SETUP_MMAP_IP, *args) == TRAP, (i, hex(bad))
    assert syscall_thread(28, S.SETUP_MADVISE_IP, r, R.REGION_SIZE, 10) == ALLOW
    assert syscall_thread(28, S.SETUP_MADVISE_IP, r, R.REGION_SIZE, 4) == TRAP   # DONTNEED
    for nr in (10, 11, 25, 56, 60, 131, 317):
        assert syscall_thread(nr, S.SETUP_MMAP_IP) == TRAP, nr
        assert syscall_thread(nr, S.SETUP_MADVISE_IP) == TRAP, nr
    assert app_thread(9, S.SETUP_MMAP_IP, *ok) == TRAP
    assert app_thread(28, S.SETUP_MADVISE_IP, r, R.REGION_SIZE, 10) == TRAP
