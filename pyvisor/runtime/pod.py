"""Pods: several containers in one sandbox, the CLI's side.  runsc: runsc/specutils (cri.go:
SpecContainerType, SandboxID) and runsc/container/container.go (Create of a container whose
spec names a sandbox: it starts the container's Gofer and asks the running sandbox to make
the container).  The Sentry's side is runtime/sentry_pod.py.

Which containers join a sandbox: exactly those runsc puts in one, told by the annotations
the engines write (checked in this order, the first found wins):

| annotation | sandbox | container (joins) | the sandbox to join |
| --- | --- | --- | --- |
| containerd CRI | `io.kubernetes.cri.container-type: sandbox` | `...: container` | `io.kubernetes.cri.sandbox-id` |
| CRI-O, podman pods | `io.kubernetes.cri-o.ContainerType: sandbox` | `...: container` | `io.kubernetes.cri-o.SandboxID` |

A container without them is a sandbox of its own; another value is an error, as in runsc.
podman 4 marks the members of a pod with CRI-O's annotations (SandboxID: the infra
container's id) besides giving namespace paths (/proc/<infra pid>/ns/{net,ipc,uts}); the
annotations are what counts here, the paths then name the sandbox's own namespaces.

How a member is made (`create`), with its processes:

    pyvisor create ──fork──▶ member monitor M (new session; its pid is the container's pid,
        │                    in state.json and --pid-file)
        │                      └─fork─▶ Gofer keeper K ──fork──▶ the member's Gofers
        │                               (K and the Gofers in the pod's cgroup)
        └── reads "ok", writes state.json, exits

  * K starts the member's Gofers (its root, each bind-mounted directory, the single-file
    binds), confined as the first container's, then sends them and the container's stdio
    to the Sentry in one `create_container` request (SCM_RIGHTS); the Sentry builds the
    member's mount namespace and its held init.  K then only waits for its Gofers, which
    die with K (PR_SET_PDEATHSIG) and exit when the Sentry lets go of them (`delete`).
  * M waits (`wait_container`) for the member's init to exit, writes exit.json and exits
    with its status (128+N for signal N), as the first container's monitor does; so an
    engine reaping M (conmon, the shim) sees the member's exit.  If the sandbox dies, M
    sees the control connection close and exits 137.
  * Why two processes: M must exit when the member's init does (that is what conmon and
    the shim wait for), while the Gofers die with the thread that started them and serve
    the member until `delete`, when the Sentry drops its mount namespace (as runsc keeps a
    stopped subcontainer's gofer until destroy); so a keeper holds them.
  * The member's state directory holds `control.sock`, a symlink to the sandbox's, so the
    verbs reach the Sentry as for any container; they name the member in their requests.
  * `delete` of a member: `destroy_container` (its processes die, its Gofers go), then M.
    `delete` of the sandbox container ends the Sentry and every member with it.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import signal as host_signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyvisor.runtime import control
from pyvisor.runtime.errors import BootError
from pyvisor.runtime.state import (ContainerState, StateDir, Status, current_status,
                                   now_rfc3339, process_start_time)

if TYPE_CHECKING:
    from pyvisor.runtime.boot import MountSpec, SandboxConfig
    from pyvisor.runtime.container import Container

log = logging.getLogger("pyvisor.pod")

CONTAINER_TYPE = ("io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType")
SANDBOX_ID = ("io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID")
_SPECIAL = ("/proc", "/dev", "/dev/shm", "/sys")     # every member gets its own
_IGNORED_TYPES = ("proc", "devpts", "mqueue", "sysfs", "cgroup", "cgroup2")


class ContainerType(enum.Enum):
    """runsc's specutils.ContainerType."""

    UNSPECIFIED = "unspecified"    # no annotation: a sandbox of its own
    SANDBOX = "sandbox"            # the first container of a pod
    CONTAINER = "container"        # joins the sandbox named by SANDBOX_ID


def container_type(annotations: dict[str, str]) -> ContainerType:
    """The type the engine asked for (containerd's annotation first, then CRI-O's)."""
    for key in CONTAINER_TYPE:
        if key in annotations:
            value = annotations[key]
            if value == "sandbox":
                return ContainerType.SANDBOX
            if value == "container":
                return ContainerType.CONTAINER
            raise BootError(f"unknown container-type {value!r} (annotation {key})", 1)
    return ContainerType.UNSPECIFIED


