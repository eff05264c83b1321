"""Booting a sandbox: memory file, platform, Gofer, mounts, the init process.

gVisor: runsc/boot (Loader).  Ordering: everything that needs host privileges
or fork/exec (the master stub, the Gofer, host /proc reads) happens here,
before the Sentry runs application code.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
from typing import Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_RDONLY, O_RDWR, O_WRONLY
from pyvisor.runtime.config import MountSpec, SandboxConfig, check_platform, effective_limits
from pyvisor.runtime.errors import BootError
from pyvisor.runtime.phases import mark
from pyvisor.sentry.kernel import creds as kcreds
from pyvisor.sentry.kernel import exec as kexec
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.fd_table import FDTable
from pyvisor.sentry.kernel.kernel import Kernel
from pyvisor.sentry.kernel.task import (RLIM_INFINITY, RLIMIT_NOFILE, Credentials,
                                        FSContext, SignalHandlers, Task, ThreadGroup,
                                        default_rlimits)
from pyvisor.sentry.mm.memfile import MemoryFile
from pyvisor.sentry.mm.memory_manager import MemoryManager
from pyvisor.sentry.platform.platform import Platform
from pyvisor.sentry.platform.ptrace.subprocess import PtracePlatform
from pyvisor.sentry.vfs.vfs import Location, MountNamespace, Resolver

log = logging.getLogger("pyvisor.boot")


def sentry_memory_limit(cfg: SandboxConfig) -> int:
    """The bound on memory the Sentry holds for the application (pipe buffers, socket
    queues, epoll watches, queued signals): --sentry-memory, else memacct's default."""
    from pyvisor.sentry.kernel.memacct import default_limit
    return cfg.sentry_memory or default_limit(effective_limits(cfg)[0])


def new_tmpfs(kernel: Kernel, cfg: SandboxConfig, size: int | None = None,
              inodes: int | None = None) -> Any:
    """A tmpfs of this sandbox: `size` bytes (default --tmpfs-size) and `inodes`
    (default Linux's nr_inodes for the memory limit), metadata charged to the Sentry
    memory account."""
    from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS, default_nr_inodes
    memory, _, tmpfs_size = effective_limits(cfg)
    return TmpFS(kernel.memfile, tmpfs_size if size is None else size,
                 default_nr_inodes(memory) if inodes is None else inodes, kernel.memory)


def _mkdir_p(ns: MountNamespace, t: Task, path: str, file: bool = False) -> Location:
    """Resolves the mount point `path` in the sandbox, creating what is missing as runc
    does (directories 0755; with `file`, the last component an empty file 0755), in the
    root's overlay.  The path is cleaned lexically and symlinks on the way are followed
    within the sandbox's root, a dangling one by creating its target (as runc's
    securejoin + MkdirAll do, e.g. for an image's /etc/resolv.conf -> ../run/...)."""
    from pyvisor.sentry.vfs.vfs import MAXSYMLINKS, _step_down
    root = Location(ns.root, ns.root.root)
    todo = [c for c in os.path.normpath("/" + path).encode().split(b"/") if c]
    done: list[bytes] = []           # the resolved path so far, for relative link targets
    loc, links = root, 0
    while todo:
        comp = todo.pop(0)
        if comp == b"..":            # only from a link target: step up, never above "/"
            done = done[:-1]
            loc = _resolve_dirs(ns, t, done)
            continue
        try:
            d = loc.dentry.child(comp)
        except SyscallError:
            if file and not todo:
                loc.inode.create(comp, 0o755, 0, 0)
            else:
                loc.inode.mkdir(comp, 0o755, 0, 0)
            loc.dentry.forget(comp)
            d = loc.dentry.child(comp)
        m, d = _step_down(loc.mount, d)
        if d.inode.is_symlink():
            links += 1
            if links > MAXSYMLINKS:
                raise SyscallError(Errno.ELOOP)
            target = d.inode.readlink()
            if target.startswith(b"/"):
                done, loc = [], root
            todo = [c for c in target.split(b"/") if c and c != b"."] + todo
            continue
        done.append(comp)
        loc = Location(m, d)
    return loc


def _resolve_dirs(ns: MountNamespace, t: Task, comps: list[bytes]) -> Location:
    """The location of an already resolved (symlink-free) path."""
    root = Location(ns.root, ns.root.root)
    if not comps:
        from pyvisor.sentry.vfs.vfs import _step_down
        m, d = _step_down(root.mount, root.dentry)
        return Location(m, d)
    return Resolver(root).walk(t, root, b"/" + b"/".join(comps), True)[0]


