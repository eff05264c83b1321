"""The syscall-argument ABI of amd64: six registers, typed as the kernel types them.

Linux: include/linux/syscalls.h (SYSCALL_DEFINEx casts each register to the
declared C type: an `int` argument is the low 32 bits, sign-extended; an
`unsigned int` the low 32 bits; `size_t`, pointers and `unsigned long` all 64
bits; `loff_t` 64 bits signed; `umode_t` the low 16 bits).  gVisor:
arch.SyscallArguments.

Every handler decodes its arguments here, once, at the top: the accessors
truncate and sign-extend as the kernel does, so no handler sees a value its C
type could not hold.  A pointer is an address in [0, 2^64); whether it is a
valid user address is decided in one place, by the memory manager's copy
functions (EFAULT).  A length is decoded with `size` (the raw 64-bit value)
and clamped by its caller, or with `count`, which applies Linux's
MAX_RW_COUNT clamp for read/write-style transfers.
"""

from __future__ import annotations

from pyvisor.sentry.arch.registers import Registers

_M16 = 0xFFFF
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF

# The largest byte count one read/write-style call transfers.  From <linux/fs.h>.
MAX_RW_COUNT = 0x7FFFF000


def c_int(v: int) -> int:
    """`v` as a C `int` holds it: the low 32 bits, sign-extended (what put_user
    stores through an int pointer, and what any 32-bit field of a struct keeps)."""
    v &= _M32
    return v - (1 << 32) if v & 0x80000000 else v


class SyscallArguments:
    """The argument registers of one syscall (rdi, rsi, rdx, r10, r8, r9)."""

    __slots__ = ("regs",)

    def __init__(self, regs: Registers) -> None:
        self.regs = regs          # the task's registers at the syscall stop

    def raw(self, i: int) -> int:
        """Argument `i` as the unsigned 64-bit register value."""
        r = self.regs
        if i == 0:
            return int(r.rdi)
        if i == 1:
            return int(r.rsi)
        if i == 2:
            return int(r.rdx)
        if i == 3:
            return int(r.r10)
        if i == 4:
            return int(r.r8)
        if i == 5:
            return int(r.r9)
        raise IndexError(i)

    def int32(self, i: int) -> int:
        """A C `int` (also fds, pids, signal numbers, flags declared int)."""
        return c_int(self.raw(i))

    def uint32(self, i: int) -> int:
        """A C `unsigned int` (ioctl commands, uid_t, gid_t, most flags)."""
        return self.raw(i) & _M32

    def int64(self, i: int) -> int:
        """A C `long` / `loff_t`: signed 64 bits."""
        v = self.raw(i)
        return v - (1 << 64) if v & (1 << 63) else v

    def uint64(self, i: int) -> int:
        """A C `unsigned long`: all 64 bits."""
        return self.raw(i)

    def pointer(self, i: int) -> int:
        """A user address (unchecked here; the copy functions decide EFAULT)."""
        return self.raw(i)

    def size(self, i: int) -> int:
        """A `size_t`: the raw 64-bit length; callers clamp before allocating."""
        return self.raw(i)

    def count(self, i: int) -> int:
        """A read/write byte count: size_t clamped to MAX_RW_COUNT, as rw_verify_area."""
        return min(self.raw(i), MAX_RW_COUNT)

    def offset(self, i: int) -> int:
        """A file offset (`loff_t`): signed 64 bits; negative ones are the caller's EINVAL."""
        return self.int64(i)

    def fd(self, i: int) -> int:
        """A file descriptor: a C `int`."""
        return self.int32(i)

    def mode(self, i: int) -> int:
        """A `umode_t`: the low 16 bits."""
        return self.raw(i) & _M16
