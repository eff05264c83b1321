"""The seccomp allow-lists of the Sentry and of the Gofer.  gVisor: runsc/boot/filter
and runsc/fsgofer/filter.

Each process installs its own list once its start-up is over:

* the Sentry: after boot() (stubs forked, Gofers forked, memory file mapped)
  and the confinement steps, just before kernel.run():
  `install_sentry_filter()`;
* a Gofer: in its forked child, after its own confinement, just before
  serve(): `install_gofer_filter(sock_fd=...)`.

A syscall outside a list kills the whole process (SECCOMP_RET_KILL_PROCESS,
exit by SIGSYS, and an audit record "type=1326 ... syscall=NR" in the kernel
log).  Where the kernel lets a filter see the arguments (integers only, never
memory behind pointers) the lists hold argument conditions: the ptrace
requests, signals and targets of kill/tgkill, the ioctl requests, fcntl
commands, prctl options, no PROT_EXEC in mmap, the Gofer's O_NOFOLLOW opens
and *at flags, its socket fd, and so on.  Neither list has clone, fork,
execve, socket, mount or any way to gain memory that is executable: the
Sentry and the Gofers never need them once started.

A few file-system probes are not killed but answered with an errno
(SENTRY_REFUSED, GOFER_REFUSED): CPython and glibc make them on rare paths
after start-up (os.cpu_count reads /sys, logging's localtime() stats
/etc/localtime, traceback formatting stats source files for linecache), and
after pivot_root into an empty directory they would fail anyway.  A refused
syscall never reaches its kernel implementation, so refusing is as tight as
killing; it only keeps a harmless probe from taking the sandbox down.

How the lists were made (reproducible): `python3 -m pyvisor.seccomp.discover`
runs ~40 workloads (shell pipelines, coreutils, find, tar, gcc, busybox,
CPython with threads/subprocess/multiprocessing, the C test programs, a
tty, a forwarded SIGTERM, host-file stdio, an OCI bundle with a writable
bind mount), attaches strace to the Sentry and Gofers at the exact
point where the filters are installed, and prints the union of the syscalls
made afterwards with the argument values that the conditions cover.  The
lists add only what CPython or glibc may need on paths the workloads do not
reach (each with its reason).  `python3 -m pyvisor.seccomp.discover
--enforce` runs the same workloads under the filters (tests/seccomp does
too); `--enforce log` reports, from the audit log, any syscall outside the
lists without killing.  `python3 -m pyvisor.seccomp.filters markdown` prints
both lists as tables for SECURITY.md.

Concurrency: an install affects the calling process (all its threads: TSYNC)
and is inherited by children forked afterwards.  Each install runs at most
once per process.
"""

from __future__ import annotations

import errno as _errno
import signal as _signal
from dataclasses import dataclass

import seccomp  # python3-seccomp (libseccomp); imported here, before any pivot_root

__all__ = [
    "GOFER_REFUSED",
    "GOFER_RULES",
    "GOFER_SYSCALLS",
    "HOSTINET_RULES",
    "SENTRY_REFUSED",
    "SENTRY_RULES",
    "SENTRY_SYSCALLS",
    "build_gofer_filter",
    "build_sentry_filter",
    "filter_summary",
    "gofer_filter_summary",
    "install_gofer_filter",
    "install_sentry_filter",
    "sentry_filter_summary",
    "sentry_rules",
]

# -- constants (amd64).  From <asm-generic/mman-common.h>, <linux/fcntl.h>, <asm-generic/ioctls.h>,
# <linux/ptrace.h>, <linux/prctl.h>, <linux/seccomp.h>, <linux/falloc.h>.

PROT_EXEC = 0x4
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_EMPTY_PATH = 0x1000
O_DIRECTORY = 0o200000
O_NOFOLLOW = 0o400000
O_PATH = 0o10000000
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_DUPFD_CLOEXEC = 1030

TCGETS, TCSETS, TCSETSW, TCSETSF = 0x5401, 0x5402, 0x5403, 0x5404
TCSBRK, TCXONC, TCFLSH = 0x5409, 0x540A, 0x540B
TIOCOUTQ, TIOCGWINSZ, TIOCSWINSZ = 0x5411, 0x5413, 0x5414
FIONREAD, FIONBIO, FIOCLEX = 0x541B, 0x5421, 0x5451

PTRACE_CONT, PTRACE_KILL, PTRACE_SINGLESTEP = 7, 8, 9
PTRACE_GETREGS, PTRACE_SETREGS, PTRACE_GETFPREGS, PTRACE_SETFPREGS = 12, 13, 14, 15
PTRACE_SYSEMU, PTRACE_SYSEMU_SINGLESTEP = 31, 32
PTRACE_SETOPTIONS, PTRACE_GETEVENTMSG, PTRACE_GETSIGINFO, PTRACE_SETSIGINFO = \
    0x4200, 0x4201, 0x4202, 0x4203
