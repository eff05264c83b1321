"""Unit tests for procfs, devfs and host files, on a fake kernel (no ptrace).

The kernel is a SimpleNamespace with the attributes these filesystems read;
tasks and thread groups are the real dataclasses with stand-ins for the stub
thread and the memory manager.
"""

from __future__ import annotations

import os
import select
import stat
import struct
import tempfile
import types
from typing import Any, Iterator

import pytest

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_CLOEXEC, O_RDONLY, O_RDWR, O_WRONLY
from pyvisor.abi.linux.stat import S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG
from pyvisor.sentry.fsimpl.dev.devfs import new_devfs, new_encode_dev
from pyvisor.sentry.fsimpl.host import host as hostfs
from pyvisor.sentry.fsimpl.host.host import host_file
from pyvisor.sentry.vfs.file import AT_POSITION
from pyvisor.sentry.fsimpl.proc.procfs import SnapshotFileImpl, new_procfs
from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.kernel.fd_table import FDTable
from pyvisor.sentry.kernel.kernel import Kernel
from pyvisor.sentry.kernel.task import (Credentials, FSContext, SigAction, SignalHandlers, Task,
                                        ThreadGroup)
from pyvisor.sentry.waitqueue import EVENT_IN, EVENT_OUT, Waiter
from pyvisor.sentry.mm.memfile import MemoryFile
from pyvisor.sentry.mm.memory_manager import VMA
from pyvisor.sentry.vfs.file import FileDescription
from pyvisor.sentry.vfs.inode import Inode
from pyvisor.sentry.vfs.vfs import Dentry, Location, Mount, MountNamespace, Resolver


@pytest.fixture(scope="module")
def memfile() -> Iterator[MemoryFile]:
    mf = MemoryFile()
    yield mf


class _GoneSpace:
    """An address space (platform) already gone: hashable, zero CPU times."""

    def cpu_times(self) -> tuple[int, int]:
        return (0, 0)


class Sandbox:
    """A fake kernel with a mount tree (tmpfs root, /proc, /dev) and one process."""

    def __init__(self, memfile: MemoryFile) -> None:
        self.kernel = types.SimpleNamespace(
            groups={}, tasks_by_tid={}, boot_ns=0, hostname=b"box", domainname=b"(none)",
            root_ns=None, current=None, init=None, _next_pid=1)
        rootfs = TmpFS(memfile)
        ns = MountNamespace(rootfs, rootfs.new_root(0o755), source="rootfs", options="rw")
        self.kernel.root_ns = ns
        self.ns = ns
        self.root = Location(ns.root, ns.root.root)
        root_inode = ns.root.root.inode
        for d in (b"proc", b"dev", b"tmp"):
            root_inode.mkdir(d, 0o755, 0, 0)
        self.procfs, self.proc_root = new_procfs(self.kernel)
        ns.mount(ns.root, ns.root.root.child(b"proc"), self.procfs, self.proc_root,
                 source="proc", options="rw,nosuid")
        self.devfs, self.dev_root = new_devfs(self.kernel, memfile)
        ns.mount(ns.root, ns.root.root.child(b"dev"), self.devfs, self.dev_root, source="dev",
                 options="rw")
        self.tmp_file = root_inode.lookup(b"tmp").create(b"f", 0o644, 0, 0)
        self.init = self.new_process(1, None, argv=[b"/bin/init", b"-x"], comm=b"init")
        self.kernel.init = self.init.tg
        self.kernel.current = self.init

    def new_process(self, pid: int, parent: ThreadGroup | None, argv: list[bytes],
                    comm: bytes) -> Task:
        k = self.kernel
        tg = ThreadGroup(kernel=k, tgid=pid, parent=parent, sighand=SignalHandlers(), pgid=pid,
                         sid=1, comm=comm, argv=b"".join(a + b"\0" for a in argv),
                         environ=b"A=1\0B=2\0", start_ns=0)
        tg.exe = self.walk(b"/tmp/f")
        t = self.new_thread(tg, pid)
        if parent is not None:
            parent.children.append(tg)
        k.groups[pid] = tg
        k._next_pid = max(k._next_pid, pid + 1)
        return t

    def new_thread(self, tg: ThreadGroup, tid: int) -> Task:
        mm = types.SimpleNamespace(
            vmas=[VMA(0x400000, 0x401000, 5, mappable=object(), name=b"/tmp/f", ino=7, dev=0x801),
                  VMA(0x600000, 0x602000, 3),
                  VMA(0x7FFF0000, 0x80000000, 3, name=b"[stack]")],
            brk_start=0x602000, argv_start=0x7FFF8000, argv_end=0x7FFF8010, env_start=0,
            env_end=0, auxv=b"\x06\0\0\0\0\0\0\0\0\x10\0\0\0\0\0\0")
        fdt = FDTable()
        # An address space already gone: its CPU times are the (zero) ones last read.
        space = _GoneSpace()
        t = Task(kernel=self.kernel, tid=tid, tg=tg,
                 thread=types.SimpleNamespace(running=False, space=space),
                 mm=mm, fd_table=fdt, fs=FSContext(self.root, self.walk(b"/tmp")),
                 creds=Credentials(groups=(0, 10)), regs=None)  # type: ignore[arg-type]
        if tg.tasks:
            t.fd_table = tg.tasks[0].fd_table
        tg.tasks.append(t)
        self.kernel.tasks_by_tid[tid] = t
        return t

    def walk(self, path: bytes, follow: bool = True) -> Location:
        cur = self.kernel.current
        t = cur if cur is not None else types.SimpleNamespace(
            check_exec=lambda inode: None)
        loc, _ = Resolver(self.root).walk(t, self.root, path, follow)
        return loc

    def open(self, path: bytes, flags: int = O_RDONLY) -> FileDescription:
        loc = self.walk(path)
        return FileDescription.open(loc.mount, loc.dentry, flags)

    def read(self, path: bytes) -> bytes:
        f = self.open(path)
        out = b""
        while True:
            chunk = f.impl.read(f, self.kernel.current, 7, f.offset)
            if not chunk:
                return out
            out += chunk
            f.offset += len(chunk)

    def names(self, path: bytes) -> list[bytes]:
        return [e.name for e in self.walk(path).inode.readdir()]


