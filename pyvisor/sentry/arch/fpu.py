"""amd64 FP state as the Sentry keeps it: the 512-byte fxsave image.

Linux: arch/x86/include/asm/fpu/types.h (struct fxregs_state),
arch/x86/kernel/fpu/signal.c.
"""

from __future__ import annotations

FXSAVE_SIZE = 512
FXSAVE_ALIGN = 16          # fxrstor faults (#GP) on a less aligned image
MXCSR_OFFSET = 24
MXCSR_DEFAULT = 0x1F80
FCW_DEFAULT = 0x37F


def initial_fxsave() -> bytes:
    """The fxsave image of a reset FPU (execve, rt_sigreturn with no FP state):
    FCW 0x37f, MXCSR 0x1f80, everything else zero."""
    buf = bytearray(FXSAVE_SIZE)
    buf[0:2] = FCW_DEFAULT.to_bytes(2, "little")
    buf[MXCSR_OFFSET:MXCSR_OFFSET + 4] = MXCSR_DEFAULT.to_bytes(4, "little")
    buf[28:32] = (0xFFFF).to_bytes(4, "little")   # MXCSR_MASK (ignored on restore)
    return bytes(buf)
