"""Signals: sending, dequeueing, default actions, frames.  Linux: kernel/signal.c,
arch/x86/kernel/signal.c.

Delivery happens when a task is about to return to application code
(`deliver_pending`).  A handled signal gets a real rt_sigframe on the
application stack: siginfo, ucontext (with sigcontext and the saved mask) and
the whole XSAVE FP/extended state (arch/fpu.py: AVX, AVX-512, ... as the CPU
has them); the handler starts with a reset FPU, and rt_sigreturn restores all
of it.

Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import (ERESTART_RESTARTBLOCK, ERESTARTNOHAND, ERESTARTNOINTR,
                                     ERESTARTSYS, Errno)
from pyvisor.abi.linux.signal import (MINSIGSTKSZ, SA_NODEFER, SA_ONSTACK, SA_RESETHAND,
                                      SA_RESTART, SA_RESTORER, SA_SIGINFO, SI_KERNEL, SI_USER,
                                      SIG_DFL, SIG_IGN, SIGRTMIN, SS_DISABLE, SS_ONSTACK,
                                      UNBLOCKABLE, Signal, sigmask)
from pyvisor.sentry.arch import fpu
from pyvisor.sentry.arch import signal as arch_signal
from pyvisor.sentry.arch.syscall_args import c_int
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.memacct import SIGQUEUE_COST, Kind
from pyvisor.sentry.kernel.task import RLIMIT_SIGPENDING
from pyvisor.sentry.waitqueue import EVENT_IN

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task, ThreadGroup

_IGNORE_DEFAULT = {Signal.SIGCHLD, Signal.SIGCONT, Signal.SIGURG, Signal.SIGWINCH}
_STOP_DEFAULT = {Signal.SIGSTOP, Signal.SIGTSTP, Signal.SIGTTIN, Signal.SIGTTOU}
_CORE_DEFAULT = {Signal.SIGQUIT, Signal.SIGILL, Signal.SIGTRAP, Signal.SIGABRT, Signal.SIGBUS,
                 Signal.SIGFPE, Signal.SIGSEGV, Signal.SIGXCPU, Signal.SIGXFSZ, Signal.SIGSYS}
_SYNC_SIGNALS = sigmask(Signal.SIGSEGV) | sigmask(Signal.SIGBUS) | sigmask(Signal.SIGILL) | \
    sigmask(Signal.SIGFPE) | sigmask(Signal.SIGTRAP) | sigmask(Signal.SIGSYS)


@dataclass(frozen=True, slots=True)
class SigInfo:
    """siginfo_t, kept as its fields.  Linux: struct kernel_siginfo."""

    signo: int
    code: int = SI_USER
    errno: int = 0
    pid: int = 0
    uid: int = 0
    status: int = 0       # SIGCHLD
    addr: int = 0         # faults
    value: int = 0        # sigqueue / timers
    raw: bytes | None = None   # a host siginfo taken verbatim (faults)

    def pack(self) -> bytes:
        """The 128-byte siginfo_t.  Fields are stored as their C types store them
        (pid_t and int 32 bits, uid_t 32 bits unsigned, pointers and sigval 64 bits)."""
        if self.raw is not None:
            return self.raw
        head = struct.pack("<iii4x", c_int(self.signo), c_int(self.errno), c_int(self.code))
        if self.signo == Signal.SIGCHLD and self.code > 0:
            body = struct.pack("<iIiq q", c_int(self.pid), self.uid & _M32, c_int(self.status),
                               0, 0)
        elif self.signo in (Signal.SIGSEGV, Signal.SIGBUS, Signal.SIGFPE, Signal.SIGILL) \
                and self.code > 0:
            body = struct.pack("<Q", self.addr & _M64)
        else:
            body = struct.pack("<iIQ", c_int(self.pid), self.uid & _M32, self.value & _M64)
        return (head + body).ljust(128, b"\0")


_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def is_ignored(tg: ThreadGroup, sig: int) -> bool:
    act = tg.sighand.actions[sig]
    if act.handler == SIG_IGN:
        return True
    return act.handler == SIG_DFL and sig in _IGNORE_DEFAULT


def send_to_group(tg: ThreadGroup, info: SigInfo) -> None:
    """Queues a process-directed signal and wakes a thread that can take it."""
    if tg.zombie or not tg.tasks:
        return
    sig = info.signo
    kernel = tg.kernel
    if sig == Signal.SIGKILL:
        kernel.group_exit(tg, sig, killed=True)
        return
    if sig == Signal.SIGCONT:
        _continue_group(tg)
    elif sig in _STOP_DEFAULT:
        # A pending SIGCONT is cancelled by a stop signal and vice versa.
        tg.pending.pop(Signal.SIGCONT, None)
        tg.pending_mask &= ~sigmask(Signal.SIGCONT)
    if is_ignored(tg, sig) and sig != Signal.SIGCONT and \
            not (tg.leader.sigmask | tg.leader.real_blocked) & sigmask(sig) and \
            not any(x.ptrace is not None for x in tg.tasks):
        return      # blocked (signalfd) or traced, even ignored signals queue (sig_ignored)
    if sig < 32 and tg.pending_mask & sigmask(sig):
        return      # standard signals do not queue
    if not _enqueue(tg, tg, info):
        return
    bit = sigmask(sig)
    for t in tg.tasks:
        if not t.sigmask & bit and not t.exited:
            kernel.signal_wakeup(t)
            return
    # Everyone blocks it: it stays pending.


def send_to_task(t: Task, info: SigInfo) -> None:
    """Queues a thread-directed signal (tgkill, faults)."""
    tg = t.tg
    if tg.zombie or t.exited:
        return
    sig = info.signo
    if sig == Signal.SIGKILL:
        tg.kernel.group_exit(tg, sig, killed=True)
        return
    if sig == Signal.SIGCONT:
        _continue_group(tg)
    if is_ignored(tg, sig) and not (sigmask(sig) & _SYNC_SIGNALS) and t.ptrace is None \
            and not (t.sigmask | t.real_blocked) & sigmask(sig):
        return
    if sig < 32 and t.pending_mask & sigmask(sig):
        return
    if not _enqueue(tg, t, info):
        return
    if not t.sigmask & sigmask(sig):
        tg.kernel.signal_wakeup(t)


# -- the pending queues ------------------------------------------------------------------
#
# Standard signals queue at most one siginfo each (bounded by design).  Real-time
# signals queue one per send: each queued one counts against RLIMIT_SIGPENDING (for
# the whole sandbox, as Linux counts it for the whole user) and is charged to the
# Sentry memory account.  Past either, sigqueue/tgkill get EAGAIN, and kill() still
# marks the signal pending but without its siginfo (Linux: __send_signal_locked,
# "a silent loss of information"): one uncharged entry, _LOST[sig].

_LOST: dict[int, SigInfo] = {}


def _lost(sig: int) -> SigInfo:
    info = _LOST.get(sig)
    if info is None:
        info = _LOST[sig] = SigInfo(sig, SI_USER)
    return info


def _enqueue(tg: ThreadGroup, source: Task | ThreadGroup, info: SigInfo) -> bool:
    """Queues `info` on `source` (a task of `tg`, or `tg` itself).  False if it was
    dropped; SyscallError(EAGAIN) if a real-time signal does not fit and may not lose
    its siginfo."""
    sig = info.signo
    bit = sigmask(sig)
    if sig >= SIGRTMIN:
        acct = tg.kernel.memory
        queued = acct.by_kind[Kind.SIGNAL] // SIGQUEUE_COST
        if queued >= tg.rlimits[RLIMIT_SIGPENDING][0] or \
                not acct.try_charge(Kind.SIGNAL, SIGQUEUE_COST):
            if info.code != SI_USER:
                raise SyscallError(Errno.EAGAIN)
            if source.pending_mask & bit:
                return False
            info = _lost(sig)
    source.pending.setdefault(sig, []).append(info)
    source.pending_mask |= bit
    tg.sighand.signalfd_wq.notify(EVENT_IN)
    return True


def _forget(source: Task | ThreadGroup, info: SigInfo) -> None:
    """`info` left `source`'s pending queue: return its charge."""
    if info.signo >= SIGRTMIN and info is not _LOST.get(info.signo):
        source.kernel.memory.uncharge(Kind.SIGNAL, SIGQUEUE_COST)


