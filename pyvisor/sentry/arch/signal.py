"""amd64 signal frames: where an rt_sigframe's parts go, and the registers a
handler starts with or rt_sigreturn restores.  Linux: arch/x86/kernel/signal_64.c
(x64_setup_rt_frame, restore_sigcontext), arch/x86/include/uapi/asm/sigcontext.h,
arch/x86/include/uapi/asm/ucontext.h.  gVisor: arch/signal_amd64.go.

Layout only: the kernel (kernel/signal.py) decides the policy (which signal,
which stack, which mask, what a bad frame costs) and does the copies.

    frame -> pretcode (sa_restorer)              8
             ucontext: flags, link, stack_t      40   (UC_OFF)
                       sigcontext                256
                       sigmask                   8
             siginfo                             128  (INFO_OFF)
    fp_addr -> FP/XSAVE image (arch/fpu.py), FRAME_ALIGN-aligned, above the frame
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pyvisor.sentry.arch import fpu
from pyvisor.sentry.arch.registers import Registers

# struct sigcontext field order (amd64) for the general registers.
SC_REGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
           "rdx", "rax", "rcx", "rsp", "rip", "eflags")
SIGCONTEXT = struct.Struct("<18Q HHHH QQQQ Q 64x")   # 256 bytes
assert SIGCONTEXT.size == 256
UC_HEAD = struct.Struct("<QQ QiiQ")   # uc_flags, uc_link, stack_t (sp, flags, pad, size)
FRAME_SIZE = 8 + UC_HEAD.size + SIGCONTEXT.size + 8 + 128  # pretcode, uc, sigmask, siginfo
UC_OFF = 8
INFO_OFF = 8 + UC_HEAD.size + SIGCONTEXT.size + 8
# What rt_sigreturn reads, from frame + UC_OFF: the ucontext up to and with the mask.
RESTORE_SIZE = UC_HEAD.size + SIGCONTEXT.size + 8
UC_FP_XSTATE = 1
UC_SIGCONTEXT_SS = 2
UC_STRICT_RESTORE_SS = 4
# The eflags bits a signal frame may change.  From arch/x86/kernel/signal.c (FIX_EFLAGS).
FIX_EFLAGS = 0x50DD5
_EFLAGS_DF, _EFLAGS_TF = 0x400, 0x100
_SYS_restart_syscall = 219
RED_ZONE = 128


def frame_addresses(sp: int, fp_len: int) -> tuple[int, int]:
    """(frame, fp_addr) for a frame pushed below `sp` with an FP image of `fp_len`
    bytes: the image aligned above, the frame 16-byte aligned minus the return
    address slot, as a `call` would leave it."""
    fp_addr = (sp - fp_len) & ~(fpu.FRAME_ALIGN - 1)
    return ((fp_addr - FRAME_SIZE) & ~15) - 8, fp_addr


def pack_frame(regs: Registers, restorer: int, stack: tuple[int, int, int], saved_mask: int,
               info: bytes, fault_addr: int, fp_addr: int) -> bytes:
    """The frame's bytes (pretcode, ucontext, sigmask, siginfo); `stack` is the
    stack_t to save (sp, flags, size)."""
    sc = SIGCONTEXT.pack(*(getattr(regs, r) for r in SC_REGS),
                         regs.cs & 0xFFFF, regs.gs & 0xFFFF, regs.fs & 0xFFFF, regs.ss & 0xFFFF,
                         0, 0, saved_mask & 0xFFFFFFFFFFFFFFFF, fault_addr, fp_addr)
    uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS | (UC_FP_XSTATE if fpu.HAS_XSAVE else 0)
    ss_sp, ss_flags, ss_size = stack
    uc = UC_HEAD.pack(uc_flags, 0, ss_sp, ss_flags, 0, ss_size)
    return struct.pack("<Q", restorer) + uc + sc + struct.pack("<Q", saved_mask) + info


def enter_handler(regs: Registers, frame: int, handler: int, sig: int) -> None:
    """Registers at a handler's first instruction: handler(sig, &info, &uc)."""
    regs.rsp = frame
    regs.rip = handler
    regs.rdi = sig
    regs.rsi = frame + INFO_OFF
    regs.rdx = frame + UC_OFF
    regs.rax = 0
    regs.eflags &= ~(_EFLAGS_DF | _EFLAGS_TF)


@dataclass(frozen=True, slots=True)
class SavedContext:
    """What rt_sigreturn takes from a frame besides the general registers."""

    mask: int
    stack: tuple[int, int, int]      # stack_t (sp, flags, size)
    fp_addr: int                     # 0: no FP image (reset state)


def sigreturn_frame(regs: Registers) -> int:
    """The frame rt_sigreturn reads: the handler's `ret` popped pretcode."""
    return regs.rsp - 8


def restore(regs: Registers, raw: bytes) -> SavedContext:
    """Restores the general registers from `raw` (RESTORE_SIZE bytes at frame+UC_OFF);
    only user-changeable eflags bits come from the frame, and the syscall is over
    (no restart).  cs and ss keep their values."""
    _, _, ss_sp, ss_flags, _, ss_size = UC_HEAD.unpack_from(raw, 0)
    (mask,) = struct.unpack_from("<Q", raw, UC_HEAD.size + SIGCONTEXT.size)
    vals = SIGCONTEXT.unpack_from(raw, UC_HEAD.size)
    for name, v in zip(SC_REGS, vals[:18]):
        if name == "eflags":
            v = (regs.eflags & ~FIX_EFLAGS) | (v & FIX_EFLAGS)
        setattr(regs, name, v)
    regs.orig_rax = 0xFFFFFFFFFFFFFFFF
    return SavedContext(mask, (ss_sp, ss_flags, ss_size), vals[26])


def restart_syscall(regs: Registers, with_restart_block: bool) -> None:
    """Re-executes the syscall instruction (rip points just past it): the same call,
    or restart_syscall(2) for ERESTART_RESTARTBLOCK."""
    regs.rax = _SYS_restart_syscall if with_restart_block else regs.orig_rax
    regs.rip -= 2
