"""procfs: processes and kernel state as files.  Linux: fs/proc/ (base.c, array.c,
task_mmu.c, fd.c, proc_sysctl.c).

Everything here is synthetic and made on demand: a lookup builds a fresh
inode from the kernel's current state, and the filesystem turns off the
dentry cache (`cache_dentries = False`) so that a dead pid never lingers.
Inode numbers are a hash of the file's path, so they are stable for the life
of a process without keeping any table.

File contents are generated once, at open, into a `SnapshotFileImpl`, so
reads at any offset see one consistent snapshot (Linux's seq_file gives the
same guarantee per read call; programs that read in pieces prefer ours).

/proc/self and /proc/thread-self need the task reading them, which
`Inode.readlink` does not receive: the syscall layer sets `kernel.current`
to the task being served, and we read it.  Magic links (exe, cwd, root,
fd/N) resolve through `magic_link(t)` to the (mount, dentry) they name.

Differences from Linux: no ptrace-access checks on magic links or environ
beyond file modes; /proc/sys is read-only (EACCES on writes) but for the
network stack's net.* sysctls (kernel/sysctl.py WRITABLE), which root may write;
cmdline/environ come from the argv/envp given to execve, not from the
process's memory, so setproctitle is not reflected.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Iterable

try:    # hashlib.blake2b itself, without hashlib's load of OpenSSL (~3 ms of every start-up)
    from _blake2 import blake2b
except ImportError:     # pragma: no cover - an interpreter without CPython's own module
    from hashlib import blake2b

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.sched import SCHED_DEADLINE, SCHED_FIFO, SCHED_RR
from pyvisor.abi.linux.fcntl import O_ACCMODE, O_CLOEXEC, O_RDONLY, O_RDWR, O_WRONLY
from pyvisor.abi.linux.stat import PROC_SUPER_MAGIC, S_IFDIR, S_IFLNK, S_IFREG, dtype_of
from pyvisor.sentry.kernel import cputime
from pyvisor.sentry.kernel import ptrace, seccomp
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel import sysctl
from pyvisor.sentry.socket.netstack.ipv4 import FRAG_TIMEOUT_NS
from pyvisor.sentry.kernel.ipc import proc as ipc_proc
from pyvisor.sentry.kernel.namespaces import UTS_EVENTS
from pyvisor.sentry.vfs import inotify
from pyvisor.sentry.vfs.file import DirectoryImpl, FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import DirEntry, Filesystem, Inode
from pyvisor.sentry.vfs.vfs import Location, Mount, path_of

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task, ThreadGroup

# What uname(2) reports (sys_process.sys_uname); /proc/version and
# /proc/sys/kernel/os* must agree with it.
OSTYPE = b"Linux"
OSRELEASE = b"6.0.0-pyvisor"
KVERSION = b"#1 SMP PREEMPT pyvisor"

USER_HZ = 100
_NS_PER_TICK = 10**9 // USER_HZ
PAGE = 4096
RLIM_INFINITY = (1 << 64) - 1
CAP_LAST_CAP = 40
PID_MAX = 4194304

_PROT_READ, _PROT_WRITE, _PROT_EXEC = 1, 2, 4

# /proc/filesystems.
_FILESYSTEMS = b"".join(b"%s\t%s\n" % (b"nodev" if nodev else b"", name) for nodev, name in [
    (True, b"sysfs"), (True, b"tmpfs"), (True, b"proc"), (True, b"devtmpfs"),
    (True, b"devpts"), (True, b"overlay"), (True, b"9p"), (True, b"pipefs"),
    (True, b"sockfs"), (True, b"anon_inodefs"), (True, b"mqueue"), (False, b"ext4")])

# /proc/cmdline: the sandbox's "kernel command line".
_CMDLINE = b"BOOT_IMAGE=/pyvisor ro\n"

# /proc/devices: the device majors the sandbox's nodes use (fs/proc/devices.c).
_DEVICES = (b"Character devices:\n  1 mem\n  4 /dev/vc/0\n  4 tty\n  5 /dev/tty\n"
            b"  5 /dev/console\n  5 /dev/ptmx\n136 pts\n\nBlock devices:\n")

# Resource limit names and units.  From fs/proc/base.c (lnames).
_LIMIT_NAMES: list[tuple[str, str]] = [
    ("Max cpu time", "seconds"), ("Max file size", "bytes"), ("Max data size", "bytes"),
    ("Max stack size", "bytes"), ("Max core file size", "bytes"),
    ("Max resident set", "bytes"), ("Max processes", "processes"),
    ("Max open files", "files"), ("Max locked memory", "bytes"),
    ("Max address space", "bytes"), ("Max file locks", "locks"),
    ("Max pending signals", "signals"), ("Max msgqueue size", "bytes"),
    ("Max nice priority", ""), ("Max realtime priority", ""), ("Max realtime timeout", "us"),
]

# -- the filesystem ----------------------------------------------------------------------


class ProcFS(Filesystem):
    """One procfs instance.  Host facts it shows are captured at creation,
    before the Sentry loses access to the host's /proc."""

    name = "proc"
    magic = PROC_SUPER_MAGIC
    cache_dentries = False

    def __init__(self, kernel: Any) -> None:
        super().__init__()
        self.kernel = kernel
        try:
            self.ncpu = len(os.sched_getaffinity(0))
        except OSError:
            self.ncpu = os.cpu_count() or 1
        self.cpuinfo = _read_host(b"/proc/cpuinfo") or _synth_cpuinfo(self.ncpu)
        self.mem = _host_meminfo()
        boot_ns = int(getattr(kernel, "boot_ns", time.monotonic_ns()))
        self.btime = int(time.time() - (time.monotonic_ns() - boot_ns) / 1e9)
        self.boot_id = _uuid4().encode()

    def ino(self, key: str) -> int:
        """A stable inode number for the file at `key` (a path inside /proc)."""
        return int.from_bytes(blake2b(key.encode(), digest_size=7).digest(), "little") \
            | 0x100


def _uuid4() -> str:
    """A random (version 4) UUID as text: uuid.uuid4(), without importing uuid and the
    platform module it pulls in (~2 ms of every start-up)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _read_host(path: bytes) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _synth_cpuinfo(ncpu: int) -> bytes:
    return b"".join(b"processor\t: %d\nvendor_id\t: GenuineIntel\nmodel name\t: pyvisor vCPU\n"
                    b"cpu MHz\t\t: 2000.000\ncache size\t: 4096 KB\nphysical id\t: 0\n"
                    b"siblings\t: %d\ncore id\t\t: %d\ncpu cores\t: %d\n"
                    b"flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2\n\n"
                    % (i, ncpu, i, ncpu) for i in range(ncpu))


def _host_meminfo() -> dict[str, int]:
    """kB values of the host's /proc/meminfo we pass through (with fallbacks)."""
    mem = {"MemTotal": 2 << 20, "MemFree": 1 << 20, "MemAvailable": 1 << 20}
    for line in _read_host(b"/proc/meminfo").decode(errors="replace").splitlines():
        key, _, rest = line.partition(":")
        if key in mem:
            try:
                mem[key] = int(rest.split()[0])
            except (IndexError, ValueError):
                pass
    return mem


# -- generic files -----------------------------------------------------------------------


Generator = Callable[[], bytes]


class SnapshotFileImpl(FileImpl):
    """An open generated file: bytes fixed at open, read at any offset.

    Writes go to `writer` if the file has one, else fail with `write_errno`.
    """

    seekable = True
    llseek = "noend"             # Linux: seq_lseek

    def __init__(self, data: bytes | None, writer: Callable[[bytes], int] | None = None,
                 write_errno: int = Errno.EINVAL, gen: Generator | None = None) -> None:
        self.data = data             # None: made by `gen` at the first read (seq_file)
        self.gen = gen
        self.writer = writer
        self.write_errno = write_errno

    def _contents(self) -> bytes:
        if self.data is None:
            assert self.gen is not None
            try:
                self.data = self.gen()
            except SyscallError as e:
                # The process went away after the open: ESRCH, as Linux's readers.
                raise SyscallError(Errno.ESRCH if e.errno == Errno.ENOENT else e.errno) \
                    from None
        return self.data

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        if n <= 0 or offset < 0:
            return b""
        return self._contents()[offset:offset + n]

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        if self.writer is None:
            raise SyscallError(self.write_errno)
        return self.writer(data)

    def size(self, fd: FileDescription) -> int:
        return len(self._contents())


class ProcFile(Inode):
    """A generated regular file.  Size 0, as Linux's proc files report."""

    __slots__ = ("gen", "writer", "write_errno", "check")

    def __init__(self, fs: ProcFS, ino: int, gen: Generator, mode: int = 0o444,
                 writer: Callable[[bytes], int] | None = None,
                 write_errno: int = Errno.EINVAL, uid: int = 0, gid: int = 0,
                 check: Callable[[], None] | None = None) -> None:
        super().__init__(fs, S_IFREG | mode, uid, gid, ino=ino)
        self.gen = gen
        self.writer = writer
        self.write_errno = write_errno
        self.check = check           # at open: raises (EACCES) if the opener may not read it

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        if self.check is not None:
            self.check()
        acc = flags & O_ACCMODE
        if acc in (O_WRONLY, O_RDWR) and self.writer is None and \
                self.write_errno == Errno.EACCES:
            raise SyscallError(Errno.EACCES)
        if acc not in (O_RDONLY, O_RDWR):
            return SnapshotFileImpl(b"", self.writer, self.write_errno)
        return SnapshotFileImpl(None, self.writer, self.write_errno, self.gen)

    def truncate(self, size: int) -> None:
        """O_TRUNC on a proc file is accepted and does nothing, as on Linux."""


