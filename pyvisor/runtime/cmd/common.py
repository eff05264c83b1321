"""Helpers shared by the verbs: signals by name or number, limit flags, the stdio fds."""

from __future__ import annotations

import argparse
import fcntl
import os
import signal as host_signal
from typing import TYPE_CHECKING

from pyvisor.runtime.errors import BootError

if TYPE_CHECKING:
    from pyvisor.runtime.config import SandboxConfig


def parse_signal(text: str) -> int:
    """'TERM', 'SIGTERM', 'sigterm', '15', 'RTMIN+2' -> a signal number (runc's rules)."""
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 1 <= n <= 64:
            return n
        raise BootError(f"invalid signal {text!r}", 1)
    if not t.startswith("SIG"):
        t = "SIG" + t
    for base, num in (("SIGRTMIN", host_signal.SIGRTMIN), ("SIGRTMAX", host_signal.SIGRTMAX)):
        if t == base:
            return int(num)
        for sign in ("+", "-"):
            if t.startswith(base + sign) and t[len(base) + 1:].isdigit():
                n = int(num) + (1 if sign == "+" else -1) * int(t[len(base) + 1:])
                if host_signal.SIGRTMIN <= n <= host_signal.SIGRTMAX:
                    return n
    try:
        return int(host_signal.Signals[t])
    except KeyError:
        raise BootError(f"invalid signal {text!r}", 1) from None


def apply_limit_flags(cfg: SandboxConfig, args: argparse.Namespace) -> None:
    """--memory/--pids-limit/--cpus/--tmpfs-size/--dcache override the bundle's values."""
    cfg.platform = getattr(args, "platform", cfg.platform)
    cfg.file_access = getattr(args, "file_access", cfg.file_access)
    if all(getattr(args, a) is None for a in ("memory", "tmpfs_size", "sentry_memory",
                                              "pids_limit", "cpus", "dcache")):
        _resolve_cgroup_path(cfg, args)
        return        # nothing to check: the spec modules stay unimported (start-up time)
    from pyvisor.runtime import specutils
    from pyvisor.runtime.spec import check_dcache
    try:
        if args.memory is not None:
            cfg.memory_limit = specutils.parse_size_flag("--memory", args.memory,
                                                         specutils.MIN_MEMORY)
        if args.tmpfs_size is not None:
            cfg.tmpfs_size = specutils.parse_size_flag("--tmpfs-size", args.tmpfs_size)
        if args.sentry_memory is not None:
            cfg.sentry_memory = specutils.parse_size_flag("--sentry-memory", args.sentry_memory)
        if args.pids_limit is not None:
            cfg.pids_limit = specutils.check_pids(args.pids_limit)
        if args.cpus is not None:
            cfg.cpus = specutils.check_cpus(args.cpus)
    except specutils.SpecError as e:
        raise BootError(str(e), 125) from None
    if args.dcache is not None:
        cfg.dcache = check_dcache(args.dcache, "--dcache")
    _resolve_cgroup_path(cfg, args)


def _resolve_cgroup_path(cfg: SandboxConfig, args: argparse.Namespace) -> None:
    from pyvisor.runtime.cgroup import CgroupPathError, resolve_path
    try:     # linux.cgroupsPath as given -> the cgroupfs path (--systemd-cgroup: its form)
        cfg.cgroup_path = resolve_path(cfg.cgroup_path, bool(getattr(args, "systemd_cgroup",
                                                                     False)))
    except CgroupPathError as e:
        raise BootError(str(e), 125) from None


def stdio_fds() -> list[int]:
    """Fds 0-2 as the engine gave them (-1 for a closed one)."""
    out = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            out.append(fd)
        except OSError:
            out.append(-1)
    return out


def bundle_dir(path: str) -> str:
    d = os.path.abspath(path or ".")
    if not os.path.isdir(d):
        raise BootError(f"bundle {d!r} is not a directory", 1)
    return d


def preserve_fds(n: int) -> int:
    """--preserve-fds N: fds 3..3+N-1 of this command are the container process's fds
    3..3+N-1 too (runc's ExtraFiles; systemd socket activation's LISTEN_FDS).  Each must
    be open.  They are made close-on-exec here, so that only the Sentry (forked, not
    exec'd) receives them and imports them as host files (boot.install_host_fds);
    no Gofer or stub inherits one.  Returns N."""
    from pyvisor.runtime.control import MAX_PRESERVE_FDS
    if not 0 <= n <= MAX_PRESERVE_FDS:
        raise BootError(f"--preserve-fds must be from 0 to {MAX_PRESERVE_FDS}", 1)
    for fd in range(3, 3 + n):
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        except OSError:
            raise BootError(f"--preserve-fds {n}: fd {fd} is not open", 1) from None
    return n
