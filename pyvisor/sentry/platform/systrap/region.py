"""The region of one systrap application thread: where the stub's code and the Sentry
meet, and the stop protocol on its state word.

gVisor: pkg/sentry/platform/systrap/sysmsg (sysmsg.h: struct sysmsg, thread_context).

A region is REGION_SIZE bytes of the regions memfd (REGION_FD), REGION_SIZE-aligned,
mapped MAP_SHARED in its stub process (at REGIONS_START + slot * REGION_SIZE) and in
the Sentry, so the signal handler (stub.py) finds it from its stack pointer and a
trampoline (trampolines.py) from the gs base:

    +0x00  state      u32   NEW 0, STOPPED 1 (handler, trampoline), RUN 2 (Sentry),
                            EXIT 3 (Sentry), ESCALATE 4 (Sentry: resume a trampoline
                            stop through the handler)
    +0x18  uc         u64   the ucontext address the handler was given (checked)
    +0x20  stack_t    24 B  the altstack, for the set-up's sigaltstack
    +0x40  tid        u32   CLONE_CHILD_CLEARTID word: 0 once the host thread is gone
    +0x44  spin       u32   how many times the handler looks at the state word (pause
                            between) before it sleeps on it; set by the Sentry
    +0x48  kind       u32   how the thread stopped: SIGNAL 1 (handler), FAST 2
    +0x4c  pend       u32   1: the Sentry left an FP image at PENDFP for the resume
    +0x50  appsp      u64   the trampoline's save of the application's rsp
    +0x58  retip      u64   where the trampoline's way back jumps
    +0x80  regs       216 B the registers in user_regs_struct's layout (arch.Registers)
    ..FAST_TOP              the trampoline's stack (below the altstack)
    +ALTSTACK .. +REGION_SIZE: the altstack (the frame lands at its top); its bottom
                            holds FASTFP (the trampoline's XSAVE image) and PENDFP

A thread stops by setting the state word to STOPPED, writing 8 bytes to the wake
eventfd (WAKE_FD, the Sentry's platform event) and waiting (`wait_loop`) until the
Sentry, having written the registers it wants, sets RUN (or EXIT, ESCALATE).

Everything in the region is writable by the application thread (and its siblings):
the Sentry copies once, validates, and never trusts it (SECURITY.md, *systrap*).
"""

from __future__ import annotations

import struct

from pyvisor.abi.linux.sysno_amd64 import Sysno
from pyvisor.sentry.arch import fpu
from pyvisor.sentry.arch.signal import frame_addresses
from pyvisor.sentry.platform.ptrace.stub import STUB_START, TASK_SIZE
from pyvisor.sentry.platform.systrap.asm import Assembler

# Host fds in every systrap stub (besides the memory file at 3).
REGION_FD = 5        # the regions' memfd
WAKE_FD = 6          # the eventfd HANDLER writes: the Sentry's event_fd()

REGION_SIZE = 0x4000
ALTSTACK = 0x1000
REGIONS_START = STUB_START + 0x8000000         # above MAX_USER_ADDRESS: mm never maps here
MAX_REGIONS = 8192          # application threads at once, whole sandbox (twice the default
                            # --pids-limit; a region's pages exist only once touched)
REGIONS_END = REGIONS_START + MAX_REGIONS * REGION_SIZE
assert REGIONS_END <= TASK_SIZE and REGIONS_START % (REGIONS_END - REGIONS_START) == 0

OFF_STATE, OFF_UC, OFF_STACK, OFF_TID, OFF_SPIN = 0x00, 0x18, 0x20, 0x40, 0x44
OFF_KIND, OFF_PEND, OFF_APPSP, OFF_RETIP = 0x48, 0x4C, 0x50, 0x58
KIND_SIGNAL, KIND_FAST = 1, 2       # how the thread stopped: in the handler, in a trampoline
# Where the host kernel puts the signal frame and its XSAVE image in a region (the top of
# the altstack; SS_AUTODISARM makes it the same place every time).
FRAME_OFF, FP_OFF = frame_addresses(REGION_SIZE, fpu.FRAME_BYTES)
STATE_NEW, STATE_STOPPED, STATE_RUN, STATE_EXIT, STATE_ESCALATE = 0, 1, 2, 3, 4
# The trampoline's stack (below the altstack: a signal there must not look nested), its
# XSAVE image of the thread's FP state at a fast stop, and the FP image the Sentry wants
# loaded at the next resume (PEND): between the altstack's bottom and the host's frame.
FAST_TOP = 0xF00
FASTFP_OFF = ALTSTACK
PENDFP_OFF = ALTSTACK + ((fpu.FRAME_BYTES + 63) & ~63)
assert PENDFP_OFF + fpu.FRAME_BYTES <= FRAME_OFF and FASTFP_OFF % 64 == 0

# The registers, in user_regs_struct's layout (arch.Registers), at OFF_REGS: the handler
# copies them out of the ucontext at a stop and back in before it returns, so the Sentry
# moves them with one memmove each way (no field-by-field Python).
OFF_REGS = 0x80
_URS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
        "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
        "gs_base", "ds", "es", "fs", "gs")
REGS_SIZE = 8 * len(_URS)
assert OFF_REGS + REGS_SIZE <= ALTSTACK


def reg_off(name: str) -> int:
    """The offset of register `name` in a region (within REGS)."""
    return OFF_REGS + 8 * _URS.index(name)


def wait_loop(a: Assembler, p: str) -> None:
    """Stop code shared by the handler and the trampolines, with rbx = the region and
    [rbx] = STOPPED already stored: wake the Sentry (write WAKE_FD), spin, then
    FUTEX_WAIT until [rbx] != STOPPED; falls through to label p+"check".  Its labels
    p+"write" and p+"futex" mark the syscall instructions (the filters allow them from
    the handler's range only); label "one" (a u64 1) is the caller's."""
    a += b"\xb8" + struct.pack("<I", Sysno.write)            # write(WAKE_FD, &one, 8)
    a += b"\xbf" + struct.pack("<I", WAKE_FD)
    a.jump(b"\x48\x8d\x35", "one")                          # lea rsi, [rip+one]
    a += b"\xba\x08\0\0\0"
    a.label(p + "write")
    a += b"\x0f\x05"
    a += b"\x8b\x4b" + bytes([OFF_SPIN])                    # mov ecx, [rbx+OFF_SPIN]
    a += b"\x85\xc9"                                         # test ecx, ecx
    a.jump(b"\x74", p + "wait", 1)                            # jz wait
    a.label(p + "spin")
    a += b"\x83\x3b" + bytes([STATE_STOPPED])               # cmp dword [rbx], STOPPED
    a.jump(b"\x75", p + "check", 1)                           # jne check
    a += b"\xf3\x90\xff\xc9"                                # pause; dec ecx
    a.jump(b"\x75", p + "spin", 1)                            # jnz spin
    a.label(p + "wait")
    a += b"\x8b\x03\x83\xf8" + bytes([STATE_STOPPED])       # mov eax, [rbx]; cmp eax, 1
    a.jump(b"\x75", p + "check", 1)
    a += b"\xb8" + struct.pack("<I", Sysno.futex)            # futex(rbx, WAIT, STOPPED, 0)
    a += b"\x48\x89\xdf\x31\xf6"                            # mov rdi, rbx; xor esi, esi
    a += b"\xba" + struct.pack("<I", STATE_STOPPED)
    a += b"\x45\x31\xd2"                                    # xor r10d, r10d
    a.label(p + "futex")
    a += b"\x0f\x05"
    a.jump(b"\xeb", p + "wait", 1)
    a.label(p + "check")
