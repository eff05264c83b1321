"""ptrace(2) between sandboxed tasks: tracers, tracees, stops.  Linux: kernel/ptrace.c,
the ptrace parts of kernel/signal.c (ptrace_stop, ptrace_signal, do_jobctl_trap) and
kernel/exit.c (wait_task_stopped, exit_ptrace); gVisor: pkg/sentry/kernel/ptrace.go.

This is the Sentry's emulation between application tasks.  Nothing here reaches the
host's ptrace: the platform's own use of it (running stubs) is unrelated, and a
tracer only ever sees the Sentry's Task state.

A ptrace stop holds a task in the Sentry: its context is not switched to until the
tracer resumes it.  Each stop carries a continuation, what the task does next: run
the syscall after a syscall-enter stop, act on the tracer's signal after a
signal-delivery stop, finish the syscall after an event or syscall-exit stop.  A
resume request schedules the continuation from the loop (never re-entrantly inside
the tracer's own syscall).  Stops in the middle of a blocking syscall (the fork,
vfork and clone events, vfork-done) are awaited by the syscall's coroutine instead.

Concurrency: Sentry loop only.
Invariant: a task is in at most one stop (`PtraceState.stop`); its tracer is a live
task whose `tracees` lists it.

Not modelled: Yama's ptrace_scope (as if 0: same uid or CAP_SYS_PTRACE, and a
dumpable target); hardware breakpoints and watchpoints (debug registers are kept
and read back, DR7 enable bits are refused with EIO); PTRACE_O_SUSPEND_SECCOMP
(EINVAL, as without CONFIG_CHECKPOINT_RESTORE); seccomp RET_TRACE stops (ENOSYS, as
with no tracer).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pyvisor.abi.linux import ptrace as P
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mman import PROT_READ, PROT_WRITE
from pyvisor.abi.linux.sched import CLONE_PTRACE, CLONE_UNTRACED, CLONE_VFORK, CSIGNAL
from pyvisor.abi.linux.signal import (CLD_DUMPED, CLD_EXITED, CLD_KILLED, CLD_TRAPPED,
                                      SA_NOCLDSTOP, SI_KERNEL, SI_USER, SIG_IGN, TRAP_BRKPT,
                                      Signal)
from pyvisor.sentry.errors import SyscallControl, SyscallError
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.abi.linux.capability import CAP_SYS_PTRACE
from pyvisor.sentry.waitqueue import WaitQueue

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task, ThreadGroup

_M64 = 0xFFFFFFFFFFFFFFFF
_TF = 0x100                  # X86_EFLAGS_TF
PAGE = 4096
_VM_CHUNK = 1 << 20          # access_vm moves at most this much per host call
VM_MAX = 64 << 20            # and process_vm_readv/writev this much per call (a short count)


class Resume(enum.Enum):
    """How the tracer last resumed the tracee.  Linux: TIF_SYSCALL_TRACE/EMU, TIF_SINGLESTEP."""

    CONT = 0
    SYSCALL = 1
    SYSEMU = 2
    SINGLESTEP = 3
    SYSEMU_SINGLESTEP = 4


class StopKind(enum.Enum):
    SYSCALL_ENTER = "syscall-enter"
    SYSCALL_EXIT = "syscall-exit"
    SIGNAL = "signal-delivery"
    EVENT = "event"               # PTRACE_EVENT_* (fork, exec, ..., and EVENT_STOP traps)
    GROUP = "group"               # group-stop


@dataclass(eq=False, slots=True)
class Stop:
    """One ptrace stop.  `code` is Linux's task->exit_code: signal | event << 8."""

    kind: StopKind
    code: int
    cont: Callable[[int], None]   # run (from the loop) with the tracer's signal
    reported: bool = False        # collected by the tracer's wait (or LISTEN)

    @property
    def status(self) -> int:
        """The wait(2) status word: WIFSTOPPED, WSTOPSIG, and the event in bits 16-23."""
        return (self.code << 8) | 0x7F