def sandbox_rlimits(cfg: SandboxConfig) -> list[list[int]]:
    """The resource limits of every process the sandbox starts (the init, `exec`, pod
    members): Linux's defaults (kernel/task.py), then the caller's own RLIMIT_NOFILE and
    RLIMIT_FSIZE (so `pyvisor do` runs a command with the limits it would have had
    outside, as `runsc do`), then the bundle's process.rlimits."""
    lim = default_rlimits()
    for res, (soft, hard) in cfg.caller_rlimits.items():
        lim[res] = [RLIM_INFINITY if soft == resource.RLIM_INFINITY else soft,
                    RLIM_INFINITY if hard == resource.RLIM_INFINITY else hard]
    for res, (soft, hard) in cfg.rlimits.items():
        lim[res] = [soft, hard]
    return lim


def _place_cpus(kernel: Kernel) -> None:
    """Lets platform/ptrace/placement.py keep syscall-heavy stub threads on the Sentry's CPU
    and computing ones on every CPU the sandbox was given (the affinity it starts
    with: `taskset`, a cgroup cpuset), and pins the Sentry with its escape; on systrap,
    platform/systrap/placement.py keeps new application threads beside the Sentry
    until spinning covers their round trips.  Nothing is pinned for good: the Sentry
    leaves a busy CPU, and bound threads follow it.

    Measured on these VMs: a ptrace round trip is ~8-15 µs when tracer and
    tracee share a CPU and several times that across CPUs; every syscall makes one.
    """
    from pyvisor.sentry.platform.ptrace.placement import Placement
    try:
        allowed = frozenset(os.sched_getaffinity(0))
    except OSError:
        return
    if not isinstance(kernel.platform, PtracePlatform):
        return
    placement = Placement(kernel, allowed)
    if os.environ.get("PYVISOR_PIN_SENTRY", "1") != "0":
        placement.pin_sentry()
    if kernel.platform.name == "ptrace":
        kernel.platform.placement = placement
    elif kernel.platform.name == "systrap":
        # systrap places its application threads itself (systrap/placement.py: beside
        # the Sentry at first, free once spinning covers their round trips); the
        # Placement above is only the Sentry's pin and its escape.
        from pyvisor.sentry.platform.systrap.placement import ThreadPlacement
        from pyvisor.sentry.platform.systrap.subprocess import SystrapPlatform
        assert isinstance(kernel.platform, SystrapPlatform)
        kernel.platform.app_placement = ThreadPlacement(
            kernel, allowed, sentry=placement if placement.run_delay is not None else None)


def _check_config(cfg: SandboxConfig) -> None:
    if not os.path.isdir(cfg.root):
        raise BootError(f"root {cfg.root!r} is not a directory")
    if not cfg.argv:
        raise BootError("no command to run")


def boot(cfg: SandboxConfig) -> Kernel:
    """Builds the kernel and its first process; returns the kernel, ready to run.

    With cfg.hold_init the init is loaded (its program exec'd, so a missing
    binary fails here, as runc's create does) but does not run until
    start_init(): the state OCI calls "created".
    """
    _check_config(cfg)
    from pyvisor.gofer.server import start_gofer
    cfg.gofer_nofile = _fd_budgets(cfg)
    # The root's Gofer starts first: its confinement overlaps the master stub's start.
    early_gofer = start_gofer(cfg.root, True, confine=cfg.confine, nofile=cfg.gofer_nofile)
    mark("sentry", "root gofer forked")
    kernel = _new_kernel(cfg)
    kernel.base_rlimits = sandbox_rlimits(cfg)    # type: ignore[attr-defined]
    kernel.base_nice = cfg.caller_nice            # type: ignore[attr-defined]
    mark("sentry", "kernel made (master stub)")
    if cfg.pin_cpu:
        _place_cpus(kernel)
    ns = _root_namespace(kernel, cfg, early_gofer)
    mark("sentry", "root mounted")
    creds = Credentials(cfg.uid, cfg.uid, cfg.uid, cfg.uid, cfg.gid, cfg.gid, cfg.gid, cfg.gid,
                        tuple(cfg.groups))
    kcreds.from_spec(creds, cfg.caps)
    t = new_task(kernel, ns, creds, 1)
    devroot = _mount_all(kernel, ns, t, cfg)
    mark("sentry", "mounts made")
    from pyvisor.runtime import masks
    masks.apply(kernel, ns, t, cfg.readonly_paths, cfg.masked_paths, devroot)
    _seal_root(ns, cfg)
    stdio = install_stdio(kernel, t, cfg.stdio, cfg.uid, cfg.gid)
    install_host_fds(kernel, t, preserved_fds(cfg.preserve_fds), cfg.uid, cfg.gid)
    # /dev/tty: the sandbox's own pty, when the launcher made one (runtime/console.py).
    from pyvisor.runtime.console import sandbox_terminal
    terminal = sandbox_terminal(stdio)
    devroot.entries[b"tty"].set_terminal(terminal)
    if terminal is not None:
        _name_console(devroot, terminal, stdio)
    lock_user_terminals(f for f in stdio if f is not None and f.inode is not terminal)
    try:
        set_cwd(t, cfg.cwd)
        kernel.init = t.tg
        kernel.groups[1] = t.tg
        t.tg.tasks.append(t)
        t.mm.add_user()
        kernel.register(t)
        exec_program(t, cfg.argv, cfg.env)
    except SpawnError as e:
        kernel.shutdown()
        raise BootError(e.message, e.code) from None
    mark("sentry", "init loaded")
    if not cfg.hold_init:
        kernel.resume(t, None)
    return kernel


