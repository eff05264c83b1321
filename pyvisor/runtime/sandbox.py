"""The sandbox's host processes: the monitor and the Sentry.  runsc: runsc/sandbox (the
sandbox process) and runsc/boot (the Sentry's start-up).

    monitor (pid in state.json, the pid-file; unconfined, tiny)
      └── Sentry: PID 1 of a new PID namespace (PR_SET_PDEATHSIG: dies with the monitor)
            ├── Gofers
            └── stubs

The monitor creates the sandbox's cgroup, forks the Sentry, forwards SIGINT,
SIGTERM, SIGHUP and SIGQUIT to it, waits for it, removes the cgroup, records the
exit (exit.json, for `state`, `wait`, `delete`) and exits with the container's
exit code (128+N for a death by signal N), which is what an engine reaping it
sees.  For `do` and a foreground `run` the CLI process itself is the monitor;
for `create` (and `run --detach`) it is a child of the CLI in a session of its
own, which outlives the CLI.

Readiness (create): the monitor and the Sentry write lines to `ready_fd`, a
pipe the CLI reads to EOF:
    sentry <host pid>        (the monitor, after the fork)
    cgroup <JSON list>       (the monitor: the cgroup directories)
    ok                       (the Sentry: booted, confined, serving the control socket)
    error <code> <message>   (either: what went wrong, one line)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal as host_signal
import sys
from typing import Any, Callable, NoReturn

from pyvisor.runtime.config import SandboxConfig, cgroup_name_for, effective_limits
from pyvisor.runtime import modcache
from pyvisor.runtime.errors import BootError
from pyvisor.runtime.phases import mark, start_profile, startup_done, stop_profile

log = logging.getLogger("pyvisor.sandbox")

FORWARDED = (host_signal.SIGINT, host_signal.SIGTERM, host_signal.SIGHUP, host_signal.SIGQUIT)


def report(fd: int, line: str) -> None:
    """One line on the readiness pipe (never raises: the reader may be gone)."""
    if fd < 0:
        return
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode())
    except OSError:
        pass


def make_cgroup(cfg: SandboxConfig, container: bool = False) -> Any:
    """Creates the sandbox's cgroup with its limits.  Containers also get the freezer (pause),
    cpu and cpuacct (update, events) controllers."""
    from pyvisor.runtime.cgroup import Limits, SandboxCgroup
    memory, pids, _ = effective_limits(cfg)
    # systrap: each address space has a host thread more than its tasks (its ptraced
    # syscall thread), so up to twice as many host threads as tasks.
    host_pids = pids * 2 if cfg.platform == "systrap" else pids
    cg = SandboxCgroup(cfg.cgroup_name or cgroup_name_for(os.getpid()), Limits(
        memory=memory, pids=host_pids + 64,      # + the Sentry, Gofers and the master stub
        cpu_quota_us=int(cfg.cpus * 100_000) if cfg.cpus else None,
        extra=("cpu", "cpuacct", "freezer", "blkio") if container else (),
        blkio_weight=cfg.blkio_weight, cpu_shares=cfg.cpu_shares), path=cfg.cgroup_path)
    try:
        cg.create()
    except OSError as e:
        cg.remove()
        raise BootError(f"cannot set up the sandbox's cgroup: {e}", 125) from None
    for w in cg.warnings:          # the CLI logs them (create), or we do (run, do)
        if cfg.ready_fd >= 0:
            report(cfg.ready_fd, f"warning {w}")
        else:
            log.warning("%s", w)
    if cg.parents:
        report(cfg.ready_fd, "cgroup-parents " + json.dumps(cg.parents))
    return cg


def run_sandbox(cfg: SandboxConfig, on_exit: Callable[[int], None] | None = None,
                container: bool = False, after_fork: Callable[[], None] | None = None) -> int:
    """Runs a sandbox to completion in this process (the monitor); returns a shell code.
    on_exit(code) runs once the cgroup is gone; after_fork() once the Sentry is forked."""
    host_signal.signal(host_signal.SIGPIPE, host_signal.SIG_DFL)
    if not cfg.confine:
        return sentry_main(cfg)
    mark("launcher", "sandbox configured")
    cg = make_cgroup(cfg, container)
    mark("launcher", "cgroup made")
    report(cfg.ready_fd, "cgroup " + json.dumps(cg.dirs))
    code = 128 + 9
    try:
        code = launch(cfg, cg, after_fork, container)
    finally:
        mark("launcher", "sentry exited")
        cg.remove()
        mark("launcher", "cgroup removed")
        if on_exit is not None:
            on_exit(code)
    return code


def _takes_netns(cfg: SandboxConfig) -> bool:
    """The sandbox takes over the interfaces of the bundle's network namespace."""
    return cfg.network == "sandbox" and bool(cfg.netns_path)


