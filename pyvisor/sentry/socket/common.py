"""Sockets: what every family shares.  Linux: net/socket.c, net/core/sock.c,
net/core/scm.c.  gVisor: pkg/sentry/socket/socket.go, control/control.go.

A socket is an open file whose FileImpl is a `Socket`.  The syscall layer
(syscalls/linux/sys_socket.py) decodes user memory into plain values
(address bytes, payload bytes, a parsed `Control`) and calls the Socket's
operations; families (unix.py; later hostinet, netstack) implement them.
Generic SOL_SOCKET options (buffer sizes, timeouts, flags that are only
stored) live here, so families only add what is theirs.

Ownership of in-flight files: a `Control` holds one reference to each file of
an SCM_RIGHTS message.  A family that queues the message takes those
references (sets `rights` to None); whatever is left is released by the
caller.  A `Received` likewise hands the receiver one reference per file,
which `deliver_control` installs in the fd table or drops.

Concurrency: Sentry loop only.  Operations that may sleep are coroutines and
sleep only in `wait` (through Kernel.block_on).
"""

from __future__ import annotations

import struct
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from pyvisor.abi.linux.capability import CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_CLOEXEC, O_NONBLOCK, O_RDWR
from pyvisor.abi.linux.stat import S_IFSOCK
from pyvisor.sentry.errors import Interrupted, SyscallError, TimedOut, WouldBlock
from pyvisor.sentry.waitqueue import WaitQueue
from pyvisor.sentry.vfs.file import FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import Filesystem, Inode
from pyvisor.sentry.vfs.vfs import Dentry, Mount

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.mm.memfile import Mappable

# TODO(#2): these belong in pyvisor/abi/linux/socket.py (data only); they are
# here until that module exists.

# Address families.  From <linux/socket.h>.
AF_UNSPEC = 0
AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
AF_PACKET = 17
AF_MAX = 46

# Socket types.  From <linux/net.h>.
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
SOCK_RDM = 4
SOCK_SEQPACKET = 5
SOCK_DCCP = 6
SOCK_PACKET = 10
SOCK_MAX = 11
SOCK_TYPE_MASK = 0xF
SOCK_NONBLOCK = O_NONBLOCK
SOCK_CLOEXEC = O_CLOEXEC

# Options.  From <asm-generic/socket.h>.
SOL_SOCKET = 1
SO_DEBUG = 1
SO_REUSEADDR = 2
SO_TYPE = 3
SO_ERROR = 4
SO_DONTROUTE = 5
SO_BROADCAST = 6
SO_SNDBUF = 7
SO_RCVBUF = 8
SO_KEEPALIVE = 9
SO_OOBINLINE = 10
SO_NO_CHECK = 11
SO_PRIORITY = 12
SO_LINGER = 13
SO_BSDCOMPAT = 14
SO_REUSEPORT = 15
SO_PASSCRED = 16
SO_PEERCRED = 17
SO_RCVLOWAT = 18
SO_SNDLOWAT = 19
SO_RCVTIMEO = 20
SO_SNDTIMEO = 21
SO_BINDTODEVICE = 25
SO_TIMESTAMP = 29
SO_ACCEPTCONN = 30
SO_PEERSEC = 31
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SO_PASSSEC = 34
SO_TIMESTAMPNS = 35
SO_MARK = 36
SO_PROTOCOL = 38
SO_DOMAIN = 39
SO_RXQ_OVFL = 40
SO_PEEK_OFF = 42
SO_PEERGROUPS = 59
SO_PASSPIDFD = 76
SO_PEERPIDFD = 77
SO_SELECT_ERR_QUEUE = 45
SO_BUSY_POLL = 46
SO_INCOMING_CPU = 49