def take(source: Task | ThreadGroup, sig: int) -> SigInfo:
    """Dequeues the oldest pending instance of `sig` from `source` (which has one)."""
    q = source.pending[sig]
    info = q.pop(0)
    if not q:
        del source.pending[sig]
        source.pending_mask &= ~sigmask(sig)
    _forget(source, info)
    return info


def flush(source: Task | ThreadGroup, sig: int) -> None:
    """Discards every pending instance of `sig` (a newly ignored signal)."""
    for info in source.pending.pop(sig, ()):
        _forget(source, info)
    source.pending_mask &= ~sigmask(sig)


def flush_all(source: Task | ThreadGroup) -> None:
    """Discards everything pending on `source` (a dead thread or process)."""
    pending, source.pending = source.pending, {}
    source.pending_mask = 0
    for q in pending.values():
        for info in q:
            _forget(source, info)


def _continue_group(tg: ThreadGroup) -> None:
    for s in (Signal.SIGSTOP, Signal.SIGTSTP, Signal.SIGTTIN, Signal.SIGTTOU):
        tg.pending.pop(s, None)
        tg.pending_mask &= ~sigmask(s)
        for t in tg.tasks:           # thread-directed ones too (Linux: prepare_signal)
            if t.pending_mask & sigmask(s):
                flush(t, s)
    if tg.stopped:
        tg.stopped = False
        tg.stop_report = 0xFFFF   # WIFCONTINUED
        tg.kernel.notify_parent_stop(tg, continued=True)
        for t in tg.tasks:
            if t.ptrace is not None:
                from pyvisor.sentry.kernel import ptrace
                ptrace.group_continued(t)
            tg.kernel.resume_stopped(t)


