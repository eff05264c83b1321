"""Host cgroups for a sandbox: memory, pids and CPU limits on its host processes.

gVisor: runsc/cgroup.  Both cgroup v2 (a unified /sys/fs/cgroup) and v1 (one
hierarchy per controller, as on these VMs) are handled.  The launcher creates
a fresh child of its current cgroup; the Sentry moves itself in first thing,
before it forks anything, so its Gofers and every stub inherit it; after the
Sentry's PID namespace is gone, the launcher removes the (empty) cgroup.
Moving a process between v1 memory cgroups costs ~15 ms here (an RCU grace
period), so only the Sentry moves, once; the launcher never does.  The
Sentry and Gofers set oom_score_adj to -1000, so a memory limit kills
application stubs (the application sees SIGKILL), never the kernel serving them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger("pyvisor.cgroup")

ROOT = "/sys/fs/cgroup"


@dataclass
class Limits:
    """Resource limits; None means unlimited."""

    memory: int | None = None          # bytes, for all host processes of the sandbox
    pids: int | None = None            # host tasks (threads) of the sandbox
    cpu_quota_us: int | None = None    # per period
    cpu_period_us: int = 100_000
    extra: tuple[str, ...] = ()        # v1 controllers wanted without limits (freezer, cpuacct)


def parse_size(text: str) -> int:
    """'512M', '2G', '1048576' -> bytes."""
    t = text.strip().upper()
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)):
        if t.endswith(suffix) or t.endswith(suffix + "B") or t.endswith(suffix + "IB"):
            t = t[:t.index(suffix)]
            mult = m
            break
    value = int(float(t) * mult)
    if value <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return value


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class SandboxCgroup:
    """The cgroup(s) of one sandbox."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.dirs: list[str] = []              # created cgroup directories
        self.v2 = os.path.exists(os.path.join(ROOT, "cgroup.controllers"))

    def _own(self) -> dict[str, str]:
        """controller (or '' for v2) -> our current cgroup path."""
        out = {}
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                for c in (ctrls.split(",") if ctrls else [""]):
                    out[c] = path
        return out

    def create(self) -> None:
        """Creates the cgroup(s) and applies the limits."""
        own = self._own()
        if self.v2:
            base = os.path.join(ROOT, own.get("", "/").lstrip("/"))
            self._enter_dir(base, {
                "memory.max": self.limits.memory,
                "pids.max": self.limits.pids,
                "cpu.max": None if self.limits.cpu_quota_us is None else
                f"{self.limits.cpu_quota_us} {self.limits.cpu_period_us}",
            })
            return
        wanted = {"memory": {"memory.limit_in_bytes": self.limits.memory},
                  "pids": {"pids.max": self.limits.pids},
                  "cpu": {"cpu.cfs_period_us": self.limits.cpu_period_us
                          if self.limits.cpu_quota_us is not None else None,
                          "cpu.cfs_quota_us": self.limits.cpu_quota_us}}
        for ctrl in self.limits.extra:
            wanted.setdefault(ctrl, {})
        for ctrl, files in wanted.items():
            if all(v is None for v in files.values()) and ctrl not in self.limits.extra:
                continue
            mount = os.path.join(ROOT, ctrl)
            if not os.path.isdir(mount):
                raise OSError(f"cgroup controller {ctrl} is not mounted")
            base = os.path.join(mount, own.get(ctrl, "/").lstrip("/"))
            self._enter_dir(base, files)

    def _enter_dir(self, base: str, files: dict[str, object]) -> None:
        _sweep_stale(base)
        d = os.path.join(base, self.name)
        os.mkdir(d, 0o755)
        self.dirs.append(d)
        for fname, value in files.items():
            if value is not None:
                _write(os.path.join(d, fname), str(value))

    def join(self) -> None:
        """Moves the calling process in ("0": the writer, whatever its PID namespace)."""
        for d in self.dirs:
            _write(os.path.join(d, "cgroup.procs"), "0")

    def remove(self) -> None:
        """Removes the cgroups; their tasks are gone (or going: on a loaded machine the
        last ones may take a while to be reaped, so keep trying for a few seconds; what
        still fails is swept by the next sandbox, see _sweep_stale)."""
        import time
        for d in reversed(self.dirs):
            deadline = time.monotonic() + 5
            pause = 0.001
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        log.warning("cannot remove cgroup %s", d)
                        break
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
        self.dirs.clear()


def _sweep_stale(base: str) -> None:
    """Removes sibling cgroups of sandboxes whose launcher was killed (SIGKILL leaves no
    chance to clean up): named pyvisor-<pid>-<random>, the pid gone, no task inside."""
    try:
        names = [n for n in os.listdir(base) if n.startswith("pyvisor-")]
    except OSError:
        return
    for n in names:
        parts = n.split("-")
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue                       # its launcher still runs
        except ProcessLookupError:
            pass
        except OSError:
            continue
        try:
            os.rmdir(os.path.join(base, n))   # fails (EBUSY) if tasks remain: then keep it
        except OSError:
            pass


def remove_leftovers(name: str, max_depth: int = 6) -> list[str]:
    """Removes cgroups called `name` anywhere under the hierarchies (for `delete` after a
    launcher was killed before it could clean up).  Returns what was removed."""
    removed = []
    for top, dirs, _ in os.walk(ROOT):
        if top[len(ROOT):].count("/") >= max_depth:
            dirs[:] = []
            continue
        if name in dirs:
            path = os.path.join(top, name)
            import time
            deadline = time.monotonic() + 5
            while True:
                try:
                    os.rmdir(path)
                    removed.append(path)
                    break
                except OSError as e:
                    # EBUSY while the killed sandbox's last tasks are still exiting.
                    if time.monotonic() > deadline:
                        log.warning("cannot remove cgroup %s: %s", path, e)
                        break
                    time.sleep(0.02)
            dirs.remove(name)
    return removed


def protect_from_oom() -> None:
    """Makes this process the OOM killer's last choice (before dropping capabilities)."""
    try:
        _write("/proc/self/oom_score_adj", "-1000")
    except OSError:
        pass