# Message flags.  From <linux/socket.h>.
MSG_OOB = 0x1
MSG_PEEK = 0x2
MSG_DONTROUTE = 0x4
MSG_CTRUNC = 0x8
MSG_TRUNC = 0x20
MSG_DONTWAIT = 0x40
MSG_EOR = 0x80
MSG_CONFIRM = 0x800
MSG_WAITALL = 0x100
MSG_ERRQUEUE = 0x2000
MSG_NOSIGNAL = 0x4000
MSG_MORE = 0x8000
MSG_WAITFORONE = 0x10000
MSG_CMSG_CLOEXEC = 0x40000000

# Control messages.  From <linux/socket.h>, <net/scm.h>.
SCM_RIGHTS = 1
SCM_CREDENTIALS = 2
SCM_PIDFD = 4
SCM_MAX_FD = 253
CMSGHDR = struct.Struct("<Qii")       # cmsg_len, cmsg_level, cmsg_type
UCRED = struct.Struct("<iII")         # pid, uid, gid
TIMEVAL = struct.Struct("<qq")
LINGER = struct.Struct("<ii")

# shutdown(2).  From <linux/net.h>; the kernel's sk_shutdown bits from <net/sock.h>.
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
RCV_SHUTDOWN, SEND_SHUTDOWN, SHUTDOWN_MASK = 1, 2, 3

# ioctls.  From <asm-generic/ioctls.h>, <linux/sockios.h>.
SIOCINQ = 0x541B        # FIONREAD
SIOCOUTQ = 0x5411       # TIOCOUTQ

SOCKADDR_STORAGE = 128
HZ = 250                              # CONFIG_HZ: socket timeouts are kept in jiffies
SOMAXCONN = 4096                      # net.core.somaxconn
WMEM_DEFAULT = RMEM_DEFAULT = 212992  # net.core.{w,r}mem_default
SOCK_MIN_SNDBUF = 4608
SOCK_MIN_RCVBUF = 2304
UCRED_NOBODY = (0, 0xFFFFFFFF, 0xFFFFFFFF)   # what SO_PEERCRED gives without a peer


class WholeValue(bytes):
    """A getsockopt(2) value that is never cut to the caller's buffer: one too small
    gets ERANGE and the length needed in *optlen (SO_PEERGROUPS)."""


def cmsg_align(n: int) -> int:
    return (n + 7) & ~7


def cmsg_space(n: int) -> int:
    return CMSGHDR.size + cmsg_align(n)


# -- the socket filesystem --------------------------------------------------------------------


class SockFS(Filesystem):
    """sockfs: the anonymous filesystem socket inodes live on.  Linux: net/socket.c."""

    name = "sockfs"
    magic = 0x534F434B


_SOCKFS: SockFS | None = None


class SocketInode(Inode):
    """A socket's inode: fstat reports S_IFSOCK|0777 owned by the creator."""

    __slots__ = ("sock",)

    def mappable(self) -> Mappable | None:
        """mmap of a socket: what the socket offers (an AF_PACKET ring), else ENODEV."""
        sock: Socket | None = self.sock()     # set by new_socket_file, the only maker
        return sock.mappable() if sock is not None else None


def new_socket_file(impl: Socket, flags: int, uid: int, gid: int) -> FileDescription:
    """An open file for `impl`, named socket:[ino] as /proc/PID/fd shows it.
    `flags` may hold SOCK_NONBLOCK; the file is O_RDWR."""
    global _SOCKFS
    if _SOCKFS is None:
        _SOCKFS = SockFS()
    inode = SocketInode(_SOCKFS, S_IFSOCK | 0o777, uid, gid)
    # Weakly: the inode lives in a cycle with its dentry, and a socket must be freed
    # (its Sentry memory charge returned, netstack.charge) as soon as its file closes.
    inode.sock = weakref.ref(impl)
    d = Dentry(b"socket:[%d]" % inode.ino, None, inode)
    f = FileDescription(Mount(_SOCKFS, d, source="sockfs"), d, O_RDWR | (flags & O_NONBLOCK))
    f.impl = impl
    impl.ino = inode.ino
    impl.inode = inode
    return f


# -- control messages ---------------------------------------------------------------------------