def launch(cfg: SandboxConfig, cg: Any, after_fork: Callable[[], None] | None = None,
           container: bool = False) -> int:
    """Forks the Sentry as PID 1 of a new PID namespace and waits for it.  For `do`, the
    Sentry forked before the command line was parsed (prefork.py) gets the configuration
    instead.

    A foreground sandbox (`do`, `run`) whose stdio is a terminal gets a pty of its own
    (runtime/console.py): the launcher copies between the two and restores the user's
    terminal however the sandbox ends.  A detached container (`create`) never does.
    """
    from pyvisor.runtime import confine, prefork
    early = prefork.claim(cfg, container, after_fork)
    console = _foreground_console(cfg)
    proc_view = False
    if cfg.hold_init and cfg.confine:      # a detached container: podman top's view
        from pyvisor.runtime import procview
        proc_view = procview.monitor_namespace()
    if cfg.net_core is None:
        from pyvisor.sentry.kernel.sysctl import CoreSysctls
        cfg.net_core = CoreSysctls.from_host()    # before unshare_net hides them
    try:
        if cfg.confine and cfg.network != "host":
            # The monitor's pid is the container's pid in `state`: OCI hooks (Docker's
            # libnetwork-setkey prestart hook) configure /proc/PID/ns/net, which must
            # never be the host's network namespace.  The Sentry keeps this one: the
            # container's (taken over, runtime/netns.py) or a new, empty one.
            if _takes_netns(cfg):
                from pyvisor.runtime import netns
                netns.join(cfg.netns_path)
            else:
                confine.unshare_net()
        if early is None:
            confine.unshare_pid()
    except (confine.ConfinementError, BootError) as e:
        if console is not None:
            console.close_unused()
        if early is not None:
            prefork.cancel(early)
        if isinstance(e, BootError):      # netns.join: the bundle's namespace refused
            raise
        raise BootError(str(e), 125) from None
    mark("launcher", "namespaces unshared")
    if early is not None:
        try:
            pid = prefork.hand_over(early, cfg, cg.dirs, console)
        except BootError:
            if console is not None:
                console.close_unused()
            raise
    else:
        pid = _fork_sentry(cfg, cg, console, proc_view)
    report(cfg.ready_fd, f"sentry {pid}")
    startup_done()       # the monitor's start-up is over (the Sentry has its own)
    # The Sentry's now: the monitor keeps none of the container's fds (a preserved
    # pipe's reader must see EOF when the container closes it).
    for fd in (cfg.ready_fd, cfg.control_fd, cfg.console_fd,
               *range(3, 3 + cfg.preserve_fds)):
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
    cfg.ready_fd = cfg.control_fd = cfg.console_fd = -1
    if after_fork is not None:
        after_fork()

    def forward(sig: int, frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    for sig in FORWARDED:
        host_signal.signal(sig, forward)
    if console is not None:
        status = console.serve(pid)      # restores the user's terminal before returning
    else:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _foreground_console(cfg: SandboxConfig) -> Any:
    """The launcher's console (runtime/console.py) for a foreground sandbox whose stdio
    is a terminal; with process.terminal it stands for all of stdio and a terminal is
    required, as runc's foreground run needs one (else: one line)."""
    from pyvisor.runtime.console import open_console
    if cfg.hold_init or cfg.console_fd >= 0:
        return None
    console = open_console(cfg.stdio, whole=cfg.terminal)
    if console is None and cfg.terminal:
        raise BootError("process.terminal is set but stdin, stdout and stderr are not "
                        "terminals: run from a terminal or pass --console-socket", 125)
    return console


def _fork_sentry(cfg: SandboxConfig, cg: Any, console: Any, proc_view: bool) -> int:
    """Forks the Sentry (the launcher has unshared the PID namespace); returns its pid."""
    # ^C is held while forking (CPython's fork handlers are no place for a
    # KeyboardInterrupt).  The launcher takes it again at once; the Sentry holds it
    # until its handlers pass it to the sandbox (sentry_main).
    host_signal.pthread_sigmask(host_signal.SIG_BLOCK, [host_signal.SIGINT])
    pid = os.fork()
    if pid == 0:
        mark("sentry", "forked")
        start_profile()
        if proc_view:
            from pyvisor.runtime import procview
            procview.mount_sandbox_proc()
        if console is not None:
            console.attach_sentry()
        elif cfg.console_fd >= 0:       # the pty sent to --console-socket (terminal.py)
            from pyvisor.runtime.console import take_terminal
            take_terminal(cfg.console_fd, cfg.stdio)
            cfg.console_fd = -1

        def prepare() -> SandboxConfig:
            from pyvisor.runtime import confine
            # If the monitor dies (even by SIGKILL), the Sentry dies, and with it, as
            # PID 1 of its namespace, every stub and Gofer.
            confine._libc.prctl(1, host_signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
            # Before any fork: the Gofers and stubs inherit the cgroup.
            _join_cgroup_preloading(cg, preload_skip(cfg))
            return cfg
        run_sentry(prepare, cfg.ready_fd)
    host_signal.pthread_sigmask(host_signal.SIG_UNBLOCK, [host_signal.SIGINT])
    return pid


def run_sentry(prepare: Callable[[], SandboxConfig | None], ready_fd: int = -1) -> NoReturn:
    """The forked Sentry, from `prepare()` (cgroup joined, modules imported: the
    configuration to run, or None for nothing to do) to its exit.  Never returns."""
    code = 125
    try:
        cfg = prepare()
        if cfg is None:
            code = 0
        else:
            ready_fd = cfg.ready_fd
            mark("sentry", "cgroup joined, modules preloaded")
            code = sentry_main(cfg)
    except BootError as e:
        _fail(ready_fd, str(e), e.code)
        code = e.code
    except KeyboardInterrupt:   # ^C before the Sentry forwards it: the launcher got it too
        code = 130
    except BaseException as e:  # noqa: BLE001 - report, never a traceback to the user
        log.error("sandbox failed: %r", e, exc_info=True)
        _fail(ready_fd, f"sandbox failed: {e}", 125)
    finally:
        try:
            stop_profile()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _join_cgroup_preloading(cg: Any, skip: tuple[str, ...]) -> None:
    """Moves the Sentry into the sandbox's cgroup while importing every module it may need
    (confine.preload, due before the pivot anyway).  A move between v1 memory cgroups
    waits ~15 ms for an RCU grace period here, in the kernel, without using a CPU, so a
    thread makes it while this one imports: the thread ends before anything forks.
    (The imports' memory is charged to the launcher's cgroup, as the memory the Sentry
    inherits from the launcher is: a fixed amount no application can make grow.)"""
    import threading

    from pyvisor.runtime import confine
    failed: list[OSError] = []

    def join() -> None:
        try:
            cg.join()
        except OSError as e:
            failed.append(e)
    mover = threading.Thread(target=join, name="cgroup-join")
    mover.start()
    try:
        confine.preload(skip)
    finally:
        mover.join()
    if failed:
        raise BootError(f"cannot join the sandbox's cgroup: {failed[0]}", 125) from None


def preload_skip(cfg: SandboxConfig) -> tuple[str, ...]:
    """Packages a Sentry of this configuration never imports: the systrap platform under
    ptrace (systrap builds on ptrace's stub, not the reverse) and the host network's
    sockets unless --network=host (~2 ms of start-up)."""
    skip = []
    if cfg.platform == "ptrace":
        skip.append("pyvisor.sentry.platform.systrap")
    if cfg.network != "host":
        skip.append("pyvisor.sentry.socket.hostinet")
    return tuple(skip)


def _fail(ready_fd: int, message: str, code: int) -> None:
    if ready_fd >= 0:
        report(ready_fd, f"error {code} {message}")
    else:
        print(f"pyvisor: {message}", file=sys.stderr)


def sentry_main(cfg: SandboxConfig) -> int:
    """The Sentry process: confine, boot, serve the control socket, run, clean up."""
    from pyvisor.runtime import boot as boot_mod
    from pyvisor.runtime import confine
    from pyvisor.runtime.cgroup import protect_from_oom
    from pyvisor.sentry.errors import SyscallError
    take_net = cfg.confine and _takes_netns(cfg)
    if cfg.confine:
        protect_from_oom()    # inherited by the Gofers; the master stub resets it
        try:
            # The network namespace is the monitor's (launch): joined or made there.
            confine.enter_namespaces(host_network=cfg.network == "host", keep_network=True)
        except confine.ConfinementError as e:
            raise BootError(str(e), 125) from None
        mark("sentry", "namespaces entered")
    try:
        kernel = boot_mod.boot(cfg)
    except SyscallError as e:   # e.g. a Gofer gone during set-up (EIO)
        raise BootError(f"sandbox set-up failed: {os.strerror(e.errno)}", 125) from None
    if take_net:
        # After boot: the Gofers and stubs are forked without the packet sockets.
        _take_interfaces(kernel)
    from pyvisor.runtime.console import forward_signals
    # Before seccomp: the handlers wake the loop through a pipe made here.
    forward_signals(kernel)     # host signals to the sandbox's foreground process group
    # A ^C held since the fork (_fork_sentry, prefork.py) now reaches the sandbox.
    host_signal.pthread_sigmask(host_signal.SIG_UNBLOCK, [host_signal.SIGINT])
    service = None
    if cfg.control_fd >= 0:     # before seccomp: it wraps the inherited socket
        from pyvisor.runtime.sentry_control import ControlService
        service = ControlService(kernel, cfg)
    if cfg.confine:
        try:
            confine.preload(preload_skip(cfg))
            modcache.release()      # no host file stays open past the pivot
            mark("sentry", "modules preloaded")
            confine.pivot_to_empty()
            confine.drop_capabilities()
            confine.no_new_privs()
            mark("sentry", "pivoted, capabilities dropped")
            boot_mod._install_seccomp(cfg.control_fd if cfg.control_fd >= 0 else None,
                                      hostinet=cfg.network == "host", platform=cfg.platform)
            mark("sentry", "seccomp installed")
        except confine.ConfinementError as e:
            kernel.shutdown()
            raise BootError(str(e), 125) from None
    if service is not None:
        service.start()
    startup_done(freeze=True)
    if cfg.ready_fd >= 0:
        report(cfg.ready_fd, "ok")
        os.close(cfg.ready_fd)
        cfg.ready_fd = -1
    try:
        status = kernel.run()
    finally:
        mark("sentry", "init exited")
        if service is not None:
            service.finish()
        _shutdown(kernel)
        mark("sentry", "shut down")
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF


def _take_interfaces(kernel: Any) -> None:
    """The container's interfaces become NICs of the Sentry's stack (runtime/netns.py)."""
    from pyvisor.runtime import netns
    try:
        taken = netns.take_interfaces()
    except BootError:
        kernel.shutdown()
        raise
    stack = kernel.network.stack
    for ti in taken:
        stack.attach_nic(ti.index, ti.name.encode(), ti.fd, ti.mac, ti.mtu, ti.addrs4,
                         ti.addrs6, ti.routes, ti.vnet_hdr)


def _shutdown(kernel: Any) -> None:
    kernel.shutdown()
    for client, pid in kernel.gofers:
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
