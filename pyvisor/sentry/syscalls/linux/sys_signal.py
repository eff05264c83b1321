"""Signal syscalls.  Linux: kernel/signal.c, kernel/time/itimer.c."""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import ERESTARTNOHAND, Errno
from pyvisor.abi.linux.signal import (NSIG, SI_TKILL, SI_USER, SIG_BLOCK, SIG_DFL,
                                      SIG_SETMASK, SIG_UNBLOCK, SS_DISABLE, SS_ONSTACK,
                                      UNBLOCKABLE, Signal)
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.kernel import cputimers
from pyvisor.sentry.kernel.creds import may_kill
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.errors import Interrupted, SyscallControl, SyscallError, TimedOut
from pyvisor.sentry.kernel.task import SigAction, Task, ThreadGroup, is_init, sees
from pyvisor.sentry.syscalls.linux.usertime import copy_in_timespec

_SIGACTION = struct.Struct("<QQQQ")   # handler, flags, restorer, mask


def sys_rt_sigaction(t: Task, r: SyscallArguments) -> int:
    """Implements rt_sigaction(2)."""
    sig, new, old, size = r.int32(0), r.pointer(1), r.pointer(2), r.uint64(3)
    if size != 8 or sig < 1 or sig > NSIG:
        raise SyscallError(Errno.EINVAL)
    if new and sig in (Signal.SIGKILL, Signal.SIGSTOP):
        raise SyscallError(Errno.EINVAL)
    act = t.tg.sighand.actions[sig]
    newact = None
    if new:
        h, f, rest, m = _SIGACTION.unpack(t.copy_in(new, 32))
        newact = SigAction(h, f, rest, m & ~UNBLOCKABLE)
    if old:
        t.copy_out(old, _SIGACTION.pack(act.handler, act.flags, act.restorer, act.mask))
    if newact is not None:
        t.tg.sighand.actions[sig] = newact
        if ksignal.is_ignored(t.tg, sig):
            # Pending instances of a newly ignored signal are discarded.
            for src in [t.tg, *t.tg.tasks]:
                ksignal.flush(src, sig)
    return 0


def sys_rt_sigprocmask(t: Task, r: SyscallArguments) -> int:
    """Implements rt_sigprocmask(2)."""
    how, new, old, size = r.int32(0), r.pointer(1), r.pointer(2), r.uint64(3)
    if size != 8:
        raise SyscallError(Errno.EINVAL)
    mask = None
    if new:
        (mask,) = struct.unpack("<Q", t.copy_in(new, 8))
        if how not in (SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK):
            raise SyscallError(Errno.EINVAL)
    if old:
        t.copy_out(old, struct.pack("<Q", t.sigmask))
    if mask is not None:
        if how == SIG_BLOCK:
            t.sigmask |= mask
        elif how == SIG_UNBLOCK:
            t.sigmask &= ~mask
        else:
            t.sigmask = mask
        t.sigmask &= ~UNBLOCKABLE & 0xFFFFFFFFFFFFFFFF
    return 0


def sys_rt_sigreturn(t: Task, r: SyscallArguments) -> SyscallControl:
    """Implements rt_sigreturn(2).  A bad frame forces SIGSEGV (Linux: signal_fault)."""
    if not ksignal.sigreturn(t):
        t.regs.rax = 0
        ksignal.force_sig(t, ksignal.kernel_info(Signal.SIGSEGV))
    return SyscallControl.SIGRETURN


def sys_rt_sigpending(t: Task, r: SyscallArguments) -> int:
    t.copy_out(r.pointer(0), struct.pack("<Q", (t.pending_mask | t.tg.pending_mask) & t.sigmask))
    return 0


def sys_sigaltstack(t: Task, r: SyscallArguments) -> int:
    """Implements sigaltstack(2)."""
    new, old = r.pointer(0), r.pointer(1)
    sp, flags, size = t.altstack
    on = size and not flags & SS_DISABLE and sp < t.regs.rsp <= sp + size
    if new:
        nsp, nflags, _, nsize = struct.unpack("<QiiQ", t.copy_in(new, 24))
        ksignal.set_altstack(t, nsp, nflags & 0xFFFFFFFF, nsize)
    if old:
        t.copy_out(old, struct.pack("<QiiQ", sp, SS_ONSTACK if on else flags, 0, size))
    return 0