@dataclass(slots=True)
class Control:
    """A parsed msg_control for sending.  Linux: struct scm_cookie."""

    rights: list[FileDescription] | None = None   # one reference each, owned here
    creds: tuple[int, int, int] | None = None     # explicit SCM_CREDENTIALS (pid, uid, gid)
    # SOL_IP/SOL_IPV6 messages (IP_TTL, IP_TOS, IPV6_HOPLIMIT, ...) as (level, type, data),
    # for the inet families to check and use (ip_cmsg_send, ip6_datagram_send_ctl).
    ip: list[tuple[int, int, bytes]] | None = None

    def release(self) -> None:
        """Drops the references this object still holds."""
        rights, self.rights = self.rights, None
        for f in rights or ():
            f.decref()


@dataclass(slots=True)
class Received:
    """What a receive produced.  `length` is the return value (MSG_TRUNC may make it
    exceed len(data)); `rights` carries one reference per file for the receiver;
    `creds` is set when SCM_CREDENTIALS is to be delivered."""

    data: bytes
    length: int
    flags: int = 0
    addr: bytes | None = None
    rights: list[FileDescription] | None = None
    creds: tuple[int, int, int] | None = None
    cmsgs: list[tuple[int, int, bytes]] | None = None   # (level, type, data): IP_TTL, ...
    want_pidfd: bool = False    # SO_PASSPIDFD: SCM_PIDFD is due (MSG_CTRUNC without room)
    pidfd_for: Any = None       # the sender's ThreadGroup for SCM_PIDFD (None: no sender)

    def then(self, more: Received | None) -> Received:
        """This receive followed by `more` of the same call (MSG_WAITALL, a stream
        read in parts): `more`'s bytes appended to this one's; returns self."""
        if more is not None:
            self.data += more.data
            self.length += more.length
        return self

    def drop_control(self) -> int:
        """For receives without a control buffer: drops passed files; MSG_CTRUNC if any
        control message was lost."""
        lost = bool(self.rights) or self.creds is not None or bool(self.cmsgs) or \
            self.want_pidfd
        rights, self.rights = self.rights, None
        for f in rights or ():
            f.decref()
        return MSG_CTRUNC if lost else 0


def check_creds(t: Task, pid: int, uid: int, gid: int) -> None:
    """Explicit SCM_CREDENTIALS: ids of the sender's own unless it holds CAP_SYS_ADMIN
    (another pid), CAP_SETUID (another uid), CAP_SETGID (another gid); EINVAL for the
    invalid id -1; ESRCH for another pid that names no task.  Linux: scm_check_creds
    and __scm_send's find_get_pid."""
    c = t.creds
    if uid == 0xFFFFFFFF or gid == 0xFFFFFFFF:
        raise SyscallError(Errno.EINVAL)
    own_pid = pid == t.tg.tgid
    if (own_pid or c.capable(CAP_SYS_ADMIN)) and \
            (uid in (c.uid, c.euid, c.suid) or c.capable(CAP_SETUID)) and \
            (gid in (c.gid, c.egid, c.sgid) or c.capable(CAP_SETGID)):
        if not own_pid and not _pid_exists(t, pid):
            raise SyscallError(Errno.ESRCH)
        return
    raise SyscallError(Errno.EPERM)


def _pid_exists(t: Task, pid: int) -> bool:
    """Whether `pid` names a thread or a process not yet reaped (a struct pid)."""
    if pid <= 0:
        return False
    k = t.kernel
    task = k.tasks_by_tid.get(pid)
    if task is not None:
        return True
    tg = k.groups.get(pid)
    return tg is not None and not tg.reaped