PTRACE_GETREGSET, PTRACE_SETREGSET, PTRACE_INTERRUPT = 0x4204, 0x4205, 0x4207
NT_X86_XSTATE = 0x202          # the one regset the Sentry reads and writes

PR_GET_SECCOMP, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 21, 38, 39
SECCOMP_SET_MODE_FILTER = 1
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x1, 0x2

_U32 = 0xFFFFFFFF
_NEG_OR_HUGE = 0xFFFFFFFF80000000   # bits set in a negative (sign-extended) or > INT_MAX value


# -- rule model -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Cond:
    """One comparison of a syscall argument (64-bit register) with a constant.

    op: "eq", "ne" or "masked_eq" (arg & mask == value).  32-bit arguments
    (int, unsigned int) are compared through their low 32 bits, so glibc's
    sign extension of an int does not matter.
    """

    arg: int
    op: str
    value: int
    mask: int = 0
    text: str = ""

    def to_arg(self) -> seccomp.Arg:
        if self.op == "eq":
            return seccomp.Arg(self.arg, seccomp.EQ, self.value)
        if self.op == "ne":
            return seccomp.Arg(self.arg, seccomp.NE, self.value)
        if self.op == "masked_eq":
            return seccomp.Arg(self.arg, seccomp.MASKED_EQ, self.mask, self.value)
        raise ValueError(self.op)

    def __str__(self) -> str:
        if self.text:
            return self.text
        if self.op == "masked_eq":
            return f"arg{self.arg} & {self.mask:#x} == {self.value:#x}"
        return f"arg{self.arg} {'==' if self.op == 'eq' else '!='} {self.value:#x}"


def eq32(arg: int, value: int, text: str = "") -> Cond:
    """The low 32 bits of `arg` equal `value` (an int or unsigned int argument)."""
    return Cond(arg, "masked_eq", value & _U32, _U32, text)


def has_bits(arg: int, bits: int, text: str = "") -> Cond:
    return Cond(arg, "masked_eq", bits, bits, text)


def lacks_bits(arg: int, bits: int, text: str = "") -> Cond:
    return Cond(arg, "masked_eq", 0, bits, text)


def positive_int(arg: int, text: str = "") -> Cond:
    """0 <= arg <= INT_MAX (no negative pid/pgid forms)."""
    return Cond(arg, "masked_eq", 0, _NEG_OR_HUGE, text)


@dataclass(frozen=True)
class Spec:
    """What a list says about one syscall.

    reason: why it is needed (one line).
    allow: () to allow any arguments; otherwise alternatives, each a tuple
        of conditions that must all hold (the syscall is allowed when one
        alternative holds).
    refuse: (conditions, errno) pairs checked before `allow`: matching calls
        fail with that errno instead of running.
    deny: conditions checked before `allow` that kill the process whatever
        the default action (so that the debugging actions log/errno never let
        them through either).
    Anything else gets the default action (kill in production).
    """

    reason: str
    allow: tuple[tuple[Cond, ...], ...] = ()
    refuse: tuple[tuple[tuple[Cond, ...], int], ...] = ()
    unconditional: bool = True
    deny: tuple[tuple[Cond, ...], ...] = ()

    def describe(self) -> str:
        parts = []
        for conds in self.deny:
            parts.append(f"killed if {' and '.join(map(str, conds))}")
        for conds, err in self.refuse:
            parts.append(f"{_errno.errorcode.get(err, err)} if "
                         f"{' and '.join(map(str, conds))}")
        if self.allow:
            alts = [" and ".join(map(str, c)) for c in self.allow]
            parts.append("only if " + " or ".join(f"({a})" if len(self.allow) > 1 else a
                                                  for a in alts))
        return "; ".join(parts)


def _only(reason: str, *alternatives: tuple[Cond, ...] | Cond,
          refuse: tuple[tuple[tuple[Cond, ...], int], ...] = (),
          deny: tuple[tuple[Cond, ...], ...] = ()) -> Spec:
    alts = tuple(a if isinstance(a, tuple) else (a,) for a in alternatives)
    return Spec(reason, alts, refuse, unconditional=False, deny=deny)


def _one_of(arg: int, values: dict[str, int]) -> tuple[tuple[Cond, ...], ...]:
    return tuple((eq32(arg, v, f"arg{arg} == {name}"),) for name, v in values.items())


def _names(*names: str) -> dict[str, int]:
    g = globals()
    return {n: g[n] for n in names}


# -- the Sentry ------------------------------------------------------------------------------