def sandbox_id(annotations: dict[str, str]) -> str:
    """The sandbox a `container`-type container joins; BootError without one."""
    for key in SANDBOX_ID:
        if annotations.get(key):
            return annotations[key]
    raise BootError("spec has container-type of container, but no sandbox ID set", 1)


def is_member(annotations: dict[str, str]) -> bool:
    return container_type(annotations) is ContainerType.CONTAINER


def member_of(st: ContainerState) -> str:
    """The sandbox id of a member's state ("" for a sandbox's first container)."""
    return str(st.config.get("sandbox") or "")


# -- planning the member's Gofers (host side) ---------------------------------------------

@dataclass
class GoferPlan:
    """One Gofer to start for a member: `root` served (read-only or not); with `files`,
    a directory of just those files (gofer/server.py start_gofer)."""

    root: str
    readonly: bool
    files: list[str] = field(default_factory=list)


def plan(cfg: SandboxConfig) -> tuple[list[GoferPlan], list[dict[str, Any]]]:
    """The Gofers a member needs (its root first) and its mounts as create_container
    takes them.  Every host check is made here, as boot._mount_all makes them: the
    confined Sentry sees no host path.  Raises BootError."""
    from pyvisor.runtime.boot import _check_bind, _is_bind
    if not os.path.isdir(cfg.root):
        raise BootError(f"root {cfg.root!r} is not a directory")
    if not cfg.argv:
        raise BootError("no command to run")
    gofers = [GoferPlan(cfg.root, True)]
    mounts = [m for m in cfg.mounts if m.destination not in _SPECIAL]
    for m in mounts:
        if not m.destination.startswith("/"):
            raise BootError(f"mount destination {m.destination!r} is not an absolute path")
        if _is_bind(m):
            _check_bind(m)
    file_slot: dict[int, tuple[int, int]] = {}        # id(mount) -> (gofer, file index)
    for ro in (True, False):
        group = [m for m in mounts if _is_bind(m) and not os.path.isdir(m.source)
                 and ("ro" in m.options) == ro]
        if not group:
            continue
        paths = [os.path.realpath(m.source) for m in group]
        cover = next((os.path.dirname(p) for p in paths if os.path.dirname(p) != "/"), "/tmp")
        gofers.append(GoferPlan(cover, ro, paths))
        for i, m in enumerate(group):
            file_slot[id(m)] = (len(gofers) - 1, i)
    wire: list[dict[str, Any]] = []
    for m in mounts:
        if m.type == "tmpfs":
            wire.append({"destination": m.destination, "type": "tmpfs",
                         "options": list(m.options)})
        elif _is_bind(m):
            entry = _bind_entry(m)
            if id(m) in file_slot:
                entry["gofer"], entry["file"] = file_slot[id(m)]
            else:
                gofers.append(GoferPlan(m.source, "ro" in m.options))
                entry["gofer"] = len(gofers) - 1
            wire.append(entry)
        elif m.type not in _IGNORED_TYPES:
            raise BootError(f"unsupported mount type {m.type!r} at {m.destination}")
    if len(gofers) + 3 > control.MAX_FDS:
        raise BootError(f"too many bind mounts for a pod member: it may have at most "
                        f"{control.MAX_FDS - 3} Gofers (its root, one per directory, "
                        "two for single files)", 1)
    return gofers, wire


def _bind_entry(m: MountSpec) -> dict[str, Any]:
    return {"destination": m.destination, "type": "bind", "source": m.source,
            "options": list(m.options)}


# -- the verbs --------------------------------------------------------------------------

def sandbox_of(root: str, cfg: SandboxConfig) -> tuple[Container, ContainerState]:
    """The running sandbox a member joins (a member named as sandbox: its own)."""
    from pyvisor.runtime.container import Container
    sid = sandbox_id(cfg.annotations)
    sandbox = Container(root, sid)
    try:
        st, status = sandbox.load()
    except BootError:
        raise BootError(f"cannot create container: sandbox {sid!r} does not exist", 1) \
            from None
    if member_of(st):
        sandbox = Container(root, member_of(st))
        st, status = sandbox.load()
    if status not in (Status.CREATED, Status.RUNNING):
        raise BootError(f"cannot create container: sandbox {sid!r} is {status}", 1)
    return sandbox, st


