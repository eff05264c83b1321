"""Pods, the Sentry's side: more containers in a running sandbox.  runsc: runsc/boot/loader.go
(startSubcontainer, destroySubcontainer) and controller.go (containerManager's
StartSubcontainer, Wait, DestroySubcontainer); the CLI's side is runtime/pod.py.

A pod is one Sentry holding several containers.  The first (the "sandbox" container:
containerd's pause, podman's infra) is the sandbox's own init; each later one gets here,
over the control socket, with the Gofers the CLI started for its root and bind mounts:

| method | params + fds | result |
| --- | --- | --- |
| create_container  | id, argv, env, cwd, uid, gid, groups, readonly, mounts, gofers, stdio; fds: the open stdio (stdio says which of 0-2), then one socket per Gofer | {pid} |
| start_container   | id (also `start` with container=id) | {pid} |
| wait_container    | id | {status}: the init's wait status, once it exits |
| destroy_container | id | {}: its processes are killed, its Gofers let go |

`kill`, `exec` and `ps` take an optional `container`: the member they act on (without it,
the sandbox container, as before).  File transfer (fs_*) stays the sandbox container's.

What a member has of its own, and what it shares (as runsc's default):
  * its own mount namespace: an overlay over its own root Gofer (a tmpfs above the image,
    or read-only), /dev, /dev/shm, /proc, /sys and the bundle's mounts, each bind mount
    over a Gofer of its own (file binds: one Gofer for the read-only ones, one for the
    rest), exactly as the first container's (runtime/boot.py);
  * its own init, held until `start`; when that init exits every process of the member
    dies, as when a PID namespace's init dies (Linux: zap_pid_ns_processes);
  * shared with the pod: the network stack (so 127.0.0.1 reaches a server of another
    member), IPC, the hostname (UTS), the task and memory limits and the cgroup;
  * one PID number space, but a view per member: a process names (kill, /proc,
    getpgid, sched_*, prlimit) only processes of its own member (kernel/task.py sees);
    the member's init is protected from its own processes' signals as PID 1 is, and
    adopts their orphans (kernel.child_reaper).  Unlike runsc's per-container PID
    namespace, the numbers are not renumbered: a member's init is not PID 1 (getpid
    says, say, 7) and its getppid is 0.  Which member a process belongs to is
    ThreadGroup.container, inherited by fork.

Concurrency: runs on the Sentry loop between task steps and never blocks.  A destroyed
member's Gofer connections are closed once none of its tasks is left (checked on a short
timer, at most DRAIN_NS), so a dying task never finds its files' Gofer gone.
Invariant: `containers` maps a member id to its state from create_container until
destroy_container; a member's Gofer clients are owned here, never in kernel.gofers (their
host pids are not the Sentry's children).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.signal import Signal
from pyvisor.runtime import control
from pyvisor.runtime.boot import (SandboxConfig, SpawnError, _mkdir_p, _mount_options, _seal_root,
                                  effective_limits, exec_program, install_stdio, new_task,
                                  new_tmpfs, set_cwd)
from pyvisor.runtime.errors import BootError
from pyvisor.sentry.fsimpl.dev.devfs import new_devfs
from pyvisor.sentry.fsimpl.gofer.client import GoferClient
from pyvisor.sentry.fsimpl.gofer.goferfs import make_gofer_root
from pyvisor.sentry.fsimpl.overlay.overlay import make_overlay_root
from pyvisor.sentry.fsimpl.tmpfs.tmpfs import default_nr_inodes, parse_options
from pyvisor.sentry.kernel import creds as kcreds
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import Credentials, ThreadGroup
from pyvisor.sentry.vfs.vfs import MountNamespace

if TYPE_CHECKING:
    from pyvisor.runtime.sentry_control import ControlService
    from pyvisor.sentry.kernel.kernel import Kernel

log = logging.getLogger("pyvisor.pod")

MAX_CONTAINERS = 64                 # members of one pod (each holds Gofers and a namespace)
DRAIN_NS = 5_000_000_000            # a destroyed member's tasks get this long to go
_POLL_NS = 20_000_000
_FATAL_DEFAULT_IGNORED = {Signal.SIGCHLD, Signal.SIGCONT, Signal.SIGURG, Signal.SIGWINCH}
_STOPS = {Signal.SIGSTOP, Signal.SIGTSTP, Signal.SIGTTIN, Signal.SIGTTOU}


@dataclass(eq=False)
class Member:
    """One container of the pod other than the first.  Owned by PodService."""

    cid: str
    ns: MountNamespace
    init: ThreadGroup
    gofers: list[Any]                               # GoferClient, closed at destroy
    started: bool = False
    status: int | None = None                       # the init's wait status, once dead
    waiters: list[control.Reply] = field(default_factory=list)


def _str(params: dict[str, Any], key: str, default: str | None = None) -> str:
    v = params.get(key, default)
    if not isinstance(v, str) or "\0" in v:
        raise ValueError(f"{key} must be a string")
    return v


class PodService:
    """The pod methods of one sandbox's control socket (installed by ControlService)."""

    def __init__(self, kernel: Kernel, cfg: SandboxConfig, ctl: ControlService) -> None:
        self.kernel = kernel
        self.cfg = cfg
        self.ctl = ctl
        self.members: dict[str, Member] = {}
        h = ctl.server.handlers
        for name in ("start", "kill", "exec"):
            h[name] = self._routed(name, h[name])
        h["create_container"] = self._create
        h["start_container"] = self._routed("start", h["start"], by_id=True)
        h["wait_container"] = self._wait
        h["destroy_container"] = self._destroy
        self._next_orphan_exit = kernel.orphan_exit
        kernel.orphan_exit = self._orphan_exit
        kernel.child_reaper = self._child_reaper

    def finish(self) -> None:
        """The sandbox is over: every member died with it (SIGKILL)."""
        for m in list(self.members.values()):
            if m.status is None:
                m.status = int(Signal.SIGKILL)
            self._tell_waiters(m)
            self._close_gofers(m)
        self.members.clear()

    # -- routing ----------------------------------------------------------------------

    def _routed(self, name: str, original: control.Handler,
                by_id: bool = False) -> control.Handler:
        """`name` with a `container` param (or, `by_id`, an `id`) acts on that member;
        without, on the sandbox container as before."""
        mine = getattr(self, "_" + name)

        def handler(conn: control.Connection, params: dict[str, Any], fds: list[int],
                    reply: control.Reply) -> None:
            cid = params.get("id" if by_id else "container") or ""
            if not cid:
                original(conn, params, fds, reply)
                return
            m = self.members.get(str(cid))
            if m is None:
                control._close_all(fds)
                reply(None, errno.ESRCH, f"no container {cid!r} in this sandbox")
                return
            mine(m, params, fds, reply)
        return handler

    # -- create -----------------------------------------------------------------------

    def _create(self, conn: control.Connection, params: dict[str, Any], fds: list[int],
                reply: control.Reply) -> None:
        cid = _str(params, "id")
        if cid in self.members or not cid:
            control._close_all(fds)
            reply(None, errno.EEXIST, f"container {cid!r} exists in this sandbox")
            return
        if len(self.members) >= MAX_CONTAINERS:
            control._close_all(fds)
            reply(None, errno.EAGAIN, f"a pod holds at most {MAX_CONTAINERS} containers")
            return
        init = self.kernel.init
        if init is None or init.zombie or init.exiting:
            control._close_all(fds)
            reply(None, errno.ESRCH, "the sandbox is not running")
            return
        present = params.get("stdio", [])
        gofers = params.get("gofers", [])
        if not isinstance(present, list) or len(present) != 3 or \
                not isinstance(gofers, list) or len(fds) != sum(map(bool, present)) + len(gofers):
            raise ValueError("stdio must be three flags, with one fd per open stdio and Gofer")
        stdio, it = [], iter(list(fds))
        for p in present:
            stdio.append(next(it) if p else -1)
        socks = list(it)
        fds.clear()                     # ours now: closed below on failure
        clients: list[Any] = []
        try:
            for fd in socks:
                # Family, type and protocol given: no getsockopt (not in the seccomp list).
                clients.append(GoferClient(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM,
                                                         0, fileno=fd)))
            socks = []
            m = self._build(cid, params, clients, stdio)
        except Exception as e:  # noqa: BLE001 - one error reply, never a dead Sentry
            for fd in stdio + socks:
                if fd >= 0:
                    os.close(fd)
            for c in clients:
                c.shutdown()
            if isinstance(e, SpawnError):
                reply(None, e.errno or errno.EIO, e.message)
            elif isinstance(e, SyscallError):
                reply(None, e.errno, f"container set-up: {os.strerror(e.errno)}")
            elif isinstance(e, (BootError, OSError)):
                reply(None, getattr(e, "errno", None) or errno.EINVAL, str(e))
            elif isinstance(e, (ValueError, TypeError, KeyError)):
                reply(None, errno.EINVAL, f"bad parameters: {e}")
            else:
                log.exception("create_container %s", cid)
                reply(None, errno.EIO, f"internal error: {e!r}")
            return
        self.members[cid] = m
        self.kernel.mount_namespaces.append(m.ns)
        reply({"pid": m.init.tgid})

    def _build(self, cid: str, params: dict[str, Any], clients: list[Any],
               stdio: list[int]) -> Member:
        """The member's mount namespace and held init (boot.boot's steps for a member)."""
        kernel = self.kernel
        argv, env = params.get("argv"), params.get("env", [])
        groups = params.get("groups", [])
        for name, v in (("argv", argv), ("env", env)):
            if not isinstance(v, list) or not all(isinstance(x, str) and "\0" not in x
                                                  for x in v):
                raise ValueError(f"{name} must be a list of strings")
        if not argv:
            raise BootError("no command to run")
        uid, gid = int(params.get("uid", 0)), int(params.get("gid", 0))
        if not 0 <= uid < 1 << 32 or not 0 <= gid < 1 << 32 or not isinstance(groups, list) \
                or not all(isinstance(g, int) and 0 <= g < 1 << 32 for g in groups):
            raise ValueError("uid, gid and groups must be 32-bit ids")
        if not clients:
            raise ValueError("no Gofer for the root")
        fs, inode = make_overlay_root(clients[0], kernel.memfile, new_tmpfs(kernel, self.cfg),
                                      exclusive=self.cfg.file_access == "exclusive")
        ns = MountNamespace(fs, inode, source="none", options="rw")
        if len(kernel.tasks_by_tid) >= kernel.max_tasks:
            raise SpawnError("the sandbox's task limit is reached", 126, errno.EAGAIN)
        creds = Credentials(uid, uid, uid, uid, gid, gid, gid, gid, tuple(groups))
        kcreds.from_spec(creds, params.get("caps"))
        t = new_task(kernel, ns, creds, kernel.alloc_pid())
        tg = t.tg
        tg.container, tg.pod_init = cid, True
        tg.tasks.append(t)
        t.mm.add_user()
        kernel.groups[tg.tgid] = tg
        kernel.register(t)
        try:
            self._mount_all(ns, t, params.get("mounts", []), clients)
            if params.get("readonly"):
                _seal_root(ns, SandboxConfig(overlay=False))
            install_stdio(kernel, t, stdio, uid, gid, owned=True)
            stdio[:] = [-1, -1, -1]
            set_cwd(t, _str(params, "cwd", "/"))
            exec_program(t, list(argv), list(env))
        except BaseException:
            kernel.task_exit(t)         # no parent: released at once, unseen
            raise
        return Member(cid, ns, tg, clients)

    def _mount_all(self, ns: MountNamespace, t: Any, mounts: Any, clients: list[Any]) -> None:
        """/dev, /dev/shm, /proc, /sys, then the member's mounts, in the spec's order (as
        boot._mount_all; the host checks were made by the CLI, which sent one Gofer per
        bind source)."""
        kernel = self.kernel
        if not isinstance(mounts, list):
            raise ValueError("mounts must be a list")

        def mount_at(path: str, fs: Any, inode: Any, source: str, options: str) -> None:
            is_file = not inode.is_dir()
            try:
                loc = _mkdir_p(ns, t, path, file=is_file)
            except SyscallError as e:
                raise BootError(f"mount point {path!r}: {os.strerror(e.errno)}") from None
            if loc.inode.is_dir() == is_file:
                raise BootError(f"mount point {path!r} does not match its source's type")
            ns.mount(loc.mount, loc.dentry, fs, inode, source=source, options=options)

        devfs, devroot = new_devfs(kernel, kernel.memfile)
        mount_at("/dev", devfs, devroot, "none", "rw,nosuid")
        shm = new_tmpfs(kernel, self.cfg)
        mount_at("/dev/shm", shm, shm.new_root(), "shm", "rw,nosuid,nodev")
        # The sandbox's own procfs and sysfs instances: they read host facts (CPUs, memory)
        # when made, which the confined Sentry no longer can; what they show is the pod's.
        procfs, procroot = self._shared_fs("proc")
        mount_at("/proc", procfs, procroot, "proc", "rw,nosuid,nodev,noexec")
        sysfs, sysroot = self._shared_fs("sysfs")
        mount_at("/sys", sysfs, sysroot, "sysfs", "ro,nosuid,nodev,noexec")
        gofer_roots: dict[int, tuple[Any, Any]] = {}
        memory, _, tmpfs_size = effective_limits(self.cfg)
        for m in mounts:
            if not isinstance(m, dict):
                raise ValueError("a mount must be an object")
            dest, kind = _str(m, "destination"), _str(m, "type")
            options = m.get("options", [])
            if not dest.startswith("/") or not isinstance(options, list) or \
                    not all(isinstance(o, str) for o in options):
                raise ValueError("a mount needs an absolute destination and string options")
            flags = _mount_options(options, ("ro", "nosuid", "nodev", "noexec"))
            if kind == "tmpfs":
                try:
                    o = parse_options(options, tmpfs_size, default_nr_inodes(memory), memory)
                except ValueError as e:
                    raise BootError(f"tmpfs mount at {dest}: {e}") from None
                tfs = new_tmpfs(kernel, self.cfg, o.size, o.nr_inodes)
                mount_at(dest, tfs, tfs.new_root(o.mode, o.uid, o.gid), "tmpfs", flags)
            elif kind == "bind":
                g = m.get("gofer")
                if not isinstance(g, int) or not 0 < g < len(clients):
                    raise ValueError(f"mount {dest}: no Gofer {g!r}")
                if g not in gofer_roots:
                    gofer_roots[g] = make_gofer_root(clients[g], kernel.memfile,
                                                     readonly="ro" in options)
                gfs, root = gofer_roots[g]
                name = m.get("file")
                if name is not None:         # one file of a Gofer of single files
                    root = root.lookup(str(int(name)).encode())
                mount_at(dest, gfs, root, _str(m, "source", "none"), flags)
            else:
                raise ValueError(f"unsupported mount type {kind!r} at {dest}")

    def _shared_fs(self, source: str) -> tuple[Any, Any]:
        """The filesystem and root inode of the sandbox container's mount of `source`."""
        for m in self.kernel.root_ns.mounts:
            if m.source == source and m.parent is not None:
                return m.fs, m.root.inode
        raise BootError(f"the sandbox has no {source} mount to share")

    # -- lifecycle --------------------------------------------------------------------

    def _start(self, m: Member, params: dict[str, Any], fds: list[int],
               reply: control.Reply) -> None:
        control._close_all(fds)
        if m.started:
            reply(None, errno.EBUSY, "the container was started already")
            return
        if m.status is not None or not m.init.tasks or m.init.exiting:
            reply(None, errno.ESRCH, "the container's init is gone")
            return
        m.started = True
        self.kernel.resume(m.init.tasks[0], None)
        reply({"pid": m.init.tgid})

    def _kill(self, m: Member, params: dict[str, Any], fds: list[int],
              reply: control.Reply) -> None:
        control._close_all(fds)
        sig = int(params.get("signal", Signal.SIGTERM))
        if not 1 <= sig <= 64:
            reply(None, errno.EINVAL, f"invalid signal {sig}")
            return
        if m.status is not None or m.init.zombie or m.init.exiting:
            reply(None, errno.ESRCH, "the container is not running")
            return
        groups = self._groups(m.cid) if params.get("all") else [m.init]
        for tg in groups:
            self._send(m, tg, sig)
        reply({"signalled": len(groups)})

    def _send(self, m: Member, tg: ThreadGroup, sig: int) -> None:
        """As ControlService._send: a held init dies of a fatal signal at once."""
        if tg.zombie or not tg.tasks:
            return
        if tg is m.init and not m.started and sig not in _FATAL_DEFAULT_IGNORED \
                and sig not in _STOPS and tg.sighand.actions[sig].handler == 0:
            self.kernel.group_exit(tg, sig, killed=True)
            return
        ksignal.send_to_group(tg, ksignal.SigInfo(sig, 0))

    def _exec(self, m: Member, params: dict[str, Any], fds: list[int],
              reply: control.Reply) -> None:
        """`exec` in a member: the process lives in its mount namespace (boot.spawn)."""
        if m.status is not None or m.init.zombie or m.init.exiting:
            control._close_all(fds)
            reply(None, errno.ESRCH, "the container is not running")
            return
        if len(fds) > 3:
            control._close_all(fds)
            raise ValueError("at most three stdio fds")
        kernel = self.kernel
        argv, env = params.get("args", []), params.get("env", [])
        for name, v in (("args", argv), ("env", env)):
            if not isinstance(v, list) or not all(isinstance(x, str) and "\0" not in x
                                                  for x in v):
                control._close_all(fds)
                raise ValueError(f"{name} must be a list of strings")
        uid, gid = int(params.get("uid", 0)), int(params.get("gid", 0))
        groups = params.get("groups", [])
        if not 0 <= uid < 1 << 32 or not 0 <= gid < 1 << 32 or not isinstance(groups, list):
            control._close_all(fds)
            raise ValueError("uid and gid must be 32-bit ids")
        stdio = list(fds) + [-1] * (3 - len(fds))
        fds.clear()
        if not argv or len(kernel.tasks_by_tid) >= kernel.max_tasks:
            for fd in stdio:
                if fd >= 0:
                    os.close(fd)
            reply(None, errno.EINVAL if not argv else errno.EAGAIN,
                  "no command to run" if not argv else "the sandbox's task limit is reached")
            return
        creds = Credentials(uid, uid, uid, uid, gid, gid, gid, gid, tuple(groups))
        kcreds.from_spec(creds, params.get("caps"))
        t = new_task(kernel, m.ns, creds, kernel.alloc_pid())
        t.tg.container = m.cid
        tg = t.tg
        tg.tasks.append(t)
        t.mm.add_user()
        kernel.groups[tg.tgid] = tg
        kernel.register(t)
        install_stdio(kernel, t, stdio, uid, gid, owned=True)
        try:
            set_cwd(t, _str(params, "cwd", "/"))
            exec_program(t, list(argv), list(env))
        except SpawnError as e:
            kernel.task_exit(t)         # the group dies unseen: no parent, released at once
            reply(None, e.errno or errno.EIO, e.message)
            return
        kernel.resume(t, None)
        self.ctl.execed.add(tg.tgid)
        reply({"pid": tg.tgid})

    def _wait(self, conn: control.Connection, params: dict[str, Any], fds: list[int],
              reply: control.Reply) -> None:
        control._close_all(fds)
        cid = _str(params, "id")
        m = self.members.get(cid)
        if m is None:
            reply(None, errno.ESRCH, f"no container {cid!r} in this sandbox")
            return
        if m.status is not None:
            reply({"status": m.status})
            return
        m.waiters.append(reply)

        def forget() -> None:
            if reply in m.waiters:
                m.waiters.remove(reply)
        conn.on_close.append(forget)

    def _destroy(self, conn: control.Connection, params: dict[str, Any], fds: list[int],
                 reply: control.Reply) -> None:
        control._close_all(fds)
        cid = _str(params, "id")
        m = self.members.pop(cid, None)
        if m is None:
            reply(None, errno.ESRCH, f"no container {cid!r} in this sandbox")
            return
        self._kill_all(cid)
        if m.status is None:
            m.status = int(Signal.SIGKILL)
        self._tell_waiters(m)
        deadline = self.kernel.now() + DRAIN_NS

        def drain() -> None:
            if self._groups(cid, live_only=True) and self.kernel.now() < deadline:
                self.kernel.add_timer(self.kernel.now() + _POLL_NS, drain)
                return
            self._close_gofers(m)
            if m.ns in self.kernel.mount_namespaces:
                self.kernel.mount_namespaces.remove(m.ns)
        drain()
        reply({})

    # -- exits ------------------------------------------------------------------------

    def _orphan_exit(self, tg: ThreadGroup) -> None:
        """A parentless process died: a member's init ends the member (and all its
        processes, as a PID namespace's init does); others go to the control service."""
        m = self.members.get(tg.container) if tg.container else None
        if m is not None and tg is m.init:
            m.status = tg.exit_code if tg.exit_code is not None else 0
            self._kill_all(m.cid)
            self._tell_waiters(m)
        if self._next_orphan_exit is not None:
            self._next_orphan_exit(tg)

    def _child_reaper(self, tg: ThreadGroup) -> ThreadGroup | None:
        """Orphans of a member's process go to the member's init (Linux: the PID
        namespace's child_reaper); once that is gone, to nobody (they are being killed,
        and are released as they die)."""
        if not tg.container:
            return self.kernel.init
        m = self.members.get(tg.container)
        if m is None or m.status is not None or m.init.zombie:
            return None
        return m.init

    def _tell_waiters(self, m: Member) -> None:
        waiters, m.waiters = m.waiters, []
        for reply in waiters:
            reply({"status": m.status})

    def _groups(self, cid: str, live_only: bool = False) -> list[ThreadGroup]:
        return [tg for tg in list(self.kernel.groups.values())
                if tg.container == cid and not (live_only and (tg.zombie or not tg.tasks))]

    def _kill_all(self, cid: str) -> None:
        for tg in self._groups(cid):
            if not tg.zombie and tg.tasks:
                self.kernel.group_exit(tg, int(Signal.SIGKILL), killed=True)

    def _close_gofers(self, m: Member) -> None:
        for c in m.gofers:
            c.on_death = None
            try:
                c.shutdown()
            except OSError:
                pass
        m.gofers = []
