"""The OCI runtime spec (a bundle's config.json): validation and the parts pyvisor uses.

runsc: runsc/specutils; runc: libcontainer/configs/validate.  `load_spec`
reads config.json, checks the type of every field the OCI runtime spec
defines (those pyvisor ignores too, so that a wrong type is one clear line
rather than a surprise later), then checks the values pyvisor uses and
returns them as typed dataclasses (`Spec`).  Every problem is a `SpecError`
whose message is one line naming the field (`process.user.uid: must be an
integer from 0 to 4294967294, not "abc"`); nothing here starts a process or
touches the host beyond reading config.json and stat'ing the paths it names.
Unknown fields are ignored, as the spec requires of runtimes.

`parse_process` checks a process object alone (`exec --process`).
`parse_size_flag`, `check_cpus` and `check_pids` do the same for the command
line's limit flags (the one-line usage error is cli.py's `ArgumentParser`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, NoReturn

MAX_CONFIG_BYTES = 16 << 20      # a config.json larger than this is refused unread
# The smallest memory limit a sandbox can start with: the Sentry, its Gofers and
# the master stub take about 20 MiB before the application runs (measured).
MIN_MEMORY = 32 << 20
HOST_NAME_MAX = 64

_U32 = (0, (1 << 32) - 1)
_ID = (0, (1 << 32) - 2)          # uid/gid: (uid_t)-1 means "no id" to the kernel
_I64 = (-(1 << 63), (1 << 63) - 1)
_U64 = (0, (1 << 64) - 1)
_INT = _I64                        # Go's int on amd64

# Mount types pyvisor knows: served ones, and ones skipped because the sandbox
# provides its own (boot.py).
MOUNT_TYPES = frozenset({"bind", "rbind", "tmpfs", "proc", "devpts", "mqueue", "sysfs",
                         "cgroup", "cgroup2", ""})
NAMESPACE_TYPES = frozenset({"pid", "network", "mount", "ipc", "uts", "user", "cgroup",
                             "time"})
# process.rlimits types and their resource numbers.  From <asm-generic/resource.h>.
RLIMIT_NUMBERS = {"RLIMIT_" + n: i for i, n in enumerate((
    "CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS",
    "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"))}
RLIMIT_TYPES = frozenset(RLIMIT_NUMBERS)


class SpecError(ValueError):
    """config.json (or a flag) is not acceptable.  The message is one line."""


# -- the typed parts pyvisor uses ---------------------------------------------------------

@dataclass(frozen=True)
class User:
    """process.user."""

    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None


@dataclass(frozen=True)
class Process:
    """process: what runs, as whom, where."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: User = field(default_factory=User)
    terminal: bool = False
    no_new_privileges: bool = False
    console_size: tuple[int, int] | None = None     # consoleSize (rows, columns), if given
    # process.capabilities: set name (bounding, effective, ...) -> capability names; None
    # when absent (the process then has what root has).
    capabilities: dict[str, tuple[str, ...]] | None = None
    # process.rlimits: (RLIMIT_* name, soft, hard), in the spec's order.
    rlimits: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True)
class Root:
    """root: the image.  `path` as written (relative paths are against the bundle)."""

    path: str
    readonly: bool = False


@dataclass(frozen=True)
class Mount:
    """One entry of mounts."""

    destination: str                # absolute, without '..'
    type: str = "bind"
    source: str = ""
    options: tuple[str, ...] = ()

    @property
    def is_bind(self) -> bool:
        return self.type in ("bind", "rbind") or "bind" in self.options \
            or "rbind" in self.options


@dataclass(frozen=True)
class Resources:
    """linux.resources, the limits pyvisor enforces.  None: not set (or unlimited)."""

    memory_limit: int | None = None     # bytes
    pids_limit: int | None = None       # tasks
    cpu_quota: int | None = None        # µs per period
    cpu_period: int = 100_000           # µs
    cpu_shares: int | None = None       # relative weight (runc: 2..262144)
    blkio_weight: int | None = None     # 10..1000

    @property
    def cpus(self) -> float | None:
        return self.cpu_quota / self.cpu_period if self.cpu_quota else None