def preserved_fds(n: int) -> dict[int, int]:
    """The Sentry's host fds 3..3+n-1 (--preserve-fds, inherited from the CLI through the
    monitor), close-on-exec so that no Gofer or stub ever holds one."""
    import fcntl
    out = {}
    for fd in range(3, 3 + n):
        try:
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        except OSError:
            continue
        out[fd] = fd
    return out


def lock_user_terminals(files: Any) -> None:
    """A terminal among `files` that is not a pty pyvisor made for the sandbox is the
    user's (`create` run from a shell without process.terminal, `exec --detach` from
    one): readable and writable inside, but never reconfigured (fsimpl/host tty_locked),
    as the user's terminal is outside the sandbox (SECURITY.md)."""
    from pyvisor.sentry.fsimpl.host.host import HostInode
    for f in files:
        if isinstance(f.inode, HostInode) and f.inode.is_tty:
            f.inode.tty_locked = True


def _name_console(devroot: Any, terminal: Any, stdio: list[Any]) -> None:
    """The console is /dev/pts/0 and /dev/console inside (as runc's new devpts instance
    and console bind mount make it), and /proc/self/fd/0 names /dev/pts/0, so ttyname()
    finds it (musl checks the link's target; glibc scans /dev/pts for the device)."""
    pts = devroot.entries.get(b"pts")
    if pts is not None and b"0" not in pts.entries:
        pts.add_child(b"0", terminal)
    if b"console" not in devroot.entries:
        devroot.add_child(b"console", terminal)
    for f in stdio:
        if f is not None and f.inode is terminal:
            f.dentry.name = b"/dev/pts/0"


MAX_PTS = 4096      # /dev/pts/N names of exec'd processes' terminals


def name_exec_terminal(t: Task, terminal: Any) -> bytes | None:
    """exec --tty: the process's terminal is /dev/pts/N inside (the lowest free N from 1;
    0 is the console), and its stdio fds name it, as `_name_console` does for the
    console.  Returns the name, or None if /dev/pts is not devfs's (a mount covers it)."""
    from pyvisor.sentry.vfs.ops import lookup
    try:
        loc = lookup(t, None, b"/dev/pts", True)
    except SyscallError:
        return None
    pts = loc.inode
    entries = getattr(pts, "entries", None)
    if entries is None or not hasattr(pts, "remove_child"):
        return None
    name = next((str(n).encode() for n in range(1, MAX_PTS) if str(n).encode() not in entries),
                None)
    if name is None:
        return None
    pts.add_child(name, terminal)
    loc.dentry.forget(name)
    devtty = _dev_tty(t)
    if devtty is not None:
        devtty.set_session_terminal(t.tg.sid, terminal)
    for fd in (0, 1, 2):
        entry = t.fd_table.files.get(fd)
        if entry is not None and entry[0].inode is terminal:
            entry[0].dentry.name = b"/dev/pts/" + name
    return name


def forget_exec_terminal(kernel: Kernel, name: bytes, sid: int) -> None:
    """The exec'd process that led terminal /dev/pts/`name` (session `sid`) exited: the
    name goes, and /dev/tty in that session no longer opens it."""
    from pyvisor.sentry.vfs.ops import lookup
    init = kernel.init
    if init is None or not init.tasks:
        return
    t = init.tasks[0]
    devtty = _dev_tty(t)
    if devtty is not None:
        devtty.set_session_terminal(sid, None)
    try:
        loc = lookup(t, None, b"/dev/pts", True)
        loc.inode.remove_child(name)        # type: ignore[attr-defined]
        loc.dentry.forget(name)
    except (SyscallError, AttributeError):
        pass