def _find_group(t: Task, pid: int) -> list:
    k = t.kernel
    if pid > 0:
        # A zombie still holds its pid: kill succeeds and does nothing (Linux).
        tg = k.groups.get(pid)
        if tg is None:                       # a thread's id names its process (kill_pid_info)
            task = k.tasks_by_tid.get(pid)
            tg = task.tg if task is not None and not task.exited else None
        if tg is None or tg.reaped or not sees(t.tg, tg):
            raise SyscallError(Errno.ESRCH)
        return [tg]
    if pid == 0:
        pgid = t.tg.pgid
    elif pid == -1:
        return [g for g in k.groups.values() if not is_init(g) and g is not t.tg
                and not g.zombie and sees(t.tg, g)]
    else:
        pgid = -pid
    tgs = [g for g in k.groups.values() if g.pgid == pgid and not g.zombie and sees(t.tg, g)]
    if not tgs:
        raise SyscallError(Errno.ESRCH)
    return tgs


def _send_ok(t: Task, sig: int) -> None:
    """EINVAL unless `sig` is 0 (a permission probe) or a signal.  Linux: valid_signal."""
    if sig < 0 or sig > NSIG:
        raise SyscallError(Errno.EINVAL)


def _init_ignores(t: Task, tg: ThreadGroup, sig: int) -> bool:
    """PID 1 ignores signals it has no handler for when another process of the
    sandbox sends them (Linux: SIGNAL_UNKILLABLE in sig_task_ignored).  Unlike
    Linux, init may still signal itself (`kill $$` in a top-level shell)."""
    return is_init(tg) and tg is not t.tg and tg.sighand.actions[sig].handler == SIG_DFL


def _may_signal(t: Task, tg: ThreadGroup, sig: int) -> bool:
    """check_kill_permission for a signal from user space: our own process, matching
    uids or CAP_KILL; SIGCONT within the session."""
    if tg is t.tg or not tg.tasks:
        return True
    if may_kill(t.creds, tg.leader.creds):
        return True
    return sig == Signal.SIGCONT and tg.sid == t.tg.sid


def sys_kill(t: Task, r: SyscallArguments) -> int:
    """Implements kill(2).  A group (pid 0 or < -1) fails with EPERM only if no member
    could be signalled; kill(-1) skips those it may not signal (kill_something_info)."""
    pid, sig = r.int32(0), r.int32(1)
    _send_ok(t, sig)
    tgs = _find_group(t, pid)
    allowed = [tg for tg in tgs if _may_signal(t, tg, sig)]
    if not allowed and pid != -1:
        raise SyscallError(Errno.EPERM)
    if sig == 0:
        return 0
    for tg in allowed:
        if not _init_ignores(t, tg, sig):
            ksignal.send_to_group(tg, ksignal.SigInfo(sig, SI_USER, pid=t.tg.tgid,
                                                      uid=t.creds.uid))
    return 0


def _tkill(t: Task, tgid: int, tid: int, info: ksignal.SigInfo) -> int:
    _send_ok(t, info.signo)
    target = t.kernel.tasks_by_tid.get(tid)
    if target is None or (tgid > 0 and target.tg.tgid != tgid) or target.exited or \
            not sees(t.tg, target.tg):
        raise SyscallError(Errno.ESRCH)
    if not _may_signal(t, target.tg, info.signo):
        raise SyscallError(Errno.EPERM)
    if info.signo == 0 or _init_ignores(t, target.tg, info.signo):
        return 0
    ksignal.send_to_task(target, info)
    return 0


