"""A container's state directory under --root: what outlives the CLI process.

runc: libcontainer/state_linux.go and container_linux.go (currentState, the
start-time check of the init pid); runsc: runsc/container/state_file.go.

Layout of <root>/<id>/ (the directory is 0700, the root too):

| file         | written by                    | what |
| ---          | ---                           | ---  |
| lock         | create                        | flock'd by every verb that changes the container |
| state.json   | CLI verbs, under the lock     | id, bundle, pid, start time, status, annotations, cgroup |
| control.sock | the monitor, before the Sentry | the Sentry's control socket (pyvisor/runtime/control.py) |
| exit.json    | the monitor, once             | the init's exit code (128+N: signal N) once the Sentry exited |

`pid` is the sandbox's host pid: the monitor process that forked the Sentry
(PID 1 of the sandbox's PID namespace), waits for it, writes exit.json and
exits with the container's exit code, so an engine that reaps it (conmon,
containerd's shim as subreapers) sees the container's status.  Killing it
kills the whole sandbox (the Sentry has PR_SET_PDEATHSIG).

Status: exit.json, or a dead pid (or a pid whose start time differs: reused),
means stopped; otherwise the status recorded by the last verb (creating,
created, running, paused).  Files are replaced atomically (write, rename).
Concurrency: verbs that change a container hold an exclusive flock on `lock`
(serialising concurrent CLI calls); readers take none: each file they read is
whole.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from pyvisor.runtime.errors import BootError

OCI_VERSION = "1.0.2"
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}")


class Status:
    """OCI statuses (plus runc's paused)."""

    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass
class ContainerState:
    """state.json."""

    id: str
    bundle: str
    status: str = Status.CREATING
    pid: int = 0                      # the monitor (sandbox) host pid; 0 while creating
    pid_start: int = 0                # its start time (/proc/PID/stat field 22)
    sentry_pid: int = 0               # the Sentry's host pid, for `events`/`ps`
    created: str = ""                 # RFC 3339, as runc's list prints
    annotations: dict[str, str] = field(default_factory=dict)
    cgroup: str = ""                  # pyvisor-<pid>-<random>, for delete
    owner: str = "root"
    config: dict[str, Any] = field(default_factory=dict)   # limits for update/events

    @staticmethod
    def from_json(d: dict[str, Any], cid: str) -> ContainerState:
        return ContainerState(
            id=str(d.get("id", cid)), bundle=str(d.get("bundle", "")),
            status=str(d.get("status", Status.CREATING)), pid=int(d.get("pid", 0)),
            pid_start=int(d.get("pid_start", 0)), sentry_pid=int(d.get("sentry_pid", 0)),
            created=str(d.get("created", "")),
            annotations={str(k): str(v) for k, v in (d.get("annotations") or {}).items()},
            cgroup=str(d.get("cgroup", "")), owner=str(d.get("owner", "root")),
            config=dict(d.get("config") or {}))


def check_id(cid: str) -> None:
    """Container ids are plain names: never a path out of --root."""
    if not ID_RE.fullmatch(cid):
        raise BootError(f"invalid container id {cid!r}", 1)


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def process_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (clock ticks since boot), or 0 if there is no such pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    rest = data[data.rfind(b")") + 2:].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return 0


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2:data.rfind(b")") + 3] in (b"Z", b"X")