@pytest.fixture
def sb(memfile: MemoryFile) -> Sandbox:
    return Sandbox(memfile)


def errno_of(fn: Any, *args: Any) -> int:
    with pytest.raises(SyscallError) as ei:
        fn(*args)
    return ei.value.errno


# -- devfs ----------------------------------------------------------------------------------


def test_devfs_nodes(sb: Sandbox) -> None:
    want = {b"null": 3, b"zero": 5, b"full": 7, b"random": 8, b"urandom": 9}
    for name, minor in want.items():
        inode = sb.walk(b"/dev/" + name).inode
        assert inode.mode == S_IFCHR | 0o666
        assert inode.rdev == new_encode_dev(1, minor) == (1 << 8) | minor
    tty = sb.walk(b"/dev/tty").inode
    assert tty.mode & S_IFCHR and tty.rdev == 5 << 8
    assert errno_of(sb.open, b"/dev/tty", O_RDWR) == Errno.ENXIO
    for d in (b"shm", b"pts"):
        assert sb.walk(b"/dev/" + d).inode.mode & 0o170000 == S_IFDIR
    links = {b"fd": b"/proc/self/fd", b"stdin": b"/proc/self/fd/0",
             b"stdout": b"/proc/self/fd/1", b"stderr": b"/proc/self/fd/2"}
    for name, target in links.items():
        inode = sb.walk(b"/dev/" + name, follow=False).inode
        assert inode.is_symlink() and inode.readlink() == target
    assert set(sb.names(b"/dev")) >= set(want) | set(links) | {b"tty", b"shm", b"pts"}
    assert new_encode_dev(136, 300) == (300 & 0xFF) | (136 << 8) | ((300 & ~0xFF) << 12)


