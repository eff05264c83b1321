"""The Kernel: the Sentry's one event loop and the life cycle of tasks.

Linux analogue: the scheduler plus kernel/exit.c; gVisor: kernel.Kernel and
task_run.go.

The loop waits for (a) stops of tasks' platform contexts, read from the
platform (platform/platform.py: `stops()` when its `event_fd()` fires; on
ptrace, a SIGCHLD signalfd and waitpid), (b) host fds (stdin, the gofer, host
sockets) through epoll, and (c) timers.  The kernel sees only the platform
interface and the `arch` types: no wait status, ptrace request or stub here.
A stop at a syscall runs its handler: a plain handler completes at once and
the task is resumed; a coroutine handler runs until it awaits a wait queue or
deadline, and is stepped again when woken.

Ordering rules: a task's registers are fetched at its stop and written back
just before it is resumed; nothing else touches them in between.  Wake-ups
only append to the ready queue; coroutines are stepped from the loop, never
re-entrantly from notify().
"""

from __future__ import annotations

import collections
import heapq
import logging
import select
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.signal import CLD_CONTINUED, CLD_DUMPED, CLD_EXITED, CLD_KILLED
from pyvisor.abi.linux.signal import (CLD_STOPPED, NSIG, SA_NOCLDSTOP, SA_NOCLDWAIT, SIG_IGN,
                                      Signal)
from pyvisor.sentry.arch.registers import USER_CS, VSYSCALL_START
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.kernel import ptrace, rseq, seccomp
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.kernel import cputime, posix_timers
from pyvisor.sentry.errors import Interrupted, SyscallControl, SyscallError, TimedOut
from pyvisor.sentry.kernel.memacct import SentryMemory
from pyvisor.sentry.kernel.ipc import IPCNamespace
from pyvisor.sentry.kernel.sysctl import CoreSysctls

from pyvisor.sentry.kernel.task import Task, ThreadGroup, is_init
from pyvisor.sentry.waitqueue import EVENT_ALL, WaitQueue, Waiter
from pyvisor.sentry.platform.platform import (Context, Platform, PlatformError, StopKind,
                                              StopReason)
from pyvisor.sentry.vfs import textbusy

if TYPE_CHECKING:
    from pyvisor.sentry.syscalls.linux.table import SyscallTable

log = logging.getLogger("pyvisor.sentry")

_MASK64 = 0xFFFFFFFFFFFFFFFF
_WAKE_EVENT, _WAKE_SIGNAL, _WAKE_TIMEOUT = 1, 2, 3
PID_MAX = 4194303          # /proc/sys/kernel/pid_max on 64-bit Linux
# How long the Sentry, once the sandbox's last task is gone, keeps sending what closed TCP
# sockets still owe (their data and FIN) before it resets them and exits (linger_tcp).
TCP_LINGER_NS = 10_000_000_000


class SentryPanic(Exception):
    """An internal error: the sandbox is killed cleanly."""


class _Sleep:
    """What a coroutine awaits: park this task on queues until an event, signal or deadline."""

    __slots__ = ("queues", "mask", "deadline", "interruptible")

    def __init__(self, queues: list[WaitQueue], mask: int, deadline: int | None,
                 interruptible: bool) -> None:
        self.queues = queues
        self.mask = mask
        self.deadline = deadline
        self.interruptible = interruptible

    def __await__(self) -> Any:
        reason = yield self
        if reason == _WAKE_SIGNAL:
            raise Interrupted()
        if reason == _WAKE_TIMEOUT:
            raise TimedOut()
        return reason


