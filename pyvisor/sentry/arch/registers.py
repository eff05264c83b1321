"""amd64 user register state: what an application may put in it.

Linux: arch/x86/kernel/process_64.c (do_arch_prctl_64), arch/x86/kernel/ptrace.c
(putreg).  The host's PTRACE_SETREGS refuses (EIO) segment bases at or above
TASK_SIZE_MAX and selectors without RPL 3; so does Linux for the application
(arch_prctl and clone(CLONE_SETTLS) return EPERM).  Every application-chosen
value that reaches the registers is checked here, before it reaches the host.
"""

from __future__ import annotations

# The top of user space with 4-level paging, as the Sentry's address spaces are.
# From arch/x86/include/asm/page_64_types.h (TASK_SIZE_MAX).
TASK_SIZE_MAX = (1 << 47) - 4096


def valid_segment_base(addr: int) -> bool:
    """Whether `addr` may be an FS or GS base (arch_prctl ARCH_SET_FS/GS, CLONE_SETTLS)."""
    return 0 <= addr < TASK_SIZE_MAX