def test_devfs_io(sb: Sandbox) -> None:
    t = sb.kernel.current
    null = sb.open(b"/dev/null", O_RDWR)
    assert null.impl.read(null, t, 100, 0) == b""
    assert null.impl.write(null, t, b"abc", 0) == 3
    assert null.impl.seekable
    zero = sb.open(b"/dev/zero", O_RDWR)
    assert zero.impl.read(zero, t, 10, 5) == bytes(10)
    assert zero.impl.write(zero, t, b"xy", 0) == 2
    full = sb.open(b"/dev/full", O_RDWR)
    assert full.impl.read(full, t, 4, 0) == bytes(4)
    assert errno_of(full.impl.write, full, t, b"x", 0) == Errno.ENOSPC
    for name in (b"/dev/random", b"/dev/urandom"):
        r = sb.open(name, O_RDWR)
        a, b = r.impl.read(r, t, 32, 0), r.impl.read(r, t, 32, 0)
        assert len(a) == len(b) == 32 and a != b
        assert r.impl.write(r, t, b"entropy", 0) == 7


def test_dev_stdin_follows_proc_self_fd(sb: Sandbox) -> None:
    f = sb.open(b"/tmp/f", O_RDWR)
    sb.init.fd_table.install_at(0, f)
    loc = sb.walk(b"/dev/stdin")
    assert loc.dentry is f.dentry and loc.mount is f.mount


# -- procfs: root ---------------------------------------------------------------------------


def test_proc_root_listing_and_self(sb: Sandbox) -> None:
    child = sb.new_process(5, sb.init.tg, [b"sh"], b"sh")
    names = sb.names(b"/proc")
    for n in (b"self", b"thread-self", b"cpuinfo", b"meminfo", b"mounts", b"loadavg",
              b"uptime", b"version", b"filesystems", b"stat", b"sys", b"1", b"5"):
        assert n in names
    assert sb.walk(b"/proc/self", follow=False).inode.readlink() == b"1"
    sb.kernel.current = child
    assert sb.walk(b"/proc/self", follow=False).inode.readlink() == b"5"
    assert sb.walk(b"/proc/thread-self", follow=False).inode.readlink() == b"5/task/5"
    assert sb.walk(b"/proc/self").inode is not None
    assert sb.read(b"/proc/self/comm") == b"sh\n"
    sb.kernel.current = None
    assert errno_of(sb.walk, b"/proc/self/stat") == Errno.ENOENT


def test_proc_nonexistent_pids(sb: Sandbox) -> None:
    for p in (b"/proc/2", b"/proc/01", b"/proc/99999999999", b"/proc/x"):
        assert errno_of(sb.walk, p) == Errno.ENOENT


def test_proc_dentries_not_cached(sb: Sandbox) -> None:
    sb.walk(b"/proc/1/stat")
    proc_mount = sb.ns.mounts[1]
    assert not proc_mount.root.children
    assert sb.procfs.cache_dentries is False


def test_proc_global_files(sb: Sandbox) -> None:
    assert b"processor" in sb.read(b"/proc/cpuinfo")
    mem = sb.read(b"/proc/meminfo").decode()
    assert mem.startswith("MemTotal:") and "MemAvailable:" in mem and " kB\n" in mem
    la = sb.read(b"/proc/loadavg").split()
    assert la[:3] == [b"0.00"] * 3 and la[3] == b"1/1" and la[4] == b"1"
    up = sb.read(b"/proc/uptime").split()
    assert len(up) == 2 and float(up[0]) > 0
    assert sb.read(b"/proc/version").startswith(b"Linux version 6.0.0-pyvisor ")
    assert b"nodev\tproc\n" in sb.read(b"/proc/filesystems")
    st = sb.read(b"/proc/stat").decode()
    assert st.startswith("cpu  ") and "\nbtime " in st and "\ncpu0 " in st


def test_proc_mounts(sb: Sandbox) -> None:
    assert sb.walk(b"/proc/mounts", follow=False).inode.readlink() == b"self/mounts"
    lines = sb.read(b"/proc/mounts").decode().splitlines()
    assert lines == ["rootfs / tmpfs rw 0 0", "proc /proc proc rw,nosuid 0 0",
                     "dev /dev tmpfs rw 0 0"]
    info = sb.read(b"/proc/self/mountinfo").decode().splitlines()
    assert len(info) == 3
    f = info[1].split()
    assert f[0] == "2" and f[1] == "1" and f[4] == "/proc" and f[6] == "-" and f[7] == "proc"


