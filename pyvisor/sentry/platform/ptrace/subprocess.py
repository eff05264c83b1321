"""Stub processes (address spaces) and stub threads, and syscall injection.

Linux analogue: none; gVisor: pkg/sentry/platform/ptrace/subprocess.go.

Process model: every stub process is a direct host child of the Sentry.  The
master stub is forked and exec'd once at start-up; every later stub process is
cloned from an existing one by an injected clone(CLONE_PARENT|SIGCHLD), so the
Sentry itself never forks again after start-up.  Stub threads (one per
application thread) are made by an injected clone(CLONE_VM|CLONE_THREAD|...).
PTRACE_O_EXITKILL ties every stub's life to the Sentry's.

It implements the platform seam (platform/platform.py): a StubProcess is an
AddressSpace, a StubThread a Context, and PtracePlatform decodes host wait
statuses into StopReasons and resumes stub threads with PTRACE_SYSEMU, so no
ptrace detail reaches the kernel, mm or the syscall handlers.

Concurrency: used only from the Sentry loop.  Injection is synchronous: it
waits for the injected thread alone (waitpid(tid)), so no loop iteration runs
in between and no other stop can be confused with it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal as host_signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pyvisor.abi.linux import ptrace as P
from pyvisor.abi.linux.mman import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED
from pyvisor.abi.linux.sysno_amd64 import Sysno
from pyvisor.sentry.arch import fpu
from pyvisor.sentry.arch.registers import Registers
from pyvisor.sentry.platform.platform import (MAX_USER_ADDRESS, Access, PlatformError,
                                              StopKind, StopReason)
from pyvisor.sentry.platform.ptrace import binding as B
from pyvisor.sentry.platform.ptrace.stub import AFTER_INT3, STUB_START, SYSCALL_ADDR, stub_memfd

WALL = 0x40000000
_SIGTRAP = host_signal.SIGTRAP
_SYSCALL_STOP = _SIGTRAP | 0x80

TRACE_OPTIONS = (P.PTRACE_O_TRACESYSGOOD | P.PTRACE_O_EXITKILL | P.PTRACE_O_TRACECLONE
                 | P.PTRACE_O_TRACEFORK | P.PTRACE_O_TRACEVFORK)

# The host fd number at which every stub holds the memory file.
STUB_MEMFD = 3

_CLONE_PARENT = 0x00008000
_CLONE_THREAD_FLAGS = 0x00000100 | 0x00000800 | 0x00010000  # VM | SIGHAND | THREAD


class StubError(PlatformError):
    """A stub died or misbehaved during an injection: an internal platform failure."""


@dataclass(eq=False, slots=True)
class StubProcess:
    """One host process: an application address space (platform.AddressSpace)."""

    pid: int
    platform: PtracePlatform
    threads: set[StubThread] = field(default_factory=set)
    dead: bool = False
    cpu: tuple[int, int] = (0, 0)    # host (user, user+system) ns, last read (cpu_times)
    # The process's first thread until new_context hands it out.
    spare: StubThread | None = None

    def any_thread(self) -> StubThread:
        """A stopped thread of this process, usable for injection."""
        for th in self.threads:
            if not th.running:
                return th
        raise StubError(f"no stopped thread in stub {self.pid}")

    def kill(self) -> None:
        """Kills the whole host process.  Reaping happens in the Sentry loop."""
        if not self.dead:
            from pyvisor.sentry.kernel.cputime import process_times
            process_times(self)     # its last CPU times, while the host still has them
            self.dead = True
            try:
                os.kill(self.pid, host_signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- platform.AddressSpace: host page tables follow mm through injection ----------

    def _host(self, nr: int, *args: int) -> int:
        r = self.platform.inject(self.any_thread(), nr, *args)
        if r < 0:
            raise OSError(-r, os.strerror(-r))
        return r

    def map_anonymous(self, addr: int, length: int, prot: int, shared: bool) -> None:
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS | MAP_FIXED
        self._host(Sysno.mmap, addr, length, prot, flags, -1, 0)

    def map_file(self, addr: int, length: int, prot: int, shared: bool,
                 mem_offset: int) -> None:
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_FIXED
        self._host(Sysno.mmap, addr, length, prot, flags, STUB_MEMFD, mem_offset)

    def unmap(self, addr: int, length: int) -> None:
        self._host(Sysno.munmap, addr, length)

    def protect(self, addr: int, length: int, prot: int) -> None:
        self._host(Sysno.mprotect, addr, length, prot)

    def remap(self, old: int, old_size: int, new_size: int, new_addr: int | None) -> None:
        if new_addr is None:
            self._host(Sysno.mremap, old, old_size, new_size, 0, 0)
        else:
            self._host(Sysno.mremap, old, old_size, new_size,
                       _MREMAP_MAYMOVE | _MREMAP_FIXED, new_addr)

    def discard(self, addr: int, length: int) -> None:
        self._host(Sysno.madvise, addr, length, _MADV_DONTNEED)

    def cpu_times(self) -> tuple[int, int]:
        # The host's CPU clocks of the stub's pid (CPUCLOCK_VIRT, CPUCLOCK_PROF), which
        # Linux lets any process read with clock_gettime.
        if not self.dead:
            try:
                user = time.clock_gettime_ns(((~self.pid) << 3) | _CPUCLOCK_VIRT)
                total = time.clock_gettime_ns(((~self.pid) << 3) | _CPUCLOCK_PROF)
                self.cpu = (user, max(total, user))
            except OSError:
                pass
        return self.cpu

    def set_wipe_on_fork(self, addr: int, length: int, wipe: bool) -> None:
        # The stub's host memory is what fork copies, so the host keeps the flag.
        self._host(Sysno.madvise, addr, length, _MADV_WIPEONFORK if wipe else _MADV_KEEPONFORK)

    def _io_pid(self) -> int:
        for th in self.threads:
            if not th.exited:
                return th.tid
        raise OSError(errno.EFAULT, "no live thread in the address space")

    def read(self, addr: int, n: int) -> bytes:
        return B.vm_read(self._io_pid(), addr, n)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> int:
        return B.vm_write(self._io_pid(), addr, data)

    def write_from(self, addr: int, local_addr: int, n: int) -> int:
        return B.vm_write_from(self._io_pid(), addr, local_addr, n)

    def fork(self) -> StubProcess:
        return self.platform.fork_process(self.any_thread())

    def release(self) -> None:
        self.kill()


@dataclass(eq=False, slots=True)
class StubThread:
    """One host thread of a stub process: runs one application thread (platform.Context)."""

    tid: int
    process: StubProcess
    running: bool = False    # resumed into application code (not stopped)

    @property
    def space(self) -> StubProcess:
        return self.process
    exited: bool = False
    regs: Registers | None = None   # the task's registers, from its last switch
    # CPU placement (platform/ptrace/placement.py; gVisor's ptrace thread.cpu): whether the
    # thread is bound to the Sentry's CPU, its recent short runs, when it last resumed.
    placed: bool = False
    bound: bool = False
    cpu: int = -1            # the CPU it is bound to
    short_runs: int = 0
    resumed_at: int = 0


class PlacementPolicy(Protocol):
    """Where stub threads run (platform/ptrace/placement.py): told of every resume and
    syscall stop."""

    def created(self, th: StubThread) -> None: ...

    def resumed(self, th: StubThread) -> None: ...

    def stopped(self, th: StubThread) -> None: ...


class PtracePlatform:
    """Creates stub processes and threads and injects host syscalls into them; runs
    application code under PTRACE_SYSEMU.  gVisor: ptrace.PTrace.

    Linux analogue: none (the host kernel is our MMU).
    """

    name = "ptrace"
    # The stub this platform runs (a subclass may bring its own: platform/systrap).
    _syscall_addr = SYSCALL_ADDR     # the injection point
    _after_int3 = AFTER_INT3         # rip at the int3 that ends an injection

    # Whether the stub keeps the Sentry's fds 0-2 (ptrace: unreachable, PTRACE_SYSEMU
    # stops every application syscall; its start-up error message goes there).
    _stub_keeps_stdio = True

    def _new_stub_memfd(self) -> int:
        return stub_memfd()

    def _stub_fds(self) -> list[int]:
        """Further fds the stub gets at 5, 6, ... (besides the memory file at 3)."""
        return []

    def __init__(self, memfd: int) -> None:
        self.memfd = memfd
        self._scratch = B.UserRegs()
        self._saved_template: B.UserRegs | None = None
        self.processes: dict[int, StubProcess] = {}   # every live stub process, by host pid
        self.contexts: dict[int, StubThread] = {}     # host tid -> thread handed out as a context
        self.placement: PlacementPolicy | None = None  # set by boot (runtime/boot.py)
        self.fpbuf = ctypes.create_string_buffer(max(fpu.REGSET_SIZE, B.FPREGS_SIZE))
        self.master = self._spawn_master()
        self.processes[self.master.pid] = self.master
        # Stops arrive as SIGCHLD, read through a signalfd the Sentry loop polls.
        host_signal.pthread_sigmask(host_signal.SIG_BLOCK, [host_signal.SIGCHLD])
        self._sigfd = _signalfd([host_signal.SIGCHLD])

    # -- start-up ---------------------------------------------------------------------

    def _spawn_master(self) -> StubProcess:
        """Forks and execs the master stub.  Runs before the Sentry is confined."""
        sfd = self._new_stub_memfd()
        extra = self._stub_fds()
        pid = os.fork()
        if pid == 0:  # child: becomes the stub
            try:
                os.setsid()                       # no terminal signals reach stubs
                B.prctl(B.PR_SET_PDEATHSIG, host_signal.SIGKILL)
                B.traceme()
                # Move every fd above the numbers they go to first (dup3 refuses
                # old == new), with F_DUPFD: fixed high numbers would exceed a low
                # RLIMIT_NOFILE (`ulimit -n 777` with no CAP_SYS_RESOURCE to raise it).
                above = 5 + len(extra)
                mem_hi = fcntl.fcntl(self.memfd, fcntl.F_DUPFD, above)
                stub_hi = fcntl.fcntl(sfd, fcntl.F_DUPFD, above)
                his = [fcntl.fcntl(fd, fcntl.F_DUPFD, above) for fd in extra]
                os.dup2(mem_hi, STUB_MEMFD, inheritable=True)
                os.dup2(stub_hi, 4, inheritable=False)
                for i, fd in enumerate(his):
                    os.dup2(fd, 5 + i, inheritable=True)
                os.closerange(5 + len(his), 65536)
                if not self._stub_keeps_stdio:
                    os.closerange(0, 3)
                host_signal.pthread_sigmask(host_signal.SIG_SETMASK, [])
                # Stubs hold no capabilities (root's exec would otherwise grant them all)
                # and few resources: they need only the memory file.
                from pyvisor.runtime.confine import drop_bounding_set
                drop_bounding_set()
                import resource
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                resource.setrlimit(resource.RLIMIT_NOFILE, (8, 8))
                try:    # stubs are what a memory limit's OOM kill should pick
                    with open("/proc/self/oom_score_adj", "w") as f:
                        f.write("0")
                except OSError:
                    pass
                os.execve(4, ["pyvisor-stub"], {})
            except BaseException as e:  # noqa: BLE001 - report and die; never return
                os.write(2, f"pyvisor: cannot start stub: {e}\n".encode())
            finally:
                os._exit(127)
        os.close(sfd)
        # First stop: the SIGTRAP that follows exec under PTRACE_TRACEME.
        _, status = os.waitpid(pid, WALL)
        if not os.WIFSTOPPED(status):
            raise StubError(f"stub failed to start: status {status:#x}")
        B.set_options(pid, TRACE_OPTIONS)
        B.resume(P.PTRACE_CONT, pid, 0)
        # Second stop: the stub's own int3 after cleaning its address space.
        _, status = os.waitpid(pid, WALL)
        if not (os.WIFSTOPPED(status) and os.WSTOPSIG(status) == _SIGTRAP):
            raise StubError(f"stub failed to become ready: status {status:#x}")
        B.get_regs(pid, self._scratch)
        if self._scratch.rip != self._syscall_addr:
            raise StubError(f"stub ready at unexpected rip {self._scratch.rip:#x}")
        if self._scratch.rax != 0:
            raise StubError(f"stub could not install its seccomp filter: "
                            f"{self._scratch.rax - (1 << 64)}")
        tmpl = B.UserRegs()
        ctypes.memmove(ctypes.addressof(tmpl), ctypes.addressof(self._scratch), B.REGS_SIZE)
        self._saved_template = tmpl
        proc = StubProcess(pid, self)
        proc.threads.add(StubThread(pid, proc))
        return proc

    def initial_regs(self) -> B.UserRegs:
        """A register set with valid segment selectors and flags, for a fresh task."""
        regs = B.UserRegs()
        assert self._saved_template is not None
        ctypes.memmove(ctypes.addressof(regs), ctypes.addressof(self._saved_template), B.REGS_SIZE)
        for name in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10",
                     "r11", "r12", "r13", "r14", "r15", "fs_base", "gs_base"):
            setattr(regs, name, 0)
        regs.eflags = 0x202
        return regs

    # -- injection --------------------------------------------------------------------

    def inject(self, th: StubThread, nr: int, a0: int = 0, a1: int = 0, a2: int = 0,
               a3: int = 0, a4: int = 0, a5: int = 0) -> int:
        """Runs host syscall `nr` in stub thread `th`; returns the raw (signed) result.

        Preconditions: `th` is stopped.  Clobbers its host registers: the caller
        restores application registers before resuming application code.
        """
        r = self._scratch
        assert self._saved_template is not None
        ctypes.memmove(ctypes.addressof(r), ctypes.addressof(self._saved_template), B.REGS_SIZE)
        r.rip = self._syscall_addr
        r.rax = nr
        r.orig_rax = 0xFFFFFFFFFFFFFFFF
        r.rdi = a0 & 0xFFFFFFFFFFFFFFFF
        r.rsi = a1 & 0xFFFFFFFFFFFFFFFF
        r.rdx = a2 & 0xFFFFFFFFFFFFFFFF
        r.r10 = a3 & 0xFFFFFFFFFFFFFFFF
        r.r8 = a4 & 0xFFFFFFFFFFFFFFFF
        r.r9 = a5 & 0xFFFFFFFFFFFFFFFF
        tid = th.tid
        try:
            B.set_regs(tid, r)
            B.resume(P.PTRACE_CONT, tid, 0)
            self._wait_int3(th)       # reads the registers at the int3 into r (_scratch)
        except OSError as e:      # ptrace itself failed: a platform failure, not an errno
            raise StubError(f"injection into stub thread {tid} failed: {e}") from e
        res = r.rax
        return res - (1 << 64) if res >= (1 << 63) else res

    def _wait_int3(self, th: StubThread, events: list[tuple[int, int]] | None = None) -> None:
        """Waits for `th` to reach the stub's int3, collecting ptrace events on the way."""
        tid = th.tid
        while True:
            _, status = os.waitpid(tid, WALL)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                th.exited = True
                raise StubError(f"stub thread {tid} died during injection: status {status:#x}")
            sig = (status >> 8) & 0xFF
            event = status >> 16
            if event:
                if events is not None:
                    events.append((event, B.get_event_msg(tid)))
                B.resume(P.PTRACE_CONT, tid, 0)
                continue
            if sig == host_signal.SIGSYS:
                # The stub's filter refused what the Sentry injected (a Sentry bug).
                raise StubError(f"stub thread {tid}: injected syscall refused by its filter")
            if sig == _SIGTRAP:
                B.get_regs(tid, self._scratch)
                if self._scratch.rip == self._after_int3:
                    return
                raise StubError(f"stub thread {tid} trapped at {self._scratch.rip:#x}")
            # Any other signal (e.g. SIGSTOP, SIGCHLD from a sibling): suppress it.
            B.resume(P.PTRACE_CONT, tid, 0)

    def _clone_and_collect(self, th: StubThread, flags: int, ctid: int = 0) -> int:
        """Injects clone(flags, 0, 0, ctid) into `th` and waits for the new thread's
        first stop."""
        r = self._scratch
        assert self._saved_template is not None
        ctypes.memmove(ctypes.addressof(r), ctypes.addressof(self._saved_template), B.REGS_SIZE)
        r.rip = self._syscall_addr
        r.rax = Sysno.clone
        r.rdi = flags
        r.rsi = r.rdx = r.r8 = r.r9 = 0
        r.r10 = ctid
        B.set_regs(th.tid, r)
        B.resume(P.PTRACE_CONT, th.tid, 0)
        events: list[tuple[int, int]] = []
        self._wait_int3(th, events)
        res = r.rax
        if res >= (1 << 63):
            raise OSError(-(res - (1 << 64)), "injected clone failed")
        child = int(res)
        # The new thread starts with a SIGSTOP stop (auto-attach); it sits just
        # before the stub's int3 and is resumed only with new registers.
        _, status = os.waitpid(child, WALL)
        if not os.WIFSTOPPED(status):
            raise StubError(f"new stub {child} did not stop: status {status:#x}")
        return child

    def fork_process(self, th: StubThread) -> StubProcess:
        """A new stub process whose address space is a copy-on-write copy of `th`'s."""
        pid = self._clone_and_collect(th, _CLONE_PARENT | host_signal.SIGCHLD)
        proc = StubProcess(pid, self)
        self.processes[pid] = proc
        th = StubThread(pid, proc)
        proc.threads.add(th)
        proc.spare = th
        if self.placement is not None:
            self.placement.created(th)
        return proc

    def new_process(self) -> StubProcess:
        """A new, empty address space: a clone of the master stub."""
        return self.fork_process(next(iter(self.master.threads)))

    def new_thread(self, th: StubThread) -> StubThread:
        """A new host thread in `th`'s process (same address space)."""
        tid = self._clone_and_collect(th, _CLONE_THREAD_FLAGS)
        nt = StubThread(tid, th.process)
        th.process.threads.add(nt)
        if self.placement is not None:
            self.placement.created(nt)
        return nt

    def reaped(self, pid: int) -> None:
        """The loop reaped host process `pid`."""
        self.processes.pop(pid, None)

    def shutdown(self) -> None:
        """Kills and reaps every stub process.  Waits only for our own stubs."""
        self.contexts.clear()
        if self._sigfd >= 0:
            os.close(self._sigfd)
            self._sigfd = -1
        for proc in list(self.processes.values()):
            proc.kill()
        # A killed process's leader is reapable only after its other (traced) threads
        # are, so reap whatever comes until every stub process is gone.
        while self.processes:
            for pid in list(self.processes):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:      # reaped already
                    self.processes.pop(pid, None)
            if not self.processes:
                break
            try:
                pid, _ = os.waitpid(-1, WALL)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            self.processes.pop(pid, None)
        self.processes.clear()

    def exit_thread(self, th: StubThread) -> None:
        """Ends one host thread; kills the process when it was the last one."""
        proc = th.process
        proc.threads.discard(th)
        if th.exited:
            return
        if not proc.threads:
            proc.kill()
            return
        # Other host threads still use this address space: end just this one.
        r = self._scratch
        assert self._saved_template is not None
        ctypes.memmove(ctypes.addressof(r), ctypes.addressof(self._saved_template), B.REGS_SIZE)
        r.rip = self._syscall_addr
        r.rax = Sysno.exit
        r.rdi = 0
        try:
            B.set_regs(th.tid, r)
            B.resume(P.PTRACE_CONT, th.tid, 0)
        except OSError:
            pass
        th.exited = True  # its exit status is reaped (and ignored) by the loop

    # -- platform.Platform ------------------------------------------------------------

    def new_address_space(self) -> StubProcess:
        """An empty address space: a clone of the master stub."""
        return self.new_process()

    def new_context(self, space: StubProcess) -> StubThread:  # type: ignore[override]
        """The process's first thread, or a new thread cloned in it."""
        th = space.spare
        if th is not None:
            space.spare = None
        else:
            th = self.new_thread(space.any_thread())
        self.contexts[th.tid] = th
        return th

    def release_context(self, ctx: StubThread) -> None:  # type: ignore[override]
        self.contexts.pop(ctx.tid, None)
        self.exit_thread(ctx)

    def initial_registers(self) -> Registers:
        return self.initial_regs()

    def set_host_name(self, ctx: StubThread, addr: int) -> None:  # type: ignore[override]
        """prctl(PR_SET_NAME, addr) in the stub thread: its comm on the host."""
        self.inject(ctx, Sysno.prctl, _PR_SET_NAME, addr)

    def switch(self, ctx: StubThread, regs: Registers) -> None:  # type: ignore[override]
        """PTRACE_SETREGS, then PTRACE_SYSEMU: the thread runs until its next syscall,
        fault or signal, which stops() reports."""
        ctx.regs = regs
        try:
            B.set_regs(ctx.tid, regs)
            if self.placement is not None:
                self.placement.resumed(ctx)
            B.resume(P.PTRACE_SYSEMU, ctx.tid, 0)
        except OSError as e:
            if ctx.exited or ctx.process.dead:
                return
            raise StubError(f"cannot resume stub thread {ctx.tid}: {e}") from e
        ctx.running = True

    def interrupt(self, ctx: StubThread) -> None:  # type: ignore[override]
        """A SIGSTOP to the running thread; its stop is reported as INTERRUPT."""
        if not ctx.running:
            return
        try:
            B.tgkill(ctx.process.pid, ctx.tid, host_signal.SIGSTOP)
        except OSError:
            pass

    def event_fd(self) -> int:
        return self._sigfd

    def stops_ready(self) -> bool:
        return False

    def stops(self) -> Iterator[tuple[StubThread, StopReason]]:
        """Reaps host wait statuses (waitpid(-1, WNOHANG|__WALL)) until none is left."""
        try:
            os.read(self._sigfd, 1024)
        except (BlockingIOError, OSError):
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG | WALL)
            except ChildProcessError:
                return
            if pid == 0:
                return
            th = self.contexts.get(pid)
            if status == _SYSCALL_STATUS and th is not None and th.regs is not None:
                # The hot path: a syscall stop (the rest of _decode's cases, inlined).
                th.running = False
                try:
                    B.get_regs(pid, th.regs)
                except OSError:
                    continue     # gone between the stop and now: its exit comes next
                if self.placement is not None:
                    self.placement.stopped(th)
                yield th, _SYSCALL
                continue
            why = self._decode(th, pid, status)
            if why is not None and th is not None:
                yield th, why

    def _decode(self, th: StubThread | None, pid: int, status: int) -> StopReason | None:
        """One host wait status as a StopReason; None if nothing for the kernel."""
        if not os.WIFSTOPPED(status):
            self.reaped(pid)
            if th is None:
                return None      # a reaped stub process or a thread we ended
            # The host thread died under us (e.g. killed by the host OOM killer).
            del self.contexts[pid]
            th.running = False
            th.exited = True
            return StopReason(StopKind.EXIT, signo=status)
        if th is None:
            return None
        th.running = False
        sig = (status >> 8) & 0xFF
        if status >> 16:
            # Events only come from injected clones, which are waited for there.
            try:
                B.resume(P.PTRACE_SYSEMU, pid, 0)
                th.running = True
            except OSError:
                pass
            return None
        regs = th.regs if th.regs is not None else self._scratch
        try:
            B.get_regs(pid, regs)
        except OSError:
            return None          # gone between the stop and now: its exit comes next
        if sig == _SYSCALL_STOP:
            if self.placement is not None:
                self.placement.stopped(th)
            return _SYSCALL
        if sig in _FAULT_SIGNALS or sig in _SYNC_SIGNALS:
            try:
                info = B.get_siginfo(pid)
            except OSError:
                return None
            if sig in _FAULT_SIGNALS:
                return StopReason(StopKind.FAULT, signo=sig,
                                  address=int.from_bytes(info[16:24], "little"),
                                  access=_fault_access(info), info=info)
            return StopReason(StopKind.SIGNAL, signo=sig, info=info)
        # Our own SIGSTOP (interrupt()), or any other host signal: suppressed.
        return StopReason(StopKind.INTERRUPT, signo=sig)

    def get_fpstate(self, ctx: StubThread) -> bytes:  # type: ignore[override]
        if fpu.HAS_XSAVE:
            n = B.get_xstate(ctx.tid, self.fpbuf)
            return self.fpbuf.raw[:n]
        B.get_fpregs(ctx.tid, self.fpbuf)
        return self.fpbuf.raw[:fpu.FXSAVE_SIZE]

    def set_fpstate(self, ctx: StubThread, data: bytes) -> bool:  # type: ignore[override]
        ctypes.memmove(self.fpbuf, data, len(data))
        try:
            if fpu.HAS_XSAVE:
                B.set_xstate(ctx.tid, self.fpbuf, len(data))
            else:
                B.set_fpregs(ctx.tid, self.fpbuf)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.EFAULT):
                return False
            if e.errno == errno.ESRCH:
                return True      # the thread died under us (SIGKILL): its exit is noticed later
            raise
        return True