def parse_control(t: Task, raw: bytes, rights_ok: bool) -> Control:
    """msg_control of sendmsg(2) -> Control.  Linux: __scm_send.

    Messages at other levels are ignored; SCM_RIGHTS needs an AF_UNIX socket
    (`rights_ok`).  Takes a reference on each passed file; on error none is kept.
    """
    ctl = Control()
    off = 0
    try:
        while len(raw) - off >= CMSGHDR.size:
            cmlen, level, ctype = CMSGHDR.unpack_from(raw, off)
            if cmlen < CMSGHDR.size or cmlen > len(raw) - off:
                raise SyscallError(Errno.EINVAL)
            if level == SOL_SOCKET:
                data = raw[off + CMSGHDR.size:off + cmlen]
                if ctype == SCM_RIGHTS:
                    if not rights_ok:
                        raise SyscallError(Errno.EINVAL)
                    num = len(data) // 4
                    if num > 0:
                        have = len(ctl.rights) if ctl.rights else 0
                        if num > SCM_MAX_FD or have + num > SCM_MAX_FD:
                            raise SyscallError(Errno.EINVAL)
                        if ctl.rights is None:
                            ctl.rights = []
                        for fd in struct.unpack_from(f"<{num}i", data):
                            f = t.fd_table.get(fd)                 # EBADF
                            f.incref()
                            ctl.rights.append(f)
                elif ctype == SCM_CREDENTIALS:
                    if cmlen != CMSGHDR.size + UCRED.size:
                        raise SyscallError(Errno.EINVAL)
                    pid, uid, gid = UCRED.unpack(data)
                    check_creds(t, pid, uid, gid)
                    ctl.creds = (pid, uid, gid)
                else:
                    raise SyscallError(Errno.EINVAL)
            elif level in (0, 41):                             # SOL_IP, SOL_IPV6
                if ctl.ip is None:
                    ctl.ip = []
                ctl.ip.append((level, ctype, raw[off + CMSGHDR.size:off + cmlen]))
            off += cmsg_align(cmlen)
    except SyscallError:
        ctl.release()
        raise
    return ctl


def deliver_control(t: Task, r: Received, controllen: int, flags: int
                    ) -> tuple[list[tuple[int, bytes]], int, int]:
    """Builds msg_control for recvmsg(2): SCM_CREDENTIALS first, then SCM_RIGHTS,
    installing passed files in the receiver's fd table, then SCM_PIDFD.  Linux:
    scm_recv_unix, put_cmsg, scm_detach_fds, scm_pidfd_recv.

    Returns (writes as (offset, bytes), bytes used, MSG_CTRUNC or 0).  Files that
    do not fit (space, EMFILE) are dropped and the message is flagged truncated.
    Only the header and data of each message are written, never the padding,
    as Linux.
    """
    writes: list[tuple[int, bytes]] = []
    space = controllen
    pos = 0
    trunc = 0
    if r.creds is not None:
        data = UCRED.pack(r.creds[0], r.creds[1] & 0xFFFFFFFF, r.creds[2] & 0xFFFFFFFF)
        if space < CMSGHDR.size:
            trunc = MSG_CTRUNC
        else:
            cmlen = CMSGHDR.size + len(data)
            if space < cmlen:
                trunc = MSG_CTRUNC
                cmlen = space
            writes.append((pos, (CMSGHDR.pack(cmlen, SOL_SOCKET, SCM_CREDENTIALS) + data)[:cmlen]))
            adv = min(cmsg_space(len(data)), space)
            pos += adv
            space -= adv
    rights, r.rights = r.rights, None
    if rights:
        fdmax = 0 if space <= CMSGHDR.size else (space - CMSGHDR.size) // 4
        fdmax = min(fdmax, len(rights))
        fds: list[int] = []
        cloexec = bool(flags & MSG_CMSG_CLOEXEC)
        for f in rights[:fdmax]:
            try:
                fds.append(t.fd_table.install(f, cloexec))   # takes the reference
            except SyscallError:
                break
        if fds:
            cmlen = CMSGHDR.size + 4 * len(fds)
            writes.append((pos, CMSGHDR.pack(cmlen, SOL_SOCKET, SCM_RIGHTS)
                           + struct.pack(f"<{len(fds)}i", *fds)))
            adv = min(cmsg_space(4 * len(fds)), space)
            pos += adv
            space -= adv
        if len(fds) < len(rights):
            trunc = MSG_CTRUNC
        for f in rights[len(fds):]:
            f.decref()
    for level, ctype, data in r.cmsgs or ():
        # put_cmsg: a header that does not fit is dropped, a body that does not is cut.
        if space < CMSGHDR.size:
            trunc = MSG_CTRUNC
            break
        cmlen = CMSGHDR.size + len(data)
        if space < cmlen:
            trunc = MSG_CTRUNC
            cmlen = space
        writes.append((pos, (CMSGHDR.pack(cmlen, level, ctype) + data)[:cmlen]))
        adv = min(cmsg_space(len(data)), space)
        pos += adv
        space -= adv
    if r.want_pidfd:
        # scm_pidfd_recv: last, only whole, a close-on-exec pidfd of the sender.
        if space < CMSGHDR.size + 4:
            trunc = MSG_CTRUNC
        elif r.pidfd_for is not None:
            from pyvisor.sentry.syscalls.linux.sys_signal import new_pidfd
            try:
                fd = new_pidfd(t, r.pidfd_for, False)
            except SyscallError as e:
                fd = -e.errno                  # as put_cmsg passes pidfd_prepare's error
            writes.append((pos, CMSGHDR.pack(CMSGHDR.size + 4, SOL_SOCKET, SCM_PIDFD)
                           + struct.pack("<i", fd)))
            adv = min(cmsg_space(4), space)
            pos += adv
            space -= adv
    return writes, pos, trunc


