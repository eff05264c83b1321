"""clone/fork/vfork: new tasks and processes.  Linux: kernel/fork.c.

The host work: CLONE_VM gets a new stub thread in the same stub process;
otherwise the stub process is forked (copy-on-write by the host).  Everything
else (fd table, fs context, signal handlers, pid) is the Sentry's.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.sched import (CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID, CLONE_DETACHED,
                                     CLONE_FILES, CLONE_FS, CLONE_NEWCGROUP, CLONE_NEWIPC,
                                     CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER,
                                     CLONE_NEWUTS, CLONE_PARENT, CLONE_PARENT_SETTID, CLONE_PIDFD,
                                     CLONE_SETTLS, CLONE_SIGHAND, CLONE_THREAD, CLONE_VFORK,
                                     CLONE_VM, CSIGNAL)
from pyvisor.sentry.arch.registers import valid_segment_base
from pyvisor.sentry.kernel import cputime, cputimers, sched
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import Task, ThreadGroup
from pyvisor.sentry.waitqueue import WaitQueue
from pyvisor.sentry.vfs import textbusy

if TYPE_CHECKING:
    pass

_NS_FLAGS = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | \
    CLONE_NEWNET | CLONE_NEWCGROUP


def do_clone(t: Task, flags: int, stack: int, ptid: int, ctid: int, tls: int) -> Task:
    """Creates the child task (not yet running).  Returns it.  The checks are
    copy_process's, in its order."""
    if flags & (CLONE_NEWNS | CLONE_FS) == CLONE_NEWNS | CLONE_FS or \
            flags & (CLONE_NEWUSER | CLONE_FS) == CLONE_NEWUSER | CLONE_FS:
        raise SyscallError(Errno.EINVAL)
    if flags & CLONE_THREAD and not flags & CLONE_SIGHAND:
        raise SyscallError(Errno.EINVAL)
    if flags & CLONE_SIGHAND and not flags & CLONE_VM:
        raise SyscallError(Errno.EINVAL)
    if flags & CLONE_PARENT and t.tg is t.kernel.init:
        raise SyscallError(Errno.EINVAL)      # init has no parent to share (SIGNAL_UNKILLABLE)
    if flags & CLONE_THREAD and flags & (CLONE_NEWUSER | CLONE_NEWPID):
        raise SyscallError(Errno.EINVAL)
    if flags & CLONE_PIDFD and flags & (CLONE_DETACHED | CLONE_THREAD):
        raise SyscallError(Errno.EINVAL)
    if flags & (CLONE_NEWPID | CLONE_NEWCGROUP):
        raise SyscallError(Errno.EPERM)   # TODO(#10): pid and cgroup namespaces
    ns_new = None
    if flags & _NS_FLAGS:
        from pyvisor.sentry.kernel import namespaces
        ns_new = namespaces.prepare(t, flags & _NS_FLAGS)
    if flags & CLONE_SETTLS and not valid_segment_base(tls):
        raise SyscallError(Errno.EPERM)   # Linux: do_arch_prctl_64(ARCH_SET_FS)
    kernel = t.kernel
    tg = t.tg
    # The sandbox's pid limit, zombies included (a fork bomb ends here), and RLIMIT_NPROC
    # (applied to the whole sandbox, root included).
    if kernel.pids_exhausted(tg.rlimits[6][0]):
        raise SyscallError(Errno.EAGAIN)
    # Host side first: nothing to undo in the Sentry if it fails.
    try:
        if flags & CLONE_VM:
            mm = t.mm
        else:
            mm = t.mm.fork()
        thread = kernel.platform.new_context(mm.space)
    except OSError as e:
        raise SyscallError(Errno.EAGAIN if e.errno is None else e.errno) from None
    if mm is not t.mm:
        textbusy.exe_acquire(kernel, mm)
    mm.add_user()
    tid = kernel.alloc_pid()
    regs = t.regs.copy()
    regs.rax = 0
    if stack:
        regs.rsp = stack
    if flags & CLONE_SETTLS:
        regs.fs_base = tls
    if flags & CLONE_THREAD:
        child_tg = tg
    else:
        parent = tg.parent if flags & CLONE_PARENT else tg
        # CLONE_PARENT: a sibling, which signals the shared parent as the caller does.
        exit_signal = tg.exit_signal if flags & CLONE_PARENT else flags & CSIGNAL
        child_tg = ThreadGroup(kernel, tid, parent,
                               tg.sighand if flags & CLONE_SIGHAND else tg.sighand.copy(),
                               pgid=tg.pgid, sid=tg.sid,
                               rlimits=[list(x) for x in tg.rlimits],
                               exit_signal=exit_signal, start_ns=kernel.now(),
                               comm=tg.comm, exe=tg.exe, argv=tg.argv, environ=tg.environ,
                               container=tg.container, coredump_filter=tg.coredump_filter,
                               oom_score_adj=tg.oom_score_adj)
        if parent is not None:
            parent.children.append(child_tg)
        if not flags & CLONE_PARENT:
            child_tg.parent_task = t
        # The thread that forked it, for /proc/PID/task/TID/children (Linux: the
        # child's real_parent is that thread).
        child_tg.forked_by = t.tid if parent is tg else 0
        kernel.groups[tid] = child_tg
    child = Task(kernel, tid, child_tg, thread, mm,
                 t.fd_table if flags & CLONE_FILES else t.fd_table.fork(),
                 t.fs if flags & CLONE_FS else t.fs.copy(),
                 t.creds, regs, sigmask=t.sigmask, name=t.name,
                 altstack=t.altstack if flags & CLONE_VM and not flags & CLONE_VFORK
                 else t.altstack)
    if flags & CLONE_THREAD:
        child.altstack = (0, 2, 0)
        tg.cpu_other_threads = True
    else:
        cputimers.rlimit_changed(child_tg)     # RLIMIT_CPU is inherited
    if flags & CLONE_VM and not flags & CLONE_THREAD:
        # A process sharing the caller's stub: only what it runs from now on is its own.
        cputime.attach(child_tg, thread.space, fresh=False)
    child.no_new_privs, child.seccomp = t.no_new_privs, t.seccomp
    child.nsproxy = getattr(t, "nsproxy", None)
    if ns_new is not None:
        namespaces.install(child, *ns_new)
    child.personality = t.personality
    child.mempolicy = t.mempolicy         # immutable: sharing is copying
    child.sched, child.nice = sched.at_fork(t.sched, t.nice)
    child_tg.tasks.append(child)
    kernel.register(child)
    try:
        if flags & CLONE_PARENT_SETTID:
            t.copy_out(ptid, struct.pack("<i", tid))
        if flags & CLONE_CHILD_SETTID:
            child.copy_out(ctid, struct.pack("<i", tid))
    except SyscallError:
        pass   # Linux ignores faults here too
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = ctid
    if flags & CLONE_VFORK:
        child.vfork_parent = tg
        child_tg.vfork_done = WaitQueue()
    return child


def start(child: Task) -> None:
    """Lets a new task run its first instruction."""
    child.kernel.resume(child, None)
