"""Application seccomp filters, evaluated by the Sentry.  Linux: kernel/seccomp.c; the
classic BPF checks and interpreter are sentry/bpf.py's, shared with socket filters.

A task's filters are an immutable linked list (newest first, `Filter.prev` the older
ones), shared by every task that inherited them: clone and fork copy the reference,
execve keeps it, TSYNC points the other threads at the caller's list.

`check` runs before every application syscall the Sentry is asked to serve (the
vDSO's clock reads never trap, so they never reach it, as on Linux).  A filter can
only narrow what the Sentry serves: ALLOW hands the call to the ordinary dispatch,
every other action answers it without dispatching.  The host-side seccomp filters of
the Sentry and its stubs are separate and unchanged.

Not modelled: SECCOMP_FILTER_FLAG_NEW_LISTENER (user notification; EINVAL here, so
RET_USER_NOTIF acts as Linux does without a listener: ENOSYS), ptrace tracers
(RET_TRACE is ENOSYS, as Linux without a tracer), and the audit log (RET_LOG allows).
Like Linux, the legacy vsyscall page's calls are filtered too (emulate_vsyscall).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyvisor.abi.linux import seccomp as S
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.signal import SYS_SECCOMP, Signal
from pyvisor.abi.linux.sysno_amd64 import Sysno
from pyvisor.sentry import bpf
from pyvisor.sentry.errors import SyscallControl, SyscallError
from pyvisor.sentry.kernel.task import CAP_SYS_ADMIN

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

_MAX_ERRNO = 4095
_INSN = struct.Struct("<HBBI")        # struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
_FPROG = struct.Struct("<H6xQ")       # struct sock_fprog { u16 len; <pad>; filter * }


@dataclass(frozen=True, slots=True)
class Filter:
    """One installed filter.  Linux: struct seccomp_filter.  Immutable, shared."""

    insns: tuple[tuple[int, int, int, int], ...]    # (code, jt, jf, k), verified
    prev: Filter | None
    log: bool = False
    # Syscall numbers this filter and every older one allow whatever the arguments and
    # instruction pointer (Linux: the seccomp action cache, seccomp_cache_prepare).
    allowed: frozenset[int] = frozenset()

    @staticmethod
    def attach(insns: tuple[tuple[int, int, int, int], ...], prev: Filter | None,
               log: bool = False) -> Filter:
        allowed = _const_allowed(insns)
        if prev is not None:
            allowed &= prev.allowed
        return Filter(insns, prev, log, allowed)


@dataclass(frozen=True, slots=True)
class SeccompState:
    """A task's seccomp mode and filters.  Linux: struct seccomp.  Immutable: tasks share
    it and replace it whole."""

    mode: int = S.SECCOMP_MODE_DISABLED
    filter: Filter | None = None

    @property
    def count(self) -> int:
        n, f = 0, self.filter
        while f is not None:
            n, f = n + 1, f.prev
        return n


DISABLED = SeccompState()


def state(t: Task) -> SeccompState:
    return t.seccomp or DISABLED


# -- verification ---------------------------------------------------------------------

# What seccomp_check_filter lets through: the common classic opcodes and word loads of
# seccomp_data (no MOD, no packet loads, no ancillary data).
_SECCOMP_CODES = bpf.COMMON_CODES | {S.BPF_LD | S.BPF_W | S.BPF_ABS, S.BPF_LD | S.BPF_W | S.BPF_LEN,
                                     S.BPF_LDX | S.BPF_W | S.BPF_LEN}


def verify(insns: list[tuple[int, int, int, int]]) -> tuple[tuple[int, int, int, int], ...]:
    """Checks a classic BPF program as bpf_check_classic and seccomp_check_filter do
    and returns it with BPF_LEN loads rewritten to the constant sizeof(seccomp_data).
    EINVAL on anything Linux refuses."""
    bpf.verify(insns, _SECCOMP_CODES)
    out = []
    for code, jt, jf, k in insns:
        if code == S.BPF_LD | S.BPF_W | S.BPF_ABS and (k >= S.SECCOMP_DATA_SIZE or k & 3):
            raise SyscallError(Errno.EINVAL)     # aligned, inside seccomp_data
        if code == S.BPF_LD | S.BPF_W | S.BPF_LEN:
            code, k = S.BPF_LD | S.BPF_IMM, S.SECCOMP_DATA_SIZE
        elif code == S.BPF_LDX | S.BPF_W | S.BPF_LEN:
            code, k = S.BPF_LDX | S.BPF_IMM, S.SECCOMP_DATA_SIZE
        out.append((code, jt, jf, k))
    return tuple(out)


# -- evaluation -----------------------------------------------------------------------

class _Data:
    """A packed seccomp_data as a program's input: aligned little-endian words."""

    __slots__ = ("data",)
    length = S.SECCOMP_DATA_SIZE

    def __init__(self, data: bytes) -> None:
        self.data = data

    def load(self, mode: int, k: int, x: int, size: int) -> int:
        return int.from_bytes(self.data[k:k + 4], "little")