@dataclass(frozen=True)
class Spec:
    """The validated parts of a config.json that pyvisor uses."""

    process: Process
    root: Root
    oci_version: str = ""
    hostname: str = "pyvisor"
    mounts: tuple[Mount, ...] = ()
    resources: Resources = field(default_factory=Resources)
    annotations: dict[str, str] = field(default_factory=dict)
    # linux.readonlyPaths, linux.maskedPaths, linux.sysctl, linux.cgroupsPath: as given
    readonly_paths: tuple[str, ...] = ()
    masked_paths: tuple[str, ...] = ()
    sysctl: dict[str, str] = field(default_factory=dict)
    cgroups_path: str = ""
    netns_path: str = ""            # linux.namespaces' network path: the namespace to take over


# -- a schema of the whole spec (types and ranges only) --------------------------------------

def _show(v: object) -> str:
    """A value for an error message: one line, ASCII, bounded."""
    try:
        s = json.dumps(v, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _fail(path: str, what: str, v: object) -> NoReturn:
    raise SpecError(f"{path}: must be {what}, not {_show(v)}")


class _Type:
    what = "?"

    def check(self, v: object, path: str) -> None:
        raise NotImplementedError


class _Str(_Type):
    what = "a string"

    def __init__(self, nul_ok: bool = False) -> None:
        self.nul_ok = nul_ok

    def check(self, v: object, path: str) -> None:
        if not isinstance(v, str):
            _fail(path, self.what, v)
        try:
            v.encode()
        except UnicodeEncodeError:
            _fail(path, "valid UTF-8", v)
        if not self.nul_ok and "\0" in v:
            _fail(path, "a string without NUL bytes", v)


class _Bool(_Type):
    what = "true or false"

    def check(self, v: object, path: str) -> None:
        if not isinstance(v, bool):
            _fail(path, self.what, v)


class _Int(_Type):
    def __init__(self, bounds: tuple[int, int]) -> None:
        self.lo, self.hi = bounds
        self.what = f"an integer from {self.lo} to {self.hi}"

    def check(self, v: object, path: str) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or not self.lo <= v <= self.hi:
            _fail(path, self.what, v)


class _Arr(_Type):
    def __init__(self, item: _Type) -> None:
        self.item = item
        self.what = "a list"

    def check(self, v: object, path: str) -> None:
        if not isinstance(v, list):
            _fail(path, self.what, v)
        for i, x in enumerate(v):
            self.item.check(x, f"{path}[{i}]")


class _Map(_Type):
    """An object with arbitrary keys and values of one type."""

    what = "an object"

    def __init__(self, value: _Type) -> None:
        self.value = value

    def check(self, v: object, path: str) -> None:
        if not isinstance(v, dict):
            _fail(path, self.what, v)
        for k, x in v.items():
            _STR.check(k, f"{path} key")
            self.value.check(x, f"{path}.{k}")


class _Obj(_Type):
    """An object with known fields (null is the same as absent; unknown fields pass)."""

    what = "an object"

    def __init__(self, fields: dict[str, _Type], required: tuple[str, ...] = ()) -> None:
        self.fields = fields
        self.required = required

    def check(self, v: object, path: str) -> None:
        if not isinstance(v, dict):
            _fail(path, self.what, v)
        prefix = f"{path}." if path else ""
        for name in self.required:
            if v.get(name) is None:
                raise SpecError(f"{prefix}{name}: missing")
        for name, t in self.fields.items():
            x = v.get(name)
            if x is not None:
                t.check(x, prefix + name)


class _Any(_Type):
    def check(self, v: object, path: str) -> None:
        pass


_STR, _BOOL = _Str(), _Bool()
_STRS = _Arr(_STR)
_ANY_OBJ = _Map(_Any())
_IDMAP = _Arr(_Obj({"containerID": _Int(_U32), "hostID": _Int(_U32), "size": _Int(_U32)}))
_HOOKS = _Arr(_Obj({"path": _STR, "args": _STRS, "env": _STRS, "timeout": _Int(_INT)},
                   required=("path",)))
_WEIGHT_DEV = _Arr(_Obj({"major": _Int(_I64), "minor": _Int(_I64), "weight": _Int((0, 65535)),
                         "leafWeight": _Int((0, 65535))}))
_THROTTLE_DEV = _Arr(_Obj({"major": _Int(_I64), "minor": _Int(_I64), "rate": _Int(_U64)}))
_CAPS = _Obj({k: _STRS for k in ("bounding", "effective", "inheritable", "permitted",
                                 "ambient")})

PROCESS_SCHEMA = _Obj({
    "terminal": _BOOL,
    "consoleSize": _Obj({"height": _Int(_U32), "width": _Int(_U32)}),
    "user": _Obj({"uid": _Int(_ID), "gid": _Int(_ID), "umask": _Int(_U32),
                  "additionalGids": _Arr(_Int(_ID)), "username": _STR}),
    "args": _STRS,
    "commandLine": _STR,
    "env": _STRS,
    "cwd": _STR,
    "capabilities": _CAPS,
    "rlimits": _Arr(_Obj({"type": _STR, "hard": _Int(_U64), "soft": _Int(_U64)},
                         required=("type",))),
    "noNewPrivileges": _BOOL,
    "apparmorProfile": _STR,
    "oomScoreAdj": _Int((-1000, 1000)),
    "selinuxLabel": _STR,
    "ioPriority": _Obj({"class": _STR, "priority": _Int(_INT)}),
    "scheduler": _Obj({"policy": _STR, "nice": _Int((-20, 19)), "priority": _Int(_INT),
                       "flags": _STRS, "runtime": _Int(_U64), "deadline": _Int(_U64),
                       "period": _Int(_U64)}),
    "execCPUAffinity": _Obj({"initial": _STR, "final": _STR}),
}, required=("args",))

SCHEMA = _Obj({
    "ociVersion": _STR,
    "process": PROCESS_SCHEMA,
    "root": _Obj({"path": _STR, "readonly": _BOOL}, required=("path",)),
    "hostname": _STR,
    "domainname": _STR,
    "mounts": _Arr(_Obj({"destination": _STR, "type": _STR, "source": _STR,
                         "options": _STRS, "uidMappings": _IDMAP, "gidMappings": _IDMAP},
                        required=("destination",))),
    "hooks": _Obj({k: _HOOKS for k in ("prestart", "createRuntime", "createContainer",
                                       "startContainer", "poststart", "poststop")}),
    "annotations": _Map(_STR),
    "linux": _Obj({
        "uidMappings": _IDMAP,
        "gidMappings": _IDMAP,
        "sysctl": _Map(_STR),
        "resources": _Obj({
            "devices": _Arr(_Obj({"allow": _BOOL, "type": _STR, "major": _Int(_I64),
                                  "minor": _Int(_I64), "access": _STR})),
            "memory": _Obj({k: _Int(_I64) for k in ("limit", "reservation", "swap",
                                                     "kernel", "kernelTCP")}
                           | {"swappiness": _Int(_U64), "disableOOMKiller": _BOOL,
                              "useHierarchy": _BOOL, "checkBeforeUpdate": _BOOL}),
            "cpu": _Obj({"shares": _Int(_U64), "quota": _Int(_I64), "burst": _Int(_U64),
                         "period": _Int(_U64), "realtimeRuntime": _Int(_I64),
                         "realtimePeriod": _Int(_U64), "cpus": _STR, "mems": _STR,
                         "idle": _Int(_I64)}),
            "pids": _Obj({"limit": _Int(_I64)}),
            "blockIO": _Obj({"weight": _Int((0, 65535)), "leafWeight": _Int((0, 65535)),
                             "weightDevice": _WEIGHT_DEV,
                             "throttleReadBpsDevice": _THROTTLE_DEV,
                             "throttleWriteBpsDevice": _THROTTLE_DEV,
                             "throttleReadIOPSDevice": _THROTTLE_DEV,
                             "throttleWriteIOPSDevice": _THROTTLE_DEV}),
            "hugepageLimits": _Arr(_Obj({"pageSize": _STR, "limit": _Int(_U64)})),
            "network": _Obj({"classID": _Int(_U32),
                             "priorities": _Arr(_Obj({"name": _STR,
                                                      "priority": _Int(_U32)}))}),
            "rdma": _Map(_Obj({"hcaHandles": _Int(_U32), "hcaObjects": _Int(_U32)})),
            "unified": _Map(_STR),
        }),
        "cgroupsPath": _STR,
        "namespaces": _Arr(_Obj({"type": _STR, "path": _STR}, required=("type",))),
        "devices": _Arr(_Obj({"type": _STR, "path": _STR, "major": _Int(_I64),
                              "minor": _Int(_I64), "fileMode": _Int(_U32),
                              "uid": _Int(_U32), "gid": _Int(_U32)},
                             required=("type", "path"))),
        "seccomp": _Obj({"defaultAction": _STR, "defaultErrnoRet": _Int(_U32),
                         "architectures": _STRS, "flags": _STRS, "listenerPath": _STR,
                         "listenerMetadata": _STR,
                         "syscalls": _Arr(_Obj({
                             "names": _STRS, "action": _STR, "errnoRet": _Int(_U32),
                             "args": _Arr(_Obj({"index": _Int(_U32), "value": _Int(_U64),
                                                "valueTwo": _Int(_U64), "op": _STR}))}))}),
        "rootfsPropagation": _STR,
        "maskedPaths": _STRS,
        "readonlyPaths": _STRS,
        "mountLabel": _STR,
        "intelRdt": _ANY_OBJ,
        "personality": _Obj({"domain": _STR, "flags": _STRS}),
        "timeOffsets": _Map(_Obj({"secs": _Int(_I64), "nanosecs": _Int(_U32)})),
    }),
    "solaris": _ANY_OBJ,
    "windows": _ANY_OBJ,
    "vm": _ANY_OBJ,
    "zos": _ANY_OBJ,
}, required=("process", "root"))


# -- values ----------------------------------------------------------------------------------

def _abs_path(path: str, v: str, *, no_dotdot: bool = False) -> None:
    if not v.startswith("/"):
        _fail(path, "an absolute path", v)
    if no_dotdot and ".." in v.split("/"):
        _fail(path, "a path without '..'", v)


def parse_process(doc: object, path: str = "process") -> Process:
    """Validates a process object (config.json's, or `exec --process`'s process.json)."""
    PROCESS_SCHEMA.check(doc, path)
    assert isinstance(doc, dict)
    return _process(doc, path)


def _process(p: dict[str, Any], path: str) -> Process:
    args = tuple(p["args"])
    if not args:
        raise SpecError(f"{path}.args: must not be empty")
    if not args[0]:
        raise SpecError(f"{path}.args[0]: must not be empty")
    env = tuple(p.get("env") or ())
    for i, e in enumerate(env):
        if "=" not in e:
            _fail(f"{path}.env[{i}]", "NAME=value", e)
    cwd = p.get("cwd") or "/"
    _abs_path(f"{path}.cwd", cwd)
    u = p.get("user") or {}
    user = User(uid=u.get("uid") or 0, gid=u.get("gid") or 0,
                additional_gids=tuple(u.get("additionalGids") or ()), umask=u.get("umask"))
    rlimits = []
    for i, r in enumerate(p.get("rlimits") or ()):
        if r["type"] not in RLIMIT_TYPES:
            _fail(f"{path}.rlimits[{i}].type", "an RLIMIT_* name", r["type"])
        soft, hard = r.get("soft", 0), r.get("hard", 0)       # absent: 0, as runc
        if soft > hard:
            _fail(f"{path}.rlimits[{i}]", "soft <= hard", f"{soft} > {hard}")
        rlimits.append((r["type"], soft, hard))
    cs = p.get("consoleSize")
    # struct winsize holds unsigned shorts; runc converts with uint16() too.
    size = (cs.get("height", 0) & 0xFFFF, cs.get("width", 0) & 0xFFFF) if cs else None
    caps = p.get("capabilities")
    return Process(args=args, env=env, cwd=cwd, user=user, terminal=bool(p.get("terminal")),
                   no_new_privileges=bool(p.get("noNewPrivileges")), console_size=size,
                   capabilities=None if caps is None
                   else {k: tuple(v or ()) for k, v in caps.items()},
                   rlimits=tuple(rlimits))


def parse_spec(doc: object) -> Spec:
    """Validates a decoded config.json; returns what pyvisor uses.  Raises SpecError."""
    SCHEMA.check(doc, "")
    assert isinstance(doc, dict)
    process = _process(doc["process"], "process")
    r = doc["root"]
    if not r["path"]:
        raise SpecError("root.path: must not be empty")
    root = Root(path=r["path"], readonly=bool(r.get("readonly")))
    hostname = doc.get("hostname")
    if hostname is None or hostname == "":
        hostname = "pyvisor"
    if len(hostname.encode()) > HOST_NAME_MAX:
        _fail("hostname", f"at most {HOST_NAME_MAX} bytes", hostname)
    mounts = tuple(_mount(m, f"mounts[{i}]") for i, m in enumerate(doc.get("mounts") or ()))
    linux = doc.get("linux") or {}
    netns_path = ""
    for i, ns in enumerate(linux.get("namespaces") or ()):
        if ns["type"] not in NAMESPACE_TYPES:
            _fail(f"linux.namespaces[{i}].type", "a namespace type", ns["type"])
        if ns["type"] == "network" and ns.get("path"):
            _abs_path(f"linux.namespaces[{i}].path", ns["path"])
            netns_path = ns["path"]
    return Spec(process=process, root=root, oci_version=doc.get("ociVersion") or "",
                hostname=hostname, mounts=mounts,
                resources=_resources(linux.get("resources") or {}),
                annotations=dict(doc.get("annotations") or {}),
                readonly_paths=_abs_paths(linux, "readonlyPaths"),
                masked_paths=_abs_paths(linux, "maskedPaths"),
                sysctl=dict(linux.get("sysctl") or {}),
                cgroups_path=linux.get("cgroupsPath") or "", netns_path=netns_path)


def _abs_paths(linux: dict[str, Any], key: str) -> tuple[str, ...]:
    paths = tuple(linux.get(key) or ())
    for i, p in enumerate(paths):
        _abs_path(f"linux.{key}[{i}]", p)
    return paths


def _mount(m: dict[str, Any], path: str) -> Mount:
    dest = m["destination"]
    _abs_path(f"{path}.destination", dest, no_dotdot=True)
    mtype = m.get("type") or ""
    if mtype not in MOUNT_TYPES:
        _fail(f"{path}.type", "a supported mount type (bind, tmpfs, proc, ...)", mtype)
    mount = Mount(destination=dest, type=mtype or "bind", source=m.get("source") or "",
                  options=tuple(m.get("options") or ()))
    if mount.is_bind and not mount.source:
        raise SpecError(f"{path}.source: a bind mount needs a source")
    if mount.type == "proc" and not mount.is_bind and dest.rstrip("/") != "/proc":
        raise SpecError(f"{path}: proc is mounted only at /proc, not {_show(dest)}")
    return mount


def _resources(res: dict[str, Any]) -> Resources:
    memory = (res.get("memory") or {}).get("limit")
    if memory is not None and (memory < -1 or 0 < memory < MIN_MEMORY):
        _fail("linux.resources.memory.limit",
              f"-1 (unlimited), 0 (unset) or at least {MIN_MEMORY} bytes", memory)
    pids = (res.get("pids") or {}).get("limit")
    cpu = res.get("cpu") or {}
    quota, period = cpu.get("quota"), cpu.get("period")
    if period is not None and not 1000 <= period <= 1_000_000:
        _fail("linux.resources.cpu.period", "from 1000 to 1000000 (µs)", period)
    if quota is not None and quota > 0 and quota < 1000:
        _fail("linux.resources.cpu.quota", "-1 (unlimited) or at least 1000 (µs)", quota)
    shares = cpu.get("shares")
    if shares and not 2 <= shares <= 262144:
        _fail("linux.resources.cpu.shares", "0 (unset) or from 2 to 262144", shares)
    weight = (res.get("blockIO") or {}).get("weight")
    if weight and not 10 <= weight <= 1000:
        _fail("linux.resources.blockIO.weight", "0 (unset) or from 10 to 1000", weight)
    return Resources(memory_limit=memory if memory and memory > 0 else None,
                     pids_limit=pids if pids and pids > 0 else None,
                     cpu_quota=quota if quota and quota > 0 else None,
                     cpu_period=period or 100_000, cpu_shares=shares or None,
                     blkio_weight=weight or None)


def load_spec(bundle: str) -> Spec:
    """Reads and validates BUNDLE/config.json.  Raises SpecError (one line, with the file)."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except OSError as e:
        raise SpecError(f"{path}: {e.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise SpecError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        doc = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SpecError(f"{path}: invalid JSON: {msg}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: must be a JSON object, not {_show(doc)}")
    try:
        return parse_spec(doc)
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply") from None
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def rootfs_of(spec: Spec, bundle: str) -> str:
    """The root directory on the host (root.path against the bundle); it must exist."""
    rootfs = spec.root.path
    if not os.path.isabs(rootfs):
        rootfs = os.path.join(bundle, rootfs)
    if not os.path.isdir(rootfs):
        raise SpecError(f"root.path {rootfs!r}: not a directory")
    return rootfs


def bind_source_of(m: Mount, bundle: str) -> str:
    """A bind mount's source on the host (relative: against the bundle); it must exist."""
    src = m.source if os.path.isabs(m.source) else os.path.join(bundle, m.source)
    if not os.path.exists(src):
        raise SpecError(f"mount {m.destination}: source {src!r} does not exist")
    return src


# -- the command line ------------------------------------------------------------------------

def parse_size_flag(name: str, text: str, minimum: int = 1) -> int:
    """A size flag ('512M', '2G', bytes) -> bytes, at least `minimum`.  Raises SpecError."""
    from pyvisor.runtime.cgroup import parse_size
    try:
        value = parse_size(text)
    except (ValueError, OverflowError):
        value = 0
    if value <= 0 or value > _I64[1]:
        raise SpecError(f"{name}: not a size, {text!r} (use e.g. 512M or 2G)")
    if value < minimum:
        raise SpecError(f"{name}: {text!r} is too small (at least {minimum >> 20}M)")
    return value


def check_cpus(value: float) -> float:
    """--cpus: a positive, finite number of CPUs.  Raises SpecError."""
    if not math.isfinite(value) or value <= 0 or value * 100_000 > _I64[1]:
        raise SpecError(f"--cpus: must be a positive number of CPUs, not {value!r}")
    return value


def check_pids(value: int) -> int:
    """--pids-limit: a positive number of tasks.  Raises SpecError."""
    if not 1 <= value <= _I64[1]:
        raise SpecError(f"--pids-limit: must be a positive number, not {value!r}")
    return value