def create_member(root: str, cid: str, bundle: str, cfg: SandboxConfig,
                  pid_file: str = "") -> Container:
    """`create` of a `container`-type container: made inside its sandbox's Sentry."""
    import shutil

    from pyvisor.runtime.container import Container, _read_lines, write_pid_file
    sandbox, sst = sandbox_of(root, cfg)
    gofers, mounts = plan(cfg)
    c = Container(root, cid)
    sd = c.sd
    sd.make()
    done = False
    try:
        st = ContainerState(id=cid, bundle=bundle, created=now_rfc3339(),
                            annotations=cfg.annotations,
                            config={"rootfs": cfg.root, "sandbox": sandbox.id})
        sd.save(st)
        os.symlink(os.path.join("..", sandbox.id, "control.sock"), sd.control_path)
        with sd.locked():
            r, w = os.pipe2(os.O_CLOEXEC)
            pid = os.fork()
            if pid == 0:
                os.close(r)
                _member_monitor(sd, cid, cfg, gofers, mounts, sst, w)
            os.close(w)
            lines = _read_lines(r)
            st.pid, st.pid_start = pid, process_start_time(pid)
            if "ok" not in lines:
                os.waitpid(pid, 0)
                err = next((ln for ln in lines if ln.startswith("error ")), "")
                raise BootError(err.split(" ", 2)[2] if err.count(" ") >= 2 else
                                "the container's monitor exited during start-up",
                                int(err.split(" ", 2)[1]) if err.count(" ") >= 2 else 1)
            st.status = Status.CREATED
            sd.save(st)
            write_pid_file(pid_file, st.pid)
        done = True
    finally:
        if not done:
            shutil.rmtree(sd.path, ignore_errors=True)
    return c


def _member_monitor(sd: StateDir, cid: str, cfg: SandboxConfig, gofers: list[GoferPlan],
                    mounts: list[dict[str, Any]], sst: ContainerState, w: int) -> None:
    """M: forks K, reports, waits for the member's init, records its exit.  Never
    returns."""
    from pyvisor.runtime.container import _log_to_file_only, _quiet_stdio, wait_status_code
    from pyvisor.runtime.sandbox import report
    code = 125
    try:
        sd.release_lock_in_child()
        os.setsid()
        _log_to_file_only()
        r2, w2 = os.pipe2(os.O_CLOEXEC)
        k = os.fork()
        if k == 0:
            os.close(r2)
            os.close(w)
            _join_cgroups(sst)      # K and the Gofers count in the pod's limits
            _gofer_keeper(sd, cid, cfg, gofers, mounts, w2)
        os.close(w2)
        from pyvisor.runtime.container import _read_lines
        lines = _read_lines(r2)
        if not any(ln.startswith("ok") for ln in lines):
            err = next((ln for ln in lines if ln.startswith("error ")),
                       "error 125 the container's Gofers did not start")
            report(w, err)
            code = int(err.split(" ", 2)[1])
            return
        _quiet_stdio()              # the Sentry holds the container's stdio now
        with control.Client(sd.control_path, timeout=None) as client:
            rid = client.send("wait_container", {"id": cid})
            report(w, "ok")
            os.close(w)
            w = -1

            def forward(sig: int, frame: object) -> None:
                with contextlib.suppress(control.ControlError):
                    control.call(sd.control_path, "kill", {"signal": sig, "container": cid},
                                 5.0)
            for sig in (host_signal.SIGINT, host_signal.SIGTERM, host_signal.SIGHUP,
                        host_signal.SIGQUIT):
                host_signal.signal(sig, forward)
            code = 128 + 9
            try:
                while True:
                    msg = client.receive(None)
                    if msg.get("id") == rid:
                        break
                if "result" in msg:
                    code = wait_status_code(int(msg["result"]["status"]))
            except (control.ControlError, KeyError, TypeError, ValueError):
                pass        # the sandbox is gone: killed with it
        sd.write_exit(code)
    except BootError as e:
        report(w, f"error {e.code} {e}")
        code = e.code
    except BaseException as e:  # noqa: BLE001 - one line, never a traceback
        report(w, f"error 125 container monitor failed: {e}")
    finally:
        os._exit(code)