# -- waiting ------------------------------------------------------------------------------------


def deadline_of(t: Task, timeo: int | None) -> int | None:
    """The monotonic deadline for a SO_RCVTIMEO/SO_SNDTIMEO value (None: forever)."""
    if timeo is None:
        return None
    return t.kernel.now() + timeo


async def wait(t: Task, q: WaitQueue | list[WaitQueue], mask: int, deadline: int | None,
               timed: bool) -> None:
    """Sleeps on `q` until an event in `mask`.  A socket timeout ends the wait with
    EAGAIN; a signal gives EINTR when a timeout is set (sock_intr_errno), else the
    usual restartable interruption."""
    try:
        await t.kernel.block_on(t, q, mask, deadline=deadline)
    except TimedOut:
        raise WouldBlock() from None
    except Interrupted:
        if timed:
            raise SyscallError(Errno.EINTR) from None
        raise


# -- the socket interface -----------------------------------------------------------------------

# SOL_SOCKET options that are stored and reported but change nothing here:
# name -> True for boolean options (reported as 0/1), False for integers.
_STORED: dict[int, bool] = {
    SO_DEBUG: True, SO_REUSEADDR: True, SO_DONTROUTE: True, SO_BROADCAST: True,
    SO_KEEPALIVE: True, SO_OOBINLINE: True, SO_NO_CHECK: True, SO_REUSEPORT: True,
    SO_PASSSEC: True, SO_TIMESTAMP: True, SO_TIMESTAMPNS: True, SO_RXQ_OVFL: True,
    SO_SELECT_ERR_QUEUE: True, SO_PRIORITY: False, SO_MARK: False, SO_BUSY_POLL: False,
    SO_INCOMING_CPU: False,
}
_DEFAULTS = {SO_INCOMING_CPU: -1}