def _dev_tty(t: Task) -> Any:
    """devfs's /dev/tty device, if /dev is devfs."""
    from pyvisor.sentry.vfs.ops import lookup
    try:
        inode = lookup(t, None, b"/dev/tty", True).inode
    except SyscallError:
        return None
    return inode if hasattr(inode, "set_session_terminal") else None


def start_init(kernel: Kernel) -> None:
    """`start`: the held init runs."""
    init = kernel.init
    if init is not None and init.tasks and not init.exiting:
        kernel.resume(init.tasks[0], None)


def new_platform(name: str, memfd: int) -> Platform:
    """The platform `name` (checked by check_platform), sharing the memory file `memfd`.
    Runs before the Sentry is confined: ptrace spawns its master stub here."""
    check_platform(name)
    if name == "systrap":
        from pyvisor.sentry.platform.systrap.subprocess import SystrapPlatform
        return SystrapPlatform(memfd)
    return PtracePlatform(memfd)


def _lift_fsize() -> None:
    """The caller's RLIMIT_FSIZE is the application's (sandbox_rlimits), not the
    Sentry's: its memory file is a sparse file of MEMFILE_SIZE bytes and the Gofers
    write host files of any size the application may.  Raised to the hard limit; a
    hard limit below the memory file's size is one clear error."""
    from pyvisor.sentry.mm.memfile import MEMFILE_SIZE
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < MEMFILE_SIZE:
        raise BootError(f"RLIMIT_FSIZE is {hard} bytes (ulimit -f); the sandbox needs it "
                        "unlimited, its applications get the caller's limit", 125)


def _new_kernel(cfg: SandboxConfig) -> Kernel:
    from pyvisor.sentry.syscalls.linux.table_amd64 import AMD64
    _, max_tasks, _ = effective_limits(cfg)
    _lift_fsize()
    memfile = MemoryFile()
    platform = new_platform(cfg.platform, memfile.fd)
    kernel = Kernel(platform, memfile, AMD64, strace=cfg.strace)
    if platform.name == "systrap":
        platform.timers = kernel         # type: ignore[attr-defined]  (its watchdog)
    kernel.max_tasks = max_tasks
    kernel.memory.limit = sentry_memory_limit(cfg)
    if cfg.test_panic:
        _force_internal_error(kernel, cfg.test_panic)
    kernel.hostname = cfg.hostname.encode()
    kernel.gofers = []   # (client, pid)
    # The vDSO's first TSC sample now: by the init's exec, the clocks are calibrated.
    from pyvisor.sentry.kernel import vdso
    vdso.get(kernel)
    from pyvisor.sentry.socket import Network
    kernel.network = Network(cfg.network, kernel)   # hostinet reads the host's interfaces now
    if cfg.sysctl:
        from pyvisor.runtime import sysctl
        sysctl.apply(kernel, cfg.sysctl)
    return kernel


def _gofer(kernel: Kernel, cfg: SandboxConfig, root: str, readonly: bool,
           started: tuple[Any, int] | None = None, files: list[str] | None = None) -> Any:
    from pyvisor.gofer.server import start_gofer
    from pyvisor.sentry.fsimpl.gofer.client import GoferClient
    sock, pid = started or start_gofer(root, readonly, confine=cfg.confine,
                                       nofile=cfg.gofer_nofile, files=files or ())
    client = GoferClient(sock)
    client.on_death = _gofer_died(root)
    kernel.gofers.append((client, pid))
    return client


def _root_namespace(kernel: Kernel, cfg: SandboxConfig,
                    early_gofer: tuple[Any, int]) -> MountNamespace:
    """The root: the image read-only below, a tmpfs above (or the image read-only)."""
    from pyvisor.sentry.fsimpl.overlay.overlay import make_overlay_root
    root_client = _gofer(kernel, cfg, cfg.root, True, early_gofer)
    # A read-only root (root.readonly) is an overlay too, made read-only once the mount
    # points missing from the image have been created in its upper layer (_seal_root):
    # runc creates them in the image on the host; here the host is never written.
    root_fs, root_inode = make_overlay_root(root_client, kernel.memfile,
                                            new_tmpfs(kernel, cfg),
                                            exclusive=cfg.file_access == "exclusive")
    if cfg.overlay:
        ns = MountNamespace(root_fs, root_inode, source="none", options="rw")
    else:
        ns = MountNamespace(root_fs, root_inode, source=cfg.root, options="ro")
    kernel.root_ns = ns
    return ns


