"""unshare(2) and setns(2).  Linux: kernel/fork.c (ksys_unshare), kernel/nsproxy.c.

The namespaces themselves are kernel/namespaces.py's.
"""

from __future__ import annotations

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.sched import (CLONE_FILES, CLONE_FS, CLONE_NEWCGROUP, CLONE_NEWIPC,
                                     CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER,
                                     CLONE_NEWUTS, CLONE_SIGHAND, CLONE_SYSVSEM, CLONE_THREAD,
                                     CLONE_VM)
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel import namespaces as N
from pyvisor.sentry.kernel.task import Task

CLONE_NEWTIME = 0x00000080
_UNSHARE_OK = CLONE_THREAD | CLONE_FS | CLONE_NEWNS | CLONE_SIGHAND | CLONE_VM | \
    CLONE_FILES | CLONE_SYSVSEM | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | \
    CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWCGROUP | CLONE_NEWTIME
_NS = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUSER


def _multithreaded(t: Task) -> bool:
    return len([x for x in t.tg.tasks if not getattr(x, "exited", False)]) > 1


def sys_unshare(t: Task, r: SyscallArguments) -> int:
    """Implements unshare(2), in ksys_unshare's order of checks."""
    flags = r.uint64(0) & 0xFFFFFFFF
    if flags & ~_UNSHARE_OK:
        raise SyscallError(Errno.EINVAL)
    if flags & CLONE_NEWUSER:
        flags |= CLONE_THREAD | CLONE_FS          # a user namespace is per process
    if flags & CLONE_VM:
        flags |= CLONE_SIGHAND
    if flags & CLONE_SIGHAND:
        flags |= CLONE_THREAD
    if flags & CLONE_NEWNS:
        flags |= CLONE_FS
    # check_unshare_flags: what a thread cannot take from its siblings.
    if flags & (CLONE_THREAD | CLONE_SIGHAND | CLONE_VM) and _multithreaded(t):
        raise SyscallError(Errno.EINVAL)
    if flags & (CLONE_NEWPID | CLONE_NEWCGROUP | CLONE_NEWTIME):
        raise SyscallError(Errno.EINVAL)     # TODO(#10): pid, cgroup, time namespaces
    creds, proxy, remap = N.prepare(t, flags & _NS)
    # Nothing has changed yet; from here on nothing fails.
    if flags & CLONE_FS and N._fs_shared(t):
        t.fs = t.fs.copy()
    if flags & CLONE_FILES:
        t.fd_table = t.fd_table.fork()
    N.install(t, creds, proxy, remap)
    return 0


def sys_setns(t: Task, r: SyscallArguments) -> int:
    """Implements setns(2): an nsfs file (/proc/PID/ns/*), or a pidfd with the
    CLONE_NEW* flags of the namespaces to join."""
    f = t.fd_table.get(r.int32(0))
    nstype = r.int32(1)
    obj = getattr(f.inode, "ns_object", None)
    if obj is not None:
        N.setns(t, obj, nstype)
        return 0
    from pyvisor.sentry.kernel.pidfd import PidFD
    if isinstance(f.impl, PidFD):
        if not nstype or nstype & ~_NS:
            raise SyscallError(Errno.EINVAL)
        target = next((x for x in f.impl.tg.tasks if not getattr(x, "exited", False)), None)
        if target is None:
            raise SyscallError(Errno.ESRCH)
        from pyvisor.sentry.kernel import ptrace
        if not ptrace.may_access(t, target):
            raise SyscallError(Errno.EPERM)       # PTRACE_MODE_READ_REALCREDS
        # Every namespace is checked before any is joined (Linux: prepare_nsset).
        order = [(CLONE_NEWUSER, b"user"), (CLONE_NEWNS, b"mnt"), (CLONE_NEWUTS, b"uts"),
                 (CLONE_NEWIPC, b"ipc"), (CLONE_NEWNET, b"net")]
        objs = [N.of_task(target, kind) for bit, kind in order if nstype & bit]
        saved = (t.creds, getattr(t, "nsproxy", None), t.fs.root, t.fs.cwd)
        try:
            for o in objs:
                if o is N.of_task(t, o.kind) and N.flag_of(o) == CLONE_NEWUSER:
                    continue           # already there: nothing to join
                N.setns(t, o, 0)
        except SyscallError:
            t.creds, t.nsproxy, t.fs.root, t.fs.cwd = saved
            raise
        return 0
    raise SyscallError(Errno.EINVAL)
