"""Containers: the OCI lifecycle over a state directory and a control socket.
runc: libcontainer/container_linux.go; runsc: runsc/container/container.go.

    create ──▶ created ──start──▶ running ──(init exits / kill)──▶ stopped ──delete──▶ gone
                  │                  │ ▲
                  └──kill/delete─────┘ pause/resume (paused)

The verbs of cmd/ are thin wrappers around this module; the Python API
(pyvisor.Sandbox, issue #7) will be too.  Errors are BootError: one line and an
exit status.  Every verb that changes a container holds its lock (state.py).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import signal as host_signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyvisor.runtime import control
from pyvisor.runtime.errors import BootError
from pyvisor.runtime.state import (OCI_VERSION, ContainerState, StateDir, Status, check_id,
                                   current_status, list_ids, monitor_alive, now_rfc3339,
                                   process_start_time)

if TYPE_CHECKING:
    from pyvisor.runtime.boot import SandboxConfig

log = logging.getLogger("pyvisor.container")


def wait_status_code(status: int) -> int:
    """A wait status as a shell reports it (128+N for a death by signal N)."""
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF


def write_pid_file(path: str, pid: int) -> None:
    if not path:
        return
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.replace(tmp, path)
    except OSError as e:
        raise BootError(f"pid file {path!r}: {e.strerror}", 1) from None


class Container:
    """One container under --root."""

    def __init__(self, root: str, cid: str) -> None:
        self.sd = StateDir(root, cid)
        self.id = cid

    # -- queries ----------------------------------------------------------------------

    def load(self) -> tuple[ContainerState, str]:
        st = self.sd.load()
        return st, current_status(self.sd, st)

    def state(self) -> dict[str, Any]:
        """The OCI state (runtime-spec runtime.md#state), plus runc's created and owner."""
        from pyvisor.runtime.state import oci_state
        return oci_state(self.sd.root, self.id)

    def exit_code(self) -> int | None:
        rec = self.sd.exit_record()
        return int(rec["code"]) if rec is not None and "code" in rec else None

    # -- create / run -----------------------------------------------------------------

    @classmethod
    def create(cls, root: str, cid: str, bundle: str, cfg: SandboxConfig,
               pid_file: str = "") -> Container:
        """Boots a sandbox whose init is loaded but held; returns once it is `created`.
        A container the annotations put in a running sandbox is made there (pod.py)."""
        from pyvisor.runtime import pod
        if pod.is_member(cfg.annotations):
            return pod.create_member(root, cid, bundle, cfg, pid_file)
        from pyvisor.runtime import hooks as hooks_mod
        hooks = hooks_mod.from_bundle(bundle)
        c = cls(root, cid)
        sd = c.sd
        sd.make()
        done = False
        st: ContainerState | None = None
        try:
            st = ContainerState(id=cid, bundle=bundle, created=now_rfc3339(),
                                annotations=cfg.annotations, config={"rootfs": cfg.root})
            if hooks:
                st.config["hooks"] = hooks_mod.to_json(hooks)
                st.config["hostname"] = cfg.hostname
                if cfg.network == "sandbox" and cfg.confine and not cfg.netns_path:
                    # The sandbox makes its network namespace; a hook may configure it
                    # (Docker's libnetwork-setkey): start takes over what it put there.
                    st.config["netns_late"] = True
            sd.save(st)
            with sd.locked():
                c._boot_detached(st, cfg)
                write_pid_file(pid_file, st.pid)
                c._create_hooks(st, hooks)
            done = True
        finally:
            if not done:
                if st is not None and monitor_alive(st):   # booted, then failed (pid file)
                    c._kill_sandbox(st)
                    c._remove_cgroups(st)
                _rmtree(sd.path)
        return c

    def _boot_detached(self, st: ContainerState, cfg: SandboxConfig) -> None:
        """Forks the monitor (in a session of its own) and reads its readiness lines."""
        sd = self.sd
        listener = control.listen(sd.control_path)
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(r)
            self._monitor_child(cfg, listener, w)
        listener.close()
        os.close(w)
        if cfg.console_fd >= 0:       # the monitor's and the Sentry's
            os.close(cfg.console_fd)
            cfg.console_fd = -1
        lines = _read_lines(r)
        st.pid, st.pid_start = pid, process_start_time(pid)
        self._take_report(st, lines)
        if "ok" not in lines:
            os.waitpid(pid, 0)
            err = next((ln for ln in lines if ln.startswith("error ")), "")
            msg = err.split(" ", 2)[2] if err.count(" ") >= 2 else \
                "the sandbox exited during start-up"
            raise BootError(msg, 1)
        st.status = Status.CREATED
        sd.save(st)

    def _hook_state(self, st: ContainerState, status: str) -> dict[str, Any]:
        """The state JSON a hook reads on stdin (runtime-spec runtime.md#state)."""
        out: dict[str, Any] = {"ociVersion": OCI_VERSION, "id": st.id, "status": status,
                               "pid": st.pid if status != Status.STOPPED else 0,
                               "bundle": st.bundle}
        if st.annotations:
            out["annotations"] = st.annotations
        return out

    def _create_hooks(self, st: ContainerState, hooks: dict[str, Any]) -> None:
        """prestart, createRuntime, createContainer (runtime/hooks.py): a failure kills the
        sandbox, runs the poststop hooks and fails `create` with one line."""
        from pyvisor.runtime import hooks as hooks_mod
        if not hooks:
            return
        state = self._hook_state(st, Status.CREATING)
        try:
            for kind in ("prestart", "createRuntime", "createContainer"):
                hooks_mod.run(kind, hooks, state, str(st.config.get("rootfs", "")),
                              st.sentry_pid, str(st.config.get("hostname", "")))
        except hooks_mod.HookError as e:
            self._kill_sandbox(st)
            self._remove_cgroups(st)
            hooks_mod.run_best_effort("poststop", hooks, self._hook_state(st, Status.STOPPED))
            raise BootError(str(e), 1) from None

    def _hooks(self, st: ContainerState) -> dict[str, Any]:
        from pyvisor.runtime import hooks as hooks_mod
        return hooks_mod.from_json(st.config.get("hooks"))

    @staticmethod
    def _take_report(st: ContainerState, lines: list[str]) -> None:
        for ln in lines:
            if ln.startswith("sentry "):
                st.sentry_pid = int(ln.split()[1])
            elif ln.startswith("warning "):
                log.warning("%s", ln[8:])
            elif ln.startswith("cgroup-parents "):
                st.config["cgroup_parents"] = json.loads(ln[15:])
            elif ln.startswith("cgroup "):
                dirs = json.loads(ln[7:])
                st.config["cgroup_dirs"] = dirs
                if dirs:
                    st.cgroup = os.path.basename(dirs[0])

    def _monitor_child(self, cfg: SandboxConfig, listener: Any, w: int) -> None:
        """The monitor of a detached container: never returns."""
        from pyvisor.runtime.sandbox import report, run_sandbox
        code = 125
        try:
            self.sd.release_lock_in_child()
            os.setsid()
            _log_to_file_only()
            cfg.control_fd = listener.detach()
            cfg.ready_fd = w
            cfg.hold_init = True
            from pyvisor.runtime.config import cgroup_name_for
            cfg.cgroup_name = cgroup_name_for(os.getpid())
            code = run_sandbox(cfg, on_exit=lambda c: self.sd.write_exit(c), container=True,
                               after_fork=_quiet_stdio)
        except BootError as e:
            report(w, f"error {e.code} {e}")
            code = e.code
        except BaseException as e:  # noqa: BLE001 - one line, never a traceback
            report(w, f"error 125 sandbox failed: {e}")
        finally:
            os._exit(code)

    @classmethod
    def run_foreground(cls, root: str, cid: str, bundle: str, cfg: SandboxConfig,
                       pid_file: str = "") -> int:
        """`run` without --detach: this process is the monitor; the container is deleted
        when it ends (as runc's run)."""
        from pyvisor.runtime import pod
        from pyvisor.runtime.config import cgroup_name_for
        from pyvisor.runtime.sandbox import run_sandbox
        if pod.is_member(cfg.annotations):
            return pod.run_member(root, cid, bundle, cfg, pid_file)
        c = cls(root, cid)
        sd = c.sd
        sd.make()
        try:
            cfg.cgroup_name = cgroup_name_for(os.getpid())
            listener = control.listen(sd.control_path)
            cfg.control_fd = listener.detach()
            st = ContainerState(id=cid, bundle=bundle, created=now_rfc3339(),
                                status=Status.RUNNING, pid=os.getpid(),
                                pid_start=process_start_time(os.getpid()),
                                annotations=cfg.annotations, cgroup=cfg.cgroup_name,
                                config={"rootfs": cfg.root})
            sd.save(st)
            write_pid_file(pid_file, os.getpid())
            return run_sandbox(cfg, container=True)
        finally:
            _rmtree(sd.path)

    # -- start / kill / delete --------------------------------------------------------

    def start(self) -> None:
        with self.sd.locked():
            st, status = self.load()
            if status != Status.CREATED:
                raise BootError(_cannot("start", status), 1)
            from pyvisor.runtime import hooks as hooks_mod
            hooks = self._hooks(st)
            try:
                hooks_mod.run("startContainer", hooks, self._hook_state(st, Status.CREATED),
                              str(st.config.get("rootfs", "")), st.sentry_pid,
                              str(st.config.get("hostname", "")))
            except hooks_mod.HookError as e:
                self._kill_sandbox(st)         # the container is stopped; delete cleans up
                raise BootError(str(e), 1) from None
            try:
                self._send_start(st)
            except control.ControlError as e:
                raise BootError(f"cannot start container {self.id!r}: {e}", 1) from None
            st.status = Status.RUNNING
            self.sd.save(st)
            hooks_mod.run_best_effort("poststart", hooks, self._hook_state(st, Status.RUNNING))

    def _send_start(self, st: ContainerState) -> None:
        """The start request, with the interfaces a create hook configured in the sandbox's
        network namespace (runtime/netns.py take_from), their packet sockets attached."""
        taken = []
        if st.config.get("netns_late") and st.pid:
            from pyvisor.runtime import netns
            try:
                taken = netns.take_from(st.pid)
            except BootError:
                self._kill_sandbox(st)
                raise
        params = dict(_member(st))
        if taken:
            from pyvisor.runtime import netns
            params["nics"] = [netns.to_json(ti) for ti in taken]
        try:
            with control.Client(self.sd.control_path, 30.0) as c:
                c.call("start", params, fds=[ti.fd for ti in taken] or None)
        finally:
            for ti in taken:
                os.close(ti.fd)

    def kill(self, sig: int, all_processes: bool = False) -> None:
        with self.sd.locked():
            st, status = self.load()
            if status in (Status.STOPPED, Status.CREATING):
                raise BootError("container not running", 1)
            if status == Status.PAUSED:
                if sig != host_signal.SIGKILL:
                    raise BootError(f"container {self.id!r} is paused; resume it first", 1)
                self._kill_sandbox(st)
                return
            try:
                control.call(self.sd.control_path, "kill", {"signal": sig,
                                                             "all": all_processes,
                                                             **_member(st)})
            except control.ControlError as e:
                if e.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.ENOENT,
                               errno.ESRCH):
                    raise BootError("container not running", 1) from None
                raise BootError(f"cannot kill container {self.id!r}: {e}", 1) from None

    def delete(self, force: bool = False) -> None:
        sd = self.sd
        if not sd.exists():
            if force:        # runc: an aborted create may have left the directory
                _rmtree(sd.path)
                return
            raise BootError(f"container {self.id!r} does not exist", 1)
        with sd.locked():
            try:
                st, status = self.load()
            except BootError:
                _rmtree(sd.path)    # damaged: nothing to kill
                return
            if status in (Status.RUNNING, Status.PAUSED, Status.CREATING) and not force:
                raise BootError(f"cannot delete container {self.id!r} that is not stopped: "
                                f"{status}", 1)
            if _member(st):
                from pyvisor.runtime.pod import destroy_member
                destroy_member(self, st)     # its processes and Gofers; then its monitor
            if status != Status.STOPPED or monitor_alive(st):
                self._kill_sandbox(st)
            self._remove_cgroups(st)
            from pyvisor.runtime import hooks as hooks_mod
            hooks_mod.run_best_effort("poststop", self._hooks(st),
                                      self._hook_state(st, Status.STOPPED))
            _rmtree(sd.path)

    def _kill_sandbox(self, st: ContainerState) -> None:
        """SIGKILL to the monitor (the Sentry and everything under it follow)."""
        if not monitor_alive(st):
            return
        self._freeze(st, False)
        with contextlib.suppress(ProcessLookupError):
            os.kill(st.pid, host_signal.SIGKILL)
        _wait_gone(st, 10.0)

    def _remove_cgroups(self, st: ContainerState) -> None:
        from pyvisor.runtime.cgroup import remove_leftovers
        dirs = st.config.get("cgroup_dirs")
        if self.sd.exit_record() is not None and dirs is not None:
            return      # the monitor removed them itself
        if isinstance(dirs, list):
            for d in dirs:
                _rmdir_retry(str(d), 5.0)
            from pyvisor.runtime.cgroup import remove_parents
            remove_parents([str(p) for p in st.config.get("cgroup_parents") or []])
        elif st.cgroup and st.cgroup.startswith("pyvisor-"):
            remove_leftovers(st.cgroup)

    def wait(self) -> int:
        """Waits until the init exits; returns its exit code (137 when the sandbox was
        killed before it could record one)."""
        st, status = self.load()
        if status != Status.STOPPED:
            _wait_gone(st, None)
        code = self.exit_code()
        return code if code is not None else 128 + 9

    # -- exec / ps --------------------------------------------------------------------

    def _check_exec(self) -> dict[str, Any]:
        """Raises unless the container is created or running; returns the fields naming
        a pod member in its sandbox's requests ({} otherwise)."""
        st, status = self.load()
        if status not in (Status.CREATED, Status.RUNNING):
            raise BootError(f"cannot exec in a {status} container", 1)
        return _member(st)

    def exec(self, proc: dict[str, Any], fds: dict[int, int],
             tty: ExecTTY | None = None) -> int:
        """Runs a process in the container with fd N on host fd fds[N] (stdio and
        --preserve-fds); returns its exit code.  With `tty`, a holder child leads the
        process's terminal (runtime/terminal.py) and this waits for it."""
        try:
            proc = {**proc, **self._check_exec()}
        except BootError:
            if tty is not None and tty.console is not None:
                tty.console.close_unused()      # the caller's terminal as it was
            raise
        if tty is not None:
            return self._exec_tty_foreground(proc, fds, tty)
        client = control.Client(self.sd.control_path, timeout=None)
        try:
            try:
                pid = client.call("exec", {**proc, "fd_numbers": list(fds)},
                                  fds=list(fds.values()))["pid"]
            except control.ControlError as e:
                raise BootError(f"exec failed: {e}", 127 if e.errno == errno.ENOENT else 126) \
                    from None
            finally:
                _close_preserved(fds)
            with _forwarding(self.sd.control_path, pid):
                try:
                    res = client.call("wait_pid", {"pid": pid})
                except control.ControlError:
                    return 128 + 9          # the sandbox ended under it
            return wait_status_code(int(res["status"]))
        finally:
            client.close()

    def exec_detached(self, proc: dict[str, Any], fds: dict[int, int], pid_file: str,
                      tty: ExecTTY | None = None) -> None:
        """exec --detach: a child (new session) runs the process and exits with its status;
        its pid goes to the pid file (what conmon waits for, as with runsc)."""
        proc = {**proc, **self._check_exec()}
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            code = 126
            try:
                os.close(r)
                os.setsid()
                code = self._exec_child(proc, fds, w, tty)
            except BaseException:  # noqa: BLE001
                pass
            finally:
                os._exit(code)
        os.close(w)
        _close_preserved(fds)
        lines = _read_lines(r)
        if not any(ln.startswith("pid ") for ln in lines):
            os.waitpid(pid, 0)
            raise _exec_error(lines)
        write_pid_file(pid_file, pid)

    def _exec_tty_foreground(self, proc: dict[str, Any], fds: dict[int, int],
                             tty: ExecTTY) -> int:
        """exec --tty in the foreground: the holder child leads the terminal; this copies
        the caller's terminal to it (tty.console) or just waits, forwarding signals."""
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError:
            if tty.console is not None:
                tty.console.close_unused()
            raise
        if pid == 0:
            code = 126
            try:
                os.close(r)
                code = self._exec_child(proc, fds, w, tty)
            except BaseException:  # noqa: BLE001
                pass
            finally:
                os._exit(code)
        os.close(w)
        _close_preserved(fds)
        if tty.console is not None:
            status = tty.console.serve(pid)     # restores the caller's terminal
        else:
            status = _wait_child_forwarding(pid)
        lines = _read_lines(r)
        if not any(ln.startswith("pid ") for ln in lines):
            raise _exec_error(lines)
        return wait_status_code(status)

    def _exec_child(self, proc: dict[str, Any], fds: dict[int, int], w: int,
                    tty: ExecTTY | None) -> int:
        """The holder: starts the process, reports "pid N" (or "error CODE MESSAGE") on
        `w`, and waits for it, forwarding signals; returns its exit code."""
        from pyvisor.runtime import terminal
        from pyvisor.runtime.sandbox import report
        fds = dict(fds)
        if tty is not None:
            try:
                if tty.console is not None:
                    tty.console.attach_sentry()     # stdio is the pty now; our session's
                    fds.update({n: n for n, r in zip((0, 1, 2), tty.console.replaced) if r})
                else:
                    slave = terminal.pty_for_socket(tty.console_socket, tty.size)
                    terminal.lead_session(slave)
                    fds.update({0: slave, 1: slave, 2: slave})
            except BootError as e:
                report(w, f"error {e.code} {e}")
                return e.code
            except OSError as e:
                report(w, f"error 1 cannot set up the terminal: {e.strerror or e}")
                return 1
        params = {**proc, "fd_numbers": list(fds), "tty": tty is not None}
        with control.Client(self.sd.control_path, timeout=None) as client:
            try:
                pid = client.call("exec", params, fds=list(fds.values()))["pid"]
            except control.ControlError as e:
                code = 127 if e.errno == errno.ENOENT else 126
                report(w, f"error {code} exec failed: {e}")
                return code
            report(w, f"pid {pid}")
            os.close(w)
            for fd in set(fds.values()):      # the Sentry's now; the terminal stays ours
                if fd > 2:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            _quiet_stdio()
            fwd = terminal.forwarding_to_foreground(self.sd.control_path, pid) \
                if tty is not None else _forwarding(self.sd.control_path, pid)
            with fwd:
                try:
                    res = client.call("wait_pid", {"pid": pid})
                except control.ControlError:
                    return 128 + 9
            return wait_status_code(int(res["status"]))

    def processes(self) -> list[dict[str, Any]]:
        st, status = self.load()
        if status not in (Status.CREATED, Status.RUNNING):
            raise BootError(f"container {self.id!r} is not running", 1)
        try:
            return list(control.call(self.sd.control_path, "ps", _member(st)))
        except control.ControlError as e:
            raise BootError(f"ps: {e}", 1) from None

    def host_pids(self) -> list[int]:
        """`ps --format json`: the host pids of the container's own processes, which is
        what runc lists (its cgroup's pids) and what engines look up in the host's /proc
        (`docker top` runs the host's ps on them, `ctr task ps` too): each application
        process's stub, the host process holding its address space and running its
        threads, named after the program (kernel/exec.py name_host_stub).  Not the
        monitor, the Sentry or the Gofers: they are the runtime's, as runc's own
        processes are not in the container's cgroup.  (runsc lists the sandbox's own
        pids there, which the engines then look up on the host: unrelated processes.)
        A paused container's Sentry cannot answer: then every host process of the
        sandbox is listed, as before."""
        st, status = self.load()
        if status not in (Status.CREATED, Status.RUNNING, Status.PAUSED):
            raise BootError(f"container {self.id!r} is not running", 1)
        if status != Status.PAUSED:
            try:
                procs = control.call(self.sd.control_path, "ps", None, 5.0)
                stubs = {int(p["stub_pid"]) for p in procs if p.get("stub_pid")}
            except (control.ControlError, OSError, KeyError, TypeError, ValueError):
                stubs = set()
            if stubs:
                by_ns = _ns_pids(_descendants(st.pid))
                return sorted(by_ns[p] for p in stubs if p in by_ns)
        pids: set[int] = set()
        for d in st.config.get("cgroup_dirs") or []:
            with contextlib.suppress(OSError, ValueError):
                with open(os.path.join(str(d), "cgroup.procs")) as f:
                    pids.update(int(x) for x in f.read().split())
        if not pids:
            pids = _descendants(st.pid)
        if monitor_alive(st):
            pids.add(st.pid)
        return sorted(pids)

    # -- cgroups: pause, resume, update, stats -----------------------------------------

    def _cgroup_file(self, st: ContainerState, v1_ctrl: str, v1_name: str,
                     v2_name: str) -> str | None:
        for d in st.config.get("cgroup_dirs") or []:
            d = str(d)
            if f"/{v1_ctrl}/" in d and os.path.exists(os.path.join(d, v1_name)):
                return os.path.join(d, v1_name)
            if os.path.exists(os.path.join(d, v2_name)) and os.path.exists(
                    os.path.join(d, "cgroup.controllers")):
                return os.path.join(d, v2_name)
        return None

    def _weight_file(self, st: ContainerState) -> str | None:
        """The container's I/O weight file (runtime/cgroup.py _set_weight's choice)."""
        for v1, v2 in (("blkio.weight", "io.weight"), ("blkio.bfq.weight", "io.bfq.weight")):
            path = self._cgroup_file(st, "blkio", v1, v2)
            if path is not None:
                return path
        return None

    def _freeze(self, st: ContainerState, frozen: bool) -> bool:
        path = self._cgroup_file(st, "freezer", "freezer.state", "cgroup.freeze")
        if path is None:
            return False
        value = ("1" if frozen else "0") if path.endswith("cgroup.freeze") else \
            ("FROZEN" if frozen else "THAWED")
        with contextlib.suppress(OSError):
            with open(path, "w") as f:
                f.write(value)
            return True
        return False

    def pause(self) -> None:
        self._set_frozen(True)

    def resume(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        """pause (running -> paused) or resume (paused -> running) via the freezer."""
        want, then, verb = (Status.RUNNING, Status.PAUSED, "pause") if frozen else \
            (Status.PAUSED, Status.RUNNING, "resume")
        with self.sd.locked():
            st, status = self.load()
            if status != want:
                raise BootError(f"container {self.id!r} is not "
                                f"{'running' if frozen else 'paused'}", 1)
            if not self._freeze(st, frozen):
                raise BootError(f"{verb}: no freezer cgroup for this container", 1)
            st.status = then
            self.sd.save(st)

    def update(self, memory: int | None, pids: int | None, cpu_quota: int | None,
               cpu_period: int | None, cpu_shares: int | None = None,
               blkio_weight: int | None = None) -> None:
        with self.sd.locked():
            st, status = self.load()
            if status not in (Status.CREATED, Status.RUNNING, Status.PAUSED):
                raise BootError(f"container {self.id!r} is not running", 1)
            writes: list[tuple[str | None, str]] = []
            if memory is not None:
                writes.append((self._cgroup_file(st, "memory", "memory.limit_in_bytes",
                                                 "memory.max"), str(memory)))
            if pids is not None:
                writes.append((self._cgroup_file(st, "pids", "pids.max", "pids.max"),
                               str(pids + 64)))
            if cpu_period is not None:
                writes.append((self._cgroup_file(st, "cpu", "cpu.cfs_period_us", ""),
                               str(cpu_period)))
            if cpu_quota is not None:
                writes.append((self._cgroup_file(st, "cpu", "cpu.cfs_quota_us", "cpu.max"),
                               str(cpu_quota)))
            if cpu_shares is not None:
                from pyvisor.runtime.cgroup import shares_to_weight
                path = self._cgroup_file(st, "cpu", "cpu.shares", "cpu.weight")
                writes.append((path, str(cpu_shares if path is None or
                                         path.endswith("shares")
                                         else shares_to_weight(cpu_shares))))
            if blkio_weight is not None:
                path = self._weight_file(st)
                if path is None:       # no I/O weight on this host: one line, as at create
                    log.warning("update: this host has no I/O weight control; "
                                "blkio weight %d not applied", blkio_weight)
                else:
                    writes.append((path, str(blkio_weight) if not path.endswith("io.weight")
                                   else f"default {blkio_weight}"))
            for path, value in writes:
                if path is None:
                    raise BootError("update: the container has no cgroup for that limit", 1)
                if path.endswith("cpu.max"):
                    value = f"{value} {cpu_period or 100000}"
                try:
                    with open(path, "w") as f:
                        f.write(value)
                except OSError as e:
                    raise BootError(f"update {os.path.basename(path)}: {e.strerror}", 1) \
                        from None
            if pids is not None and status != Status.PAUSED:
                with contextlib.suppress(control.ControlError):
                    control.call(self.sd.control_path, "update", {"pids_limit": pids})

    def stats(self) -> dict[str, Any]:
        """runc's `events --stats` data: memory, CPU and pids from the cgroup."""
        st, status = self.load()
        if status == Status.STOPPED:
            raise BootError(f"container {self.id!r} is not running", 1)

        def num(v1_ctrl: str, v1: str, v2: str, key: str | None = None) -> int:
            path = self._cgroup_file(st, v1_ctrl, v1, v2)
            if path is None:
                return 0
            try:
                with open(path) as f:
                    text = f.read()
            except OSError:
                return 0
            if key is not None:
                for line in text.splitlines():
                    k, _, v = line.partition(" ")
                    if k == key:
                        return int(v)
                return 0
            word = text.split()[0] if text.split() else "0"
            return int(word) if word.isdigit() else 0
        v2 = self._cgroup_file(st, "-", "-", "cgroup.controllers") is not None
        user = num("cpuacct", "cpuacct.usage_user", "cpu.stat", None if not v2 else "user_usec")
        kern = num("cpuacct", "cpuacct.usage_sys", "cpu.stat", None if not v2 else "system_usec")
        total = num("cpuacct", "cpuacct.usage", "cpu.stat", None if not v2 else "usage_usec")
        if v2:
            user, kern, total = user * 1000, kern * 1000, total * 1000
        return {
            "cpu": {"usage": {"total": total, "kernel": kern, "user": user}},
            "memory": {"usage": {
                "usage": num("memory", "memory.usage_in_bytes", "memory.current"),
                "limit": num("memory", "memory.limit_in_bytes", "memory.max"),
                "max": num("memory", "memory.max_usage_in_bytes", "memory.peak"),
                "failcnt": num("memory", "memory.failcnt", "memory.events",
                               None if not v2 else "max")}},
            "pids": {"current": num("pids", "pids.current", "pids.current"),
                     "limit": max(0, num("pids", "pids.max", "pids.max") - 64)},
        }


def _member(st: ContainerState) -> dict[str, Any]:
    """The `container` param naming a pod member in its sandbox's requests ({} otherwise)."""
    from pyvisor.runtime.pod import member_params
    return member_params(st)


def list_containers(root: str) -> list[dict[str, Any]]:
    out = []
    for cid in list_ids(root):
        try:
            out.append(Container(root, cid).state())
        except BootError:
            continue
    return out


def _cannot(verb: str, status: str) -> str:
    if verb == "start" and status == Status.RUNNING:
        return "cannot start an already running container"
    if verb == "start" and status == Status.STOPPED:
        return "cannot start a container that has stopped"
    return f"cannot {verb} a container that is {status}"


@dataclass
class ExecTTY:
    """How an exec'd process gets its terminal (exec --tty): a new pty whose master goes
    to `console_socket`, or the caller's terminal through `console` (console.Console)."""

    console_socket: str = ""
    size: tuple[int, int] | None = None       # consoleSize (rows, columns)
    console: Any = None


def _exec_error(lines: list[str]) -> BootError:
    err = next((ln for ln in lines if ln.startswith("error ")), "error 126 exec failed")
    parts = err.split(" ", 2)
    return BootError(parts[2] if len(parts) > 2 else "exec failed",
                     int(parts[1]) if parts[1].isdigit() else 126)


def _close_preserved(fds: dict[int, int]) -> None:
    """--preserve-fds: once sent (or handed to a child), this process keeps none."""
    for n, fd in fds.items():
        if n > 2 and fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)


