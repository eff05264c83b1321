"""Tasks and thread groups.  Linux: struct task_struct, struct signal_struct.

A Task is one application thread, backed by one stub thread on the host.
A ThreadGroup is a process.  Behaviour lives in functions grouped by concern
(clone.py, exec.py, exit.py, signal.py), not in methods here.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Coroutine

from pyvisor.abi.linux.capability import ALL_CAPS, CAP_LAST_CAP, CAP_SYS_ADMIN  # noqa: F401
from pyvisor.abi.linux.signal import NSIG
from pyvisor.sentry.arch.registers import Registers
from pyvisor.sentry.kernel.sched import DEFAULT as SCHED_DEFAULT
from pyvisor.sentry.kernel.sched import SchedAttrs
from pyvisor.sentry.waitqueue import WaitQueue

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.fd_table import FDTable
    from pyvisor.sentry.kernel.kernel import Kernel
    from pyvisor.sentry.kernel.ptrace import PtraceState
    from pyvisor.sentry.kernel.seccomp import SeccompState
    from pyvisor.sentry.kernel.signal import SigInfo
    from pyvisor.sentry.mm.memory_manager import MemoryManager
    from pyvisor.sentry.platform.platform import Context
    from pyvisor.sentry.vfs.inode import Inode
    from pyvisor.sentry.vfs.vfs import Location

# Resource limits.  From <asm-generic/resource.h>.
RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_DATA, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_RSS = range(6)
RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_MEMLOCK, RLIMIT_AS = 6, 7, 8, 9
RLIMIT_SIGPENDING = 11
RLIM_NLIMITS = 16
RLIM_INFINITY = (1 << 64) - 1


def default_rlimits() -> list[list[int]]:
    lim = [[RLIM_INFINITY, RLIM_INFINITY] for _ in range(RLIM_NLIMITS)]
    lim[RLIMIT_STACK] = [8 << 20, RLIM_INFINITY]
    lim[RLIMIT_CORE] = [0, RLIM_INFINITY]
    lim[RLIMIT_NOFILE] = [1024, 4096]
    lim[RLIMIT_NPROC] = [4096, 4096]
    lim[RLIMIT_MEMLOCK] = [8 << 20, 8 << 20]
    lim[10] = [RLIM_INFINITY, RLIM_INFINITY]       # LOCKS
    lim[RLIMIT_SIGPENDING] = [63704, 63704]
    lim[12] = [819200, 819200]                     # MSGQUEUE
    lim[13] = [0, 0]                               # NICE
    lim[14] = [0, 0]                               # RTPRIO
    return lim


# Capabilities Linux checks against the caller's own user namespace, so a process in
# a user namespace it made has them for its own ids (CAP_SETUID, CAP_SETGID,
# CAP_SETPCAP, CAP_SYS_CHROOT; kernel/namespaces.py).
_NS_LOCAL_CAPS = frozenset({6, 7, 8, 18})


@dataclass(slots=True)
class Credentials:
    """Sandbox credentials.  Linux: struct cred.  Copied on write (clone shares)."""

    uid: int = 0
    euid: int = 0
    suid: int = 0
    fsuid: int = 0
    gid: int = 0
    egid: int = 0
    sgid: int = 0
    fsgid: int = 0
    groups: tuple[int, ...] = ()
    # (effective, permitted, inheritable) once they differ from the default; None: every
    # capability for euid 0, none otherwise (a process that never changed its ids or
    # capabilities).  Permission checks ask `capable` (kernel/creds.py keeps them in step
    # with uid changes, capset, prctl and exec, as Linux's commoncap.c does).
    caps: tuple[int, int, int] | None = None
    bset: int = ALL_CAPS              # the bounding set (PR_CAPBSET_DROP)
    ambient: int = 0                  # PR_CAP_AMBIENT; within permitted & inheritable
    securebits: int = 0               # PR_SET_SECUREBITS, PR_SET_KEEPCAPS
    session_keyring: Any = None       # kernel/keys.Key; None: the sandbox's "_ses"
    landlock: Any = None              # security/landlock: the domain's layers (a tuple)
    # The user namespace (kernel/namespaces.py); None: the sandbox's.  The ids above
    # are always the sandbox's ("kernel ids").
    userns: Any = None

    def copy(self) -> Credentials:
        return Credentials(self.uid, self.euid, self.suid, self.fsuid, self.gid, self.egid,
                           self.sgid, self.fsgid, self.groups, self.caps, self.bset,
                           self.ambient, self.securebits, self.session_keyring, self.landlock,
                           self.userns)

    def cap_sets(self) -> tuple[int, int, int]:
        """(effective, permitted, inheritable)."""
        if self.caps is not None:
            return self.caps
        return (ALL_CAPS, ALL_CAPS, 0) if self.euid == 0 else (0, 0, 0)

    def capable(self, cap: int) -> bool:
        """Whether `cap` is in the effective set.  Linux: capable(), in the sandbox's
        one user namespace."""
        caps = self.caps
        if self.userns is not None and cap not in _NS_LOCAL_CAPS:
            return False       # none in the sandbox's namespace (ns_capable for the rest)
        if caps is None:
            return self.euid == 0
        return bool(caps[0] >> cap & 1)

    def fs_superuser(self) -> bool:
        """fsuid 0 with every capability: no DAC check can refuse it (callers skip them)."""
        return self.fsuid == 0 and self.caps is None and self.euid == 0 and \
            self.userns is None

    def in_group(self, gid: int) -> bool:
        """in_group_p: the fsgid or a supplementary group."""
        return gid == self.fsgid or gid in self.groups


@dataclass(slots=True)
class SigAction:
    """struct k_sigaction."""

    handler: int = 0       # SIG_DFL
    flags: int = 0
    restorer: int = 0
    mask: int = 0


@dataclass(eq=False)
class SignalHandlers:
    """Per-process (or CLONE_SIGHAND-shared) signal dispositions.  Linux: sighand_struct."""

    actions: list[SigAction] = field(default_factory=lambda: [SigAction() for _ in range(NSIG + 1)])
    # Woken whenever a signal is queued to a task sharing these handlers (signalfd).
    signalfd_wq: WaitQueue = field(default_factory=WaitQueue)

    def copy(self) -> SignalHandlers:
        return SignalHandlers([SigAction(a.handler, a.flags, a.restorer, a.mask)
                               for a in self.actions])


@dataclass(eq=False)
class FSContext:
    """Root, cwd and umask.  Linux: struct fs_struct.  Shared under CLONE_FS."""

    root: Location
    cwd: Location
    umask: int = 0o022

    def copy(self) -> FSContext:
        return FSContext(self.root, self.cwd, self.umask)


@dataclass(eq=False)
class ThreadGroup:
    """A process.  Linux: struct signal_struct plus the tgid."""

    kernel: Kernel
    tgid: int
    parent: ThreadGroup | None
    sighand: SignalHandlers
    tasks: list[Task] = field(default_factory=list)
    children: list[ThreadGroup] = field(default_factory=list)
    pgid: int = 0
    sid: int = 0
    pending: dict[int, list[SigInfo]] = field(default_factory=dict)    # shared pending
    pending_mask: int = 0
    rlimits: list[list[int]] = field(default_factory=default_rlimits)
    exit_code: int | None = None      # wait status once exiting
    zombie: bool = False
    reaped: bool = False
    exiting: bool = False             # exit_group in progress
    stopped: bool = False             # job-control stopped
    stop_report: int | None = None    # pending WSTOPPED/WCONTINUED report for the parent
    child_wq: WaitQueue = field(default_factory=WaitQueue)   # woken on any child state change
    exit_wq: WaitQueue = field(default_factory=WaitQueue)    # woken at death and reaping (pidfd)
    exit_signal: int = 17              # SIGCHLD
    itimer_real: Any = None
    start_ns: int = 0
    # CPU time (kernel/cputime.py): settled totals, stub processes in use with their
    # baselines, and what reaped children left (RUSAGE_CHILDREN).
    cpu_user_ns: int = 0
    cpu_sys_ns: int = 0
    cpu_procs: dict[Any, tuple[int, int]] = field(default_factory=dict)
    cpu_other_threads: bool = False
    sentry_sys_ns: int = 0            # the Sentry's CPU time on the group's syscalls
    children_utime_ns: int = 0
    children_stime_ns: int = 0
    maxrss_kb: int = 0
    children_maxrss_kb: int = 0
    sem_undo: dict[Any, int] = field(default_factory=dict)   # SEM_UNDO: (set, num) -> adj
    posix_timers: Any = None          # kernel/posix_timers.TimerTable, made on first use
    cpu_timers: Any = None            # itimers VIRTUAL/PROF and RLIMIT_CPU (kernel/cputimers)
    comm: bytes = b""
    exe: Location | None = None
    argv: bytes = b""
    environ: bytes = b""
    vfork_done: WaitQueue | None = None
    # The pod container it belongs to ("" for the sandbox's first container), inherited by
    # its children (runtime/sentry_pod.py).  Linux: what task_active_pid_ns() tells apart.
    container: str = ""
    pod_init: bool = False            # the init of a pod member (as pid 1 is the sandbox's)
    dumpable: int = 1                 # PR_SET_DUMPABLE (Linux keeps it in the mm); exec resets
    # Its exited leader, while a tracer that is not the parent has yet to collect the exit:
    # the parent may not reap it until then (kernel/ptrace.py).
    traced_leader: Task | None = None
    traced_by_parent: bool = False    # its leader died traced by its parent: any wait sees it
    # The thread that forked it (Linux: real_parent), for __WNOTHREAD; None: any thread of
    # the parent (CLONE_PARENT, adopted orphans).
    parent_task: Task | None = None
    child_subreaper: bool = False     # PR_SET_CHILD_SUBREAPER: adopts orphans below it
    did_exec: bool = False            # it has called execve (Linux: no PF_FORKNOEXEC)
    coredump_filter: int = 0x33       # /proc/PID/coredump_filter (kept in the mm in Linux)
    oom_score_adj: int = 0            # /proc/PID/oom_score_adj; both inherited at fork

    @property
    def leader(self) -> Task:
        for t in self.tasks:
            if t.tid == self.tgid:
                return t
        return self.tasks[0]


def sees(observer: ThreadGroup, tg: ThreadGroup) -> bool:
    """Whether a process of `observer`'s container may name `tg` by pid (kill, /proc,
    getpgid, ...): a pod's containers see only their own processes, as separate PID
    namespaces would (runtime/sentry_pod.py).  The pid numbers stay the sandbox's."""
    return observer.container == tg.container