# Exactly the requests of platform/ptrace (the only module that drives the stubs) after
# start-up (SETOPTIONS and TRACEME are start-up only).  Not ATTACH/SEIZE (other processes),
# not POKEUSER (debug registers), not DETACH (a stub must never run untraced).
_SENTRY_PTRACE = _names(
    "PTRACE_CONT", "PTRACE_SYSEMU", "PTRACE_GETREGS", "PTRACE_SETREGS", "PTRACE_GETFPREGS",
    "PTRACE_SETFPREGS", "PTRACE_GETEVENTMSG", "PTRACE_GETSIGINFO")

# The terminal requests HostFileImpl.ioctl passes to the host (fsimpl/host/host.py).
_SENTRY_IOCTLS = _names(
    "TCGETS", "TCSETS", "TCSETSW", "TCSETSF", "TCSBRK", "TCXONC", "TCFLSH", "TIOCOUTQ",
    "TIOCGWINSZ", "TIOCSWINSZ", "FIONREAD")

_FD_FCNTLS = _names("F_GETFD", "F_SETFD", "F_GETFL", "F_SETFL", "F_DUPFD_CLOEXEC")

_NO_EXEC = lacks_bits(2, PROT_EXEC, "prot has no PROT_EXEC")

# kill(2) takes an int pid: negative (bit 31 of the low word) is a process group or -1.
_NEGATIVE_PID = Cond(0, "masked_eq", 0x80000000, 0x80000000, "pid < 0")

_PATH_PROBE = "path-based probe by CPython/glibc (os.cpu_count, localtime, linecache, imports)"

SENTRY_RULES: dict[str, Spec] = {
    # The ptrace platform: the Sentry's only door to its stubs.
    "ptrace": _only("drives the stubs: registers, PTRACE_SYSEMU, injection (platform/ptrace); "
                    "the XSAVE state (NT_X86_XSTATE) only of the regsets",
                    *_one_of(0, _SENTRY_PTRACE),
                    *((eq32(0, v, f"arg0 == {n}"),
                       eq32(2, NT_X86_XSTATE, "arg2 == NT_X86_XSTATE"))
                      for n, v in _names("PTRACE_GETREGSET", "PTRACE_SETREGSET").items())),
    "sched_setaffinity": _only("places stub threads beside the Sentry or on every CPU, and "
                               "pins or frees the Sentry's own thread by its tid "
                               "(platform/ptrace/placement.py, platform/systrap/placement.py); never pid 0 "
                               "nor a negative pid",
                               (positive_int(0, "0 <= pid <= INT_MAX"),),
                               deny=((eq32(0, 0, "pid == 0"),), (_NEGATIVE_PID,))),
    "process_vm_readv": Spec("copies application memory in (mm/memory_manager.py)"),
    "process_vm_writev": Spec("copies application memory out (mm/memory_manager.py)"),
    "wait4": Spec("waitpid for stub stops and exits, and for the Gofers at shutdown"),
    "kill": _only("SIGKILL to a dead stub process (StubProcess.kill), signal 0 to see "
                  "whether a stub is reaped (PtracePlatform.shutdown); never a process "
                  "group nor -1",
                  (positive_int(0, "0 <= pid <= INT_MAX"),
                   eq32(1, _signal.SIGKILL, "sig == SIGKILL")),
                  (positive_int(0, "0 <= pid <= INT_MAX"), eq32(1, 0, "sig == 0")),
                  deny=((eq32(0, 0, "pid == 0"),), (_NEGATIVE_PID,))),
    "tgkill": _only("SIGSTOP to interrupt a running stub thread (Kernel.signal_wakeup, "
                    "group_exit, group_stop)",
                    (positive_int(0, "0 <= tgid <= INT_MAX"),
                     eq32(2, _signal.SIGSTOP, "sig == SIGSTOP"))),
    # The loop.
    "epoll_wait": Spec("the Sentry loop waits for stops (signalfd), host fds and timers"),
    "epoll_ctl": Spec("one-shot watches on host fds (Kernel.watch_fd)"),
    "poll": Spec("zero-timeout readiness checks of host fds (HostInode.poll_now)"),
    "read": Spec("signalfd, host stdio and pipes"),
    "write": Spec("host stdio, log and error messages on stderr"),
    "rt_sigreturn": Spec("return from CPython's C signal handler (forwarded SIGTERM/SIGINT)"),
    "rt_sigaction": Spec("run_sandbox installs the forwarding handlers after boot"),
    "restart_syscall": Spec("the kernel's restart of an interrupted syscall"),
    # Files the Sentry holds: host stdio, Gofer-donated fds, the memory file.
    "pread64": Spec("reads of host regular files and Gofer-donated files"),
    "pwrite64": Spec("writes to host regular files and Gofer-donated files"),
    "preadv2": Spec("CPython's os.preadv uses preadv2"),
    "lseek": Spec("a host stdio file's own offset (HostFileDescription.offset, lseek(2)); "
                  "the memory file's, before a sendfile into it"),
    "sendfile": Spec("fills a mapped Gofer file's page cache in the memory file from the "
                     "file's donated fd (GoferInode._pc_load): fds the Sentry already reads "
                     "and writes"),
    "close": Spec("closes donated fds, host fds and the gofer sockets"),
    "newfstatat": _only("fstat of held fds (glibc's fstat is newfstatat(fd, \"\", AT_EMPTY_PATH))",
                        eq32(3, AT_EMPTY_PATH, "flags == AT_EMPTY_PATH"),
                        refuse=(((lacks_bits(3, AT_EMPTY_PATH, "flags lack AT_EMPTY_PATH"),),
                                 _errno.EACCES),)),
    "ftruncate": Spec("truncates host files (HostInode.truncate) and donated files"),
    "fsync": Spec("fsync of host and donated files"),
    "membarrier": _only("membarrier(2) of the sandbox: a host MEMBARRIER_CMD_GLOBAL "
                        "(syscalls/linux/sys_rseq.py)",
                        eq32(0, 1, "cmd == MEMBARRIER_CMD_GLOBAL")),
    "fallocate": _only("punches freed extents out of the memory file (MemoryFile.free)",
                       eq32(1, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            "mode == PUNCH_HOLE|KEEP_SIZE")),
    "ioctl": _only("terminal requests passed through to the host tty (fsimpl/host/host.py)",
                   *_one_of(1, _SENTRY_IOCTLS)),
    # The Gofer connections (sockets made before start-up ended).
    "sendto": Spec("gofer requests (socket.sendall)"),
    "recvmsg": Spec("gofer replies with donated fds (SCM_RIGHTS); control requests with "
                    "the stdio fds of exec (runtime/control.py)"),
    # The control socket (containers made by create/run; not `do`): only on its fd.
    "accept4": Spec("accepts CLI connections on the control socket (runtime/control.py); "
                    "only that fd, and only when the sandbox has one"),
    "fcntl": _only("F_GETFL of the stdio fds an exec request brings (boot.install_stdio); "
                   "only with a control socket",
                   eq32(1, F_GETFL, "cmd == F_GETFL")),
    "getsockname": Spec("CPython checks that an accepted control connection's fd is a socket "
                        "(socket(fileno=...)); it reads only the socket's own address"),
    # Memory of the CPython process itself.
    "brk": Spec("malloc"),
    "mmap": _only("malloc, pymalloc arenas, large buffers; never executable", _NO_EXEC),
    "munmap": Spec("free"),
    "mremap": Spec("realloc of large buffers"),
    # Time, identity, randomness.
    "clock_gettime": Spec("CPU-time clocks (sys_time) and any clock when the vDSO is unusable"),
    "getrandom": Spec("os.urandom: AT_RANDOM bytes, getrandom(2) for the application, uuid"),
    "getpid": Spec("logging records and os.getpid"),
    "sysinfo": Spec("os.sysconf(SC_PHYS_PAGES) for sysinfo(2)"),
    # Tightening only.
    "prctl": _only("reads of the process's own confinement state; no_new_privs",
                   *_one_of(0, _names("PR_GET_SECCOMP", "PR_GET_NO_NEW_PRIVS",
                                      "PR_SET_NO_NEW_PRIVS"))),
    "seccomp": _only("stacking a further (stricter) filter", eq32(0, SECCOMP_SET_MODE_FILTER,
                                                                  "op == SET_MODE_FILTER")),
    # Exit.
    "exit_group": Spec("the Sentry exits (os._exit) when the sandbox is over"),
}