@dataclass(eq=False)
class PtraceState:
    """A tracee's side of ptrace.  Linux: task->ptrace, ->parent, ->jobctl's trap bits,
    ->ptrace_message, ->last_siginfo."""

    tracer: Task
    seized: bool
    options: int = 0
    mode: Resume = Resume.CONT
    stop: Stop | None = None
    siginfo: ksignal.SigInfo | None = None   # last_siginfo (None at a group-stop)
    eventmsg: int = 0
    listening: bool = False            # JOBCTL_LISTENING
    trap_stop: bool = False            # JOBCTL_TRAP_STOP: PTRACE_INTERRUPT, new seized child
    trap_notify: bool = False          # JOBCTL_TRAP_NOTIFY: the group stop ended (SIGCONT)
    group_stop_pending: bool = False   # JOBCTL_STOP_PENDING: still to join the group stop
    exit_status: int | None = None     # its exit, not yet collected by the tracer
    pending_event: tuple[int, int] | None = None   # (event, message) at this syscall's end
    forced_tf: bool = False            # TF set by SINGLESTEP (hidden from the tracee's regs)
    exit_stopped: bool = False         # its PTRACE_EVENT_EXIT stop happened (once per task)
    debugreg: list[int] = field(default_factory=lambda: [0] * 8)


# -- attaching and detaching ------------------------------------------------------------


def may_access(t: Task, target: Task) -> bool:
    """Linux: __ptrace_may_access(PTRACE_MODE_ATTACH_REALCREDS), without Yama."""
    if t.tg is target.tg:
        return True
    c, tc = t.creds, target.creds
    same = all(x == c.uid for x in (tc.uid, tc.euid, tc.suid)) and \
        all(x == c.gid for x in (tc.gid, tc.egid, tc.sgid))
    if not same and not c.capable(CAP_SYS_PTRACE):
        return False
    if target.tg.dumpable != 1 and not c.capable(CAP_SYS_PTRACE):
        return False
    if c.userns is not tc.userns:
        # cap_ptrace_access_check: across user namespaces, CAP_SYS_PTRACE over the
        # target's (kernel/namespaces.py).
        from pyvisor.sentry.kernel.namespaces import ns_capable
        if not ns_capable(c, tc.userns, CAP_SYS_PTRACE):
            return False
    return True


def _link(tracee: Task, tracer: Task, seized: bool, options: int) -> PtraceState:
    ps = PtraceState(tracer, seized, options)
    tracee.ptrace = ps
    tracer.tracees.append(tracee)
    return ps


def _unlink(tracee: Task) -> PtraceState | None:
    ps = tracee.ptrace
    if ps is None:
        return None
    tracee.ptrace = None
    tg = tracee.tg
    if tg.traced_leader is tracee:
        # The tracer is done with the dead leader: the parent may reap it now.
        tg.traced_leader = None
        if tg.parent is not None:
            tg.parent.child_wq.notify()
    if tracee in ps.tracer.tracees:
        ps.tracer.tracees.remove(tracee)
    if ps.forced_tf:
        tracee.regs.eflags &= ~_TF
        ps.forced_tf = False
    return ps


def traceme(t: Task) -> None:
    """PTRACE_TRACEME: the parent thread (Linux: real_parent, the thread that forked
    it; else the parent's oldest thread) becomes the tracer."""
    parent = t.tg.parent
    if t.ptrace is not None or parent is None or not parent.tasks:
        raise SyscallError(Errno.EPERM)
    tracer = t.tg.parent_task
    if tracer is None or tracer.exited or tracer.tg is not parent:
        tracer = parent.leader
    _link(t, tracer, seized=False, options=0)


def attach(t: Task, target: Task, seize: bool, options: int) -> None:
    """PTRACE_ATTACH / PTRACE_SEIZE.  Linux: ptrace_attach."""
    if target.tg is t.tg or target.exited or target.tg.exiting or target.ptrace is not None:
        raise SyscallError(Errno.EPERM)
    if not may_access(t, target):
        raise SyscallError(Errno.EPERM)
    ps = _link(target, t, seize, options)
    if not seize:
        ksignal.send_to_task(target, ksignal.SigInfo(Signal.SIGSTOP, SI_KERNEL))
    if target.tg.stopped:
        # Already job-control stopped: re-trap into a ptrace group-stop the tracer sees.
        ps.group_stop_pending = True
        target.kernel.resume_stopped(target)