class MountsFileImpl(SnapshotFileImpl):
    """An open /proc/PID/mounts or mountinfo: pollable; EPOLLPRI|EPOLLERR once per
    change of the mount namespace it was opened in (Linux: mounts_poll)."""

    pollable = True

    def __init__(self, gen: Generator, ns: Any, write_errno: int = Errno.EINVAL) -> None:
        super().__init__(None, None, write_errno, gen)
        self.ns = ns
        self.seen = getattr(ns, "event", 0)

    def readiness(self, fd: FileDescription, mask: int) -> int:
        from pyvisor.sentry.waitqueue import EVENT_ERR, EVENT_IN, EVENT_PRI
        ev = EVENT_IN
        now = getattr(self.ns, "event", 0)
        if now != self.seen:
            self.seen = now
            ev |= EVENT_ERR | EVENT_PRI
        return ev & (mask | EVENT_ERR)

    def waitq(self, fd: FileDescription) -> Any:
        wq = getattr(self.ns, "event_wq", None)
        if wq is None:
            from pyvisor.sentry.waitqueue import WaitQueue
            wq = self.ns.event_wq = WaitQueue()
        return wq


class _PolledSysctl:
    """A /proc/sys entry whose readers poll EPOLLERR|EPOLLPRI after a change (Linux:
    proc_sys_poll): contents from `gen`, changes counted by `source`."""

    def __init__(self, gen: Generator, source: Any) -> None:
        self.gen, self.source = gen, source


class _PolledFile(ProcFile):
    __slots__ = ("source",)

    def __init__(self, fs: ProcFS, ino: int, gen: Generator, source: Any,
                 write_errno: int = Errno.EINVAL) -> None:
        super().__init__(fs, ino, gen, write_errno=write_errno)
        self.source = source

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        if flags & O_ACCMODE != O_RDONLY:
            raise SyscallError(self.write_errno)
        return MountsFileImpl(self.gen, self.source, self.write_errno)


class ProcMountsFile(ProcFile):
    """/proc/PID/mounts and mountinfo (see MountsFileImpl)."""

    __slots__ = ("kernel", "subject", "info")

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        """The subject task's mount namespace and root, taken now (Linux:
        mounts_open_common), so the file keeps showing them."""
        if self.check is not None:
            self.check()
        if flags & O_ACCMODE != O_RDONLY:
            raise SyscallError(Errno.EACCES)
        t = self.subject()
        ns = None
        if t is not None:
            from pyvisor.sentry.kernel.namespaces import mount_ns_of
            try:
                ns = mount_ns_of(t)
            except SyscallError:
                ns = None
        if ns is None:
            return SnapshotFileImpl(None, None, Errno.EINVAL, self.gen)
        root = t.fs.root
        kernel = self.kernel
        make = _gen_mountinfo if self.info else _gen_mounts
        return MountsFileImpl(lambda: make(kernel, root, ns), ns)


class MemFileImpl(FileImpl):
    """An open /proc/PID/mem: the offset is the address; reads and writes reach the
    process's memory as a tracer's (kernel/ptrace.py access_vm, FOLL_FORCE)."""

    seekable = True

    def __init__(self, target: Task) -> None:
        self.target = target

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        if n <= 0:
            return b""
        if self.target.exited:
            return b""
        got = ptrace.access_vm(self.target, offset, min(n, 1 << 20), None)
        assert isinstance(got, bytes)
        if not got:
            raise SyscallError(Errno.EIO)
        return got

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        if self.target.exited:
            return 0
        done = ptrace.access_vm(self.target, offset, 0, data)
        assert isinstance(done, int)
        if not done and data:
            raise SyscallError(Errno.EIO)
        return done

    def size(self, fd: FileDescription) -> int:
        raise SyscallError(Errno.EINVAL)     # Linux: mem_lseek takes SEEK_SET/CUR only


class ProcMemFile(Inode):
    """/proc/PID/mem.  Opening it needs ptrace access to the process (EACCES)."""

    __slots__ = ("kernel", "subject")

    def __init__(self, fs: ProcFS, ino: int, subject: Callable[[], Task | None],
                 uid: int, gid: int) -> None:
        super().__init__(fs, S_IFREG | 0o600, uid, gid, ino=ino)
        self.kernel = fs.kernel
        self.subject = subject

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        target = self.subject()
        opener = _current(self.kernel)
        if target is None or getattr(target, "exited", True):
            raise SyscallError(Errno.ESRCH)
        if opener is not None and not ptrace.may_access(opener, target):
            raise SyscallError(Errno.EACCES)
        return MemFileImpl(target)

    def truncate(self, size: int) -> None:
        raise SyscallError(Errno.EINVAL)


class ProcSymlink(Inode):
    """A symlink whose target is computed when read."""

    __slots__ = ("target",)

    def __init__(self, fs: ProcFS, ino: int, target: Generator, perm: int = 0o777,
                 uid: int = 0, gid: int = 0) -> None:
        super().__init__(fs, S_IFLNK | perm, uid, gid, ino=ino)
        self.target = target

    def readlink(self) -> bytes:
        return self.target()


class ProcMagicLink(ProcSymlink):
    """A magic link (exe, cwd, root, fd/N): following it jumps to a Location."""

    __slots__ = ("where",)

    def __init__(self, fs: ProcFS, ino: int, where: Callable[[], Location], target: Generator,
                 perm: int = 0o777, uid: int = 0, gid: int = 0) -> None:
        super().__init__(fs, ino, target, perm, uid, gid)
        self.where = where

    def magic_link(self, t: object) -> object | None:
        return self.where()


Factory = Callable[[], Inode]


class ProcDir(Inode):
    """A directory whose children come from a table of name -> inode factory."""

    __slots__ = ("table",)

    def __init__(self, fs: ProcFS, ino: int, table: Callable[[], dict[bytes, Factory]] | None,
                 perm: int = 0o555, uid: int = 0, gid: int = 0) -> None:
        super().__init__(fs, S_IFDIR | perm, uid, gid, ino=ino)
        self.table = table

    @property
    def pfs(self) -> ProcFS:
        fs = self.fs
        assert isinstance(fs, ProcFS)
        return fs

    def children(self) -> dict[bytes, Factory]:
        return self.table() if self.table is not None else {}

    def lookup(self, name: bytes) -> Inode:
        f = self.children().get(name)
        if f is None:
            raise SyscallError(Errno.ENOENT)
        return f()

    def readdir(self) -> Iterable[DirEntry]:
        out = []
        for name, f in self.children().items():
            try:
                i = f()
            except SyscallError:
                continue
            out.append(DirEntry(name, i.ino, dtype_of(i.mode)))
        return out

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        return DirectoryImpl()

    def rmdir(self, name: bytes) -> None:
        raise SyscallError(Errno.EACCES)     # as Linux reports for procfs entries

    def unlink(self, name: bytes) -> None:
        raise SyscallError(Errno.EACCES)


class Writable:
    """A /proc/sys entry root may write (mode 0644): its generator and its writer."""

    __slots__ = ("gen", "writer")

    def __init__(self, gen: Generator, writer: Callable[[bytes], int]) -> None:
        self.gen, self.writer = gen, writer


def _static_dir(fs: ProcFS, key: str, spec: dict[bytes, Any]) -> ProcDir:
    """A directory tree from a dict: bytes values are fixed file contents,
    callables are generators, dicts are subdirectories, `Writable`s are files
    with a writer.  The rest is read-only (EACCES on opening for writing)."""

    def table() -> dict[bytes, Factory]:
        out: dict[bytes, Factory] = {}
        for name, v in spec.items():
            k = f"{key}/{name.decode()}"
            if isinstance(v, dict):
                out[name] = (lambda k=k, v=v: _static_dir(fs, k, v))
            elif isinstance(v, Writable):
                out[name] = (lambda k=k, v=v: ProcFile(fs, fs.ino(k), v.gen, mode=0o644,
                                                       writer=v.writer))
            elif isinstance(v, _PolledSysctl):
                out[name] = (lambda k=k, v=v: _PolledFile(fs, fs.ino(k), v.gen, v.source,
                                                          write_errno=Errno.EACCES))
            else:
                gen: Generator = v if callable(v) else (lambda v=v: v)
                out[name] = (lambda k=k, gen=gen: ProcFile(fs, fs.ino(k), gen,
                                                           write_errno=Errno.EACCES))
        return out

    return ProcDir(fs, fs.ino(key), table)


# -- kernel state, read defensively ------------------------------------------------------


def _current(kernel: Any) -> Task | None:
    """The task the syscall layer is serving (set by the dispatcher)."""
    return getattr(kernel, "current", None)


def _alive(kernel: Any, tg: ThreadGroup) -> bool:
    if getattr(tg, "reaped", False):
        return False
    groups = getattr(kernel, "groups", {})
    return groups.get(tg.tgid) is tg and (bool(tg.tasks) or getattr(tg, "zombie", False))


def _visible(kernel: Any, tg: ThreadGroup) -> bool:
    """Whether the reader sees `tg` in /proc: a pod member sees its own processes only
    (kernel.task.sees); a read from outside the sandbox (no current task) sees all."""
    cur = _current(kernel)
    return cur is None or getattr(cur.tg, "container", "") == getattr(tg, "container", "")


def _live_tasks(tg: ThreadGroup) -> list[Task]:
    return [t for t in list(tg.tasks) if not getattr(t, "exited", False)]


def _leader(tg: ThreadGroup) -> Task | None:
    tasks = _live_tasks(tg)
    for t in tasks:
        if t.tid == tg.tgid:
            return t
    return tasks[0] if tasks else None


def _check_alive(kernel: Any, tg: ThreadGroup, t: Task | None = None) -> None:
    if not _alive(kernel, tg) or (t is not None and getattr(t, "exited", False)):
        raise SyscallError(Errno.ENOENT)


def _bytes_list(v: Any) -> bytes:
    """argv/environ as NUL-terminated strings, whether stored joined or as a list."""
    if v is None:
        return b""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    return b"".join(bytes(a) + b"\0" for a in v)


def _comm(tg: ThreadGroup, t: Task | None) -> bytes:
    name = getattr(t, "name", b"") if t is not None else b""
    return bytes(name or getattr(tg, "comm", b"") or b"")[:15]


def _escape(b: bytes) -> bytes:
    return b.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")