def _seal_root(ns: MountNamespace, cfg: SandboxConfig) -> None:
    """root.readonly: after the mounts, the root overlay (and its upper layer) is
    read-only; the application gets EROFS as from a read-only mount."""
    if cfg.overlay:
        return
    from pyvisor.sentry.fsimpl.overlay.overlay import OverlayFS
    fs = ns.root.fs
    fs.readonly = True
    if isinstance(fs, OverlayFS):
        fs.upper_fs.readonly = True


def new_task(kernel: Kernel, ns: MountNamespace, creds: Credentials, tgid: int) -> Task:
    """A task in a fresh, empty address space, with its own thread group (a session and
    process-group leader without a parent), rooted at the namespace root.  Not yet
    registered with the kernel."""
    rootloc = Location(ns.root, ns.root.root)
    space = kernel.platform.new_address_space()
    mm = MemoryManager(space)
    tg = ThreadGroup(kernel, tgid, None, SignalHandlers(), pgid=tgid, sid=tgid,
                     start_ns=kernel.now())
    base = getattr(kernel, "base_rlimits", None)        # set by boot(): sandbox_rlimits
    if base is not None:
        tg.rlimits = [list(x) for x in base]
    regs = kernel.platform.initial_registers()
    t = Task(kernel, tgid, tg, kernel.platform.new_context(space), mm, FDTable(),
             FSContext(rootloc, rootloc), creds, regs)
    t.nice = getattr(kernel, "base_nice", 0)            # set by boot(): the caller's
    # The fd table enforces RLIMIT_NOFILE's soft limit (as setrlimit keeps it in step).
    t.fd_table.limit = min(tg.rlimits[RLIMIT_NOFILE][0], 1 << 20)
    return t


def _mount_all(kernel: Kernel, ns: MountNamespace, t: Task, cfg: SandboxConfig) -> Any:
    """/dev, /dev/shm, /proc, /sys, then the configuration's mounts; returns devfs's root."""
    from pyvisor.sentry.fsimpl.dev.devfs import new_devfs
    from pyvisor.sentry.fsimpl.proc.procfs import new_procfs
    from pyvisor.sentry.fsimpl.sys.sysfs import new_sysfs
    memfile = kernel.memfile
    _, _, tmpfs_size = effective_limits(cfg)

    def mount_at(path: str, fs: object, inode: object, source: str, options: str) -> None:
        is_file = not inode.is_dir()     # type: ignore[attr-defined]
        try:
            loc = _mkdir_p(ns, t, path, file=is_file)
        except SyscallError as e:
            raise BootError(f"mount point {path!r}: {os.strerror(e.errno)}") from None
        if loc.inode.is_dir() == is_file:
            raise BootError(f"mount point {path!r} is a {'directory' if is_file else 'file'}"
                            f", its source is {'not ' if is_file else ''}a directory")
        ns.mount(loc.mount, loc.dentry, fs, inode, source=source, options=options)  # type: ignore[arg-type]

    devfs, devroot = new_devfs(kernel, memfile)
    mount_at("/dev", devfs, devroot, "none", "rw,nosuid")
    shm = new_tmpfs(kernel, cfg)
    mount_at("/dev/shm", shm, shm.new_root(), "shm", "rw,nosuid,nodev")
    procfs, procroot = new_procfs(kernel)
    if cfg.net_core is not None:
        kernel.net_core = cfg.net_core
    mount_at("/proc", procfs, procroot, "proc", "rw,nosuid,nodev,noexec")
    sysfs, sysroot = new_sysfs(memfile)
    mount_at("/sys", sysfs, sysroot, "sysfs", "ro,nosuid,nodev,noexec")
    mounts = [m for m in cfg.mounts if m.destination not in ("/proc", "/dev", "/dev/shm", "/sys")]
    for m in mounts:
        if not m.destination.startswith("/"):
            raise BootError(f"mount destination {m.destination!r} is not an absolute path")
        if _is_bind(m):
            _check_bind(m)
    files = _file_gofers(kernel, cfg, [m for m in mounts if _is_bind(m)
                                       and not os.path.isdir(m.source)])
    for m in mounts:
        if m.type == "tmpfs":
            from pyvisor.sentry.fsimpl.tmpfs.tmpfs import default_nr_inodes, parse_options
            memory = effective_limits(cfg)[0]
            try:
                o = parse_options(m.options, tmpfs_size, default_nr_inodes(memory), memory)
            except ValueError as e:
                raise BootError(f"tmpfs mount at {m.destination}: {e}", 125) from None
            fs = new_tmpfs(kernel, cfg, o.size, o.nr_inodes)
            mount_at(m.destination, fs, fs.new_root(o.mode, o.uid, o.gid), "tmpfs",
                     _mount_options(m.options, ("ro", "nosuid", "nodev", "noexec")))
        elif _is_bind(m):
            options = _mount_options(m.options, ("ro", "nosuid", "nodev", "noexec"))
            gfs, root = files[id(m)] if id(m) in files else _dir_gofer(kernel, cfg, m)
            mount_at(m.destination, gfs, root, m.source, options)
        elif m.type == "mqueue":
            from pyvisor.sentry.kernel.mqueue import MqueueDir
            mqdir = MqueueDir(kernel)
            mount_at(m.destination, mqdir.fs, mqdir, "mqueue",
                     _mount_options(m.options, ("ro", "nosuid", "nodev", "noexec")))
        elif m.type in ("devpts", "sysfs", "cgroup", "cgroup2"):
            continue   # TODO(#2): devpts, sysfs
        else:
            raise BootError(f"unsupported mount type {m.type!r} at {m.destination}")
    return devroot