def detach(tracee: Task, sig: int) -> None:
    """PTRACE_DETACH, or the tracer went away: the tracee runs on (a group-stop it is in
    goes on as an ordinary stop), with `sig` if it was at a signal-delivery stop."""
    ps = _unlink(tracee)
    if ps is None or tracee.exited:
        return
    # In a group stop that still holds, resume() parks it again as a plain stopped task.
    st = ps.stop
    ps.stop = None
    if st is not None:
        _later(tracee, lambda: st.cont(sig))


def tracer_exit(t: Task) -> None:
    """A tracer thread exits: its tracees are detached, or killed with PTRACE_O_EXITKILL.
    Linux: exit_ptrace."""
    for tracee in list(t.tracees):
        ps = tracee.ptrace
        if ps is None or tracee.exited:
            _unlink(tracee)
            if tracee in t.tracees:
                t.tracees.remove(tracee)
            continue
        if ps.options & P.PTRACE_O_EXITKILL:
            _unlink(tracee)
            ps.stop = None
            tracee.kernel.group_exit(tracee.tg, Signal.SIGKILL, killed=True)
            if not tracee.exited and not tracee.thread.running and tracee.coro is None:
                tracee.kernel.task_exit(tracee)     # it was held in a stop
        else:
            detach(tracee, 0)
    t.tracees.clear()


def tracee_exit(t: Task) -> None:
    """A traced task exits: its tracer gets the exit report (a thread's at once, a thread
    group leader's once the whole group is dead; a leader the tracer's own process is the
    parent of is reported by the ordinary child wait instead)."""
    ps = t.ptrace
    if ps is None:
        return
    ps.stop = None
    tg = t.tg
    tracer = ps.tracer
    if t.tid == tg.tgid and tg.parent is tracer.tg:
        tg.traced_by_parent = True      # the parent's wait reaps it, __WCLONE or not
        _unlink(t)
        return
    if t.tid == tg.tgid:
        tg.traced_leader = t
    if tg.exiting or t.exit_code is None:
        ps.exit_status = tg.exit_code or 0
    else:
        ps.exit_status = t.exit_code
    st = ps.exit_status
    code, val = ((CLD_DUMPED if st & 0x80 else CLD_KILLED), st & 0x7F) if st & 0x7F \
        else (CLD_EXITED, st >> 8 & 0xFF)
    if t.tid != tg.tgid:
        try:
            ksignal.send_to_group(tracer.tg, ksignal.SigInfo(Signal.SIGCHLD, code, pid=t.tid,
                                                             status=val))
        except SyscallError:
            pass
    tracer.tg.child_wq.notify()


# -- stops ------------------------------------------------------------------------------


def _later(t: Task, fn: Callable[[], None]) -> None:
    """Runs `fn` from the loop soon (the tracee's continuation, outside the tracer's
    syscall)."""
    t.kernel.add_timer(0, fn)


def _stop(t: Task, kind: StopKind, code: int, cont: Callable[[int], None],
          siginfo: ksignal.SigInfo | None, eventmsg: int | None = None) -> None:
    """Enters a ptrace stop and tells the tracer.  Linux: ptrace_stop."""
    ps = t.ptrace
    assert ps is not None and ps.stop is None
    ps.listening = False
    ps.trap_stop = False
    if code >> 8 == P.PTRACE_EVENT_STOP:
        ps.trap_notify = False
    ps.siginfo = siginfo
    if eventmsg is not None:
        ps.eventmsg = eventmsg
    ps.stop = Stop(kind, code, cont)
    _notify_tracer(t, code)


def _notify_tracer(t: Task, code: int) -> None:
    """SIGCHLD (CLD_TRAPPED) to the tracer's process and a wake-up of its waits.
    Linux: do_notify_parent_cldstop(for_ptracer=true)."""
    ps = t.ptrace
    assert ps is not None
    tracer_tg = ps.tracer.tg
    act = tracer_tg.sighand.actions[Signal.SIGCHLD]
    if act.handler != SIG_IGN and not act.flags & SA_NOCLDSTOP:
        try:
            ksignal.send_to_group(tracer_tg, ksignal.SigInfo(
                Signal.SIGCHLD, CLD_TRAPPED, pid=t.tid, uid=t.creds.uid, status=code & 0x7F))
        except SyscallError:
            pass
    tracer_tg.child_wq.notify()


