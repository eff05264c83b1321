"""amd64 user register state: the Sentry's one register type, and what an
application may put in it.

Linux: arch/x86/include/asm/user_64.h (struct user_regs_struct, the layout
ptrace and core dumps use), arch/x86/kernel/process_64.c (do_arch_prctl_64),
arch/x86/kernel/ptrace.c (putreg).  gVisor: arch.Registers (linux.PtraceRegs).

`Registers` is the register set of one task as the kernel, the signal code and
the syscall handlers see it.  Its layout is Linux's user_regs_struct, so a
platform that reads registers in that layout (ptrace's PTRACE_GETREGS) fills it
without a copy; other platforms convert at their edge.  Named accessors give
the syscall view (number, arguments, return value, IP, SP, TLS base), so code
above the platform need not know which register holds what.

The host's PTRACE_SETREGS refuses (EIO) segment bases at or above TASK_SIZE_MAX
and selectors without RPL 3; so does Linux for the application (arch_prctl and
clone(CLONE_SETTLS) return EPERM).  Every application-chosen value that reaches
the registers is checked here, before it reaches the host.
"""

from __future__ import annotations

import ctypes

# The top of user space with 4-level paging, as the Sentry's address spaces are.
# From arch/x86/include/asm/page_64_types.h (TASK_SIZE_MAX).
TASK_SIZE_MAX = (1 << 47) - 4096

# The legacy vsyscall page.  From arch/x86/include/asm/vsyscall.h (VSYSCALL_ADDR).
VSYSCALL_START = 0xFFFFFFFFFF600000

# The 64-bit user code segment selector.  From arch/x86/include/asm/segment.h (__USER_CS).
USER_CS = 0x33
USER_DS = 0x2B

_M64 = 0xFFFFFFFFFFFFFFFF
_ARG_REGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")


class Registers(ctypes.Structure):
    """struct user_regs_struct on amd64.  From <sys/user.h>.

    Owned by its task; a platform writes it only while the task is stopped in it
    (at a stop) and reads it when the task is switched to."""

    _fields_ = [(name, ctypes.c_ulonglong) for name in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
        "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
        "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")]

    def copy(self) -> Registers:
        """An independent copy (clone's child starts from its parent's registers)."""
        r = Registers()
        ctypes.memmove(ctypes.addressof(r), ctypes.addressof(self), REGS_SIZE)
        return r

    def load(self, other: Registers) -> None:
        """Overwrites every register with `other`'s."""
        ctypes.memmove(ctypes.addressof(self), ctypes.addressof(other), REGS_SIZE)

    # -- the syscall view (gVisor: arch.Context SyscallNo/SyscallArgs/Return...) -------

    @property
    def syscall_no(self) -> int:
        """The syscall number at a syscall stop: orig_rax, as the entry code saved it."""
        return int(self.orig_rax)

    @syscall_no.setter
    def syscall_no(self, nr: int) -> None:
        self.orig_rax = nr & _M64

    def arg(self, i: int) -> int:
        """Syscall argument `i` (0..5) as the unsigned 64-bit register value."""
        return int(getattr(self, _ARG_REGS[i]))

    def set_arg(self, i: int, v: int) -> None:
        setattr(self, _ARG_REGS[i], v & _M64)

    @property
    def ret(self) -> int:
        """The syscall return value register (rax)."""
        return int(self.rax)

    @ret.setter
    def ret(self, v: int) -> None:
        self.rax = v & _M64

    @property
    def ip(self) -> int:
        return int(self.rip)

    @ip.setter
    def ip(self, v: int) -> None:
        self.rip = v & _M64

    @property
    def sp(self) -> int:
        return int(self.rsp)

    @sp.setter
    def sp(self, v: int) -> None:
        self.rsp = v & _M64

    @property
    def tls(self) -> int:
        """The TLS base (FS base on amd64: arch_prctl(ARCH_SET_FS), CLONE_SETTLS)."""
        return int(self.fs_base)

    @tls.setter
    def tls(self, v: int) -> None:
        self.fs_base = v & _M64


REGS_SIZE = ctypes.sizeof(Registers)
assert REGS_SIZE == 27 * 8


def valid_segment_base(addr: int) -> bool:
    """Whether `addr` may be an FS or GS base (arch_prctl ARCH_SET_FS/GS, CLONE_SETTLS)."""
    return 0 <= addr < TASK_SIZE_MAX
