"""Booting a sandbox: memory file, platform, Gofer, mounts, the init process.

gVisor: runsc/boot (Loader).  Ordering: everything that needs host privileges
or fork/exec (the master stub, the Gofer, host /proc reads) happens here,
before the Sentry runs application code.
"""

from __future__ import annotations

import logging
import os
import signal as host_signal
import sys
from dataclasses import dataclass, field
from typing import Any

from pyvisor.abi.linux.fcntl import O_RDONLY, O_RDWR, O_WRONLY
from pyvisor.sentry.kernel import exec as kexec
from pyvisor.sentry.kernel.errors import SyscallError
from pyvisor.sentry.kernel.fd_table import FDTable
from pyvisor.sentry.kernel.kernel import Kernel
from pyvisor.sentry.kernel.task import (Credentials, FSContext, SignalHandlers, Task,
                                        ThreadGroup)
from pyvisor.sentry.mm.memfile import MemoryFile
from pyvisor.sentry.mm.memory_manager import MemoryManager
from pyvisor.sentry.platform.ptrace.subprocess import PtracePlatform
from pyvisor.sentry.vfs.vfs import Location, MountNamespace, Resolver

log = logging.getLogger("pyvisor.boot")


class BootError(Exception):
    """A configuration problem reported to the user as one line, with an exit code."""

    def __init__(self, msg: str, code: int = 126) -> None:
        super().__init__(msg)
        self.code = code


@dataclass
class MountSpec:
    """One OCI-style mount."""

    destination: str
    type: str                      # bind | tmpfs | proc | devpts ...
    source: str = ""
    options: list[str] = field(default_factory=list)


@dataclass
class SandboxConfig:
    """What to run and how."""

    root: str = "/"
    root_readonly: bool = True        # the image itself is never written
    overlay: bool = True              # writes land in a tmpfs above the image
    argv: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    mounts: list[MountSpec] = field(default_factory=list)
    strace: bool = False
    hostname: str = "pyvisor"
    uid: int = 0
    gid: int = 0
    stdio: tuple[int, int, int] = (0, 1, 2)
    pin_cpu: bool = True
    confine: bool = True              # namespaces, empty root, no capabilities (confine.py)
    memory_limit: int | None = None   # bytes for all host processes; None: half the host RAM
    pids_limit: int | None = None     # application tasks; None: DEFAULT_PIDS
    cpus: float | None = None         # CPU quota in CPUs; None: unlimited
    tmpfs_size: int | None = None     # per tmpfs (overlay upper, /dev/shm, tmpfs mounts)
    sentry_memory: int | None = None  # what the Sentry holds for the application (memacct.py)
    test_panic: str | None = None     # tests only: this syscall raises an internal error
    cgroup_name: str | None = None    # default: pyvisor-<launcher pid>-<random>


DEFAULT_PIDS = 4096


def _host_ram() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 8 << 30


def effective_limits(cfg: SandboxConfig) -> tuple[int, int, int]:
    """(memory bytes, tasks, tmpfs bytes) after defaults: safe unless told otherwise."""
    memory = cfg.memory_limit or _host_ram() // 2
    pids = cfg.pids_limit or DEFAULT_PIDS
    tmpfs = cfg.tmpfs_size or memory // 2
    return memory, pids, tmpfs


def sentry_memory_limit(cfg: SandboxConfig) -> int:
    """The bound on memory the Sentry holds for the application (pipe buffers, socket
    queues, epoll watches, queued signals): --sentry-memory, else memacct's default."""
    from pyvisor.sentry.kernel.memacct import default_limit
    return cfg.sentry_memory or default_limit(effective_limits(cfg)[0])


def _mkdir_p(ns: MountNamespace, t: Task, path: str) -> Location:
    """Resolves `path` in the sandbox, creating missing directories (in the overlay)."""
    loc = Location(ns.root, ns.root.root)
    for comp in [c for c in path.encode().split(b"/") if c]:
        try:
            d = loc.dentry.child(comp)
        except SyscallError:
            loc.inode.mkdir(comp, 0o755, 0, 0)
            loc.dentry.forget(comp)
            d = loc.dentry.child(comp)
        from pyvisor.sentry.vfs.vfs import _step_down
        m, d = _step_down(loc.mount, d)
        if d.inode.is_symlink():
            r = Resolver(Location(ns.root, ns.root.root))
            loc2, _ = r.walk(t, loc, comp, True)
            m, d = loc2.mount, loc2.dentry
        loc = Location(m, d)
    return loc