def _trap_info(t: Task, code: int) -> ksignal.SigInfo:
    """The siginfo of a syscall or event stop.  Linux: ptrace_do_notify."""
    return ksignal.SigInfo(code & 0x7F, code, pid=t.tid, uid=t.creds.uid)


def _syscall_code(ps: PtraceState) -> int:
    return Signal.SIGTRAP | (0x80 if ps.options & P.PTRACE_O_TRACESYSGOOD else 0)


def stopped(t: Task) -> bool:
    """Whether `t` is held in a ptrace stop (procfs: "t (tracing stop)")."""
    return t.ptrace is not None and t.ptrace.stop is not None


def syscall_enter(t: Task) -> bool:
    """At a syscall, before it runs: a syscall-enter stop under PTRACE_SYSCALL or SYSEMU.
    True if `t` stopped; its continuation then runs (or skips) the syscall."""
    ps = t.ptrace
    assert ps is not None
    if ps.mode is Resume.CONT or ps.mode is Resume.SINGLESTEP:
        return False
    emu = ps.mode is Resume.SYSEMU or ps.mode is Resume.SYSEMU_SINGLESTEP
    t.regs.rax = -Errno.ENOSYS & _M64
    code = _syscall_code(ps)

    def cont(sig: int) -> None:
        if t.exited:
            return
        if sig:
            ksignal.send_to_task(t, ksignal.SigInfo(sig, SI_KERNEL))
        k = t.kernel
        if emu:
            k.resume(t, None)         # SYSEMU: the tracer emulated it; no exit stop
        elif t.regs.orig_rax & 0xFFFFFFFF == 0xFFFFFFFF:
            k.syscall_skipped(t)      # the tracer cancelled it: rax stays as it left it
        else:
            k.syscall_body(t)
    _stop(t, StopKind.SYSCALL_ENTER, code, cont, _trap_info(t, code),
          P.PTRACE_EVENTMSG_SYSCALL_ENTRY)
    return True


def _ret_of(t: Task, ret: object) -> int | None:
    """The syscall result signal delivery sees after a stop: rax (the tracer may have
    changed it) for a value, None after exec or sigreturn."""
    if type(ret) is int or ret is None:
        v = t.regs.rax
        return v - (1 << 64) if v >= 1 << 63 else v
    return None


def syscall_exit(t: Task, ret: object) -> bool:
    """A syscall finished with `ret` (not yet in rax): its event stop (exec, ...) and
    syscall-exit stop.  True if `t` stopped; the continuation then resumes it."""
    ps = t.ptrace
    assert ps is not None
    if ret is SyscallControl.EXITED or ret is SyscallControl.BLOCKED_STOP:
        return False
    if type(ret) is int:
        t.regs.rax = ret & _M64
    elif ret is None:
        t.regs.rax = 0
    if ps.pending_event is not None:
        event, msg = ps.pending_event
        ps.pending_event = None
        code = Signal.SIGTRAP | event << 8

        def after_event(sig: int) -> None:
            if t.exited:
                return
            if t.ptrace is None or not _exit_stop(t, ret):
                t.kernel.resume(t, _ret_of(t, ret))
        _stop(t, StopKind.EVENT, code, after_event, _trap_info(t, code), msg)
        return True
    return _exit_stop(t, ret)


def _exit_stop(t: Task, ret: object) -> bool:
    ps = t.ptrace
    assert ps is not None
    if ps.mode is Resume.SINGLESTEP:
        # A step over a syscall instruction traps after it.  Linux: user_single_step_report.
        ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGTRAP, TRAP_BRKPT))
        return False
    if ps.mode is not Resume.SYSCALL:
        return False
    code = _syscall_code(ps)

    def cont(sig: int) -> None:
        if t.exited:
            return
        if sig:
            ksignal.send_to_task(t, ksignal.SigInfo(sig, SI_KERNEL))
        t.kernel.resume(t, _ret_of(t, ret))
    _stop(t, StopKind.SYSCALL_EXIT, code, cont, _trap_info(t, code),
          P.PTRACE_EVENTMSG_SYSCALL_EXIT)
    return True