def sys_tgkill(t: Task, r: SyscallArguments) -> int:
    """Implements tgkill(2)."""
    tgid, tid, sig = r.int32(0), r.int32(1), r.int32(2)
    if tgid <= 0 or tid <= 0:
        raise SyscallError(Errno.EINVAL)
    return _tkill(t, tgid, tid, ksignal.SigInfo(sig, SI_TKILL, pid=t.tg.tgid, uid=t.creds.uid))


def sys_tkill(t: Task, r: SyscallArguments) -> int:
    """Implements tkill(2)."""
    tid, sig = r.int32(0), r.int32(1)
    if tid <= 0:
        raise SyscallError(Errno.EINVAL)
    return _tkill(t, -1, tid, ksignal.SigInfo(sig, SI_TKILL, pid=t.tg.tgid, uid=t.creds.uid))


def _queued_info(t: Task, raw: bytes, sig: int, target: int) -> ksignal.SigInfo:
    """The siginfo of rt_[tg]sigqueueinfo.  Only a task signalling itself may
    pretend to be the kernel or kill/tgkill (Linux: do_rt_sigqueueinfo).
    Preconditions: `sig` is checked by the caller before the signal is sent."""
    (code,) = struct.unpack_from("<i", raw, 8)
    if (code >= 0 or code == SI_TKILL) and target != t.tid:
        raise SyscallError(Errno.EPERM)
    # The caller's siginfo is delivered as it is, but for si_signo (__copy_siginfo_from_user).
    return ksignal.SigInfo(sig, code, raw=struct.pack("<i", sig) + raw[4:])


def sys_rt_sigqueueinfo(t: Task, r: SyscallArguments) -> int:
    """Implements rt_sigqueueinfo(2)."""
    pid, sig = r.int32(0), r.int32(1)
    info = _queued_info(t, t.copy_in(r.pointer(2), 128), sig, pid)
    _send_ok(t, sig)
    tg = t.kernel.groups.get(pid) if pid > 0 else None
    if tg is None or tg.zombie or not sees(t.tg, tg):
        raise SyscallError(Errno.ESRCH)
    if not _may_signal(t, tg, sig):
        raise SyscallError(Errno.EPERM)
    if sig and not _init_ignores(t, tg, sig):
        ksignal.send_to_group(tg, info)
    return 0


def sys_rt_tgsigqueueinfo(t: Task, r: SyscallArguments) -> int:
    """Implements rt_tgsigqueueinfo(2)."""
    tgid, tid, sig = r.int32(0), r.int32(1), r.int32(2)
    raw = t.copy_in(r.pointer(3), 128)
    if tgid <= 0 or tid <= 0:
        raise SyscallError(Errno.EINVAL)
    return _tkill(t, tgid, tid, _queued_info(t, raw, sig, tid))


async def sys_pause(t: Task, r: SyscallArguments) -> int:
    """Implements pause(2): sleeps until a signal; always EINTR (ERESTARTNOHAND)."""
    try:
        await t.kernel.block_on(t, None)
    except Interrupted:
        pass
    raise SyscallError(ERESTARTNOHAND)


async def sys_rt_sigsuspend(t: Task, r: SyscallArguments) -> int:
    """Implements rt_sigsuspend(2)."""
    (mask,) = struct.unpack("<Q", t.copy_in(r.pointer(0), 8))
    if r.uint64(1) != 8:
        raise SyscallError(Errno.EINVAL)
    old = t.sigmask
    t.sigmask = mask & ~UNBLOCKABLE
    try:
        await t.kernel.block_on(t, None)
    except Interrupted:
        pass
    # The handler runs with the temporary mask; its frame records the old one.
    t.saved_sigmask = old
    _restore_after_signal(t, old)
    raise SyscallError(ERESTARTNOHAND)


def _restore_after_signal(t: Task, old: int) -> None:
    """The handler runs under the temporary mask; its frame saves `old` (setup_frame)."""
    if not ksignal.has_deliverable(t):
        t.sigmask = old
        t.saved_sigmask = None