_SYSCALL = StopReason(StopKind.SYSCALL)     # immutable: one for every syscall stop
_SYSCALL_STATUS = (_SYSCALL_STOP << 8) | 0x7F  # the wait status of a syscall stop
_FAULT_SIGNALS = (host_signal.SIGSEGV, host_signal.SIGBUS)
_SYNC_SIGNALS = (host_signal.SIGILL, host_signal.SIGFPE, host_signal.SIGTRAP, host_signal.SIGSYS)
_MREMAP_MAYMOVE, _MREMAP_FIXED = 1, 2
_MADV_DONTNEED = 4
_PR_SET_NAME = 15
_MADV_WIPEONFORK, _MADV_KEEPONFORK = 18, 19
_CPUCLOCK_PROF, _CPUCLOCK_VIRT = 0, 1     # include/linux/posix-timers_types.h


def _fault_access(info: bytes) -> Access:
    """What a fault was for.  ptrace's siginfo does not say (the page-fault error code
    stays in the host kernel), so: unknown.  A platform that sees the trap frame
    (systrap's SIGSEGV handler) can tell."""
    del info
    return Access.NONE


def _signalfd(sigs: list[int]) -> int:
    """A non-blocking signalfd for `sigs` (which the caller has blocked)."""
    libc = ctypes.CDLL(None, use_errno=True)
    mask = (ctypes.c_ulong * 16)()
    for s in sigs:
        mask[0] |= 1 << (s - 1)
    fd = libc.signalfd(-1, ctypes.byref(mask), os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return int(fd)


# Application mappings stay below the stub page.
assert MAX_USER_ADDRESS <= STUB_START