def signal_stop(t: Task, info: ksignal.SigInfo, syscall_ret: int | None) -> None:
    """A signal was dequeued for a traced task: signal-delivery stop.  The tracer may
    suppress it (resume with 0), change it, or edit its siginfo.  Linux: ptrace_signal."""
    sig = info.signo

    def cont(new: int) -> None:
        if t.exited:
            return
        injected: ksignal.SigInfo | None = None
        ps = t.ptrace
        if new:
            si = (ps.siginfo if ps is not None and ps.siginfo is not None else info)
            if new != si.signo:
                tracer = ps.tracer if ps is not None else None
                si = ksignal.SigInfo(new, SI_USER,
                                     pid=tracer.tg.tgid if tracer is not None else 0,
                                     uid=tracer.creds.uid if tracer is not None else 0)
            injected = si
            if t.sigmask & (1 << (new - 1)):
                ksignal.send_to_task(t, si)      # blocked now: queued again
                injected = None
        t.kernel.resume(t, syscall_ret, injected)
    _stop(t, StopKind.SIGNAL, sig, cont, info)


def trap(t: Task, syscall_ret: int | None) -> bool:
    """Before `t` returns to user code: a group-stop it must join, or an EVENT_STOP trap
    (PTRACE_INTERRUPT, a new seized child, the end of a group stop).  True if it stopped.
    Linux: do_signal_stop's ptrace branch and do_jobctl_trap."""
    ps = t.ptrace
    assert ps is not None
    tg = t.tg

    def cont(sig: int) -> None:
        if not t.exited:
            t.kernel.resume(t, syscall_ret)
    stop_sig = ((tg.stop_report or 0) >> 8) & 0xFF if tg.stopped else 0
    if tg.stopped and ps.group_stop_pending:
        ps.group_stop_pending = False
        sig = stop_sig or Signal.SIGSTOP
        if ps.seized:
            code = sig | P.PTRACE_EVENT_STOP << 8
            _stop(t, StopKind.GROUP, code, cont,
                  ksignal.SigInfo(sig, code, pid=t.tid, uid=t.creds.uid))
        else:
            _stop(t, StopKind.GROUP, sig, cont, None)
        return True
    if ps.seized and (ps.trap_stop or ps.trap_notify):
        sig = stop_sig or Signal.SIGTRAP
        code = sig | P.PTRACE_EVENT_STOP << 8
        _stop(t, StopKind.EVENT, code, cont, ksignal.SigInfo(sig, code, pid=t.tid,
                                                             uid=t.creds.uid))
        return True
    return False


def must_trap(t: Task) -> bool:
    """Whether a sleep of `t` must end at once for a trap (PTRACE_INTERRUPT, a group
    stop to report): its request may have come while `t` was between the host and the
    Sentry, where no wake-up reached it."""
    ps = t.ptrace
    assert ps is not None
    return ps.trap_stop or (ps.group_stop_pending and t.tg.stopped)


def group_stop_begins(t: Task) -> None:
    """The group of traced task `t` is stopping: it joins, reporting to its tracer."""
    ps = t.ptrace
    assert ps is not None
    ps.group_stop_pending = True
    if t.wake is not None:
        t.kernel.signal_wakeup(t)      # out of a blocking syscall, to report the stop


def group_continued(t: Task) -> None:
    """SIGCONT ended the group stop of traced `t`.  A seized tracee learns it by an
    EVENT_STOP trap (at once if it LISTENs).  Linux: ptrace_trap_notify."""
    ps = t.ptrace
    assert ps is not None
    ps.group_stop_pending = False
    if not ps.seized:
        return
    ps.trap_notify = True
    if ps.listening:
        _wake_listener(t)


def _wake_listener(t: Task) -> None:
    ps = t.ptrace
    assert ps is not None and ps.stop is not None
    st = ps.stop
    ps.stop = None
    ps.listening = False
    _later(t, lambda: st.cont(0))


