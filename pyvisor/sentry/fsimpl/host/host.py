"""Host files: the container's stdio and terminal, held by the Sentry.

Linux analogue: none (the application would hold these fds itself); gVisor:
pkg/sentry/fsimpl/host.  A `HostInode` wraps one host fd; every open file
description on it (the one `host_file` makes, and re-opens through
/proc/self/fd/N or /dev/stdin) is a `HostFileImpl` sharing that fd.

Sharing with the caller: the descriptions `host_file` makes for the
container's stdio share the caller's open file descriptions, as a child
process's stdio would: reads and writes of a regular file go through the
host fd's own offset (read/write, not pread/pwrite), so `> log 2>&1`, `>>`,
several writers of one log and an lseeking program behave as natively; the
description's `offset` is that host offset (HostFileDescription).  Host fds
that are one open file description (kcmp) become one description inside
(`stdio_files`), so F_SETFL on one is seen on the other.  The host
description's status flags (O_APPEND, O_NONBLOCK) are the sandbox's at
start; the sandbox's own F_SETFL stays in the Sentry (its seccomp list has no
fcntl): O_APPEND set inside seeks to the end before each write, and
O_NONBLOCK inside never makes the caller's description non-blocking.  A re-open through
/proc/self/fd/N or /dev/stdout is a new description with its own offset
(pread/pwrite), as Linux gives a new struct file.

Blocking: the Sentry is one loop, so a host read or write must never wait.
Before reading a pipe, socket or tty we poll it with a zero timeout and raise
WouldBlock if it has nothing; writes go in chunks of at most PIPE_BUF while
the fd polls writable, so a full pipe gives a short write (or WouldBlock if
nothing was written) instead of stalling the sandbox.  The syscall layer then
sleeps on `waitq`, which arms a one-shot epoll watch on the Sentry's loop
(Kernel.watch_fd) that notifies the queue when the fd becomes ready.
Regular files (and devices epoll refuses, such as /dev/null) are always
ready.

Terminals: when the caller's stdio is a terminal, the launcher gives the
sandbox a pty of its own (runtime/console.py), so the host fd here is that
pty's slave and terminal ioctls pass through to it, never to the user's
terminal.  The foreground process group is virtual (TIOCSPGRP), kept per
terminal; the launcher's console forwards ^C & co. to it.
"""

from __future__ import annotations

import fcntl
import os
import select
import stat as pystat
import struct
from typing import TYPE_CHECKING, Any, Sequence

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.stat import S_IFMT
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.waitqueue import (EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT,
                                             EVENT_PRI, EVENT_RDHUP, WaitQueue)
from pyvisor.sentry.vfs.file import AT_POSITION, FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import Filesystem, Inode
from pyvisor.sentry.vfs.vfs import Dentry, Mount

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

# tcflow and tcflush actions.  From <asm-generic/termbits.h>.
TCION, TCIOFLUSH = 3, 2
# Terminal ioctls.  From <asm-generic/ioctls.h>.
TCGETS = 0x5401
TCSETS = 0x5402
TCSETSW = 0x5403
TCSETSF = 0x5404
TCSBRK = 0x5409
TCXONC = 0x540A
TCFLSH = 0x540B
TIOCSCTTY = 0x540E
TIOCGPGRP = 0x540F
TIOCSPGRP = 0x5410
TIOCOUTQ = 0x5411
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414
FIONREAD = 0x541B
TIOCNOTTY = 0x5422
TIOCGSID = 0x5429

TERMIOS_SIZE = 36      # struct termios on amd64 (<asm-generic/termbits.h>)
WINSIZE_SIZE = 8       # struct winsize
PIPE_BUF = 4096

# Per-call caps: a read allocates its whole buffer, so bound it.
MAX_STREAM_READ = 1 << 20
MAX_FILE_READ = 16 << 20