def _join_cgroups(sst: ContainerState) -> None:
    """K (and so the Gofers it forks) in the pod's cgroup: the pod's memory and task
    limits count them (a member takes 1 + its Gofers of the 64 tasks the pod's cgroup
    allows beyond --pids-limit for such helpers)."""
    for d in sst.config.get("cgroup_dirs") or []:
        try:
            with open(os.path.join(str(d), "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError as e:
            log.info("pod: cannot join cgroup %s: %s", d, e)


def _gofer_keeper(sd: StateDir, cid: str, cfg: SandboxConfig, gofers: list[GoferPlan],
                  mounts: list[dict[str, Any]], w: int) -> None:
    """K: starts the Gofers, hands them and the stdio to the Sentry, then lives as long as
    they do (they die with it).  Never returns."""
    from pyvisor.gofer.server import start_gofer
    from pyvisor.runtime.container import _quiet_stdio
    from pyvisor.runtime.sandbox import report
    from pyvisor.sentry.vfs import dcache
    code = 0
    socks: list[Any] = []
    try:
        nofile = dcache.fd_budget_for(cfg.dcache or dcache.DEFAULT_DCACHE)
        for g in gofers:
            try:
                sock, _ = start_gofer(g.root, g.readonly, confine=True, nofile=nofile,
                                      files=g.files)
            except OSError as e:
                raise BootError(f"mount source {g.root!r}: {e.strerror}", 125) from None
            socks.append(sock)
        stdio = [fd for fd in cfg.stdio if _is_open(fd)]
        params = {"id": cid, "argv": cfg.argv, "env": cfg.env, "cwd": cfg.cwd,
                  "uid": cfg.uid, "gid": cfg.gid, "groups": list(cfg.groups),
                  "caps": cfg.caps,
                  "readonly": not cfg.overlay, "mounts": mounts,
                  "gofers": [{"root": g.root, "readonly": g.readonly} for g in gofers],
                  "stdio": [_is_open(fd) for fd in cfg.stdio]}
        try:
            with control.Client(sd.control_path, timeout=120.0) as client:
                res = client.call("create_container", params,
                                  fds=stdio + [s.fileno() for s in socks])
        except control.ControlError as e:
            code = 127 if e.errno == errno.ENOENT else 126 if e.errno in (
                errno.EACCES, errno.ENOEXEC, errno.ENOTDIR) else 125
            raise BootError(str(e), code) from None
        for s in socks:
            s.close()
        socks = []
        report(w, f"ok {res.get('pid', 0) if isinstance(res, dict) else 0}")
        os.close(w)
        w = -1
        _quiet_stdio()
        while True:             # until every Gofer is gone (the Sentry let go of it)
            try:
                os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    except BootError as e:
        report(w, f"error {e.code} {e}")
        code = e.code
    except BaseException as e:  # noqa: BLE001
        report(w, f"error 125 cannot start the container's Gofers: {e}")
        code = 125
    finally:
        for s in socks:
            s.close()
        os._exit(code)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return fd >= 0
    except OSError:
        return False


def destroy_member(c: Container, st: ContainerState) -> None:
    """`delete` of a member: its processes die and its Gofers go (K and M follow)."""
    with contextlib.suppress(control.ControlError):
        control.call(c.sd.control_path, "destroy_container", {"id": c.id}, 10.0)


def member_params(st: ContainerState) -> dict[str, Any]:
    """What a control request to a member carries to name it."""
    return {"container": st.id} if member_of(st) else {}


def members_status(root: str, sid: str) -> dict[str, str]:
    """The members of sandbox `sid` under --root and their status (for tests, `list`)."""
    from pyvisor.runtime.state import list_ids
    out = {}
    for cid in list_ids(root):
        sd = StateDir(root, cid)
        try:
            st = sd.load()
        except BootError:
            continue
        if member_of(st) == sid:
            out[cid] = current_status(sd, st)
    return out


__all__ = ["ContainerType", "container_type", "create_member", "destroy_member", "is_member",
           "member_of", "member_params", "plan", "sandbox_id"]


def run_member(root: str, cid: str, bundle: str, cfg: SandboxConfig, pid_file: str = "") -> int:
    """`run` (foreground) of a member: create, start, wait, delete."""
    c = create_member(root, cid, bundle, cfg, pid_file)
    try:
        c.start()
        return c.wait()
    finally:
        c.delete(force=True)