async def event_stop(t: Task, event: int, msg: int) -> None:
    """A PTRACE_EVENT_* stop inside a blocking syscall (fork, vfork, clone, vfork-done):
    the syscall's coroutine waits here until the tracer resumes the task."""
    ps = t.ptrace
    if ps is None or t.exited:
        return
    q = WaitQueue()
    done: list[int] = []

    def cont(sig: int) -> None:
        done.append(sig)
        q.notify()
    code = Signal.SIGTRAP | event << 8
    _stop(t, StopKind.EVENT, code, cont, _trap_info(t, code), msg)
    while not done and not t.exited:
        await t.kernel.block_on(t, q, interruptible=False)


def clone_event(t: Task, flags: int, child: Task) -> int:
    """fork/vfork/clone by a traced task: the event to report (0: none), and the new task
    is traced too when the tracer asked for it (it starts with a SIGSTOP, or an
    EVENT_STOP if seized).  Linux: kernel_clone, ptrace_init_task."""
    ps = t.ptrace
    if ps is None or flags & CLONE_UNTRACED:
        return 0
    if flags & CLONE_VFORK:
        event = P.PTRACE_EVENT_VFORK
    elif flags & CSIGNAL != Signal.SIGCHLD:
        event = P.PTRACE_EVENT_CLONE
    else:
        event = P.PTRACE_EVENT_FORK
    if not ps.options & (1 << event):
        event = 0
    if not event and not flags & CLONE_PTRACE:
        return 0
    cps = _link(child, ps.tracer, ps.seized, ps.options)
    if ps.seized:
        cps.trap_stop = True
    else:
        ksignal.send_to_task(child, ksignal.SigInfo(Signal.SIGSTOP, SI_USER))
    return event


def vfork_done_enabled(t: Task) -> bool:
    return t.ptrace is not None and bool(t.ptrace.options & P.PTRACE_O_TRACEVFORKDONE)


def exec_event(t: Task, old_tid: int) -> None:
    """A successful execve: PTRACE_EVENT_EXEC at the syscall's end, or the legacy SIGTRAP
    for a tracer that attached without SEIZE.  Linux: ptrace_event(PTRACE_EVENT_EXEC)."""
    ps = t.ptrace
    if ps is None:
        return
    if ps.options & P.PTRACE_O_TRACEEXEC:
        ps.pending_event = (P.PTRACE_EVENT_EXEC, old_tid)
    elif not ps.seized:
        ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGTRAP, SI_USER, pid=t.tg.tgid,
                                                uid=t.creds.uid))


def exit_event(t: Task, status: int, then: Callable[[], None]) -> bool:
    """exit or exit_group by a tracee with PTRACE_O_TRACEEXIT: a PTRACE_EVENT_EXIT stop
    (message: the wait status) before `then` (the exit itself).  True if it stopped."""
    ps = t.ptrace
    if ps is None or not ps.options & P.PTRACE_O_TRACEEXIT or ps.exit_stopped:
        return False
    ps.exit_stopped = True
    code = Signal.SIGTRAP | P.PTRACE_EVENT_EXIT << 8

    def cont(sig: int) -> None:
        if not t.exited:
            then()
    _stop(t, StopKind.EVENT, code, cont, _trap_info(t, code), status)
    return True


def exit_stop(t: Task) -> bool:
    """Any other exit of a tracee with PTRACE_O_TRACEEXIT (a signal, another thread's
    exit_group or exec): the PTRACE_EVENT_EXIT stop comes first, ending an earlier stop
    (SIGKILL ends any stop).  True if `t` stopped; resuming it finishes the exit.  Not
    for a task whose host context is gone (it can never be switched to again)."""
    ps = t.ptrace
    if ps is None or not ps.options & P.PTRACE_O_TRACEEXIT or ps.exit_stopped or \
            t.thread.exited:
        return False
    if t.coro is not None:
        try:
            t.coro.close()
        except Exception:  # noqa: BLE001 - a closing coroutine's own error
            pass
        t.coro = None
    t.wake = None
    ps.stop = None
    tg = t.tg
    status = (tg.exit_code or 0) if tg.exiting or t.exit_code is None else t.exit_code
    return exit_event(t, status, lambda: t.kernel.task_exit(t))


