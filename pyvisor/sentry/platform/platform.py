"""The platform seam: what the kernel needs from whatever runs application code.

gVisor: pkg/sentry/platform (Platform, AddressSpace, Context).  Linux analogue:
the architecture's entry code and MMU, seen from the scheduler and mm.

Everything below this line is a platform (platform/ptrace, platform/systrap;
platform/fake.py for unit tests); everything above it (kernel,
mm, syscalls, vfs) sees only these Protocols and the `arch` types:

* `Platform` makes address spaces and contexts, switches a context into
  application code, and reports why it stopped.
* `AddressSpace` is one application address space's host page tables: map a
  range of the memory file or anonymous memory, unmap, protect, remap, and
  copy bytes in and out.  mm keeps the authoritative VMA list; the address
  space only follows it.
* `Context` is one application thread's vehicle (a stub thread on ptrace).
  The register state is the task's `arch.Registers`, handed to `switch` and
  filled in at the stop, as gVisor hands an arch.Context to Context.Switch.

The one difference from gVisor: its Switch blocks a goroutine until the
context stops.  The Sentry is one event loop, so `switch` only starts the
context and returns; the stop is reported later by `stops()`, which the loop
calls when `event_fd()` is readable (or when `stops_ready()` says so).  A
switched context reports exactly one stop before it is switched again.

Errors: address-space operations raise OSError with the host errno the
operation got (mm turns it into the application's errno); a platform failure
(a stub gone mad) is `PlatformError`, which the kernel treats as a Sentry bug.
A context that died under the platform (the host OOM killer) is not an error:
its death is reported as a stop of kind EXIT.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from pyvisor.sentry.arch.registers import Registers


# The top of the application's address space on every platform: ptrace keeps its stub
# page at this address (platform/ptrace/stub.py), below the host's stack window.
MAX_USER_ADDRESS = 0x7FF000000000


class PlatformError(Exception):
    """The platform failed in a way the application did not cause (a Sentry bug)."""


class StopKind(enum.Enum):
    """Why a switched context stopped.  gVisor: the errors Context.Switch returns."""

    SYSCALL = "syscall"      # a syscall instruction: registers hold number and arguments
    FAULT = "fault"          # a memory fault (SIGSEGV, SIGBUS): `address`, `access`
    SIGNAL = "signal"        # another synchronous signal (SIGILL, SIGFPE, SIGTRAP, SIGSYS)
    INTERRUPT = "interrupt"  # stopped because interrupt() asked (gVisor: ErrContextInterrupt)
    EXIT = "exit"            # the context died on the host; it never runs again


class Access(enum.IntFlag):
    """The access a fault was for (gVisor: hostarch.AccessType)."""

    NONE = 0
    READ = 1
    WRITE = 2
    EXEC = 4


@dataclass(frozen=True, slots=True)
class StopReason:
    """One stop of a context.  Registers are in the task's `Registers` already."""

    kind: StopKind
    signo: int = 0            # FAULT / SIGNAL: the signal; EXIT: the host wait status
    address: int = 0          # FAULT: the faulting address (si_addr)
    access: Access = Access.NONE   # FAULT: what was attempted, where the host says
    info: bytes = b""         # FAULT / SIGNAL: the raw 128-byte Linux siginfo
    # SYSCALL: the platform knows a 64-bit `syscall` made it (systrap: the seccomp trap's
    # arch, or a patched site), so the kernel need not read the instruction bytes (which
    # a patched site no longer has).
    checked: bool = False


class Context(Protocol):
    """One application thread's way into application code."""

    @property
    def space(self) -> AddressSpace:
        """The address space it runs in."""
        ...

    @property
    def running(self) -> bool:
        """Whether it was switched in and has not stopped since."""
        ...

    @property
    def exited(self) -> bool:
        """Whether it is gone for good (released, or died on the host)."""
        ...