# Requests that change a terminal (refused on a locked one).
_TTY_CHANGES = frozenset((TCSETS, TCSETSW, TCSETSF, TIOCSWINSZ, TCXONC, TCFLSH, TCSBRK,
                          TIOCSPGRP))
_POLL_BITS = EVENT_IN | EVENT_PRI | EVENT_OUT | EVENT_RDHUP   # poll(2) == epoll bit values
_I32 = struct.Struct("<i")
# Status flags the sandbox's stdio takes from the caller's open file description.
_SHARED_FLAGS = os.O_APPEND | os.O_NONBLOCK
_KCMP_FILE = 0
_SYS_KCMP = 312


class TTYState:
    """What the sandbox keeps of one terminal: its virtual foreground process group.

    Linux: the pgrp part of struct tty_struct.  The host's own foreground
    group belongs to the host's processes; the sandbox's lives here, and
    the Sentry's console forwarding (runtime/console.py) signals it.
    """

    __slots__ = ("fg_pgrp", "sid")

    def __init__(self) -> None:
        self.fg_pgrp: int | None = None     # None: the init process's group
        self.sid: int | None = None         # the session it controls; None: the init's

    def give_to(self, pgid: int, sid: int) -> None:
        """The terminal now controls session `sid` with `pgid` in the foreground (an
        exec'd process with a terminal leads a session, as runc's exec --tty does)."""
        self.fg_pgrp, self.sid = pgid, sid


_ttys: dict[int, TTYState] = {}    # host rdev -> state; one Sentry process, one kernel


def tty_state(rdev: int) -> TTYState:
    """The state of the terminal with host device number `rdev`."""
    st = _ttys.get(rdev)
    if st is None:
        st = _ttys[rdev] = TTYState()
    return st


def foreground_pgrp(kernel: Any) -> int | None:
    """The sandbox's foreground process group on its terminal, if it set one."""
    for st in _ttys.values():
        if st.fg_pgrp is not None:
            return st.fg_pgrp
    return None


class HostFS(Filesystem):
    """The pseudo-filesystem of host files (never mounted in the tree)."""

    name = "host"


_hostfs: HostFS | None = None


def _the_hostfs() -> HostFS:
    global _hostfs
    if _hostfs is None:
        _hostfs = HostFS()
    return _hostfs


def _encode_host_rdev(rdev: int) -> int:
    """A host dev_t re-encoded as Linux's new_encode_dev (what stat(2) reports)."""
    major, minor = os.major(rdev), os.minor(rdev)
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