def _pin_cpu() -> None:
    """Runs the Sentry and (by inheritance) every stub on the CPU it is on now.

    Measured on these VMs: a ptrace round trip is ~15-20 µs when tracer and
    tracee share a CPU and 60-120 µs across CPUs; every syscall makes one.
    """
    try:
        cpus = os.sched_getaffinity(0)
        cpu = os.sched_getcpu() if hasattr(os, "sched_getcpu") else min(cpus)
        if cpu not in cpus:
            cpu = min(cpus)
        os.sched_setaffinity(0, {cpu})
    except (OSError, AttributeError):
        pass


def boot(cfg: SandboxConfig) -> Kernel:
    """Builds the kernel and its first process; returns the kernel, ready to run."""
    if not os.path.isdir(cfg.root):
        raise BootError(f"root {cfg.root!r} is not a directory")
    if not cfg.argv:
        raise BootError("no command to run")
    if cfg.pin_cpu:
        _pin_cpu()
    from pyvisor.gofer.server import start_gofer
    from pyvisor.sentry.fsimpl.dev.devfs import new_devfs
    from pyvisor.sentry.fsimpl.gofer.client import GoferClient
    from pyvisor.sentry.fsimpl.gofer.goferfs import make_gofer_root
    from pyvisor.sentry.fsimpl.host.host import host_file
    from pyvisor.sentry.fsimpl.overlay.overlay import make_overlay_root
    from pyvisor.sentry.fsimpl.proc.procfs import new_procfs
    from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS, default_nr_inodes
    from pyvisor.sentry.syscalls.linux.table_amd64 import AMD64

    memory, max_tasks, tmpfs_size = effective_limits(cfg)
    # The root's Gofer starts first: its confinement overlaps the master stub's start.
    early_gofer = start_gofer(cfg.root, True, confine=cfg.confine)
    memfile = MemoryFile()
    platform = PtracePlatform(memfile.fd)
    kernel = Kernel(platform, memfile, AMD64, strace=cfg.strace)
    kernel.max_tasks = max_tasks
    kernel.memory.limit = sentry_memory_limit(cfg)
    nr_inodes = default_nr_inodes(memory)

    def new_tmpfs(size: int = tmpfs_size, inodes: int = nr_inodes) -> TmpFS:
        return TmpFS(memfile, size, inodes, kernel.memory)
    if cfg.test_panic:
        _force_internal_error(kernel, cfg.test_panic)
    kernel.hostname = cfg.hostname.encode()
    kernel.gofers = []   # (client, pid)

    def gofer(root: str, readonly: bool, started: tuple[object, int] | None = None) -> GoferClient:
        sock, pid = started or start_gofer(root, readonly, confine=cfg.confine)
        client = GoferClient(sock)
        kernel.gofers.append((client, pid))
        return client

    # The root: the image read-only below, a tmpfs above.
    root_client = gofer(cfg.root, True, early_gofer)
    if cfg.overlay:
        root_fs, root_inode = make_overlay_root(root_client, memfile, new_tmpfs())
        ns = MountNamespace(root_fs, root_inode, source="none", options="rw")
    else:
        root_fs, root_inode = make_gofer_root(root_client, memfile, readonly=True)
        ns = MountNamespace(root_fs, root_inode, source=cfg.root, options="ro")
    kernel.root_ns = ns

    # A provisional task context for path walks during set-up.
    creds = Credentials(cfg.uid, cfg.uid, cfg.uid, cfg.uid, cfg.gid, cfg.gid, cfg.gid, cfg.gid)
    rootloc = Location(ns.root, ns.root.root)
    fsctx = FSContext(rootloc, rootloc)
    proc = platform.new_process()
    mm = MemoryManager(platform, proc)
    tg = ThreadGroup(kernel, 1, None, SignalHandlers(), pgid=1, sid=1, start_ns=kernel.now())
    regs = platform.initial_regs()
    t = Task(kernel, 1, tg, next(iter(proc.threads)), mm, FDTable(), fsctx, creds, regs)

    def mount_at(path: str, fs: object, inode: object, source: str, options: str) -> None:
        loc = _mkdir_p(ns, t, path)
        ns.mount(loc.mount, loc.dentry, fs, inode, source=source, options=options)  # type: ignore[arg-type]

    devfs, devroot = new_devfs(kernel, memfile)
    mount_at("/dev", devfs, devroot, "none", "rw,nosuid")
    shm = new_tmpfs()
    mount_at("/dev/shm", shm, shm.new_root(), "shm", "rw,nosuid,nodev")
    procfs, procroot = new_procfs(kernel)
    mount_at("/proc", procfs, procroot, "proc", "rw,nosuid,nodev,noexec")
    from pyvisor.sentry.fsimpl.sys.sysfs import new_sysfs
    sysfs, sysroot = new_sysfs(memfile)
    try:
        mount_at("/sys", sysfs, sysroot, "sysfs", "ro,nosuid,nodev,noexec")
    except SyscallError:
        pass    # a read-only image without /sys: nothing to mount it on
    for m in cfg.mounts:
        if m.destination in ("/proc", "/dev", "/dev/shm", "/sys"):
            continue
        if m.type == "tmpfs":
            from pyvisor.sentry.fsimpl.tmpfs.tmpfs import parse_options
            try:
                o = parse_options(m.options, tmpfs_size, nr_inodes, memory)
            except ValueError as e:
                raise BootError(f"tmpfs mount at {m.destination}: {e}", 125) from None
            fs = new_tmpfs(o.size, o.nr_inodes)
            mount_at(m.destination, fs, fs.new_root(o.mode, o.uid, o.gid), "tmpfs", "rw")
        elif m.type == "bind" or "bind" in m.options or "rbind" in m.options:
            if not os.path.exists(m.source):
                raise BootError(f"mount source {m.source!r} does not exist")
            ro = "ro" in m.options
            if os.path.isdir(m.source):
                client = gofer(m.source, ro)
                gfs, groot = make_gofer_root(client, memfile, readonly=ro)
                mount_at(m.destination, gfs, groot, m.source, "ro" if ro else "rw")
            else:
                log.warning("bind mount of a non-directory %s skipped", m.source)
        elif m.type in ("devpts", "mqueue", "sysfs", "cgroup", "cgroup2"):
            continue   # TODO(#2): devpts, sysfs
        else:
            raise BootError(f"unsupported mount type {m.type!r} at {m.destination}")

    # stdio: the host fds the Sentry holds for the container.
    for fd, (hostfd, acc) in enumerate(zip(cfg.stdio, (O_RDONLY, O_WRONLY, O_WRONLY))):
        try:
            f = host_file(kernel, os.dup(hostfd), O_RDWR if _is_rdwr(hostfd) else acc)
        except OSError:
            continue    # a closed stdio fd stays closed inside
        t.fd_table.install_at(fd, f)

    # cwd, then exec the program as PID 1.
    try:
        cwd = Resolver(rootloc).walk(t, rootloc, cfg.cwd.encode(), True)[0]
        if not cwd.inode.is_dir():
            raise BootError(f"working directory {cfg.cwd!r} is not a directory")
        fsctx.cwd = cwd
    except SyscallError as e:
        raise BootError(f"working directory {cfg.cwd!r}: {os.strerror(e.errno)}") from None
    kernel.init = tg
    kernel.groups[1] = tg
    tg.tasks.append(t)
    mm.add_user()
    kernel.register(t)
    argv = [a.encode() for a in cfg.argv]
    envp = [e.encode() for e in cfg.env]
    path = argv[0]
    if b"/" not in path:
        path = _search_path(t, path, envp)
    try:
        new_mm, entry, sp, f, argv2 = kexec.load(t, path, argv, envp)
    except SyscallError as e:
        kernel.shutdown()
        raise BootError(f"cannot execute {cfg.argv[0]!r}: {os.strerror(e.errno)}") from None
    kexec.commit(t, new_mm, entry, sp, f, argv2, envp)
    kernel.resume(t, None)
    return kernel


