"""`pyvisor do`: the Sentry is forked before the command line is parsed.

A Sentry spends ~55 ms importing the kernel before it can boot; the launcher spends
~12 ms importing the command line, parsing it and making the configuration, cgroup and
network namespace.  One after the other, as every other verb does, those add up.  For
`do` the launcher forks the Sentry as soon as the interpreter is up: the Sentry imports
on one CPU while the launcher does its part on the other, and the configuration reaches
the Sentry over a socket when it is ready (docs/startup.md).

    launcher (the monitor)                      Sentry (PID 1 of a new PID namespace)
      start(): unshare(NEWPID), fork,
        setns back to its own PID namespace       imports every module (confine.preload);
      imports the CLI, parses, configures         a thread waits for the hand-over
      cgroup, network namespace, console
      hand_over(): configuration, fds  ───────►   thread: joins the cgroup; then the
                                                    network namespace, the console,
      waits, forwards signals (sandbox.py)          boot, confinement (sandbox.py)

The Sentry is the same process as without this (PID 1 of its PID namespace, the
monitor's child, dying with it by PR_SET_PDEATHSIG), in the same cgroup and network
namespace, with the same configuration: only the order of the work differs.  Whatever
makes it unfit (a verb other than `do` after all, a configuration it cannot take, an
error before launch) cancels it: the launcher kills and reaps its child and goes on as
without.  PYVISOR_PREFORK=0 turns it off.

Only the launcher's own restore of its PID namespace is subtle: unshare(CLONE_NEWPID)
applies to the caller's next children, so start() sets its children's namespace back
(setns to its own) right after the fork; the launcher's later children (the console's
guard) are then made as without.
"""

from __future__ import annotations

import errno
import os
import signal as host_signal
import struct
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from pyvisor.runtime.phases import mark

# Every other verb imports this module too (to ask wanted()): socket, pickle and threading
# are imported where a `do` needs them.
if TYPE_CHECKING:
    import socket

    from pyvisor.runtime.config import SandboxConfig
    from pyvisor.runtime.logsetup import LogSetup

CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
_LEN = struct.Struct("!Q")
TERMINAL_TAKEN = b"t"         # the early Sentry's reply once the console's pty is its own
MAX_FDS = 2                  # the network namespace, the console's pty slave
# What the launcher's `do` needs that the Sentry needs too: imported before the fork, so
# that neither process imports it again (the CLI itself, argparse, stays the launcher's).
SHARED = ("json", "logging", "pyvisor.runtime.sandbox", "pyvisor.runtime.config",
          "pyvisor.runtime.cgroup", "pyvisor.runtime.console", "pyvisor.runtime.logsetup",
          "pyvisor.sentry.kernel.sysctl", "pyvisor.sentry.platform.platform")
# The command line's global options whose value may be the next word (cli._parser; a
# test keeps the two in step).  `--rootless` takes one only optionally: not counted.
VALUE_OPTIONS = frozenset((
    "--root", "--log", "--log-format", "--debug-log", "--criu", "--network",
    "--platform", "--file-access", "--memory", "--pids-limit", "--cpus", "--tmpfs-size",
    "--sentry-memory", "--dcache"))
# What the Sentry imports before its configuration arrives: the default configuration's
# set (ptrace, its own network stack); a configuration that needs more adds it after.
FIRST_SKIP = ("pyvisor.sentry.platform.systrap", "pyvisor.sentry.socket.hostinet")


@dataclass
class Handover:
    """What the launcher sends the Sentry it forked early (fds travel beside it)."""

    cfg: SandboxConfig
    log: LogSetup
    cgroup_dirs: list[str]
    console_stdio: list[int] | None     # with a console: the stdio fds its slave replaces


@dataclass
class Prefork:
    """The launcher's handle on its early Sentry."""

    pid: int
    sock: socket.socket
    log: LogSetup | None = None       # the command line's logging flags, once parsed


_early: Prefork | None = None


def wanted(argv: list[str], seccomp_ok: Callable[[], bool]) -> bool:
    """Whether this command line is `do`, run as root with the seccomp module importable
    (`seccomp_ok()`; else the CLI may re-exec another interpreter) and a second CPU to do it on (on one
    CPU the two processes would only take turns, and the fork costs ~2 ms of CPU).

    A cheap look before parsing: the first word that is neither an option nor the
    separate value of one of VALUE_OPTIONS (`--root DIR do`); a misjudgement costs only
    a cancelled child, or no early fork."""
    if os.environ.get("PYVISOR_PREFORK", "1") == "0" or os.geteuid() != 0:
        return False
    if len(os.sched_getaffinity(0)) < 2:
        return False
    return verb_of(argv) == "do" and seccomp_ok()