class HostInode(Inode):
    """One host fd.  Owned by the Sentry; closed when its last description goes.

    Attributes reflect the host's fstat (type, permissions, size, times,
    rdev) except the owner, which is the sandbox user given at creation.
    """

    __slots__ = ("kernel", "hostfd", "owned", "opens", "queue", "armed", "regular",
                 "pollable", "is_tty", "tty", "tty_locked")

    def __init__(self, fs: HostFS, kernel: Any, hostfd: int, owned: bool,
                 uid: int = 0, gid: int = 0) -> None:
        st = os.fstat(hostfd)
        super().__init__(fs, st.st_mode, uid, gid)
        self.kernel = kernel
        self.hostfd = hostfd          # immutable
        self.owned = owned            # close hostfd when the last open goes
        self.opens = 0                # live HostFileImpls
        self.queue = WaitQueue()      # notified from the epoll watch
        self.armed = 0                # EVENT_* bits of the outstanding watch; 0 = none
        self.regular = pystat.S_ISREG(st.st_mode)
        self.pollable = not self.regular and not pystat.S_ISDIR(st.st_mode)
        self.is_tty = os.isatty(hostfd)
        # Job-control state, one per terminal however many fds reach it.
        self.tty: TTYState | None = tty_state(st.st_rdev) if self.is_tty else None
        # A terminal of the user's passed as is (--preserve-fds): readable and writable,
        # but nothing inside may change its modes, size, flow or queues.
        self.tty_locked = False
        self._load(st)

    def _load(self, st: os.stat_result) -> None:
        self.mode = st.st_mode
        self.rdev = _encode_host_rdev(st.st_rdev) if st.st_rdev else 0
        self.atime_ns, self.mtime_ns, self.ctime_ns = st.st_atime_ns, st.st_mtime_ns, \
            st.st_ctime_ns

    def refresh(self) -> None:
        try:
            self._load(os.fstat(self.hostfd))
        except OSError:
            pass

    def size(self) -> int:
        if not self.regular:
            return 0
        try:
            return os.fstat(self.hostfd).st_size
        except OSError:
            return 0

    def truncate(self, size: int) -> None:
        if not self.regular:
            return          # O_TRUNC on a pipe or terminal is ignored
        try:
            os.ftruncate(self.hostfd, size)
        except OSError as e:
            raise SyscallError.from_host(e) from None

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        """A new description on the same host fd (/proc/self/fd/N, /dev/stdin)."""
        if self.hostfd < 0:
            raise SyscallError(Errno.ENXIO)
        return HostFileImpl(self, shares_host_offset=False)

    # -- readiness ---------------------------------------------------------------------

    def poll_now(self, mask: int) -> int:
        """EVENT_* bits ready on the host fd now (HUP and ERR are always reported)."""
        if not self.pollable:
            return (EVENT_IN | EVENT_OUT) & mask
        p = select.poll()
        p.register(self.hostfd, (mask & _POLL_BITS) or EVENT_IN)
        try:
            res = p.poll(0)
        except OSError:
            return EVENT_ERR
        ev = 0
        for _, e in res:
            ev |= e
        if ev & select.POLLNVAL:
            return EVENT_ERR
        return ev

    def arm(self, mask: int) -> None:
        """Ensures a one-shot epoll watch covers `mask`; the queue is notified when it fires."""
        if not self.pollable or self.hostfd < 0:
            return
        want = (mask & _POLL_BITS) | self.armed
        if self.armed and want == self.armed:
            return
        watch = getattr(self.kernel, "watch_fd", None)
        if watch is None:
            return
        events = want | EVENT_HUP | EVENT_ERR
        try:
            watch(self.hostfd, events, self._fired)
        except FileExistsError:
            if not self._rearm_in_place(events):
                return
        except PermissionError:
            # epoll refuses this file (it has no poll method): it is always ready.
            self.pollable = False
            return
        except OSError:
            return
        self.armed = want

    def _rearm_in_place(self, events: int) -> bool:
        """Re-arms a fired one-shot watch that is still registered in the loop's epoll.

        Kernel.watch_fd registers anew when its table has no entry for the fd,
        but a one-shot that fired stays registered (disabled), so register
        fails with EEXIST; modify it as watch_fd would have.
        TODO: drop once Kernel.watch_fd falls back to modify on EEXIST.
        """
        ep = getattr(self.kernel, "epoll", None)
        watchers = getattr(self.kernel, "fd_watchers", None)
        if ep is None or watchers is None:
            return False
        try:
            ep.modify(self.hostfd, events | select.EPOLLONESHOT)
        except OSError:
            return False
        watchers[self.hostfd] = (events, self._fired)
        return True

    def _fired(self, events: int) -> None:
        """The epoll watch fired (it is now disarmed)."""
        self.armed = 0
        self.queue.notify(events)
        # Waiters not interested in what fired stay queued: watch again for them.
        rest = 0
        for w in self.queue.waiters:
            rest |= w.mask
        if rest & _POLL_BITS:
            self.arm(rest)

    def disarm(self) -> None:
        if self.armed:
            unwatch = getattr(self.kernel, "unwatch_fd", None)
            if unwatch is not None:
                unwatch(self.hostfd)
            self.armed = 0

    def close(self) -> None:
        """The last description is gone."""
        self.disarm()
        if self.owned and self.hostfd >= 0:
            try:
                os.close(self.hostfd)
            except OSError:
                pass
        self.hostfd = -1


