"""Host files: the container's stdio and terminal, held by the Sentry.

Linux analogue: none (the application would hold these fds itself); gVisor:
pkg/sentry/fsimpl/host.  A `HostInode` wraps one host fd; every open file
description on it (the one `host_file` makes, and re-opens through
/proc/self/fd/N or /dev/stdin) is a `HostFileImpl` sharing that fd.

Blocking: the Sentry is one loop, so a host read or write must never wait.
Before reading a pipe, socket or tty we poll it with a zero timeout and raise
WouldBlock if it has nothing; writes go in chunks of at most PIPE_BUF while
the fd polls writable, so a full pipe gives a short write (or WouldBlock if
nothing was written) instead of stalling the sandbox.  The syscall layer then
sleeps on `waitq`, which arms a one-shot epoll watch on the Sentry's loop
(Kernel.watch_fd) that notifies the queue when the fd becomes ready.
Regular files (and devices epoll refuses, such as /dev/null) are always
ready and use plain pread/pwrite.

Terminal ioctls are passed through to the host terminal; the foreground
process group is virtual (the host's belongs to the host's processes).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import fcntl
import os
import select
import stat as pystat
import struct
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.stat import S_IFMT
from pyvisor.sentry.kernel.errors import SyscallError, WouldBlock
from pyvisor.sentry.kernel.waitqueue import (EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT,
                                             EVENT_PRI, EVENT_RDHUP, WaitQueue)
from pyvisor.sentry.vfs.file import FileDescription, FileImpl
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

_POLL_BITS = EVENT_IN | EVENT_PRI | EVENT_OUT | EVENT_RDHUP   # poll(2) == epoll bit values
_I32 = struct.Struct("<i")


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
                 "pollable", "is_tty", "fg_pgrp", "host_append")

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
        self.fg_pgrp: int | None = None   # virtual foreground process group (TIOCSPGRP)
        try:
            self.host_append = bool(fcntl.fcntl(hostfd, fcntl.F_GETFL) & os.O_APPEND)
        except OSError:
            self.host_append = False
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
        return HostFileImpl(self)

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
    """An open description on a host fd."""

    def __init__(self, inode: HostInode) -> None:
        self.host = inode
        self.seekable = inode.regular
        self.released = False
        inode.opens += 1

    # -- data --------------------------------------------------------------------------

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        h = self.host
        if n <= 0:
            return b""
        try:
            if h.regular:
                data = os.pread(h.hostfd, min(n, MAX_FILE_READ), offset)
                self._sync_offset(offset + len(data))
                return data
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
                while total < len(view):
                    if h.host_append:
                        k = os.write(h.hostfd, view[total:])
                    else:
                        k = os.pwrite(h.hostfd, view[total:], offset + total)
                    if k <= 0:
                        break
                    total += k
                if not h.host_append:
                    self._sync_offset(offset + total)
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

    def _sync_offset(self, pos: int) -> None:
        """Keeps the host fd's offset with ours, for whoever shares it after we exit."""
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
                h.fg_pgrp = pgrp
            elif cmd == TIOCGSID:
                init = getattr(t.kernel, "init", None)
                t.copy_out(arg, _I32.pack(init.sid if init is not None else 1))
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
        if self.host.fg_pgrp is not None:
            return self.host.fg_pgrp
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


def host_file(kernel: Any, hostfd: int, flags: int, *, owned: bool = True, uid: int = 0,
              gid: int = 0) -> FileDescription:
    """A FileDescription on host fd `hostfd` (for the container's stdio).

    Preconditions: with `owned` (the default) the description owns `hostfd`
    and closes it with its last reference, so dup the Sentry's own stdio
    first.  `uid`/`gid` own the file as the sandbox sees it (the container
    user, so that re-opening /dev/stdout passes permission checks).
    Raises OSError if `hostfd` is not open.
    """
    inode = HostInode(_the_hostfs(), kernel, hostfd, owned, uid, gid)
    dentry = Dentry(_dentry_name(inode, hostfd), None, inode)
    mount = Mount(inode.fs, dentry, source="host")
    fd = FileDescription.open(mount, dentry, flags)
    if inode.regular:
        try:
            fd.offset = os.lseek(hostfd, 0, os.SEEK_CUR)
        except OSError:
            pass
    return fd