def test_proc_sys(sb: Sandbox) -> None:
    assert sb.read(b"/proc/sys/kernel/hostname") == b"box\n"
    sb.kernel.hostname = b"other"
    assert sb.read(b"/proc/sys/kernel/hostname") == b"other\n"
    assert sb.read(b"/proc/sys/kernel/ostype") == b"Linux\n"
    assert sb.read(b"/proc/sys/kernel/osrelease") == b"6.0.0-pyvisor\n"
    assert sb.read(b"/proc/sys/kernel/pid_max") == b"4194304\n"
    assert sb.read(b"/proc/sys/kernel/ngroups_max") == b"65536\n"
    assert sb.read(b"/proc/sys/vm/overcommit_memory") == b"0\n"
    assert sb.read(b"/proc/sys/fs/nr_open") == b"1048576\n"
    assert b"kernel" in sb.names(b"/proc/sys")
    assert errno_of(sb.open, b"/proc/sys/kernel/hostname", O_WRONLY) == Errno.EACCES
    f = sb.open(b"/proc/sys/kernel/hostname")
    assert errno_of(f.impl.write, f, sb.init, b"x", 0) == Errno.EACCES
    assert errno_of(sb.walk, b"/proc/sys/kernel/nope") == Errno.ENOENT


# -- procfs: per process --------------------------------------------------------------------


def test_proc_pid_stat(sb: Sandbox) -> None:
    tg = sb.init.tg
    tg.sighand.actions[13] = SigAction(handler=1)       # SIGPIPE ignored
    tg.sighand.actions[2] = SigAction(handler=0x1234)   # SIGINT caught
    sb.init.sigmask = 1 << 9
    child = sb.new_process(7, tg, [b"a b"], b"a) b")
    sb.kernel.current = child
    data = sb.read(b"/proc/1/stat").decode()
    assert data.endswith("\n")
    head, _, rest = data.rpartition(")")
    assert head == "1 (init"
    fields = [head.split()[0], "(init)"] + rest.split()
    assert len(fields) == 52
    assert fields[2] == "S" and fields[3] == "0" and fields[4] == "1" and fields[5] == "1"
    assert fields[19] == "1"                                  # num_threads
    assert int(fields[22]) == 0x1000 + 0x2000 + 0x10000      # vsize
    assert int(fields[31]) == 1 << 9                          # blocked
    assert int(fields[32]) == 1 << 12 and int(fields[33]) == 1 << 1
    assert int(fields[37]) == 17                              # exit_signal
    cdata = sb.read(b"/proc/7/stat").decode()
    assert cdata.startswith("7 (a) b) R 1 7 1 ")             # the reader runs


def test_proc_pid_status(sb: Sandbox) -> None:
    sb.init.tg.sighand.actions[15] = SigAction(handler=1)
    st = dict(line.split(":\t", 1) for line in sb.read(b"/proc/1/status").decode().splitlines())
    assert st["Name"] == "init" and st["Umask"] == "0022" and st["State"] == "R (running)"
    assert st["Tgid"] == "1" and st["Pid"] == "1" and st["PPid"] == "0"
    assert st["TracerPid"] == "0" and st["Uid"] == "0\t0\t0\t0" and st["Gid"] == "0\t0\t0\t0"
    assert st["Groups"] == "0 10 " and st["Threads"] == "1" and st["Seccomp"] == "0"
    assert st["SigIgn"] == f"{1 << 14:016x}" and len(st["SigPnd"]) == 16
    assert st["VmSize"].strip() == "76 kB"
    assert "Cpus_allowed" in st and st["FDSize"] == "64"