def _state(kernel: Any, tg: ThreadGroup, t: Task | None) -> tuple[str, str]:
    """(letter, description) as in /proc/PID/stat and status."""
    if getattr(tg, "zombie", False) or t is None:
        return "Z", "zombie"
    if getattr(t, "ptrace", None) is not None and ptrace.stopped(t):
        return "t", "tracing stop"
    if getattr(tg, "stopped", False):
        return "T", "stopped"
    if t is _current(kernel):
        return "R", "running"
    if getattr(t, "coro", None) is not None or getattr(t, "wake", None) is not None:
        return "S", "sleeping"
    thread = getattr(t, "thread", None)
    if thread is not None and getattr(thread, "running", False):
        return "R", "running"
    return "S", "sleeping"


def _tracer_pid(t: Task | None) -> int:
    ps = getattr(t, "ptrace", None)
    return ps.tracer.tid if ps is not None else 0


def _creds(t: Task | None) -> Any:
    return getattr(t, "creds", None) if t is not None else None


def _owner(t: Task | None) -> tuple[int, int]:
    c = _creds(t)
    return (int(getattr(c, "euid", 0)), int(getattr(c, "egid", 0))) if c is not None else (0, 0)


def _sigmasks(tg: ThreadGroup, t: Task | None) -> tuple[int, int, int, int, int]:
    """(thread pending, shared pending, blocked, ignored, caught) as bit masks."""
    ign = cgt = 0
    sighand = getattr(tg, "sighand", None)
    actions = getattr(sighand, "actions", None) or []
    for sig in range(1, min(len(actions), 65)):
        h = getattr(actions[sig], "handler", 0)
        if h == 1:
            ign |= 1 << (sig - 1)
        elif h != 0:
            cgt |= 1 << (sig - 1)
    pnd = int(getattr(t, "pending_mask", 0)) if t is not None else 0
    blk = int(getattr(t, "sigmask", 0)) if t is not None else 0
    return pnd, int(getattr(tg, "pending_mask", 0)), blk, ign, cgt


def _mm(t: Task | None) -> Any:
    return getattr(t, "mm", None) if t is not None else None


def _vmas(mm: Any) -> list[Any]:
    return sorted(getattr(mm, "vmas", None) or [], key=lambda v: v.start) if mm else []


class _MemStats:
    """Rough per-process memory figures (bytes) from the VMA list.

    Residency is unknown to the Sentry, so RSS counts every accessible mapping.
    """

    def __init__(self, mm: Any) -> None:
        self.size = self.rss = self.data = self.stack = self.text = self.shared = 0
        self.locked = 0          # mlock(2)ed (VmLck): counted, not pinned on the host
        for v in _vmas(mm):
            n = v.end - v.start
            perms = int(v.perms)
            self.size += n
            if getattr(v, "locked", 0):
                self.locked += n
            if perms:
                self.rss += n
            name = v.name or b""
            if name == b"[stack]":
                self.stack += n
            elif perms & _PROT_EXEC and getattr(v, "mappable", None) is not None:
                self.text += n
            elif perms & _PROT_WRITE and not v.shared:
                self.data += n
            if v.shared:
                self.shared += n


def _files(t: Task | None) -> dict[int, tuple[FileDescription, bool]]:
    """fd -> (description, cloexec) of the task's fd table."""
    table = getattr(t, "fd_table", None) if t is not None else None
    files = getattr(table, "files", None)
    if not files:
        return {}
    out: dict[int, tuple[FileDescription, bool]] = {}
    for n, e in list(files.items()):
        if isinstance(e, tuple):
            out[n] = (e[0], bool(e[1]) if len(e) > 1 else False)
        else:
            out[n] = (e, False)
    return out


def _reader_root(kernel: Any) -> Location | None:
    cur = _current(kernel)
    fs = getattr(cur, "fs", None) if cur is not None else None
    return getattr(fs, "root", None)


def _namespaces(kernel: Any) -> list[Any]:
    """Every mount namespace: the sandbox's, then its pod members' (runtime/sentry_pod.py)."""
    ns = getattr(kernel, "root_ns", None)
    return ([ns] if ns is not None else []) + list(getattr(kernel, "mount_namespaces", ()))


def _namespace_of(kernel: Any, mount: Mount) -> Any:
    """The mount namespace `mount` is part of, or None (an anonymous pipe/socket/host
    mount)."""
    top = mount
    while top.parent is not None:
        top = top.parent
    own = getattr(top, "ns", None)       # every MountNamespace's root names it
    if own is not None and own.root is top:
        return own
    for ns in _namespaces(kernel):
        if top is getattr(ns, "root", None):
            return ns
    return None


def _is_attached(kernel: Any, mount: Mount) -> bool:
    """Whether `mount` is part of a mount tree (not an anonymous pipe/socket/host mount)."""
    return _namespace_of(kernel, mount) is not None


def _loc_path(kernel: Any, loc: Location) -> bytes:
    if not _is_attached(kernel, loc.mount):
        return loc.dentry.name
    return path_of(loc.mount, loc.dentry, _reader_root(kernel))


def fd_link_name(kernel: Any, f: FileDescription) -> bytes:
    """What readlink(/proc/PID/fd/N) gives: a path, or a name like pipe:[ino]."""
    name = getattr(f.impl, "proc_name", None)
    if callable(name):
        return bytes(name())
    path = _loc_path(kernel, Location(f.mount, f.dentry))
    if inotify.is_unlinked(f.dentry):
        path += b" (deleted)"          # Linux: d_path of an unlinked dentry
    return path


def _mounts(kernel: Any) -> list[Mount]:
    """The mounts of the reader's namespace (a pod member sees its own)."""
    root = _reader_root(kernel)
    ns = _namespace_of(kernel, root.mount) if root is not None else None
    if ns is None:
        ns = getattr(kernel, "root_ns", None)
    return list(getattr(ns, "mounts", None) or [])


def _mount_id(kernel: Any, m: Mount) -> int:
    mid = getattr(m, "id", None)
    if isinstance(mid, int) and mid:
        return mid
    for i, x in enumerate(_mounts(kernel)):
        if x is m:
            return i + 1
    return 0


def _mangle(b: bytes) -> bytes:
    """Escapes as Linux's mangle() does for /proc/mounts fields."""
    out = bytearray()
    for c in b:
        if c in b" \t\n\\":
            out += b"\\%03o" % c
        else:
            out.append(c)
    return bytes(out)


def _mountpoint(m: Mount, root: Location | None) -> bytes:
    if root is not None:
        return path_of(m, m.root, root)     # d_path of the mount's root, below `root`
    if m.parent is None or m.mountpoint is None:
        return b"/"
    return path_of(m.parent, m.mountpoint, root)


def _mount_visible(m: Mount, root: Location | None) -> bool:
    """Whether mount `m` is at or below the reader's root (Linux: seq_path_root gives
    SEQ_SKIP for the others, so a chroot hides the mounts outside it)."""
    if root is None:
        return True
    x, d = m, m.root
    while x is not root.mount:
        if x.parent is None or x.mountpoint is None:
            return False
        x, d = x.parent, x.mountpoint
    while d is not None:
        if d is root.dentry:
            return True
        d = d.parent
    return False


# -- generated contents ------------------------------------------------------------------


def _prio_nice(t: Task | None) -> tuple[int, int]:
    """stat's priority and nice: task_prio (prio - MAX_RT_PRIO) and task_nice."""
    if t is None:
        return 20, 0
    s = t.sched
    if s.policy == SCHED_DEADLINE:
        return -101, t.nice
    if s.policy in (SCHED_FIFO, SCHED_RR):
        return -1 - s.rt_priority, t.nice
    return 20 + t.nice, t.nice


def _affinity(t: Task | None, ncpu: int) -> int:
    return (1 << ncpu) - 1 if t is None else t.sched.affinity & ((1 << ncpu) - 1)


def _cpu_list(mask: int) -> str:
    """A CPU mask as ranges ("0-2,5"), as bitmap_print_list_to_buf prints it."""
    out, i = [], 0
    while mask >> i:
        if mask >> i & 1:
            j = i
            while mask >> (j + 1) & 1:
                j += 1
            out.append(str(i) if i == j else f"{i}-{j}")
            i = j + 1
        else:
            i += 1
    return ",".join(out)


def _rt_policy(t: Task | None) -> tuple[int, int]:
    """stat's rt_priority and policy."""
    return (0, 0) if t is None else (t.sched.rt_priority, t.sched.policy)


def _gen_stat(kernel: Any, tg: ThreadGroup, t: Task | None, pid: int) -> bytes:
    """/proc/PID/stat: 52 fields.  Linux: fs/proc/array.c do_task_stat."""
    _check_alive(kernel, tg)
    letter, _ = _state(kernel, tg, t)
    parent = getattr(tg, "parent", None)
    ppid = parent.tgid if parent is not None else 0
    mm = _mm(t)
    ms = _MemStats(mm)
    pnd, shd, blk, ign, cgt = _sigmasks(tg, t)
    boot_ns = int(getattr(kernel, "boot_ns", 0))
    start_ns = int(getattr(tg, "start_ns", 0) or 0)
    start = max(0, start_ns - boot_ns) // _NS_PER_TICK if start_ns >= boot_ns else 0
    exit_code = getattr(tg, "exit_code", None)
    g = (lambda name: int(getattr(mm, name, 0) or 0)) if mm is not None else (lambda name: 0)
    utime, stime = cputime.group_times(tg)
    fields = [
        letter, ppid, getattr(tg, "pgid", 0), getattr(tg, "sid", 0),
        0, -1, 0x400000,                          # tty_nr, tpgid, flags (PF_RANDOMIZE)
        0, 0, 0, 0,                               # minflt cminflt majflt cmajflt
        utime // _NS_PER_TICK, stime // _NS_PER_TICK,
        tg.children_utime_ns // _NS_PER_TICK, tg.children_stime_ns // _NS_PER_TICK,
        *_prio_nice(t), len(_live_tasks(tg)), 0, start,   # ... threads itrealvalue start
        ms.size, ms.rss // PAGE, RLIM_INFINITY,
        g("start_code"), g("end_code"), g("start_stack"), 0, 0,
        pnd | shd, blk, ign, cgt,
        0, 0, 0, int(getattr(tg, "exit_signal", 17)), 0, *_rt_policy(t), 0, 0, 0,
        g("start_data"), g("end_data"), g("brk_start"),
        g("argv_start"), g("argv_end"), g("env_start"), g("env_end"),
        exit_code if exit_code is not None and getattr(tg, "zombie", False) else 0,
    ]
    body = b" ".join(str(x).encode() for x in fields)
    return b"%d (%s) %s\n" % (pid, _comm(tg, t), body)