class HostFileImpl(FileImpl):
    """An open description on a host fd.

    With `shares_host_offset` (the stdio descriptions `host_file` makes) a
    regular file is read and written at the host fd's own offset; otherwise
    (a re-open) at the description's offset, with pread/pwrite.
    """

    def __init__(self, inode: HostInode, shares_host_offset: bool,
                 host_append: bool = False) -> None:
        self.host = inode
        self.seekable = inode.regular
        self.keeps_position = inode.regular and shares_host_offset
        self.host_append = host_append    # the host description has O_APPEND
        self.released = False
        inode.opens += 1

    # -- data --------------------------------------------------------------------------

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        h = self.host
        if n <= 0:
            return b""
        try:
            if h.regular:
                if offset == AT_POSITION:
                    return os.read(h.hostfd, min(n, MAX_FILE_READ))
                return os.pread(h.hostfd, min(n, MAX_FILE_READ), offset)
            if not h.poll_now(EVENT_IN) & (EVENT_IN | EVENT_HUP | EVENT_ERR):
                raise WouldBlock()
            return os.read(h.hostfd, min(n, MAX_STREAM_READ))
        except BlockingIOError:
            raise WouldBlock() from None
        except OSError as e:
            raise SyscallError.from_host(e) from None

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        h = self.host
        if not data:
            return 0
        view = memoryview(data)
        total = 0
        try:
            if h.regular:
                # One write(2) at the host offset: the host's O_APPEND and its
                # position lock make it atomic against the caller's other writers.
                if offset == AT_POSITION and fd.append and not self.host_append:
                    os.lseek(h.hostfd, 0, os.SEEK_END)     # O_APPEND set inside
                while total < len(view):
                    if offset == AT_POSITION:
                        k = os.write(h.hostfd, view[total:])
                    else:
                        k = os.pwrite(h.hostfd, view[total:], offset + total)
                    if k <= 0:
                        break
                    total += k
                return total
            while total < len(view):
                if h.pollable and not h.poll_now(EVENT_OUT) & (EVENT_OUT | EVENT_ERR |
                                                               EVENT_HUP):
                    if total:
                        return total
                    raise WouldBlock()
                # At most PIPE_BUF: a pipe polling writable takes it without blocking.
                chunk = view[total:total + PIPE_BUF] if h.pollable else view[total:]
                k = os.write(h.hostfd, chunk)
                if k <= 0:
                    break
                total += k
            return total
        except BlockingIOError:
            if total:
                return total
            raise WouldBlock() from None
        except OSError as e:
            if total:
                return total
            raise SyscallError.from_host(e) from None

    def host_offset(self) -> int:
        """The host fd's offset (0 if it has none)."""
        try:
            return os.lseek(self.host.hostfd, 0, os.SEEK_CUR)
        except OSError:
            return 0

    def set_host_offset(self, pos: int) -> None:
        try:
            os.lseek(self.host.hostfd, pos, os.SEEK_SET)
        except OSError:
            pass

    # -- readiness ---------------------------------------------------------------------

    def readiness(self, fd: FileDescription, mask: int) -> int:
        return self.host.poll_now(mask) & mask

    def waitq(self, fd: FileDescription) -> WaitQueue:
        """The queue notified when the host fd becomes ready; arms a one-shot watch."""
        self.host.arm(EVENT_IN | EVENT_OUT | EVENT_HUP)
        return self.host.queue

    def arm(self, kernel: Any, mask: int) -> None:
        """Watches for exactly `mask` before the caller sleeps (kernel: unused, the inode's)."""
        self.host.arm(mask)

    # -- control -----------------------------------------------------------------------

    def size(self, fd: FileDescription) -> int:
        return self.host.size()

    def fsync(self, fd: FileDescription) -> None:
        if self.host.regular:
            try:
                os.fsync(self.host.hostfd)
            except OSError as e:
                raise SyscallError.from_host(e) from None

    def release(self, fd: FileDescription) -> None:
        if self.released:
            return
        self.released = True
        h = self.host
        h.opens -= 1
        if h.opens <= 0:
            h.close()

    def ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        h = self.host
        if cmd == FIONREAD:
            return self._fionread(fd, t, arg)
        if not h.is_tty:
            raise SyscallError(Errno.ENOTTY)
        if h.tty_locked and cmd in _TTY_CHANGES and not (cmd == TCSBRK and arg):  # tcdrain: ok
            raise SyscallError(Errno.EPERM)
        try:
            if cmd == TCGETS:
                t.copy_out(arg, fcntl.ioctl(h.hostfd, TCGETS, bytes(TERMIOS_SIZE)))
            elif cmd in (TCSETS, TCSETSW, TCSETSF):
                fcntl.ioctl(h.hostfd, cmd, t.copy_in(arg, TERMIOS_SIZE))
            elif cmd == TIOCGWINSZ:
                t.copy_out(arg, fcntl.ioctl(h.hostfd, TIOCGWINSZ, bytes(WINSIZE_SIZE)))
            elif cmd == TIOCSWINSZ:
                fcntl.ioctl(h.hostfd, TIOCSWINSZ, t.copy_in(arg, WINSIZE_SIZE))
            elif cmd == TIOCGPGRP:
                t.copy_out(arg, _I32.pack(self._fg_pgrp(t)))
            elif cmd == TIOCSPGRP:
                (pgrp,) = _I32.unpack(t.copy_in(arg, 4))
                if pgrp < 0:
                    raise SyscallError(Errno.EINVAL)
                assert h.tty is not None
                h.tty.fg_pgrp = pgrp
            elif cmd == TIOCGSID:
                init = getattr(t.kernel, "init", None)
                sid = h.tty.sid if h.tty is not None and h.tty.sid is not None else \
                    init.sid if init is not None else 1
                t.copy_out(arg, _I32.pack(sid))
            elif cmd == TIOCOUTQ:
                t.copy_out(arg, fcntl.ioctl(h.hostfd, TIOCOUTQ, bytes(4)))
            elif cmd == TCSBRK:
                # Only zero or not matters (tty_ioctl); the host's ioctl takes a C int.
                fcntl.ioctl(h.hostfd, cmd, 1 if arg else 0)
            elif cmd in (TCXONC, TCFLSH):
                # The argument (an unsigned long) selects an action; tty_perform_flush
                # and n_tty_ioctl_helper refuse any other value.
                if arg > (TCION if cmd == TCXONC else TCIOFLUSH):
                    raise SyscallError(Errno.EINVAL)
                fcntl.ioctl(h.hostfd, cmd, arg)
            elif cmd in (TIOCSCTTY, TIOCNOTTY):
                pass    # the sandbox has no controlling terminals yet; never touch the host's
            else:
                raise SyscallError(Errno.ENOTTY)
        except OSError as e:
            raise SyscallError.from_host(e) from None
        return 0

    def _fg_pgrp(self, t: Task) -> int:
        tty = self.host.tty
        if tty is not None and tty.fg_pgrp is not None:
            return tty.fg_pgrp
        init = getattr(t.kernel, "init", None)
        return int(init.pgid) if init is not None and init.pgid else 1

    def _fionread(self, fd: FileDescription, t: Task, arg: int) -> int:
        h = self.host
        if h.regular:
            n = max(0, h.size() - fd.offset)
        else:
            try:
                (n,) = _I32.unpack(fcntl.ioctl(h.hostfd, FIONREAD, bytes(4)))
            except OSError as e:
                raise SyscallError.from_host(e) from None
        t.copy_out(arg, _I32.pack(min(n, 0x7FFFFFFF)))
        return 0


