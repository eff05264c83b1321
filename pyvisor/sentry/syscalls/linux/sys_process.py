"""Process and thread syscalls.  Linux: kernel/fork.c, kernel/exit.c, kernel/sys.c, fs/exec.c."""

from __future__ import annotations

import os
import struct
from typing import Callable

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.sched import (CLONE_CLEAR_SIGHAND, CLONE_DETACHED, CLONE_INTO_CGROUP,
                                     CLONE_PARENT, CLONE_PARENT_SETTID, CLONE_PIDFD,
                                     CLONE_SIGHAND, CLONE_THREAD, P_PIDFD)
from pyvisor.abi.linux.sched import (CLONE_VFORK, CLONE_VM, P_ALL, P_PGID, P_PID, WCONTINUED,
                                     WEXITED, WNOHANG, WNOWAIT, WSTOPPED, WUNTRACED, WALL, WCLONE,
                                     WNOTHREAD)
from pyvisor.abi.linux.fcntl import AT_FDCWD
from pyvisor.abi.linux.signal import CLD_CONTINUED, CLD_DUMPED, CLD_EXITED, CLD_KILLED, CLD_TRAPPED
from pyvisor.abi.linux.signal import CLD_STOPPED, NSIG, SIG_DFL, SIG_IGN, Signal
from pyvisor.sentry.fsimpl.devpts import devpts
from pyvisor.sentry.arch.registers import valid_segment_base
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.kernel import clone as kclone
from pyvisor.sentry.kernel import cputime, cputimers
from pyvisor.sentry.kernel import exec as kexec
from pyvisor.abi.linux.ptrace import PTRACE_EVENT_VFORK_DONE as P_EVENT_VFORK_DONE
from pyvisor.sentry.kernel import ptrace, seccomp
from pyvisor.sentry.errors import SyscallControl, SyscallError
from pyvisor.sentry.kernel.task import sees
from pyvisor.abi.linux.capability import (ALL_CAPS, CAP_LAST_CAP, CAP_SETGID, CAP_SETUID,
                                          CAP_SYS_ADMIN, CAP_SYS_NICE, CAP_SYS_PTRACE,
                                          CAP_SYS_RESOURCE,
                                          PR_CAP_AMBIENT, PR_CAPBSET_DROP, PR_CAPBSET_READ,
                                          PR_GET_KEEPCAPS, PR_GET_SECUREBITS, PR_SET_KEEPCAPS,
                                          PR_SET_SECUREBITS, SECBIT_KEEP_CAPS)
from pyvisor.sentry.kernel import creds as kcreds
from pyvisor.sentry.kernel import namespaces as NS
from pyvisor.sentry.kernel.task import RLIM_INFINITY, RLIM_NLIMITS, RLIMIT_NOFILE, Task, ThreadGroup

_ARCH_SET_GS, _ARCH_SET_FS, _ARCH_GET_FS, _ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
_ARCH_GET_CPUID, _ARCH_SET_CPUID = 0x1011, 0x1012


def sys_getpid(t: Task, r: SyscallArguments) -> int:
    """Implements getpid(2)."""
    return t.tg.tgid


def sys_getppid(t: Task, r: SyscallArguments) -> int:
    """Implements getppid(2).  The init process's parent is outside the namespace: 0."""
    p = t.tg.parent
    return p.tgid if p is not None else 0


def sys_gettid(t: Task, r: SyscallArguments) -> int:
    """Implements gettid(2)."""
    return t.tid


# Ids go in and out through the caller's user namespace (kernel/namespaces.py: the
# identity in the sandbox's).


def sys_getuid(t: Task, r: SyscallArguments) -> int:
    return NS.show_id(t.creds, t.creds.uid)


def sys_geteuid(t: Task, r: SyscallArguments) -> int:
    return NS.show_id(t.creds, t.creds.euid)


def sys_getgid(t: Task, r: SyscallArguments) -> int:
    return NS.show_id(t.creds, t.creds.gid, False)


def sys_getegid(t: Task, r: SyscallArguments) -> int:
    return NS.show_id(t.creds, t.creds.egid, False)


def sys_getresuid(t: Task, r: SyscallArguments) -> int:
    c = t.creds
    for i, v in enumerate((c.uid, c.euid, c.suid)):
        t.copy_out(r.pointer(i), struct.pack("<I", NS.show_id(c, v)))
    return 0


def sys_getresgid(t: Task, r: SyscallArguments) -> int:
    c = t.creds
    for i, v in enumerate((c.gid, c.egid, c.sgid)):
        t.copy_out(r.pointer(i), struct.pack("<I", NS.show_id(c, v, False)))
    return 0