def verb_of(argv: list[str]) -> str | None:
    """The verb of a command line, as argparse will find it (cli._parser)."""
    it = iter(argv)
    for a in it:
        if a == "--":
            return next(it, None)
        if not a.startswith("-"):
            return a
        if a in VALUE_OPTIONS:
            next(it, None)      # its value, in the next word
    return None


def start(argv: list[str], seccomp_ok: Callable[[], bool]) -> None:
    """In the launcher, first thing: forks the Sentry if this is a `do` (see wanted).
    `seccomp_ok()`: whether the seccomp module is importable here (interp.seccomp_here;
    asked only of a `do`)."""
    global _early
    if not wanted(argv, seccomp_ok):
        return
    import importlib
    for name in SHARED:
        importlib.import_module(name)
    import socket

    from pyvisor.runtime import confine
    libc = confine._libc
    try:
        own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        try:
            parent_end, child_end = socket.socketpair()
        except OSError:
            return              # out of fds, say: the CLI forks its Sentry as without
        if libc.unshare(CLONE_NEWPID) != 0:
            parent_end.close()
            child_end.close()
            return
        # ^C is held while forking (CPython's fork handlers are no place for a
        # KeyboardInterrupt).  The launcher takes it again at once; the Sentry holds it
        # until its handlers pass it to the sandbox (sandbox.sentry_main).
        host_signal.pthread_sigmask(host_signal.SIG_BLOCK, [host_signal.SIGINT])
        try:
            pid = os.fork()
        except OSError:
            pid = -1
        # Ordering: before the launcher forks anything else (the console's guard), its
        # children go back to its own PID namespace, the one `own` names.
        if pid != 0 and libc.setns(own, CLONE_NEWPID) != 0:
            sys.stderr.write("pyvisor: cannot restore the launcher's PID namespace\n")
            os._exit(125)      # the early Sentry, if any, dies with us (PDEATHSIG)
    finally:
        os.close(own)
    if pid == 0:
        parent_end.close()
        _sentry(child_end)
    host_signal.pthread_sigmask(host_signal.SIG_UNBLOCK, [host_signal.SIGINT])
    child_end.close()
    if pid < 0:
        parent_end.close()
        return
    _early = Prefork(pid, parent_end)


def note_logging(setup: LogSetup) -> None:
    """The CLI has parsed its logging flags: the early Sentry will log the same way."""
    if _early is not None:
        _early.log = setup


def fit(cfg: SandboxConfig, container: bool, after_fork: Any) -> bool:
    """Whether the early Sentry can run `cfg`: a confined foreground sandbox whose
    launcher hands it nothing made after the fork but what hand_over() sends."""
    return (cfg.confine and not container and after_fork is None and not cfg.hold_init
            and cfg.ready_fd < 0 and cfg.control_fd < 0 and cfg.console_fd < 0
            and cfg.preserve_fds == 0)


def claim(cfg: SandboxConfig, container: bool, after_fork: Any) -> Prefork | None:
    """In launch(): the early Sentry if there is one and `cfg` fits it; else None (any
    early Sentry is cancelled: the caller forks one the usual way)."""
    global _early
    early = _early
    if early is None:
        return None
    if not fit(cfg, container, after_fork):
        cancel()
        return None
    _early = None
    return early


def hand_over(early: Prefork, cfg: SandboxConfig, cgroup_dirs: list[str],
              console: Any) -> int:
    """Sends the configuration, the cgroup, the launcher's network namespace and the
    console's pty slave (if any) to the early Sentry; returns its pid, which the caller
    waits for.  A Sentry that died before (killed, or failed to import) is reaped and
    reported as a BootError."""
    import pickle
    import socket

    from pyvisor.runtime.errors import BootError
    from pyvisor.runtime.logsetup import LogSetup
    netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fds = [netns]
    stdio = None
    if console is not None:
        fds.append(console.slave)
        stdio = [fd for fd, r in zip(console.stdio, console.replaced) if r]
    msg = pickle.dumps(Handover(cfg, early.log or LogSetup(), cgroup_dirs, stdio))
    data = _LEN.pack(len(msg)) + msg
    try:
        # MSG_NOSIGNAL: the launcher has SIGPIPE at its default (run_sandbox) by now.
        sent = early.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            struct.pack(f"{len(fds)}i", *fds))],
                                  socket.MSG_NOSIGNAL)
        early.sock.sendall(data[sent:], socket.MSG_NOSIGNAL)
        if console is not None:
            # Ordering: the launcher copies the user's keys into the pty once it serves
            # the console; a ^C copied before the Sentry holds the pty would be lost.
            if early.sock.recv(1) != TERMINAL_TAKEN:
                raise OSError(errno.EPIPE, "no reply")
    except OSError as e:
        _, status = os.waitpid(early.pid, 0)
        how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"status {os.WEXITSTATUS(status)}")
        raise BootError(f"the sandbox's Sentry ended ({how}) before its configuration "
                        f"reached it: {e.strerror or e}", 125) from None
    finally:
        os.close(netns)
        early.sock.close()
    mark("launcher", "configuration handed over")
    return early.pid