def _dentry_name(inode: HostInode, hostfd: int) -> bytes:
    """What /proc/PID/fd/N shows: Linux's names for pipes and sockets, else host:[N]."""
    ftype = inode.mode & S_IFMT
    if ftype == pystat.S_IFIFO:
        return b"pipe:[%d]" % inode.ino
    if ftype == pystat.S_IFSOCK:
        return b"socket:[%d]" % inode.ino
    return b"host:[%d]" % hostfd


class HostFileDescription(FileDescription):
    """A stdio description shared with the caller: `offset` is the host fd's offset."""

    __slots__ = ()

    @property   # type: ignore[override]
    def offset(self) -> int:
        impl = self.impl
        return impl.host_offset() if isinstance(impl, HostFileImpl) and impl.keeps_position \
            else 0

    @offset.setter
    def offset(self, pos: int) -> None:
        impl = self.impl
        if isinstance(impl, HostFileImpl) and impl.keeps_position:
            impl.set_host_offset(pos)


def host_file(kernel: Any, hostfd: int, flags: int, *, owned: bool = True, uid: int = 0,
              gid: int = 0) -> FileDescription:
    """A FileDescription sharing host fd `hostfd`'s open file description.

    `flags` gives the access mode; the status flags O_APPEND and O_NONBLOCK
    are the host description's.
    Preconditions: with `owned` (the default) the description owns `hostfd`
    and closes it with its last reference, so dup the Sentry's own stdio
    first.  `uid`/`gid` own the file as the sandbox sees it (the container
    user, so that re-opening /dev/stdout passes permission checks).
    Raises OSError if `hostfd` is not open.
    """
    inode = HostInode(_the_hostfs(), kernel, hostfd, owned, uid, gid)
    try:
        flags |= fcntl.fcntl(hostfd, fcntl.F_GETFL) & _SHARED_FLAGS
    except OSError:
        pass
    dentry = Dentry(_dentry_name(inode, hostfd), None, inode)
    mount = Mount(inode.fs, dentry, source="host")
    fd = HostFileDescription(mount, dentry, flags)
    fd.impl = HostFileImpl(inode, shares_host_offset=True,
                           host_append=bool(flags & os.O_APPEND))
    return fd