def _wait_child_forwarding(pid: int) -> int:
    """Waits for child `pid`, passing on the signals an engine or a user sends us."""
    sigs = (host_signal.SIGINT, host_signal.SIGTERM, host_signal.SIGHUP, host_signal.SIGQUIT,
            host_signal.SIGUSR1, host_signal.SIGUSR2)

    def forward(sig: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    old = {s: host_signal.signal(s, forward) for s in sigs}
    try:
        while True:
            try:
                return os.waitpid(pid, 0)[1]
            except InterruptedError:
                continue
    finally:
        for s, h in old.items():
            host_signal.signal(s, h)


def _read_lines(fd: int) -> list[str]:
    chunks = []
    try:
        while True:
            try:
                b = os.read(fd, 65536)
            except InterruptedError:
                continue
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace").splitlines()


def _log_to_file_only() -> None:
    """A detached sandbox's stderr is the container's: its log records go to --log (the
    open file stays usable after the Sentry pivots) or nowhere, never into that stream."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if not isinstance(h, logging.FileHandler):
            root.removeHandler(h)
    if not root.handlers:
        root.addHandler(logging.NullHandler())


def _quiet_stdio() -> None:
    """A detached monitor holds none of the engine's stdio (the Sentry does)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _wait_gone(st: ContainerState, timeout: float | None) -> None:
    """Until the monitor exits (pidfd: no polling while it runs)."""
    if not monitor_alive(st):
        return
    try:
        pidfd = os.pidfd_open(st.pid)
    except OSError:
        return
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while monitor_alive(st):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0.0:
                break
            try:
                select.select([pidfd], [], [], min(left, 0.5) if left is not None else 0.5)
            except InterruptedError:
                continue
    finally:
        os.close(pidfd)


def _descendants(pid: int) -> set[int]:
    """`pid` and every process below it (from /proc/PID/task/*/children)."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError, ValueError):
                    with open(f"/proc/{p}/task/{task}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
    return out


def _ns_pids(pids: set[int]) -> dict[int, int]:
    """{pid in its innermost PID namespace: host pid} for `pids` (NSpid of /proc/PID/status:
    the Sentry is PID 1 of a namespace of its own, its stubs are numbered there)."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        out[int(line.split()[-1])] = pid
                        break
    return out


def _rmtree(path: str) -> None:
    """shutil.rmtree(path, ignore_errors=True), imported when needed: shutil (which
    imports bz2 and lzma) would cost every verb ~2.5 ms of its start-up."""
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def _rmdir_retry(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if time.monotonic() > deadline:
                log.warning("cannot remove cgroup %s: %s", path, e)
                return
            time.sleep(0.02)


@contextlib.contextmanager
def _forwarding(control_path: str, pid: int) -> Any:
    """Signals to this process go to exec'd process `pid` (as runc's exec forwards them)."""
    sigs = (host_signal.SIGINT, host_signal.SIGTERM, host_signal.SIGHUP, host_signal.SIGQUIT,
            host_signal.SIGUSR1, host_signal.SIGUSR2)

    def forward(sig: int, frame: object) -> None:
        with contextlib.suppress(control.ControlError):
            control.call(control_path, "signal_process", {"pid": pid, "signal": sig}, 5.0)
    old = {s: host_signal.signal(s, forward) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            host_signal.signal(s, h)


__all__ = ["Container", "check_id", "list_containers", "wait_status_code", "write_pid_file"]