def _force_internal_error(kernel: Kernel, name: str) -> None:
    """Tests only: syscall `name` raises an unexpected exception in the Sentry, to show
    that an internal error ends the sandbox cleanly."""
    from pyvisor.abi.linux.sysno_amd64 import Sysno
    from pyvisor.sentry.syscalls.linux.table import SyscallTable, supported

    def broken(t: Task, regs: object) -> int:
        raise RuntimeError("forced internal error")
    entries = dict(kernel.table.entries)
    entries[Sysno[name]] = supported(broken)
    kernel.table = SyscallTable(kernel.table.arch, entries)


def _is_rdwr(fd: int) -> bool:
    import fcntl
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
    except OSError:
        return False


def _search_path(t: Task, name: bytes, envp: list[bytes]) -> bytes:
    """PATH lookup for the first program, as the host's execvp would do."""
    path = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for e in envp:
        if e.startswith(b"PATH="):
            path = e[5:]
    from pyvisor.sentry.vfs.ops import lookup
    for d in path.split(b":"):
        cand = (d or b".") + b"/" + name
        try:
            loc = lookup(t, None, cand, True)
        except SyscallError:
            continue
        if loc.inode.is_regular() and loc.inode.mode & 0o111:
            return cand
    raise BootError(f"{name.decode(errors='replace')!r}: command not found", 127)