async def sys_rt_sigtimedwait(t: Task, r: SyscallArguments) -> int:
    """Implements rt_sigtimedwait(2)."""
    (mask,) = struct.unpack("<Q", t.copy_in(r.pointer(0), 8))
    info_addr, ts = r.pointer(1), r.pointer(2)
    deadline = None
    if ts:
        deadline = t.kernel.now() + copy_in_timespec(t, ts)
    mask &= ~UNBLOCKABLE
    while True:
        for src in (t, t.tg):
            avail = src.pending_mask & mask
            if avail:
                sig = (avail & -avail).bit_length()
                info = ksignal.take(src, sig)
                if info_addr:
                    t.copy_out(info_addr, info.pack())
                return sig
        old = t.sigmask
        t.sigmask &= ~mask
        t.real_blocked = old
        try:
            await t.kernel.block_on(t, None, deadline=deadline)
        except TimedOut:
            raise SyscallError(Errno.EAGAIN) from None
        except Interrupted:
            if not ((t.pending_mask | t.tg.pending_mask) & mask):
                t.sigmask = old
                raise
        finally:
            t.sigmask = old
            t.real_blocked = 0


def _itimer_fire(tg) -> None:  # type: ignore[no-untyped-def]
    st = tg.itimer_real
    if st is None or tg.zombie:
        return
    ksignal.send_to_group(tg, ksignal.SigInfo(Signal.SIGALRM, 0x80))
    interval = getattr(st, "interval", 0)
    if interval:
        k = tg.kernel
        tm = k.add_timer(st.deadline + interval, lambda: _itimer_fire(tg))
        tm.interval = interval  # type: ignore[attr-defined]
        tg.itimer_real = tm
    else:
        tg.itimer_real = None


def _set_itimer(t: Task, value_ns: int, interval_ns: int) -> tuple[int, int]:
    tg = t.tg
    k = t.kernel
    old = tg.itimer_real
    remaining = 0
    old_interval = 0
    if old is not None and not old.cancelled:
        remaining = max(0, old.deadline - k.now())
        old_interval = getattr(old, "interval", 0)
        old.cancelled = True
    tg.itimer_real = None
    if value_ns:
        tm = k.add_timer(k.now() + value_ns, lambda: _itimer_fire(tg))
        tm.interval = interval_ns  # type: ignore[attr-defined]
        tg.itimer_real = tm
    return remaining, old_interval


def sys_alarm(t: Task, r: SyscallArguments) -> int:
    """Implements alarm(2)."""
    secs = r.uint64(0) & 0xFFFFFFFF
    remaining, _ = _set_itimer(t, secs * 10**9, 0)
    return (remaining + 999_999_999) // 10**9 if remaining else 0


