"""POSIX message queues.  Linux: ipc/mqueue.c.

The sandbox has one IPC namespace: its queues live in a `Registry` owned by the
Kernel, named as Linux's mqueue filesystem names them (no leading slash; glibc strips
it).  A queue is an inode; mq_open returns an ordinary file description on it, so
read(2) gives Linux's status line, poll/epoll see it, and close/dup/fork work as for
any file.  Messages are kept in priority order (highest first, FIFO among equals).

The queues also appear as files in the mqueue filesystem (`MqueueDir`), mounted at
/dev/mqueue when the OCI spec asks for it (runtime/boot.py): ls, open(O_CREAT) with
the default attributes, unlink and read work there as on Linux.
Not modelled: SIGEV_THREAD notification (glibc's netlink helper; EINVAL), IPC
namespaces, mount(2) of mqueue from inside; a notification registration ends when its
owner process dies rather than at its close().
Concurrency: Sentry loop only; tasks sleep in send/receive on the queue's wait queue.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_ACCMODE, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY
from pyvisor.abi.linux.stat import S_IFDIR, S_IFREG, dtype_of
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.waitqueue import EVENT_IN, EVENT_OUT, WaitQueue
from pyvisor.sentry.vfs.file import DirectoryImpl, FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import DirEntry, Filesystem, Inode

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.kernel import Kernel
    from pyvisor.sentry.kernel.task import Task, ThreadGroup

# Limits.  From ipc/mq_sysctl.c and <linux/ipc_namespace.h> (the /proc/sys/fs/mqueue defaults).
MQ_PRIO_MAX = 32768
MSG_MAX = 10
MSGSIZE_MAX = 8192
QUEUES_MAX = 256
HARD_MSGMAX = 65536
HARD_MSGSIZEMAX = 16 * 1024 * 1024
NAME_MAX = 255
RLIMIT_MSGQUEUE = 12
# struct mq_attr { long mq_flags, mq_maxmsg, mq_msgsize, mq_curmsgs, __reserved[4]; }
MQ_ATTR = struct.Struct("<4q32x")
# struct sigevent: sigval (8), int signo, int notify, then 48 bytes of union.
SIGEVENT = struct.Struct("<Qii48x")
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD = 0, 1, 2
SI_MESGQ = -3
_RDNORM, _WRNORM = 0x040, 0x100      # EPOLLRDNORM, EPOLLWRNORM, as mqueue_poll_file reports
_MSG_COST = 48        # Linux's per-message tree overhead in the RLIMIT_MSGQUEUE charge (approx.)


class MqueueFS(Filesystem):
    name = "mqueue"
    magic = 0x19800202


@dataclass(eq=False)
class Notification:
    owner: ThreadGroup
    notify: int            # SIGEV_SIGNAL or SIGEV_NONE
    signo: int
    value: int


class MessageQueue(Inode):
    """One queue.  Linux: struct mqueue_inode_info."""

    def __init__(self, fs: MqueueFS, name: bytes, mode: int, uid: int, gid: int,
                 maxmsg: int, msgsize: int) -> None:
        super().__init__(fs, S_IFREG | (mode & 0o7777), uid, gid)
        self.name = name
        self.maxmsg = maxmsg
        self.msgsize = msgsize
        # (-prio, seq) sorted: the head is the highest priority, oldest first.
        self.keys: list[tuple[int, int]] = []
        self.msgs: dict[tuple[int, int], bytes] = {}
        self.qsize = 0                      # bytes of message text queued
        self.wq = WaitQueue()
        self.notification: Notification | None = None
        self.receivers = 0                  # tasks sleeping in receive
        self.charge = 0                     # bytes charged to the creator's RLIMIT_MSGQUEUE
        self.charged_uid = uid

    @property
    def curmsgs(self) -> int:
        return len(self.keys)

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        return MqueueFileImpl()

    def size(self) -> int:
        return 0

    def owner(self) -> ThreadGroup | None:
        n = self.notification
        if n is not None and (n.owner.zombie or not n.owner.tasks):
            self.notification = n = None    # its owner is gone
        return n.owner if n is not None else None

    def status(self) -> bytes:
        n = self.notification if self.owner() is not None else None
        return b"QSIZE:%-10d NOTIFY:%-5d SIGNO:%-5d NOTIFY_PID:%-6d\n" % (
            self.qsize, n.notify if n else 0,
            n.signo if n and n.notify == SIGEV_SIGNAL else 0, n.owner.tgid if n else 0)


class MqueueFileImpl(FileImpl):
    """An mq descriptor: read gives the status line; poll sees messages and room."""

    splice_read = False
    seekable = True

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        q = fd.inode
        assert isinstance(q, MessageQueue)
        return q.status()[offset:offset + n]

    def readiness(self, fd: FileDescription, mask: int) -> int:
        q = fd.inode
        assert isinstance(q, MessageQueue)
        ev = (EVENT_IN | _RDNORM if q.curmsgs else 0) | \
            (EVENT_OUT | _WRNORM if q.curmsgs < q.maxmsg else 0)
        return ev & mask

    def waitq(self, fd: FileDescription) -> WaitQueue:
        q = fd.inode
        assert isinstance(q, MessageQueue)
        return q.wq


@dataclass(eq=False)
class Registry:
    """The IPC namespace's queues.  Owned by the Kernel."""

    fs: MqueueFS = field(default_factory=MqueueFS)
    queues: dict[bytes, MessageQueue] = field(default_factory=dict)
    bytes_by_uid: dict[int, int] = field(default_factory=dict)
    seq: Any = field(default_factory=itertools.count)