def test_proc_cmdline_environ_comm(sb: Sandbox) -> None:
    assert sb.read(b"/proc/1/cmdline") == b"/bin/init\0-x\0"
    assert sb.read(b"/proc/1/environ") == b"A=1\0B=2\0"
    assert sb.read(b"/proc/1/comm") == b"init\n"
    assert sb.walk(b"/proc/1/environ").inode.mode & 0o777 == 0o400
    f = sb.open(b"/proc/1/comm", O_WRONLY)
    assert f.impl.write(f, sb.init, b"renamed-to-a-very-long-name\n", 0) == 28
    assert sb.read(b"/proc/1/comm") == b"renamed-to-a-ve\n"
    assert sb.init.tg.comm == b"renamed-to-a-ve"
    assert sb.read(b"/proc/1/auxv")[:1] == b"\x06"
    assert sb.read(b"/proc/1/oom_score_adj") == b"0\n"
    f = sb.open(b"/proc/1/oom_score_adj", O_WRONLY)
    assert f.impl.write(f, sb.init, b"-500\n", 0) == 5
    assert sb.read(b"/proc/1/oom_score_adj") == b"-500\n"
    assert errno_of(f.impl.write, f, sb.init, b"5000", 0) == Errno.EINVAL
    assert sb.read(b"/proc/1/cgroup") == b"0::/\n"


def test_proc_magic_links(sb: Sandbox) -> None:
    exe = sb.walk(b"/proc/1/exe", follow=False).inode
    assert exe.is_symlink() and exe.readlink() == b"/tmp/f"
    assert sb.walk(b"/proc/1/exe").inode is sb.tmp_file
    assert sb.walk(b"/proc/1/cwd", follow=False).inode.readlink() == b"/tmp"
    assert sb.walk(b"/proc/1/root", follow=False).inode.readlink() == b"/"
    assert sb.walk(b"/proc/self/cwd/f").inode is sb.tmp_file
    sb.init.tg.exe = None
    assert errno_of(sb.walk, b"/proc/1/exe") == Errno.ENOENT


def test_proc_fd_and_fdinfo(sb: Sandbox) -> None:
    f = sb.open(b"/tmp/f", O_RDWR)
    f.offset = 42
    sb.init.fd_table.install_at(3, f, cloexec=True)
    null = sb.open(b"/dev/null", O_WRONLY)
    sb.init.fd_table.install_at(1, null)
    pipe_inode = Inode(sb.devfs, 0o10600)
    anon = Dentry(b"pipe:[99]", None, pipe_inode)
    sb.init.fd_table.install_at(4, FileDescription(Mount(sb.devfs, anon), anon, O_RDONLY))
    assert sb.names(b"/proc/1/fd") == [b"1", b"3", b"4"]
    assert sb.names(b"/proc/self/fdinfo") == [b"1", b"3", b"4"]
    link = sb.walk(b"/proc/1/fd/3", follow=False).inode
    assert link.mode == S_IFLNK | 0o700 and link.readlink() == b"/tmp/f"
    assert sb.walk(b"/proc/1/fd/1", follow=False).inode.mode == S_IFLNK | 0o300
    assert sb.walk(b"/proc/1/fd/1", follow=False).inode.readlink() == b"/dev/null"
    assert sb.walk(b"/proc/1/fd/4", follow=False).inode.readlink() == b"pipe:[99]"
    assert sb.walk(b"/proc/self/fd/3").dentry is f.dentry
    info = sb.read(b"/proc/1/fdinfo/3").decode()
    # open(2) adds O_LARGEFILE (0100000) on 64-bit, as Linux's force_o_largefile.
    assert info.startswith(f"pos:\t42\nflags:\t0{O_RDWR | O_CLOEXEC | 0o100000:o}\n"
                           "mnt_id:\t1\n")
    assert errno_of(sb.walk, b"/proc/1/fd/5") == Errno.ENOENT
    assert errno_of(sb.walk, b"/proc/1/fd/03") == Errno.ENOENT


def test_proc_maps_statm_limits(sb: Sandbox) -> None:
    lines = sb.read(b"/proc/1/maps").decode().splitlines()
    assert lines[0] == "00400000-00401000 r-xp 00000000 08:01 7".ljust(72) + " /tmp/f"
    assert lines[1] == "00600000-00602000 rw-p 00000000 00:00 0 "
    assert lines[2].startswith("7fff0000-80000000 rw-p ") and lines[2].endswith(" [stack]")
    statm = sb.read(b"/proc/1/statm").split()
    assert len(statm) == 7 and statm[0] == b"19"
    lim = sb.read(b"/proc/1/limits").decode().splitlines()
    assert lim[0].split() == ["Limit", "Soft", "Limit", "Hard", "Limit", "Units"]
    assert len(lim) == 17
    assert lim[8].startswith("Max open files            1024                 4096 ")


