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

linux.cgroupsPath (containers): the cgroup is that path instead, in every
hierarchy used, as runc's cgroupfs manager places it: an absolute path from each
hierarchy's root, a relative one from the runtime's own cgroup.  With
--systemd-cgroup the path is systemd's "slice:prefix:name"; pyvisor never asks
systemd (this host has none, and the Sentry's cgroup must exist before it
starts), it makes the directory systemd would: <slice expanded>/<prefix>-<name>.scope
(`system.slice` when the slice is empty, "a-b.slice" -> /a.slice/a-b.slice),
the path runc's systemd manager ends up with.  Missing parents are made and
removed again with the cgroup when empty; an existing leaf is reused (runc too).

linux.resources.blockIO.weight: blkio.weight, else blkio.bfq.weight (v1), or
io.weight, else io.bfq.weight (v2); a host with none of them (no CFQ or BFQ
weight, as these VMs) gets one warning line and no limit.  cpu.shares (v1) or
cpu.weight (v2, converted as runc does) for linux.resources.cpu.shares.
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
    blkio_weight: int | None = None    # 10..1000 (linux.resources.blockIO.weight)
    cpu_shares: int | None = None      # 2..262144 (linux.resources.cpu.shares)


class CgroupPathError(ValueError):
    """A linux.cgroupsPath that cannot be used; the message is one line."""


def expand_slice(slice_: str) -> str:
    """systemd's slice name -> its cgroup path ("a-b.slice" -> "/a.slice/a-b.slice").
    runc: libcontainer/cgroups/systemd ExpandSlice."""
    if not slice_.endswith(".slice") or "/" in slice_:
        raise CgroupPathError(f"invalid slice name: {slice_}")
    name = slice_[:-len(".slice")]
    if name == "-":
        return "/"
    path, prefix = "", ""
    for component in name.split("-"):
        if not component:
            raise CgroupPathError(f"invalid slice name: {slice_}")
        path += f"/{prefix}{component}.slice"
        prefix += component + "-"
    return path


def resolve_path(path: str, systemd: bool) -> str:
    """linux.cgroupsPath -> the cgroupfs path to use ("" when none was given)."""
    if not path:
        return ""
    if systemd:
        parts = path.split(":")
        if len(parts) != 3:
            raise CgroupPathError('expected cgroupsPath to be of format "slice:prefix:name" '
                                  f'for systemd cgroups, got "{path}" instead')
        slice_, prefix, name = parts
        if name.endswith(".slice"):
            return expand_slice(name)
        unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
        return expand_slice(slice_ or "system.slice").rstrip("/") + "/" + unit
    clean = os.path.normpath(path)
    if ".." in clean.split("/") or clean in (".", "/"):
        raise CgroupPathError(f"cgroupsPath {path!r}: must name a cgroup below the root, "
                              "without '..'")
    return clean


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


def join_dirs(dirs: list[str]) -> None:
    """Moves the calling process into the cgroups `dirs` (a SandboxCgroup's, made by the
    launcher: prefork.py joins them knowing only their paths)."""
    for d in dirs:
        _write(os.path.join(d, "cgroup.procs"), "0")


class SandboxCgroup:
    """The cgroup(s) of one sandbox."""

    def __init__(self, name: str, limits: Limits, path: str = "") -> None:
        self.name = name
        self.limits = limits
        self.path = path                       # linux.cgroupsPath, resolved ("": none)
        self.dirs: list[str] = []              # the sandbox's cgroup directories
        self.parents: list[str] = []           # missing parents of `path` we made
        self.warnings: list[str] = []          # limits this host cannot apply
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
                "cpu.weight": None if self.limits.cpu_shares is None else
                shares_to_weight(self.limits.cpu_shares),
            }, ROOT)
            if self.limits.blkio_weight is not None:
                self._set_weight(self.dirs[-1], ("io.weight", "io.bfq.weight"))
            return
        wanted: dict[str, dict[str, object]] = {
            "memory": {"memory.limit_in_bytes": self.limits.memory},
            "pids": {"pids.max": self.limits.pids},
            "cpu": {"cpu.cfs_period_us": self.limits.cpu_period_us
                    if self.limits.cpu_quota_us is not None else None,
                    "cpu.cfs_quota_us": self.limits.cpu_quota_us,
                    "cpu.shares": self.limits.cpu_shares}}
        for ctrl in self.limits.extra:
            if ctrl != "blkio" or os.path.isdir(os.path.join(ROOT, ctrl)):
                wanted.setdefault(ctrl, {})
        if self.limits.blkio_weight is not None:
            wanted.setdefault("blkio", {})
        for ctrl, files in wanted.items():
            if all(v is None for v in files.values()) and ctrl not in self.limits.extra \
                    and ctrl != "blkio":   # noqa: SIM102 - blkio only when wanted above
                continue
            mount = os.path.join(ROOT, ctrl)
            if not os.path.isdir(mount):
                raise OSError(f"cgroup controller {ctrl} is not mounted")
            base = os.path.join(mount, own.get(ctrl, "/").lstrip("/"))
            self._enter_dir(base, files, mount)
            if ctrl == "blkio" and self.limits.blkio_weight is not None:
                self._set_weight(self.dirs[-1], ("blkio.weight", "blkio.bfq.weight"))

    def _enter_dir(self, base: str, files: dict[str, object], mount: str) -> None:
        if self.path:
            top = mount if self.path.startswith("/") else base
            d = os.path.join(top, self.path.lstrip("/"))
            self._make_parents(os.path.dirname(d), top)
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                pass                            # reused, as runc reuses it
        else:
            _sweep_stale(base)
            d = os.path.join(base, self.name)
            os.mkdir(d, 0o755)
        self.dirs.append(d)
        for fname, value in files.items():
            if value is not None:
                _write(os.path.join(d, fname), str(value))

    def _make_parents(self, d: str, top: str) -> None:
        missing = []
        while d != top and not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for p in reversed(missing):
            try:
                os.mkdir(p, 0o755)
                self.parents.append(p)
            except FileExistsError:
                pass

    def _set_weight(self, d: str, names: tuple[str, ...]) -> None:
        """blockIO weight into the first of `names` the host has; else a warning."""
        weight = self.limits.blkio_weight
        for n in names:
            path = os.path.join(d, n)
            if os.path.exists(path):
                _write(path, str(weight) if not n.startswith("io.") or n.endswith("bfq.weight")
                       else f"default {weight}")
                return
        self.warnings.append(f"linux.resources.blockIO.weight={weight}: this host has no "
                             f"I/O weight control ({' or '.join(names)}); not applied")

    def join(self) -> None:
        """Moves the calling process in ("0": the writer, whatever its PID namespace)."""
        join_dirs(self.dirs)

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
        remove_parents(self.parents)
        self.parents.clear()


def remove_parents(parents: list[str]) -> None:
    """The parents made for a cgroupsPath, deepest first, each if empty (another
    container may share them: then it stays)."""
    for p in sorted(parents, key=len, reverse=True):
        try:
            os.rmdir(p)
        except OSError:
            pass


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) -> cgroup v2's cpu.weight (1..10000), as runc converts."""
    return 1 + ((shares - 2) * 9999) // 262142


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
