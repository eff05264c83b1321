"""OCI runtime spec (config.json): reading a bundle, and the default spec of `spec`.

The one place that parses config.json for the runtime verbs, so that the typed
parser of runtime/specutils.py (issue #7) can replace it in one move.
runc: libcontainer/specconv (Example() for `spec`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from pyvisor.runtime.boot import BootError, MountSpec, SandboxConfig


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise BootError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise BootError(f"{path}: invalid config: {e}") from None
    if not isinstance(spec, dict):
        raise BootError(f"{path}: invalid config: not a JSON object")
    return spec


def _strings(path: str, v: Any, what: str, nonempty: bool = False) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(a, str) for a in v) or (nonempty and not v):
        raise BootError(f"{path}: {what} must be a {'non-empty ' if nonempty else ''}"
                        "list of strings")
    return v


def parse_process(path: str, proc: Any) -> dict[str, Any]:
    """process (of config.json or of exec --process): args, env, cwd, user, terminal."""
    if not isinstance(proc, dict):
        raise BootError(f"{path}: process is missing")
    argv = _strings(path, proc.get("args"), "process.args", nonempty=True)
    env = _strings(path, proc.get("env", []) or [], "process.env")
    cwd = proc.get("cwd", "/") or "/"
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise BootError(f"{path}: process.cwd must be an absolute path")
    user = proc.get("user", {}) or {}
    if not isinstance(user, dict):
        raise BootError(f"{path}: process.user must be an object")
    ids = []
    for key in ("uid", "gid"):
        v = user.get(key, 0)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 32:
            raise BootError(f"{path}: process.user.{key} must be a 32-bit id")
        ids.append(v)
    groups = user.get("additionalGids", []) or []
    if not isinstance(groups, list) or not all(isinstance(g, int) and 0 <= g < 1 << 32
                                               for g in groups):
        raise BootError(f"{path}: process.user.additionalGids must be a list of ids")
    return {"args": argv, "env": env, "cwd": cwd, "uid": ids[0], "gid": ids[1],
            "groups": groups, "terminal": bool(proc.get("terminal", False))}


def _root(path: str, bundle: str, spec: dict[str, Any]) -> tuple[str, bool]:
    root = spec.get("root", {})
    if not isinstance(root, dict) or not isinstance(root.get("path"), str):
        raise BootError(f"{path}: root.path is missing")
    rootfs = root["path"]
    if not os.path.isabs(rootfs):
        rootfs = os.path.join(bundle, rootfs)
    if not os.path.isdir(rootfs):
        raise BootError(f"root.path {rootfs!r} is not a directory")
    return rootfs, bool(root.get("readonly", False))


def _mounts(path: str, bundle: str, spec: dict[str, Any]) -> list[MountSpec]:
    mounts = []
    for m in spec.get("mounts", []) or []:
        if not isinstance(m, dict) or not isinstance(m.get("destination"), str):
            raise BootError(f"{path}: each mount needs a destination")
        src = m.get("source", "")
        if isinstance(src, str) and src and not os.path.isabs(src) and m.get("type") == "bind":
            src = os.path.join(bundle, src)
        mounts.append(MountSpec(m["destination"], str(m.get("type", "bind")), str(src or ""),
                                [str(o) for o in m.get("options", []) or []]))
    return mounts


def _resources(path: str, spec: dict[str, Any]) -> dict[str, int | float | None]:
    linux = spec.get("linux")
    res = (linux.get("resources") or {}) if isinstance(linux, dict) else {}
    if not isinstance(res, dict):
        res = {}
    memory = (res.get("memory") or {}).get("limit")
    pids = (res.get("pids") or {}).get("limit")
    cpu = res.get("cpu") or {}
    quota, period = cpu.get("quota"), cpu.get("period") or 100_000
    for name, v in (("memory.limit", memory), ("pids.limit", pids), ("cpu.quota", quota),
                    ("cpu.period", period)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise BootError(f"{path}: linux.resources.{name} must be an integer")
    return {"memory": memory if memory and memory > 0 else None,
            "pids": pids if pids and pids > 0 else None,
            "cpus": quota / period if quota and quota > 0 and period > 0 else None}


def check_dcache(n: object, what: str) -> int:
    """A dentry cache size (--dcache, annotation dev.pyvisor.dcache): an integer from 1
    to 1<<20, or a string of one."""
    if isinstance(n, str) and n.strip().isdigit():
        n = int(n)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1 << 20:
        raise BootError(f"{what} must be an integer from 1 to {1 << 20}", 125)
    return n


def load_bundle(bundle: str) -> SandboxConfig:
    """Reads and validates an OCI bundle's config.json."""
    path = os.path.join(bundle, "config.json")
    spec = _read(path)
    proc = parse_process(path, spec.get("process"))
    rootfs, readonly = _root(path, bundle, spec)
    res = _resources(path, spec)
    hostname = spec.get("hostname", "pyvisor")
    annotations = spec.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise BootError(f"{path}: annotations must be an object")
    dcache = annotations.get("dev.pyvisor.dcache")
    # root.readonly: the root is read-only inside too; otherwise writes land in a tmpfs
    # overlay (as runsc's default), so the image on the host is never written.
    return SandboxConfig(root=rootfs, argv=proc["args"], env=proc["env"], cwd=proc["cwd"],
                         mounts=_mounts(path, bundle, spec), overlay=not readonly,
                         memory_limit=res["memory"],     # type: ignore[arg-type]
                         pids_limit=res["pids"],         # type: ignore[arg-type]
                         cpus=res["cpus"], uid=proc["uid"], gid=proc["gid"],
                         groups=proc["groups"], terminal=proc["terminal"],
                         hostname=hostname if isinstance(hostname, str) else "pyvisor",
                         annotations={str(k): str(v) for k, v in annotations.items()},
                         dcache=None if dcache is None
                         else check_dcache(dcache, "annotation dev.pyvisor.dcache"))


def default_spec(args: list[str] | None = None, rootless: bool = False) -> dict[str, Any]:
    """The config.json `spec` writes: runc's example (runc spec), a shell in ./rootfs."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    if rootless:
        namespaces = [n for n in namespaces if n["type"] != "network"] + [{"type": "user"}]
    linux: dict[str, Any] = {
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger"],
        "namespaces": namespaces,
    }
    if rootless:
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": args is None,
            "user": {"uid": 0, "gid": 0},
            "args": args or ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in
                             ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pyvisor",
        "mounts": mounts,
        "linux": linux,
    }


def features() -> dict[str, Any]:
    """`features`: what this runtime implements (OCI runtime-spec features.md)."""
    from pyvisor.runtime.state import OCI_VERSION
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [],
        "mountOptions": ["bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec"],
        "linux": {
            "namespaces": ["pid", "network", "ipc", "uts", "mount"],
            "capabilities": [],
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": False},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"io.github.pyvisor.sandbox": "gVisor-style application kernel "
                        "(Python Sentry over ptrace)"},
    }