def test_proc_task_dir(sb: Sandbox) -> None:
    tg = sb.init.tg
    t2 = sb.new_thread(tg, 2)
    t2.name = b"worker"
    assert sb.names(b"/proc/1/task") == [b"1", b"2"]
    assert sb.read(b"/proc/1/task/2/comm") == b"worker\n"
    assert sb.read(b"/proc/1/task/2/stat").startswith(b"2 (worker) ")
    st = sb.read(b"/proc/1/task/2/status").decode()
    assert "\nPid:\t2\n" in st and "\nTgid:\t1\n" in st and "\nThreads:\t2\n" in st
    assert b"task" not in sb.names(b"/proc/1/task/2")
    # A non-leader thread is reachable as /proc/TID but not listed.
    assert b"2" not in sb.names(b"/proc")
    assert sb.read(b"/proc/2/stat").startswith(b"2 (worker) ")
    assert errno_of(sb.walk, b"/proc/1/task/3") == Errno.ENOENT


def test_proc_zombie_and_reaped(sb: Sandbox) -> None:
    child = sb.new_process(9, sb.init.tg, [b"z"], b"z")
    tg = child.tg
    pdir = sb.walk(b"/proc/9")
    child.exited = True
    tg.tasks.remove(child)
    tg.zombie = True
    tg.exit_code = 3 << 8
    assert b"9" in sb.names(b"/proc")
    stat_fields = sb.read(b"/proc/9/stat").decode().split()
    assert stat_fields[2] == "Z" and stat_fields[-1] == str(3 << 8)
    assert sb.read(b"/proc/9/cmdline") == b""
    assert sb.names(b"/proc/9/fd") == []
    del sb.kernel.groups[9]
    tg.reaped = True
    assert b"9" not in sb.names(b"/proc")
    assert errno_of(sb.walk, b"/proc/9") == Errno.ENOENT
    # A directory held open across the death sees nothing in it any more: ESRCH, as
    # Linux's readlinkat/openat in a stale /proc/PID (gVisor's ProcPidSymlink tests).
    assert errno_of(pdir.inode.lookup, b"stat") == Errno.ESRCH


def test_proc_readdir_inodes_are_stable(sb: Sandbox) -> None:
    a = {e.name: e.ino for e in sb.walk(b"/proc/1").inode.readdir()}
    b = {e.name: e.ino for e in sb.walk(b"/proc/1").inode.readdir()}
    assert a == b and len(set(a.values())) == len(a)
    assert sb.walk(b"/proc/1/stat").inode.ino == a[b"stat"]
    assert sb.walk(b"/proc/1/stat").inode.mode == S_IFREG | 0o444


def test_snapshot_file_offsets() -> None:
    impl = SnapshotFileImpl(b"hello world")
    fd: Any = None
    assert impl.read(fd, None, 5, 0) == b"hello"  # type: ignore[arg-type]
    assert impl.read(fd, None, 100, 6) == b"world"  # type: ignore[arg-type]
    assert impl.read(fd, None, 5, 11) == b""  # type: ignore[arg-type]
    assert impl.seekable
    assert errno_of(impl.write, fd, None, b"x", 0) == Errno.EINVAL


# -- host files -----------------------------------------------------------------------------