def run_filter(insns: tuple[tuple[int, int, int, int], ...], data: bytes) -> int:
    """Runs one verified program over a packed seccomp_data; the 32-bit return value."""
    return bpf.run(insns, _Data(data))


class _ArgsUnknown(Exception):
    pass


class _NrOnly:
    """seccomp_data with only nr and arch known: loading anything else is unknown."""

    __slots__ = ("head",)
    length = S.SECCOMP_DATA_SIZE

    def __init__(self, nr: int) -> None:
        self.head = struct.pack("<iI", nr, S.AUDIT_ARCH_X86_64)

    def load(self, mode: int, k: int, x: int, size: int) -> int:
        if k >= 8:
            raise _ArgsUnknown()
        return int.from_bytes(self.head[k:k + 4], "little")


_CACHE_NRS = 512            # above every amd64 syscall number
_CACHE_BUDGET = 1 << 18     # instructions x numbers: bigger filters are not cached


def _const_allowed(insns: tuple[tuple[int, int, int, int], ...]) -> frozenset[int]:
    """The syscall numbers for which the program returns ALLOW without reading args or
    the instruction pointer.  Linux: seccomp_is_const_allow."""
    if len(insns) * _CACHE_NRS > _CACHE_BUDGET:
        return frozenset()
    out = []
    for nr in range(_CACHE_NRS):
        try:
            if bpf.run(insns, _NrOnly(nr)) == S.SECCOMP_RET_ALLOW:
                out.append(nr)
        except _ArgsUnknown:
            pass
    return frozenset(out)


def _seccomp_data(t: Task, nr: int, ip: int) -> bytes:
    r = t.regs
    return struct.pack("<iIQ6Q", nr if nr < 1 << 31 else nr - (1 << 32), S.AUDIT_ARCH_X86_64,
                       ip, r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9)


def _signed_action(ret: int) -> int:
    """ACTION_ONLY(ret) as Linux compares it: an s32, so KILL_PROCESS is the lowest."""
    v = ret & S.SECCOMP_RET_ACTION_FULL
    return v - (1 << 32) if v & 0x80000000 else v


def evaluate(f: Filter, data: bytes) -> int:
    """Runs every filter of a stack; the result with the lowest action wins, the newest
    filter among equals.  Linux: seccomp_run_filters."""
    best = S.SECCOMP_RET_ALLOW
    walker: Filter | None = f
    while walker is not None:
        ret = run_filter(walker.insns, data)
        if _signed_action(ret) < _signed_action(best):
            best = ret
        walker = walker.prev
    return best


_STRICT_ALLOWED = frozenset({Sysno.read, Sysno.write, Sysno.exit, Sysno.rt_sigreturn})