def _gen_status(kernel: Any, fs: ProcFS, tg: ThreadGroup, t: Task | None, pid: int) -> bytes:
    """/proc/PID/status.  Linux: fs/proc/array.c proc_pid_status."""
    _check_alive(kernel, tg)
    letter, desc = _state(kernel, tg, t)
    parent = getattr(tg, "parent", None)
    c = _creds(t)
    ids = lambda *names: "\t".join(str(getattr(c, n, 0)) if c is not None else "0"
                                   for n in names)
    groups = " ".join(str(x) for x in (getattr(c, "groups", ()) if c is not None else ()))
    files = _files(t)
    fdsize = 64
    while files and fdsize <= max(files):
        fdsize *= 2
    umask = getattr(getattr(t, "fs", None), "umask", 0o022) if t is not None else 0o022
    lines = [
        f"Name:\t{_escape(_comm(tg, t)).decode(errors='replace')}",
        f"Umask:\t{umask:04o}",
        f"State:\t{letter} ({desc})",
        f"Tgid:\t{tg.tgid}",
        "Ngid:\t0",
        f"Pid:\t{pid}",
        f"PPid:\t{parent.tgid if parent is not None else 0}",
        f"TracerPid:\t{_tracer_pid(t)}",
        f"Uid:\t{ids('uid', 'euid', 'suid', 'fsuid')}",
        f"Gid:\t{ids('gid', 'egid', 'sgid', 'fsgid')}",
        f"FDSize:\t{fdsize}",
        f"Groups:\t{groups} ",
        f"NStgid:\t{tg.tgid}",
        f"NSpid:\t{pid}",
        f"NSpgid:\t{getattr(tg, 'pgid', 0)}",
        f"NSsid:\t{getattr(tg, 'sid', 0)}",
    ]
    mm = _mm(t)
    if mm is not None and letter != "Z":
        ms = _MemStats(mm)
        kb = lambda n: f"{n // 1024:8d} kB"
        lines += [
            f"VmPeak:\t{kb(ms.size)}", f"VmSize:\t{kb(ms.size)}", f"VmLck:\t{kb(ms.locked)}",
            f"VmPin:\t{kb(0)}", f"VmHWM:\t{kb(ms.rss)}", f"VmRSS:\t{kb(ms.rss)}",
            f"RssAnon:\t{kb(ms.rss - ms.text - ms.shared if ms.rss > ms.text + ms.shared else 0)}",
            f"RssFile:\t{kb(ms.text)}", f"RssShmem:\t{kb(ms.shared)}",
            f"VmData:\t{kb(ms.data)}", f"VmStk:\t{kb(ms.stack)}", f"VmExe:\t{kb(ms.text)}",
            f"VmLib:\t{kb(0)}", f"VmPTE:\t{kb(0)}", f"VmSwap:\t{kb(0)}",
            "HugetlbPages:\t       0 kB",
        ]
    pnd, shd, blk, ign, cgt = _sigmasks(tg, t)
    rl = getattr(tg, "rlimits", None)
    sigq_max = rl[11][0] if rl and len(rl) > 11 else 63704
    npending = sum(len(v) for v in (getattr(tg, "pending", None) or {}).values())
    cap_eff, cap_prm, cap_inh = c.cap_sets() if c is not None else (0, 0, 0)
    ncpu = fs.ncpu
    sc = seccomp.state(t) if t is not None else seccomp.DISABLED
    lines += [
        "CoreDumping:\t0",
        "THP_enabled:\t1",
        f"Threads:\t{len(_live_tasks(tg)) or (1 if getattr(tg, 'zombie', False) else 0)}",
        f"SigQ:\t{npending}/{sigq_max}",
        f"SigPnd:\t{pnd:016x}",
        f"ShdPnd:\t{shd:016x}",
        f"SigBlk:\t{blk:016x}",
        f"SigIgn:\t{ign:016x}",
        f"SigCgt:\t{cgt:016x}",
        f"CapInh:\t{cap_inh:016x}",
        f"CapPrm:\t{cap_prm:016x}",
        f"CapEff:\t{cap_eff:016x}",
        f"CapBnd:\t{getattr(c, 'bset', (1 << (CAP_LAST_CAP + 1)) - 1):016x}",
        f"CapAmb:\t{getattr(c, 'ambient', 0):016x}",
        f"NoNewPrivs:\t{int(bool(t is not None and t.no_new_privs))}",
        f"Seccomp:\t{sc.mode}",
        f"Seccomp_filters:\t{sc.count}",
        "Speculation_Store_Bypass:\tthread vulnerable",
        "SpeculationIndirectBranch:\tconditional enabled",
        f"Cpus_allowed:\t{_affinity(t, ncpu):x}",
        f"Cpus_allowed_list:\t{_cpu_list(_affinity(t, ncpu))}",
        "Mems_allowed:\t00000001",
        "Mems_allowed_list:\t0",
        "voluntary_ctxt_switches:\t0",
        "nonvoluntary_ctxt_switches:\t0",
    ]
    return ("\n".join(lines) + "\n").encode()