def registry(kernel: Kernel) -> Registry:
    """The queues of the current task's IPC namespace (kernel/namespaces.py): the
    sandbox's (kernel.mqueues) unless it made or joined another."""
    from pyvisor.sentry.kernel.namespaces import ipc_of
    ns = ipc_of(kernel)
    if ns is getattr(kernel, "ipc", None):
        reg = getattr(kernel, "mqueues", None)
        if reg is None:
            reg = kernel.mqueues = Registry()
        return reg
    reg = getattr(ns, "mqueues", None)
    if reg is None:
        reg = ns.mqueues = Registry()
    return reg


class MqueueDir(Inode):
    """The mqueue filesystem's root: one file per queue.  Linux: mqueue_dir_inode_operations
    (lookup, create, unlink; nothing else)."""

    def __init__(self, kernel: Kernel) -> None:
        self.reg = registry(kernel)
        super().__init__(self.reg.fs, S_IFDIR | 0o1777)
        self.kernel = kernel

    def lookup(self, name: bytes) -> Inode:
        q = self.reg.queues.get(name)
        if q is None:
            raise SyscallError(Errno.ENOENT)
        return q

    def readdir(self) -> list[DirEntry]:
        return [DirEntry(n, q.ino, dtype_of(q.mode)) for n, q in list(self.reg.queues.items())]

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> Inode:
        t = self.kernel.current             # the task whose open(O_CREAT) this is
        assert t is not None
        _check_name(name)
        if name in self.reg.queues:
            raise SyscallError(Errno.EEXIST)
        q = _create(t, self.reg, name, mode, None)
        q.uid, q.gid = uid, gid
        return q

    def unlink(self, name: bytes) -> None:
        q = self.lookup(name)
        assert isinstance(q, MessageQueue)
        _remove(self.reg, name, q)

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        return DirectoryImpl()


def _check_name(name: bytes) -> None:
    """Linux: lookup_one_len on the mqueue root."""
    if not name or name in (b".", b"..") or b"/" in name:
        raise SyscallError(Errno.EACCES)
    if len(name) > NAME_MAX:
        raise SyscallError(Errno.ENAMETOOLONG)


def _permitted(t: Task, q: MessageQueue, acc: int) -> bool:
    c = t.creds
    if c.fsuid == 0:
        return True
    if c.fsuid == q.uid:
        bits = q.mode >> 6
    elif c.fsgid == q.gid or q.gid in c.groups:
        bits = q.mode >> 3
    else:
        bits = q.mode
    want = {O_RDONLY: 4, O_WRONLY: 2, O_RDWR: 6}[acc]
    return bits & want == want


def _attr_ok(t: Task, maxmsg: int, msgsize: int) -> None:
    """Linux: mq_attr_ok."""
    if maxmsg <= 0 or msgsize <= 0:
        raise SyscallError(Errno.EINVAL)
    if t.creds.euid == 0:       # CAP_SYS_RESOURCE
        if maxmsg > HARD_MSGMAX or msgsize > HARD_MSGSIZEMAX:
            raise SyscallError(Errno.EINVAL)
    elif maxmsg > MSG_MAX or msgsize > MSGSIZE_MAX:
        raise SyscallError(Errno.EINVAL)