def _pack_itimerval(interval: int, value: int) -> bytes:
    """struct itimerval, rounding ns up to whole microseconds (Linux: ns_to_timeval
    of a CPU itimer rounds up so an armed timer never reads as zero)."""
    iu, vu = (interval + 999) // 1000, (value + 999) // 1000
    return struct.pack("<qqqq", iu // 10**6, iu % 10**6, vu // 10**6, vu % 10**6)


def sys_setitimer(t: Task, r: SyscallArguments) -> int:
    """Implements setitimer(2); ITIMER_VIRTUAL/PROF are kernel/cputimers.py's."""
    which, new, old = r.int32(0), r.pointer(1), r.pointer(2)
    if which not in (0, 1, 2):
        raise SyscallError(Errno.EINVAL)
    if new:
        isec, iusec, vsec, vusec = struct.unpack("<qqqq", t.copy_in(new, 32))
        if not (0 <= iusec < 10**6 and 0 <= vusec < 10**6) or isec < 0 or vsec < 0:
            raise SyscallError(Errno.EINVAL)
    if which != 0:
        if new:
            rem, oint = cputimers.set_itimer(t.tg, which, vsec * 10**9 + vusec * 1000,
                                             isec * 10**9 + iusec * 1000)
        else:
            rem, oint = cputimers.get_itimer(t.tg, which)
        if old:
            t.copy_out(old, _pack_itimerval(oint, rem))
        return 0
    if new:
        rem, oint = _set_itimer(t, vsec * 10**9 + vusec * 1000, isec * 10**9 + iusec * 1000)
    else:
        tm = t.tg.itimer_real
        rem = max(0, tm.deadline - t.kernel.now()) if tm is not None and not tm.cancelled else 0
        oint = getattr(tm, "interval", 0) if tm is not None else 0
    if old:
        t.copy_out(old, struct.pack("<qqqq", oint // 10**9, (oint % 10**9) // 1000,
                                    rem // 10**9, (rem % 10**9) // 1000))
    return 0


def sys_getitimer(t: Task, r: SyscallArguments) -> int:
    which, cur = r.int32(0), r.pointer(1)
    if which not in (0, 1, 2):
        raise SyscallError(Errno.EINVAL)
    if which != 0:
        t.copy_out(cur, _pack_itimerval(*reversed(cputimers.get_itimer(t.tg, which))))
        return 0
    tm = t.tg.itimer_real
    rem = max(0, tm.deadline - t.kernel.now()) if tm is not None and not tm.cancelled else 0
    oint = getattr(tm, "interval", 0) if tm is not None else 0
    t.copy_out(cur, struct.pack("<qqqq", oint // 10**9, (oint % 10**9) // 1000,
                                rem // 10**9, (rem % 10**9) // 1000))
    return 0


# -- signalfd -----------------------------------------------------------------------------

SFD_CLOEXEC, SFD_NONBLOCK = 0o2000000, 0o4000


def _signalfd(t: Task, fd: int, mask_addr: int, size: int, flags: int) -> int:
    """signalfd4: a new signalfd (fd -1) or a new mask for an existing one."""
    from pyvisor.abi.linux.fcntl import O_RDWR
    from pyvisor.sentry.kernel.signalfd import SignalFD
    from pyvisor.sentry.syscalls.linux.sys_poll import anon_file
    if size != 8 or flags & ~(SFD_CLOEXEC | SFD_NONBLOCK):
        raise SyscallError(Errno.EINVAL)
    (mask,) = struct.unpack("<Q", t.copy_in(mask_addr, 8))
    if fd != -1:
        impl = t.fd_table.get(fd).impl
        if not isinstance(impl, SignalFD):
            raise SyscallError(Errno.EINVAL)
        impl.set_mask(mask)
        return fd
    f = anon_file(b"[signalfd]", SignalFD(t.kernel, mask, t.tg.sighand.signalfd_wq),
                  O_RDWR | (flags & SFD_NONBLOCK))
    try:
        return t.fd_table.install(f, cloexec=bool(flags & SFD_CLOEXEC))
    except SyscallError:
        f.decref()
        raise


def sys_signalfd4(t: Task, r: SyscallArguments) -> int:
    """Implements signalfd4(2)."""
    return _signalfd(t, r.int32(0), r.pointer(1), r.uint64(2), r.int32(3))


def sys_signalfd(t: Task, r: SyscallArguments) -> int:
    """Implements signalfd(2)."""
    return _signalfd(t, r.int32(0), r.pointer(1), r.uint64(2), 0)


# -- pidfds ---------------------------------------------------------------------------------


def new_pidfd(t: Task, tg: ThreadGroup, nonblock: bool) -> int:
    """Installs a pidfd for `tg` (close-on-exec, as Linux makes them)."""
    from pyvisor.abi.linux.fcntl import O_NONBLOCK, O_RDWR
    from pyvisor.sentry.kernel.pidfd import PidFD
    from pyvisor.sentry.syscalls.linux.sys_poll import anon_file
    f = anon_file(b"[pidfd]", PidFD(tg), O_RDWR | (O_NONBLOCK if nonblock else 0))
    try:
        return t.fd_table.install(f, cloexec=True)
    except SyscallError:
        f.decref()
        raise


def pidfd_group(t: Task, fd: int) -> ThreadGroup:
    """The process a pidfd names; EBADF if `fd` is not a pidfd."""
    from pyvisor.sentry.kernel.pidfd import PidFD
    impl = t.fd_table.get(fd).impl
    if not isinstance(impl, PidFD):
        raise SyscallError(Errno.EBADF)
    return impl.tg


def sys_pidfd_open(t: Task, r: SyscallArguments) -> int:
    """Implements pidfd_open(2)."""
    from pyvisor.sentry.kernel.pidfd import PIDFD_NONBLOCK, PIDFD_THREAD
    pid, flags = r.int32(0), r.uint32(1)
    if flags & ~(PIDFD_NONBLOCK | PIDFD_THREAD) or pid <= 0:
        raise SyscallError(Errno.EINVAL)
    task = t.kernel.tasks_by_tid.get(pid)
    tg = t.kernel.groups.get(pid)
    if task is None and (tg is None or tg.reaped):
        raise SyscallError(Errno.ESRCH)
    if tg is None:
        if not flags & PIDFD_THREAD:
            raise SyscallError(Errno.ENOENT)       # not a thread-group leader
        assert task is not None
        tg = task.tg
    return new_pidfd(t, tg, bool(flags & PIDFD_NONBLOCK))


PIDFD_SIGNAL_THREAD, PIDFD_SIGNAL_THREAD_GROUP, PIDFD_SIGNAL_PROCESS_GROUP = 1, 2, 4


def sys_pidfd_send_signal(t: Task, r: SyscallArguments) -> int:
    """Implements pidfd_send_signal(2): to the process (the default), its leader
    thread, or its whole process group (at most one PIDFD_SIGNAL_* flag)."""
    fd, sig, info_addr, flags = r.int32(0), r.int32(1), r.pointer(2), r.uint32(3)
    if flags & ~(PIDFD_SIGNAL_THREAD | PIDFD_SIGNAL_THREAD_GROUP |
                 PIDFD_SIGNAL_PROCESS_GROUP) or flags & (flags - 1):
        raise SyscallError(Errno.EINVAL)
    tg = pidfd_group(t, fd)
    _send_ok(t, sig)
    if info_addr:
        raw = t.copy_in(info_addr, 128)
        (signo,) = struct.unpack_from("<i", raw, 0)
        if signo != sig:
            raise SyscallError(Errno.EINVAL)
        info = _queued_info(t, raw, sig, tg.tgid if tg is t.tg else -1)
    else:
        info = ksignal.SigInfo(sig, SI_USER, pid=t.tg.tgid, uid=t.creds.uid)
    if tg.reaped:
        raise SyscallError(Errno.ESRCH)
    if not tg.zombie and not _may_signal(t, tg, sig):
        raise SyscallError(Errno.EPERM)
    if not sig or tg.zombie:
        return 0
    if flags == PIDFD_SIGNAL_THREAD:
        if not _init_ignores(t, tg, sig):
            ksignal.send_to_task(tg.leader, info)
        return 0
    targets = [tg] if flags != PIDFD_SIGNAL_PROCESS_GROUP else \
        [g for g in t.kernel.groups.values() if g.pgid == tg.pgid and not g.zombie]
    for g in targets:
        if not _init_ignores(t, g, sig):
            ksignal.send_to_group(g, info)
    return 0


def sys_pidfd_getfd(t: Task, r: SyscallArguments) -> int:
    """Implements pidfd_getfd(2): a copy of another process's fd, close-on-exec.
    The sandbox's root may ptrace any process it can see; others only their own
    uid's (PTRACE_MODE_ATTACH_REALCREDS, without dumpability)."""
    fd, target_fd, flags = r.int32(0), r.int32(1), r.uint32(2)
    if flags:
        raise SyscallError(Errno.EINVAL)
    tg = pidfd_group(t, fd)
    if tg.zombie or tg.reaped or not tg.tasks:
        raise SyscallError(Errno.ESRCH)
    other = tg.tasks[0]
    if t.creds.euid != 0 and (other.creds.uid != t.creds.uid or other.creds.euid != t.creds.uid):
        raise SyscallError(Errno.EPERM)
    f = other.fd_table.get(target_fd)
    f.incref()
    try:
        return t.fd_table.install(f, cloexec=True)
    except SyscallError:
        f.decref()
        raise
