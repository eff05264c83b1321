"""A sandbox's configuration: what to run and how (SandboxConfig), with its defaults.

Kept apart from boot.py, which imports the whole kernel: the launcher makes the
configuration and hands it to a Sentry that may already be importing (prefork.py), so
what the launcher imports before that must stay small.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyvisor.runtime.errors import BootError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.sysctl import CoreSysctls


@dataclass
class MountSpec:
    """One OCI-style mount."""

    destination: str
    type: str                      # bind | tmpfs | proc | devpts ...
    source: str = ""
    options: list[str] = field(default_factory=list)


# Resources whose host limit the sandbox's processes get by default, as runsc's
# (runsc/boot/limits.go): the files a process may open and the largest file it may write.
_HOST_RLIMITS = (resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE)
# Read when this module is imported, in the launcher: a configuration made later inside
# the confined Sentry (a pod member's) must not ask the host (prlimit64 and getpriority
# are not in the Sentry's seccomp list) and should see the launcher's values anyway.
_CALLER_RLIMITS = {res: resource.getrlimit(res) for res in _HOST_RLIMITS}
_CALLER_NICE = os.getpriority(os.PRIO_PROCESS, 0)


@dataclass
class SandboxConfig:
    """What to run and how."""

    root: str = "/"
    root_readonly: bool = True        # the image itself is never written
    overlay: bool = True              # writes land in a tmpfs above the image
    argv: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    mounts: list[MountSpec] = field(default_factory=list)
    strace: bool = False
    hostname: str = "pyvisor"
    uid: int = 0
    gid: int = 0
    stdio: tuple[int, int, int] = (0, 1, 2)
    pin_cpu: bool = True
    confine: bool = True              # namespaces, empty root, no capabilities (confine.py)
    memory_limit: int | None = None   # bytes for all host processes; None: half the host RAM
    pids_limit: int | None = None     # application tasks; None: DEFAULT_PIDS
    cpus: float | None = None         # CPU quota in CPUs; None: unlimited
    tmpfs_size: int | None = None     # per tmpfs (overlay upper, /dev/shm, tmpfs mounts)
    test_panic: str | None = None     # tests only: this syscall raises an internal error
    cgroup_name: str | None = None    # default: pyvisor-<launcher pid>-<random>
    groups: list[int] = field(default_factory=list)   # supplementary gids of the init
    caps: dict[str, list[str]] | None = None   # process.capabilities (None: root's default)
    hold_init: bool = False           # create: the init is loaded, runs at `start`
    control_fd: int = -1              # the control socket's listening fd (inherited)
    ready_fd: int = -1                # create: the Sentry reports "ok" or an error here
    annotations: dict[str, str] = field(default_factory=dict)
    terminal: bool = False            # process.terminal (runtime/tty.py)
    console_size: tuple[int, int] | None = None   # process.consoleSize (rows, columns)
    console_fd: int = -1              # the slave of the pty sent to --console-socket
    preserve_fds: int = 0             # --preserve-fds: host fds 3..3+N-1 are the init's too
    # net.core.{w,r}mem_max, read from the host before the launcher leaves its network
    # namespace (they are visible only in the initial one); None: Linux's defaults.
    net_core: CoreSysctls | None = None
    dcache: int | None = None         # dentries cached (--dcache); None: DEFAULT_DCACHE
    network: str = "sandbox"          # sandbox | none (netstack, loopback) | host (hostinet)
    netns_path: str = ""              # the OCI network namespace whose interfaces to take over
    platform: str = "ptrace"          # what runs application code (--platform; check_platform)
    file_access: str = "exclusive"    # the root image: exclusive (cached) | shared (--file-access)
    rlimits: dict[int, tuple[int, int]] = field(default_factory=dict)  # process.rlimits
    # The launcher's own RLIMIT_NOFILE and RLIMIT_FSIZE, read when the configuration is
    # made (before the Sentry sets its own fd budget): sandbox_rlimits.
    caller_rlimits: dict[int, tuple[int, int]] = field(
        default_factory=lambda: dict(_CALLER_RLIMITS))
    # The launcher's nice value: the sandbox's processes start with it, as a command run
    # by `nice` or by an engine under it would (Task.nice; the host schedules nothing by it).
    caller_nice: int = field(default_factory=lambda: _CALLER_NICE)
    sentry_memory: int | None = None  # what the Sentry holds for the application (memacct.py)
    gofer_nofile: int | None = None   # set by boot(): each Gofer's RLIMIT_NOFILE (None: keep)
    # linux.readonlyPaths, linux.maskedPaths (runtime/masks.py), linux.sysctl (sysctl.py)
    readonly_paths: list[str] = field(default_factory=list)
    masked_paths: list[str] = field(default_factory=list)
    sysctl: dict[str, str] = field(default_factory=dict)
    # linux.cgroupsPath resolved (runtime/cgroup.py resolve_path; "": a cgroup of our own),
    # linux.resources.blockIO.weight and cpu.shares
    cgroup_path: str = ""
    blkio_weight: int | None = None
    cpu_shares: int | None = None


DEFAULT_PIDS = 4096


def _host_ram() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 8 << 30


def effective_limits(cfg: SandboxConfig) -> tuple[int, int, int]:
    """(memory bytes, tasks, tmpfs bytes) after defaults: safe unless told otherwise."""
    memory = cfg.memory_limit or _host_ram() // 2
    pids = cfg.pids_limit or DEFAULT_PIDS
    tmpfs = cfg.tmpfs_size or memory // 2
    return memory, pids, tmpfs


def cgroup_name_for(pid: int) -> str:
    """A fresh cgroup name: the launcher's pid (for people) and a random part (pids recur)."""
    return f"pyvisor-{pid}-{os.urandom(4).hex()}"


def check_platform(name: str) -> None:
    """--platform: BootError (one line) unless `name` is a platform pyvisor has."""
    from pyvisor.sentry.platform.platform import PLANNED, PLATFORMS
    if name in PLATFORMS:
        return
    if name in PLANNED:
        raise BootError(f"--platform={name} is not available yet (issue #9); "
                        f"available: {', '.join(PLATFORMS)}", 125)
    raise BootError(f"--platform={name!r}: unknown platform; available: "
                    f"{', '.join(PLATFORMS)}", 125)