# -- systrap (--platform=systrap only) --------------------------------------------------------

# From <linux/futex.h>: shared (not private) waits and wakes on the regions' mapping.
FUTEX_WAIT, FUTEX_WAKE = 0, 1
_ST = "systrap (--platform=systrap): "
SYSTRAP_RULES: dict[str, Spec] = {
    "futex": _only(_ST + "FUTEX_WAKE of a stub thread waiting in its handler (switch), "
                   "FUTEX_WAIT for a new thread's first stop; never PI or requeue",
                   eq32(1, FUTEX_WAKE, "op == FUTEX_WAKE"), eq32(1, FUTEX_WAIT, "op == FUTEX_WAIT")),
    "tgkill": _only("SIGSTOP (ptrace) or SIGUSR2 (systrap) to interrupt a running stub thread "
                    "(Kernel.signal_wakeup, group_exit, group_stop)",
                    (positive_int(0, "0 <= tgid <= INT_MAX"),
                     eq32(2, _signal.SIGSTOP, "sig == SIGSTOP")),
                    (positive_int(0, "0 <= tgid <= INT_MAX"),
                     eq32(2, _signal.SIGUSR2, "sig == SIGUSR2"))),
}
# PTRACE_POKEDATA: systrap patches a syscall site (and its trampoline slot) through a
# stub's traced syscall thread, which can write read-only private code (copy-on-write).
# (Its application threads are cloned untraced: nothing to detach.)
_SYSTRAP_PTRACE = {**_SENTRY_PTRACE, "PTRACE_POKEDATA": 5}