def exit_stops_pending(tg: ThreadGroup) -> bool:
    """Whether a thread of `tg` would stop at PTRACE_EVENT_EXIT (or is stopped there)
    if it exited now: exec must then wait for it (kernel's de_thread)."""
    for t in tg.tasks:
        ps = t.ptrace
        if ps is not None and ps.options & P.PTRACE_O_TRACEEXIT:
            return True
    return False


def forget(t: Task) -> None:
    """A dead tracee its tracer will hear no more of (an old leader replaced by exec)."""
    _unlink(t)


def kill_exit_stopped(tg: ThreadGroup) -> None:
    """SIGKILL to an exiting group: threads held in their PTRACE_EVENT_EXIT stop go on
    exiting (Linux: SIGKILL wakes a traced task)."""
    for t in list(tg.tasks):
        ps = t.ptrace
        if ps is not None and ps.exit_stopped and ps.stop is not None and not t.exited:
            ps.stop = None
            t.kernel.task_exit(t)


# -- around running user code -------------------------------------------------------------


def before_run(t: Task) -> None:
    """Switching to user code: single-stepping sets TF for one instruction."""
    ps = t.ptrace
    assert ps is not None
    if ps.mode in (Resume.SINGLESTEP, Resume.SYSEMU_SINGLESTEP) and not t.regs.eflags & _TF:
        t.regs.eflags |= _TF
        ps.forced_tf = True


def after_run(t: Task) -> None:
    """Back from user code: the TF single-stepping set is taken away again (Linux hides
    it from the tracer: TIF_FORCED_TF)."""
    ps = t.ptrace
    assert ps is not None
    if ps.forced_tf:
        t.regs.eflags &= ~_TF
        ps.forced_tf = False


# -- the tracer's requests ------------------------------------------------------------------


def check_attached(t: Task, pid: int, need_stop: bool = True) -> Task:
    """The tracee `pid` of `t`, stopped (unless not `need_stop`), or ESRCH.
    Linux: ptrace_check_attach."""
    target = t.kernel.tasks_by_tid.get(pid)
    if target is None or target.exited or target.ptrace is None or \
            target.ptrace.tracer is not t:
        raise SyscallError(Errno.ESRCH)
    ps = target.ptrace
    if need_stop and (ps.stop is None or ps.listening):
        raise SyscallError(Errno.ESRCH)
    return target


def resume(tracee: Task, mode: Resume, sig: int) -> None:
    """PTRACE_CONT, SYSCALL, SYSEMU, SINGLESTEP, SYSEMU_SINGLESTEP.  Linux: ptrace_resume."""
    if not 0 <= sig <= 64:
        raise SyscallError(Errno.EIO)
    ps = tracee.ptrace
    assert ps is not None and ps.stop is not None
    ps.mode = mode
    st = ps.stop
    ps.stop = None
    _later(tracee, lambda: st.cont(sig))


def listen(tracee: Task) -> None:
    """PTRACE_LISTEN: a seized tracee at a group-stop stays stopped but may report again
    (the group continued, PTRACE_INTERRUPT)."""
    ps = tracee.ptrace
    assert ps is not None and ps.stop is not None
    si = ps.siginfo
    if not ps.seized or si is None or si.code >> 8 != P.PTRACE_EVENT_STOP:
        raise SyscallError(Errno.EIO)
    ps.listening = True
    ps.stop.reported = True
    if ps.trap_notify or not tracee.tg.stopped:
        ps.trap_notify = True
        _wake_listener(tracee)


def interrupt(tracee: Task) -> None:
    """PTRACE_INTERRUPT: a seized tracee traps (EVENT_STOP) as soon as it can."""
    ps = tracee.ptrace
    assert ps is not None
    if not ps.seized:
        raise SyscallError(Errno.EIO)
    ps.trap_stop = True
    if ps.stop is not None:
        if ps.listening:
            _wake_listener(tracee)
        return
    k = tracee.kernel
    if tracee.wake is not None:
        if tracee.interruptible:
            k.signal_wakeup(tracee)     # out of its sleep; the syscall restarts after the trap
    elif tracee.thread.running:
        k.platform.interrupt(tracee.thread)