class FakeTask:
    """copy_in/copy_out against a dict of buffers, and a kernel with init."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.mem: dict[int, bytes] = {}

    def copy_out(self, addr: int, data: bytes) -> None:
        if addr == 0:
            raise SyscallError(Errno.EFAULT)
        self.mem[addr] = bytes(data)

    def copy_in(self, addr: int, n: int) -> bytes:
        if addr not in self.mem:
            raise SyscallError(Errno.EFAULT)
        return self.mem[addr][:n]


class FakeLoop:
    """The fd-watching part of Kernel (watch_fd, unwatch_fd, its _poll), fired by hand."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.fd_watchers: dict[int, tuple[int, Any]] = {}
        self.init = types.SimpleNamespace(pgid=1, sid=1)

    watch_fd = Kernel.watch_fd
    unwatch_fd = Kernel.unwatch_fd

    @property
    def watchers(self) -> dict[int, tuple[int, Any]]:
        return self.fd_watchers

    def poll(self, timeout: float = 0) -> None:
        for fd, ev in self.epoll.poll(timeout):
            w = self.fd_watchers.pop(fd, None)
            if w is not None:
                w[1](ev)


def test_host_pipe_read_write_and_wait() -> None:
    loop = FakeLoop()
    r, w = os.pipe()
    rf = host_file(loop, r, O_RDONLY)
    wf = host_file(loop, w, O_WRONLY)
    t = FakeTask(loop)
    assert stat.S_ISFIFO(rf.inode.mode) and rf.dentry.name.startswith(b"pipe:[")
    assert not rf.impl.seekable
    with pytest.raises(WouldBlock):
        rf.impl.read(rf, t, 10, 0)  # type: ignore[arg-type]
    assert rf.impl.readiness(rf, EVENT_IN) == 0
    q = rf.impl.waitq(rf)
    woken: list[int] = []
    q.add(Waiter(EVENT_IN, woken.append))
    loop.poll()
    assert woken == []
    assert wf.impl.readiness(wf, EVENT_OUT) == EVENT_OUT
    assert wf.impl.write(wf, t, b"hello", 0) == 5  # type: ignore[arg-type]
    loop.poll()
    assert woken and woken[0] & EVENT_IN
    assert rf.impl.readiness(rf, EVENT_IN | EVENT_OUT) == EVENT_IN
    rf.impl.ioctl(rf, t, hostfs.FIONREAD, 0x100)  # type: ignore[arg-type]
    assert struct.unpack("<i", t.mem[0x100]) == (5,)
    assert rf.impl.read(rf, t, 3, 0) == b"hel"  # type: ignore[arg-type]
    assert rf.impl.read(rf, t, 10, 0) == b"lo"  # type: ignore[arg-type]
    assert errno_of(rf.impl.ioctl, rf, t, hostfs.TCGETS, 0x100) == Errno.ENOTTY
    wf.decref()
    assert rf.impl.read(rf, t, 10, 0) == b""  # EOF, not WouldBlock  # type: ignore[arg-type]
    rf.decref()
    for fd in (r, w):
        with pytest.raises(OSError):
            os.fstat(fd)


def test_host_pipe_full_write_is_short() -> None:
    loop = FakeLoop()
    r, w = os.pipe()
    wf = host_file(loop, w, O_WRONLY)
    t = FakeTask(loop)
    big = b"x" * (1 << 20)
    n = wf.impl.write(wf, t, big, 0)  # type: ignore[arg-type]
    assert 0 < n < len(big)
    with pytest.raises(WouldBlock):
        wf.impl.write(wf, t, big, 0)  # type: ignore[arg-type]
    wf.decref()
    os.close(r)


def test_host_regular_file() -> None:
    loop = FakeLoop()
    with tempfile.TemporaryFile() as tf:
        tf.write(b"0123456789")
        tf.flush()
        os.lseek(tf.fileno(), 4, os.SEEK_SET)
        fd = host_file(loop, os.dup(tf.fileno()), O_RDWR)
        t = FakeTask(loop)
        assert fd.impl.seekable and fd.impl.keeps_position and fd.offset == 4
        assert stat.S_ISREG(fd.inode.mode) and fd.inode.size() == 10
        # At the current position: the host fd's own offset, shared with the caller.
        assert fd.impl.read(fd, t, 3, AT_POSITION) == b"456"  # type: ignore[arg-type]
        assert os.lseek(tf.fileno(), 0, os.SEEK_CUR) == 7 and fd.offset == 7
        os.lseek(tf.fileno(), 8, os.SEEK_SET)      # the caller moves it: we follow
        assert fd.offset == 8
        assert fd.impl.write(fd, t, b"AB", AT_POSITION) == 2  # type: ignore[arg-type]
        assert os.pread(tf.fileno(), 20, 0) == b"01234567AB"
        assert fd.offset == 10
        # Positional (pread/pwrite) leaves it alone; setting the offset is lseek.
        assert fd.impl.read(fd, t, 2, 0) == b"01"  # type: ignore[arg-type]
        assert fd.offset == 10
        fd.offset = 2
        assert os.lseek(tf.fileno(), 0, os.SEEK_CUR) == 2
        assert fd.impl.readiness(fd, EVENT_IN | EVENT_OUT) == EVENT_IN | EVENT_OUT
        fd.impl.waitq(fd)          # regular files never need a watch
        assert loop.watchers == {}
        fd.decref()