def check(t: Task, nr: int, ip: int | None = None) -> int | SyscallControl | None:
    """Applies `t`'s seccomp mode to syscall `nr` before dispatch.  None to dispatch it;
    otherwise the syscall's outcome without dispatch: a return value (an errno), or
    SIGRETURN (registers hold the state to resume, a signal is pending) or EXITED.
    `ip` overrides the instruction pointer seen by the filter and in SIGSYS (the
    vsyscall page's entry, as emulate_vsyscall).  Linux: __secure_computing."""
    st = t.seccomp
    if st is None or st.mode == S.SECCOMP_MODE_DISABLED:
        return None
    if st.mode == S.SECCOMP_MODE_STRICT:
        if nr in _STRICT_ALLOWED:
            return None
        return _kill_thread(t, Signal.SIGKILL, core=False)
    assert st.filter is not None
    if nr in st.filter.allowed:
        return None
    ip = t.regs.rip if ip is None else ip
    ret = evaluate(st.filter, _seccomp_data(t, nr, ip))
    action, data = ret & S.SECCOMP_RET_ACTION_FULL, ret & S.SECCOMP_RET_DATA
    if action in (S.SECCOMP_RET_ALLOW, S.SECCOMP_RET_LOG):
        return None
    if action == S.SECCOMP_RET_ERRNO:
        if 512 <= data <= 516:
            # An ERESTART* value: Linux returns it as is unless a signal is pending;
            # hand it back as plain registers so that no restart is attempted.
            t.regs.rax = -data & 0xFFFFFFFFFFFFFFFF
            return SyscallControl.SIGRETURN
        return -min(data, _MAX_ERRNO)
    if action in (S.SECCOMP_RET_TRACE, S.SECCOMP_RET_USER_NOTIF):
        return -Errno.ENOSYS            # no tracer, no listener
    if action == S.SECCOMP_RET_TRAP:
        t.regs.rax = t.regs.orig_rax    # syscall_rollback
        _force_sigsys(t, nr, data, ip)
        return SyscallControl.SIGRETURN
    # KILL_PROCESS, KILL_THREAD and any unknown action: the thread, or the whole process
    # when it is the last thread or the action says so, dies of SIGSYS with a core.
    t.regs.rax = t.regs.orig_rax
    if action != S.SECCOMP_RET_KILL_THREAD or _live_threads(t) == 1:
        t.kernel.group_exit(t.tg, Signal.SIGSYS, killed=True, core=True)
        return SyscallControl.EXITED
    return _kill_thread(t, Signal.SIGSYS, core=False)


def _live_threads(t: Task) -> int:
    return sum(not x.exited for x in t.tg.tasks)


def _kill_thread(t: Task, sig: int, core: bool) -> SyscallControl:
    """do_exit(sig) of one thread: the process's status if it was the last one."""
    kernel = t.kernel
    if _live_threads(t) == 1:
        kernel.group_exit(t.tg, sig, killed=True, core=core)
    else:
        kernel.task_exit(t)
    return SyscallControl.EXITED


def _force_sigsys(t: Task, nr: int, data: int, ip: int) -> None:
    """SIGSYS with SYS_SECCOMP: si_errno is the filter's data, si_call_addr the address
    after the syscall instruction.  Linux: force_sig_seccomp (HANDLER_CURRENT)."""
    from pyvisor.sentry.kernel import signal as ksignal
    raw = struct.pack("<iii4xQiI", Signal.SIGSYS, data, SYS_SECCOMP, ip,
                      nr if nr < 1 << 31 else nr - (1 << 32), S.AUDIT_ARCH_X86_64)
    ksignal.force_sig(t, ksignal.SigInfo(Signal.SIGSYS, SYS_SECCOMP, errno=data,
                                         addr=ip, raw=raw.ljust(128, b"\0")))


# -- installing -----------------------------------------------------------------------

def _may_install(t: Task) -> None:
    """no_new_privs, or CAP_SYS_ADMIN in the effective set."""
    if not t.no_new_privs and not t.creds.capable(CAP_SYS_ADMIN):
        raise SyscallError(Errno.EACCES)


def set_mode_strict(t: Task) -> int:
    st = state(t)
    if st.mode not in (S.SECCOMP_MODE_DISABLED, S.SECCOMP_MODE_STRICT):
        raise SyscallError(Errno.EINVAL)
    t.seccomp = SeccompState(S.SECCOMP_MODE_STRICT, None)
    return 0


_FILTER_FLAGS = (S.SECCOMP_FILTER_FLAG_TSYNC | S.SECCOMP_FILTER_FLAG_LOG |
                 S.SECCOMP_FILTER_FLAG_SPEC_ALLOW | S.SECCOMP_FILTER_FLAG_NEW_LISTENER |
                 S.SECCOMP_FILTER_FLAG_TSYNC_ESRCH | S.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)