def open_queue(t: Task, name: bytes, oflag: int, mode: int,
               attr: tuple[int, int] | None) -> FileDescription:
    """mq_open's work after the arguments are read.  Linux: do_mq_open, prepare_open."""
    from pyvisor.sentry.vfs.vfs import Dentry, Mount
    reg = registry(t.kernel)
    _check_name(name)
    q = reg.queues.get(name)
    if q is None:
        if not oflag & 0o100:                 # O_CREAT
            raise SyscallError(Errno.ENOENT)
        q = _create(t, reg, name, mode, attr)
    else:
        if oflag & 0o300 == 0o300:           # O_CREAT | O_EXCL
            raise SyscallError(Errno.EEXIST)
        if oflag & O_ACCMODE == O_ACCMODE:
            raise SyscallError(Errno.EINVAL)
        if not _permitted(t, q, oflag & O_ACCMODE):
            raise SyscallError(Errno.EACCES)
    d = Dentry(b"/" + name, None, q)
    return FileDescription.open(Mount(reg.fs, d, source="mqueue"), d,
                                oflag & (O_ACCMODE | O_NONBLOCK))


def _create(t: Task, reg: Registry, name: bytes, mode: int,
            attr: tuple[int, int] | None) -> MessageQueue:
    if attr is not None:
        _attr_ok(t, *attr)
        maxmsg, msgsize = attr
    else:
        maxmsg, msgsize = MSG_MAX, MSGSIZE_MAX
    if len(reg.queues) >= QUEUES_MAX and t.creds.euid != 0:
        raise SyscallError(Errno.ENOSPC)
    charge = maxmsg * (msgsize + _MSG_COST)
    uid = t.creds.euid
    limit = t.tg.rlimits[RLIMIT_MSGQUEUE][0]
    if reg.bytes_by_uid.get(uid, 0) + charge > limit:
        raise SyscallError(Errno.EMFILE)
    umask = t.fs.umask
    q = MessageQueue(reg.fs, name, mode & ~umask & 0o777, t.creds.fsuid, t.creds.fsgid,
                     maxmsg, msgsize)
    q.charge, q.charged_uid = charge, uid
    reg.bytes_by_uid[uid] = reg.bytes_by_uid.get(uid, 0) + charge
    reg.queues[name] = q
    return q


def unlink(t: Task, name: bytes) -> None:
    """mq_unlink: the name goes; open descriptors keep the queue."""
    reg = registry(t.kernel)
    _check_name(name)
    q = reg.queues.get(name)
    if q is None:
        raise SyscallError(Errno.ENOENT)
    if t.creds.fsuid not in (0, q.uid):      # the mqueue root is sticky (may_delete)
        raise SyscallError(Errno.EPERM)
    _remove(reg, name, q)


def _remove(reg: Registry, name: bytes, q: MessageQueue) -> None:
    del reg.queues[name]
    reg.bytes_by_uid[q.charged_uid] = max(0, reg.bytes_by_uid.get(q.charged_uid, 0) - q.charge)
    q.charge = 0


def queue_of(t: Task, mqdes: int) -> tuple[FileDescription, MessageQueue]:
    f = t.fd_table.get(mqdes)                 # EBADF
    if not isinstance(f.inode, MessageQueue) or f.flags & 0o10000000:
        raise SyscallError(Errno.EBADF)
    return f, f.inode


def try_send(t: Task, q: MessageQueue, data: bytes, prio: int) -> None:
    """Queues one message or raises WouldBlock when full."""
    if q.curmsgs >= q.maxmsg:
        raise WouldBlock()
    key = (-prio, next(registry(t.kernel).seq))
    bisect.insort(q.keys, key)
    q.msgs[key] = data
    q.qsize += len(data)
    if q.curmsgs == 1 and q.receivers == 0:
        _notify(t, q)
    q.wq.notify(EVENT_IN)


def try_receive(q: MessageQueue) -> tuple[bytes, int]:
    """Takes the highest-priority message, or raises WouldBlock when empty."""
    if not q.keys:
        raise WouldBlock()
    key = q.keys.pop(0)
    data = q.msgs.pop(key)
    q.qsize -= len(data)
    q.wq.notify(EVENT_OUT)
    return data, -key[0]


def _notify(t: Task, q: MessageQueue) -> None:
    """A message arrived in an empty queue nobody waits on.  Linux: __do_notify."""
    owner = q.owner()
    n = q.notification
    if owner is None or n is None:
        return
    q.notification = None                     # one shot
    if n.notify == SIGEV_SIGNAL and n.signo:
        from pyvisor.sentry.kernel import signal as ksignal
        ksignal.send_to_group(owner, ksignal.SigInfo(n.signo, SI_MESGQ, pid=t.tg.tgid,
                                                     uid=t.creds.uid, value=n.value))


def set_notification(t: Task, q: MessageQueue, sev: tuple[int, int, int] | None) -> None:
    """mq_notify.  `sev` is (value, signo, notify) or None to unregister."""
    owner = q.owner()
    if sev is None:
        if owner is t.tg:
            q.notification = None
        return
    if owner is not None:
        raise SyscallError(Errno.EBUSY)
    value, signo, notify = sev
    q.notification = Notification(t.tg, notify, signo, value)
