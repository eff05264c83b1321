"""The systrap platform: application threads stop through a signal handler in the
stub and shared memory, with no ptrace stop on the syscall path.

gVisor: pkg/sentry/platform/systrap (subprocess.go, sysmsg).  The stub and its
handler are described in systrap/stub.py, the region an application thread stops
through in systrap/region.py; syscall-site patching is systrap/patching.py (the
Sentry's side) and systrap/trampolines.py (the stub's).

Process model: as on ptrace (platform/ptrace/subprocess.py), every address space
is one host stub process cloned by injection, and that process's first thread
(its *syscall thread*) stays ptraced for life: the Sentry injects mmap, munmap,
mprotect, clone, ... through it exactly as on ptrace, and sees the process die
through it (waitpid).  Application threads (contexts) are further host threads:

* made by an injected clone(CLONE_VM|CLONE_THREAD|CLONE_CHILD_CLEARTID|CLONE_UNTRACED)
  in the syscall thread, at the stub's clone site (stub.CLONE_ENTRY), so it is never
  traced; it runs its set-up at once: maps its *region* (region.py) of the regions
  memfd MAP_SHARED|MADV_DONTFORK at its fixed address (in that one process only)
  when the region is new to the process, sigaltstack in the region (SS_AUTODISARM,
  so every frame lands at the same place), then the application filter
  (stub.app_filter); its first syscall traps into the handler, which reports
  STOPPED; from then on `switch` is: write the registers into the region, state =
  RUN, FUTEX_WAKE (the handler copies them into the ucontext the host kernel left
  in the region; a trampoline stop (syscall-site patching, README) restores them
  itself).

The Sentry's event fd is an epoll set of the wake eventfd (every handler writes
it) and the SIGCHLD signalfd (a stub process died; an injected clone).  `stops`
reads the state word of every *running* context; a STOPPED one is decoded from
one copy of its frame.  Everything read from a region is application-writable
(SECURITY.md, *systrap*): a malformed frame kills that stub process (the
application's own threads), never the Sentry.

Concurrency: Sentry loop only, as ptrace.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import select
import signal as host_signal
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pyvisor.abi.linux import ptrace as P
from pyvisor.abi.linux.sysno_amd64 import Sysno
from pyvisor.sentry.arch import fpu
from pyvisor.sentry.arch.registers import Registers
from pyvisor.sentry.arch.signal import SIGCONTEXT, UC_HEAD
from pyvisor.sentry.platform.platform import MAX_USER_ADDRESS, Access, StopKind, StopReason
from pyvisor.sentry.platform.ptrace import binding as B
from pyvisor.sentry.platform.ptrace.subprocess import (WALL, PtracePlatform, StubError,
                                                       StubProcess, StubThread)
from pyvisor.sentry.platform.systrap import region as R
from pyvisor.sentry.platform.systrap import stub as S
from pyvisor.sentry.platform.systrap import trampolines as T
from pyvisor.sentry.platform.systrap.patching import PATCHING, Patcher, SitePatches
from pyvisor.sentry.platform.systrap.placement import ThreadPlacement

_SS_AUTODISARM = 1 << 31
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_SYS_SECCOMP = 1                  # si_code of a seccomp trap
_FRAME_HEAD = 8 + UC_HEAD.size + SIGCONTEXT.size + 8 + 128   # pretcode .. siginfo: 440
_SC_OFF = 8 + UC_HEAD.size        # sigcontext within the frame
_MASK_OFF = _SC_OFF + SIGCONTEXT.size
_INFO_OFF = _MASK_OFF + 8
_SC_FPSTATE = 184                 # sigcontext.fpstate
_INFO = R.FRAME_OFF + _INFO_OFF   # the siginfo within a region
_SC_ERR = R.FRAME_OFF + _SC_OFF + 152   # sigcontext.err, .trapno within a region
_ERR_TRAPNO = struct.Struct("<QQ")
# signo, errno, code, call address, (syscall), arch: a seccomp trap's siginfo.
_SIGSYS_INFO = struct.Struct("<iii4xQ4xI")
_NEG_ENOSYS = (-38) & 0xFFFFFFFFFFFFFFFF
_memmove = ctypes.memmove
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_VSYSCALL_PAGE = 0xFFFFFFFFFF600000
_TRAPNO_PF = 14
_PF_WRITE, _PF_INSTR = 0x2, 0x10
_ENOSYS = 38
_M64 = 0xFFFFFFFFFFFFFFFF
# A context asked to stop that has not stopped after this long has made itself
# unstoppable (it blocked the interrupt signal with a forged sigreturn frame, or
# moved its altstack): its stub process is killed.
INTERRUPT_GRACE_NS = 5_000_000_000
# How long the Sentry polls the state words after a switch before it sleeps (stops_ready).
SPIN_NS = int(os.environ.get("PYVISOR_SYSTRAP_SENTRY_SPIN_NS", "30000"))
# How many times (a `pause` apart, ~17 ns here) a stopped thread's handler looks at its
# state word before it sleeps on it, when the Sentry may run on another CPU: long enough
# to cover the Sentry serving a simple syscall, so the thread needs no wake-up.
HANDLER_SPIN = int(os.environ.get("PYVISOR_SYSTRAP_HANDLER_SPIN", "3000"))
_AUDIT_ARCH_X86_64 = 0xC000003E
_TF = 0x100                       # eflags.TF: single-stepping needs the full restore
_USER_CS, _USER_SS = 0x33, 0x2B

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_long,
                     ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]


# FUTEX_WAKE needs three arguments: a call that converts only those (switch's hot path).
_futex_wake = _libc["syscall"]
_futex_wake.restype = ctypes.c_long
_futex_wake.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_long]
_NR_FUTEX = int(Sysno.futex)
_sched_getcpu = _libc.sched_getcpu                 # the host's vDSO: no syscall
_OFF_REGS, _REGS_SIZE = R.OFF_REGS, R.REGS_SIZE
_RUN, _STOPPED = R.STATE_RUN, R.STATE_STOPPED
_RESCANS = 64
_OFF_KIND, _KIND_FAST = R.OFF_KIND, R.KIND_FAST


class Timers(Protocol):
    """What the platform needs of the Kernel: its loop's timers (the interrupt watchdog)."""

    def now(self) -> int: ...

    def add_timer(self, deadline: int, callback: Callable[[], None]) -> object: ...


