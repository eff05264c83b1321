"""sysfs: the few files programs read, never the host's.  Linux: fs/sysfs, drivers/base/cpu.c.

A read-only tmpfs populated at boot: the CPU topology files that libc and
runtimes read to size thread pools (online, possible, present, cpuN/), and
empty class/block/fs/cgroup directories so probing programs see "nothing here"
rather than the host's devices, network interfaces or cgroups.
"""

from __future__ import annotations

import os

from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS, TmpfsDir
from pyvisor.sentry.mm.memfile import MemoryFile

SYSFS_MAGIC = 0x62656572


class SysFS(TmpFS):
    name = "sysfs"
    magic = SYSFS_MAGIC


def _mkdirs(root: TmpfsDir, path: str) -> TmpfsDir:
    d = root
    for comp in path.strip("/").split("/"):
        name = comp.encode()
        child = d.entries.get(name)
        if child is None:
            child = d.mkdir(name, 0o755, 0, 0)
        assert isinstance(child, TmpfsDir)
        d = child
    return d


def _file(root: TmpfsDir, path: str, data: str, mode: int = 0o444) -> None:
    head, _, name = path.rpartition("/")
    d = _mkdirs(root, head) if head else root
    f = d.create(name.encode(), mode, 0, 0)
    f.write_at(data.encode(), 0)  # type: ignore[attr-defined]


def new_sysfs(memfile: MemoryFile, ncpu: int | None = None) -> tuple[SysFS, TmpfsDir]:
    """A populated, read-only sysfs."""
    n = ncpu or os.cpu_count() or 1
    fs = SysFS(memfile, 1 << 20)
    root = fs.new_root(0o555)
    span = "0" if n == 1 else f"0-{n - 1}"
    for name in ("online", "possible", "present"):
        _file(root, f"devices/system/cpu/{name}", span + "\n")
    for i in range(n):
        _file(root, f"devices/system/cpu/cpu{i}/online", "1\n")
    _file(root, "kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n")
    for d in ("class/net", "block", "bus", "dev/char", "dev/block", "firmware", "fs/cgroup",
              "module", "power"):
        _mkdirs(root, d)
    fs.readonly = True
    return fs, root
