"""OCI runtime spec (config.json): reading a bundle, and the default spec of `spec`.

The one place that parses config.json for the runtime verbs, so that the typed
parser of runtime/specutils.py (issue #7) can replace it in one move.
runc: libcontainer/specconv (Example() for `spec`).
"""

from __future__ import annotations

import os
from typing import Any

from pyvisor.runtime import specutils
from pyvisor.runtime.boot import BootError, MountSpec, SandboxConfig


def parse_process(path: str, proc: Any) -> dict[str, Any]:
    """process (of config.json or of exec --process), validated by specutils: args, env,
    cwd, user, terminal."""
    try:
        p = specutils.parse_process(proc, "process")
    except specutils.SpecError as e:
        raise BootError(f"{path}: {e}", 125) from None
    return {"args": list(p.args), "env": list(p.env), "cwd": p.cwd, "uid": p.user.uid,
            "gid": p.user.gid, "groups": list(p.user.additional_gids),
            "caps": caps_param(p.capabilities),
            "terminal": p.terminal, "console_size": p.console_size}


def caps_param(caps: dict[str, tuple[str, ...]] | None) -> dict[str, list[str]] | None:
    """process.capabilities as the Sentry's control messages carry it."""
    return None if caps is None else {k: list(v) for k, v in caps.items()}


def check_dcache(n: object, what: str) -> int:
    """A dentry cache size (--dcache, annotation dev.pyvisor.dcache): an integer from 1
    to 1<<20, or a string of one."""
    if isinstance(n, str) and n.strip().isdigit():
        n = int(n)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1 << 20:
        raise BootError(f"{what} must be an integer from 1 to {1 << 20}", 125)
    return n


def load_bundle(bundle: str) -> SandboxConfig:
    """Reads and validates an OCI bundle's config.json (every field: specutils)."""
    try:
        spec = specutils.load_spec(bundle)
        rootfs = specutils.rootfs_of(spec, bundle)
        mounts = [MountSpec(m.destination, m.type,
                            specutils.bind_source_of(m, bundle) if m.is_bind else m.source,
                            list(m.options)) for m in spec.mounts]
    except specutils.SpecError as e:
        raise BootError(str(e), 125) from None
    proc, res = spec.process, spec.resources
    dcache = spec.annotations.get("dev.pyvisor.dcache")
    from pyvisor.runtime import sysctl
    sysctl.check(spec.sysctl)
    # root.readonly: the root is read-only inside too; otherwise writes land in a tmpfs
    # overlay (as runsc's default), so the image on the host is never written.
    return SandboxConfig(root=rootfs, argv=list(proc.args), env=list(proc.env), cwd=proc.cwd,
                         mounts=mounts, overlay=not spec.root.readonly,
                         memory_limit=res.memory_limit, pids_limit=res.pids_limit,
                         cpus=res.cpus, uid=proc.user.uid, gid=proc.user.gid,
                         groups=list(proc.user.additional_gids),
                         caps=caps_param(proc.capabilities), terminal=proc.terminal,
                         console_size=proc.console_size,
                         hostname=spec.hostname, netns_path=spec.netns_path,
                         annotations={str(k): str(v) for k, v in spec.annotations.items()},
                         dcache=None if dcache is None
                         else check_dcache(dcache, "annotation dev.pyvisor.dcache"),
                         readonly_paths=list(spec.readonly_paths),
                         masked_paths=list(spec.masked_paths), sysctl=dict(spec.sysctl),
                         cgroup_path=spec.cgroups_path,     # resolved by apply_limit_flags
                         rlimits={specutils.RLIMIT_NUMBERS[name]: (soft, hard)
                                  for name, soft, hard in proc.rlimits},
                         blkio_weight=res.blkio_weight, cpu_shares=res.cpu_shares)


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
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec"],
        "linux": {
            "namespaces": ["pid", "network", "ipc", "uts", "mount"],
            "capabilities": [],
            # systemd: the slice:prefix:name form, placed through cgroupfs (cgroup.py)
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False},
            "seccomp": {"enabled": False},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"io.github.pyvisor.sandbox": "gVisor-style application kernel "
                        "(Python Sentry over ptrace)"},
    }