def has_deliverable(t: Task) -> bool:
    """Whether a signal could be delivered to `t` now."""
    return bool((t.pending_mask | t.tg.pending_mask) & ~t.sigmask)


def _dequeue(t: Task) -> SigInfo | None:
    mask = ~t.sigmask
    for source in (t, t.tg):
        avail = source.pending_mask & mask
        if not avail:
            continue
        # Synchronous signals first, then the lowest number (as Linux).
        sync = avail & _SYNC_SIGNALS
        pick = sync if sync else avail
        sig = (pick & -pick).bit_length()
        return take(source, sig)
    return None


def deliver_pending(t: Task, syscall_ret: int | None,
                    injected: SigInfo | None = None) -> bool:
    """Acts on pending signals before `t` returns to user mode.

    `syscall_ret` is the raw return of the syscall being completed (for
    restart handling), or None outside a syscall.  `injected`: the signal a
    tracer let through a signal-delivery stop, acted on first.  Returns False
    if the task must not be resumed (it died, the group stopped, or it is in a
    ptrace stop).
    """
    regs = t.regs
    kernel = t.kernel
    handled = False
    while True:
        if injected is not None:
            info, injected = injected, None
        else:
            info = _dequeue(t)
            if info is None:
                break
            if t.ptrace is not None and info.signo != Signal.SIGKILL:
                from pyvisor.sentry.kernel import ptrace
                ptrace.signal_stop(t, info, syscall_ret)     # the tracer decides
                return False
        sig = info.signo
        act = t.tg.sighand.actions[sig]
        if act.handler == SIG_IGN:
            continue
        if act.handler == SIG_DFL:
            if sig in _IGNORE_DEFAULT:
                continue
            if sig in _STOP_DEFAULT:
                kernel.group_stop(t.tg, sig)
                if syscall_ret is not None and _is_restart(syscall_ret):
                    _restart(t, syscall_ret)
                return False
            kernel.group_exit(t.tg, sig, killed=True, core=sig in _CORE_DEFAULT)
            return False
        # A handler: build the frame.
        if syscall_ret is not None and _is_restart(syscall_ret):
            if syscall_ret == -ERESTARTNOINTR or \
                    (syscall_ret == -ERESTARTSYS and act.flags & SA_RESTART):
                _restart(t, syscall_ret)
            else:
                regs.rax = (-Errno.EINTR) & 0xFFFFFFFFFFFFFFFF
        syscall_ret = None
        if not setup_frame(t, info, act):
            # Could not write the frame: the task dies with SIGSEGV (as Linux).
            kernel.group_exit(t.tg, Signal.SIGSEGV, killed=True, core=True)
            return False
        if act.flags & SA_RESETHAND:
            act.handler, act.flags = SIG_DFL, act.flags & ~SA_SIGINFO
        handled = True
        break
    if not handled and syscall_ret is not None and _is_restart(syscall_ret):
        _restart(t, syscall_ret)
    if not handled and t.saved_sigmask is not None:
        t.sigmask, t.saved_sigmask = t.saved_sigmask, None
    return True