def same_description(fd1: int, fd2: int) -> bool:
    """Whether two of our fds are one open file description (kcmp KCMP_FILE)."""
    pid = os.getpid()
    return _libc().syscall(_SYS_KCMP, pid, pid, _KCMP_FILE, fd1, fd2) == 0


def _libc() -> Any:
    import ctypes
    return ctypes.CDLL(None, use_errno=True)


def stdio_files(kernel: Any, hostfds: Sequence[int], modes: Sequence[int], *, uid: int = 0,
                gid: int = 0) -> list[FileDescription | None]:
    """Descriptions for the container's fds 0, 1, 2 from the host fds `hostfds`.

    Host fds that share one open file description (`> log 2>&1`, a terminal
    dup'ed to all three) give one description, referenced once per fd, as
    a child process inherits them.  A closed host fd gives None.
    `modes` are the access modes to use when the host fd is not O_RDWR.
    """
    out: list[FileDescription | None] = []
    for i, (hostfd, mode) in enumerate(zip(hostfds, modes)):
        f: FileDescription | None = None
        for j in range(i):
            prev = out[j]
            if prev is not None and same_description(hostfds[j], hostfd):
                prev.incref()
                f = prev
                break
        if f is None:
            try:
                acc = fcntl.fcntl(hostfd, fcntl.F_GETFL) & os.O_ACCMODE
                f = host_file(kernel, os.dup(hostfd), os.O_RDWR if acc == os.O_RDWR else mode,
                              uid=uid, gid=gid)
            except OSError:
                f = None     # a closed stdio fd stays closed inside
        out.append(f)
    return out