def test_host_char_device_stat_matches_dev_null(sb: Sandbox) -> None:
    loop = FakeLoop()
    fd = host_file(loop, os.open("/dev/null", os.O_RDONLY), O_RDONLY)
    assert fd.inode.mode & 0o170000 == S_IFCHR
    assert fd.inode.rdev == sb.walk(b"/dev/null").inode.rdev
    st = fd.inode.stat_bytes()
    assert len(st) == 144
    t = FakeTask(loop)
    assert errno_of(fd.impl.ioctl, fd, t, hostfs.TCGETS, 0x100) == Errno.ENOTTY
    assert fd.impl.read(fd, t, 10, 0) == b""  # type: ignore[arg-type]
    fd.impl.waitq(fd)           # epoll refuses /dev/null: always ready, no watch
    fd.decref()


def test_host_tty_ioctls() -> None:
    loop = FakeLoop()
    master, slave = os.openpty()
    try:
        fd = host_file(loop, slave, O_RDWR)
        t = FakeTask(loop)
        assert fd.impl.ioctl(fd, t, hostfs.TCGETS, 0x10) == 0  # type: ignore[arg-type]
        assert len(t.mem[0x10]) == 36
        assert fd.impl.ioctl(fd, t, hostfs.TCSETS, 0x10) == 0  # type: ignore[arg-type]
        t.mem[0x20] = struct.pack("<HHHH", 24, 80, 0, 0)
        assert fd.impl.ioctl(fd, t, hostfs.TIOCSWINSZ, 0x20) == 0  # type: ignore[arg-type]
        fd.impl.ioctl(fd, t, hostfs.TIOCGWINSZ, 0x30)  # type: ignore[arg-type]
        assert struct.unpack("<HHHH", t.mem[0x30])[:2] == (24, 80)
        fd.impl.ioctl(fd, t, hostfs.TIOCGPGRP, 0x40)  # type: ignore[arg-type]
        assert struct.unpack("<i", t.mem[0x40]) == (1,)
        t.mem[0x50] = struct.pack("<i", 42)
        fd.impl.ioctl(fd, t, hostfs.TIOCSPGRP, 0x50)  # type: ignore[arg-type]
        fd.impl.ioctl(fd, t, hostfs.TIOCGPGRP, 0x40)  # type: ignore[arg-type]
        assert struct.unpack("<i", t.mem[0x40]) == (42,)
        assert errno_of(fd.impl.ioctl, fd, t, hostfs.TCGETS, 0) == Errno.EFAULT
        assert errno_of(fd.impl.ioctl, fd, t, 0x5499, 0x10) == Errno.ENOTTY
        # Terminal input wakes a reader through the epoll watch.
        with pytest.raises(WouldBlock):
            fd.impl.read(fd, t, 10, 0)  # type: ignore[arg-type]
        woken: list[int] = []
        q = fd.impl.waitq(fd)
        q.add(Waiter(EVENT_IN, woken.append))
        loop.poll()   # a tty is writable at once: the watch fires, the reader stays queued
        assert woken == [] and q.waiters
        os.write(master, b"typed\n")
        loop.poll(5)   # the pty delivers input to the line discipline asynchronously
        assert woken
        assert fd.impl.read(fd, t, 100, 0) == b"typed\n"  # type: ignore[arg-type]
        fd.decref()
    finally:
        os.close(master)
