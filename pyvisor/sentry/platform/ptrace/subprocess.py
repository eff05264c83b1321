"""Stub processes (address spaces) and stub threads, and syscall injection.

Linux analogue: none; gVisor: pkg/sentry/platform/ptrace/subprocess.go.

Process model: every stub process is a direct host child of the Sentry.  The
master stub is forked and exec'd once at start-up; every later stub process is
cloned from an existing one by an injected clone(CLONE_PARENT|SIGCHLD), so the
Sentry itself never forks again after start-up.  Stub threads (one per
application thread) are made by an injected clone(CLONE_VM|CLONE_THREAD|...).
PTRACE_O_EXITKILL ties every stub's life to the Sentry's.

Concurrency: used only from the Sentry loop.  Injection is synchronous: it
waits for the injected thread alone (waitpid(tid)), so no loop iteration runs
in between and no other stop can be confused with it.
"""

from __future__ import annotations

import ctypes
import os
import signal as host_signal
from dataclasses import dataclass, field

from pyvisor.abi.linux import ptrace as P
from pyvisor.abi.linux.sysno_amd64 import Sysno
from pyvisor.sentry.platform.ptrace import binding as B
from pyvisor.sentry.platform.ptrace.stub import AFTER_INT3, SYSCALL_ADDR, stub_memfd

WALL = 0x40000000
_SIGTRAP = host_signal.SIGTRAP
_SYSCALL_STOP = _SIGTRAP | 0x80

TRACE_OPTIONS = (P.PTRACE_O_TRACESYSGOOD | P.PTRACE_O_EXITKILL | P.PTRACE_O_TRACECLONE
                 | P.PTRACE_O_TRACEFORK | P.PTRACE_O_TRACEVFORK)

# The host fd number at which every stub holds the memory file.
STUB_MEMFD = 3

_CLONE_PARENT = 0x00008000
_CLONE_THREAD_FLAGS = 0x00000100 | 0x00000800 | 0x00010000  # VM | SIGHAND | THREAD


class StubError(Exception):
    """A stub died or misbehaved during an injection: an internal platform failure."""


@dataclass(eq=False, slots=True)
class StubProcess:
    """One host process: an application address space.  Linux: an mm_struct."""

    pid: int
    threads: set[StubThread] = field(default_factory=set)
    dead: bool = False
    cpu: tuple[int, int] = (0, 0)    # host (user, user+system) ns, last read (kernel/cputime)

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


@dataclass(eq=False, slots=True)
class StubThread:
    """One host thread of a stub process: runs one application thread."""

    tid: int
    process: StubProcess
    running: bool = False    # resumed into application code (not stopped)
    exited: bool = False
    # CPU placement (kernel/placement.py; gVisor's ptrace thread.cpu): whether the
    # thread is bound to the Sentry's CPU, its recent short runs, when it last resumed.
    placed: bool = False
    bound: bool = False
    cpu: int = -1            # the CPU it is bound to
    short_runs: int = 0
    resumed_at: int = 0


class PtracePlatform:
    """Creates stub processes and threads and injects host syscalls into them.

    Linux analogue: none (the host kernel is our MMU).
    """

    def __init__(self, memfd: int) -> None:
        self.memfd = memfd
        self._scratch = B.UserRegs()
        self._saved_template: B.UserRegs | None = None
        self.processes: dict[int, StubProcess] = {}   # every live stub process, by host pid
        self.master = self._spawn_master()
        self.processes[self.master.pid] = self.master

    # -- start-up ---------------------------------------------------------------------

    def _spawn_master(self) -> StubProcess:
        """Forks and execs the master stub.  Runs before the Sentry is confined."""
        sfd = stub_memfd()
        pid = os.fork()
        if pid == 0:  # child: becomes the stub
            try:
                os.setsid()                       # no terminal signals reach stubs
                B.prctl(B.PR_SET_PDEATHSIG, host_signal.SIGKILL)
                B.traceme()
                # Move both fds out of the way first: dup3 refuses old == new.
                mem_hi = os.dup2(self.memfd, 1000)
                stub_hi = os.dup2(sfd, 1001)
                os.dup2(mem_hi, STUB_MEMFD, inheritable=True)
                os.dup2(stub_hi, 4, inheritable=False)
                os.closerange(5, 65536)
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
        if self._scratch.rip != SYSCALL_ADDR:
            raise StubError(f"stub ready at unexpected rip {self._scratch.rip:#x}")
        if self._scratch.rax != 0:
            raise StubError(f"stub could not install its seccomp filter: "
                            f"{self._scratch.rax - (1 << 64)}")
        tmpl = B.UserRegs()
        ctypes.memmove(ctypes.addressof(tmpl), ctypes.addressof(self._scratch), B.REGS_SIZE)
        self._saved_template = tmpl
        proc = StubProcess(pid)
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
        r.rip = SYSCALL_ADDR
        r.rax = nr
        r.orig_rax = 0xFFFFFFFFFFFFFFFF
        r.rdi = a0 & 0xFFFFFFFFFFFFFFFF
        r.rsi = a1 & 0xFFFFFFFFFFFFFFFF
        r.rdx = a2 & 0xFFFFFFFFFFFFFFFF
        r.r10 = a3 & 0xFFFFFFFFFFFFFFFF
        r.r8 = a4 & 0xFFFFFFFFFFFFFFFF
        r.r9 = a5 & 0xFFFFFFFFFFFFFFFF
        tid = th.tid
        B.set_regs(tid, r)
        B.resume(P.PTRACE_CONT, tid, 0)
        self._wait_int3(th)
        B.get_regs(tid, r)
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
            if sig == _SIGTRAP:
                B.get_regs(tid, self._scratch)
                if self._scratch.rip == AFTER_INT3:
                    return
                raise StubError(f"stub thread {tid} trapped at {self._scratch.rip:#x}")
            # Any other signal (e.g. SIGSTOP, SIGCHLD from a sibling): suppress it.
            B.resume(P.PTRACE_CONT, tid, 0)

    def _clone_and_collect(self, th: StubThread, flags: int) -> int:
        """Injects clone(flags) into `th` and waits for the new thread's first stop."""
        r = self._scratch
        assert self._saved_template is not None
        ctypes.memmove(ctypes.addressof(r), ctypes.addressof(self._saved_template), B.REGS_SIZE)
        r.rip = SYSCALL_ADDR
        r.rax = Sysno.clone
        r.rdi = flags
        r.rsi = r.rdx = r.r10 = r.r8 = r.r9 = 0
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
        proc = StubProcess(pid)
        self.processes[pid] = proc
        proc.threads.add(StubThread(pid, proc))
        return proc

    def new_process(self) -> StubProcess:
        """A new, empty address space: a clone of the master stub."""
        return self.fork_process(next(iter(self.master.threads)))

    def new_thread(self, th: StubThread) -> StubThread:
        """A new host thread in `th`'s process (same address space)."""
        tid = self._clone_and_collect(th, _CLONE_THREAD_FLAGS)
        nt = StubThread(tid, th.process)
        th.process.threads.add(nt)
        return nt

    def reaped(self, pid: int) -> None:
        """The loop reaped host process `pid`."""
        self.processes.pop(pid, None)

    def shutdown(self) -> None:
        """Kills and reaps every stub process.  Waits only for our own stubs."""
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
        r.rip = SYSCALL_ADDR
        r.rax = Sysno.exit
        r.rdi = 0
        try:
            B.set_regs(th.tid, r)
            B.resume(P.PTRACE_CONT, th.tid, 0)
        except OSError:
            pass
        th.exited = True  # its exit status is reaped (and ignored) by the loop