class AddressSpace(Protocol):
    """One application address space.  mm's VMA list is the truth; this follows it.

    Preconditions for every host operation: no context of this address space is
    running application code that the operation could race with (the caller is
    a syscall of this address space, whose context is stopped)."""

    def map_anonymous(self, addr: int, length: int, prot: int, shared: bool) -> None:
        """Fresh zeroed memory at [addr, addr+length), replacing what was there."""
        ...

    def map_file(self, addr: int, length: int, prot: int, shared: bool,
                 mem_offset: int) -> None:
        """[mem_offset, mem_offset+length) of the memory file at `addr`: MAP_SHARED
        (writes reach the file) or MAP_PRIVATE (copy-on-write)."""
        ...

    def unmap(self, addr: int, length: int) -> None: ...

    def protect(self, addr: int, length: int, prot: int) -> None: ...

    def remap(self, old: int, old_size: int, new_size: int, new_addr: int | None) -> None:
        """Moves or resizes anonymous memory (host mremap); None: resize in place."""
        ...

    def discard(self, addr: int, length: int) -> None:
        """MADV_DONTNEED: private pages read back as zero (or the file's contents)."""
        ...

    def cpu_times(self) -> tuple[int, int]:
        """(user ns, user+system ns) the host has spent running this address space's
        application code so far (kernel/cputime.py); the last value once it is gone."""
        ...

    def set_wipe_on_fork(self, addr: int, length: int, wipe: bool) -> None:
        """MADV_WIPEONFORK (or KEEPONFORK): a fork's copy of these private anonymous
        pages starts zero-filled."""
        ...

    def read(self, addr: int, n: int) -> bytes:
        """Up to `n` bytes at `addr`; fewer if a fault ends the range early."""
        ...

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> int:
        """Writes `data` at `addr`; returns the count written (short at a fault)."""
        ...

    def write_from(self, addr: int, local_addr: int, n: int) -> int:
        """Writes `n` bytes from a Sentry-local buffer address (the memory file's
        mapping in the Sentry); returns the count written."""
        ...

    def fork(self) -> AddressSpace:
        """A copy-on-write copy (fork(2))."""
        ...

    def release(self) -> None:
        """The last user is gone: free the host side."""
        ...


class Platform(Protocol):
    """Runs application code.  gVisor: platform.Platform."""

    name: str                 # "ptrace", "fake", ...

    def new_address_space(self) -> AddressSpace:
        """An empty address space."""
        ...

    def new_context(self, space: AddressSpace) -> Context:
        """A stopped context in `space`, ready to be switched to."""
        ...

    def release_context(self, ctx: Context) -> None:
        """Ends a context (its thread exited, or exec left its address space)."""
        ...

    def initial_registers(self) -> Registers:
        """A register set a fresh task can start from (valid selectors and flags)."""
        ...

    def set_host_name(self, ctx: Context, addr: int) -> None:
        """Names the host side of `ctx` (its stub's comm, for the host's ps) after the
        NUL-terminated string at `addr` in its address space (PR_SET_NAME)."""
        ...

    def switch(self, ctx: Context, regs: Registers) -> None:
        """Runs `ctx` in application code from `regs` until it stops; the stop is
        reported by stops(), with `regs` then holding the stop-time registers.
        Nothing for a context that has died (its EXIT stop is on its way).
        Preconditions: `ctx` is stopped and `regs` is not touched until its stop."""
        ...

    def interrupt(self, ctx: Context) -> None:
        """Makes a running `ctx` stop soon (an INTERRUPT stop, unless it stops for
        another reason first).  Linux analogue: kick_process."""
        ...

    def event_fd(self) -> int:
        """A host fd that is readable when stops() may have something."""
        ...

    def stops_ready(self) -> bool:
        """Whether stops() has something now without waiting for event_fd()."""
        ...

    def stops(self) -> Iterator[tuple[Context, StopReason]]:
        """Every stop that has happened, without blocking.  Stops of contexts the
        kernel released are dropped here."""
        ...

    def get_fpstate(self, ctx: Context) -> bytes:
        """The context's FP/extended state (arch/fpu.py: REGSET_SIZE bytes of XSAVE
        image, or the fxsave image without XSAVE).  Preconditions: stopped."""
        ...

    def set_fpstate(self, ctx: Context, data: bytes) -> bool:
        """Loads a state image; False if the CPU refuses it as invalid."""
        ...

    def shutdown(self) -> None:
        """Kills every context and address space."""
        ...


PLATFORMS = ("ptrace", "systrap")   # what --platform accepts (gVisor's names)
PLANNED: tuple[str, ...] = ()       # gVisor's names of platforms pyvisor does not have yet