class Socket(FileImpl):
    """An open socket.  Linux: struct socket + struct proto_ops.

    Subclasses implement their family's operations; the defaults give the
    errno Linux gives when a family lacks the operation.  Fields below are
    owned by the socket.
    """

    fasync = True          # O_ASYNC sends SIGIO (kernel/fasync.py)
    # Set by F_SETOWN (fasync.set_owner): called when urgent data arrives (TCP: SIGURG).
    send_sigurg: Callable[[], None] | None = None

    family = AF_UNSPEC

    def __init__(self, stype: int, protocol: int) -> None:
        self.stype = stype
        self.protocol = protocol
        self.sndbuf = WMEM_DEFAULT
        self.rcvbuf = RMEM_DEFAULT
        self.rcvtimeo: int | None = None   # ns; None: block forever, 0: never block
        self.sndtimeo: int | None = None
        self.rcvlowat = 1
        self.linger = (0, 0)
        self.opts: dict[int, int] = {}     # _STORED options that were set
        self.ino = 0                       # the socket inode's number (/proc/net, fdinfo)
        self.inode: Inode | None = None    # the socket inode (fchmod sets its mode)

    def io_timeout(self, writing: bool) -> int | None:
        return self.sndtimeo if writing else self.rcvtimeo

    # -- operations (proto_ops) --------------------------------------------------------------

    def bind(self, t: Task, addr: bytes) -> None:
        raise SyscallError(Errno.EOPNOTSUPP)

    def listen(self, t: Task, backlog: int) -> None:
        raise SyscallError(Errno.EOPNOTSUPP)

    async def accept(self, t: Task, f: FileDescription, flags: int
                     ) -> tuple[FileDescription, bytes]:
        """Returns a new open file (SOCK_NONBLOCK applied) and the peer's address."""
        raise SyscallError(Errno.EOPNOTSUPP)

    async def connect(self, t: Task, f: FileDescription, addr: bytes) -> None:
        raise SyscallError(Errno.EOPNOTSUPP)

    def getsockname(self, t: Task) -> bytes:
        raise SyscallError(Errno.EOPNOTSUPP)

    def getpeername(self, t: Task) -> bytes:
        raise SyscallError(Errno.ENOTCONN)

    def shutdown(self, t: Task, how: int) -> None:
        raise SyscallError(Errno.EOPNOTSUPP)

    async def sendmsg(self, t: Task, f: FileDescription, data: bytes, flags: int,
                      addr: bytes | None, control: Control) -> int:
        """Sends `data`; takes what it queues of `control`.  Sends SIGPIPE itself
        where the family does (and MSG_NOSIGNAL is not set)."""
        raise SyscallError(Errno.EOPNOTSUPP)

    async def recvmsg(self, t: Task, f: FileDescription, n: int, flags: int,
                      want_addr: bool) -> Received:
        raise SyscallError(Errno.EOPNOTSUPP)

    def ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        """Interface requests (SIOCGIF*) work on a socket of any family, as sock_ioctl
        passes them to dev_ioctl; the rest are the family's (`proto_ioctl`)."""
        from pyvisor.sentry.socket.inet import SIOCGIFS, interface_ioctl
        if cmd in SIOCGIFS:
            from pyvisor.sentry.socket import network_for
            return interface_ioctl(t, network_for(t).stack.interfaces(), cmd, arg)
        return self.proto_ioctl(t, cmd, arg)

    def proto_ioctl(self, t: Task, cmd: int, arg: int) -> int:
        raise SyscallError(Errno.ENOTTY)

    # -- options -----------------------------------------------------------------------------

    def getsockopt_sized(self, t: Task, level: int, name: int, avail: int
                         ) -> tuple[bytes, int] | None:
        """For options whose reported length is not what is copied out (Linux writes
        at most `avail` bytes but reports the full size, as NETLINK_LIST_MEMBERSHIPS
        does): (bytes to copy, length to report), or None for an ordinary option."""
        return None

    def getsockopt(self, t: Task, level: int, name: int) -> bytes:
        """The option's whole value; the caller truncates it to the user's optlen."""
        if level != SOL_SOCKET:
            raise SyscallError(Errno.EOPNOTSUPP)
        i32 = struct.Struct("<i").pack
        if name == SO_TYPE:
            return i32(self.stype)
        if name == SO_DOMAIN:
            return i32(self.family)
        if name == SO_PROTOCOL:
            return i32(self.protocol)
        if name == SO_SNDBUF:
            return i32(self.sndbuf)
        if name == SO_RCVBUF:
            return i32(self.rcvbuf)
        if name in (SO_RCVTIMEO, SO_SNDTIMEO):
            timeo = self.rcvtimeo if name == SO_RCVTIMEO else self.sndtimeo
            us = (timeo or 0) // 1000
            return TIMEVAL.pack(us // 1_000_000, us % 1_000_000)
        if name == SO_RCVLOWAT:
            return i32(self.rcvlowat)
        if name == SO_SNDLOWAT:
            return i32(1)
        if name == SO_LINGER:
            return LINGER.pack(*self.linger)
        if name == SO_BSDCOMPAT:
            return i32(0)
        if name in _STORED:
            return i32(self.opts.get(name, _DEFAULTS.get(name, 0)))
        raise SyscallError(Errno.ENOPROTOOPT)

    def setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        if level != SOL_SOCKET:
            raise SyscallError(Errno.EOPNOTSUPP)
        if len(optval) < 4:
            raise SyscallError(Errno.EINVAL)
        (val,) = struct.unpack_from("<i", optval)
        privileged = t.creds.euid == 0
        if name in (SO_SNDBUF, SO_SNDBUFFORCE):
            if name == SO_SNDBUFFORCE and not privileged:
                raise SyscallError(Errno.EPERM)
            v = val & 0xFFFFFFFF if name == SO_SNDBUF else val
            if name == SO_SNDBUF:
                v = min(v, t.kernel.net_core.wmem_max)
            self.sndbuf = max(min(v, 0x7FFFFFFF // 2) * 2, SOCK_MIN_SNDBUF)
            self.buffers_changed()
            return
        if name in (SO_RCVBUF, SO_RCVBUFFORCE):
            if name == SO_RCVBUFFORCE and not privileged:
                raise SyscallError(Errno.EPERM)
            v = val & 0xFFFFFFFF if name == SO_RCVBUF else val
            if name == SO_RCVBUF:
                v = min(v, t.kernel.net_core.rmem_max)
            self.rcvbuf = max(min(v, 0x7FFFFFFF // 2) * 2, SOCK_MIN_RCVBUF)
            return
        if name in (SO_RCVTIMEO, SO_SNDTIMEO):
            if len(optval) < TIMEVAL.size:
                raise SyscallError(Errno.EINVAL)
            sec, usec = TIMEVAL.unpack_from(optval)
            if usec < 0 or usec >= 1_000_000:
                raise SyscallError(Errno.EDOM)
            timeo: int | None
            if sec < 0:
                timeo = 0
            elif sec == 0 and usec == 0:
                timeo = None
            else:
                # In whole jiffies, rounded up, as sock_set_timeout stores it.
                jiffies = sec * HZ + -(-usec // (1_000_000 // HZ))
                timeo = jiffies * (10**9 // HZ)
            if name == SO_RCVTIMEO:
                self.rcvtimeo = timeo
            else:
                self.sndtimeo = timeo
            return
        if name == SO_RCVLOWAT:
            self.rcvlowat = 0x7FFFFFFF if val < 0 else max(val, 1)
            return
        if name == SO_LINGER:
            if len(optval) < LINGER.size:
                raise SyscallError(Errno.EINVAL)
            onoff, secs = LINGER.unpack_from(optval)
            # sock_setsockopt: l_onoff 0 clears SOCK_LINGER but keeps sk_lingertime.
            self.linger = (1, secs) if onoff else (0, self.linger[1])
            return
        if name == SO_BSDCOMPAT:
            return
        if name in _STORED:
            if name == SO_PRIORITY and not 0 <= val <= 6 and not privileged:
                raise SyscallError(Errno.EPERM)
            if name == SO_MARK and not privileged:
                raise SyscallError(Errno.EPERM)
            self.opts[name] = (1 if val else 0) if _STORED[name] else val
            return
        raise SyscallError(Errno.ENOPROTOOPT)

    def mappable(self) -> Mappable | None:
        """What mmap(2) of this socket maps (sock_mmap); None: ENODEV."""
        return None

    def buffers_changed(self) -> None:
        """SO_SNDBUF changed: writers may wake (families override)."""