# Refused with an errno rather than killing: probes of the file system.
SENTRY_REFUSED: dict[str, tuple[int, str]] = {
    name: (_errno.EACCES, _PATH_PROBE)
    for name in ("open", "openat", "openat2", "stat", "lstat", "statx", "access", "faccessat",
                 "faccessat2", "readlink", "readlinkat", "getdents64", "statfs")
}


# -- hostinet (--network=host only) ----------------------------------------------------------

# From <linux/socket.h>, <linux/net.h>, <linux/in.h>.
AF_INET, AF_INET6 = 2, 10
SOCK_STREAM, SOCK_DGRAM = 1, 2
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000
SOL_IP, SOL_SOCKET, SOL_TCP, SOL_UDP, SOL_IPV6 = 0, 1, 6, 17, 41
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
# The SOL_SOCKET options hostinet passes to the host (sentry/socket/hostinet): never
# SO_ATTACH_FILTER/SO_ATTACH_BPF, SO_BINDTODEVICE, SO_MARK or SO_PEERCRED.
_HOSTINET_SOCKOPTS = {"SO_REUSEADDR": 2, "SO_TYPE": 3, "SO_ERROR": 4, "SO_BROADCAST": 6,
                      "SO_SNDBUF": 7, "SO_RCVBUF": 8, "SO_KEEPALIVE": 9, "SO_OOBINLINE": 10,
                      "SO_PRIORITY": 12, "SO_LINGER": 13, "SO_REUSEPORT": 15,
                      "SO_RCVLOWAT": 18, "SO_SNDLOWAT": 19, "SO_TIMESTAMP": 29,
                      "SO_ACCEPTCONN": 30, "SO_TIMESTAMPNS": 35, "SO_PROTOCOL": 38,
                      "SO_DOMAIN": 39}


def _hostinet_sockets() -> tuple[tuple[Cond, ...], ...]:
    alts = []
    for fam, fname in ((AF_INET, "AF_INET"), (AF_INET6, "AF_INET6")):
        ping = IPPROTO_ICMP if fam == AF_INET else IPPROTO_ICMPV6
        for typ, tname, protos in ((SOCK_STREAM, "SOCK_STREAM", (0, IPPROTO_TCP)),
                                   (SOCK_DGRAM, "SOCK_DGRAM", (0, IPPROTO_UDP, ping))):
            for proto in protos:
                alts.append((eq32(0, fam, f"domain == {fname}"),
                             eq32(1, typ | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                  f"type == {tname}|SOCK_NONBLOCK|SOCK_CLOEXEC"),
                             eq32(2, proto, f"protocol == {proto}")))
    return tuple(alts)


def _sockopt_rules() -> tuple[tuple[Cond, ...], ...]:
    alts: list[tuple[Cond, ...]] = [
        (eq32(1, lvl, f"level == {name}"),)
        for name, lvl in (("SOL_IP", SOL_IP), ("SOL_TCP", SOL_TCP), ("SOL_UDP", SOL_UDP),
                          ("SOL_IPV6", SOL_IPV6))]
    for name, opt in _HOSTINET_SOCKOPTS.items():
        alts.append((eq32(1, SOL_SOCKET, "level == SOL_SOCKET"),
                     eq32(2, opt, f"optname == {name}")))
    return tuple(alts)


_HI = "hostinet (--network=host): "
SIOCATMARK = 0x8905     # From <linux/sockios.h>.
HOSTINET_RULES: dict[str, Spec] = {
    "socket": _only(_HI + "the application's TCP, UDP and ICMP echo sockets, always "
                    "non-blocking and close-on-exec", *_hostinet_sockets()),
    "bind": Spec(_HI + "bind(2) of an application socket"),
    "listen": Spec(_HI + "listen(2) of an application socket"),
    "accept4": _only(_HI + "accept(2): the new socket non-blocking and close-on-exec",
                     eq32(3, SOCK_NONBLOCK | SOCK_CLOEXEC, "flags == SOCK_NONBLOCK|SOCK_CLOEXEC")),
    "connect": Spec(_HI + "connect(2) of an application socket"),
    "getsockname": Spec(_HI + "getsockname(2)"),
    "getpeername": Spec(_HI + "getpeername(2)"),
    "shutdown": Spec(_HI + "shutdown(2)"),
    "setsockopt": _only(_HI + "the options on hostinet's list", *_sockopt_rules()),
    "getsockopt": _only(_HI + "the options on hostinet's list (SO_ERROR after connect)",
                        *_sockopt_rules()),
}


# -- the Gofer -------------------------------------------------------------------------------