# Bind mount options accepted (runc's mount flags; propagation is moot in a sandbox
# whose mounts are all its own).  Others are refused with one line.
_BIND_OPTIONS = frozenset((
    "bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
    "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable",
    "runbindable", "relatime", "norelatime", "strictatime", "nostrictatime", "noatime",
    "atime", "nodiratime", "diratime", "sync", "async", "z", "Z", "U", "idmap", "ridmap",
    "copy-symlink", "tmpcopyup", "notmpcopyup", "nocopy"))


def _mount_options(options: list[str], flags: tuple[str, ...]) -> str:
    """The mountinfo options of a mount: ro/rw, then the flags given."""
    ro = "ro" in options
    return ",".join(["ro" if ro else "rw"] + [o for o in flags[1:] if o in options])


def _is_bind(m: MountSpec) -> bool:
    return m.type == "bind" or "bind" in m.options or "rbind" in m.options


def _check_bind(m: MountSpec) -> None:
    if not os.path.exists(m.source):
        raise BootError(f"mount source {m.source!r} does not exist")
    bad = [o for o in m.options if o not in _BIND_OPTIONS and not o.startswith("mode=")]
    if bad:
        raise BootError(f"mount {m.destination}: unsupported option {bad[0]!r}")
    if not os.path.isdir(m.source) and not os.path.isfile(m.source):
        raise BootError(f"mount source {m.source!r}: only directories and regular files "
                        "can be bind-mounted")


def _dir_gofer(kernel: Kernel, cfg: SandboxConfig, m: MountSpec) -> tuple[Any, Any]:
    """A bind mount of a host directory: a Gofer of its own (runsc: a gofer mount)."""
    from pyvisor.sentry.fsimpl.gofer.goferfs import make_gofer_root
    ro = "ro" in m.options
    try:
        client = _gofer(kernel, cfg, m.source, ro)
        return make_gofer_root(client, kernel.memfile, readonly=ro)
    except OSError as e:
        raise BootError(f"mount source {m.source!r}: {e.strerror}") from None
    except SyscallError as e:
        raise BootError(f"mount source {m.source!r}: {os.strerror(e.errno)}") from None


def _file_gofers(kernel: Kernel, cfg: SandboxConfig,
                 mounts: list[MountSpec]) -> dict[int, tuple[Any, Any]]:
    """Bind mounts of single files: one Gofer serves all the read-only ones, another all
    the others, each a directory holding just those files (gofer/server.py start_gofer).
    Returns {id(mount): (filesystem, file inode)}.  Unconfined (no mount namespace for
    the Gofer), each file's directory is served and only the file looked up."""
    from pyvisor.sentry.fsimpl.gofer.goferfs import make_gofer_root
    out: dict[int, tuple[Any, Any]] = {}
    for ro in (True, False):
        group = [m for m in mounts if ("ro" in m.options) == ro]
        if not group:
            continue
        paths = [os.path.realpath(m.source) for m in group]
        try:
            if cfg.confine:
                cover = next((os.path.dirname(p) for p in paths
                              if os.path.dirname(p) != "/"), "/tmp")
                gfs, groot = make_gofer_root(_gofer(kernel, cfg, cover, ro, files=paths),
                                             kernel.memfile, readonly=ro)
                for i, m in enumerate(group):
                    out[id(m)] = (gfs, groot.lookup(str(i).encode()))
                continue
            for m, p in zip(group, paths):
                gfs, groot = make_gofer_root(_gofer(kernel, cfg, os.path.dirname(p), ro),
                                             kernel.memfile, readonly=ro)
                out[id(m)] = (gfs, groot.lookup(os.path.basename(p).encode()))
        except OSError as e:
            raise BootError(f"file bind mounts {paths}: {e.strerror}") from None
        except SyscallError as e:
            raise BootError(f"file bind mounts {paths}: {os.strerror(e.errno)}") from None
    return out


