"""Signal syscalls.  Linux: kernel/signal.c, kernel/time/itimer.c."""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import ERESTARTNOHAND, Errno
from pyvisor.abi.linux.signal import (MINSIGSTKSZ, NSIG, SI_TKILL, SI_USER, SIG_BLOCK,
                                      SIG_SETMASK, SIG_UNBLOCK, SS_DISABLE, SS_ONSTACK,
                                      UNBLOCKABLE, Signal)
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.kernel.errors import Interrupted, SyscallControl, SyscallError, TimedOut
from pyvisor.sentry.kernel.task import SigAction, Task
from pyvisor.sentry.platform.ptrace.binding import UserRegs
from pyvisor.sentry.syscalls.linux.args import int32, pointer, uint64

_SIGACTION = struct.Struct("<QQQQ")   # handler, flags, restorer, mask


def sys_rt_sigaction(t: Task, r: UserRegs) -> int:
    """Implements rt_sigaction(2)."""
    sig, new, old, size = int32(r, 0), pointer(r, 1), pointer(r, 2), uint64(r, 3)
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


def sys_rt_sigprocmask(t: Task, r: UserRegs) -> int:
    """Implements rt_sigprocmask(2)."""
    how, new, old, size = int32(r, 0), pointer(r, 1), pointer(r, 2), uint64(r, 3)
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


def sys_rt_sigreturn(t: Task, r: UserRegs) -> SyscallControl:
    """Implements rt_sigreturn(2)."""
    try:
        ksignal.sigreturn(t)
    except SyscallError:
        t.kernel.group_exit(t.tg, Signal.SIGSEGV, killed=True, core=True)
        return SyscallControl.EXITED
    return SyscallControl.SIGRETURN


def sys_rt_sigpending(t: Task, r: UserRegs) -> int:
    t.copy_out(pointer(r, 0), struct.pack("<Q", (t.pending_mask | t.tg.pending_mask) & t.sigmask))
    return 0


def sys_sigaltstack(t: Task, r: UserRegs) -> int:
    """Implements sigaltstack(2)."""
    new, old = pointer(r, 0), pointer(r, 1)
    sp, flags, size = t.altstack
    on = size and not flags & SS_DISABLE and sp < t.regs.rsp <= sp + size
    if old:
        t.copy_out(old, struct.pack("<QiiQ", sp, SS_ONSTACK if on else flags, 0, size))
    if new:
        nsp, nflags, _, nsize = struct.unpack("<QiiQ", t.copy_in(new, 24))
        if on:
            raise SyscallError(Errno.EPERM)
        if nflags & ~(SS_DISABLE | (1 << 31)):
            raise SyscallError(Errno.EINVAL)
        if nflags & SS_DISABLE:
            t.altstack = (0, SS_DISABLE, 0)
        else:
            if nsize < MINSIGSTKSZ:
                raise SyscallError(Errno.ENOMEM)
            t.altstack = (nsp, 0, nsize)
    return 0


def _find_group(t: Task, pid: int) -> list:
    k = t.kernel
    if pid > 0:
        tg = k.groups.get(pid)
        if tg is None or tg.zombie:
            raise SyscallError(Errno.ESRCH)
        return [tg]
    if pid == 0:
        pgid = t.tg.pgid
    elif pid == -1:
        return [g for g in k.groups.values() if g.tgid != 1 and g is not t.tg and not g.zombie]
    else:
        pgid = -pid
    tgs = [g for g in k.groups.values() if g.pgid == pgid and not g.zombie]
    if not tgs:
        raise SyscallError(Errno.ESRCH)
    return tgs


def _send_ok(t: Task, sig: int) -> None:
    if sig < 0 or sig > NSIG:
        raise SyscallError(Errno.EINVAL)


def sys_kill(t: Task, r: UserRegs) -> int:
    """Implements kill(2).  PID 1 ignores signals it has no handler for, as Linux's init."""
    pid, sig = int32(r, 0), int32(r, 1)
    _send_ok(t, sig)
    tgs = _find_group(t, pid)
    if sig == 0:
        return 0
    for tg in tgs:
        if tg.tgid == 1 and tg is not t.tg and tg.sighand.actions[sig].handler == 0:
            continue
        ksignal.send_to_group(tg, ksignal.SigInfo(sig, SI_USER, pid=t.tg.tgid, uid=t.creds.uid))
    return 0