def set_mode_filter(t: Task, flags: int, uargs: int) -> int:
    """SECCOMP_SET_MODE_FILTER.  Linux: seccomp_set_mode_filter."""
    if flags & ~_FILTER_FLAGS:
        raise SyscallError(Errno.EINVAL)
    if flags & S.SECCOMP_FILTER_FLAG_TSYNC and flags & S.SECCOMP_FILTER_FLAG_NEW_LISTENER \
            and not flags & S.SECCOMP_FILTER_FLAG_TSYNC_ESRCH:
        raise SyscallError(Errno.EINVAL)
    if flags & S.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV and \
            not flags & S.SECCOMP_FILTER_FLAG_NEW_LISTENER:
        raise SyscallError(Errno.EINVAL)
    length, addr = _FPROG.unpack(t.copy_in(uargs, _FPROG.size))
    if length == 0 or length > S.BPF_MAXINSNS:
        raise SyscallError(Errno.EINVAL)
    _may_install(t)
    raw = t.copy_in(addr, length * _INSN.size)
    insns = verify([_INSN.unpack_from(raw, i * _INSN.size) for i in range(length)])
    if flags & S.SECCOMP_FILTER_FLAG_NEW_LISTENER:
        raise SyscallError(Errno.EINVAL)     # user notification is not supported
    st = state(t)
    if st.mode not in (S.SECCOMP_MODE_DISABLED, S.SECCOMP_MODE_FILTER):
        raise SyscallError(Errno.EINVAL)
    if flags & S.SECCOMP_FILTER_FLAG_TSYNC:
        for other in t.tg.tasks:
            if other is t or other.exited:
                continue
            o = state(other)
            if o.mode == S.SECCOMP_MODE_DISABLED or (
                    o.mode == S.SECCOMP_MODE_FILTER and _is_ancestor(o.filter, st.filter)):
                continue
            if flags & S.SECCOMP_FILTER_FLAG_TSYNC_ESRCH:
                raise SyscallError(Errno.ESRCH)
            return other.tid             # the first thread that cannot be synchronised
    total = len(insns)
    walker = st.filter
    while walker is not None:
        total += len(walker.insns) + 4
        walker = walker.prev
    if total > S.MAX_INSNS_PER_PATH:
        raise SyscallError(Errno.ENOMEM)
    new = SeccompState(S.SECCOMP_MODE_FILTER,
                       Filter.attach(insns, st.filter, bool(flags & S.SECCOMP_FILTER_FLAG_LOG)))
    t.seccomp = new
    if flags & S.SECCOMP_FILTER_FLAG_TSYNC:
        for other in t.tg.tasks:
            if other is not t and not other.exited:
                other.seccomp = new
                if t.no_new_privs:
                    other.no_new_privs = True
    return 0


def _is_ancestor(parent: Filter | None, child: Filter | None) -> bool:
    if parent is None:
        return True
    while child is not None:
        if child is parent:
            return True
        child = child.prev
    return False


_AVAILABLE_ACTIONS = frozenset({S.SECCOMP_RET_KILL_PROCESS, S.SECCOMP_RET_KILL_THREAD,
                                S.SECCOMP_RET_TRAP, S.SECCOMP_RET_ERRNO, S.SECCOMP_RET_TRACE,
                                S.SECCOMP_RET_LOG, S.SECCOMP_RET_ALLOW})


def do_seccomp(t: Task, op: int, flags: int, uargs: int) -> int:
    """seccomp(2) and prctl(PR_SET_SECCOMP).  Linux: do_seccomp."""
    if op == S.SECCOMP_SET_MODE_STRICT:
        if flags != 0 or uargs != 0:
            raise SyscallError(Errno.EINVAL)
        return set_mode_strict(t)
    if op == S.SECCOMP_SET_MODE_FILTER:
        return set_mode_filter(t, flags, uargs)
    if op == S.SECCOMP_GET_ACTION_AVAIL:
        if flags != 0:
            raise SyscallError(Errno.EINVAL)
        action = struct.unpack("<I", t.copy_in(uargs, 4))[0]
        if action not in _AVAILABLE_ACTIONS:
            raise SyscallError(Errno.EOPNOTSUPP)
        return 0
    if op == S.SECCOMP_GET_NOTIF_SIZES:
        if flags != 0:
            raise SyscallError(Errno.EINVAL)
        t.copy_out(uargs, struct.pack("<3H", *S.SECCOMP_NOTIF_SIZES))
        return 0
    raise SyscallError(Errno.EINVAL)


def prctl_set(t: Task, mode: int, uargs: int) -> int:
    """prctl(PR_SET_SECCOMP, mode, filter).  Linux: prctl_set_seccomp."""
    if mode == S.SECCOMP_MODE_STRICT:
        return do_seccomp(t, S.SECCOMP_SET_MODE_STRICT, 0, 0)
    if mode == S.SECCOMP_MODE_FILTER:
        return do_seccomp(t, S.SECCOMP_SET_MODE_FILTER, 0, uargs)
    raise SyscallError(Errno.EINVAL)