def sys_getgroups(t: Task, r: SyscallArguments) -> int:
    """Implements getgroups(2)."""
    n, addr = r.int32(0), r.pointer(1)
    groups = tuple(NS.show_id(t.creds, g, False) for g in t.creds.groups)
    if n < 0:
        raise SyscallError(Errno.EINVAL)
    if n == 0:
        return len(groups)
    if n < len(groups):
        raise SyscallError(Errno.EINVAL)
    t.copy_out(addr, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


def _set_ids(t: Task, uid: bool, vals: tuple[int, int, int], checked: bool = False) -> int:
    """setres[ug]id core: CAP_SETUID (CAP_SETGID) may set anything; others only among
    their current ids.  Capabilities follow (kernel/creds.py)."""
    c = t.creds
    cur = (c.uid, c.euid, c.suid) if uid else (c.gid, c.egid, c.sgid)
    # ids are unsigned 32-bit; -1 (0xffffffff) means "leave unchanged".
    vals = tuple(-1 if v & 0xFFFFFFFF == 0xFFFFFFFF else v & 0xFFFFFFFF for v in vals)
    if not checked:
        vals = tuple(NS.take_id(c, v, uid) for v in vals)
    privileged = checked or c.capable(CAP_SETUID if uid else CAP_SETGID)
    for v in vals:
        if v != -1 and not privileged and v not in cur:
            raise SyscallError(Errno.EPERM)
    new = c.copy()
    names = ("uid", "euid", "suid") if uid else ("gid", "egid", "sgid")
    for name, v in zip(names, vals):
        if v != -1:
            setattr(new, name, v)
    if uid:
        new.fsuid = new.euid
        kcreds.fix_setuid(c, new)
    else:
        new.fsgid = new.egid
    t.creds = new
    return 0


def sys_setuid(t: Task, r: SyscallArguments) -> int:
    u = r.int32(0)
    if u == -1:
        raise SyscallError(Errno.EINVAL)          # not a valid uid
    if t.creds.capable(CAP_SETUID):
        return _set_ids(t, True, (u, u, u))
    return _set_ids(t, True, (-1, u, -1))


def sys_setgid(t: Task, r: SyscallArguments) -> int:
    g = r.int32(0)
    if g == -1:
        raise SyscallError(Errno.EINVAL)
    if t.creds.capable(CAP_SETGID):
        return _set_ids(t, False, (g, g, g))
    return _set_ids(t, False, (-1, g, -1))


def sys_setresuid(t: Task, r: SyscallArguments) -> int:
    return _set_ids(t, True, (r.int32(0), r.int32(1), r.int32(2)))


def sys_setresgid(t: Task, r: SyscallArguments) -> int:
    return _set_ids(t, False, (r.int32(0), r.int32(1), r.int32(2)))


def _set_re(t: Task, uid: bool, real: int, eff: int) -> int:
    """setre[ug]id: the real id may become the real or effective one, the effective
    any of the three (or anything with CAP_SETUID/CAP_SETGID); the saved id follows
    the effective one when the real id is set or the effective one leaves it."""
    c = t.creds
    old_r, old_e = (c.uid, c.euid) if uid else (c.gid, c.egid)
    cur = (c.uid, c.euid, c.suid) if uid else (c.gid, c.egid, c.sgid)
    real, eff = (-1 if v == -1 else NS.take_id(c, v & 0xFFFFFFFF, uid) for v in (real, eff))
    if not c.capable(CAP_SETUID if uid else CAP_SETGID):
        if real != -1 and real not in (old_r, old_e) or eff != -1 and eff not in cur:
            raise SyscallError(Errno.EPERM)
    new_e = old_e if eff == -1 else eff
    saved = new_e if real != -1 or (eff != -1 and eff != old_r) else -1
    return _set_ids(t, uid, (real, eff, saved), checked=True)


def sys_setreuid(t: Task, r: SyscallArguments) -> int:
    return _set_re(t, True, r.int32(0), r.int32(1))


def sys_setregid(t: Task, r: SyscallArguments) -> int:
    return _set_re(t, False, r.int32(0), r.int32(1))


def sys_setgroups(t: Task, r: SyscallArguments) -> int:
    n, addr = r.int32(0), r.pointer(1)
    if not t.creds.capable(CAP_SETGID) or not NS.may_setgroups(t.creds):
        raise SyscallError(Errno.EPERM)
    if n < 0 or n > 65536:
        raise SyscallError(Errno.EINVAL)
    groups = struct.unpack(f"<{n}I", t.copy_in(addr, 4 * n)) if n else ()
    groups = tuple(NS.take_id(t.creds, g, False) for g in groups)
    new = t.creds.copy()
    new.groups = tuple(groups)
    t.creds = new
    return 0


def sys_setfsuid(t: Task, r: SyscallArguments) -> int:
    """Implements setfsuid(2): the old fsuid, whether or not the change is allowed."""
    c = t.creds
    old, v = c.fsuid, r.uint32(0)
    if c.userns is not None and v != 0xFFFFFFFF:
        k = NS.make_kid(c.userns, v, True)
        v = k if k is not None else 0xFFFFFFFF         # unmapped: no change
        old = NS.show_id(c, old, True)
    if v != 0xFFFFFFFF and v != old and \
            (v in (c.uid, c.euid, c.suid, c.fsuid) or c.capable(CAP_SETUID)):
        new = c.copy()
        new.fsuid = v
        kcreds.fix_setfsuid(c, new)
        t.creds = new
    return old


def sys_setfsgid(t: Task, r: SyscallArguments) -> int:
    """Implements setfsgid(2)."""
    c = t.creds
    old, v = c.fsgid, r.uint32(0)
    if c.userns is not None and v != 0xFFFFFFFF:
        k = NS.make_kid(c.userns, v, False)
        v = k if k is not None else 0xFFFFFFFF         # unmapped: no change
        old = NS.show_id(c, old, False)
    if v != 0xFFFFFFFF and v != old and \
            (v in (c.gid, c.egid, c.sgid, c.fsgid) or c.capable(CAP_SETGID)):
        new = c.copy()
        new.fsgid = v
        t.creds = new
    return old


def sys_capget(t: Task, r: SyscallArguments) -> int:
    """Implements capget(2): the sets of the caller or of thread `pid`."""
    hdr, data = r.pointer(0), r.pointer(1)
    version, pid = struct.unpack("<Ii", t.copy_in(hdr, 8))
    if version not in (0x19980330, 0x20071026, 0x20080522):
        t.copy_out(hdr, struct.pack("<I", 0x20080522))
        if data:
            raise SyscallError(Errno.EINVAL)
        return 0
    if pid < 0:
        raise SyscallError(Errno.EINVAL)
    target = t if pid in (0, t.tid) else sched_target(t, pid)
    if data:
        sets = target.creds.cap_sets()             # effective, permitted, inheritable
        n = 1 if version == 0x19980330 else 2
        t.copy_out(data, b"".join(struct.pack("<3I", *((c >> (32 * i)) & 0xFFFFFFFF for c in sets))
                                  for i in range(n)))
    return 0


def sys_capset(t: Task, r: SyscallArguments) -> int:
    """Implements capset(2) for the calling thread (kernel/creds.py)."""
    hdr, data = r.pointer(0), r.pointer(1)
    version, pid = struct.unpack("<Ii", t.copy_in(hdr, 8))
    if version not in (0x19980330, 0x20071026, 0x20080522):
        t.copy_out(hdr, struct.pack("<I", 0x20080522))
        raise SyscallError(Errno.EINVAL)
    if pid not in (0, t.tid):
        raise SyscallError(Errno.EPERM)
    n = 1 if version == 0x19980330 else 2
    raw = struct.unpack(f"<{3 * n}I", t.copy_in(data, 12 * n))
    eff, prm, inh = (sum(raw[3 * i + j] << (32 * i) for i in range(n)) & ALL_CAPS
                     for j in range(3))
    new = t.creds.copy()
    kcreds.capset(new, eff, prm, inh)
    t.creds = new
    return 0


def sys_set_tid_address(t: Task, r: SyscallArguments) -> int:
    """Implements set_tid_address(2)."""
    t.clear_child_tid = r.pointer(0)
    return t.tid


def sys_set_robust_list(t: Task, r: SyscallArguments) -> int:
    if r.uint64(1) != 24:
        raise SyscallError(Errno.EINVAL)
    t.robust_list = r.pointer(0)
    return 0


def sys_get_robust_list(t: Task, r: SyscallArguments) -> int:
    """Implements get_robust_list(2): any thread's head, for whoever may ptrace-read
    it (the caller's uid or CAP_SYS_PTRACE)."""
    pid = r.int32(0)
    p = t if pid == 0 else t.kernel.tasks_by_tid.get(pid)
    if p is None or p.exited or not sees(t.tg, p.tg):
        raise SyscallError(Errno.ESRCH)
    c = t.creds
    if p.tg is not t.tg and not c.capable(CAP_SYS_PTRACE) and not (
            c.uid == p.creds.euid == p.creds.suid == p.creds.uid and
            c.gid == p.creds.egid == p.creds.sgid == p.creds.gid):
        raise SyscallError(Errno.EPERM)
    t.copy_out(r.pointer(2), struct.pack("<Q", 24))
    t.copy_out(r.pointer(1), struct.pack("<Q", p.robust_list))
    return 0


def sys_arch_prctl(t: Task, r: SyscallArguments) -> int:
    """Implements arch_prctl(2): FS/GS bases live in the task's registers."""
    code, addr = r.int32(0), r.uint64(1)
    if code == _ARCH_SET_FS:
        if not valid_segment_base(addr):
            raise SyscallError(Errno.EPERM)
        t.regs.fs_base = addr
        return 0
    if code == _ARCH_SET_GS:
        if not valid_segment_base(addr):
            raise SyscallError(Errno.EPERM)
        t.regs.gs_base = addr
        return 0
    if code == _ARCH_GET_FS:
        t.copy_out(addr, struct.pack("<Q", t.regs.fs_base))
        return 0
    if code == _ARCH_GET_GS:
        t.copy_out(addr, struct.pack("<Q", t.regs.gs_base))
        return 0
    if code in (_ARCH_GET_CPUID, _ARCH_SET_CPUID):
        raise SyscallError(Errno.ENODEV)
    raise SyscallError(Errno.EINVAL)


_PR_SET_PDEATHSIG, _PR_GET_PDEATHSIG, _PR_GET_DUMPABLE, _PR_SET_DUMPABLE = 1, 2, 3, 4
_PR_SET_NAME, _PR_GET_NAME = 15, 16
_PR_GET_SECCOMP, _PR_SET_SECCOMP = 21, 22
_PR_SET_NO_NEW_PRIVS, _PR_GET_NO_NEW_PRIVS = 38, 39
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37
_PR_SET_VMA = 0x53564D41
_PR_GET_TID_ADDRESS = 40


def _set_vma(t: Task, r: SyscallArguments) -> int:
    """prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name).  Linux: prctl_set_vma."""
    if r.uint64(1) != 0:                       # PR_SET_VMA_ANON_NAME is the only one
        raise SyscallError(Errno.EINVAL)
    name = None
    if r.pointer(4):
        try:
            name = t.copy_in_str(r.pointer(4), 80)      # ANON_VMA_NAME_MAX_LEN
        except SyscallError as e:
            raise SyscallError(Errno.EINVAL if e.errno == Errno.ENAMETOOLONG else e.errno) \
                from None
        if any(c < 0x20 or c > 0x7E or c in b"\\`$[]" for c in name):
            raise SyscallError(Errno.EINVAL)
    t.mm.set_anon_name(r.pointer(2), r.uint64(3), name)
    return 0


def sys_prctl(t: Task, r: SyscallArguments) -> int:
    """Implements prctl(2) for the options programs commonly use."""
    opt, arg2 = r.int32(0), r.uint64(1)
    if opt == _PR_SET_NAME:
        name = t.copy_in_str(arg2, 4096)[:15]
        t.name = name
        if t.tid == t.tg.tgid:
            t.tg.comm = name
        # The stub thread takes the name on the host too (kernel/exec.py name_host_stub),
        # read by the host kernel from the same application buffer.
        t.kernel.platform.set_host_name(t.thread, arg2)
        return 0
    if opt == _PR_GET_NAME:
        t.copy_out(arg2, t.name[:15].ljust(16, b"\0"))
        return 0
    if opt == _PR_SET_DUMPABLE:
        if arg2 not in (0, 1):
            raise SyscallError(Errno.EINVAL)
        t.tg.dumpable = int(arg2)       # 0 keeps tracers out (kernel/ptrace.py may_access)
        return 0
    if opt == _PR_SET_VMA:
        return _set_vma(t, r)
    if opt == _PR_SET_PDEATHSIG:
        if arg2 > NSIG:
            raise SyscallError(Errno.EINVAL)
        t.pdeath_signal = int(arg2)     # sent when the thread that forked it exits
        return 0
    if opt == _PR_GET_PDEATHSIG:
        t.copy_out(arg2, struct.pack("<i", t.pdeath_signal))
        return 0
    if opt == _PR_SET_CHILD_SUBREAPER:
        t.tg.child_subreaper = bool(arg2)   # orphans below it come to it (kernel.py)
        return 0
    if opt == _PR_GET_CHILD_SUBREAPER:
        t.copy_out(arg2, struct.pack("<i", int(t.tg.child_subreaper)))
        return 0
    if opt == _PR_SET_MM:
        return _prctl_set_mm(t, int(arg2), r)
    if opt == _PR_GET_DUMPABLE:
        return t.tg.dumpable
    if opt == _PR_SET_NO_NEW_PRIVS:
        if arg2 != 1 or r.uint64(2) or r.uint64(3) or r.uint64(4):
            raise SyscallError(Errno.EINVAL)
        t.no_new_privs = True      # one way: never cleared
        return 0
    if opt == _PR_GET_NO_NEW_PRIVS:
        if arg2 or r.uint64(2) or r.uint64(3) or r.uint64(4):
            raise SyscallError(Errno.EINVAL)
        return int(t.no_new_privs)
    if opt in (PR_SET_KEEPCAPS, PR_GET_KEEPCAPS, PR_CAPBSET_READ, PR_CAPBSET_DROP,
               PR_GET_SECUREBITS, PR_SET_SECUREBITS, PR_CAP_AMBIENT):
        return _prctl_caps(t, opt, arg2, r)
    if opt == _PR_GET_SECCOMP:
        return seccomp.state(t).mode
    if opt == _PR_SET_SECCOMP:
        return seccomp.prctl_set(t, int(arg2), r.pointer(2))
    raise SyscallError(Errno.EINVAL)


_PR_SET_MM = 35
_PR_SET_MM_MAP, _PR_SET_MM_MAP_SIZE = 14, 15
_PRCTL_MM_MAP_SIZE = 104                # sizeof(struct prctl_mm_map)


def _prctl_set_mm(t: Task, sub: int, r: SyscallArguments) -> int:
    """PR_SET_MM: its checks (prctl_set_mm), then EINVAL: pyvisor does not let a
    process rewrite its own memory map's bounds (a checkpoint/restore tool's need).
    PR_SET_MM_MAP_SIZE answers."""
    if sub not in (_PR_SET_MM_MAP, _PR_SET_MM_MAP_SIZE) and (r.uint64(3) or r.uint64(4)):
        raise SyscallError(Errno.EINVAL)
    if sub == _PR_SET_MM_MAP_SIZE:
        t.copy_out(r.pointer(2), struct.pack("<I", _PRCTL_MM_MAP_SIZE))
        return 0
    if not t.creds.capable(CAP_SYS_RESOURCE):
        raise SyscallError(Errno.EPERM)
    raise SyscallError(Errno.EINVAL)


def _prctl_caps(t: Task, opt: int, arg2: int, r: SyscallArguments) -> int:
    """PR_{GET,SET}_KEEPCAPS, PR_{GET,SET}_SECUREBITS, PR_CAP_AMBIENT and
    PR_CAPBSET_{READ,DROP} (kernel/creds.py)."""
    if opt == PR_GET_KEEPCAPS:
        return int(bool(t.creds.securebits & SECBIT_KEEP_CAPS))
    if opt == PR_GET_SECUREBITS:
        return t.creds.securebits
    new = t.creds.copy()
    if opt == PR_SET_KEEPCAPS:
        kcreds.set_keepcaps(new, arg2)
        t.creds = new
        return 0
    if opt == PR_SET_SECUREBITS:
        kcreds.set_securebits(new, arg2)
        t.creds = new
        return 0
    if opt == PR_CAP_AMBIENT:
        ret = kcreds.ambient(new, arg2, r.uint64(2), r.uint64(3) | r.uint64(4))
        t.creds = new
        return ret
    if arg2 > CAP_LAST_CAP:
        raise SyscallError(Errno.EINVAL)
    if opt == PR_CAPBSET_READ:
        return t.creds.bset >> arg2 & 1
    kcreds.bset_drop(new, arg2)
    t.creds = new
    return 0


def sys_seccomp(t: Task, r: SyscallArguments) -> int:
    """Implements seccomp(2): filters evaluated by the Sentry (kernel/seccomp.py)."""
    return seccomp.do_seccomp(t, r.uint32(0), r.uint32(1), r.pointer(2))


_UTS_FIELD = 65


def sys_uname(t: Task, r: SyscallArguments) -> int:
    """Implements uname(2)."""
    host, dom = NS.uts_names(t)
    fields = [b"Linux", host, b"6.0.0-pyvisor", b"#1 SMP PREEMPT pyvisor", b"x86_64", dom]
    t.copy_out(r.pointer(0), b"".join(f[:64].ljust(_UTS_FIELD, b"\0") for f in fields))
    return 0


def sys_sethostname(t: Task, r: SyscallArguments) -> int:
    addr, n = r.pointer(0), r.int32(1)
    NS.set_uts_name(t, "hostname", None)          # EPERM first
    if n < 0 or n > 64:
        raise SyscallError(Errno.EINVAL)
    NS.set_uts_name(t, "hostname", t.copy_in(addr, n))
    return 0


def sys_setdomainname(t: Task, r: SyscallArguments) -> int:
    addr, n = r.pointer(0), r.int32(1)
    NS.set_uts_name(t, "domainname", None)        # EPERM first
    if n < 0 or n > 64:
        raise SyscallError(Errno.EINVAL)
    NS.set_uts_name(t, "domainname", t.copy_in(addr, n))
    return 0


def _rlimit(t: Task, tg: ThreadGroup, res: int, new: int, old: int) -> None:
    if res < 0 or res >= RLIM_NLIMITS:
        raise SyscallError(Errno.EINVAL)
    if new:
        cur, mx = struct.unpack("<QQ", t.copy_in(new, 16))
        if cur > mx:
            raise SyscallError(Errno.EINVAL)
        if mx > tg.rlimits[res][1] and not t.creds.capable(CAP_SYS_RESOURCE):
            raise SyscallError(Errno.EPERM)
        if res == RLIMIT_NOFILE and mx != RLIM_INFINITY and mx > 1 << 20:
            raise SyscallError(Errno.EPERM)
    if old:
        t.copy_out(old, struct.pack("<QQ", *tg.rlimits[res]))
    if new:
        tg.rlimits[res] = [cur, mx]
        if res == RLIMIT_NOFILE:
            for task in tg.tasks:
                task.fd_table.limit = min(cur, 1 << 20)
        elif res == cputimers.RLIMIT_CPU:
            cputimers.rlimit_changed(tg)


def sys_getrlimit(t: Task, r: SyscallArguments) -> int:
    _rlimit(t, t.tg, r.int32(0), 0, r.pointer(1))
    return 0


def sys_setrlimit(t: Task, r: SyscallArguments) -> int:
    _rlimit(t, t.tg, r.int32(0), r.pointer(1), 0)
    return 0


def sys_prlimit64(t: Task, r: SyscallArguments) -> int:
    """Implements prlimit64(2)."""
    pid = r.int32(0)
    tg = t.tg if pid == 0 else t.kernel.groups.get(pid)
    if tg is None or tg.zombie or not sees(t.tg, tg):
        raise SyscallError(Errno.ESRCH)
    _rlimit(t, tg, r.int32(1), r.pointer(2), r.pointer(3))
    return 0


RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD = 0, -1, 1
_CLK_TCK_NS = 10_000_000        # USER_HZ = 100


def pack_rusage(user_ns: int, sys_ns: int, maxrss_kb: int) -> bytes:
    """struct rusage: times and ru_maxrss; the other counters are zero."""
    return struct.pack("<qqqqq", user_ns // 10**9, (user_ns % 10**9) // 1000,
                       sys_ns // 10**9, (sys_ns % 10**9) // 1000, maxrss_kb).ljust(144, b"\0")


def rusage_of(t: Task, who: int) -> bytes:
    tg = t.tg
    if who == RUSAGE_CHILDREN:
        return pack_rusage(tg.children_utime_ns, tg.children_stime_ns, tg.children_maxrss_kb)
    cputime.note_rss_of(tg, t.mm)
    u, s = cputime.task_times(t) if who == RUSAGE_THREAD else cputime.group_times(tg)
    return pack_rusage(u, s, tg.maxrss_kb)


def sys_getrusage(t: Task, r: SyscallArguments) -> int:
    """Implements getrusage(2): CPU times (kernel/cputime.py) and ru_maxrss; the
    fault, I/O and context-switch counters are zero."""
    who = r.int32(0)
    if who not in (RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD):
        raise SyscallError(Errno.EINVAL)
    t.copy_out(r.pointer(1), rusage_of(t, who))
    return 0


def sys_times(t: Task, r: SyscallArguments) -> int:
    """Implements times(2), in clock ticks of USER_HZ."""
    addr = r.pointer(0)
    if addr:
        tg = t.tg
        u, s = cputime.group_times(tg)
        t.copy_out(addr, struct.pack("<qqqq", u // _CLK_TCK_NS, s // _CLK_TCK_NS,
                                     tg.children_utime_ns // _CLK_TCK_NS,
                                     tg.children_stime_ns // _CLK_TCK_NS))
    return (t.kernel.now() - t.kernel.boot_ns) // _CLK_TCK_NS


def sys_sysinfo(t: Task, r: SyscallArguments) -> int:
    """Implements sysinfo(2)."""
    k = t.kernel
    up = (k.now() - k.boot_ns) // 10**9
    total = os.sysconf("SC_PHYS_PAGES") * 4096
    data = struct.pack("<q3Q6QHH4xQQI", up, 0, 0, 0, total, total // 2, 0, 0, 0, 0,
                       len(k.tasks_by_tid), 0, 0, 0, 1)
    t.copy_out(r.pointer(0), data.ljust(112, b"\0"))
    return 0


def sys_getpgid(t: Task, r: SyscallArguments) -> int:
    pid = r.int32(0)
    tg = t.tg if pid == 0 else t.kernel.groups.get(pid)
    if tg is None or not sees(t.tg, tg):
        raise SyscallError(Errno.ESRCH)
    return tg.pgid


def sys_getpgrp(t: Task, r: SyscallArguments) -> int:
    return t.tg.pgid


def sys_setpgid(t: Task, r: SyscallArguments) -> int:
    """Implements setpgid(2)."""
    pid, pgid = r.int32(0), r.int32(1)
    k = t.kernel
    pid = pid or t.tg.tgid
    pgid = pgid or pid
    if pgid < 0:
        raise SyscallError(Errno.EINVAL)
    tg = k.groups.get(pid)
    if tg is None or not sees(t.tg, tg):
        if pid in k.tasks_by_tid:
            raise SyscallError(Errno.EINVAL)        # a thread, not a process
        raise SyscallError(Errno.ESRCH)
    if tg is not t.tg:
        if tg.parent is not t.tg:
            raise SyscallError(Errno.ESRCH)
        if tg.sid != t.tg.sid:
            raise SyscallError(Errno.EPERM)
        if tg.did_exec:
            raise SyscallError(Errno.EACCES)
    if tg.sid == tg.tgid:
        raise SyscallError(Errno.EPERM)             # a session leader
    if pgid != pid and not any(g.pgid == pgid and g.sid == t.tg.sid and not g.reaped
                               for g in k.groups.values()):
        raise SyscallError(Errno.EPERM)             # no such group in the caller's session
    tg.pgid = pgid
    return 0


def sys_getsid(t: Task, r: SyscallArguments) -> int:
    pid = r.int32(0)
    tg = t.tg if pid == 0 else t.kernel.groups.get(pid)
    if tg is None or not sees(t.tg, tg):
        raise SyscallError(Errno.ESRCH)
    return tg.sid


def sys_setsid(t: Task, r: SyscallArguments) -> int:
    tg = t.tg
    if any(g.pgid == tg.tgid for g in t.kernel.groups.values() if g is not tg) or \
            tg.pgid == tg.tgid:
        raise SyscallError(Errno.EPERM)
    tg.sid = tg.pgid = tg.tgid
    devpts.new_session(tg)          # no controlling terminal in the new session
    return tg.tgid


def sys_umask(t: Task, r: SyscallArguments) -> int:
    old = t.fs.umask
    t.fs.umask = r.uint32(0) & 0o777
    return old


# personality(2) flags that change nothing here, or nothing pyvisor does differently:
# the sandbox's layout is not randomized, inode numbers and timestamps are never
# shortened; STICKY_TIMEOUTS keeps select/ppoll from writing their timeouts back.
# From <linux/personality.h>.
_UNAME26, _ADDR_NO_RANDOMIZE, _FDPIC_FUNCPTRS = 0x0020000, 0x0040000, 0x0080000
_MMAP_PAGE_ZERO, _ADDR_COMPAT_LAYOUT, _READ_IMPLIES_EXEC = 0x0100000, 0x0200000, 0x0400000
_ADDR_LIMIT_32BIT, _SHORT_INODE, _WHOLE_SECONDS = 0x0800000, 0x1000000, 0x2000000
_STICKY_TIMEOUTS, _ADDR_LIMIT_3GB = 0x4000000, 0x8000000
_PERSONALITY_FLAGS = _ADDR_NO_RANDOMIZE | _SHORT_INODE | _WHOLE_SECONDS | _STICKY_TIMEOUTS
_PER_MASK = 0xFF
_PER_LINUX32 = 0x0008


def sys_personality(t: Task, r: SyscallArguments) -> int:
    """Implements personality(2).  Any persona is kept and inherited, as Linux keeps
    it (none changes what a 64-bit task sees) but PER_LINUX32, whose uname would
    have to say i686; flags that would change the address space or uname
    (READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ADDR_LIMIT_*, ADDR_COMPAT_LAYOUT, UNAME26,
    FDPIC_FUNCPTRS) are refused with EINVAL rather than silently ignored."""
    p = r.uint32(0)
    old = t.personality
    if p == 0xFFFFFFFF:
        return old
    if p & ~(_PERSONALITY_FLAGS | _PER_MASK) or p & _PER_MASK == _PER_LINUX32:
        raise SyscallError(Errno.EINVAL)
    t.personality = p
    return old


def sys_sched_yield(t: Task, r: SyscallArguments) -> int:
    return 0


def sched_target(t: Task, pid: int) -> Task:
    """The task a sched_*/priority call names: 0 is the caller; others must exist here."""
    if pid < 0:
        raise SyscallError(Errno.EINVAL)
    if pid == 0:
        return t
    target = t.kernel.tasks_by_tid.get(pid)
    if target is None or target.exited or not sees(t.tg, target.tg):
        raise SyscallError(Errno.ESRCH)
    return target


_RLIMIT_NICE = 13


def prio_targets(t: Task, which: int, who: int) -> list[Task]:
    """The threads a get/setpriority names (PRIO_PROCESS: one thread; PRIO_PGRP: the
    group's; PRIO_USER: those of a real uid); ESRCH if none."""
    k = t.kernel
    if which == 0:                               # PRIO_PROCESS
        if who < 0:
            raise SyscallError(Errno.ESRCH)
        return [sched_target(t, who)]
    if which == 1:                               # PRIO_PGRP
        pgid = who or t.tg.pgid
        out = [x for g in k.groups.values() if g.pgid == pgid and not g.zombie
               and sees(t.tg, g) for x in g.tasks if not x.exited]
    elif which == 2:                             # PRIO_USER
        uid = who if who else t.creds.uid
        out = [x for x in k.tasks_by_tid.values() if not x.exited and x.creds.uid == uid
               and sees(t.tg, x.tg)]
    else:
        raise SyscallError(Errno.EINVAL)
    if not out:
        raise SyscallError(Errno.ESRCH)
    return out


def sys_getpriority(t: Task, r: SyscallArguments) -> int:
    """Implements getpriority(2): 20 - the highest nice value (nice_to_rlimit)."""
    return max(20 - x.nice for x in prio_targets(t, r.int32(0), r.int32(1)))


def sys_setpriority(t: Task, r: SyscallArguments) -> int:
    """Implements setpriority(2): kept and reported, not applied to the host's scheduler.
    Linux: set_one_prio (the target's uid or CAP_SYS_NICE; a lower nice value within
    RLIMIT_NICE or CAP_SYS_NICE)."""
    which, who, nice = r.int32(0), r.int32(1), r.int32(2)
    nice = max(-20, min(19, nice))
    c = t.creds
    err = None
    for x in prio_targets(t, which, who):
        if x.creds.uid != c.euid and x.creds.euid != c.euid and not c.capable(CAP_SYS_NICE):
            err = Errno.EPERM
            continue
        if nice < x.nice and 20 - nice > x.tg.rlimits[_RLIMIT_NICE][0] and \
                not c.capable(CAP_SYS_NICE):
            err = Errno.EACCES
            continue
        x.nice = nice
    if err is not None:
        raise SyscallError(err)
    return 0


def sys_getcpu(t: Task, r: SyscallArguments) -> int:
    for i in (0, 1):
        if r.pointer(i):
            t.copy_out(r.pointer(i), bytes(4))
    return 0


# -- exit and wait ----------------------------------------------------------------------


def sys_exit(t: Task, r: SyscallArguments) -> SyscallControl:
    """Implements exit(2): this thread only."""
    code = r.int32(0)

    def do_exit() -> None:
        tg = t.tg
        t.exit_code = (code & 0xFF) << 8
        if tg.exit_code is None and len(tg.tasks) == 1:
            tg.exit_code = t.exit_code
        t.kernel.task_exit(t)
    if ptrace.exit_event(t, (code & 0xFF) << 8, do_exit):
        return SyscallControl.BLOCKED_STOP
    do_exit()
    return SyscallControl.EXITED


def sys_exit_group(t: Task, r: SyscallArguments) -> SyscallControl:
    """Implements exit_group(2)."""
    code = r.int32(0)
    if ptrace.exit_event(t, (code & 0xFF) << 8, lambda: t.kernel.group_exit(t.tg, code)):
        return SyscallControl.BLOCKED_STOP
    t.kernel.group_exit(t.tg, code)
    return SyscallControl.EXITED


def _select_children(t: Task, idtype: int, id_: int, nothread: bool = False
                     ) -> list[ThreadGroup]:
    # Children belong to the thread group, so a sibling thread's children are ours too,
    # unless __WNOTHREAD asks for the caller's own (a dead forker's go to any thread).
    kids = t.tg.children
    if nothread:
        kids = [c for c in kids if c.parent_task is None or c.parent_task is t
                or c.parent_task.exited or c.parent_task.tg is not t.tg]
    if idtype == P_PIDFD:
        return [c for c in kids if c.tgid == id_]
    return [c for c in kids
            if not (idtype == P_PID and c.tgid != id_) and not (idtype == P_PGID and c.pgid != id_)]


def _status_to_info(st: int) -> tuple[int, int]:
    if st & 0x7F:
        return (CLD_DUMPED if st & 0x80 else CLD_KILLED), st & 0x7F
    return CLD_EXITED, (st >> 8) & 0xFF


def _tracee_match(idtype: int, id_: int) -> Callable[[Task], bool]:
    if idtype in (P_PID, P_PIDFD):
        return lambda x: x.tid == id_
    if idtype == P_PGID:
        return lambda x: x.tg.pgid == id_
    return lambda x: True


async def _wait_common(t: Task, idtype: int, id_: int, options: int
                       ) -> tuple[ThreadGroup, int, int, int] | None:
    """Core of wait4/waitid: returns (child, kind, wait status, pid) or None for WNOHANG.
    kind: 0 exited, 1 stopped, 2 continued, 3 a ptrace stop (kernel/ptrace.py)."""
    k = t.kernel
    while True:
        # Without __WALL, __WCLONE picks the children that do not signal SIGCHLD at
        # exit and its absence the others (eligible_child).
        kids = [c for c in _select_children(t, idtype, id_, bool(options & WNOTHREAD))
                if options & WALL or (c.exit_signal != Signal.SIGCHLD) == bool(options & WCLONE)
                or c.traced_by_parent or ptrace.tracer_of_group(c, t.tg)]
        traced, found = False, None
        if t.tracees or len(t.tg.tasks) > 1:
            traced, found = ptrace.wait_tracees(t, _tracee_match(idtype, id_), options,
                                              bool(options & WEXITED), bool(options & WNOWAIT),
                                              bool(options & WNOTHREAD))
        if found is not None:
            tracee, kind, st = found
            return tracee.tg, kind, st, tracee.tid
        if not kids and not traced:
            raise SyscallError(Errno.ECHILD)
        for c in kids:
            if c.traced_leader is not None:
                continue        # its tracer collects its exit first (kernel/ptrace.py)
            if c.zombie and not c.reaped and options & WEXITED:
                st = c.exit_code or 0
                if not options & WNOWAIT:
                    cputime.reap_into(t.tg, c)
                    k.release_group(c)
                return c, 0, st, c.tgid
            if c.stop_report is not None and not c.zombie and \
                    not ptrace.tracer_of_group(c, t.tg):
                rep = c.stop_report
                if rep == 0xFFFF and options & WCONTINUED:
                    if not options & WNOWAIT:
                        c.stop_report = None
                    return c, 2, rep, c.tgid
                if rep != 0xFFFF and options & WSTOPPED and c.stopped:
                    if not options & WNOWAIT:
                        c.stop_report = None
                    return c, 1, rep, c.tgid
        if not traced and not options & WEXITED and all(c.zombie for c in kids):
            # Only zombies, and their exit is not asked for: nothing will ever
            # match (Linux: wait_consider_task leaves notask_error set).
            raise SyscallError(Errno.ECHILD)
        if options & WNOHANG:
            return None
        await k.block_on(t, t.tg.child_wq)


def _child_rusage(c: ThreadGroup) -> bytes:
    """The rusage wait4/waitid report: the child's own times plus its reaped children's
    (Linux: wait_task_zombie fills it from the child's signal_struct)."""
    u, s = cputime.group_times(c)
    return pack_rusage(u + c.children_utime_ns, s + c.children_stime_ns,
                       max(c.maxrss_kb, c.children_maxrss_kb))


async def sys_wait4(t: Task, r: SyscallArguments) -> int:
    """Implements wait4(2)."""
    pid, status_addr, options, rusage = r.int32(0), r.pointer(1), r.uint32(2), r.pointer(3)
    if options & ~(WNOHANG | WUNTRACED | WCONTINUED | WALL | WCLONE | WNOTHREAD):
        raise SyscallError(Errno.EINVAL)
    if pid == -1:
        idtype, id_ = P_ALL, 0
    elif pid == 0:
        idtype, id_ = P_PGID, t.tg.pgid
    elif pid < -1:
        idtype, id_ = P_PGID, -pid
    else:
        idtype, id_ = P_PID, pid
    res = await _wait_common(t, idtype, id_, (options & ~WUNTRACED) | WEXITED |
                             (WSTOPPED if options & WUNTRACED else 0))
    if res is None:
        return 0
    child, _kind, st, pid = res
    if status_addr:
        t.copy_out(status_addr, struct.pack("<i", st))
    if rusage:
        t.copy_out(rusage, _child_rusage(child))
    return pid


async def sys_waitid(t: Task, r: SyscallArguments) -> int:
    """Implements waitid(2)."""
    idtype, id_, infop, options = r.int32(0), r.int32(1), r.pointer(2), r.uint32(3)
    if idtype not in (P_ALL, P_PID, P_PGID, P_PIDFD):
        raise SyscallError(Errno.EINVAL)
    if options & ~(WNOHANG | WNOWAIT | WEXITED | WSTOPPED | WCONTINUED | WNOTHREAD | WCLONE |
                   WALL):
        raise SyscallError(Errno.EINVAL)
    eagain = False
    if idtype == P_PIDFD:
        from pyvisor.sentry.syscalls.linux.sys_signal import pidfd_group
        id_ = pidfd_group(t, id_).tgid
        # A non-blocking pidfd makes the wait non-blocking: EAGAIN where it would sleep.
        if t.fd_table.get(r.int32(1)).nonblocking and not options & WNOHANG:
            options |= WNOHANG
            eagain = True
    if not options & (WEXITED | WSTOPPED | WCONTINUED):
        raise SyscallError(Errno.EINVAL)
    if idtype == P_PGID and id_ == 0:
        id_ = t.tg.pgid
    ru = r.pointer(4)
    res = await _wait_common(t, idtype, id_, options)
    if res is None and eagain:
        raise SyscallError(Errno.EAGAIN)
    if res is None:
        if infop:
            t.copy_out(infop, bytes(128))
        if ru:
            t.copy_out(ru, bytes(144))
        return 0
    child, kind, st, pid = res
    if ru:
        t.copy_out(ru, _child_rusage(child))
    if kind == 0:
        code, status = _status_to_info(st)
    elif kind == 1:
        code, status = CLD_STOPPED, (st >> 8) & 0xFF
    elif kind == 3:
        code, status = CLD_TRAPPED, (st >> 8) & 0xFFFF
    else:
        code, status = CLD_CONTINUED, Signal.SIGCONT
    if infop:
        info = struct.pack("<iii4xiIi", Signal.SIGCHLD, 0, code, pid, 0, status)
        t.copy_out(infop, info.ljust(128, b"\0"))
    return 0


# -- clone, fork, exec --------------------------------------------------------------------


async def _clone(t: Task, flags: int, stack: int, ptid: int, ctid: int, tls: int,
                 pidfd_addr: int | None = None, clear_sighand: bool = False) -> int:
    """clone and clone3.  CLONE_PIDFD stores the new pidfd at `pidfd_addr` (clone3)
    or at the parent-tid pointer (clone, where it excludes CLONE_PARENT_SETTID)."""
    if flags & CLONE_PIDFD:
        if pidfd_addr is None:
            if flags & CLONE_PARENT_SETTID:
                raise SyscallError(Errno.EINVAL)
            pidfd_addr = ptid
        t.mm.check_range(pidfd_addr, 4, 2)
    child = kclone.do_clone(t, flags, stack, ptid, ctid, tls)
    tid = child.tid
    if clear_sighand:
        # CLONE_CLEAR_SIGHAND: handlers back to SIG_DFL; ignored signals stay ignored.
        for act in child.tg.sighand.actions:
            if act.handler != SIG_IGN:
                act.handler, act.flags, act.mask, act.restorer = SIG_DFL, 0, 0, 0
    if flags & CLONE_PIDFD:
        from pyvisor.sentry.syscalls.linux.sys_signal import new_pidfd
        try:
            fd = new_pidfd(t, child.tg, False)
            t.copy_out(pidfd_addr, struct.pack("<i", fd))
        except SyscallError:
            t.kernel.group_exit(child.tg, Signal.SIGKILL, killed=True)
            raise
    event = ptrace.clone_event(t, flags, child) if t.ptrace is not None else 0
    kclone.start(child)
    if event:
        await ptrace.event_stop(t, event, tid)
    if flags & CLONE_VFORK:
        q = child.tg.vfork_done
        assert q is not None
        while child.vfork_parent is not None and not child.exited:
            try:
                await t.kernel.block_on(t, q, interruptible=False)
            except SyscallError:
                break
        if ptrace.vfork_done_enabled(t):
            await ptrace.event_stop(t, P_EVENT_VFORK_DONE, tid)
    return tid


async def sys_clone(t: Task, r: SyscallArguments) -> int:
    """Implements clone(2): flags, stack, parent_tid, child_tid, tls (amd64 order)."""
    # The flags are an unsigned long, of which Linux reads the low 32 bits.
    return await _clone(t, r.uint32(0), r.pointer(1), r.pointer(2), r.pointer(3),
                        r.uint64(4))


_CLONE_ARGS = struct.Struct("<11Q")
CLONE_ARGS_SIZE_VER0 = 64


async def sys_clone3(t: Task, r: SyscallArguments) -> int:
    """Implements clone3(2) (Linux: copy_clone_args_from_user, clone3_args_valid)."""
    addr, size = r.pointer(0), r.uint64(1)
    if size < CLONE_ARGS_SIZE_VER0:
        raise SyscallError(Errno.EINVAL)
    if size > 4096:
        raise SyscallError(Errno.E2BIG)
    raw = t.copy_in(addr, size)
    if any(raw[_CLONE_ARGS.size:]):
        raise SyscallError(Errno.E2BIG)      # fields this kernel does not know, set
    (flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
     set_tid_size, _cgroup) = _CLONE_ARGS.unpack(
        raw[:_CLONE_ARGS.size].ljust(_CLONE_ARGS.size, b"\0"))
    # The low byte (CSIGNAL) is exit_signal's; CLONE_DETACHED is gone.
    known = (0xFFFFFFFF & ~0xFF & ~CLONE_DETACHED) | CLONE_CLEAR_SIGHAND | CLONE_INTO_CGROUP
    if flags & ~known or exit_signal > NSIG:
        raise SyscallError(Errno.EINVAL)
    if flags & CLONE_CLEAR_SIGHAND and flags & CLONE_SIGHAND:
        raise SyscallError(Errno.EINVAL)
    if (flags & (CLONE_THREAD | CLONE_PARENT)) and exit_signal:
        raise SyscallError(Errno.EINVAL)
    if (stack == 0) != (stack_size == 0):
        raise SyscallError(Errno.EINVAL)
    if set_tid_size or set_tid:
        raise SyscallError(Errno.EPERM if set_tid_size else Errno.EINVAL)
    if flags & CLONE_INTO_CGROUP:
        raise SyscallError(Errno.EBADF)        # no cgroup fds in the sandbox
    return await _clone(t, (flags & 0xFFFFFFFF) | exit_signal,
                        stack + stack_size if stack else 0, parent_tid, child_tid, tls,
                        pidfd_addr=pidfd if flags & CLONE_PIDFD else None,
                        clear_sighand=bool(flags & CLONE_CLEAR_SIGHAND))


async def sys_fork(t: Task, r: SyscallArguments) -> int:
    return await _clone(t, Signal.SIGCHLD, 0, 0, 0, 0)


async def sys_vfork(t: Task, r: SyscallArguments) -> int:
    return await _clone(t, CLONE_VM | CLONE_VFORK | Signal.SIGCHLD, 0, 0, 0, 0)


def _read_ptr_array(t: Task, addr: int, limit: int = 1 << 17) -> list[bytes]:
    return kexec.copy_strings(t, addr, limit)


async def _de_thread(t: Task) -> None:
    """execve's other threads die, and exec waits until they are gone when it must:
    when it runs on a non-leader thread (which then takes the leader's tid) or when a
    tracer holds one in its PTRACE_EVENT_EXIT stop.  Linux: de_thread."""
    tg, k = t.tg, t.kernel
    for o in list(tg.tasks):
        if o is t or o.exited:
            continue
        o.exit_pending = True
        if o.thread.running or o.coro is not None or o.wake is not None:
            k.signal_wakeup(o)
        if not o.thread.running:
            k.task_exit(o)
    while any(o is not t and not o.exited for o in tg.tasks):
        await k.block_on(t, tg.exit_wq, interruptible=False)


def _take_leader_tid(t: Task) -> None:
    """A non-leader's exec: it becomes the leader, under the leader's tid (the old
    leader is gone, reaped without notice)."""
    tg, k = t.tg, t.kernel
    old_leader = tg.traced_leader
    if old_leader is not None:
        ptrace.forget(old_leader)
    tg.traced_by_parent = False
    old = t.tid
    k.tasks_by_tid.pop(old, None)
    t.tid = tg.tgid
    k.tasks_by_tid[t.tid] = t
    k.pids.add(t.tid)
    k._free_pid(old)


_AT_SYMLINK_NOFOLLOW, _AT_EMPTY_PATH = 0x100, 0x1000


async def _execve(t: Task, dirfd: int, path: bytes, argv: list[bytes], envp: list[bytes],
                  flags: int) -> SyscallControl:
    from pyvisor.sentry.vfs.ops import dir_location
    from pyvisor.sentry.vfs.vfs import Location
    if flags & ~(_AT_SYMLINK_NOFOLLOW | _AT_EMPTY_PATH):
        raise SyscallError(Errno.EINVAL)
    dirloc = loc = None
    filename = path
    inaccessible = False
    if path[:1] != b"/" and dirfd != AT_FDCWD:
        # Linux names the program /dev/fd/N[/path] (alloc_bprm); a name that a
        # close-on-exec fd takes away cannot be a script's (execve sees ENOENT).
        filename = b"/dev/fd/%d" % dirfd + (b"/" + path if path else b"")
        inaccessible = t.fd_table.get_cloexec(dirfd)        # EBADF
    if not path:
        if not flags & _AT_EMPTY_PATH:
            raise SyscallError(Errno.ENOENT)
        if dirfd == AT_FDCWD:
            loc = t.fs.cwd
        else:
            f = t.fd_table.get(dirfd)
            loc = Location(f.mount, f.dentry)           # the fd itself
    elif path[:1] != b"/":
        dirloc = dir_location(t, dirfd)
    mm, entry, sp, f, argv2 = kexec.load(t, path, argv, envp, dirloc,
                                         follow=not flags & _AT_SYMLINK_NOFOLLOW, loc=loc,
                                         filename=filename, path_inaccessible=inaccessible)
    old_tid = t.tid
    tg = t.tg
    if len(tg.tasks) > 1 and (t.tid != tg.tgid or ptrace.exit_stops_pending(tg)):
        try:
            await _de_thread(t)
        except BaseException:
            mm.space.release()
            raise
    kexec.commit(t, mm, entry, sp, f, argv2, envp, path)
    if t.tid != tg.tgid and tg.tgid not in t.kernel.tasks_by_tid:
        _take_leader_tid(t)
    if mm.exec_fatal:
        # The image failed past the point of no return: the process dies of SIGSEGV
        # before running any of it (Linux: bprm_execve's force_fatal_sig).
        from pyvisor.sentry.kernel.signal import force_sig, kernel_info
        force_sig(t, kernel_info(Signal.SIGSEGV))
    if t.ptrace is not None:
        ptrace.exec_event(t, old_tid)
    return SyscallControl.EXECED


async def sys_execve(t: Task, r: SyscallArguments) -> SyscallControl:
    """Implements execve(2)."""
    path = t.copy_in_str(r.pointer(0))
    argv = _read_ptr_array(t, r.pointer(1))
    envp = _read_ptr_array(t, r.pointer(2))
    return await _execve(t, -100, path, argv, envp, 0)


async def sys_execveat(t: Task, r: SyscallArguments) -> SyscallControl:
    """Implements execveat(2)."""
    dirfd = r.int32(0)
    path = t.copy_in_str(r.pointer(1))
    argv = _read_ptr_array(t, r.pointer(2))
    envp = _read_ptr_array(t, r.pointer(3))
    return await _execve(t, dirfd, path, argv, envp, r.int32(4))