def cancel(early: Prefork | None = None) -> None:
    """The launcher will not use its early Sentry (`early`, or the one not yet claimed):
    kill and reap it (a no-op without)."""
    global _early
    if early is None:
        early, _early = _early, None
    if early is None:
        return
    early.sock.close()
    try:
        os.kill(early.pid, host_signal.SIGKILL)
        os.waitpid(early.pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


# -- the early Sentry --------------------------------------------------------------------

def _receive(sock: socket.socket, out: dict[str, Any]) -> None:
    """The early Sentry's hand-over thread: reads the configuration (nothing: cancelled)
    and joins the sandbox's cgroup, in the kernel for ~15 ms without a CPU, while the
    main thread imports."""
    import pickle
    import socket
    stage = "receive the configuration"
    try:
        data, anc, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(MAX_FDS * 4))
        fds: list[int] = []
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(struct.unpack(f"{len(raw) // 4}i", raw[:len(raw) - len(raw) % 4]))
        if not data:
            return
        while len(data) < _LEN.size:
            more = sock.recv(1 << 16)
            if not more:
                return
            data += more
        (n,) = _LEN.unpack_from(data)
        buf = bytearray(data[_LEN.size:])
        while len(buf) < n:
            more = sock.recv(min(1 << 20, n - len(buf)))
            if not more:
                return
            buf += more
        handover: Handover = pickle.loads(bytes(buf))
        out["handover"] = (handover, fds)
        if handover.console_stdio is not None and len(fds) > 1:
            # At once: the launcher copies the user's keys (^C among them) into this pty
            # from now on, so it must be our terminal before the imports are done.
            stage = "take the console"
            from pyvisor.runtime.console import take_terminal
            take_terminal(fds[1], handover.console_stdio)
            sock.sendall(TERMINAL_TAKEN)     # the launcher may make the user's raw now
        stage = "join the sandbox's cgroup"
        from pyvisor.runtime.cgroup import join_dirs
        join_dirs(handover.cgroup_dirs)     # before any fork: Gofers and stubs inherit it
    except BaseException as e:  # noqa: BLE001 - the main thread reports it
        out["error"] = (stage, e)


def _sentry(sock: socket.socket) -> NoReturn:
    """The early Sentry: imports, takes the hand-over, then runs as sandbox.py's Sentry."""
    import pickle
    import threading

    from pyvisor.runtime import confine, sandbox
    from pyvisor.runtime.errors import BootError
    from pyvisor.runtime.phases import start_profile
    start_profile()
    mark("sentry", "forked")
    if os.environ.get("PYVISOR_TEST_PREFORK_DIE"):    # tests only: gone before the hand-over
        os._exit(70)
    # If the launcher dies (even by SIGKILL), so does the Sentry and, as PID 1 of its
    # namespace, everything it starts.  Died already: the socket reads as closed.
    confine._libc.prctl(PR_SET_PDEATHSIG, host_signal.SIGKILL, 0, 0, 0)

    def prepare() -> SandboxConfig | None:
        got: dict[str, Any] = {}
        taker = threading.Thread(target=_receive, args=(sock, got), name="handover")
        taker.start()
        try:
            confine.preload(FIRST_SKIP)
        finally:
            taker.join()
        sock.close()
        if "error" in got:
            stage, e = got["error"]
            if isinstance(e, (OSError, ValueError, pickle.UnpicklingError)):
                raise BootError(f"cannot {stage}: {e}", 125) from None
            raise e
        if "handover" not in got:
            return None          # cancelled: the launcher runs no sandbox through us
        handover, fds = got["handover"]
        from pyvisor.runtime.logsetup import configure
        configure(handover.log)
        cfg = handover.cfg
        confine.preload(sandbox.preload_skip(cfg))   # what this configuration adds
        if not fds:
            raise BootError("the launcher's network namespace did not arrive", 125)
        _join_netns(fds[0])
        host_signal.signal(host_signal.SIGPIPE, host_signal.SIG_DFL)
        return cfg

    sandbox.run_sentry(prepare)


def _join_netns(fd: int) -> None:
    """The launcher's network namespace (made or joined after the fork) becomes ours."""
    from pyvisor.runtime import confine
    from pyvisor.runtime.errors import BootError
    try:
        if os.fstat(fd).st_ino != os.stat("/proc/self/ns/net").st_ino:
            if confine._libc.setns(fd, CLONE_NEWNET) != 0:
                import ctypes
                raise BootError("cannot join the launcher's network namespace: "
                                f"{os.strerror(ctypes.get_errno())}", 125)
    finally:
        os.close(fd)