def install_stdio(kernel: Kernel, t: Task, stdio: tuple[int, ...] | list[int], uid: int,
                  gid: int, owned: bool = False) -> list[Any]:
    """Fds 0-2 of `t` on host fds (the Sentry holds the container's stdio).  A negative or
    closed host fd leaves that fd closed inside.

    At boot (not `owned`) the host fds are duplicated, and host fds that are one open
    file description (`> log 2>&1`) become one description inside, as a child process
    inherits them.  With `owned` (an exec's fds, received by a confined Sentry that may
    neither dup nor kcmp) each host fd is taken over as it is; reads and writes still
    go through the host description's own offset, so output order is kept.
    """
    from pyvisor.sentry.fsimpl.host.host import host_file, stdio_files
    if not owned:
        files = stdio_files(kernel, [fd if fd >= 0 else _CLOSED_FD for fd in stdio],
                            (O_RDONLY, O_WRONLY, O_WRONLY), uid=uid, gid=gid)
        for fd, f in enumerate(files):
            if f is not None:     # a closed stdio fd stays closed inside
                t.fd_table.install_at(fd, f)
        return files
    installed: list[Any] = []
    for fd, (hostfd, acc) in enumerate(zip(stdio, (O_RDONLY, O_WRONLY, O_WRONLY))):
        if hostfd < 0:
            continue
        try:
            mode = O_RDWR if _is_rdwr(hostfd) else acc
            f = host_file(kernel, hostfd, mode, uid=uid, gid=gid)
        except OSError:
            continue    # a closed stdio fd stays closed inside
        t.fd_table.install_at(fd, f)
        installed.append(f)
    return installed


_CLOSED_FD = 1 << 30    # a host fd number that is never open: stdio_files leaves it closed