def run_sandbox(cfg: SandboxConfig) -> int:
    """Runs a sandbox to completion; returns a shell exit code.

    Confined (the default): the Sentry is forked as PID 1 of a new PID namespace,
    so its death takes every stub and Gofer with it; this process only waits and
    forwards signals.
    """
    host_signal.signal(host_signal.SIGPIPE, host_signal.SIG_DFL)
    if not cfg.confine:
        return _sentry_main(cfg)
    from pyvisor.runtime.cgroup import Limits, SandboxCgroup
    memory, pids, _ = effective_limits(cfg)
    cg = SandboxCgroup(cfg.cgroup_name or cgroup_name_for(os.getpid()), Limits(
        memory=memory, pids=pids + 64,      # + the Sentry, Gofers and the master stub
        cpu_quota_us=int(cfg.cpus * 100_000) if cfg.cpus else None))
    try:
        cg.create()
    except OSError as e:
        cg.remove()
        raise BootError(f"cannot set up the sandbox's cgroup: {e}", 125) from None
    try:
        return _launch(cfg, cg)
    finally:
        cg.remove()


def cgroup_name_for(pid: int) -> str:
    """A fresh cgroup name: the launcher's pid (for people) and a random part (pids recur)."""
    return f"pyvisor-{pid}-{os.urandom(4).hex()}"


def _launch(cfg: SandboxConfig, cg: Any) -> int:
    """Forks the Sentry as PID 1 of a new PID namespace and waits for it."""
    from pyvisor.runtime import confine
    try:
        confine.unshare_pid()
    except confine.ConfinementError as e:
        raise BootError(str(e), 125) from None
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            # If the launcher dies (even by SIGKILL), the Sentry dies, and with it, as
            # PID 1 of its namespace, every stub and Gofer.
            confine._libc.prctl(1, host_signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
            try:
                cg.join()    # before any fork: Gofers and stubs inherit the cgroup
            except OSError as e:
                raise BootError(f"cannot join the sandbox's cgroup: {e}", 125) from None
            code = _sentry_main(cfg)
        except BootError as e:
            print(f"pyvisor: {e}", file=sys.stderr)
            code = e.code
        except BaseException as e:  # noqa: BLE001 - report, never a traceback to the user
            log.error("sandbox failed: %r", e, exc_info=True)
            print(f"pyvisor: sandbox failed: {e}", file=sys.stderr)
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def forward(sig: int, frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    for sig in (host_signal.SIGINT, host_signal.SIGTERM, host_signal.SIGHUP, host_signal.SIGQUIT):
        host_signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _sentry_main(cfg: SandboxConfig) -> int:
    """The Sentry process: confine, boot, run, clean up."""
    from pyvisor.runtime import confine
    from pyvisor.runtime.cgroup import protect_from_oom
    if cfg.confine:
        protect_from_oom()    # inherited by the Gofers; the master stub resets it
        try:
            confine.enter_namespaces()
        except confine.ConfinementError as e:
            raise BootError(str(e), 125) from None
    kernel = boot(cfg)
    if cfg.confine:
        try:
            confine.preload()
            confine.pivot_to_empty()
            confine.drop_capabilities()
            confine.no_new_privs()
            _install_seccomp()
        except confine.ConfinementError as e:
            kernel.shutdown()
            raise BootError(str(e), 125) from None

    def forward(sig: int, frame: object) -> None:
        from pyvisor.sentry.kernel import signal as ksignal
        init = kernel.init
        if init is not None and not init.zombie:
            for g in list(kernel.groups.values()):
                if g.pgid == init.pgid or g is init:
                    ksignal.send_to_group(g, ksignal.SigInfo(sig, 0))
    for sig in (host_signal.SIGINT, host_signal.SIGTERM, host_signal.SIGHUP, host_signal.SIGQUIT):
        host_signal.signal(sig, forward)
    try:
        status = kernel.run()
    finally:
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
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF


SENTRY_SECCOMP = True    # the allow-list of pyvisor/seccomp/filters.py, installed last


def _install_seccomp() -> None:
    """The Sentry's seccomp allow-list, when the filter module is available."""
    if not SENTRY_SECCOMP:
        return
    try:
        from pyvisor.seccomp.filters import install_sentry_filter
    except ImportError:
        log.debug("seccomp filters unavailable: the Sentry runs without one")
        return
    install_sentry_filter()