def write_json_atomic(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


class StateDir:
    """<root>/<id>: the files of one container."""

    def __init__(self, root: str, cid: str) -> None:
        check_id(cid)
        self.root = os.path.abspath(root)
        self.id = cid
        self.path = os.path.join(self.root, cid)
        self.lock_fd = -1                 # while locked()

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def control_path(self) -> str:
        return self.file("control.sock")

    def exists(self) -> bool:
        return os.path.isfile(self.file("state.json"))

    def make(self) -> None:
        """Creates the directory; a duplicate id is an error."""
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
        except OSError as e:
            raise BootError(f"cannot create the state root {self.root!r}: {e.strerror}", 1) \
                from None
        try:
            os.mkdir(self.path, 0o700)
        except FileExistsError:
            raise BootError(f"container {self.id!r} already exists", 1) from None
        except OSError as e:
            raise BootError(f"state directory {self.path!r}: {e.strerror}", 1) from None
        with open(self.file("lock"), "w"):
            pass

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Holds the container's lock (blocking) for the duration."""
        try:
            fd = os.open(self.file("lock"), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BootError(f"container {self.id!r} does not exist", 1) from None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    break
                except InterruptedError:
                    continue
            self.lock_fd = fd
            yield
        finally:
            self.lock_fd = -1
            os.close(fd)

    def release_lock_in_child(self) -> None:
        """In a child forked under locked(): its copy of the fd would hold the flock (it
        belongs to the open file, not the process) for as long as the child lives."""
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    def load(self) -> ContainerState:
        try:
            with open(self.file("state.json")) as f:
                d = json.load(f)
        except FileNotFoundError:
            raise BootError(f"container {self.id!r} does not exist", 1) from None
        except (OSError, ValueError) as e:
            raise BootError(f"container {self.id!r}: unreadable state: {e}", 1) from None
        if not isinstance(d, dict):
            raise BootError(f"container {self.id!r}: unreadable state", 1)
        return ContainerState.from_json(d, self.id)

    def save(self, st: ContainerState) -> None:
        write_json_atomic(self.file("state.json"), asdict(st))

    def exit_record(self) -> dict[str, Any] | None:
        """exit.json, once the monitor wrote it."""
        try:
            with open(self.file("exit.json")) as f:
                d = json.load(f)
            return d if isinstance(d, dict) else None
        except (OSError, ValueError):
            return None

    def write_exit(self, code: int) -> None:
        """The container's exit code, as a shell reports it (128+N: killed by signal N)."""
        with contextlib.suppress(OSError):
            write_json_atomic(self.file("exit.json"), {"code": code, "time": now_rfc3339()})


def monitor_alive(st: ContainerState) -> bool:
    """Whether the recorded sandbox pid is still that process (not a reused pid)."""
    if st.pid <= 0:
        return False
    start = process_start_time(st.pid)
    if start == 0 or (st.pid_start and start != st.pid_start):
        return False
    return not is_zombie(st.pid)


def current_status(sd: StateDir, st: ContainerState) -> str:
    if sd.exit_record() is not None:
        return Status.STOPPED
    if st.status == Status.CREATING:
        # A create in progress, or one whose CLI died: only its own monitor knows.
        return Status.CREATING if st.pid == 0 or monitor_alive(st) else Status.STOPPED
    if not monitor_alive(st):
        return Status.STOPPED
    return st.status


def list_ids(root: str) -> list[str]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            raise BootError(f"--root {root!r} is not a directory", 1) from None
        raise
    return [n for n in names if ID_RE.fullmatch(n) and os.path.isfile(
        os.path.join(root, n, "state.json"))]


def oci_state(root: str, cid: str) -> dict[str, Any]:
    """The OCI state of container `cid` (runtime-spec runtime.md#state), plus runc's
    created and owner: what `state` prints.  Here rather than in container.py, so that
    `state`, which engines call many times per container, imports neither the container
    code nor the control socket's (~12 ms of its start-up)."""
    sd = StateDir(root, cid)
    st = sd.load()
    status = current_status(sd, st)
    out: dict[str, Any] = {
        "ociVersion": OCI_VERSION, "id": st.id, "status": status,
        "pid": st.pid if status not in (Status.STOPPED, Status.CREATING) else 0,
        "bundle": st.bundle, "rootfs": st.config.get("rootfs", ""),
        "created": st.created, "owner": st.owner,
    }
    if st.annotations:
        out["annotations"] = st.annotations
    return out