class SpawnError(Exception):
    """A process could not be started: one line, an exit code, the errno."""

    def __init__(self, message: str, code: int = 126, err: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.errno = err


def set_cwd(t: Task, cwd: str) -> None:
    rootloc = t.fs.root
    try:
        loc = Resolver(rootloc).walk(t, rootloc, cwd.encode(), True)[0]
    except SyscallError as e:
        raise SpawnError(f"working directory {cwd!r}: {os.strerror(e.errno)}", 126,
                         e.errno) from None
    if not loc.inode.is_dir():
        raise SpawnError(f"working directory {cwd!r} is not a directory", 126, 20)
    t.fs.cwd = loc


def exec_program(t: Task, argv_s: list[str], env_s: list[str]) -> None:
    """Loads and commits argv[0] (PATH-searched) in `t`; raises SpawnError."""
    argv = [a.encode() for a in argv_s]
    envp = [e.encode() for e in env_s]
    path = argv[0]
    if b"/" not in path:
        path = _search_path(t, path, envp)
    try:
        new_mm, entry, sp, f, argv2 = kexec.load(t, path, argv, envp)
    except SyscallError as e:
        # ENOENT worded as runc (Go) words it: docker maps "no such file or directory"
        # in a create error to exit status 127, as for runc.
        why = "no such file or directory" if e.errno == 2 else os.strerror(e.errno)
        raise SpawnError(f"cannot execute {argv_s[0]!r}: {why}",
                         127 if e.errno == 2 else 126, e.errno) from None
    if new_mm.exec_fatal:           # a malformed image: nothing committed yet, say so
        new_mm.space.release()
        f.decref()
        raise SpawnError(f"cannot execute {argv_s[0]!r}: {os.strerror(new_mm.exec_fatal)}",
                         126, new_mm.exec_fatal)
    kexec.commit(t, new_mm, entry, sp, f, argv2, envp, path)


def spawn(kernel: Kernel, argv: list[str], env: list[str], cwd: str, creds: Credentials,
          stdio: list[int], extra: dict[int, int] | None = None) -> ThreadGroup:
    """`exec`: a new process in the running sandbox, without a parent (as runsc's exec),
    its stdio on the given host fds and fd N on host fd extra[N] (--preserve-fds), all
    taken over (closed on failure too).  Raises SpawnError."""
    extra = extra or {}
    err = SpawnError("no command to run", 126, 22) if not argv else \
        SpawnError("the sandbox's task limit is reached", 126, 11) \
        if len(kernel.tasks_by_tid) >= kernel.max_tasks else None
    if err is not None:
        _close_host_fds([*stdio, *extra.values()])
        raise err
    ns = kernel.root_ns
    t = new_task(kernel, ns, creds, kernel.alloc_pid())
    install_stdio(kernel, t, stdio, creds.uid, creds.gid, owned=True)
    install_host_fds(kernel, t, extra, creds.uid, creds.gid)
    tg = t.tg
    try:
        set_cwd(t, cwd)
        tg.tasks.append(t)
        t.mm.add_user()
        kernel.groups[tg.tgid] = tg
        kernel.register(t)
        exec_program(t, argv, env)
    except SpawnError:
        kernel.task_exit(t)        # the group dies unseen: no parent, released at once
        raise
    kernel.resume(t, None)
    return tg


def install_host_fds(kernel: Kernel, t: Task, fds: dict[int, int], uid: int,
                     gid: int) -> None:
    """Fd N of `t` on host fd fds[N] (taken over): --preserve-fds, as runc passes the
    caller's fds 3.. to the container.  Each becomes a host file of the Sentry
    (fsimpl/host, like stdio): the application reads and writes it through the Sentry
    and never holds the host fd.  The access mode is the host description's."""
    from pyvisor.sentry.fsimpl.host.host import host_file
    for n, hostfd in sorted(fds.items()):
        try:
            mode = _access_mode(hostfd)
            f = host_file(kernel, hostfd, mode, uid=uid, gid=gid)
        except OSError:
            _close_host_fds([hostfd])
            continue    # closed: stays closed inside
        f.inode.tty_locked = True      # never change the user's terminal from inside
        try:
            t.fd_table.install_at(n, f)
        except SyscallError:
            f.decref()       # beyond the fd table: closed inside, as an fd runc cannot pass


def _access_mode(fd: int) -> int:
    import fcntl
    acc = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    return O_RDWR if acc == os.O_RDWR else O_WRONLY if acc == os.O_WRONLY else O_RDONLY


def _close_host_fds(fds: list[int]) -> None:
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def _fd_budgets(cfg: SandboxConfig) -> int | None:
    """Bounds the dcache and sets the Sentry's fd budget; returns each Gofer's (or None).

    Confined, the Sentry and each Gofer run with RLIMIT_NOFILE = fd_budget_for(dcache)
    (SECURITY.md); unconfined (tests), this process's own limit is the budget.
    """
    from pyvisor.runtime.confine import set_fd_budget
    from pyvisor.sentry.vfs import dcache
    limit = cfg.dcache or dcache.DEFAULT_DCACHE
    if not cfg.confine:
        dcache.configure(limit, os.sysconf("SC_OPEN_MAX"))
        return None
    nofile = dcache.fd_budget_for(limit)
    dcache.configure(limit, set_fd_budget(nofile))
    return nofile


def _gofer_died(root: str) -> Any:
    """The one line the user sees when a Gofer's connection breaks."""
    def report(why: str) -> None:
        print(f"pyvisor: the Gofer serving {root} is gone ({why}); "
              f"file operations there fail with EIO", file=sys.stderr, flush=True)
    return report


def _force_internal_error(kernel: Kernel, name: str) -> None:
    """Tests only: syscall `name` raises an unexpected exception in the Sentry, to show
    that an internal error ends the sandbox cleanly."""
    from pyvisor.abi.linux.sysno_amd64 import Sysno
    from pyvisor.sentry.syscalls.linux.table import SyscallTable, supported

    def broken(t: Task, args: object) -> int:
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
    raise SpawnError(f"{name.decode(errors='replace')!r}: command not found", 127, 2)


def run_sandbox(cfg: SandboxConfig) -> int:
    """Runs a sandbox to completion; returns a shell exit code (see runtime/sandbox.py)."""
    from pyvisor.runtime.sandbox import run_sandbox as run
    return run(cfg)


SENTRY_SECCOMP = True    # the allow-list of pyvisor/seccomp/filters.py, installed last


def _install_seccomp(control_fd: int | None = None, hostinet: bool = False,
                     platform: str = "ptrace") -> None:
    """The Sentry's seccomp allow-list (accept4 on the control socket's fd, if any; the
    socket calls of hostinet for --network=host).

    Never silently skipped: the CLI made sure `seccomp` imports (runtime/interp.py)."""
    if not SENTRY_SECCOMP:
        return
    from pyvisor.seccomp.filters import install_sentry_filter
    install_sentry_filter(control_fd=control_fd, hostinet=hostinet, platform=platform)


