"""The Sentry's side of the control socket: start, kill, exec, wait_pid, ps, update, stats.
runsc: runsc/boot/controller.go (containerManager).  The wire format is in control.py.

Concurrency: everything here runs on the Sentry loop, between task steps; a
handler never blocks (wait_pid parks its reply until the process's thread
group dies, through Kernel.orphan_exit).
Invariant: `exited` holds the wait status of exec'd processes that exited and
that nobody has waited for yet, bounded by MAX_UNCLAIMED (oldest dropped).
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from typing import Any

from pyvisor.abi.linux.signal import SIG_IGN, Signal
from pyvisor.runtime import control
from pyvisor.runtime.boot import (SandboxConfig, SpawnError, forget_exec_terminal,
                                  lock_user_terminals, name_exec_terminal, spawn, start_init)
from pyvisor.runtime.sentry_files import FileService
from pyvisor.sentry.fsimpl.host.host import TTYState
from pyvisor.sentry.kernel import cputime
from pyvisor.sentry.kernel import creds as kcreds
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.kernel.task import Credentials, SigAction, ThreadGroup

log = logging.getLogger("pyvisor.control")

MAX_UNCLAIMED = 1024
REAPER_ANNOTATION = "io.github.pyvisor.init-reaps-orphans"
_FATAL_DEFAULT_IGNORED = {Signal.SIGCHLD, Signal.SIGCONT, Signal.SIGURG, Signal.SIGWINCH}
_STOPS = {Signal.SIGSTOP, Signal.SIGTSTP, Signal.SIGTTIN, Signal.SIGTTOU}


def _int(params: dict[str, Any], key: str, default: int | None = None) -> int:
    v = params.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"{key} must be an integer")
    return v


MAX_EXEC_FD = 1024     # fd numbers exec may place (stdio and --preserve-fds)


def _fd_numbers(params: dict[str, Any], count: int) -> list[int]:
    """Where the passed fds go in the new process: params["fd_numbers"] (distinct, each
    below MAX_EXEC_FD), else stdin, stdout, stderr in order."""
    nums = params.get("fd_numbers")
    if nums is None:
        if count > 3:
            raise ValueError("at most three stdio fds without fd_numbers")
        return list(range(count))
    if not isinstance(nums, list) or len(nums) != count or len(set(nums)) != count or \
            not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < MAX_EXEC_FD
                    for n in nums):
        raise ValueError(f"fd_numbers must be {count} distinct fd numbers below {MAX_EXEC_FD}")
    return nums


def _strings(params: dict[str, Any], key: str) -> list[str]:
    v = params.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) and "\0" not in x for x in v):
        raise ValueError(f"{key} must be a list of strings")
    return v


class ControlService:
    """Serves one sandbox's control socket."""

    def __init__(self, kernel: Any, cfg: SandboxConfig) -> None:
        self.kernel = kernel
        self.started = not cfg.hold_init
        self.execed: set[int] = set()                 # tgids of live exec'd processes
        self.exited: dict[int, int] = {}              # tgid -> wait status, unclaimed
        self.waiters: dict[int, list[control.Reply]] = {}
        self.ttys: dict[int, TTYState] = {}           # exec --tty: tgid -> its terminal
        self.pts_names: dict[int, bytes] = {}         # ... and its /dev/pts name
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK, 0,
                                 fileno=cfg.control_fd)
        self.server = control.Server(kernel, listener, {
            "start": self._start, "kill": self._kill, "exec": self._exec,
            "wait_pid": self._wait_pid, "signal_process": self._signal_process,
            "signal_foreground": self._signal_foreground,
            "ps": self._ps, "update": self._update, "stats": self._stats,
            **FileService(kernel).handlers(),
        })
        kernel.orphan_exit = self._orphan_exit
        if cfg.annotations.get(REAPER_ANNOTATION) == "true" and kernel.init is not None:
            # An idle init that never runs (pyvisor.api holds it): the kernel reaps the
            # orphans it adopts, as for an init with SIGCHLD ignored (SA_NOCLDWAIT).
            kernel.init.sighand.actions[Signal.SIGCHLD] = SigAction(handler=SIG_IGN)
        from pyvisor.runtime.sentry_pod import PodService
        self.pod = PodService(kernel, cfg, self)    # more containers: runtime/sentry_pod.py

    def start(self) -> None:
        self.server.start()

    def finish(self) -> None:
        """The sandbox is over: every exec'd process died with it (SIGKILL)."""
        for pid in list(self.waiters):
            for reply in self.waiters.pop(pid):
                reply({"status": int(Signal.SIGKILL)})
        self.pod.finish()
        self.server.close()

    # -- handlers ---------------------------------------------------------------------

    def _start(self, conn: control.Connection, params: dict[str, Any], fds: list[int],
               reply: control.Reply) -> None:
        if self.started:
            reply(None, errno.EBUSY, "the container was started already")
            return
        init = self.kernel.init
        if init is None or init.zombie or init.exiting:
            reply(None, errno.ESRCH, "the container's init is gone")
            return
        nics = params.get("nics")
        if nics:
            try:
                self._attach_nics(nics, fds)
            except (ValueError, TypeError, KeyError, AssertionError, OSError) as e:
                control._close_all(fds)
                reply(None, errno.EINVAL, f"bad interfaces in the start request: {e}")
                return
        self.started = True
        start_init(self.kernel)
        reply({"pid": 1})

    def _attach_nics(self, nics: Any, fds: list[int]) -> None:
        """Interfaces `pyvisor start` took over in our namespace (runtime/netns.py
        take_from): each fd becomes a NIC of the Sentry's stack, as at boot.  The fds
        are the stack's from here."""
        from pyvisor.runtime import netns
        if not isinstance(nics, list) or len(nics) != len(fds):
            raise ValueError("one fd per interface")
        taken = [netns.from_json(d, fd) for d, fd in zip(nics, fds)]
        stack = self.kernel.network.stack
        if not hasattr(stack, "attach_nic"):
            raise ValueError("the sandbox's network has no interfaces to attach")
        for ti in taken:
            stack.attach_nic(ti.index, ti.name.encode(), ti.fd, ti.mac, ti.mtu, ti.addrs4,
                             ti.addrs6, ti.routes, ti.vnet_hdr)

    def _kill(self, conn: control.Connection, params: dict[str, Any], fds: list[int],
              reply: control.Reply) -> None:
        sig = _int(params, "signal")
        if not 1 <= sig <= 64:
            reply(None, errno.EINVAL, f"invalid signal {sig}")
            return
        init = self.kernel.init
        if init is None or init.zombie or init.exiting:
            reply(None, errno.ESRCH, "the container is not running")
            return
        # --all: every process of this container (a pod's other members are their own).
        groups = [g for g in self.kernel.groups.values() if g.container == ""] \
            if params.get("all") else [init]
        for tg in groups:
            self._send(tg, sig)
        reply({"signalled": len(groups)})

    def _send(self, tg: ThreadGroup, sig: int) -> None:
        """A signal from outside (the sender is "the kernel", pid 0).  A held init (created,
        not started) cannot run a handler: a signal whose default is to kill kills it now,
        as it kills runc's waiting init; others stay pending until start."""
        if tg.zombie or not tg.tasks:
            return
        if tg is self.kernel.init and not self.started and sig not in _FATAL_DEFAULT_IGNORED \
                and sig not in _STOPS and tg.sighand.actions[sig].handler == 0:
            self.kernel.group_exit(tg, sig, killed=True)
            return
        ksignal.send_to_group(tg, ksignal.SigInfo(sig, 0))

    def _exec(self, conn: control.Connection, params: dict[str, Any], fds: list[int],
              reply: control.Reply) -> None:
        args, env = _strings(params, "args"), _strings(params, "env")
        cwd = params.get("cwd", "/")
        if not isinstance(cwd, str) or not cwd.startswith("/"):
            raise ValueError("cwd must be an absolute path")
        uid, gid = _int(params, "uid", 0), _int(params, "gid", 0)
        groups = params.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, int) for g in groups):
            raise ValueError("groups must be a list of integers")
        if not 0 <= uid < 1 << 32 or not 0 <= gid < 1 << 32:
            raise ValueError("uid and gid must be 32-bit ids")
        numbers = _fd_numbers(params, len(fds))
        init = self.kernel.init
        if init is None or init.zombie or init.exiting:
            reply(None, errno.ESRCH, "the container is not running")
            return
        stdio, extra = [-1] * 3, {}
        for n, fd in zip(numbers, fds):
            if n < 3:
                stdio[n] = fd
            else:
                extra[n] = fd
        fds.clear()                      # spawn owns them now (closes them on failure)
        creds = Credentials(uid, uid, uid, uid, gid, gid, gid, gid, tuple(groups))
        kcreds.from_spec(creds, params.get("caps"))
        try:
            tg = spawn(self.kernel, args, env, cwd, creds, stdio, extra)
        except SpawnError as e:
            reply(None, e.errno or errno.EIO, e.message)
            return
        self.execed.add(tg.tgid)
        if params.get("tty"):
            self._give_terminal(tg)
        elif tg.tasks:
            # No pty of pyvisor's: a terminal on its stdio is the caller's own.
            lock_user_terminals(e[0] for n, e in tg.tasks[0].fd_table.files.items() if n < 3)
        reply({"pid": tg.tgid})

    def _give_terminal(self, tg: ThreadGroup) -> None:
        """exec --tty: the process leads a session of its own (spawn made it a session
        and group leader) whose terminal is the pty on its stdio, with it in the
        foreground, as runc's exec makes the pty its controlling terminal."""
        from pyvisor.sentry.fsimpl.host.host import HostInode
        t = tg.tasks[0] if tg.tasks else None
        if t is None:
            return
        for n in (0, 1, 2):
            f = t.fd_table.files.get(n)
            inode = f[0].inode if f is not None else None
            if isinstance(inode, HostInode) and inode.tty is not None:
                inode.tty.give_to(tg.pgid, tg.sid)
                self.ttys[tg.tgid] = inode.tty
                name = name_exec_terminal(t, inode)
                if name is not None:
                    self.pts_names[tg.tgid] = name
                return

    def _wait_pid(self, conn: control.Connection, params: dict[str, Any], fds: list[int],
                  reply: control.Reply) -> None:
        pid = _int(params, "pid")
        if pid in self.exited:
            reply({"status": self.exited.pop(pid)})
            return
        if pid not in self.execed:
            reply(None, errno.ECHILD, f"no exec'd process {pid}")
            return
        self.waiters.setdefault(pid, []).append(reply)

        def forget() -> None:
            lst = self.waiters.get(pid)
            if lst and reply in lst:
                lst.remove(reply)
                if not lst:
                    del self.waiters[pid]
        conn.on_close.append(forget)

    def _signal_process(self, conn: control.Connection, params: dict[str, Any],
                        fds: list[int], reply: control.Reply) -> None:
        pid, sig = _int(params, "pid"), _int(params, "signal")
        tg = self.kernel.groups.get(pid)
        if tg is None or tg.zombie or not 1 <= sig <= 64:
            reply(None, errno.ESRCH, f"no process {pid}")
            return
        if params.get("session"):
            # The process and every process of its session (an exec'd process leads one),
            # e.g. the shell of a timed-out run and the pipeline it started.
            sid = tg.sid
            for g in list(self.kernel.groups.values()):
                if g.sid == sid and g is not self.kernel.init:
                    self._send(g, sig)
        else:
            self._send(tg, sig)
        reply({})

    def _signal_foreground(self, conn: control.Connection, params: dict[str, Any],
                           fds: list[int], reply: control.Reply) -> None:
        """A signal the pty of exec'd process `pid` raised (^C, ^Z, a resize, a hang-up)
        for its holder outside: to the foreground process group of that terminal, as
        the pty's line discipline signals its foreground group (tty_io's
        __kill_pgrp); the process itself if the group is gone."""
        pid, sig = _int(params, "pid"), _int(params, "signal")
        tg = self.kernel.groups.get(pid)
        tty = self.ttys.get(pid)
        if tg is None or tg.zombie or tty is None or not 1 <= sig <= 64:
            reply(None, errno.ESRCH, f"no exec'd process {pid} with a terminal")
            return
        pgid = tty.fg_pgrp if tty.fg_pgrp is not None else tg.pgid
        targets = [g for g in list(self.kernel.groups.values())
                   if g.pgid == pgid and not g.zombie and g is not self.kernel.init] or [tg]
        for g in targets:
            self._send(g, sig)
        reply({"signalled": len(targets)})

    def _ps(self, conn: control.Connection, params: dict[str, Any], fds: list[int],
            reply: control.Reply) -> None:
        out = []
        for pid in sorted(self.kernel.groups):
            tg = self.kernel.groups[pid]
            if tg.reaped or tg.container != params.get("container", ""):
                continue        # only the container's own (pods: runtime/sentry_pod.py)
            leader = tg.tasks[0] if tg.tasks else None
            state = "Z" if tg.zombie else "T" if tg.stopped else \
                "R" if leader is not None and leader.thread.running else "S"
            out.append({
                "pid": pid, "ppid": tg.parent.tgid if tg.parent is not None else 0,
                "uid": leader.creds.uid if leader is not None else 0,
                "gid": leader.creds.gid if leader is not None else 0,
                "state": state, "threads": len(tg.tasks),
                "comm": tg.comm.decode(errors="replace"),
                "args": [a.decode(errors="replace") for a in tg.argv.split(b"\0")[:-1]],
                "started": time.time() - (self.kernel.now() - tg.start_ns) / 1e9,
                "utime_ns": cputime.group_times(tg)[0],
                # The stub process holding its address space (ps --format json), as a pid
                # of the Sentry's PID namespace: the CLI maps it to the host's.
                "stub_pid": leader.thread.process.pid if leader is not None else 0,
            })
        reply(out)

    def _update(self, conn: control.Connection, params: dict[str, Any], fds: list[int],
                reply: control.Reply) -> None:
        limit = _int(params, "pids_limit")
        if limit < 1:
            raise ValueError("pids_limit must be positive")
        self.kernel.max_tasks = limit
        reply({"pids_limit": limit})

    def _stats(self, conn: control.Connection, params: dict[str, Any], fds: list[int],
               reply: control.Reply) -> None:
        reply({"tasks": len(self.kernel.tasks_by_tid), "processes": len(self.kernel.groups),
               "pids_limit": self.kernel.max_tasks})

    # -- exits ------------------------------------------------------------------------

    def _orphan_exit(self, tg: ThreadGroup) -> None:
        """A parentless process (an exec'd one) died: its status goes to its waiters."""
        pid = tg.tgid
        if pid not in self.execed:
            return
        self.execed.discard(pid)
        self.ttys.pop(pid, None)
        name = self.pts_names.pop(pid, None)
        if name is not None:
            forget_exec_terminal(self.kernel, name, tg.sid)
        status = tg.exit_code if tg.exit_code is not None else 0
        waiters = self.waiters.pop(pid, [])
        if not waiters:
            if len(self.exited) >= MAX_UNCLAIMED:
                self.exited.pop(next(iter(self.exited)))
            self.exited[pid] = status
        for reply in waiters:
            reply({"status": status})