GOFER_RULES: dict[str, Spec] = {
    # The connection to the Sentry (restricted to its socket when the fd is known).
    "recvfrom": Spec("requests (socket.recv_into)"),
    "sendto": Spec("replies (socket.sendall)"),
    "sendmsg": Spec("replies donating an fd (SCM_RIGHTS)"),
    # Walking and opening, always relative to a held directory fd, never following a symlink.
    "openat": _only("walk (O_PATH|O_NOFOLLOW), open/create (O_NOFOLLOW), attach (\".\" "
                    "O_PATH|O_DIRECTORY)",
                    has_bits(2, O_NOFOLLOW, "flags have O_NOFOLLOW"),
                    has_bits(2, O_PATH | O_DIRECTORY, "flags have O_PATH|O_DIRECTORY")),
    "newfstatat": _only("fstat (AT_EMPTY_PATH) and lstat-at (AT_SYMLINK_NOFOLLOW); never a "
                        "stat that follows a symlink",
                        eq32(3, AT_EMPTY_PATH, "flags == AT_EMPTY_PATH"),
                        eq32(3, AT_SYMLINK_NOFOLLOW, "flags == AT_SYMLINK_NOFOLLOW"),
                        refuse=(((eq32(3, 0, "flags == 0"),), _errno.EACCES),)),
    "fstatfs": Spec("STATFS"),
    "readlinkat": Spec("READLINK (readlinkat(fd, \"\"))"),
    "getdents64": Spec("READDIR (os.scandir)"),
    "lseek": Spec("os.scandir rewinds the directory before closing it"),
    "fcntl": _only("os.scandir: dup with cloexec, F_GETFL and F_SETFD in fdopendir",
                   *_one_of(1, _FD_FCNTLS)),
    "close": Spec("fids released, donated fds after sending"),
    # Mutations (read-write mounts).
    "mkdirat": Spec("MKDIR"),
    "symlinkat": Spec("SYMLINK"),
    "linkat": _only("LINK, never following a symlink nor linking an fd (AT_EMPTY_PATH)",
                    eq32(4, 0, "flags == 0")),
    "unlinkat": _only("UNLINK", eq32(2, 0, "flags == 0"),
                      eq32(2, AT_REMOVEDIR, "flags == AT_REMOVEDIR")),
    "renameat": Spec("RENAME"),
    "renameat2": _only("RENAME2: RENAME_EXCHANGE or RENAME_NOREPLACE; never RENAME_WHITEOUT "
                       "(a device node on the host)",
                       eq32(4, 1, "flags == RENAME_NOREPLACE"),
                       eq32(4, 2, "flags == RENAME_EXCHANGE")),
    "fchownat": _only("SETATTR uid/gid, never following a symlink",
                      eq32(4, AT_SYMLINK_NOFOLLOW, "flags == AT_SYMLINK_NOFOLLOW")),
    "chmod": Spec("SETATTR mode today: glibc's fchmodat(AT_SYMLINK_NOFOLLOW) opens the file "
                  "O_PATH|O_NOFOLLOW and chmods /proc/self/fd/N (fails where /proc is absent; "
                  "fchmodat2 below is the fix, then chmod can go)"),
    "fchmodat2": _only("SETATTR mode without following a symlink (kernel >= 6.6): the fix "
                       "for glibc's fchmodat(AT_SYMLINK_NOFOLLOW), which goes through /proc",
                       eq32(3, AT_SYMLINK_NOFOLLOW, "flags == AT_SYMLINK_NOFOLLOW"),
                       eq32(3, AT_EMPTY_PATH, "flags == AT_EMPTY_PATH")),
    "utimensat": _only("SETATTR times, never following a symlink",
                       eq32(3, AT_SYMLINK_NOFOLLOW, "flags == AT_SYMLINK_NOFOLLOW")),
    "ftruncate": Spec("SETATTR size"),
    # Memory of the CPython process itself.
    "brk": Spec("malloc"),
    "mmap": _only("malloc, pymalloc arenas; never executable", _NO_EXEC),
    "munmap": Spec("free"),
    "mremap": Spec("realloc of large buffers"),
    # Miscellany of CPython and glibc.
    "write": Spec("log.exception on stderr (/dev/null in the Gofer)"),
    "getpid": Spec("logging records"),
    "clock_gettime": Spec("logging timestamps when the vDSO is unusable"),
    "exit_group": Spec("the Gofer exits when the Sentry closes the connection"),
}

GOFER_REFUSED: dict[str, tuple[int, str]] = {
    name: (_errno.EACCES, "path-based probe by CPython/glibc (linecache, imports)")
    for name in ("open", "stat", "lstat", "statx", "access", "faccessat", "faccessat2",
                 "readlink", "statfs")
}


SENTRY_SYSCALLS: dict[str, str] = {name: spec.reason for name, spec in SENTRY_RULES.items()}
GOFER_SYSCALLS: dict[str, str] = {name: spec.reason for name, spec in GOFER_RULES.items()}