# -- memory ---------------------------------------------------------------------------------


def access_vm(target: Task, addr: int, n: int, data: bytes | None,
              force: bool = True) -> bytes | int:
    """Reads `n` bytes at `addr` (data None) or writes `data`.  With `force`, as ptrace
    and /proc/PID/mem do (FOLL_FORCE): a private mapping's protection does not stop it
    (a read-only text page is written copy-on-write, as a breakpoint needs), a shared
    read-only one does; without, as process_vm_readv/writev, protections hold.  Goes
    as far as it can; returns what it read / the count written (short at the first
    page it cannot reach)."""
    mm = target.mm
    out = bytearray()
    done = 0
    total = n if data is None else len(data)
    while done < total:
        a = addr + done
        v = mm.find(a)
        if v is None or a >= 1 << 47:
            break
        chunk = min(total - done, v.end - a, _VM_CHUNK)
        need = PROT_READ if data is None else PROT_WRITE
        if data is not None and v.shared and not v.perms & PROT_WRITE:
            break
        if not force and not v.perms & need:
            break
        lo, hi = a & ~(PAGE - 1), (a + chunk + PAGE - 1) & ~(PAGE - 1)
        forced = not v.perms & need or (data is None and not v.perms & PROT_READ)
        try:
            if forced:
                mm.space.protect(lo, hi - lo, v.perms | need | PROT_READ)
            try:
                if data is None:
                    got = mm.space.read(a, chunk)
                    out += got
                    if len(got) != chunk:
                        break
                else:
                    w = mm.space.write(a, data[done:done + chunk])
                    if w != chunk:
                        done += max(w, 0)
                        break
            finally:
                if forced:
                    mm.space.protect(lo, hi - lo, v.perms)
        except OSError:
            break
        done += chunk
        if data is None:
            continue
    if data is None:
        return bytes(out)
    return done


def peek_word(target: Task, addr: int) -> int:
    got = access_vm(target, addr, 8, None)
    assert isinstance(got, bytes)
    if len(got) != 8:
        raise SyscallError(Errno.EIO)
    return int.from_bytes(got, "little")


def poke_word(target: Task, addr: int, word: int) -> None:
    if access_vm(target, addr, 0, (word & _M64).to_bytes(8, "little")) != 8:
        raise SyscallError(Errno.EIO)


# -- wait ------------------------------------------------------------------------------------


def tracer_of_group(tg: ThreadGroup, by: ThreadGroup) -> bool:
    """Whether a task of `tg` is traced by a task of `by` (whose child wait then leaves
    its stops to the ptrace side)."""
    return any(x.ptrace is not None and x.ptrace.tracer.tg is by for x in tg.tasks)


def wait_tracees(t: Task, match: Callable[[Task], bool], options: int, wexited: bool,
                 nowait: bool, nothread: bool) -> tuple[bool, tuple[Task, int, int] | None]:
    """The ptrace side of wait: (any eligible tracee, (tracee, kind, status) or None).
    kind 3: a ptrace stop (status: the stopped word), 0: an exit.  Tracees are eligible
    whatever __WCLONE/__WALL say (Linux 4.7+: "traced by us")."""
    del options
    tracers = [t] if nothread else list(t.tg.tasks)
    any_ = False
    for tr in tracers:
        for tracee in list(tr.tracees):
            if not match(tracee):
                continue
            ps = tracee.ptrace
            if ps is None:
                continue
            any_ = True
            if ps.exit_status is not None:
                if not wexited:
                    continue
                if tracee.tid == tracee.tg.tgid and not tracee.tg.zombie:
                    continue          # a leader's exit waits for its whole group
                st = ps.exit_status
                if not nowait:
                    _unlink(tracee)
                return True, (tracee, 0, st)
            s = ps.stop
            if s is not None and not s.reported:
                if not nowait:
                    s.reported = True
                return True, (tracee, 3, s.status)
    return any_, None