def _gen_statm(kernel: Any, tg: ThreadGroup, t: Task | None) -> bytes:
    _check_alive(kernel, tg)
    ms = _MemStats(_mm(t))
    return b"%d %d %d %d 0 %d 0\n" % (ms.size // PAGE, ms.rss // PAGE, ms.shared // PAGE,
                                      ms.text // PAGE, (ms.data + ms.stack) // PAGE)


def _vma_name(v: Any) -> bytes:
    """The name maps shows.  Linux: show_map_vma (anonymous names, shared anonymous
    memory as its shmem file)."""
    name = bytes(v.name or b"")
    anon = getattr(v, "anon_name", None)
    if getattr(v, "mappable", None) is None and not name:
        if anon is not None:
            return b"[anon_shmem:%s]" % anon if v.shared else b"[anon:%s]" % anon
        if v.shared:
            return b"/dev/zero (deleted)"
    return name


def _smaps_fields(v: Any, resident: bool = True, mappers: int = 1) -> bytes:
    """The per-mapping counters of /proc/PID/smaps.  Residency is unknown to the
    Sentry: every accessible page counts as resident, and dirty if writable; pages
    count as shared when `mappers` (address spaces mapping the same object) > 1."""
    n = (v.end - v.start) // 1024
    p = int(v.perms)
    mx = int(getattr(v, "maxperms", 7))
    rss = n if p and resident else 0
    anon = rss if getattr(v, "mappable", None) is None and not v.shared else 0
    dirty = rss if p & _PROT_WRITE else 0
    shared = rss if mappers > 1 else 0
    private = rss - shared
    locked = rss if getattr(v, "locked", 0) else 0
    # VM_SHARED only where writes could reach the object (do_mmap clears it for a
    # read-only file); VM_MAYSHARE for every MAP_SHARED mapping.
    flags = [f for f, ok in (("rd", p & _PROT_READ), ("wr", p & _PROT_WRITE),
                             ("ex", p & _PROT_EXEC), ("sh", v.shared and mx & _PROT_WRITE),
                             ("mr", mx & _PROT_READ), ("mw", mx & _PROT_WRITE),
                             ("me", mx & _PROT_EXEC), ("ms", v.shared),
                             ("lo", locked)) if ok]
    rows = [("Size", n), ("KernelPageSize", 4), ("MMUPageSize", 4), ("Rss", rss),
            ("Pss", rss // max(mappers, 1)), ("Pss_Dirty", dirty // max(mappers, 1)),
            ("Shared_Clean", shared if not dirty else 0), ("Shared_Dirty", shared if dirty else 0),
            ("Private_Clean", private if not dirty else 0),
            ("Private_Dirty", private if dirty else 0), ("Referenced", rss),
            ("Anonymous", anon), ("KSM", 0), ("LazyFree", 0), ("AnonHugePages", 0),
            ("ShmemPmdMapped", 0), ("FilePmdMapped", 0), ("Shared_Hugetlb", 0),
            ("Private_Hugetlb", 0), ("Swap", 0), ("SwapPss", 0), ("Locked", locked)]
    out = "".join("%-16s%8d kB\n" % (k + ":", val) for k, val in rows)
    return (out + "THPeligible:    0\nVmFlags: %s \n" % " ".join(flags)).encode()


def _object_of(v: Any) -> Any:
    """What a mapping's pages belong to, if other address spaces can map it too."""
    if getattr(v, "mappable", None) is not None:
        return v.mappable
    return v.extra if v.shared else None


def _mappers(kernel: Any) -> dict[int, int]:
    """id(object) -> how many address spaces map it (for smaps' shared pages)."""
    seen: dict[int, set[int]] = {}
    mms = {id(x.mm): x.mm for x in getattr(kernel, "tasks_by_tid", {}).values()
           if getattr(x, "mm", None) is not None}
    for mm in mms.values():
        for v in _vmas(mm):
            obj = _object_of(v)
            if obj is not None:
                seen.setdefault(id(obj), set()).add(id(mm))
    return {k: len(x) for k, x in seen.items()}


def _gen_maps(kernel: Any, tg: ThreadGroup, t: Task | None, smaps: bool = False) -> bytes:
    """/proc/PID/maps or smaps.  Linux: fs/proc/task_mmu.c show_map_vma, show_smap."""
    _check_alive(kernel, tg)
    if getattr(tg, "zombie", False):
        return b""                       # its mm is gone
    out = []
    mappers = _mappers(kernel) if smaps else {}
    for v in _vmas(_mm(t)):
        p = int(v.perms)
        perms = ("r" if p & _PROT_READ else "-") + ("w" if p & _PROT_WRITE else "-") + \
            ("x" if p & _PROT_EXEC else "-") + ("s" if v.shared else "p")
        dev = int(getattr(v, "dev", 0) or 0)
        major, minor = (dev & 0xFFF00) >> 8, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)
        line = b"%08x-%08x %s %08x %02x:%02x %d " % (
            v.start, v.end, perms.encode(), int(getattr(v, "offset", 0) or 0), major, minor,
            int(getattr(v, "ino", 0) or 0))
        name = _vma_name(v)
        if name:
            line = line.ljust(72) + b" " + name
        out.append(line + b"\n")
        if smaps:
            obj = _object_of(v)
            out.append(_smaps_fields(v, mappers=mappers.get(id(obj), 1) if obj is not None
                                     else 1))
    if out:
        # The legacy vsyscall page, as Linux's gate VMA (execute-only; the Sentry
        # emulates its three calls: kernel.py _vsyscall).
        out.append(b"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0" + b" " * 18 +
                   b"[vsyscall]\n")
        if smaps:
            gate = SimpleNamespace(start=0xFFFFFFFFFF600000, end=0xFFFFFFFFFF601000,
                                   perms=_PROT_EXEC, shared=False, mappable=None, locked=0)
            out.append(_smaps_fields(gate, resident=False))
    return b"".join(out)


def _gen_children(kernel: Any, tg: ThreadGroup, t: Task | None) -> bytes:
    """/proc/PID/task/TID/children: the processes this thread forked (Linux:
    task->children); those of threads that have exited count as the leader's (Linux
    reparents them to a live thread of the group)."""
    if t is None:
        return b""
    live = {x.tid for x in _live_tasks(tg)}
    leader = _leader(tg)
    mine = []
    for c in getattr(tg, "children", ()):
        if not _alive(kernel, c):
            continue
        by = getattr(c, "forked_by", 0)
        if by == t.tid or (by not in live and leader is t):
            mine.append(c.tgid)
    return b"".join(b"%d " % p for p in sorted(mine))


def _gen_io(tg: ThreadGroup, t: Task | None) -> bytes:
    """/proc/PID/io (the live threads' sum) or /proc/PID/task/TID/io.  Linux:
    proc_pid_io_accounting.  Only the syscall-level counters are kept: storage-level
    read_bytes/write_bytes are 0, as for a filesystem without block I/O."""
    tasks = [t] if t is not None else _live_tasks(tg)
    rchar = wchar = syscr = syscw = 0
    for x in tasks:
        io = getattr(x, "ioac", None) or [0, 0, 0, 0]
        rchar, wchar, syscr, syscw = rchar + io[0], wchar + io[1], syscr + io[2], syscw + io[3]
    return (b"rchar: %d\nwchar: %d\nsyscr: %d\nsyscw: %d\nread_bytes: 0\nwrite_bytes: 0\n"
            b"cancelled_write_bytes: 0\n" % (rchar, wchar, syscr, syscw))


# Namespace inode numbers: the sandbox has one namespace of each kind, numbered as
# Linux numbers its initial ones (include/linux/proc_ns.h).
_NAMESPACES = {b"cgroup": 0xEFFFFFFB, b"ipc": 0xEFFFFFFF, b"mnt": 0xF0000000,
               b"net": 0xF0000001, b"pid": 0xEFFFFFFC, b"pid_for_children": 0xEFFFFFFC,
               b"time": 0xEFFFFFFA, b"time_for_children": 0xEFFFFFFA,
               b"user": 0xEFFFFFFD, b"uts": 0xEFFFFFFE}


class NsFS(Filesystem):
    """nsfs: the namespace inodes /proc/PID/ns/* links lead to."""

    name = "nsfs"
    magic = 0x6E736673


_NSFS: dict[bytes, Location] = {}


def _ns_location(kind: bytes) -> Location:
    """The nsfs file of the sandbox's namespace of `kind` (made once)."""
    loc = _NSFS.get(kind)
    if loc is None:
        from pyvisor.sentry.vfs.vfs import Dentry
        fs = _NSFS_FS[0] if _NSFS_FS else NsFS()
        if not _NSFS_FS:
            _NSFS_FS.append(fs)
        base = kind.replace(b"_for_children", b"")
        name = b"%s:[%d]" % (base, _NAMESPACES[kind])
        from pyvisor.sentry.kernel.namespaces import StaticNs
        d = Dentry(name, None, NsInode(fs, StaticNs(base, _NAMESPACES[kind])))
        loc = _NSFS[kind] = Location(Mount(fs, d, source="nsfs"), d)
    return loc


_NSFS_FS: list[NsFS] = []


def _check_live_ns(kernel: Any, tg: ThreadGroup) -> None:
    """A process's namespaces are gone once it is a zombie (Linux: exit_task_namespaces)."""
    _check_alive(kernel, tg)
    if getattr(tg, "zombie", False):
        raise SyscallError(Errno.ENOENT)


class NsInode(Inode):
    """An nsfs inode: names one namespace object (kernel/namespaces.py), which
    setns(2) takes from an open file of it."""

    __slots__ = ("ns_object",)

    def __init__(self, fs: Filesystem, obj: Any) -> None:
        from pyvisor.sentry.kernel.namespaces import ino_of
        super().__init__(fs, S_IFREG | 0o444, ino=ino_of(obj))
        self.ns_object = obj

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        return FileImpl()


def _ns_object_location(obj: Any) -> Location:
    """The nsfs file of namespace object `obj` (made once, kept with it)."""
    loc = getattr(obj, "_nsfs_loc", None)
    if loc is None:
        from pyvisor.sentry.kernel.namespaces import ino_of
        from pyvisor.sentry.vfs.vfs import Dentry
        fs = _NSFS_FS[0] if _NSFS_FS else NsFS()
        if not _NSFS_FS:
            _NSFS_FS.append(fs)
        name = b"%s:[%d]" % (obj.kind, ino_of(obj))
        d = Dentry(name, None, NsInode(fs, obj))
        loc = Location(Mount(fs, d, source="nsfs"), d)
        obj._nsfs_loc = loc
    return loc


# The kinds a task's own namespace objects answer (the others are the sandbox's).
_TASK_NS = (b"user", b"mnt", b"uts", b"ipc", b"net")


def _ns_dir(fs: ProcFS, key: str, uid: int, gid: int, check: Callable[[], None],
            subj: Callable[[], Any] | None = None) -> ProcDir:
    """/proc/PID/ns: magic links named after each namespace ("pid:[4026531836]")."""
    def table() -> dict[bytes, Factory]:
        out: dict[bytes, Factory] = {}
        for kind, ino in _NAMESPACES.items():
            target = b"%s:[%d]" % (kind.replace(b"_for_children", b""), ino)

            def obj(kind: bytes = kind) -> Any:
                t = subj() if subj is not None and kind in _TASK_NS else None
                if t is None:
                    return None
                from pyvisor.sentry.kernel.namespaces import of_task
                return of_task(t, kind)

            def where(kind: bytes = kind) -> Location:
                check()
                o = obj(kind)
                return _ns_location(kind) if o is None else _ns_object_location(o)

            def text(target: bytes = target, kind: bytes = kind) -> bytes:
                check()
                o = obj(kind)
                if o is None:
                    return target
                from pyvisor.sentry.kernel.namespaces import ino_of
                return b"%s:[%d]" % (kind, ino_of(o))
            out[kind] = (lambda kind=kind, where=where, text=text: ProcMagicLink(
                fs, fs.ino(f"{key}/ns/{kind.decode()}"), where, text, uid=uid, gid=gid))
        return out
    return ProcDir(fs, fs.ino(f"{key}/ns"), table, 0o511, uid, gid)


def _idmap(ns: Any, uid: bool) -> bytes:
    """/proc/PID/uid_map, gid_map: the extents, lower ids as the parent sees them."""
    ext = ns.uid_map if uid else ns.gid_map
    return b"".join(b"%10d %10d %10d\n" % e for e in ext)


def _idmap_writer(kernel: Any, ns: Any, uid: bool) -> Callable[[bytes], int]:
    def write(data: bytes) -> int:
        from pyvisor.sentry.kernel.namespaces import write_idmap
        write_idmap(_current(kernel), ns, data, uid)
        return len(data)
    return write


def _setgroups(ns: Any) -> bytes:
    return b"allow\n" if ns.setgroups_allowed else b"deny\n"


def _setgroups_writer(kernel: Any, ns: Any) -> Callable[[bytes], int]:
    def write(data: bytes) -> int:
        from pyvisor.sentry.kernel.namespaces import write_setgroups
        write_setgroups(_current(kernel), ns, data)
        return len(data)
    return write


def _gen_limits(kernel: Any, tg: ThreadGroup) -> bytes:
    _check_alive(kernel, tg)
    rl = getattr(tg, "rlimits", None) or []
    lines = ["%-25s %-20s %-20s %-10s" % ("Limit", "Soft Limit", "Hard Limit", "Units")]
    for i, (name, unit) in enumerate(_LIMIT_NAMES):
        cur, mx = (rl[i][0], rl[i][1]) if i < len(rl) else (RLIM_INFINITY, RLIM_INFINITY)
        s = "%-25s %-20s " % (name, "unlimited" if cur == RLIM_INFINITY else str(cur))
        s += "%-20s " % ("unlimited" if mx == RLIM_INFINITY else str(mx))
        if unit:
            s += "%-10s" % unit
        lines.append(s)
    return ("\n".join(lines) + "\n").encode()


def _gen_mounts(kernel: Any, root: Location | None, ns: Any = None) -> bytes:
    out = []
    for m in (list(ns.mounts) if ns is not None else _mounts(kernel)):
        if not _mount_visible(m, root):
            continue
        opts = str(m.options).encode()
        sb = getattr(m.fs, "sb_options", m.super_options)
        if m.super_options is not None:   # made by mount(2): the mount's, then the fs's
            if m.fs.readonly and opts.startswith(b"rw"):
                opts = b"ro" + opts[2:]
            opts += b"," + sb.encode() if sb else b""
        out.append(b"%s %s %s %s 0 0\n" % (
            _mangle(str(m.source).encode()), _mangle(_mountpoint(m, root)),
            m.fs.name.encode(), opts))
    return b"".join(out)


def _fs_path(d: Any) -> bytes:
    """The path of dentry `d` within its filesystem (a bind mount's root)."""
    parts = []
    while d.parent is not None:
        parts.append(d.name)
        d = d.parent
    return b"/" + b"/".join(reversed(parts))


def _gen_mountinfo(kernel: Any, root: Location | None, ns: Any = None) -> bytes:
    """/proc/PID/mountinfo.  Linux: fs/proc_namespace.c show_mountinfo (minimal)."""
    out = []
    for m in (list(ns.mounts) if ns is not None else _mounts(kernel)):
        if not _mount_visible(m, root):
            continue
        mid = _mount_id(kernel, m)
        pid = _mount_id(kernel, m.parent) if m.parent is not None else mid
        opts = str(m.options).encode()
        vfs_opts = b"ro" if opts.split(b",")[0] == b"ro" or m.flags_readonly else b"rw"
        vfs_opts += b",relatime"
        if m.super_options is not None:      # made by mount(2)
            sb = getattr(m.fs, "sb_options", m.super_options)
            vfs_opts = opts
            opts = (b"ro" if m.fs.readonly else b"rw") + (b"," + sb.encode() if sb else b"")
        from pyvisor.sentry.vfs.propagation import optional_fields
        tags = optional_fields(m)
        out.append(b"%d %d 0:%d %s %s %s %s- %s %s %s\n" % (
            mid, pid, m.fs.dev, _mangle(_fs_path(m.root)), _mangle(_mountpoint(m, root)),
            vfs_opts, tags + b" " if tags else b"",
            m.fs.name.encode(), _mangle(str(m.source).encode()), opts))
    return b"".join(out)


def _gen_meminfo(fs: ProcFS) -> bytes:
    total, free, avail = fs.mem["MemTotal"], fs.mem["MemFree"], fs.mem["MemAvailable"]
    # Slab (all unreclaimable): what the Sentry holds for the application, as counted by
    # its memory account (pipe buffers, socket queues, epoll watches, queued signals).
    acct = getattr(fs.kernel, "memory", None)
    slab = acct.used // 1024 if acct is not None else 0
    rows = [("MemTotal", total), ("MemFree", free), ("MemAvailable", avail), ("Buffers", 0),
            ("Cached", 0), ("SwapCached", 0), ("Active", 0), ("Inactive", 0),
            ("Active(anon)", 0), ("Inactive(anon)", 0), ("Active(file)", 0),
            ("Inactive(file)", 0), ("Unevictable", 0), ("Mlocked", 0), ("SwapTotal", 0),
            ("SwapFree", 0), ("Dirty", 0), ("Writeback", 0), ("AnonPages", 0), ("Mapped", 0),
            ("Shmem", 0), ("KReclaimable", 0), ("Slab", slab), ("SReclaimable", 0),
            ("SUnreclaim", slab), ("KernelStack", 0), ("PageTables", 0), ("NFS_Unstable", 0),
            ("Bounce", 0), ("WritebackTmp", 0), ("CommitLimit", total // 2),
            ("Committed_AS", total - avail if total > avail else 0),
            ("VmallocTotal", 34359738367), ("VmallocUsed", 0), ("VmallocChunk", 0),
            ("HugePages_Total", -1), ("HugePages_Free", -1), ("HugePages_Rsvd", -1),
            ("HugePages_Surp", -1), ("Hugepagesize", 2048), ("Hugetlb", 0)]
    out = []
    for k, v in rows:
        if v == -1:
            out.append(f"{k + ':':<15}{0:>9}\n")
        else:
            out.append(f"{k + ':':<15}{v:>9} kB\n")
    return "".join(out).encode()


def _uptime_s(kernel: Any) -> float:
    return max(0, time.monotonic_ns() - int(getattr(kernel, "boot_ns", 0))) / 1e9


def _last_pid(kernel: Any) -> int:
    nxt = getattr(kernel, "_next_pid", None)
    if isinstance(nxt, int) and nxt > 1:
        return nxt - 1
    tids = list(getattr(kernel, "tasks_by_tid", {}).keys())
    return max(tids) if tids else 0


def _gen_loadavg(kernel: Any) -> bytes:
    ntasks = len(getattr(kernel, "tasks_by_tid", {}))
    return b"0.00 0.00 0.00 1/%d %d\n" % (max(ntasks, 1), _last_pid(kernel))


def _gen_uptime(kernel: Any, fs: ProcFS) -> bytes:
    up = _uptime_s(kernel)
    return b"%.2f %.2f\n" % (up, up * fs.ncpu)


def _gen_stat_global(kernel: Any, fs: ProcFS) -> bytes:
    """/proc/stat (minimal).  Linux: fs/proc/stat.c."""
    idle = int(_uptime_s(kernel) * USER_HZ)
    user = sum(cputime.group_times(g)[0] for g in
               list(getattr(kernel, "groups", {}).values())) // _NS_PER_TICK
    lines = [f"cpu  {user} 0 0 {idle * fs.ncpu} 0 0 0 0 0 0"]
    for i in range(fs.ncpu):
        lines.append(f"cpu{i} {user // fs.ncpu} 0 0 {idle} 0 0 0 0 0 0")
    running = sum(1 for t in list(getattr(kernel, "tasks_by_tid", {}).values())
                  if _state(kernel, t.tg, t)[0] == "R")
    lines += ["intr 0", "ctxt 0", f"btime {fs.btime}", f"processes {_last_pid(kernel)}",
              f"procs_running {max(running, 1)}", "procs_blocked 0",
              "softirq 0 0 0 0 0 0 0 0 0 0 0"]
    return ("\n".join(lines) + "\n").encode()


def _gen_version(kernel: Any) -> bytes:
    return b"Linux version %s (pyvisor@pyvisor) (gcc) %s\n" % (OSRELEASE, KVERSION)


def _line(v: Any) -> bytes:
    return (v if isinstance(v, bytes) else str(v).encode()) + b"\n"


# -- per-process directories -------------------------------------------------------------


def _comm_writer(kernel: Any, tg: ThreadGroup, t: Task | None,
                 per_thread: bool) -> Callable[[bytes], int]:
    """Writing comm renames the thread (pthread_setname_np) or the process."""

    def write(data: bytes) -> int:
        _check_alive(kernel, tg, t)
        cur = _current(kernel)
        if cur is not None and cur.tg is not tg:
            raise SyscallError(Errno.EINVAL)     # Linux: comm_write, other thread groups
        name = data.split(b"\n", 1)[0][:15]
        if t is not None:
            t.name = name
        if not per_thread or (t is not None and t.tid == tg.tgid):
            tg.comm = name
        return len(data)

    return write


def _kstrto(data: bytes, strip: bool = False) -> int:
    """An integer as kstrtoint/kstrtouint read one written to a proc file: up to the
    first NUL, one trailing newline allowed (or all outer space with `strip`), base
    0 ("0x" hex, leading "0" octal, else decimal), an optional sign; EINVAL else."""
    text = data.split(b"\0", 1)[0]
    text = text.strip() if strip else text.removesuffix(b"\n")
    sign = 1
    if text[:1] in (b"+", b"-"):
        sign, text = (-1 if text[:1] == b"-" else 1), text[1:]
    base = 10
    if text[:2].lower() == b"0x":
        base, text = 16, text[2:]
    elif text[:1] == b"0" and len(text) > 1:
        base, text = 8, text[1:]
    digits = {8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}[base]
    if not text or not all(chr(c) in digits for c in text):
        raise SyscallError(Errno.EINVAL)
    return sign * int(text, base)


def _coredump_filter_writer(tg: ThreadGroup) -> Callable[[bytes], int]:
    """A mask, read as kstrtouint does (Linux: proc_coredump_filter_write); kept and
    inherited at fork, no cores are made."""

    def write(data: bytes) -> int:
        v = _kstrto(data)
        if not 0 <= v < 1 << 32:
            raise SyscallError(Errno.EINVAL)
        tg.coredump_filter = v
        return len(data)

    return write


def _oom_writer(tg: ThreadGroup) -> Callable[[bytes], int]:
    """oom_score_adj (Linux: oom_score_adj_write: at most 23 bytes, stripped)."""

    def write(data: bytes) -> int:
        v = _kstrto(data[:23], strip=True)
        if not -1000 <= v <= 1000:
            raise SyscallError(Errno.EINVAL)
        tg.oom_score_adj = v
        return len(data)

    return write


class PidDir(ProcDir):
    """/proc/PID, /proc/TID (a hidden thread) and /proc/PID/task/TID.

    `thread` is the task whose per-thread state is shown (None: the group's
    leader, found afresh at each use, so exec and thread exits are seen).
    """

    __slots__ = ("tg", "thread", "per_thread", "key")

    def __init__(self, fs: ProcFS, tg: ThreadGroup, thread: Task | None,
                 per_thread: bool) -> None:
        self.tg = tg
        self.thread = thread
        self.per_thread = per_thread
        if per_thread and thread is not None:
            self.key = f"{tg.tgid}/task/{thread.tid}"
        else:
            self.key = str(thread.tid if thread is not None else tg.tgid)
        uid, gid = _owner(thread if thread is not None else _leader(tg))
        super().__init__(fs, fs.ino(self.key), None, 0o555, uid, gid)

    def subject(self) -> Task | None:
        """The task whose fd table, mm, fs and creds this directory shows."""
        if self.thread is not None and not getattr(self.thread, "exited", False):
            return self.thread
        return _leader(self.tg)

    def children(self) -> dict[bytes, Factory]:
        fs, kernel, tg = self.pfs, self.pfs.kernel, self.tg
        if not _alive(kernel, tg):
            raise SyscallError(Errno.ESRCH)      # a directory kept open past the reaping
        _check_alive(kernel, tg, self.thread)
        per_thread = self.per_thread
        key = self.key
        # The pid a directory shows is its name: the thread's for task/TID and /proc/TID.
        pid = self.thread.tid if self.thread is not None else tg.tgid
        uid, gid = _owner(self.subject())

        def file(name: str, gen: Callable[[], bytes], mode: int = 0o444,
                 writer: Callable[[bytes], int] | None = None,
                 check: Callable[[], None] | None = None) -> Factory:
            return lambda: ProcFile(fs, fs.ino(f"{key}/{name}"), gen, mode, writer,
                                    uid=uid, gid=gid, check=check)

        def userns_file(name: str, gen: Callable[[Any], bytes],
                        writer: Callable[[Any], Callable[[bytes], int]]) -> Factory:
            """A file of the subject's user namespace, taken when it is looked up (Linux:
            proc_id_map_open), so it reads the same after the process exits."""
            def make() -> Inode:
                _check_alive(kernel, tg)
                t = subj()
                if t is None:
                    raise SyscallError(Errno.ENOENT)
                from pyvisor.sentry.kernel.namespaces import userns_of
                ns = userns_of(t.creds)
                return ProcFile(fs, fs.ino(f"{key}/{name}"), lambda: gen(ns), 0o644,
                                writer(ns), uid=uid, gid=gid)
            return make

        def mounts_file(name: str, gen: Callable[[], bytes], info: bool = False) -> Factory:
            def make() -> Inode:
                f = ProcMountsFile(fs, fs.ino(f"{key}/{name}"), gen, uid=uid, gid=gid,
                                   check=lambda: _check_alive(kernel, tg))
                f.kernel, f.subject, f.info = kernel, subj, info
                return f
            return make

        def may_read() -> None:
            """Files that show another process's memory or I/O need ptrace read access
            (Linux: mm_access / ptrace_may_access, PTRACE_MODE_READ_FSCREDS)."""
            opener, target = _current(kernel), self.subject()
            if opener is not None and target is not None and \
                    not ptrace.may_access(opener, target):
                raise SyscallError(Errno.EACCES)

        def link(name: str, where: Callable[[], Location]) -> Factory:
            def target() -> bytes:
                return _loc_path(kernel, where())
            return lambda: ProcMagicLink(fs, fs.ino(f"{key}/{name}"), where, target,
                                         uid=uid, gid=gid)

        subj = self.subject

        def exe() -> Location:
            _check_alive(kernel, tg)
            if getattr(tg, "zombie", False):
                raise SyscallError(Errno.ENOENT)   # a zombie has no mm, no exe
            loc = getattr(tg, "exe", None)
            if loc is None:
                loc = getattr(_mm(subj()), "exe", None)
            if loc is None:
                raise SyscallError(Errno.ENOENT)
            return loc

        def fs_loc(which: str) -> Callable[[], Location]:
            def where() -> Location:
                _check_alive(kernel, tg)
                t = subj()
                loc = getattr(getattr(t, "fs", None), which, None) if t is not None else None
                if loc is None:
                    raise SyscallError(Errno.ENOENT)
                return loc
            return where

        def alive_then(gen: Callable[[], bytes]) -> Callable[[], bytes]:
            def g() -> bytes:
                _check_alive(kernel, tg)
                return gen()
            return g

        def root_of() -> Location | None:
            t = subj()
            return getattr(getattr(t, "fs", None), "root", None) if t is not None else None

        table: dict[bytes, Factory] = {
            b"stat": file("stat", lambda: _gen_stat(kernel, tg, subj(), pid)),
            b"status": file("status", lambda: _gen_status(kernel, fs, tg, subj(), pid)),
            b"statm": file("statm", lambda: _gen_statm(kernel, tg, subj())),
            b"cmdline": file("cmdline", alive_then(
                lambda: b"" if getattr(tg, "zombie", False) else
                _bytes_list(getattr(tg, "argv", b"")))),
            b"environ": file("environ", alive_then(
                lambda: b"" if getattr(tg, "zombie", False) else
                _bytes_list(getattr(tg, "environ", b""))), 0o400, check=may_read),
            b"comm": file("comm", alive_then(lambda: _comm(tg, subj()) + b"\n"), 0o644,
                          _comm_writer(kernel, tg, subj(), per_thread)),
            b"auxv": file("auxv", alive_then(lambda: bytes(getattr(_mm(subj()), "auxv", b"")
                                                           or b"")), 0o400, check=may_read),
            b"exe": link("exe", exe),
            b"cwd": link("cwd", fs_loc("cwd")),
            b"root": link("root", fs_loc("root")),
            b"fd": lambda: FdDir(fs, f"{key}/fd", tg, subj, info=False, uid=uid, gid=gid),
            b"fdinfo": lambda: FdDir(fs, f"{key}/fdinfo", tg, subj, info=True, uid=uid,
                                     gid=gid),
            b"maps": file("maps", lambda: _gen_maps(kernel, tg, subj()), check=may_read),
            b"smaps": file("smaps", lambda: _gen_maps(kernel, tg, subj(), smaps=True),
                           check=may_read),
            b"io": file("io", alive_then(lambda: _gen_io(tg, self.thread if per_thread
                                                         else None)),
                        0o400, check=may_read),
            b"ns": lambda: _ns_dir(fs, key, uid, gid, lambda: _check_live_ns(kernel, tg), subj),
            b"mem": lambda: ProcMemFile(fs, fs.ino(f"{key}/mem"), subj, uid, gid),
            b"mounts": mounts_file("mounts", alive_then(
                lambda: _gen_mounts(kernel, root_of()))),
            b"mountinfo": mounts_file("mountinfo", alive_then(
                lambda: _gen_mountinfo(kernel, root_of())), info=True),
            b"limits": file("limits", lambda: _gen_limits(kernel, tg)),
            b"oom_score_adj": file("oom_score_adj",
                                   alive_then(lambda: _line(tg.oom_score_adj)),
                                   0o644, _oom_writer(tg)),
            b"oom_score": file("oom_score", alive_then(lambda: b"0\n")),
            b"coredump_filter": file("coredump_filter", alive_then(
                lambda: b"%08x\n" % tg.coredump_filter), 0o644,
                _coredump_filter_writer(tg)),
            b"cgroup": file("cgroup", alive_then(lambda: b"0::/\n")),
            b"wchan": file("wchan", alive_then(lambda: b"0")),
            # The user namespace's maps outlive the process (Linux: its user_ns).
            b"uid_map": userns_file("uid_map", lambda ns: _idmap(ns, True),
                                    lambda ns: _idmap_writer(kernel, ns, True)),
            b"gid_map": userns_file("gid_map", lambda ns: _idmap(ns, False),
                                    lambda ns: _idmap_writer(kernel, ns, False)),
            b"setgroups": userns_file("setgroups", _setgroups,
                                      lambda ns: _setgroups_writer(kernel, ns)),
        }
        if not per_thread:
            table[b"task"] = lambda: TaskDir(fs, f"{key}/task", tg, uid, gid)
        else:
            table[b"children"] = file("children", alive_then(
                lambda: _gen_children(kernel, tg, self.thread)))
        return table


class TaskDir(ProcDir):
    """/proc/PID/task: one directory per live thread."""

    __slots__ = ("tg", "key")

    def __init__(self, fs: ProcFS, key: str, tg: ThreadGroup, uid: int, gid: int) -> None:
        self.tg = tg
        self.key = key
        super().__init__(fs, fs.ino(key), None, 0o555, uid, gid)
        self.nlink = 2 + len(_live_tasks(tg))      # ".", the parent's entry, each task/TID

    def children(self) -> dict[bytes, Factory]:
        fs, tg = self.pfs, self.tg
        _check_alive(fs.kernel, tg)
        return {str(t.tid).encode(): (lambda t=t: PidDir(fs, tg, t, per_thread=True))
                for t in _live_tasks(tg)}


class FdDir(ProcDir):
    """/proc/PID/fd (magic links) or /proc/PID/fdinfo (files) of the task's fd table."""

    __slots__ = ("tg", "subject", "info", "key")

    def __init__(self, fs: ProcFS, key: str, tg: ThreadGroup,
                 subject: Callable[[], Task | None], info: bool, uid: int = 0,
                 gid: int = 0) -> None:
        self.tg = tg
        self.subject = subject
        self.info = info
        self.key = key
        super().__init__(fs, fs.ino(key), None, 0o500 if not info else 0o555, uid, gid)

    def children(self) -> dict[bytes, Factory]:
        fs, tg = self.pfs, self.tg
        kernel = fs.kernel
        _check_alive(kernel, tg)
        out: dict[bytes, Factory] = {}
        for n, (f, cloexec) in sorted(_files(self.subject()).items()):
            k = f"{self.key}/{n}"
            if self.info:
                out[str(n).encode()] = (
                    lambda k=k, f=f, c=cloexec: ProcFile(
                        fs, fs.ino(k), lambda: _gen_fdinfo(kernel, f, c),
                        uid=self.uid, gid=self.gid))
            else:
                out[str(n).encode()] = (lambda k=k, f=f: _fd_link(fs, k, f, self.uid,
                                                                  self.gid))
        return out

    def lookup(self, name: bytes) -> Inode:
        # Only digits without leading zeros name fds (Linux: name_to_int).
        if not name.isdigit() or (len(name) > 1 and name[:1] == b"0"):
            raise SyscallError(Errno.ENOENT)
        return super().lookup(name)


def _fd_link(fs: ProcFS, key: str, f: FileDescription, uid: int, gid: int) -> ProcMagicLink:
    kernel = fs.kernel
    perm = 0
    if f.readable:
        perm |= 0o500
    if f.writable:
        perm |= 0o300
    return ProcMagicLink(fs, fs.ino(key), lambda: Location(f.mount, f.dentry),
                         lambda: fd_link_name(kernel, f), perm, uid, gid)


# Files not made by open(2) (pipe2, socket, eventfd, ...) lack the O_LARGEFILE that
# open forces on 64-bit (Linux: force_o_largefile).
_NOT_OPENED_FS = ("pipefs", "sockfs", "anon_inodefs")
_O_LARGEFILE = 0o100000


def _gen_fdinfo(kernel: Any, f: FileDescription, cloexec: bool) -> bytes:
    flags = f.flags | (O_CLOEXEC if cloexec else 0)
    if getattr(getattr(f.inode, "fs", None), "name", "") not in _NOT_OPENED_FS:
        flags |= _O_LARGEFILE
    extra = getattr(f.impl, "fdinfo", None)       # inotify's watches, ...
    return b"pos:\t%d\nflags:\t%s\nmnt_id:\t%d\nino:\t%d\n" % (
        f.offset, b"0%o" % flags, _mount_id(kernel, f.mount) or 1,
        f.inode.ino) + (extra() if extra is not None else b"")


# -- the root ----------------------------------------------------------------------------


def _parse_pid(name: bytes) -> int | None:
    if not name.isdigit() or (len(name) > 1 and name[:1] == b"0") or len(name) > 10:
        return None
    return int(name)


class ProcRoot(ProcDir):
    """/proc: fixed entries, then one directory per visible thread group."""

    __slots__ = ("static",)

    def __init__(self, fs: ProcFS) -> None:
        super().__init__(fs, 1, None, 0o555)
        self.static = self._make_static()

    def _make_static(self) -> dict[bytes, Factory]:
        fs = self.pfs
        kernel = fs.kernel

        def self_target() -> bytes:
            cur = _current(kernel)
            if cur is None:
                raise SyscallError(Errno.ENOENT)
            return b"%d" % cur.tg.tgid

        def thread_self_target() -> bytes:
            cur = _current(kernel)
            if cur is None:
                raise SyscallError(Errno.ENOENT)
            return b"%d/task/%d" % (cur.tg.tgid, cur.tid)

        def file(name: str, gen: Generator) -> Factory:
            return lambda: ProcFile(fs, fs.ino(name), gen)

        sys_spec = _sys_spec(fs)
        return {
            b"self": lambda: ProcSymlink(fs, fs.ino("self"), self_target),
            b"thread-self": lambda: ProcSymlink(fs, fs.ino("thread-self"), thread_self_target),
            b"mounts": lambda: ProcSymlink(fs, fs.ino("mounts"), lambda: b"self/mounts"),
            b"cpuinfo": file("cpuinfo", lambda: fs.cpuinfo),
            b"meminfo": file("meminfo", lambda: _gen_meminfo(fs)),
            b"loadavg": file("loadavg", lambda: _gen_loadavg(kernel)),
            b"uptime": file("uptime", lambda: _gen_uptime(kernel, fs)),
            b"version": file("version", lambda: _gen_version(kernel)),
            b"filesystems": file("filesystems", lambda: _FILESYSTEMS),
            b"cmdline": file("cmdline", lambda: _CMDLINE),
            b"devices": file("devices", lambda: _DEVICES),
            b"stat": file("stat", lambda: _gen_stat_global(kernel, fs)),
            b"sys": lambda: _static_dir(fs, "sys", sys_spec),
            b"net": lambda: _static_dir(fs, "net", _net_spec(kernel)),
            b"sysvipc": lambda: _static_dir(fs, "sysvipc", ipc_proc.spec(kernel)),
        }

    def _groups(self) -> list[ThreadGroup]:
        kernel = self.pfs.kernel
        groups = list(getattr(kernel, "groups", {}).values())
        return sorted((g for g in groups if _alive(kernel, g) and _visible(kernel, g)),
                      key=lambda g: g.tgid)

    def lookup(self, name: bytes) -> Inode:
        f = self.static.get(name)
        if f is not None:
            return f()
        pid = _parse_pid(name)
        if pid is None:
            raise SyscallError(Errno.ENOENT)
        fs, kernel = self.pfs, self.pfs.kernel
        tg = getattr(kernel, "groups", {}).get(pid)
        if tg is not None and _alive(kernel, tg) and _visible(kernel, tg):
            return PidDir(fs, tg, None, per_thread=False)
        # A thread that leads no group: reachable by name, not listed (as Linux).
        t = getattr(kernel, "tasks_by_tid", {}).get(pid)
        if t is not None and not getattr(t, "exited", False) and _alive(kernel, t.tg) \
                and _visible(kernel, t.tg):
            return PidDir(fs, t.tg, t, per_thread=False)
        raise SyscallError(Errno.ENOENT)

    def readdir(self) -> Iterable[DirEntry]:
        out = []
        for name, f in self.static.items():
            i = f()
            out.append(DirEntry(name, i.ino, dtype_of(i.mode)))
        fs = self.pfs
        for g in self._groups():
            out.append(DirEntry(b"%d" % g.tgid, fs.ino(str(g.tgid)), dtype_of(S_IFDIR)))
        return out


def _sys_spec(fs: ProcFS) -> dict[bytes, Any]:
    """/proc/sys: read-only sysctls (bytes: fixed contents, callables: generated)."""
    kernel = fs.kernel
    spec: dict[bytes, Any] = {
        b"kernel": {
            b"hostname": _PolledSysctl(lambda: _line(_uts(kernel)[0]),
                                       UTS_EVENTS["hostname"]),
            b"domainname": _PolledSysctl(lambda: _line(_uts(kernel)[1]),
                                         UTS_EVENTS["domainname"]),
            b"ostype": _line(OSTYPE),
            b"osrelease": _line(OSRELEASE),
            b"version": _line(KVERSION),
            b"pid_max": _line(PID_MAX),
            b"threads-max": b"63704\n",
            b"ngroups_max": b"65536\n",
            b"cap_last_cap": _line(CAP_LAST_CAP),
            b"randomize_va_space": b"0\n",     # the Sentry places mappings deterministically
            b"overflowuid": b"65534\n",
            b"overflowgid": b"65534\n",
            # The IPC sysctls and net.* below: kernel/sysctl.py (config.json linux.sysctl).
            **{n.split(".")[1].encode(): _sysctl(kernel, n) for n in sysctl.IPC_DEFAULTS},
            b"random": {
                b"boot_id": _line(fs.boot_id),
                b"uuid": lambda: _line(_uuid4()),
                b"entropy_avail": b"256\n",
                b"poolsize": b"256\n",
            },
        },
        b"vm": {
            b"overcommit_memory": b"0\n",
            b"overcommit_ratio": b"50\n",
            b"max_map_count": b"65530\n",
            b"mmap_min_addr": b"65536\n",
        },
        b"fs": {
            b"nr_open": b"1048576\n",
            b"file-max": b"9223372036854775807\n",
            b"pipe-max-size": b"1048576\n",
            b"inotify": {      # vfs/inotify.py enforces these
                b"max_user_watches": lambda: _line(inotify.Limits.max_user_watches),
                b"max_user_instances": lambda: _line(inotify.Limits.max_user_instances),
                b"max_queued_events": lambda: _line(inotify.Limits.max_queued_events),
            },
        },
        b"net": {
            b"core": {b"somaxconn": _sysctl(kernel, "net.core.somaxconn"),
                      b"wmem_max": lambda: _line(kernel.net_core.wmem_max),
                      b"rmem_max": lambda: _line(kernel.net_core.rmem_max)},
            b"ipv4": {
                **{n.split(".")[2].encode(): _sysctl(kernel, n) for n in (
                    "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                    "net.ipv4.ping_group_range")},
                # What netstack does, read-only: it never forwards, and its TCP offers
                # SACK (tcpseg.TCPLayer.sack).
                b"ip_forward": b"0\n",
                b"tcp_sack": b"1\n",
            },
            b"ipv6": {      # netstack's behaviour, read-only
                b"auto_flowlabels": b"1\n",      # IPV6_AUTOFLOWLABEL's default (sock.py)
                b"bindv6only": b"0\n",           # IPV6_V6ONLY's default
                b"ip_nonlocal_bind": b"0\n",     # a foreign address is EADDRNOTAVAIL
                b"ip6frag_time": _line(FRAG_TIMEOUT_NS // 10**9),   # reassembly's timeout
            },
        },
    }
    # Writable (by root: mode 0644), as in a network namespace of one's own.
    spec[b"net"][b"ipv4"][b"conf"] = {b"lo": {
        n.encode(): _sysctl(kernel, f"net.ipv4.conf.lo.{n}") for n in sysctl.LO_CONF}}
    return spec


def _uts(kernel: Any) -> tuple[bytes, bytes]:
    """The reader's UTS names (kernel/namespaces.py)."""
    cur = _current(kernel)
    if cur is None:
        return getattr(kernel, "hostname", b"localhost"), getattr(kernel, "domainname",
                                                                  b"(none)")
    from pyvisor.sentry.kernel.namespaces import uts_names
    return uts_names(cur)


def _sysctl(kernel: Any, name: str) -> Callable[[], bytes] | Writable:
    gen: Generator = lambda: sysctl.get_value(kernel, name)     # noqa: E731
    if name in sysctl.WRITABLE:
        return Writable(gen, lambda data: sysctl.write_value(kernel, name, data))
    return gen


def _net_spec(kernel: Any) -> dict[bytes, Any]:
    """/proc/net: the reading task's network namespace (pyvisor/sentry/socket)."""
    from pyvisor.sentry.socket import network_for, network_of

    def gen(name: str) -> Generator:
        def g() -> bytes:
            cur = _current(kernel)          # the reader's network namespace
            net = network_for(cur) if cur is not None else network_of(kernel)
            text = net.proc_net(name)
            if text is None:
                raise SyscallError(Errno.ENOENT)
            return text
        return g
    return {n.encode(): gen(n) for n in ("dev", "if_inet6", "route", "tcp", "tcp6", "udp",
                                         "udp6", "unix", "snmp", "netstat")}


def new_procfs(kernel: Any) -> tuple[ProcFS, ProcRoot]:
    """A new procfs for `kernel`: (filesystem, root directory).

    Call before the Sentry is confined: it reads the host's /proc/cpuinfo and
    /proc/meminfo once, here.
    """
    fs = ProcFS(kernel)
    return fs, ProcRoot(fs)


def clone_procfs(src: ProcFS) -> tuple[ProcFS, ProcRoot]:
    """Another procfs instance (mount -t proc inside the sandbox, when the Sentry is
    confined and the host's /proc is out of reach): the host facts `src` captured."""
    fs = ProcFS.__new__(ProcFS)
    Filesystem.__init__(fs)
    fs.kernel, fs.ncpu, fs.cpuinfo, fs.mem = src.kernel, src.ncpu, src.cpuinfo, src.mem
    fs.btime, fs.boot_id = src.btime, src.boot_id
    return fs, ProcRoot(fs)