_FRAME, _FP = R.FRAME_OFF, R.FP_OFF   # the frame and its XSAVE image, within a region


@dataclass(eq=False, slots=True)
class AppThread:
    """One application thread: an untraced host thread of a stub process (Context)."""

    tid: int
    process: SysProcess
    slot: int                       # its region
    running: bool = False
    exited: bool = False
    released: bool = False          # the kernel let go while it ran: exit at its stop
    regs: Registers | None = None   # the task's registers, from its last switch
    regs_addr: int = 0              # ctypes.addressof(regs)
    spin: int = 0                   # what its region's spin word says (the handler's spin)
    interrupted_at: int = 0         # monotonic ns of the first unanswered interrupt
    fast: bool = False              # stopped in a trampoline (KIND_FAST), not the handler
    fp_pending: bytes | None = None  # an FP frame image set_fpstate left for the resume
    # CPU placement (systrap/placement.py): bound to the Sentry's CPU (`cpu`), its quick
    # round trips in a row, when it last resumed and stopped (while bound).
    bound: bool = False
    cpu: int = -1
    quick: int = 0
    resumed_at: int = 0
    stopped_at: int = 0

    @property
    def space(self) -> SysProcess:
        return self.process

    off: int = 0                    # the region's offset in the regions memfd (and in the
                                    # Sentry's mapping): slot * REGION_SIZE
    addr: int = 0                   # the region's address in the stub

    def __post_init__(self) -> None:
        self.off = self.slot * R.REGION_SIZE
        self.addr = R.REGIONS_START + self.off


@dataclass(eq=False, slots=True)
class SysProcess(StubProcess):
    """A stub process (AddressSpace): its ptraced syscall thread in `threads`, its
    application threads in `apps`."""

    apps: set[AppThread] = field(default_factory=set)
    owned: list[int] = field(default_factory=list)      # regions mapped in this process
    free: list[int] = field(default_factory=list)       # ... whose thread is gone
    draining: list[int] = field(default_factory=list)   # ... whose thread was told to exit
    bound_cpu: int = -1             # the CPU its syscall thread is bound to (-1: any)
    patches: SitePatches = field(default_factory=SitePatches)    # (patching.py)

    def map_anonymous(self, addr: int, length: int, prot: int, shared: bool) -> None:
        if shared:
            self.patches.add_shared(addr, addr + length)
        StubProcess.map_anonymous(self, addr, length, prot, shared)

    def map_file(self, addr: int, length: int, prot: int, shared: bool,
                 mem_offset: int) -> None:
        if shared:
            self.patches.add_shared(addr, addr + length)
        StubProcess.map_file(self, addr, length, prot, shared, mem_offset)

    # The trampoline table is cut out of what reaches the host (SitePatches.pieces).
    def unmap(self, addr: int, length: int) -> None:
        for a, n in self.patches.pieces(addr, length):
            StubProcess.unmap(self, a, n)

    def protect(self, addr: int, length: int, prot: int) -> None:
        for a, n in self.patches.pieces(addr, length):
            StubProcess.protect(self, a, n, prot)

    def discard(self, addr: int, length: int) -> None:
        for a, n in self.patches.pieces(addr, length):
            StubProcess.discard(self, a, n)

    def set_wipe_on_fork(self, addr: int, length: int, wipe: bool) -> None:
        for a, n in self.patches.pieces(addr, length):
            StubProcess.set_wipe_on_fork(self, a, n, wipe)

    def remap(self, old: int, old_size: int, new_size: int, new_addr: int | None) -> None:
        self.patches.remap_shared(old, old_size, new_size, new_addr)
        StubProcess.remap(self, old, old_size, new_size, new_addr)
        if new_addr is not None and new_addr != old and self.patches.sites:
            self.patches.move_sites(self.pid, old, min(old_size, new_size), new_addr)