# -- building and installing -----------------------------------------------------------------

_ACTIONS = ("kill", "log", "errno", "trap")


def _default_action(name: str) -> int:
    """The action for syscalls outside the list: kill (production), log (discovery: the
    kernel logs them and lets them run), errno (EPERM, for debugging), trap (SIGSYS)."""
    if name == "kill":
        return seccomp.KILL_PROCESS
    if name == "log":
        return seccomp.LOG
    if name == "errno":
        return seccomp.ERRNO(_errno.EPERM)
    if name == "trap":
        return seccomp.TRAP
    raise ValueError(f"default_action must be one of {_ACTIONS}, not {name!r}")


def _build(rules: dict[str, Spec], refused: dict[str, tuple[int, str]], default_action: str,
           restrict_fd: dict[str, int] | None = None) -> seccomp.SyscallFilter:
    default = _default_action(default_action)
    f = seccomp.SyscallFilter(defaction=default)
    # Every thread of the process, and no_new_privs (which seccomp requires without
    # CAP_SYS_ADMIN and which pyvisor wants anyway).
    f.set_attr(seccomp.Attr.CTL_NNP, 1)
    f.set_attr(seccomp.Attr.CTL_TSYNC, 1)
    # A binary tree over syscall numbers instead of a linear scan: every host syscall of
    # the Sentry runs this filter, several per application syscall (measured: ~3 µs of
    # getppid's ~17 µs with the linear filter).
    f.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    allow = seccomp.ALLOW
    # libseccomp refuses a rule whose action is the default one.  A deny rule must still be
    # there (it is checked before an allow rule that would also match), so with the default
    # KILL_PROCESS it kills the thread instead: the same for the single-threaded Sentry/Gofer.
    deny = seccomp.KILL_PROCESS if default != seccomp.KILL_PROCESS else seccomp.KILL

    def add(action: int, name: str, conds: tuple[Cond, ...]) -> None:
        if action == default:
            raise ValueError(f"{name}: a rule with the default action {default_action!r}")
        f.add_rule(action, name, *(c.to_arg() for c in conds))

    for name, spec in rules.items():
        fd_cond: tuple[Cond, ...] = ()
        if restrict_fd and name in restrict_fd:
            fd_cond = (eq32(0, restrict_fd[name], f"fd == {restrict_fd[name]}"),)
        # Deny and refuse rules first: libseccomp checks a syscall's rules in the order they
        # were added (tests/seccomp/test_filters.py checks that kill(0, SIGKILL) is fatal).
        for conds in spec.deny:
            add(deny, name, conds)
        for conds, err in spec.refuse:
            add(seccomp.ERRNO(err), name, conds)
        if spec.unconditional:
            add(allow, name, fd_cond)
        else:
            for alt in spec.allow:
                add(allow, name, (*fd_cond, *alt))
    for name, (err, _) in refused.items():
        if name in rules:
            raise ValueError(f"{name} is both allowed and refused")
        add(seccomp.ERRNO(err), name, ())
    return f


# Allowed only in a Sentry with a control socket (create/run, not `do`).
CONTROL_ONLY = ("accept4", "getsockname", "fcntl")


def sentry_rules(hostinet: bool = False, control_fd: int | None = None,
                 platform: str = "ptrace") -> dict[str, Spec]:
    """The Sentry's list: CONTROL_ONLY only with a control socket; with `hostinet`, plus
    the socket calls of --network=host.  With both, accept4 is allowed on the control
    socket (CPython's accept: SOCK_CLOEXEC) or with hostinet's flags.  With
    platform "systrap", plus SYSTRAP_RULES and PTRACE_POKEDATA."""
    rules = dict(SENTRY_RULES)
    if platform == "systrap":
        rules.update(SYSTRAP_RULES)
        rules["ptrace"] = _only(
            _ST + "as ptrace, and PTRACE_POKEDATA (syscall-site patching)",
            *_one_of(0, _SYSTRAP_PTRACE),
            *((eq32(0, v, f"arg0 == {n}"), eq32(2, NT_X86_XSTATE, "arg2 == NT_X86_XSTATE"))
              for n, v in _names("PTRACE_GETREGSET", "PTRACE_SETREGSET").items()))
    if control_fd is None:
        for name in CONTROL_ONLY:
            del rules[name]
    if hostinet:
        rules.update(HOSTINET_RULES)
        rules["ioctl"] = _only(
            "terminal requests passed through to the host tty (fsimpl/host/host.py); "
            + _HI + "FIONREAD/TIOCOUTQ (SIOCINQ/SIOCOUTQ) and SIOCATMARK of a host socket",
            *_one_of(1, {**_SENTRY_IOCTLS, "SIOCATMARK": SIOCATMARK}))
        if control_fd is not None:
            rules["accept4"] = _only(
                "accept4 on the control socket, or hostinet's accept(2) (the new socket "
                "non-blocking and close-on-exec)",
                eq32(0, control_fd, "fd == the control socket"),
                eq32(3, SOCK_NONBLOCK | SOCK_CLOEXEC, "flags == SOCK_NONBLOCK|SOCK_CLOEXEC"))
    return rules