def _is_restart(ret: int) -> bool:
    return ret in (-ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK)


def _restart(t: Task, ret: int) -> None:
    """Re-executes the syscall instruction (rip points just past it)."""
    arch_signal.restart_syscall(t.regs, ret == -ERESTART_RESTARTBLOCK)


SS_AUTODISARM = 1 << 31


def setup_frame(t: Task, info: SigInfo, act: object) -> bool:
    """Pushes an rt_sigframe and points the registers at the handler."""
    from pyvisor.sentry.kernel.task import SigAction
    assert isinstance(act, SigAction)
    regs = t.regs
    if not act.flags & SA_RESTORER:
        return False
    sig = info.signo
    sp = regs.rsp
    ss_sp, ss_flags, ss_size = t.altstack
    on_alt = ss_size and not ss_flags & SS_DISABLE and ss_sp < sp <= ss_sp + ss_size
    entering = False
    if act.flags & SA_ONSTACK and ss_size and not ss_flags & SS_DISABLE and not on_alt:
        sp = ss_sp + ss_size
        entering = True
    else:
        sp -= arch_signal.RED_ZONE
    fp = fpu.to_frame(t.kernel.get_fpregs(t))
    frame, fp_addr = arch_signal.frame_addresses(sp, len(fp))
    if frame < 0 or fp_addr + len(fp) > 1 << 64:
        # The frame would start below address 0 (rsp near 0) or end past 2^64 (an
        # alternate stack at the top of the address space): Linux's unsigned sp wraps,
        # access_ok refuses the frame and the task dies of SIGSEGV.
        return False
    if (on_alt or entering) and not ss_sp < frame <= ss_sp + ss_size:
        # The frame would run off the bottom of the alternate stack: no frame, the
        # task dies of SIGSEGV rather than scribble below it.  Linux: get_sigframe.
        return False
    saved_mask = t.sigmask if t.saved_sigmask is None else t.saved_sigmask
    t.saved_sigmask = None
    alt_flags = SS_ONSTACK if on_alt else (ss_flags if ss_size else SS_DISABLE)
    data = arch_signal.pack_frame(regs, act.restorer, (ss_sp, alt_flags, ss_size), saved_mask,
                                  info.pack(), info.addr, fp_addr)
    try:
        t.copy_out(fp_addr, fp)
        t.copy_out(frame, data)
    except SyscallError:
        return False
    # The handler starts with a reset FPU.  Linux: fpu__clear_user_states.
    t.kernel.set_fpregs(t, fpu.initial_state())
    arch_signal.enter_handler(regs, frame, act.handler, sig)
    newmask = t.sigmask | act.mask
    if not act.flags & SA_NODEFER:
        newmask |= sigmask(sig)
    t.sigmask = newmask & ~UNBLOCKABLE
    return True