def _tkill(t: Task, tgid: int, tid: int, sig: int) -> int:
    _send_ok(t, sig)
    target = t.kernel.tasks_by_tid.get(tid)
    if target is None or (tgid > 0 and target.tg.tgid != tgid) or target.exited:
        raise SyscallError(Errno.ESRCH)
    if sig == 0:
        return 0
    ksignal.send_to_task(target, ksignal.SigInfo(sig, SI_TKILL, pid=t.tg.tgid, uid=t.creds.uid))
    return 0


def sys_tgkill(t: Task, r: UserRegs) -> int:
    """Implements tgkill(2)."""
    tgid, tid, sig = int32(r, 0), int32(r, 1), int32(r, 2)
    if tgid <= 0 or tid <= 0:
        raise SyscallError(Errno.EINVAL)
    return _tkill(t, tgid, tid, sig)


def sys_tkill(t: Task, r: UserRegs) -> int:
    tid, sig = int32(r, 0), int32(r, 1)
    if tid <= 0:
        raise SyscallError(Errno.EINVAL)
    return _tkill(t, -1, tid, sig)


def sys_rt_sigqueueinfo(t: Task, r: UserRegs) -> int:
    pid, sig = int32(r, 0), int32(r, 1)
    raw = t.copy_in(pointer(r, 2), 128)
    _send_ok(t, sig)
    for tg in _find_group(t, pid):
        ksignal.send_to_group(tg, ksignal.SigInfo(sig, struct.unpack_from("<i", raw, 8)[0],
                                                  pid=t.tg.tgid, value=struct.unpack_from("<Q", raw, 24)[0]))
    return 0


async def sys_pause(t: Task, r: UserRegs) -> int:
    """Implements pause(2): sleeps until a signal; always EINTR (ERESTARTNOHAND)."""
    try:
        await t.kernel.block_on(t, None)
    except Interrupted:
        pass
    raise SyscallError(ERESTARTNOHAND)


async def sys_rt_sigsuspend(t: Task, r: UserRegs) -> int:
    """Implements rt_sigsuspend(2)."""
    (mask,) = struct.unpack("<Q", t.copy_in(pointer(r, 0), 8))
    if uint64(r, 1) != 8:
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


async def sys_rt_sigtimedwait(t: Task, r: UserRegs) -> int:
    """Implements rt_sigtimedwait(2)."""
    (mask,) = struct.unpack("<Q", t.copy_in(pointer(r, 0), 8))
    info_addr, ts = pointer(r, 1), pointer(r, 2)
    deadline = None
    if ts:
        sec, nsec = struct.unpack("<qq", t.copy_in(ts, 16))
        if sec < 0 or not 0 <= nsec < 10**9:
            raise SyscallError(Errno.EINVAL)
        deadline = t.kernel.now() + sec * 10**9 + nsec
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


def sys_alarm(t: Task, r: UserRegs) -> int:
    """Implements alarm(2)."""
    secs = uint64(r, 0) & 0xFFFFFFFF
    remaining, _ = _set_itimer(t, secs * 10**9, 0)
    return (remaining + 999_999_999) // 10**9 if remaining else 0


def sys_setitimer(t: Task, r: UserRegs) -> int:
    """Implements setitimer(2) for ITIMER_REAL; the CPU-time timers are accepted but never fire."""
    which, new, old = int32(r, 0), pointer(r, 1), pointer(r, 2)
    if which not in (0, 1, 2):
        raise SyscallError(Errno.EINVAL)
    if new:
        isec, iusec, vsec, vusec = struct.unpack("<qqqq", t.copy_in(new, 32))
        if not (0 <= iusec < 10**6 and 0 <= vusec < 10**6) or isec < 0 or vsec < 0:
            raise SyscallError(Errno.EINVAL)
    if which != 0:
        if old:
            t.copy_out(old, bytes(32))
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


def sys_getitimer(t: Task, r: UserRegs) -> int:
    which, cur = int32(r, 0), pointer(r, 1)
    if which not in (0, 1, 2):
        raise SyscallError(Errno.EINVAL)
    tm = t.tg.itimer_real if which == 0 else None
    rem = max(0, tm.deadline - t.kernel.now()) if tm is not None and not tm.cancelled else 0
    oint = getattr(tm, "interval", 0) if tm is not None else 0
    t.copy_out(cur, struct.pack("<qqqq", oint // 10**9, (oint % 10**9) // 1000,
                                rem // 10**9, (rem % 10**9) // 1000))
    return 0
