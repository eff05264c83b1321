"""pyvisor.Sandbox: a warm sandbox that runs many commands (issue #7).

    with pyvisor.Sandbox() as sb:                     # the host root, read-only + overlay
        r = sb.run(["python3", "-c", "print(6 * 7)"])
        assert r.stdout == b"42\\n"

How it is built: the constructor writes an OCI bundle into a private runtime directory and
runs `pyvisor create` (runtime/container.py), which boots one Sentry whose init is loaded
but held: it never runs (the container stays "created"), it only anchors the PID namespace,
and the kernel reaps the orphans it adopts (io.github.pyvisor.init-reaps-orphans).  Every
run is an `exec` over the container's control socket: a new process, parentless, in its own
session, its stdio on host pipes passed by SCM_RIGHTS (process.py).  A run therefore costs
no Python start-up, no Sentry or Gofer boot and no cgroup set-up: only the process's own
exec and syscalls.  close() runs `pyvisor delete --force`: the monitor, Sentry, Gofers,
stubs, cgroups and the state directory go.

What persists between runs in one sandbox (as between commands in one container): files
written anywhere (the overlay's upper layer, /tmp, /dev/shm), background processes, the pid
counter.  reset() (or run(..., fresh=True)) replaces the Sentry with a new one: nothing of
the earlier runs survives.

The API needs only the standard library and runs in any Python 3.11+ interpreter; the
sandbox itself is started with an interpreter that can import Debian's python3-seccomp
(`python=`; by default this one if it can, else /usr/bin/python3; runtime/interp.py).
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import shutil
import signal as host_signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from pyvisor.api.errors import (CommandError, OutOfMemory, SandboxClosed, SandboxError,
                                Timeout)
from pyvisor.api.process import DEVNULL, PIPE, Process, Result, Stdio
from pyvisor.runtime import control

PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYSTEM_PYTHON = "/usr/bin/python3"
REAPER_ANNOTATION = "io.github.pyvisor.init-reaps-orphans"
DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root", "LANG": "C.UTF-8"}
# The held init: any program of the image will do (it is loaded, never run).
INIT_CANDIDATES = ("bin/sh", "usr/bin/sh", "bin/busybox", "bin/true", "usr/bin/true",
                   "usr/bin/env")
CHUNK = 44 * 1024            # runtime/sentry_files.py's CHUNK


@dataclass(frozen=True)
class Mount:
    """A mount inside the sandbox (the gVisor bindings' Mount).

    >>> Mount.bind("/srv/data", "/data", readonly=True).to_oci()["options"]
    ['rbind', 'ro']
    """

    destination: str
    type: str = "bind"                   # bind | tmpfs
    source: str = ""
    options: tuple[str, ...] = ()

    @staticmethod
    def bind(source: str, destination: str, readonly: bool = False) -> Mount:
        return Mount(destination, "bind", os.path.abspath(source),
                     ("rbind", "ro" if readonly else "rw"))

    @staticmethod
    def tmpfs(destination: str) -> Mount:
        return Mount(destination, "tmpfs", "tmpfs")

    def to_oci(self) -> dict[str, Any]:
        return {"destination": self.destination, "type": self.type, "source": self.source,
                "options": list(self.options)}

    @staticmethod
    def of(m: Mount | Mapping[str, Any] | Sequence[str]) -> Mount:
        """A Mount from a Mount, an OCI mount dict, or (source, destination[, "ro"])."""
        if isinstance(m, Mount):
            return m
        if isinstance(m, Mapping):
            return Mount(str(m["destination"]), str(m.get("type", "bind")),
                         str(m.get("source", "")), tuple(m.get("options", ()) or ()))
        if isinstance(m, (tuple, list)) and len(m) in (2, 3):
            return Mount.bind(m[0], m[1], readonly=len(m) == 3 and m[2] == "ro")
        raise TypeError(f"a mount is a Mount, an OCI mount dict or (src, dst[, 'ro']): {m!r}")


def _interpreter(python: str | None) -> str:
    if python:
        return python
    if importlib.util.find_spec("seccomp") is not None:
        return sys.executable
    if os.access(SYSTEM_PYTHON, os.X_OK):
        return SYSTEM_PYTHON
    return sys.executable        # runtime/interp.py explains what is missing


def _env_list(env: Mapping[str, str] | Iterable[str] | None,
              base: Mapping[str, str] | None = None) -> dict[str, str]:
    out = dict(base or {})
    if env is None:
        return out
    if isinstance(env, Mapping):
        items = [(str(k), str(v)) for k, v in env.items()]
    else:
        items = []
        for e in env:
            k, sep, v = str(e).partition("=")
            if not sep:
                raise ValueError(f"environment entries are NAME=value: {e!r}")
            items.append((k, v))
    for k, v in items:
        if not k or "=" in k or "\0" in k or "\0" in v:
            raise ValueError(f"bad environment variable {k!r}")
        out[k] = v
    return out


def _user(user: int | str | tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    if user is None:
        return default
    if isinstance(user, tuple):
        return int(user[0]), int(user[1])
    if isinstance(user, int):
        return user, user
    uid, _, gid = str(user).partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise ValueError(f"user must be UID[:GID] numbers, not {user!r}") from None


def _argv(cmd: str | Sequence[str]) -> list[str]:
    if isinstance(cmd, str):
        return ["/bin/sh", "-c", cmd]
    argv = [os.fspath(a) for a in cmd]
    if not argv:
        raise ValueError("empty command")
    return [a if isinstance(a, str) else a.decode() for a in argv]


def _size(v: int | str | None) -> int | None:
    if v is None or isinstance(v, int):
        return v
    from pyvisor.runtime.cgroup import parse_size
    return parse_size(v)


class Sandbox:
    """A warm pyvisor sandbox: one Sentry that serves many runs.

    rootfs: None or "host" for the host's root (read-only, writes land in a tmpfs
    overlay, as `pyvisor do`), or a directory holding an OCI-style root filesystem
    (writes go to an overlay too unless readonly=True).  Image names are not supported
    yet: unpack the image into a directory (e.g. `podman export`) and pass that.

    Limits: memory (bytes or "512M"; the whole sandbox, the Sentry's own ~60 MB included),
    cpus (a CPU quota), pids (tasks), tmpfs_size; timeout is the default per-run timeout
    in seconds.  env (dict or NAME=value list) is the base environment of every run, cwd
    and user (UID or "UID:GID") its defaults.  mounts: Mount objects, OCI mount dicts or
    (host_path, sandbox_path[, "ro"]) tuples (`binds=` is the same).  network: "none"
    (the default: loopback only, served by the Sentry's own stack), "sandbox" (the same
    stack; with no network namespace to take over it too is loopback only) or "host"
    (the host's network through sockets the Sentry owns: hostinet, gives up network
    isolation; see README *Networking*).

    >>> with Sandbox() as sb:                                          # doctest: +SKIP
    ...     sb.run("echo hi; exit 3")
    Result(args=['/bin/sh', '-c', 'echo hi; exit 3'], returncode=3, stdout=b'hi\\n', ...)
    """

    def __init__(self, image_or_rootfs: str | os.PathLike[str] | None = None, *,
                 memory: int | str | None = None, cpus: float | None = None,
                 pids: int | None = None, network: str = "none",
                 timeout: float | None = None,
                 env: Mapping[str, str] | Iterable[str] | None = None,
                 mounts: Iterable[Mount | Mapping[str, Any] | Sequence[str]] = (),
                 binds: Iterable[Sequence[str]] = (), readonly: bool = False,
                 cwd: str = "/", working_dir: str | None = None,
                 user: int | str | tuple[int, int] | None = None,
                 hostname: str = "pyvisor", tmpfs_size: int | str | None = None,
                 runtime_dir: str | None = None, sandbox_id: str | None = None,
                 python: str | None = None) -> None:
        root = "host" if image_or_rootfs is None else os.fspath(image_or_rootfs)
        if root == "host":
            root = "/"
        if not os.path.isdir(root):
            hint = "" if os.sep in root or os.path.exists(root) else \
                " (image names are not supported yet: give an unpacked rootfs directory)"
            raise SandboxError(f"rootfs {root!r} is not a directory{hint}")
        self.network = str(network).removeprefix("NetworkMode.").lower()
        if self.network not in ("none", "sandbox", "host"):
            raise SandboxError(f"network {network!r}: expected 'none', 'sandbox' or 'host'")
        self.rootfs = os.path.abspath(root)
        self.readonly = readonly
        self.timeout = timeout
        self.env = _env_list(env, DEFAULT_ENV)
        self.cwd = working_dir or cwd
        if not self.cwd.startswith("/"):
            raise ValueError("cwd must be an absolute path inside the sandbox")
        self.uid, self.gid = _user(user, (0, 0))
        self.mounts = [Mount.of(m) for m in [*mounts, *binds]]
        for m in self.mounts:
            if m.type == "bind" and not os.path.exists(m.source):
                raise SandboxError(f"mount source {m.source!r} does not exist")
            if readonly and not os.path.isdir(os.path.join(self.rootfs,
                                                           m.destination.lstrip("/"))):
                raise SandboxError(f"mount point {m.destination!r} does not exist in the "
                                   "read-only rootfs (it cannot be made)")
        self.memory, self.tmpfs_size = _size(memory), _size(tmpfs_size)
        self.cpus, self.pids, self.hostname = cpus, pids, hostname
        self.python = _interpreter(python)
        self.id = sandbox_id or f"api-{uuid.uuid4().hex[:12]}"
        self._own_dir = runtime_dir is None
        self.runtime_dir = runtime_dir or tempfile.mkdtemp(prefix="pyvisor-api-")
        os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)
        self.state_root = os.path.join(self.runtime_dir, "state")
        self.bundle = os.path.join(self.runtime_dir, "bundle")
        self._lock = threading.Lock()
        self._closed = False
        self._cgroup_dirs: list[str] = []
        self._finalizer: weakref.finalize | None = None
        try:
            self._write_bundle()
            self._create()
        except BaseException:
            if os.path.isdir(os.path.join(self.state_root, self.id)):
                _destroy(self.python, self.state_root, self.id, "")   # a half-made one
            self._remove_runtime_dir()
            raise

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def control_path(self) -> str:
        return os.path.join(self.state_root, self.id, "control.sock")

    def _cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = PKG_PARENT + (os.pathsep + old if old else "")
        argv = [self.python, "-m", "pyvisor", "--root", self.state_root,
                "--log", os.path.join(self.runtime_dir, "sandbox.log"), *args]
        # Not pipes: the container's init (held, never run) keeps the create command's
        # stdio for the sandbox's lifetime, so a pipe would never reach EOF.
        out_path = os.path.join(self.runtime_dir, "cli.out")
        try:
            with open(out_path, "w+") as out:
                p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd="/")
                out.seek(0)
                return subprocess.CompletedProcess(argv, p.returncode, out.read(), out.read())
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SandboxError(f"pyvisor {args[0]}: {e}") from None

    def _init_program(self) -> str:
        for cand in INIT_CANDIDATES:
            if os.path.lexists(os.path.join(self.rootfs, cand)):
                return "/" + cand
        raise SandboxError(f"rootfs {self.rootfs!r} has none of /bin/sh, /bin/busybox, "
                           "/bin/true: nothing to load as the sandbox's idle init")

    def _write_bundle(self) -> None:
        os.makedirs(self.bundle, mode=0o700, exist_ok=True)
        resources: dict[str, Any] = {}
        if self.memory:
            resources["memory"] = {"limit": self.memory}
        if self.pids:
            resources["pids"] = {"limit": self.pids}
        if self.cpus:
            resources["cpu"] = {"quota": int(self.cpus * 100_000), "period": 100_000}
        config = {
            "ociVersion": "1.0.2",
            "process": {"terminal": False, "user": {"uid": self.uid, "gid": self.gid},
                        "args": [self._init_program()],
                        "env": [f"{k}={v}" for k, v in self.env.items()], "cwd": "/"},
            "root": {"path": self.rootfs, "readonly": self.readonly},
            "hostname": self.hostname,
            "mounts": [m.to_oci() for m in self.mounts],
            "annotations": {REAPER_ANNOTATION: "true"},
            "linux": {"resources": resources},
        }
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(config, f)

    def _create(self) -> None:
        extra = ["--tmpfs-size", str(self.tmpfs_size)] if self.tmpfs_size else []
        p = self._cli("--network", self.network, *extra, "create", "--bundle", self.bundle,
                      self.id)
        if p.returncode != 0:
            lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
            msg = lines[-1] if lines else f"exit status {p.returncode}"
            raise SandboxError(f"cannot create the sandbox: {msg.removeprefix('pyvisor: ')}")
        try:
            with open(os.path.join(self.state_root, self.id, "state.json")) as f:
                st = json.load(f)
            self.monitor_pid = int(st.get("pid", 0))
            self._cgroup_dirs = [str(d) for d in st.get("config", {}).get("cgroup_dirs") or []]
        except (OSError, ValueError) as e:
            raise SandboxError(f"cannot read the sandbox's state: {e}") from None
        self._finalizer = weakref.finalize(self, _destroy, self.python, self.state_root,
                                           self.id, self.runtime_dir if self._own_dir else "")

    def close(self) -> None:
        """Ends the sandbox: every process in it, the Sentry, Gofers, cgroups and the
        runtime directory (if the Sandbox made it).  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._finalizer is not None:
            self._finalizer()

    def _remove_runtime_dir(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pyvisor Sandbox {self.id} rootfs={self.rootfs!r}" + \
            (" closed>" if self._closed else ">")

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosed("the sandbox is closed")

    def reset(self) -> None:
        """Replaces the Sentry with a fresh one (same configuration): every process, file
        written, tmpfs, pid and kernel object of earlier runs is gone."""
        self._check_open()
        if self._finalizer is not None:
            self._finalizer.detach()
            _destroy(self.python, self.state_root, self.id, "")
        self.id = f"api-{uuid.uuid4().hex[:12]}"
        self._create()

    # -- running ------------------------------------------------------------------------

    def _process(self, cmd: str | Sequence[str], env: Mapping[str, str] | Iterable[str] | None,
                 cwd: str | None, user: int | str | tuple[int, int] | None
                 ) -> tuple[list[str], dict[str, Any]]:
        argv = _argv(cmd)
        uid, gid = _user(user, (self.uid, self.gid))
        e = _env_list(env, self.env)
        proc = {"args": argv, "env": [f"{k}={v}" for k, v in e.items()],
                "cwd": cwd or self.cwd, "uid": uid, "gid": gid, "groups": []}
        return argv, proc

    def popen(self, cmd: str | Sequence[str], *, stdin: Stdio = PIPE, stdout: Stdio = PIPE,
              stderr: Stdio = PIPE, env: Mapping[str, str] | Iterable[str] | None = None,
              cwd: str | None = None, user: int | str | tuple[int, int] | None = None
              ) -> Process:
        """Starts `cmd` (a list, or a string for /bin/sh -c) and returns at once: a
        Popen-like Process whose pipes stream while it runs.  stdio: PIPE, DEVNULL, STDOUT
        (stderr only), an fd or file object, or None (this process's own fd).  env is
        added to the sandbox's environment.

        >>> p = sb.popen(["sh", "-c", "echo one; sleep 1; echo two"])  # doctest: +SKIP
        >>> p.stdout.readline()                    # before the process ends
        b'one\\n'
        """
        self._check_open()
        argv, proc = self._process(cmd, env, cwd, user)
        return Process(self, argv, proc, stdin=stdin, stdout=stdout, stderr=stderr)

    def run(self, cmd: str | Sequence[str], *, input: bytes | str | None = None,
            env: Mapping[str, str] | Iterable[str] | None = None, cwd: str | None = None,
            timeout: float | None = None, user: int | str | tuple[int, int] | None = None,
            text: bool = False, check: bool = False, fresh: bool = False) -> Result:
        """Runs `cmd` to completion and returns its Result (stdout and stderr captured
        apart; bytes, or str with text=True).

        timeout (default: the sandbox's): the process and its whole session are killed
        and Timeout is raised, carrying the partial Result; the sandbox stays usable.
        A kill by the memory limit raises OutOfMemory; a program that does not exist
        raises CommandNotFound; check=True raises CommandError on a non-zero status.
        fresh=True runs it in a brand-new Sentry (reset() first).

        >>> sb.run(["sh", "-c", "cat; exit 7"], input=b"x").returncode   # doctest: +SKIP
        7
        """
        if fresh:
            self.reset()
        if timeout is None:
            timeout = self.timeout
        data = input.encode() if isinstance(input, str) else input
        oom_before, cpu_before = self._oom_kills(), self._cpu_seconds()
        p = self.popen(cmd, stdin=PIPE if data else DEVNULL, stdout=PIPE, stderr=PIPE,
                       env=env, cwd=cwd, user=user)
        timed_out = False
        try:
            out, err = p.communicate(data, timeout)
        except Timeout:
            timed_out = True
            p.kill()
            out, err = p.communicate(None, 30.0)
            partial = getattr(p, "_partial", (b"", b""))
            out, err = partial[0] + (out or b""), partial[1] + (err or b"")
        except BaseException:
            with contextlib.suppress(SandboxError):
                p.kill()
            raise
        assert p.returncode is not None
        oom = p.signal == host_signal.SIGKILL and not timed_out and \
            self._oom_kills() > oom_before
        usage = {"cpu": max(0.0, self._cpu_seconds() - cpu_before),
                 "memory_peak": float(self._cgroup_num("memory", "memory.peak",
                                                       "memory.max_usage_in_bytes"))}
        result = Result(p.args, p.exit_code or 0, _text(out, text), _text(err, text),
                        p.ended - p.started, p.signal, timed_out, oom, p.pid, usage)
        if timed_out:
            raise Timeout(f"{p.args!r} timed out after {timeout} s (killed)", result)
        if oom:
            raise OutOfMemory(f"{p.args!r} was killed by the sandbox's memory limit "
                              f"({self.memory or 'default'} bytes)", result)
        if check:
            result.check_returncode()
        return result

    def exec(self, *args: str | Sequence[str], input: bytes | str | None = None,
             env: Mapping[str, str] | Iterable[str] | None = None, cwd: str | None = None,
             timeout: float | None = None) -> tuple[str, str]:
        """The gVisor bindings' call: runs args (sb.exec("uname", "-a")) and returns
        (stdout, stderr) as text; raises CommandError when it exits non-zero.

        >>> sb.exec("echo", "hi")                                          # doctest: +SKIP
        ('hi\\n', '')
        """
        argv: list[str] = list(args[0]) if len(args) == 1 and not isinstance(args[0], str) \
            else [str(a) for a in args]
        r = self.run(argv, input=input, env=env, cwd=cwd, timeout=timeout, text=True)
        if r.returncode != 0:
            raise CommandError(f"{argv!r} exited with status {r.returncode}: "
                               f"{str(r.stderr).strip()[:200]}", r)
        return str(r.stdout), str(r.stderr)

    def kill(self, sig: int = host_signal.SIGKILL) -> int:
        """Sends `sig` to every process running in the sandbox (every run, every
        background process); the sandbox stays usable.  Returns how many were signalled."""
        self._check_open()
        n = 0
        for _ in range(20):
            procs = [p for p in self.ps() if p["pid"] != 1 and p["state"] != "Z"]
            if not procs:
                break
            for p in procs:
                with contextlib.suppress(control.ControlError):
                    control.call(self.control_path, "signal_process",
                                 {"pid": p["pid"], "signal": int(sig)}, 10.0)
                    n += 1
            if sig != host_signal.SIGKILL:
                break
            time.sleep(0.01)
        return n

    def ps(self) -> list[dict[str, Any]]:
        """The sandbox's processes (pid 1 is the idle init): pid, ppid, uid, gid, state,
        threads, comm, args, start_ns, utime_ns."""
        return list(self._call("ps"))

    def _call(self, method: str, params: dict[str, Any] | None = None,
              timeout: float | None = 30.0) -> Any:
        self._check_open()
        try:
            return control.call(self.control_path, method, params, timeout)
        except control.ControlError as e:
            if e.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ECONNRESET, errno.EPIPE):
                raise SandboxClosed(f"the sandbox is not running ({e})") from None
            raise SandboxError(f"{method}: {e}") from None

    # -- resources ----------------------------------------------------------------------

    def _cgroup_read(self, v1_ctrl: str, name: str) -> str | None:
        for d in self._cgroup_dirs:
            if f"/{v1_ctrl}/" in d or os.path.exists(os.path.join(d, "cgroup.controllers")):
                try:
                    with open(os.path.join(d, name)) as f:
                        return f.read()
                except OSError:
                    continue
        return None

    def _cgroup_num(self, ctrl: str, *names: str) -> int:
        for n in names:
            t = self._cgroup_read(ctrl, n)
            if t is not None and t.split() and t.split()[0].isdigit():
                return int(t.split()[0])
        return 0

    def _cpu_seconds(self) -> float:
        t = self._cgroup_read("cpu", "cpu.stat") or ""
        if "usage_usec" in t:                                         # v2
            for line in t.splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        return self._cgroup_num("cpuacct", "cpuacct.usage") / 1e9

    def _oom_kills(self) -> int:
        text = self._cgroup_read("memory", "memory.events") or \
            self._cgroup_read("memory", "memory.oom_control") or ""
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill" and v.strip().isdigit():
                return int(v)
        return 0

    def stats(self) -> dict[str, Any]:
        """Resource use now: memory (bytes: usage, peak, limit, oom_kills), cpu (seconds:
        usage, user, system) and pids (host tasks) from the sandbox's cgroup, which holds
        the Sentry and Gofers too; tasks and processes from the Sentry itself."""
        s = self._call("stats")
        num = self._cgroup_num
        cpu: dict[str, float] = {}
        stat_text = self._cgroup_read("cpu", "cpu.stat") or ""
        if "usage_usec" in stat_text:            # v2
            kv = dict(ln.split(" ", 1) for ln in stat_text.splitlines() if " " in ln)
            cpu = {k: int(kv.get(f"{k2}_usec", 0)) / 1e6 for k, k2 in
                   (("usage", "usage"), ("user", "user"), ("system", "system"))}
        else:
            cpu = {"usage": num("cpuacct", "cpuacct.usage") / 1e9,
                   "user": num("cpuacct", "cpuacct.usage_user") / 1e9,
                   "system": num("cpuacct", "cpuacct.usage_sys") / 1e9}
        return {
            "memory": {"usage": num("memory", "memory.current", "memory.usage_in_bytes"),
                       "peak": num("memory", "memory.peak", "memory.max_usage_in_bytes"),
                       "limit": num("memory", "memory.max", "memory.limit_in_bytes"),
                       "oom_kills": self._oom_kills()},
            "cpu": cpu,
            "pids": {"current": num("pids", "pids.current")},
            "tasks": int(s.get("tasks", 0)), "processes": int(s.get("processes", 0)),
            "pids_limit": int(s.get("pids_limit", 0)),
        }

    # -- files --------------------------------------------------------------------------

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Writes `data` to `path` in the sandbox (created or truncated; mode exact).
        Served by the Sentry's VFS: needs no program in the image."""
        from pyvisor.api.files import write_file
        write_file(self, path, data.encode() if isinstance(data, str) else data, mode)

    def read_file(self, path: str) -> bytes:
        """The contents of `path` in the sandbox."""
        from pyvisor.api.files import read_file
        return read_file(self, path)

    def upload(self, host_path: str | os.PathLike[str], sandbox_path: str) -> None:
        """Copies a host file or directory tree (files, directories, symlinks, modes) to
        `sandbox_path`; missing parents are made."""
        from pyvisor.api.files import upload
        upload(self, os.fspath(host_path), sandbox_path)

    def download(self, sandbox_path: str, host_path: str | os.PathLike[str]) -> None:
        """Copies a sandbox file or directory tree to `host_path`.  Symlinks are recreated
        as symlinks, never followed on the host; other special files are skipped."""
        from pyvisor.api.files import download
        download(self, sandbox_path, os.fspath(host_path))


def _text(b: bytes | None, text: bool) -> bytes | str:
    b = b or b""
    return b.decode(errors="replace") if text else b


def _destroy(python: str, state_root: str, cid: str, runtime_dir: str) -> None:
    """`pyvisor delete --force` (kills the monitor, Sentry and all; removes the cgroups and
    the state directory), then the runtime directory."""
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PKG_PARENT + (os.pathsep + old if old else "")
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run([python, "-m", "pyvisor", "--root", state_root, "delete", "--force",
                        cid], stdin=subprocess.DEVNULL, capture_output=True, env=env,
                       timeout=60, cwd="/")
    if runtime_dir:
        shutil.rmtree(runtime_dir, ignore_errors=True)


__all__ = ["DEVNULL", "Mount", "PIPE", "Process", "Result", "Sandbox"]