def build_sentry_filter(default_action: str = "kill", control_fd: int | None = None,
                        hostinet: bool = False, platform: str = "ptrace") -> seccomp.SyscallFilter:
    """The Sentry's filter, not loaded.  Without hostinet, accept4 is allowed on control_fd
    only; without a control socket none of CONTROL_ONLY is allowed."""
    rules = sentry_rules(hostinet, control_fd, platform)
    if control_fd is not None and not hostinet:
        return _build(rules, SENTRY_REFUSED, default_action, {"accept4": control_fd})
    return _build(rules, SENTRY_REFUSED, default_action)


def build_gofer_filter(default_action: str = "kill",
                       sock_fd: int | None = None) -> seccomp.SyscallFilter:
    """The Gofer's filter, not loaded.  With sock_fd, socket I/O is allowed on that fd only."""
    restrict = None
    if sock_fd is not None:
        restrict = {n: sock_fd for n in ("recvfrom", "recvmsg", "sendto", "sendmsg")}
    return _build(GOFER_RULES, GOFER_REFUSED, default_action, restrict)


_installed: set[str] = set()


def install_sentry_filter(default_action: str = "kill", control_fd: int | None = None,
                          hostinet: bool = False, platform: str = "ptrace") -> None:
    """Loads the Sentry's filter into this process (and its threads).  Irreversible.

    Call it once start-up is over: after boot() and the confinement steps,
    just before kernel.run().  default_action: "kill" (production), or for
    debugging "log" (syscalls outside the list run and are logged as audit
    records type=1326 in dmesg), "errno" (they fail with EPERM), "trap".
    A second call in the same process does nothing.
    """
    if "sentry" in _installed:
        return
    build_sentry_filter(default_action, control_fd, hostinet, platform).load()
    _installed.add("sentry")


def install_gofer_filter(default_action: str = "kill", sock_fd: int | None = None) -> None:
    """Loads the Gofer's filter into this process.  Irreversible.

    Call it in the Gofer child after its confinement, just before serve();
    pass the connection's fd as sock_fd to confine socket I/O to it.
    A second call in the same process does nothing.
    """
    if "gofer" in _installed:
        return
    build_gofer_filter(default_action, sock_fd).load()
    _installed.add("gofer")


# -- documentation ---------------------------------------------------------------------------

def filter_summary(rules: dict[str, Spec], refused: dict[str, tuple[int, str]]) -> dict:
    """Counts and names, for SECURITY.md."""
    conditional = {n: s.describe() for n, s in rules.items() if s.describe()}
    return {
        "allowed_count": len(rules),
        "allowed": sorted(rules),
        "argument_filtered_count": len(conditional),
        "argument_filters": dict(sorted(conditional.items())),
        "refused_with_errno_count": len(refused),
        "refused_with_errno": {n: _errno.errorcode.get(e, str(e)) for n, (e, _) in
                               sorted(refused.items())},
        "reasons": {n: s.reason for n, s in sorted(rules.items())},
        "default_action": "SECCOMP_RET_KILL_PROCESS",
    }


def sentry_filter_summary() -> dict:
    """The Sentry list: {"allowed_count", "allowed", "argument_filters", ...}."""
    return filter_summary(SENTRY_RULES, SENTRY_REFUSED)


def gofer_filter_summary() -> dict:
    """The Gofer list, in the same form as sentry_filter_summary()."""
    return filter_summary(GOFER_RULES, GOFER_REFUSED)


def markdown_table(rules: dict[str, Spec], refused: dict[str, tuple[int, str]]) -> str:
    """The list as a Markdown table (for SECURITY.md)."""
    lines = ["| syscall | arguments | why |", "|---|---|---|"]
    for name in sorted(rules):
        s = rules[name]
        lines.append(f"| `{name}` | {s.describe() or 'any'} | {s.reason} |")
    for name in sorted(refused):
        err, why = refused[name]
        lines.append(f"| `{name}` | refused: {_errno.errorcode.get(err, err)} | {why} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys
    which = sys.argv[1] if len(sys.argv) > 1 else "sentry"
    if which == "markdown":
        print("## Sentry\n\n" + markdown_table(SENTRY_RULES, SENTRY_REFUSED))
        print("\n## Sentry with --network=host (added)\n\n" + markdown_table(HOSTINET_RULES, {}))
        print("\n## Gofer\n\n" + markdown_table(GOFER_RULES, GOFER_REFUSED))
    else:
        print(json.dumps(sentry_filter_summary() if which == "sentry"
                         else gofer_filter_summary(), indent=1))