def sigreturn(t: Task) -> bool:
    """rt_sigreturn: restores mask, registers, FP state and the alternate stack from
    the frame at rsp-8.  Linux: arch/x86/kernel/signal_64.c (rt_sigreturn,
    restore_sigcontext) and fpu__restore_sig.

    Returns False for a bad frame (unreadable, or FP state the FPU would refuse);
    the caller then forces SIGSEGV, as Linux's signal_fault.  As in Linux, what was
    restored before the failure stays restored.  Unlike Linux, cs and ss keep their
    values (the frame cannot move the task to another code segment).
    """
    regs = t.regs
    frame = arch_signal.sigreturn_frame(regs)
    try:
        raw = t.copy_in(frame + arch_signal.UC_OFF, arch_signal.RESTORE_SIZE)
    except SyscallError:
        return False
    saved = arch_signal.restore(regs, raw)
    t.sigmask = saved.mask & ~UNBLOCKABLE
    t.restart_block = None
    ss_sp, ss_flags, ss_size = saved.stack
    fp_addr = saved.fp_addr
    if not fp_addr:
        fp: bytes | None = fpu.initial_state()
    else:
        fp = _read_frame_fpstate(t, fp_addr)
    if fp is None or not t.kernel.set_fpregs(t, fp):
        t.kernel.set_fpregs(t, fpu.initial_state())   # fpu__clear_user_states
        return False
    try:
        set_altstack(t, ss_sp, ss_flags, ss_size)
    except SyscallError:
        pass                                       # Linux squashes all but EFAULT
    return True


def _read_frame_fpstate(t: Task, fp_addr: int) -> bytes | None:
    """The FP state a frame at `fp_addr` holds, as the platform loads it; None if it
    cannot be read or XRSTOR/FXRSTOR would fault on it.  A frame whose software bytes
    do not describe an XSAVE image (a hand-made frame, an old program) restores the
    legacy fxsave part only, the rest reset.  Linux: __fpu_restore_sig."""
    try:
        legacy = t.copy_in(fp_addr, fpu.FXSAVE_SIZE)
    except SyscallError:
        return None
    size = fpu.frame_xstate_size(legacy)
    if size is not None:
        if fp_addr % fpu.XSAVE_ALIGN:
            return None                              # xrstor: #GP
        try:
            image = legacy + t.copy_in(fp_addr + fpu.FXSAVE_SIZE, size - fpu.FXSAVE_SIZE)
            magic2 = t.copy_in(fp_addr + size, fpu.FP_XSTATE_MAGIC2_SIZE)
        except SyscallError:
            return None
        if int.from_bytes(magic2, "little") == fpu.FP_XSTATE_MAGIC2:
            (xfeatures,) = struct.unpack_from("<Q", legacy, fpu.SW_BYTES_OFFSET + 8)
            return fpu.from_frame(image, xfeatures)
    if fp_addr % fpu.FXSAVE_ALIGN:
        return None                                  # fxrstor: #GP
    return fpu.from_frame(legacy, 0)


def set_altstack(t: Task, sp: int, flags: int, size: int) -> None:
    """sigaltstack's set half.  Linux: do_sigaltstack."""
    cur_sp, cur_flags, cur_size = t.altstack
    if cur_size and not cur_flags & SS_DISABLE and cur_sp < t.regs.rsp <= cur_sp + cur_size:
        raise SyscallError(Errno.EPERM)            # on the alternate stack now
    if flags & ~SS_AUTODISARM not in (0, SS_ONSTACK, SS_DISABLE):
        raise SyscallError(Errno.EINVAL)
    if flags & SS_DISABLE:
        t.altstack = (0, SS_DISABLE, 0)
        return
    if size < MINSIGSTKSZ:
        raise SyscallError(Errno.ENOMEM)
    t.altstack = (sp, 0, size)


def force_sig(t: Task, info: SigInfo) -> None:
    """A signal the task cannot refuse (a fault, a bad signal frame): if it is blocked
    or ignored, its action is reset to the default and it is unblocked.
    Linux: force_sig_info_to_task."""
    sig = info.signo
    act = t.tg.sighand.actions[sig]
    if t.sigmask & sigmask(sig) or act.handler == SIG_IGN:
        act.handler = SIG_DFL
        t.sigmask &= ~sigmask(sig)
    send_to_task(t, info)


def kernel_info(sig: int, code: int = SI_KERNEL, addr: int = 0) -> SigInfo:
    return SigInfo(sig, code, addr=addr)


def fault_info(sig: int, raw: bytes) -> SigInfo:
    """The application siginfo for a fault stop, from the raw Linux siginfo the
    platform reported (si_code and si_addr kept)."""
    raw = raw.ljust(128, b"\0")
    return SigInfo(sig, struct.unpack_from("<i", raw, 8)[0], addr=struct.unpack_from("<Q", raw, 16)[0],
                   raw=raw)