class SystrapPlatform(PtracePlatform):
    """gVisor: systrap.Systrap.  Injection and stub processes as ptrace; contexts as above."""

    name = "systrap"
    _syscall_addr = S.SYSCALL_ADDR
    _after_int3 = S.AFTER_INT3
    _stub_keeps_stdio = False      # the stub holds only the memory file, regions, eventfd

    def __init__(self, memfd: int) -> None:
        self.table_off = R.MAX_REGIONS * R.REGION_SIZE    # the table's page after them
        size = self.table_off + T.TABLE_SIZE
        self.regions_fd = os.memfd_create("pyvisor-regions", os.MFD_CLOEXEC)
        os.ftruncate(self.regions_fd, size)
        self.mem = mmap.mmap(self.regions_fd, size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self.mem[self.table_off:self.table_off + len(S.TABLE_SLOTS)] = S.TABLE_SLOTS
        # What patching did, whole sandbox: sites patched, stops through a trampoline,
        # resumes that needed the handler (ESCALATE), site + 5 resumes (restarts), gs
        # fallbacks.  $PYVISOR_SYSTRAP_STATS=1 prints them at shutdown.
        self.stats = {"patched": 0, "fast": 0, "escalated": 0, "restarted": 0,
                      "fallback": 0}
        self.patcher = Patcher(PATCHING, self.table_off, self.stats)
        self.mem_addr = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        self.free_regions = list(range(R.MAX_REGIONS - 1, -1, -1))
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.running: set[AppThread] = set()
        self.pending: list[tuple[AppThread, StopReason]] = []
        self.timers: Timers | None = None     # set by boot: the interrupt watchdog
        self._watchdog_armed = False
        self.mxcsr_mask = 0xFFBF
        # The Sentry's spin after a switch (stops_ready), 0 when it shares one CPU with
        # every stub thread (then a spin only delays the thread it waits for).
        try:
            cpus = len(os.sched_getaffinity(0))
        except OSError:
            cpus = 1
        self.spin_ns = SPIN_NS if cpus > 1 else 0
        self.handler_spin = HANDLER_SPIN if cpus > 1 else 0
        self._spin_armed = False
        self._stop_seen = False
        self._spin_ok = 8 if self.spin_ns else 0    # recent spins found a stop (adaptive)
        self._switches = 0
        self._calls = 0
        # Injection is a ptrace round trip with a stub's syscall thread: ~15 µs when it
        # runs on the Sentry's CPU, several times that as a wake-up on another CPU each
        # way (a fork makes about ten).  So a syscall thread is bound to the CPU the
        # Sentry is on when it injects (rebound if the Sentry moved: one sched_getcpu
        # through the vDSO per injection), and so is the master stub's (an exec clones
        # it); an application thread, cloned from it, starts there: placement
        # (systrap/placement.py) keeps it there for its first round trips, or, without
        # placement, it is let go to every CPU of the sandbox once it is set up.
        self._all_cpus = os.sched_getaffinity(0) if cpus > 1 else set()
        self._master_cpu = -1           # the CPU the master's syscall thread is bound to
        # Where application threads run (systrap/placement.py; set by boot,
        # runtime/boot.py): without it each is freed to every CPU once set up.
        self.app_placement: ThreadPlacement | None = None
        super().__init__(memfd)
        self._ep = select.epoll()
        self._ep.register(self.wake_fd, select.EPOLLIN)
        self._ep.register(self._sigfd, select.EPOLLIN)

    def _colocate(self, th: StubThread) -> None:
        """Binds `th`'s process's syscall thread to the Sentry's CPU (see __init__); the
        master stub's too (an exec's new address space is cloned from it)."""
        proc = th.process
        cpu = _sched_getcpu()
        bound = proc.bound_cpu if isinstance(proc, SysProcess) else self._master_cpu
        if bound == cpu or proc.dead:
            return
        try:
            os.sched_setaffinity(proc.pid, {cpu})
        except OSError:
            return
        if isinstance(proc, SysProcess):
            proc.bound_cpu = cpu
        else:
            self._master_cpu = cpu

    def inject(self, th: StubThread, nr: int, a0: int = 0, a1: int = 0, a2: int = 0,
               a3: int = 0, a4: int = 0, a5: int = 0) -> int:
        if self._all_cpus:
            self._colocate(th)
        return super().inject(th, nr, a0, a1, a2, a3, a4, a5)

    def _clone_and_collect(self, th: StubThread, flags: int, ctid: int = 0) -> int:
        if self._all_cpus:
            self._colocate(th)
        return super()._clone_and_collect(th, flags, ctid)

    def _new_stub_memfd(self) -> int:
        return S.stub_memfd()

    def _stub_fds(self) -> list[int]:
        return [self.regions_fd, self.wake_fd]          # at REGION_FD, WAKE_FD

    # -- address spaces ---------------------------------------------------------------

    def fork_process(self, th: StubThread) -> SysProcess:
        """A new stub process (copy-on-write copy of `th`'s; regions are not copied:
        MADV_DONTFORK).  It has only its syscall thread; contexts come by new_context."""
        pid = self._clone_and_collect(th, S.CLONE_PROCESS)
        proc = SysProcess(pid, self)
        parent = th.process
        # Its affinity is the parent's.
        proc.bound_cpu = (parent.bound_cpu if isinstance(parent, SysProcess)
                          else self._master_cpu)
        if isinstance(parent, SysProcess) and parent is not self.master:
            proc.patches = parent.patches.copy()
        self.processes[pid] = proc
        proc.threads.add(StubThread(pid, proc))
        return proc

    def new_process(self) -> SysProcess:
        return self.fork_process(next(iter(self.master.threads)))

    def new_address_space(self) -> SysProcess:
        return self.new_process()

    def set_host_name(self, ctx: AppThread, addr: int) -> None:  # type: ignore[override]
        proc = ctx.process
        if proc.dead:
            return
        self.inject(proc.any_thread(), Sysno.prctl, 15, addr)     # PR_SET_NAME

    # -- contexts ---------------------------------------------------------------------

    def _region(self, proc: SysProcess) -> tuple[int, bool]:
        """A region for a new thread of `proc`: one of its own whose thread is gone,
        or a fresh one (True: to be mapped)."""
        still = []
        for slot in proc.draining:
            if _U32.unpack_from(self.mem, slot * R.REGION_SIZE + R.OFF_TID)[0] == 0:
                proc.free.append(slot)
            else:
                still.append(slot)
        proc.draining = still
        if proc.free:
            return proc.free.pop(), False
        if not self.free_regions:
            # clone(2) says EAGAIN, as for any other want of a host resource.
            raise OSError(errno.EAGAIN, "out of systrap regions (application threads)")
        slot = self.free_regions.pop()
        proc.owned.append(slot)
        return slot, True

    def new_context(self, space: SysProcess) -> AppThread:  # type: ignore[override]
        """A new application thread in `space`, stopped in the handler."""
        proc = space
        slot, fresh = self._region(proc)
        addr = R.REGIONS_START + slot * R.REGION_SIZE
        off = slot * R.REGION_SIZE
        self.mem[off:off + R.OFF_REGS + R.REGS_SIZE] = bytes(R.OFF_REGS + R.REGS_SIZE)
        struct.pack_into("<QiiQ", self.mem, off + R.OFF_STACK, addr + R.ALTSTACK,
                         _SS_AUTODISARM - (1 << 32), 0, R.REGION_SIZE - R.ALTSTACK)
        try:
            # A region new to the process is mapped by the thread itself (stub.py).
            tid = self._clone_thread(proc.any_thread(), addr + R.OFF_STACK, addr + R.OFF_TID,
                                     addr if fresh else 0, off)
        except OSError:
            proc.free.append(slot)
            raise                     # the host refused the thread (EAGAIN): clone fails
        except StubError:
            proc.kill()
            raise
        _U32.pack_into(self.mem, off + R.OFF_TID, tid)
        ctx = AppThread(tid, proc, slot)
        proc.apps.add(ctx)
        self._await_first_stop(ctx)
        # Cloned bound to the Sentry's CPU (see __init__): placement keeps it there for
        # its first round trips; without placement it is freed now.
        placement = self.app_placement
        if (self._all_cpus and proc.bound_cpu >= 0
                and (placement is None or not placement.created(ctx))):
            try:
                os.sched_setaffinity(tid, self._all_cpus)
            except OSError:
                pass
        self.contexts[tid] = ctx      # type: ignore[assignment]
        return ctx

    def _clone_thread(self, th: StubThread, stack_t: int, ctid: int, region: int,
                      off: int) -> int:
        """A new application thread of `th`'s process, cloned (untraced) at CLONE_ENTRY:
        it runs its set-up at once; one stop of `th` (its int3) for the Sentry."""
        if self._all_cpus:
            self._colocate(th)
        r = self._scratch
        assert self._saved_template is not None
        ctypes.memmove(ctypes.addressof(r), ctypes.addressof(self._saved_template), B.REGS_SIZE)
        r.rip = S.CLONE_ENTRY
        r.rax = Sysno.clone
        r.orig_rax = _M64
        r.rdi = S.CLONE_APP_THREAD
        r.rsi = r.rdx = r.r8 = r.r9 = 0
        r.r10 = ctid
        r.r12 = stack_t
        r.r13 = region
        r.r14 = off
        try:
            B.set_regs(th.tid, r)
            B.resume(P.PTRACE_CONT, th.tid, 0)
            self._after_int3 = S.CLONE_INT3 + 1     # (_wait_int3's expected stop)
            try:
                self._wait_int3(th)
            finally:
                del self._after_int3
        except OSError as e:
            raise StubError(f"application thread clone in {th.tid} failed: {e}") from e
        res = r.rax
        if res >= (1 << 63):
            raise OSError(-(res - (1 << 64)), "clone of an application thread failed")
        return int(res)

    def _await_first_stop(self, ctx: AppThread) -> None:
        """Waits for the new thread's first trap; checks the frame is where expected."""
        off = ctx.off
        deadline = time.monotonic() + 30
        # The handler wakes no futex (it writes the eventfd, which the loop owns): wait
        # on the state word with short, growing timeouts (its set-up takes microseconds).
        ts = (ctypes.c_long * 2)(0, 20_000)
        while _U32.unpack_from(self.mem, off)[0] != R.STATE_STOPPED:
            if time.monotonic() > deadline or ctx.process.dead:
                ctx.process.kill()
                raise StubError(f"application thread {ctx.tid} did not reach its handler")
            _syscall(Sysno.futex, self.mem_addr + off, _FUTEX_WAIT, R.STATE_NEW,
                     ctypes.addressof(ts), None, 0)
            ts[1] = min(ts[1] * 2, 10_000_000)
        # The first stop must be the set-up's mmap trapped at the injection point: only
        # the application filter traps it there, so the filter is in place.
        signo, _, code = struct.unpack_from("<iii", self.mem, off + _FRAME + _INFO_OFF)
        nr = _U32.unpack_from(self.mem, off + _FRAME + _INFO_OFF + 24)[0]
        if (signo, code, nr) != (S.SIGSYS, _SYS_SECCOMP, Sysno.mmap):
            ctx.process.kill()
            raise StubError(f"application thread {ctx.tid} set-up failed: first stop "
                            f"signal {signo} code {code} nr {nr}")
        uc = _U64.unpack_from(self.mem, off + R.OFF_UC)[0]
        fp = _U64.unpack_from(self.mem, off + _FRAME + _SC_OFF + _SC_FPSTATE)[0]
        if uc != ctx.addr + _FRAME + 8 or fp != ctx.addr + _FP:
            ctx.process.kill()
            raise StubError(f"systrap frame layout: uc {uc:#x} fp {fp:#x}, expected "
                            f"{ctx.addr + _FRAME + 8:#x} {ctx.addr + _FP:#x}")
        mask = _U32.unpack_from(self.mem, off + _FP + 28)[0]
        if mask:
            self.mxcsr_mask = mask

    def release_context(self, ctx: AppThread) -> None:  # type: ignore[override]
        self.contexts.pop(ctx.tid, None)
        if ctx.bound:
            placement = self.app_placement
            assert placement is not None
            placement.forget(ctx)
        proc = ctx.process
        proc.apps.discard(ctx)
        if ctx.exited or proc.dead:
            return
        if not proc.apps:
            proc.kill()               # its last application thread: the process goes
            return
        if ctx.running:
            ctx.released = True       # it exits at its stop (interrupt asks for one)
            self.interrupt(ctx)
            return
        self._exit_thread(ctx)

    def _exit_thread(self, ctx: AppThread) -> None:
        ctx.exited = True
        self.running.discard(ctx)
        off = ctx.off
        _U32.pack_into(self.mem, off, R.STATE_EXIT)
        _syscall(Sysno.futex, self.mem_addr + off, _FUTEX_WAKE, 1, None, None, 0)
        ctx.process.draining.append(ctx.slot)

    def switch(self, ctx: AppThread, regs: Registers) -> None:  # type: ignore[override]
        """The registers into the region, state RUN, FUTEX_WAKE: the handler copies them
        into the ucontext and returns through rt_sigreturn into them."""
        if ctx.exited or ctx.process.dead:
            return
        if ctx.regs is not regs:
            ctx.regs = regs
            ctx.regs_addr = ctypes.addressof(regs)
        if ctx.bound:                   # (only placement binds a thread)
            placement = self.app_placement
            assert placement is not None
            placement.resumed(ctx)      # (may free it)
        off = ctx.off
        addr = self.mem_addr + off
        _memmove(addr + _OFF_REGS, ctx.regs_addr, _REGS_SIZE)
        state = _RUN
        if ctx.fast:
            # The trampoline's way back restores the general registers, rsp, rip, eflags
            # and fs base, nothing else: anything more goes through the handler.
            ctx.fast = False
            if (ctx.fp_pending is not None or regs.eflags & _TF or regs.gs_base
                    or regs.cs != _USER_CS or regs.ss != _USER_SS):
                state = R.STATE_ESCALATE
                self.stats["escalated"] += 1
        if self.spin_ns:
            # Spinning pays only while both sides find a CPU free: adaptive (stops_ready);
            # never with a thread bound to the Sentry's CPU.
            self._switches += 1
            spin = self.handler_spin if self._spin_ok and not ctx.bound else 0
            if ctx.spin != spin:
                ctx.spin = spin
                _U32.pack_into(self.mem, ctx.off + R.OFF_SPIN, spin)
            self._spin_armed = (self._spin_ok > 0 or not self._switches & 127) and not ctx.bound
        self.mem[off] = state
        ctx.running = True
        self.running.add(ctx)
        _futex_wake(_NR_FUTEX, addr, _FUTEX_WAKE, 1)

    def interrupt(self, ctx: AppThread) -> None:  # type: ignore[override]
        """SIG_INTERRUPT to the running thread; its stop is reported as INTERRUPT."""
        if not ctx.running or ctx.exited:
            return
        try:
            B.tgkill(ctx.process.pid, ctx.tid, S.SIG_INTERRUPT)
        except OSError:
            # The host thread is gone (it ran exit through the handler): report it.
            self._gone(ctx)
            return
        if not ctx.interrupted_at:
            ctx.interrupted_at = time.monotonic_ns()
            self._arm_watchdog()

    def _gone(self, ctx: AppThread) -> None:
        ctx.running = False
        ctx.exited = True
        self.running.discard(ctx)
        self.contexts.pop(ctx.tid, None)
        self.pending.append((ctx, StopReason(StopKind.EXIT, signo=host_signal.SIGKILL)))
        os.eventfd_write(self.wake_fd, 1)

    def _arm_watchdog(self) -> None:
        if self._watchdog_armed or self.timers is None:
            return
        self._watchdog_armed = True
        self.timers.add_timer(self.timers.now() + INTERRUPT_GRACE_NS, self._watchdog)

    def _watchdog(self) -> None:
        """Kills the stub process of a context that ignores interrupts."""
        self._watchdog_armed = False
        now = time.monotonic_ns()
        waiting = False
        for ctx in list(self.running):
            if not ctx.interrupted_at:
                continue
            if now - ctx.interrupted_at >= INTERRUPT_GRACE_NS:
                ctx.process.kill()     # its death comes through the syscall thread
            else:
                waiting = True
        if waiting:
            self._arm_watchdog()

    # -- stops ------------------------------------------------------------------------

    def event_fd(self) -> int:
        return self._ep.fileno()

    def stops_ready(self) -> bool:
        """Pending stops; else, after a switch and when the Sentry may run on another
        CPU than its threads, a short spin on the running contexts' state words: a
        thread that makes syscalls stops again within microseconds, and noticing that
        here saves the Sentry a sleep and a cross-CPU wake-up (60-120 µs on these VMs,
        README *Platforms*).  Never while pinned to one CPU (it would only delay the
        thread it waits for)."""
        if self.pending or self._stop_seen:
            return True
        if not self._spin_armed:
            return False
        self._spin_armed = False
        mem = self.mem
        running = self.running
        deadline = time.perf_counter_ns() + self.spin_ns
        while running:
            for ctx in running:
                if mem[ctx.off] == R.STATE_STOPPED:
                    self._stop_seen = True      # until stops() runs
                    self._spin_ok = min(self._spin_ok + 1, 8)
                    return True
            if time.perf_counter_ns() > deadline:
                break
        # A miss: the thread computes, or the CPUs are busy; four in a row stop the
        # spinning (the Sentry's and the handlers') until a probe succeeds again.
        self._spin_ok = max(self._spin_ok - 2, 0)
        return False

    def stops(self) -> Iterator[tuple[AppThread, StopReason]]:  # type: ignore[override]
        self._stop_seen = False
        # The wake eventfd first; the SIGCHLD signalfd only when the eventfd had nothing
        # (the epoll set is level-triggered: a pending death makes the loop call again),
        # so a syscall stop costs the Sentry one read.
        self._calls += 1
        try:
            os.read(self.wake_fd, 8)
            woken = True
        except OSError:
            woken = False
        if not self._calls & 15 and self.app_placement is not None:
            pin = self.app_placement.sentry
            if pin is not None and not pin.check_armed:
                pin.stubs_running()     # (the pinned Sentry's escape: its check, while
                                        # stubs stop and run)
        if not woken or not self._calls & 63:     # (and now and then: no starvation)
            try:
                os.read(self._sigfd, 1024)
            except OSError:
                pass
            else:
                yield from self._deaths()
        while self.pending:
            yield self.pending.pop(0)
        mem = self.mem
        running = self.running
        # Serving a stop switches its context back in, and a thread that makes syscalls
        # stops again within microseconds (at once when it shares the Sentry's CPU: the
        # wake-up preempts the Sentry): look again before going back to the loop, as
        # ptrace's waitpid loop does, a bounded number of times.
        for _ in range(_RESCANS):
            found = False
            for ctx in list(running):
                if mem[ctx.off] != _STOPPED:
                    continue
                found = True
                ctx.running = False
                ctx.interrupted_at = 0
                running.discard(ctx)
                if ctx.bound:
                    placement = self.app_placement
                    assert placement is not None
                    placement.stopped(ctx)
                if ctx.released:
                    self._exit_thread(ctx)
                    continue
                why = self._decode(ctx)
                if why is not None:
                    yield ctx, why
            if not found:
                break

    def _deaths(self) -> Iterator[tuple[AppThread, StopReason]]:
        """Wait statuses of stub processes: a death is an EXIT of each of its contexts."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG | WALL)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if os.WIFSTOPPED(status):
                continue        # a stray stop of a syscall thread: left stopped
            proc = self.processes.pop(pid, None)
            if not isinstance(proc, SysProcess):
                continue
            proc.dead = True
            for slot in proc.owned:        # nothing maps them any more: reusable
                try:
                    _punch(self.regions_fd, slot * R.REGION_SIZE, R.REGION_SIZE)
                except OSError:
                    pass
                self.free_regions.append(slot)
            proc.owned.clear()
            for ctx in list(proc.apps):
                self.running.discard(ctx)
                if ctx.exited:
                    continue
                ctx.running = False
                ctx.exited = True
                if self.contexts.pop(ctx.tid, None) is not None:
                    yield ctx, StopReason(StopKind.EXIT, signo=status)

    def _decode(self, ctx: AppThread) -> StopReason | None:
        """One stop: the registers (one copy, in the Sentry's layout) into ctx.regs."""
        off = ctx.off
        regs = ctx.regs
        if regs is None:
            regs = ctx.regs = Registers()
            ctx.regs_addr = ctypes.addressof(regs)
        _memmove(ctx.regs_addr, self.mem_addr + off + _OFF_REGS, _REGS_SIZE)
        if ctx.fp_pending is not None and not self.mem[off + R.OFF_PEND]:
            ctx.fp_pending = None              # the handler loaded it
        if self.mem[off + _OFF_KIND] == _KIND_FAST:
            # A patched site's trampoline: rax holds the number, rip and rcx the return
            # address (the site + 7), the FP state is at FASTFP.
            ctx.fast = True
            self.stats["fast"] += 1
            regs.orig_rax = regs.rax
            regs.rax = _NEG_ENOSYS
            return _SYSCALL64
        ctx.fast = False
        regs.orig_rax = _M64
        mem = self.mem
        uc, = _U64.unpack_from(mem, off + R.OFF_UC)
        if uc != ctx.addr + R.FRAME_OFF + 8:
            # Not where the host kernel puts the frame: the application moved its
            # altstack or forged a stop.  Only its own process pays.
            ctx.process.kill()
            return None
        signo, _, code, call_addr, arch = _SIGSYS_INFO.unpack_from(mem, off + _INFO)
        if signo == S.SIGSYS and code == _SYS_SECCOMP:
            if call_addr & ~0xFFF == _VSYSCALL_PAGE:
                return StopReason(StopKind.SIGNAL, signo=signo,
                                  info=mem[off + _INFO:off + _INFO + 128])
            rip = regs.rip
            if rip == S.FALLBACK_END:
                self.patcher.fallback(ctx, regs)
            elif rip < MAX_USER_ADDRESS and self.patcher.enabled:
                self.patcher.try_patch(ctx, regs)
            regs.orig_rax = regs.rax           # the host rolled rax back to the number
            regs.rax = _NEG_ENOSYS
            # si_arch: the trap came from a 64-bit `syscall` (int 0x80 and sysenter say
            # i386: the kernel then refuses them); one in the stub's code (not the
            # application's: its handler's sites) is left to the kernel's check, which
            # refuses it.
            if regs.rip < MAX_USER_ADDRESS and arch == _AUDIT_ARCH_X86_64:
                return _SYSCALL64
            return _SYSCALL
        info = mem[off + _INFO:off + _INFO + 128]
        if (signo == S.SIGSEGV and regs.rip in ctx.process.patches.mids
                and self.patcher.at_site(ctx, regs)):
            regs.orig_rax = regs.rax           # resumed at a patched site + 5: its syscall
            regs.rax = _NEG_ENOSYS
            return _SYSCALL64
        if signo in (S.SIGSEGV, S.SIGBUS):
            err, trapno = _ERR_TRAPNO.unpack_from(self.mem, off + _SC_ERR)
            access = Access.READ
            if trapno == _TRAPNO_PF:
                if err & _PF_WRITE:
                    access = Access.WRITE
                elif err & _PF_INSTR:
                    access = Access.EXEC
            return StopReason(StopKind.FAULT, signo=signo,
                              address=_U64.unpack_from(info, 16)[0], access=access, info=info)
        if signo in (S.SIGILL, S.SIGFPE, S.SIGTRAP, S.SIGSYS):
            return StopReason(StopKind.SIGNAL, signo=signo, info=info)
        return StopReason(StopKind.INTERRUPT, signo=signo)

    # -- FP state: the XSAVE image in the frame -----------------------------------------

    def get_fpstate(self, ctx: AppThread) -> bytes:  # type: ignore[override]
        if ctx.fp_pending is not None:
            img = ctx.fp_pending
        else:
            o = ctx.off + (R.FASTFP_OFF if ctx.fast else _FP)
            img = self.mem[o:o + fpu.FRAME_BYTES]
        if not fpu.HAS_XSAVE:
            return img[:fpu.FXSAVE_SIZE]
        return img[:fpu.FRAME_SIZE] + bytes(fpu.REGSET_SIZE - fpu.FRAME_SIZE)

    def set_fpstate(self, ctx: AppThread, data: bytes) -> bool:  # type: ignore[override]
        """Checks what XRSTOR (the host's rt_sigreturn) would refuse, then leaves the
        frame image at PENDFP: the handler's resume copies it into the frame it returns
        through (a trampoline stop resumes through the handler then: ESCALATE)."""
        (mxcsr,) = _U32.unpack_from(data, fpu.MXCSR_OFFSET)
        if mxcsr & ~self.mxcsr_mask:
            return False
        if fpu.HAS_XSAVE and len(data) > fpu.XSAVE_HDR_OFFSET:
            bv, comp = struct.unpack_from("<QQ", data, fpu.XSAVE_HDR_OFFSET)
            if comp or bv & ~fpu.XCR0 or any(
                    data[fpu.XSAVE_HDR_OFFSET + 16:fpu.XSAVE_HDR_OFFSET + fpu.XSAVE_HDR_SIZE]):
                return False
        img = fpu.to_frame(data)
        o = ctx.off + R.PENDFP_OFF
        self.mem[o:o + len(img)] = img
        _U32.pack_into(self.mem, ctx.off + R.OFF_PEND, 1)
        ctx.fp_pending = bytes(img)
        return True

    def shutdown(self) -> None:
        if os.environ.get("PYVISOR_SYSTRAP_STATS") == "1":
            print(f"systrap: {self.stats}", file=sys.stderr)
            pl = self.app_placement
            if pl is not None:
                pin = pl.sentry
                print(f"systrap placement: {pl.frees} threads freed of {pl.created_n}"
                      + (f"; Sentry pinned {pin.sentry_pins}, freed {pin.sentry_frees}"
                         if pin is not None else ""), file=sys.stderr)
        self.running.clear()
        super().shutdown()


_SYSCALL = StopReason(StopKind.SYSCALL)
_SYSCALL64 = StopReason(StopKind.SYSCALL, checked=True)


def _punch(fd: int, off: int, length: int) -> None:
    """Frees a region's pages (fallocate PUNCH_HOLE|KEEP_SIZE)."""
    r = _libc.fallocate(fd, 0x3, ctypes.c_long(off), ctypes.c_long(length))
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