def is_init(tg: ThreadGroup) -> bool:
    """The init of its PID view: the sandbox's (pid 1) or a pod member's."""
    return tg.tgid == 1 or tg.pod_init


@dataclass(eq=False)
class Task:
    """One application thread.  Linux: struct task_struct."""

    kernel: Kernel
    tid: int
    tg: ThreadGroup
    thread: Context                   # the platform context that runs it (a stub thread)
    mm: MemoryManager
    fd_table: FDTable
    fs: FSContext
    creds: Credentials
    regs: Registers                   # owned by the task; the platform fills it at stops
    sigmask: int = 0
    pending: dict[int, list[SigInfo]] = field(default_factory=dict)
    pending_mask: int = 0
    saved_sigmask: int | None = None     # restored after a sigsuspend/pselect handler
    real_blocked: int = 0             # the mask rt_sigtimedwait lifted while it waits
    altstack: tuple[int, int, int] = (0, 2, 0)   # (sp, flags=SS_DISABLE, size)
    clear_child_tid: int = 0
    robust_list: int = 0
    coro: Coroutine[Any, Any, Any] | None = None   # the blocking syscall in progress
    wake: Any = None                      # how to interrupt the current sleep
    interruptible: bool = True
    exited: bool = False
    exit_pending: bool = False            # stop at next opportunity and exit (exit_group)
    restart_block: Any = None             # for restart_syscall
    vfork_parent: ThreadGroup | None = None
    name: bytes = b""
    fpregs: Any = None
    sentry_sys_ns: int = 0                # the Sentry's CPU time on this task's syscalls
    run_ns: int = 0                       # wall time resumed in application code
    run_start: int = 0                    # when it was last resumed (monotonic ns)
    no_new_privs: bool = False            # inherited by clone, kept by execve
    nice: int = 0                         # setpriority; inherited by clone (not applied)
    seccomp: SeccompState | None = None   # immutable, shared; kernel/seccomp.py
    # ptrace (kernel/ptrace.py): this task's tracee state while it is traced, and the
    # tasks it traces.  Linux: task->ptrace and friends, task->ptraced.
    ptrace: PtraceState | None = None
    tracees: list[Task] = field(default_factory=list)
    exit_code: int | None = None          # this thread's own exit(2) status (wait format)
    personality: int = 0                  # personality(2): PER_LINUX and its flags
    mempolicy: Any = None                 # set_mempolicy(2) (mm/mempolicy.py); None: default
    pdeath_signal: int = 0                # PR_SET_PDEATHSIG; not inherited
    sched: SchedAttrs = SCHED_DEFAULT     # policy, affinity, ioprio (kernel/sched.py)
    # I/O accounting for /proc/PID/io: rchar, wchar, syscr, syscw (Linux: task_io_accounting)
    ioac: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    # -- memory access ----------------------------------------------------------------

    def copy_in(self, addr: int, n: int) -> bytes:
        """Reads application memory; EFAULT if any byte is unreadable."""
        return self.mm.copy_in(addr, n)

    def copy_out(self, addr: int, data: bytes) -> None:
        """Writes application memory; EFAULT if any byte is unwritable."""
        self.mm.copy_out(addr, data)

    def copy_in_str(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string (a path); ENAMETOOLONG past `limit`."""
        return self.mm.copy_in_str(addr, limit)

    # -- files ------------------------------------------------------------------------

    def get_file(self, fd: int) -> Any:
        return self.fd_table.get(fd)

    def check_exec(self, inode: Inode) -> None:
        """Search permission on a directory during path walks."""
        c = self.creds
        if c.fsuid == 0 and c.caps is None:   # root with its capabilities never changed
            return
        from pyvisor.sentry.vfs.perms import check_access
        check_access(self, inode, 1)

    @property
    def pid(self) -> int:
        return self.tg.tgid