class Timer:
    """A one-shot callback at a monotonic deadline (ns).  Cancel by setting `cancelled`."""

    __slots__ = ("deadline", "callback", "cancelled", "interval")

    def __init__(self, deadline: int, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False
        self.interval = 0          # for periodic users (itimers): re-armed by the callback

    def __lt__(self, other: Timer) -> bool:
        return self.deadline < other.deadline


class Kernel:
    """Owns tasks, the PID namespace, the platform and the loop."""

    def __init__(self, platform: Platform, memfile: Any, table: SyscallTable,
                 strace: bool = False) -> None:
        self.platform = platform
        self.memfile = memfile
        self.table = table
        self.strace = strace
        self.tasks_by_tid: dict[int, Task] = {}          # sandbox tid -> task
        self.tasks_by_context: dict[Context, Task] = {}  # platform context -> task
        self.groups: dict[int, ThreadGroup] = {}         # tgid -> thread group
        self._next_pid = 1
        # Every pid in use: live tasks, and each thread group's id until it is reaped (a
        # zombie holds its pid, as in Linux).  Bounded by max_tasks.
        self.pids: set[int] = set()
        self.init: ThreadGroup | None = None
        self.exit_status: int | None = None              # sandbox wait status of init
        self.ready: collections.deque[tuple[Task, Any]] = collections.deque()
        self.timers: list[Timer] = []
        self.epoll = select.epoll()
        self.fd_watchers: dict[int, tuple[int, Callable[[int], None]]] = {}
        self.fd_edge_watchers: dict[int, Callable[[int], None]] = {}   # hostinet sockets
        self.boot_ns = time.monotonic_ns()
        self.hostname = b"pyvisor"
        self.domainname = b"(none)"
        self.unknown_logged: set[int] = set()
        self.root_ns: Any = None    # the mount namespace, set by the sandbox set-up
        self.mount_namespaces: list[Any] = []   # pod members' (runtime/sentry_pod.py)
        self.current: Task | None = None   # the task whose syscall is being served
        self.max_tasks = 1 << 20            # the sandbox's pid limit (--pids-limit), set at boot
        self.memory = SentryMemory()        # what the Sentry holds for the application
        self.executing: dict[tuple[int, int], int] = {}   # textbusy: files run by an mm
        self.writers: dict[tuple[int, int], int] = {}     # textbusy: files open for writing
        self.gofers: list[Any] = []
        # Called when a process without a parent (one started by `exec`) dies; set by the
        # control service (runtime/sentry_control.py), which reports its status.
        self.orphan_exit: Callable[[ThreadGroup], None] | None = None
        # Who adopts the orphans of a dying process (default: init); set for pods.
        self.child_reaper: Callable[[ThreadGroup], ThreadGroup | None] | None = None

        self.ipc = IPCNamespace()          # System V IPC (kernel/ipc)
        # net.core.{w,r}mem_max (global sysctls); boot sets the host's.
        self.net_core = CoreSysctls()
        self.cpu_ticker: Any = None         # cputimers.CPUTimerTicker, made on first use
        self.network: Any = None            # socket.Network (the sandbox's network), from boot
        self.vdso: Any = None               # kernel/vdso.VDSO: the vDSO and its parameter page
        self._panic: BaseException | None = None
        self._platform_fd = platform.event_fd()
        self.epoll.register(self._platform_fd, select.EPOLLIN)

    # -- pids -------------------------------------------------------------------------

    def pids_exhausted(self, limit: int | None = None) -> bool:
        """Whether no pid can be allocated: every pid up to the sandbox's limit (or the
        smaller `limit`) is held by a task or an unreaped zombie."""
        cap = self.max_tasks if limit is None else min(limit, self.max_tasks)
        return len(self.pids) >= cap

    def alloc_pid(self) -> int:
        """A free pid.  Linux: alloc_pid (EAGAIN when the namespace is full)."""
        if self.pids_exhausted():
            raise SyscallError(Errno.EAGAIN)
        while True:
            pid = self._next_pid
            self._next_pid = pid + 1 if pid < PID_MAX else 300
            if pid not in self.pids:
                self.pids.add(pid)
                return pid

    def _free_pid(self, pid: int) -> None:
        """`pid` is free once neither a live task nor an unreaped thread group holds it."""
        if pid not in self.tasks_by_tid and pid not in self.groups:
            self.pids.discard(pid)

    def register(self, t: Task) -> None:
        self.tasks_by_tid[t.tid] = t
        self.tasks_by_context[t.thread] = t
        self.pids.add(t.tid)

    # -- timers and host fds ----------------------------------------------------------

    def now(self) -> int:
        return time.monotonic_ns()

    def add_timer(self, deadline: int, callback: Callable[[], None]) -> Timer:
        tm = Timer(deadline, callback)
        heapq.heappush(self.timers, tm)
        return tm

    def watch_fd(self, fd: int, events: int, callback: Callable[[int], None]) -> None:
        """Calls `callback(events)` once when host `fd` is ready (one-shot)."""
        # A fired one-shot watch stays registered (disarmed) in epoll: re-arm it.
        try:
            self.epoll.register(fd, events | select.EPOLLONESHOT)
        except FileExistsError:
            self.epoll.modify(fd, events | select.EPOLLONESHOT)
        self.fd_watchers[fd] = (events, callback)

    def watch_fd_edges(self, fd: int, events: int, callback: Callable[[int], None]) -> None:
        """Calls `callback(events)` on every readiness edge of host `fd` (EPOLLET), until
        unwatch_fd: for host sockets, which are nearly always writable, so a level or
        one-shot watch would fire at once every time it is armed."""
        self.epoll.register(fd, events | select.EPOLLET)
        self.fd_edge_watchers[fd] = callback

    def unwatch_fd(self, fd: int) -> None:
        if self.fd_edge_watchers.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass
            return
        if self.fd_watchers.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass

    # -- sleeping ---------------------------------------------------------------------

    def block_on(self, t: Task, queues: WaitQueue | list[WaitQueue] | None, mask: int = EVENT_ALL,
                 deadline: int | None = None, interruptible: bool = True) -> _Sleep:
        """The only place a task gives up the loop.  Await the result.

        Raises Interrupted if a signal arrives (or is already deliverable),
        TimedOut at `deadline` (monotonic ns).
        """
        if queues is None:
            qs: list[WaitQueue] = []
        elif isinstance(queues, WaitQueue):
            qs = [queues]
        else:
            qs = queues
        return _Sleep(qs, mask, deadline, interruptible)

    def _park(self, t: Task, sl: _Sleep) -> None:
        """Registers a task's sleep; exactly one wake-up will schedule it."""
        if sl.interruptible and (ksignal.has_deliverable(t) or t.exit_pending or
                                 (t.ptrace is not None and ptrace.must_trap(t))):
            self.ready.append((t, _WAKE_SIGNAL))
            return
        if sl.deadline is not None and sl.deadline <= self.now():
            self.ready.append((t, _WAKE_TIMEOUT))
            return
        state: dict[str, Any] = {}

        def wake(reason: int) -> None:
            if t.wake is not wake:
                return          # already woken
            t.wake = None
            w.cancel()
            tm = state.get("timer")
            if tm is not None:
                tm.cancelled = True
            self.ready.append((t, reason))

        w = Waiter(sl.mask, lambda ev: wake(_WAKE_EVENT if ev else _WAKE_EVENT))
        for q in sl.queues:
            q.add(w)
        if sl.deadline is not None:
            state["timer"] = self.add_timer(sl.deadline, lambda: wake(_WAKE_TIMEOUT))
        t.interruptible = sl.interruptible
        t.wake = wake

    def signal_wakeup(self, t: Task) -> None:
        """A signal became deliverable to `t`: interrupt its sleep or its user code."""
        if t.wake is not None:
            if t.interruptible:
                t.wake(_WAKE_SIGNAL)
            return
        if t.thread.running:
            # Stop it; the INTERRUPT stop is turned into signal delivery.
            self.platform.interrupt(t.thread)

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> int:
        """Runs until the init process exits; returns its wait status."""
        try:
            while self.exit_status is None:
                self._run_ready()
                if self.exit_status is not None:
                    break
                timeout = self._fire_timers()
                if self.ready or self.platform.stops_ready():
                    timeout = 0
                if self.exit_status is not None:
                    break
                self._poll(timeout)
        except SentryPanic:
            pass
        if self._panic is None:
            self.linger_tcp()
        return self.exit_status if self.exit_status is not None else 128 + 9

    def linger_tcp(self, bound_ns: int = TCP_LINGER_NS) -> None:
        """After the last task: Linux's close(2) returns with data still queued and the
        kernel goes on sending it and the FIN; here the kernel is this process, so before
        it ends, connections to other hosts whose sockets were closed are given up to
        `bound_ns` to have their data and FIN acknowledged (timers and NIC input only;
        no task runs any more), and what still owes something then is reset."""
        stack = getattr(self.network, "stack", None)
        layer = getattr(stack, "tcpseg", None)
        if layer is None or not layer.orphans_sending():
            return
        try:
            self.epoll.unregister(self._platform_fd)   # stub stops wait for shutdown()
        except OSError:
            pass
        deadline = self.now() + bound_ns
        try:
            while layer.orphans_sending():
                timeout = self._fire_timers()
                left = (deadline - self.now()) / 1e9
                if left <= 0:
                    break
                self._poll(left if timeout < 0 else min(timeout, left))
            layer.abort_orphans()
        finally:
            try:
                self.epoll.register(self._platform_fd, select.EPOLLIN)
            except OSError:
                pass

    def _fire_timers(self) -> float:
        now = self.now()
        timers = self.timers
        while timers and (timers[0].cancelled or timers[0].deadline <= now):
            tm = heapq.heappop(timers)
            if not tm.cancelled:
                tm.callback()
        if not timers:
            return -1
        # Deadlines can be absurdly far (alarm(4e9), a 2^63 s sleep): wake at least hourly.
        return min(3600.0, max(0.0, (timers[0].deadline - now) / 1e9))

    def _poll(self, timeout: float) -> None:
        try:
            events = self.epoll.poll(timeout)
        except InterruptedError:
            return
        # Ordering: host fd events first, then the stops.  A stop (a syscall) may ask
        # about readiness that host events already in this batch changed: a host
        # socket's edges that happened before an epoll_wait must reach its wait queue
        # before that epoll_wait collects, or they arrive after it as a spurious new
        # edge (EPOLLET on a hostinet listener).
        stops = False
        for fd, ev in events:
            if fd == self._platform_fd:
                stops = True
                continue
            edge = self.fd_edge_watchers.get(fd)
            if edge is not None:
                edge(ev)
                continue
            w = self.fd_watchers.pop(fd, None)
            if w is not None:
                w[1](ev)
        if stops or self.platform.stops_ready():
            self._drain_stops()

    def _drain_stops(self) -> None:
        for ctx, why in self.platform.stops():
            self._on_stop(ctx, why)
            if self.exit_status is not None:
                return

    def _run_ready(self) -> None:
        ready = self.ready
        while ready:
            t, value = ready.popleft()
            if t.exited or t.coro is None:
                continue
            c0 = time.thread_time_ns()
            self._step(t, value)
            cputime.charge_sentry(t, time.thread_time_ns() - c0)

    # -- stops ------------------------------------------------------------------------

    def _on_stop(self, ctx: Context, why: StopReason) -> None:
        """A task's context stopped: serve its syscall, or turn a fault into a signal."""
        t = self.tasks_by_context.get(ctx)
        if t is None:
            return   # a context the kernel let go of
        if t.run_start:         # wall time in application code (kernel/cputime.py)
            t.run_ns += time.monotonic_ns() - t.run_start
            t.run_start = 0
        kind = why.kind
        if kind is StopKind.EXIT:
            # The context died under us (e.g. its host thread was killed by the OOM killer).
            if not t.exited:
                log.warning("context of task %d died: status %#x", t.tid, why.signo)
                self.group_exit(t.tg, Signal.SIGKILL, killed=True)
                if not t.exited:
                    # Its group was exiting already and waits for this context's
                    # stop, which will never come: it exits now.
                    self.task_exit(t)
            return
        if t.exit_pending:
            self.task_exit(t)
            return
        if t.mm.pending_sigbus:
            t.mm.apply_pending()        # a truncate while none of its threads was stopped
        if t.ptrace is not None:
            ptrace.after_run(t)
        if kind is not StopKind.SYSCALL and rseq.active():
            rseq.preempted(t)           # stopped in user code: abort its rseq section
        if kind is StopKind.SYSCALL:
            c0 = time.thread_time_ns()
            self._syscall(t, why.checked)
            cputime.charge_sentry(t, time.thread_time_ns() - c0)   # the Sentry's system time
            return
        if kind is StopKind.INTERRUPT:
            # Our own interrupt (signal_wakeup), or a host signal: deliver signals.
            self.resume(t, None)
            return
        # A fault or trap in application code: an application signal, unless it was a
        # file page past end of file that the file has grown over since (mm/).
        if kind is StopKind.FAULT and why.signo == Signal.SIGBUS and \
                t.mm.file_fault(why.address):
            self.resume(t, None)
            return
        info = ksignal.fault_info(why.signo, why.info)
        if why.signo == Signal.SIGSYS and self._vsyscall(t, info):
            return
        ksignal.force_sig(t, info)
        self.resume(t, None)

    # -- syscalls ---------------------------------------------------------------------

    def _syscall(self, t: Task, checked: bool = False) -> None:
        self.current = t
        regs = t.regs
        if regs.cs != USER_CS or not (checked or self._is_syscall_insn(t, regs.rip)):
            # int 0x80, sysenter or 32-bit code: only the 64-bit ABI is served.
            self._complete(t, -Errno.ENOSYS)
            return
        if t.ptrace is not None and ptrace.syscall_enter(t):
            return                 # a syscall-enter stop: its tracer resumes it
        self.syscall_body(t)

    def syscall_skipped(self, t: Task) -> None:
        """A tracer cancelled the syscall at its enter stop (orig_rax = -1): rax keeps
        what the tracer left there."""
        self.current = t
        v = t.regs.rax
        self._complete(t, v - (1 << 64) if v >= 1 << 63 else v)

    def syscall_body(self, t: Task) -> None:
        """Serves the syscall `t` stopped at (after any syscall-enter stop)."""
        self.current = t
        regs = t.regs
        # The number is the low 32 bits of rax, as do_syscall_64's `int nr`: high
        # bits are ignored, and numbers from 2^31 up (negative) are ENOSYS.
        nr = regs.orig_rax & 0xFFFFFFFF
        entry = self.table.entries.get(nr)
        if self.strace:
            from pyvisor.sentry import strace
            strace.enter(t, nr)
        if t.seccomp is not None and (verdict := seccomp.check(t, nr)) is not None:
            self._complete(t, verdict)       # the application's own filter answered
            return
        if entry is None:
            if nr not in self.unknown_logged and len(self.unknown_logged) < 1024:
                self.unknown_logged.add(nr)          # bounded: numbers are the caller's choice
                log.info("unsupported syscall %d", nr)
            self._complete(t, -Errno.ENOSYS)
            return
        try:
            ret = entry.fn(t, SyscallArguments(regs))
        except SyscallError as e:
            self._complete(t, -e.errno)
            return
        except Exception as e:  # noqa: BLE001 - PlatformError, OSError, a bug
            self._internal_error(t, nr, e)
            return
        if entry.blocking:
            t.coro = ret
            self._step(t, None)
            return
        self._complete(t, ret)

    def _vsyscall(self, t: Task, info: ksignal.SigInfo) -> bool:
        """Emulates a call into the legacy vsyscall page (time, gettimeofday, getcpu).

        The host turns it into a seccomp trap in the stub (see stub.py); by then it
        has already emulated the `ret`, so only the result is left to set."""
        raw = info.raw or b""
        if len(raw) < 32 or not VSYSCALL_START <= info.addr < VSYSCALL_START + 4096:
            return False
        nr = int.from_bytes(raw[24:28], "little")
        if nr not in (96, 201, 309):      # gettimeofday, time, getcpu
            return False
        if t.seccomp is not None:
            t.regs.orig_rax = nr          # as emulate_vsyscall: the filter's nr, SIGSYS's rax
            if (verdict := seccomp.check(t, nr, info.addr)) is not None:
                self._complete(t, verdict)
                return True
        entry = self.table.entries.get(nr)
        try:
            ret = entry.fn(t, SyscallArguments(t.regs)) if entry is not None else -Errno.ENOSYS
        except SyscallError as e:
            ret = -e.errno
        if ret == -Errno.EFAULT:
            # A bad pointer given to a vsyscall: SIGSEGV, not an errno (Linux:
            # emulate_vsyscall's check_fault).
            ksignal.force_sig(t, ksignal.kernel_info(Signal.SIGSEGV))
        self._complete(t, ret)
        return True

    def _is_syscall_insn(self, t: Task, rip: int) -> bool:
        """Whether the instruction before `rip` is `syscall` (0f 05), not int 0x80 (cd 80)
        or sysenter (0f 34).  Verified addresses are cached per address space; a stale
        entry can only make the Sentry serve a 32-bit call as a 64-bit one, never the host."""
        cache = t.mm.syscall_sites
        if rip in cache:
            return True
        try:
            insn = t.mm.copy_in(rip - 2, 2)
        except SyscallError:
            return False
        if insn != b"\x0f\x05":
            return False
        if len(cache) > 4096:
            cache.clear()
        cache.add(rip)
        return True

    def _step(self, t: Task, value: Any) -> None:
        """Runs a task's syscall coroutine until it sleeps or finishes."""
        coro = t.coro
        assert coro is not None
        self.current = t
        try:
            sl = coro.send(value)
        except StopIteration as stop:
            t.coro = None
            self._complete(t, stop.value)
            return
        except Interrupted as e:
            t.coro = None
            self._complete(t, -e.errno)
            return
        except SyscallError as e:
            t.coro = None
            self._complete(t, -e.errno)
            return
        except TimedOut:
            t.coro = None
            self._complete(t, -Errno.ETIMEDOUT)
            return
        except Exception as e:  # noqa: BLE001
            t.coro = None
            self._internal_error(t, t.regs.orig_rax, e)
            return
        if t.exited:
            coro.close()
            t.coro = None
            return
        self._park(t, sl)

    def _complete(self, t: Task, ret: Any) -> None:
        """Finishes a syscall: sets the return value, delivers signals, resumes."""
        if t.exited:
            return
        if self.strace:
            from pyvisor.sentry import strace
            strace.exit(t, t.regs.orig_rax, ret)
        if t.ptrace is not None and ptrace.syscall_exit(t, ret):
            return                 # an event or syscall-exit stop: its tracer resumes it
        if type(ret) is int:
            t.regs.rax = ret & _MASK64
            self.resume(t, ret)
            return
        if ret is SyscallControl.EXITED or ret is SyscallControl.BLOCKED_STOP:
            return
        if ret is None:
            t.regs.rax = 0
            self.resume(t, 0)
            return
        # EXECED / SIGRETURN: registers already hold the new state.
        self.resume(t, None)

    def _internal_error(self, t: Task, nr: int, e: BaseException) -> None:
        """A Sentry bug: one line naming the syscall, the traceback in the debug log,
        and the sandbox is killed cleanly (run() returns, the caller shuts down)."""
        from pyvisor.abi.linux.sysno_amd64 import Sysno
        try:
            name = Sysno(nr).name
        except ValueError:
            name = str(nr)
        r = t.regs
        log.debug("internal error in %s (task %d, args %#x %#x %#x %#x %#x %#x):\n%s", name,
                  t.tid, r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9,
                  "".join(traceback.format_exception(e)))
        print(f"pyvisor: internal error in syscall {name} of task {t.tid}: {e!r}; "
              "killing the sandbox", file=sys.stderr, flush=True)
        self.exit_status = 128 + 9
        self._panic = e
        raise SentryPanic()

    # -- resuming ---------------------------------------------------------------------

    def resume(self, t: Task, syscall_ret: int | None,
               injected: ksignal.SigInfo | None = None) -> None:
        """Delivers pending signals, then lets `t` run application code.  `injected`:
        a signal its tracer chose at a signal-delivery stop, acted on first."""
        if t.exited:
            return
        if t.exit_pending:
            self.task_exit(t)
            return
        ps = t.ptrace
        if ps is not None:
            if ps.stop is not None:
                return   # held in a ptrace stop until its tracer resumes it
            if ptrace.trap(t, syscall_ret):
                return   # joined a group-stop or trapped (PTRACE_INTERRUPT) for its tracer
        elif t.tg.stopped:
            return       # resumed by SIGCONT (resume_stopped)
        if (t.pending_mask | t.tg.pending_mask) & ~t.sigmask or injected is not None or \
                (syscall_ret is not None and syscall_ret <= -512 and syscall_ret >= -516):
            if not ksignal.deliver_pending(t, syscall_ret, injected):
                if t.ptrace is not None and t.ptrace.stop is None and not t.exited and \
                        t.tg.stopped:
                    t.ptrace.group_stop_pending = True
                    ptrace.trap(t, None)    # the group stop it just joined, for its tracer
                return
            if t.exited:
                return
            if t.tg.stopped and (t.ptrace is None or ptrace.trap(t, None)):
                return
        self._resume_host(t)

    def _resume_host(self, t: Task) -> None:
        if t.ptrace is not None:
            ptrace.before_run(t)
        try:
            self.platform.switch(t.thread, t.regs)
        except PlatformError as e:
            self._internal_error(t, t.regs.orig_rax, e)
            return
        t.run_start = time.monotonic_ns()

    def resume_stopped(self, t: Task) -> None:
        """SIGCONT: a job-control-stopped task runs again."""
        if not t.exited and not t.thread.running and t.coro is None and t.wake is None:
            self.resume(t, None)

    def get_fpregs(self, t: Task) -> bytes:
        """`t`'s whole FP/extended state (arch/fpu.py: REGSET_SIZE bytes of XSAVE
        image, or the fxsave image without XSAVE)."""
        return self.platform.get_fpstate(t.thread)

    def set_fpregs(self, t: Task, data: bytes) -> bool:
        """Loads a state image (as get_fpregs returns) into `t`'s FPU.  False if the
        host refuses it as invalid (MXCSR reserved bits, a bad XSAVE header): the
        caller decides what the application sees (Linux's xrstor would #GP:
        rt_sigreturn gives SIGSEGV)."""
        return self.platform.set_fpstate(t.thread, data)

    # -- exit -------------------------------------------------------------------------

    def group_exit(self, tg: ThreadGroup, code: int, killed: bool = False,
                   core: bool = False) -> None:
        """exit_group or death by signal: every thread of `tg` exits."""
        if tg.exiting or tg.zombie:
            if killed and code == Signal.SIGKILL:
                ptrace.kill_exit_stopped(tg)
            return
        tg.exiting = True
        tg.exit_code = (code & 0x7F) | (0x80 if core else 0) if killed else (code & 0xFF) << 8
        # All threads: those stopped in the Sentry exit now; running ones at their next stop.
        for t in list(tg.tasks):
            if t.exited:
                continue
            if t.thread.running:
                t.exit_pending = True
                self.platform.interrupt(t.thread)
            else:
                self.task_exit(t)

    def task_exit(self, t: Task) -> None:
        """One thread exits.  Linux: do_exit."""
        if t.exited:
            return
        if t.ptrace is not None and ptrace.exit_stop(t):
            return                 # PTRACE_EVENT_EXIT first; its tracer resumes the exit
        t.exited = True
        if t.tracees:
            ptrace.tracer_exit(t)
        if t.ptrace is not None:
            ptrace.tracee_exit(t)
        if t.coro is not None:
            try:
                t.coro.close()
            except Exception:  # noqa: BLE001
                pass
            t.coro = None
        if t.wake is not None:
            t.wake = None
        tg = t.tg
        self._forget_parent_thread(t)
        if t.robust_list:
            from pyvisor.sentry.kernel import futex
            futex.exit_robust_list(t)
        if t.clear_child_tid:
            try:
                t.copy_out(t.clear_child_tid, b"\0\0\0\0")
                from pyvisor.sentry.kernel import futex
                futex.wake(t, t.clear_child_tid, 1)
            except SyscallError:
                pass
        self.tasks_by_tid.pop(t.tid, None)
        self.tasks_by_context.pop(t.thread, None)
        self._free_pid(t.tid)
        ksignal.flush_all(t)
        if t in tg.tasks:
            tg.tasks.remove(t)
            if tg.tasks:
                tg.exit_wq.notify()   # a thread is gone (exec's de_thread waits for this)
        if not tg.tasks:
            cputime.note_rss_of(tg, t.mm)
        cputime.settle_unused(tg, t.thread.space)
        self.platform.release_context(t.thread)
        self.release_mm(t.mm)
        if t.vfork_parent is not None:
            self._vfork_done(t)
        if not tg.tasks:
            self._group_dead(tg, t)
        elif tg.exit_code is None:
            pass

    def release_mm(self, mm: Any) -> None:
        """A task stops using `mm`; the last user frees it (and its executable's
        write denial)."""
        mm.release_user()
        if mm.users <= 0:
            textbusy.exe_release(self, mm)

    def _vfork_done(self, t: Task) -> None:
        q = t.tg.vfork_done
        t.vfork_parent = None
        if q is not None:
            q.notify()

    def _forget_parent_thread(self, t: Task) -> None:
        """Its children's parent thread is gone: each gets its PR_SET_PDEATHSIG signal
        and another thread of the process as parent (Linux: forget_original_parent,
        which fires per thread, not per process)."""
        for c in t.tg.children:
            if c.parent_task is not t:
                continue
            c.parent_task = next((x for x in t.tg.tasks if x is not t and not x.exited),
                                 None)
            for x in list(c.tasks):
                if x.pdeath_signal and not x.exited:
                    try:
                        ksignal.send_to_group(c, ksignal.SigInfo(
                            x.pdeath_signal, pid=t.tg.tgid, uid=t.creds.uid))
                    except SyscallError:
                        pass

    def _new_reaper(self, tg: ThreadGroup) -> ThreadGroup | None:
        """Who adopts a dying process's children: the nearest live ancestor that is a
        child subreaper, else init (a pod member's own init).  Linux: find_new_reaper."""
        a = tg.parent
        while a is not None and not is_init(a):
            if a.child_subreaper and not a.zombie and not a.exiting and \
                    any(not x.exited for x in a.tasks):
                return a
            a = a.parent
        return self.init if self.child_reaper is None else self.child_reaper(tg)

    def _group_dead(self, tg: ThreadGroup, last: Task) -> None:
        """The last thread of a process is gone: zombie, reparent, notify."""
        if tg.exit_code is None:
            tg.exit_code = 0
        # The table may be shared with another process (CLONE_FILES without
        # CLONE_THREAD): it closes only with its last user (Linux: put_files_struct).
        table = last.fd_table
        if not any(x.fd_table is table for x in self.tasks_by_tid.values()):
            table.release()
        tg.zombie = True
        tg.exit_wq.notify()
        if tg.sid == tg.tgid:
            from pyvisor.sentry.fsimpl.devpts.devpts import session_leader_exit
            session_leader_exit(tg)     # its terminal's foreground group: SIGHUP
        ksignal.flush_all(tg)
        if tg.itimer_real is not None:
            tg.itimer_real.cancelled = True
        posix_timers.clear_all(tg)
        if tg.sem_undo:
            from pyvisor.sentry.kernel.ipc.semaphore import exit_undo
            exit_undo(tg)
        # Orphans go to init (we are PID namespace init's reaper); a pod member's to its own
        # init, as if it were its PID namespace's (child_reaper, runtime/sentry_pod.py).
        init = self._new_reaper(tg)
        for c in list(tg.children):
            c.exit_signal = Signal.SIGCHLD      # "we don't want people slaying init" (reparent_leader)
            c.parent = init if init is not None and init is not tg else None
            c.parent_task = None
            if c.parent is not None:
                c.parent.children.append(c)
                if c.zombie:
                    act = c.parent.sighand.actions[Signal.SIGCHLD]
                    if act.handler == SIG_IGN or act.flags & SA_NOCLDWAIT:
                        self.release_group(c)   # Linux: reparent_leader autoreaps
                    else:
                        c.parent.child_wq.notify()
        tg.children.clear()
        if tg is self.init:
            self.exit_status = tg.exit_code
            self._kill_everything()
            return
        parent = tg.parent
        if parent is None:
            if self.orphan_exit is not None:
                self.orphan_exit(tg)
            self.release_group(tg)
            return
        status = tg.exit_code
        if status & 0x7F:
            code, st = (CLD_DUMPED if status & 0x80 else CLD_KILLED), status & 0x7F
        else:
            code, st = CLD_EXITED, status >> 8
        act = parent.sighand.actions[Signal.SIGCHLD]
        autoreap = act.handler == SIG_IGN or act.flags & SA_NOCLDWAIT
        if 0 < tg.exit_signal <= NSIG:      # legacy clone accepts any byte (do_notify_parent)
            try:
                ksignal.send_to_group(parent, ksignal.SigInfo(tg.exit_signal, code,
                                                              pid=tg.tgid, status=st))
            except SyscallError:
                pass     # a real-time exit signal that does not fit is lost, as in Linux
        if autoreap and tg.exit_signal == Signal.SIGCHLD:
            self.release_group(tg)
        parent.child_wq.notify()

    def release_group(self, tg: ThreadGroup) -> None:
        """Reaps a zombie: its pid becomes free."""
        tg.reaped = True
        tg.exit_wq.notify()
        self.groups.pop(tg.tgid, None)
        self._free_pid(tg.tgid)
        if tg.parent is not None and tg in tg.parent.children:
            tg.parent.children.remove(tg)

    def notify_parent_stop(self, tg: ThreadGroup, continued: bool) -> None:
        parent = tg.parent
        if parent is None:
            return
        act = parent.sighand.actions[Signal.SIGCHLD]
        if not act.flags & SA_NOCLDSTOP:
            ksignal.send_to_group(parent, ksignal.SigInfo(
                Signal.SIGCHLD, CLD_CONTINUED if continued else CLD_STOPPED, pid=tg.tgid,
                status=Signal.SIGCONT if continued else (tg.stop_report or 0) >> 8))
        parent.child_wq.notify()

    def group_stop(self, tg: ThreadGroup, sig: int) -> None:
        """Job-control stop of a whole process."""
        if tg.stopped:
            return
        tg.stopped = True
        tg.stop_report = (sig << 8) | 0x7F
        for t in tg.tasks:
            if t.ptrace is not None:
                ptrace.group_stop_begins(t)
            self.platform.interrupt(t.thread)
        self.notify_parent_stop(tg, continued=False)

    def _kill_everything(self) -> None:
        """Init died: every other process in the sandbox dies too."""
        for tg in list(self.groups.values()):
            for t in list(tg.tasks):
                t.exited = True
                self.platform.release_context(t.thread)
        self.tasks_by_tid.clear()
        self.tasks_by_context.clear()
        self.pids.clear()

    def shutdown(self) -> None:
        """Kills every stub (including the master) and reaps them all."""
        self._kill_everything()
        self.platform.shutdown()
        self.epoll.close()

