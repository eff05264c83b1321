"""AF_UNIX sockets, served entirely by the Sentry.  Linux: net/unix/af_unix.c.
gVisor: pkg/sentry/socket/unix (and unix/transport).

One `UnixSocket` is both Linux's struct socket and struct unix_sock: it is
the FileImpl of an open socket file, or, before accept(2), an "embryo" that
a connect(2) queued on a listener and that has no file yet.

SO_PEEK_OFF (`peek_off`, -1: off) makes MSG_PEEK start that many bytes into
the queue, whole datagrams skipped, and move on by what it returned; an
ordinary receive moves it back by what it took (sk_peek_offset_fwd/bwd).

Data moves as `Message`s queued on the receiver.  A stream send is cut into
messages of at most half the send buffer; a receive glues them together
(never across a change of sender credentials when SO_PASSCRED is on, and
never past a message that carried files).  Datagram and seqpacket receives
take one message, truncating it.  Flow control is Linux's: a sender may
queue while its bytes in flight (`wmem`: each message's bytes plus a fixed
overhead, charged when queued and refunded as the receiver consumes them)
are under SO_SNDBUF, and polls writable while they are at most a quarter of
it; a datagram receiver that is not connected back to its sender also
refuses more than `backlog` (net.unix.max_dgram_qlen) queued messages.

Names: a path binding makes a socket node with the directory's mknod (tmpfs,
or the overlay's upper tmpfs) and points the node's `bound` at the socket;
abstract names (sun_path starting with NUL) live in a per-kernel table keyed
by (address, type), as Linux hashes the type into the name.  A closed
socket forgets its node and its abstract name, so connecting gets
ECONNREFUSED while the node stays, as on Linux.

Sockets kept alive only by their own files in flight (a socket sent over
itself, two sent to each other, then closed) are found and freed by
`UnixNamespace.collect` (Linux: unix_gc), run when a unix socket is released
and before a sender is refused for having too many files in flight.

Differences from Linux, for now:
  * files in flight are capped per sandbox (INFLIGHT_MAX, even for root) besides
    Linux's RLIMIT_NOFILE per user, so they cannot grow the Sentry;
  * no MSG_OOB, SO_PEERSEC, SIOCUNIXFILE;
  * one table of abstract names for the sandbox (it has one network namespace).

Concurrency: Sentry loop only.  Invariant: a message's `charge` bytes are
counted in `sender.wmem` until consumed or dropped.
"""

from __future__ import annotations

import collections
import struct
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import AT_FDCWD
from pyvisor.abi.linux.signal import Signal
from pyvisor.abi.linux.stat import S_IFMT, S_IFSOCK
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.kernel.memacct import Kind, SentryMemory
from pyvisor.sentry.kernel.task import RLIMIT_NOFILE
from pyvisor.sentry.waitqueue import (EVENT_ALL, EVENT_ERR, EVENT_HUP, EVENT_IN,
                                             EVENT_OUT, EVENT_RDHUP, WaitQueue)
from pyvisor.sentry.socket.common import (AF_UNIX, AF_UNSPEC, MSG_DONTWAIT, MSG_NOSIGNAL,
                                          MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_WAITALL,
                                          RCV_SHUTDOWN, SEND_SHUTDOWN, SHUT_RD, SHUT_RDWR,
                                          SHUTDOWN_MASK, SIOCINQ, SIOCOUTQ, SO_ACCEPTCONN,
                                          SO_ERROR, SO_PASSCRED, SO_PASSPIDFD, SO_PEEK_OFF,
                                          SO_PEERCRED, SO_PEERGROUPS, SO_PEERPIDFD,
                                          SOCK_DGRAM, SOCK_NONBLOCK, SOCK_RAW, SOCK_SEQPACKET,
                                          SOCK_STREAM, SOL_SOCKET, SOMAXCONN, UCRED,
                                          UCRED_NOBODY, Control, Received, Socket, WholeValue,
                                          deadline_of, new_socket_file, wait)
from pyvisor.sentry.vfs import ops
from pyvisor.sentry.vfs.perms import MAY_EXEC, MAY_WRITE, check_access

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.file import FileDescription
    from pyvisor.sentry.vfs.inode import Inode

# sk_state values.  From <net/tcp_states.h>.
TCP_ESTABLISHED = 1
TCP_CLOSE = 7
TCP_LISTEN = 10

SUN_PATH_OFFSET = 2                      # offsetof(struct sockaddr_un, sun_path)
SOCKADDR_UN_SIZE = 110
FAMILY_ONLY = struct.pack("<H", AF_UNIX)  # the name of an unbound socket
MAX_DGRAM_QLEN = 10                       # net.unix.max_dgram_qlen
MSG_OVERHEAD = 768                        # what a queued message costs beyond its bytes
                                          # (a small sk_buff's truesize), so empty and
                                          # tiny messages are bounded by SO_SNDBUF too
INFLIGHT_MAX = 1 << 16                    # files in flight per sandbox, for everyone
STREAM_CHUNK_MAX = 65536                  # largest message one stream send queues
NO_CREDS = (0, 65534, 65534)              # pid 0, overflow uid/gid: sent without creds


class UnixNamespace:
    """Abstract names and autobind numbers.  Linux: the per-netns unix table."""

    def __init__(self, acct: SentryMemory) -> None:
        self.acct = acct            # queued messages are charged here (Kind.SOCKET)
        self.abstract: dict[tuple[bytes, int], UnixSocket] = {}
        self.autobind = 0
        self.inflight: dict[int, int] = {}     # uid -> files in flight (user->unix_inflight)
        self.inflight_total = 0
        self.sockets: weakref.WeakSet[UnixSocket] = weakref.WeakSet()   # for /proc/net/unix
        self.collecting = False     # collect() is running (releases it causes skip it)

    def charge_inflight(self, t: Task, n: int) -> int:
        """Counts `n` files going in flight for the sender's user; ETOOMANYREFS past
        RLIMIT_NOFILE (unless root, as CAP_SYS_RESOURCE) or past INFLIGHT_MAX, once
        collecting garbage freed too little (Linux: too_many_unix_fds,
        wait_for_unix_gc)."""
        uid = t.creds.uid
        limit = t.tg.rlimits[RLIMIT_NOFILE][0]

        def too_many() -> bool:
            return (self.inflight.get(uid, 0) > limit and t.creds.euid != 0) or \
                self.inflight_total + n > INFLIGHT_MAX
        if too_many():
            self.collect()
            if too_many():
                raise SyscallError(Errno.ETOOMANYREFS)
        have = self.inflight.get(uid, 0)
        self.inflight[uid] = have + n
        self.inflight_total += n
        return uid

    def collect(self) -> None:
        """unix_gc: frees the sockets that only their own files in flight keep.

        A unix socket whose every file reference is a queued SCM_RIGHTS is a
        candidate.  Candidates reachable from the other sockets, through the files
        queued on them (and on a listener's embryos), stay; the rest are garbage:
        their queues are emptied, dropping the references that kept them, so they
        and the files they held are released.  Linux: net/unix/garbage.c (the same
        sets, found by scanning the queues rather than by counting on the fly).
        """
        if not self.inflight_total or self.collecting:
            return
        self.collecting = True
        try:
            sockets = list(self.sockets)
            inflight: dict[FileDescription, int] = {}
            for s in sockets:
                for m in s.queue:           # every socket once, embryos included
                    for f in m.rights or ():
                        if isinstance(f.impl, UnixSocket):
                            inflight[f] = inflight.get(f, 0) + 1
            cand: dict[UnixSocket, FileDescription] = {
                f.impl: f for f, k in inflight.items()
                if f.refs == k and isinstance(f.impl, UnixSocket)}
            if not cand:
                return
            todo = [s for s in sockets if s.has_file and not s.dead and s not in cand]
            while todo and cand:
                for m in todo.pop().queued():
                    for f in m.rights or ():
                        if f.impl in cand:
                            del cand[f.impl]
                            todo.append(f.impl)
            hit: list[tuple[UnixSocket, Message]] = []
            for s in cand:
                for q in [s] + list(s.pending):
                    hit.extend((q, m) for m in q.queue)
                    q.queue.clear()
            for q, m in hit:
                q._drop(m)
        finally:
            self.collecting = False

    def uncharge_inflight(self, uid: int, n: int) -> None:
        left = self.inflight.get(uid, 0) - n
        if left > 0:
            self.inflight[uid] = left
        else:
            self.inflight.pop(uid, None)
        self.inflight_total -= n


_NAMESPACES: weakref.WeakKeyDictionary[Any, UnixNamespace] = weakref.WeakKeyDictionary()


def namespace_of(kernel: Any) -> UnixNamespace:
    """The kernel's AF_UNIX namespace (the sandbox has one network namespace)."""
    ns = _NAMESPACES.get(kernel)
    if ns is None:
        ns = _NAMESPACES[kernel] = UnixNamespace(kernel.memory)
    return ns


def socket_node(inode: Inode) -> Any:
    """The node holding a path binding: the inode itself (tmpfs) or the upper inode
    of an overlay file; None for filesystems that cannot hold one."""
    for _ in range(8):
        if hasattr(inode, "bound"):
            return inode
        up = getattr(inode, "upper", None)
        if up is None or up is inode:
            return None
        inode = up
    return None


@dataclass(slots=True, eq=False)
class Message:
    """One queued buffer.  Linux: an sk_buff with its UNIXCB."""

    data: bytes
    sender: UnixSocket | None           # charged for `charge` bytes in sender.wmem
    creds: tuple[int, int, int]         # (pid, uid, gid) as SCM_CREDENTIALS reports
    rights: list[FileDescription] | None = None   # one reference each, until received
    off: int = 0                        # consumed bytes (stream)
    charge: int = 0                     # invariant: charge >= remaining
    rights_uid: int = -1                # whose in-flight count `rights` is in
    peeked: bool = False                # an empty datagram seen by MSG_PEEK (skb->peeked)
    tg: Any = None                      # the process `creds` names (SCM_PIDFD); None: none

    @property
    def remaining(self) -> int:
        return len(self.data) - self.off


def _validate(addr: bytes) -> None:
    """unix_validate_addr."""
    if len(addr) <= SUN_PATH_OFFSET or len(addr) > SOCKADDR_UN_SIZE:
        raise SyscallError(Errno.EINVAL)
    if struct.unpack_from("<H", addr)[0] != AF_UNIX:
        raise SyscallError(Errno.EINVAL)


def _path_of(addr: bytes) -> bytes:
    """The filesystem path of a non-abstract address (up to the first NUL)."""
    return addr[SUN_PATH_OFFSET:].split(b"\0", 1)[0]


def _current_creds(t: Task) -> tuple[int, int, int]:
    return (t.tg.tgid, t.creds.uid, t.creds.gid)


def _process_of(t: Task, pid: int) -> Any:
    """The process a message's pid names (its sender's, or with explicit
    SCM_CREDENTIALS another's): what SCM_PIDFD hands out.  None for pid 0."""
    if pid == t.tg.tgid:
        return t.tg
    if pid <= 0:
        return None
    tg = t.kernel.groups.get(pid)
    if tg is None:
        task = t.kernel.tasks_by_tid.get(pid)
        tg = task.tg if task is not None else None
    return tg


def _peer_creds(t: Task) -> tuple[int, int, int]:
    """init_peercred: what SO_PEERCRED reports (effective ids)."""
    return (t.tg.tgid, t.creds.euid, t.creds.egid)


class UnixSocket(Socket):
    """An AF_UNIX socket.  Linux: struct unix_sock."""

    family = AF_UNIX

    def __init__(self, ns: UnixNamespace, stype: int) -> None:
        super().__init__(stype, 0)
        self.ns = ns
        ns.sockets.add(self)
        self.state = TCP_CLOSE
        self.peer: UnixSocket | None = None
        self.addr: bytes | None = None          # our name, as getsockname reports it
        self.node: Any = None                   # the socket node of a path binding
        self.queue: collections.deque[Message] = collections.deque()
        self.pending: collections.deque[UnixSocket] = collections.deque()   # embryos
        self.wq = WaitQueue()
        self.peer_wake: list[WaitQueue] = []    # senders waiting for room in our queue
        self.shutdown_flags = 0                 # RCV_SHUTDOWN | SEND_SHUTDOWN
        self.err = 0                            # pending SO_ERROR
        self.passcred = False
        self.passpidfd = False                  # SO_PASSPIDFD
        self.wmem = 0                           # our bytes queued on receivers
        self.backlog = MAX_DGRAM_QLEN           # sk_max_ack_backlog
        self.peercred: tuple[int, int, int] | None = None
        self.peer_tg: Any = None                # the process of `peercred` (SO_PEERPIDFD)
        self.peer_groups: tuple[int, ...] = ()  # its supplementary groups (SO_PEERGROUPS)
        self.dead = False
        self.has_file = False                   # False for an embryo not yet accepted
        self.peek_off = -1                      # SO_PEEK_OFF (sk_peek_off); -1: off

    # -- helpers ---------------------------------------------------------------------------

    def _init_peercred(self, t: Task) -> None:
        """init_peercred: the current task's ids, process and groups."""
        self.peercred, self.peer_tg = _peer_creds(t), t.tg
        self.peer_groups = tuple(t.creds.groups)

    @property
    def may_passcred(self) -> bool:
        """unix_may_passcred: SO_PASSCRED or SO_PASSPIDFD."""
        return self.passcred or self.passpidfd

    @property
    def connection_oriented(self) -> bool:
        return self.stype in (SOCK_STREAM, SOCK_SEQPACKET)

    def _notify(self, events: int = EVENT_ALL) -> None:
        self.wq.notify(events)

    def _wake_peer_waiters(self, events: int = EVENT_OUT) -> None:
        """unix_dgram_peer_wake_relay / peer_wait: room appeared in our queue."""
        waiters, self.peer_wake = self.peer_wake, []
        for q in waiters:
            q.notify(events)

    def _wait_for_room(self, other: UnixSocket) -> None:
        if self.wq not in other.peer_wake:
            other.peer_wake.append(self.wq)

    def _refund(self, m: Message, n: int) -> None:
        """Returns `n` bytes of `m`'s charge to its sender."""
        s = m.sender
        if s is None or n <= 0:
            return
        n = min(n, m.charge)
        m.charge -= n
        s.wmem -= n
        self.ns.acct.uncharge(Kind.SOCKET, n)
        if s.wmem < s.sndbuf:
            s.wq.notify(EVENT_OUT)

    def _detach(self, m: Message) -> list[FileDescription] | None:
        """Takes the files out of `m` (their references go with them)."""
        rights, m.rights = m.rights, None
        if rights:
            self.ns.uncharge_inflight(m.rights_uid, len(rights))
        return rights

    def _drop(self, m: Message) -> None:
        """Frees a message: refunds its sender and closes files still in it."""
        self._refund(m, m.charge)
        for f in self._detach(m) or ():
            f.decref()

    def _message(self, t: Task, data: bytes, other: UnixSocket, control: Control,
                 creds: tuple[int, int, int]) -> Message:
        """A message from us, charged to our wmem, taking `control`'s files."""
        m = Message(data, self, creds, charge=len(data) + MSG_OVERHEAD,
                    tg=_process_of(t, creds[0]))
        acct = self.ns.acct
        if not acct.try_charge(Kind.SOCKET, m.charge):
            raise SyscallError(Errno.ENOBUFS)    # sock_alloc_send_pskb: no memory
        if control.rights:
            try:
                m.rights_uid = self.ns.charge_inflight(t, len(control.rights))
            except SyscallError:
                acct.uncharge(Kind.SOCKET, m.charge)
                raise
            m.rights, control.rights = control.rights, None
        self.wmem += m.charge
        return m

    def _purge(self) -> None:
        while self.queue:
            self._drop(self.queue.popleft())

    def _autobind(self) -> None:
        """unix_autobind: an abstract name of five hex digits."""
        if self.addr is not None:
            return
        ns = self.ns
        for _ in range(0x100000):
            ns.autobind = (ns.autobind + 1) & 0xFFFFF
            addr = FAMILY_ONLY + b"\0" + b"%05x" % ns.autobind
            if (addr, self.stype) not in ns.abstract:
                ns.abstract[(addr, self.stype)] = self
                self.addr = addr
                return
        raise SyscallError(Errno.ENOSPC)

    def _find(self, t: Task, addr: bytes) -> UnixSocket:
        """unix_find_other: the socket bound to `addr` (validated) of our type."""
        if addr[SUN_PATH_OFFSET]:
            loc = ops.lookup_at(t, AT_FDCWD, _path_of(addr), True)
            if not t.creds.fs_superuser():
                check_access(t, loc.inode, MAY_WRITE)
            if loc.inode.mode & S_IFMT != S_IFSOCK:
                raise SyscallError(Errno.ECONNREFUSED)
            node = socket_node(loc.inode)
            other = getattr(node, "bound", None) if node is not None else None
            if not isinstance(other, UnixSocket) or other.dead:
                raise SyscallError(Errno.ECONNREFUSED)
            if other.stype != self.stype:
                raise SyscallError(Errno.EPROTOTYPE)
            return other
        other = self.ns.abstract.get((addr, self.stype))
        if other is None or other.dead:
            raise SyscallError(Errno.ECONNREFUSED)
        return other

    def _creds_for(self, t: Task, other: UnixSocket, control: Control) -> tuple[int, int, int]:
        """The credentials a message carries.  Linux: scm_send + maybe_add_creds."""
        if control.creds is not None:
            return control.creds
        if self.may_passcred or other.may_passcred or not other.has_file:
            return _current_creds(t)
        return NO_CREDS

    # -- FileImpl ----------------------------------------------------------------------------

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        r = self._try_recv(t, n, 0, False)
        r.drop_control()
        return r.data

    @property
    def epipe_sigpipe(self) -> bool:  # type: ignore[override]
        """Only a stream socket's write(2) raises SIGPIPE with EPIPE
        (unix_stream_sendmsg); unix_dgram_sendmsg never sends it."""
        return self.stype == SOCK_STREAM

    @property
    def zero_writes(self) -> bool:  # type: ignore[override]
        """write(2) of nothing sends an empty datagram (sock_write_iter has no
        shortcut for it); on a stream it does nothing."""
        return self.stype != SOCK_STREAM

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        control = Control()
        # do_write sends SIGPIPE for EPIPE itself where epipe_sigpipe says so.
        return self._try_send(t, data, MSG_NOSIGNAL, None, control)

    def readiness(self, fd: FileDescription, mask: int) -> int:
        ev = 0
        if self.err:
            ev |= EVENT_ERR
        if self.shutdown_flags == SHUTDOWN_MASK:
            ev |= EVENT_HUP
        if self.shutdown_flags & RCV_SHUTDOWN:
            ev |= EVENT_IN | EVENT_RDHUP
        if self.queue or self.pending:
            ev |= EVENT_IN
        if self.connection_oriented and self.state == TCP_CLOSE:
            ev |= EVENT_HUP
        if mask & EVENT_OUT and self.state != TCP_LISTEN and self.wmem * 4 <= self.sndbuf:
            writable = True
            other = self.peer
            if self.stype != SOCK_STREAM and other is not None and other.peer is not self \
                    and not other.dead and len(other.queue) > other.backlog:
                self._wait_for_room(other)
                writable = False
            if writable:
                ev |= EVENT_OUT
        return ev & (mask | EVENT_HUP | EVENT_ERR)

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.wq

    def proto_ioctl(self, t: Task, cmd: int, arg: int) -> int:
        if cmd == SIOCINQ:
            if self.state == TCP_LISTEN:
                raise SyscallError(Errno.EINVAL)
            if self.stype == SOCK_DGRAM:
                amount = len(self.queue[0].data) if self.queue else 0
            else:
                amount = sum(m.remaining for m in self.queue)
            t.copy_out(arg, struct.pack("<i", amount))
            return 0
        if cmd == SIOCOUTQ:
            t.copy_out(arg, struct.pack("<i", self.wmem))
            return 0
        raise SyscallError(Errno.ENOTTY)

    def release(self, fd: FileDescription) -> None:
        self._release(embryo=False)
        self.ns.collect()

    def queued(self) -> list[Message]:
        """The messages queued on us and, on a listener, on its embryos."""
        out = list(self.queue)
        for e in self.pending:
            out.extend(e.queue)
        return out

    def _release(self, embryo: bool) -> None:
        """unix_release_sock: the last reference is gone (or an embryo is dropped)."""
        if self.dead:
            return
        self.dead = True
        ns = self.ns
        ns.sockets.discard(self)
        if self.addr is not None and ns.abstract.get((self.addr, self.stype)) is self:
            del ns.abstract[(self.addr, self.stype)]
        if self.node is not None and getattr(self.node, "bound", None) is self:
            self.node.bound = None
        self.node = None
        self.shutdown_flags = SHUTDOWN_MASK
        state = self.state
        self.state = TCP_CLOSE
        peer, self.peer = self.peer, None
        self._wake_peer_waiters(EVENT_ALL)
        if peer is not None and self.connection_oriented:
            peer.shutdown_flags = SHUTDOWN_MASK
            if self.queue or embryo:
                peer.err = Errno.ECONNRESET
            peer._notify()
        self._purge()
        if state == TCP_LISTEN:
            pending, self.pending = self.pending, collections.deque()
            for e in pending:
                e._release(embryo=True)
        self._notify()

    # -- naming ------------------------------------------------------------------------------

    def bind(self, t: Task, addr: bytes) -> None:
        """unix_bind."""
        if len(addr) == SUN_PATH_OFFSET and struct.unpack_from("<H", addr)[0] == AF_UNIX:
            self._autobind()
            return
        _validate(addr)
        if addr[SUN_PATH_OFFSET]:
            self._bind_path(t, addr)
            return
        if self.addr is not None:
            raise SyscallError(Errno.EINVAL)
        key = (addr, self.stype)
        if key in self.ns.abstract:
            raise SyscallError(Errno.EADDRINUSE)
        self.ns.abstract[key] = self
        self.addr = addr

    def _bind_path(self, t: Task, addr: bytes) -> None:
        """unix_bind_bsd: a socket node in the file system."""
        path = _path_of(addr)
        parent, name = ops.lookup_parent(t, AT_FDCWD, path)
        if ops.child_or_none(parent, name) is not None:
            raise SyscallError(Errno.EADDRINUSE)
        if self.addr is not None:
            raise SyscallError(Errno.EINVAL)
        if parent.mount.flags_readonly or parent.inode.fs.readonly:
            raise SyscallError(Errno.EROFS)
        if not t.creds.fs_superuser():
            check_access(t, parent.inode, MAY_WRITE | MAY_EXEC)
        # The node's permissions are the socket inode's (fchmod may have changed
        # them) less the umask, as unix_bind_bsd's SOCK_INODE(sock)->i_mode.
        perm = self.inode.mode & 0o7777 if self.inode is not None else 0o777
        mode = S_IFSOCK | (perm & ~t.fs.umask)
        try:
            inode = parent.inode.mknod(name, mode, 0, t.creds.fsuid, t.creds.fsgid)
        except SyscallError as e:
            if e.errno == Errno.EEXIST:
                raise SyscallError(Errno.EADDRINUSE) from None
            raise
        parent.dentry.forget(name)
        node = socket_node(inode)
        if node is None:
            # A filesystem whose nodes cannot hold a binding: undo, as Linux
            # does when binding fails after mknod.
            try:
                parent.inode.unlink(name)
            except SyscallError:
                pass
            parent.dentry.forget(name)
            raise SyscallError(Errno.EPERM)
        node.bound = self
        self.node = node
        self.addr = FAMILY_ONLY + path + b"\0"

    def getsockname(self, t: Task) -> bytes:
        return self.addr if self.addr is not None else FAMILY_ONLY

    def getpeername(self, t: Task) -> bytes:
        peer = self.peer
        if peer is None:
            raise SyscallError(Errno.ENOTCONN)
        return peer.addr if peer.addr is not None else FAMILY_ONLY

    # -- connections -------------------------------------------------------------------------

    def listen(self, t: Task, backlog: int) -> None:
        """unix_listen."""
        if not self.connection_oriented:
            raise SyscallError(Errno.EOPNOTSUPP)
        if self.addr is None:
            raise SyscallError(Errno.EINVAL)
        if self.state not in (TCP_CLOSE, TCP_LISTEN):
            raise SyscallError(Errno.EINVAL)
        if backlog < 0 or backlog > SOMAXCONN:
            backlog = SOMAXCONN
        if backlog > self.backlog:
            self._wake_peer_waiters()
        self.backlog = backlog
        self.state = TCP_LISTEN
        self._init_peercred(t)

    async def accept(self, t: Task, f: FileDescription, flags: int
                     ) -> tuple[FileDescription, bytes]:
        """unix_accept, waiting for a connection unless non-blocking."""
        if not self.connection_oriented:
            raise SyscallError(Errno.EOPNOTSUPP)
        if self.state != TCP_LISTEN:
            raise SyscallError(Errno.EINVAL)
        while not self.pending:
            if self.err:
                err, self.err = self.err, 0
                raise SyscallError(err)
            if self.shutdown_flags & RCV_SHUTDOWN or self.state != TCP_LISTEN:
                raise SyscallError(Errno.EINVAL)
            if f.nonblocking:
                raise WouldBlock()
            timed = self.rcvtimeo is not None
            await wait(t, self.wq, EVENT_IN | EVENT_HUP | EVENT_ERR,
                       deadline_of(t, self.rcvtimeo), timed)
        new = self.pending.popleft()
        self._wake_peer_waiters()
        new.passcred, new.passpidfd = self.passcred, self.passpidfd   # unix_sock_inherit_flags
        new.has_file = True
        nf = new_socket_file(new, flags & SOCK_NONBLOCK, t.creds.fsuid, t.creds.fsgid)
        peer = new.peer
        return nf, (peer.addr if peer is not None and peer.addr is not None else FAMILY_ONLY)

    async def connect(self, t: Task, f: FileDescription, addr: bytes) -> None:
        if self.connection_oriented:
            await self._connect_stream(t, f, addr)
        else:
            self._connect_dgram(t, addr)

    async def _connect_stream(self, t: Task, f: FileDescription, addr: bytes) -> None:
        """unix_stream_connect: queue an embryo on the listener, connected to us."""
        _validate(addr)
        if self.may_passcred and self.addr is None:
            self._autobind()
        deadline = deadline_of(t, self.sndtimeo)
        while True:
            other = self._find(t, addr)
            if other.state != TCP_LISTEN or other.shutdown_flags & RCV_SHUTDOWN:
                raise SyscallError(Errno.ECONNREFUSED)
            if len(other.pending) > other.backlog:
                if f.nonblocking or self.sndtimeo == 0:
                    raise WouldBlock()
                self._wait_for_room(other)
                await wait(t, self.wq, EVENT_ALL, deadline, self.sndtimeo is not None)
                continue
            break
        if self.state != TCP_CLOSE:
            raise SyscallError(Errno.EISCONN if self.state == TCP_ESTABLISHED else Errno.EINVAL)
        new = UnixSocket(self.ns, self.stype)
        new.peer = self
        new.state = TCP_ESTABLISHED
        new._init_peercred(t)
        new.addr = other.addr
        self.peercred, self.peer_tg = other.peercred, other.peer_tg
        self.peer_groups = other.peer_groups
        self.state = TCP_ESTABLISHED
        self.peer = new
        other.pending.append(new)
        other._notify(EVENT_IN)

    def _connect_dgram(self, t: Task, addr: bytes) -> None:
        """unix_dgram_connect: set (or with AF_UNSPEC clear) the default peer."""
        if len(addr) < 2:
            raise SyscallError(Errno.EINVAL)
        other: UnixSocket | None = None
        if struct.unpack_from("<H", addr)[0] != AF_UNSPEC:
            _validate(addr)
            if self.may_passcred and self.addr is None:
                self._autobind()
            other = self._find(t, addr)
            if other.peer is not None and other.peer is not self:
                raise SyscallError(Errno.EPERM)
            self.state = TCP_ESTABLISHED
        old = self.peer
        self.peer = other
        if other is None:
            self.state = TCP_CLOSE
        if old is not None and old is not other:
            self._dgram_disconnected(old)
        self._notify(EVENT_OUT)

    def _dgram_disconnected(self, other: UnixSocket) -> None:
        """unix_dgram_disconnected: messages from the old peer are lost."""
        if self.queue:
            self._purge()
            self._wake_peer_waiters()
            if not other.dead and other.peer is self:
                other.err = Errno.ECONNRESET
                other._notify()

    def shutdown(self, t: Task, how: int) -> None:
        """unix_shutdown.  An unconnected socket is not an error, as on Linux."""
        if how < SHUT_RD or how > SHUT_RDWR:
            raise SyscallError(Errno.EINVAL)
        mode = how + 1
        self.shutdown_flags |= mode
        self._notify()
        other = self.peer
        if other is not None and self.connection_oriented:
            peer_mode = 0
            if mode & RCV_SHUTDOWN:
                peer_mode |= SEND_SHUTDOWN
            if mode & SEND_SHUTDOWN:
                peer_mode |= RCV_SHUTDOWN
            other.shutdown_flags |= peer_mode
            other._notify()

    # -- sending -----------------------------------------------------------------------------

    def _try_send(self, t: Task, data: bytes, flags: int, addr: bytes | None,
                  control: Control) -> int:
        """One non-blocking attempt; WouldBlock if nothing could be queued."""
        if flags & MSG_OOB:
            raise SyscallError(Errno.EOPNOTSUPP)
        if self.stype == SOCK_STREAM:
            return self._try_send_stream(t, data, flags, addr, control)
        return self._try_send_dgram(t, data, addr, control)

    def _sigpipe(self, t: Task, flags: int) -> None:
        if not flags & MSG_NOSIGNAL:
            ksignal.send_to_task(t, ksignal.SigInfo(Signal.SIGPIPE, 0, pid=t.tg.tgid))

    def _try_send_stream(self, t: Task, data: bytes, flags: int, addr: bytes | None,
                         control: Control) -> int:
        """unix_stream_sendmsg, without the sleeping."""
        if addr is not None:
            raise SyscallError(Errno.EISCONN if self.state == TCP_ESTABLISHED
                               else Errno.EOPNOTSUPP)
        other = self.peer
        if other is None:
            raise SyscallError(Errno.ENOTCONN)
        if self.shutdown_flags & SEND_SHUTDOWN:
            self._sigpipe(t, flags)
            raise SyscallError(Errno.EPIPE)
        sent = 0
        total = len(data)
        creds = self._creds_for(t, other, control)
        while sent < total:
            if self.wmem >= self.sndbuf:
                break
            if other.dead or other.shutdown_flags & RCV_SHUTDOWN:
                if sent:
                    break
                self._sigpipe(t, flags)
                raise SyscallError(Errno.EPIPE)
            size = min(total - sent, max(self.sndbuf // 2 - 64, 1), STREAM_CHUNK_MAX)
            try:
                m = self._message(t, data[sent:sent + size], other, control, creds)
            except SyscallError:
                if sent:
                    break
                raise
            other.queue.append(m)
            sent += size
        if sent:
            other._notify(EVENT_IN)
            return sent
        if total == 0:
            return 0
        raise WouldBlock()

    def _try_send_dgram(self, t: Task, data: bytes, addr: bytes | None,
                        control: Control) -> int:
        """unix_dgram_sendmsg / unix_seqpacket_sendmsg, without the sleeping."""
        if self.stype == SOCK_SEQPACKET:
            if self.err:
                err, self.err = self.err, 0
                raise SyscallError(err)
            if self.state != TCP_ESTABLISHED:
                raise SyscallError(Errno.ENOTCONN)
            addr = None
        if addr is not None:
            _validate(addr)
            other = None
        else:
            other = self.peer
            if other is None:
                raise SyscallError(Errno.ENOTCONN)
        if self.may_passcred and self.addr is None:
            self._autobind()
        if len(data) > self.sndbuf - 32:
            raise SyscallError(Errno.EMSGSIZE)
        # sock_alloc_send_pskb: a pending error, then our own SHUT_WR (EPIPE, never
        # SIGPIPE on a datagram or seqpacket socket), then room in our send buffer.
        if self.err:
            err, self.err = self.err, 0
            raise SyscallError(err)
        if self.shutdown_flags & SEND_SHUTDOWN:
            raise SyscallError(Errno.EPIPE)
        if self.wmem >= self.sndbuf:
            raise WouldBlock()
        if other is None:
            assert addr is not None
            other = self._find(t, addr)
        if other.peer is not None and other.peer is not self:
            raise SyscallError(Errno.EPERM)
        if other.dead:
            if self.stype == SOCK_SEQPACKET:
                raise SyscallError(Errno.EPIPE)
            if self.peer is other:
                self.peer = None
                self.state = TCP_CLOSE
                self._dgram_disconnected(other)
            raise SyscallError(Errno.ECONNREFUSED)
        if other.shutdown_flags & RCV_SHUTDOWN:
            raise SyscallError(Errno.EPIPE)
        if other is not self and other.peer is not self and len(other.queue) > other.backlog:
            self._wait_for_room(other)
            raise WouldBlock()
        creds = self._creds_for(t, other, control)
        other.queue.append(self._message(t, data, other, control, creds))
        other._notify(EVENT_IN)
        return len(data)

    async def sendmsg(self, t: Task, f: FileDescription, data: bytes, flags: int,
                      addr: bytes | None, control: Control) -> int:
        """Sends, waiting for room unless non-blocking; a stream send may return a
        partial count once something was queued."""
        nonblock = f.nonblocking or bool(flags & MSG_DONTWAIT) or self.sndtimeo == 0
        deadline = deadline_of(t, self.sndtimeo)
        timed = self.sndtimeo is not None
        stream = self.stype == SOCK_STREAM
        sent = 0
        while True:
            try:
                # SIGPIPE only if nothing was sent by this call (unix_stream_sendmsg).
                fl = flags | MSG_NOSIGNAL if sent else flags
                n = self._try_send(t, data[sent:] if sent else data, fl, addr, control)
                sent += n
                if not stream or sent >= len(data) or (n and nonblock):
                    return sent
                if n:
                    continue             # partial progress: try again before sleeping
            except WouldBlock:
                if nonblock:
                    if sent:
                        return sent
                    raise
            except SyscallError:
                if sent:
                    return sent
                raise
            try:
                await wait(t, self.wq, EVENT_OUT | EVENT_HUP | EVENT_ERR, deadline, timed)
            except SyscallError:
                if sent:
                    return sent
                raise

    # -- receiving ---------------------------------------------------------------------------

    def _try_recv(self, t: Task, n: int, flags: int, want_addr: bool) -> Received:
        """One non-blocking attempt; WouldBlock if nothing is there yet."""
        if flags & MSG_OOB:
            raise SyscallError(Errno.EOPNOTSUPP)
        if self.stype == SOCK_STREAM:
            return self._try_recv_stream(n, flags, want_addr)
        return self._try_recv_dgram(n, flags, want_addr)

    def _empty(self) -> Received:
        """Nothing queued: a pending error, EOF, or WouldBlock."""
        if self.err:
            err, self.err = self.err, 0
            raise SyscallError(err)
        if self.shutdown_flags & RCV_SHUTDOWN:
            return Received(b"", 0)
        raise WouldBlock()

    def _try_recv_stream(self, n: int, flags: int, want_addr: bool) -> Received:
        """unix_stream_read_generic, without the sleeping."""
        if self.state != TCP_ESTABLISHED:
            raise SyscallError(Errno.EINVAL)
        peek = bool(flags & MSG_PEEK)
        i = 0
        skip = max(self.peek_off, 0) if peek else 0
        while i < len(self.queue) and skip >= self.queue[i].remaining:
            skip -= self.queue[i].remaining          # SO_PEEK_OFF: bytes already peeked
            i += 1
        if i >= len(self.queue):
            return self._empty()
        out: list[bytes] = []
        copied = 0
        creds: tuple[int, int, int] | None = None
        rights: list[FileDescription] | None = None
        addr: bytes | None = None
        refunded = False
        first: Message | None = None
        while True:
            if i >= len(self.queue):
                break
            m = self.queue[i]
            if creds is not None:
                if m.creds != creds:
                    break       # never glue messages from different writers
            elif self.may_passcred:
                creds = m.creds
            if first is None:
                first = m
            if want_addr and addr is None and m.sender is not None:
                addr = m.sender.addr
            chunk = m.data[m.off + skip:m.off + skip + (n - copied)]
            skip = 0
            out.append(chunk)
            copied += len(chunk)
            if not peek:
                m.off += len(chunk)
                refunded = True
                if m.rights is not None:
                    rights = self._detach(m)
                if m.remaining:
                    self._refund(m, len(chunk))
                    break
                self.queue.popleft()
                self._refund(m, m.charge)
                if rights is not None:
                    break
            else:
                if m.rights:
                    for fd in m.rights:
                        fd.incref()
                    rights = list(m.rights)
                    break
                i += 1
            if copied >= n:
                break
        if refunded:
            self._wake_peer_waiters()
        self._move_peek_off(peek, copied)
        data = b"".join(out)
        r = Received(data, len(data), addr=addr, rights=rights,
                     creds=creds if self.passcred else None)
        self._pidfd_for(r, first)
        return r

    def _pidfd_for(self, r: Received, m: Message | None) -> None:
        """SO_PASSPIDFD: SCM_PIDFD is due, for the process `m` came from."""
        if self.passpidfd:
            r.want_pidfd = True
            if m is not None and m.creds[0]:
                r.pidfd_for = m.tg

    def _move_peek_off(self, peek: bool, n: int) -> None:
        """sk_peek_offset_fwd after a peek of `n` bytes, sk_peek_offset_bwd after a
        receive that took `n`."""
        if self.peek_off >= 0:
            self.peek_off = self.peek_off + n if peek else max(self.peek_off - n, 0)

    def _try_recv_dgram(self, n: int, flags: int, want_addr: bool) -> Received:
        """__unix_dgram_recvmsg / unix_seqpacket_recvmsg, without the sleeping."""
        if self.stype == SOCK_SEQPACKET and self.state != TCP_ESTABLISHED:
            raise SyscallError(Errno.ENOTCONN)
        peek = bool(flags & MSG_PEEK)
        skip = 0
        found: Message | None = None
        if peek and self.peek_off >= 0:
            # __skb_try_recv_from_queue: skip whole datagrams, then peek inside one.
            skip = self.peek_off
            for q in self.queue:
                if skip >= len(q.data) and (skip or q.peeked):
                    skip -= len(q.data)
                    continue
                found = q
                break
        elif self.queue:
            found = self.queue[0]
        if found is None:
            return self._empty()
        m = found
        rights: list[FileDescription] | None
        if peek:
            rights = list(m.rights) if m.rights else None
            for fd in rights or ():
                fd.incref()
            if not m.data:
                m.peeked = True
        else:
            self.queue.popleft()
            rights = self._detach(m)
            self._refund(m, m.charge)
            self._wake_peer_waiters()
        data = m.data[skip:skip + n]
        avail = len(m.data) - skip
        mflags = MSG_TRUNC if avail > n else 0
        length = avail if flags & MSG_TRUNC else len(data)
        self._move_peek_off(peek, len(data) if peek else len(m.data))
        addr = m.sender.addr if want_addr and m.sender is not None else None
        r = Received(data, length, mflags, addr, rights, m.creds if self.passcred else None)
        self._pidfd_for(r, m)
        return r

    async def recvmsg(self, t: Task, f: FileDescription, n: int, flags: int,
                      want_addr: bool) -> Received:
        """Receives, waiting for data unless non-blocking.  MSG_WAITALL on a stream
        gathers until `n` bytes, EOF, an error or a signal."""
        nonblock = f.nonblocking or bool(flags & MSG_DONTWAIT) or self.rcvtimeo == 0
        deadline = deadline_of(t, self.rcvtimeo)
        timed = self.rcvtimeo is not None
        waitall = self.stype == SOCK_STREAM and bool(flags & MSG_WAITALL) \
            and not flags & MSG_PEEK
        got: Received | None = None
        while True:
            try:
                r = self._try_recv(t, n - (got.length if got else 0), flags, want_addr)
            except WouldBlock:
                if nonblock:
                    if got is not None:
                        return got
                    raise
            except SyscallError:
                if got is not None:
                    return got
                raise
            else:
                if got is None:
                    got = r
                else:
                    got.then(r).rights = r.rights
                if not waitall or got.length >= n or r.length == 0 or \
                        got.rights is not None or nonblock:
                    return got
            try:
                await wait(t, self.wq, EVENT_IN | EVENT_HUP | EVENT_ERR, deadline, timed)
            except SyscallError:
                if got is not None:
                    return got
                raise

    # -- options -----------------------------------------------------------------------------

    def getsockopt(self, t: Task, level: int, name: int) -> bytes:
        if level == SOL_SOCKET:
            if name == SO_ERROR:
                err, self.err = self.err, 0
                return struct.pack("<i", err)
            if name == SO_PASSCRED:
                return struct.pack("<i", int(self.passcred))
            if name == SO_PASSPIDFD:
                return struct.pack("<i", int(self.passpidfd))
            if name == SO_PEERPIDFD:
                return struct.pack("<i", self._peer_pidfd(t))
            if name == SO_PEERGROUPS:
                # ENODATA without a peer; ERANGE (with the length needed) if it does
                # not fit, never cut short.
                if self.peercred is None:
                    raise SyscallError(Errno.ENODATA)
                return WholeValue(struct.pack(f"<{len(self.peer_groups)}I",
                                              *self.peer_groups))
            if name == SO_ACCEPTCONN:
                return struct.pack("<i", int(self.state == TCP_LISTEN))
            if name == SO_PEERCRED:
                return UCRED.pack(*(self.peercred or UCRED_NOBODY))
            if name == SO_PEEK_OFF:
                return struct.pack("<i", self.peek_off)
        return super().getsockopt(t, level, name)

    def setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        if level == SOL_SOCKET and name in (SO_PASSCRED, SO_PASSPIDFD):
            if len(optval) < 4:
                raise SyscallError(Errno.EINVAL)
            on = struct.unpack_from("<i", optval)[0] != 0
            if name == SO_PASSCRED:
                self.passcred = on
            else:
                self.passpidfd = on
            return
        if level == SOL_SOCKET and name == SO_PEEK_OFF:
            if len(optval) < 4:
                raise SyscallError(Errno.EINVAL)
            # unix_set_peek_off: any value; a negative one turns it off.
            self.peek_off = struct.unpack_from("<i", optval)[0]
            return
        super().setsockopt(t, level, name, optval)

    def _peer_pidfd(self, t: Task) -> int:
        """SO_PEERPIDFD: a new close-on-exec pidfd for the peer's process, even one
        already reaped (Linux 6.15's PIDFD_STALE for AF_UNIX); ENODATA without a peer."""
        if self.peercred is None or self.peer_tg is None:
            raise SyscallError(Errno.ENODATA)
        from pyvisor.sentry.syscalls.linux.sys_signal import new_pidfd
        return new_pidfd(t, self.peer_tg, False)

    def buffers_changed(self) -> None:
        self._notify(EVENT_OUT)


# -- creation ---------------------------------------------------------------------------------


def _check_type(stype: int, protocol: int) -> int:
    """unix_create: the socket type (SOCK_RAW is a datagram socket)."""
    if protocol and protocol != AF_UNIX:
        raise SyscallError(Errno.EPROTONOSUPPORT)
    if stype == SOCK_RAW:
        return SOCK_DGRAM
    if stype not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET):
        raise SyscallError(Errno.ESOCKTNOSUPPORT)
    return stype


def namespace_for(t: Task) -> UnixNamespace:
    """The abstract names of the task's network namespace (kernel/namespaces.py); a
    namespace made inside shares the sandbox's in-flight file bound."""
    p = getattr(t, "nsproxy", None)
    net = p.net if p is not None else None
    if net is None:
        return namespace_of(t.kernel)
    ns = getattr(net, "unix", None)
    if ns is None:
        root = namespace_of(t.kernel)
        ns = net.unix = UnixNamespace(t.kernel.memory)
        ns.charge_inflight = root.charge_inflight        # type: ignore[method-assign]
        ns.uncharge_inflight = root.uncharge_inflight    # type: ignore[method-assign]
    return ns


def new_socket(t: Task, stype: int, protocol: int, flags: int) -> FileDescription:
    """socket(AF_UNIX, ...)."""
    s = UnixSocket(namespace_for(t), _check_type(stype, protocol))
    s.has_file = True
    return new_socket_file(s, flags, t.creds.fsuid, t.creds.fsgid)


def new_socketpair(t: Task, stype: int, protocol: int, flags: int
                   ) -> tuple[FileDescription, FileDescription]:
    """socketpair(AF_UNIX, ...): two sockets connected back to back."""
    stype = _check_type(stype, protocol)
    ns = namespace_for(t)
    a, b = UnixSocket(ns, stype), UnixSocket(ns, stype)
    a.peer, b.peer = b, a
    a.state = b.state = TCP_ESTABLISHED
    a._init_peercred(t)
    b._init_peercred(t)
    a.has_file = b.has_file = True
    return (new_socket_file(a, flags, t.creds.fsuid, t.creds.fsgid),
            new_socket_file(b, flags, t.creds.fsuid, t.creds.fsgid))


def proc_net_unix(kernel: Any) -> bytes:
    """/proc/net/unix.  Linux: unix_seq_show (kernel pointers shown as zeros)."""
    rows = ["Num       RefCount Protocol Flags    Type St Inode Path\n"]
    for s in sorted(namespace_of(kernel).sockets, key=lambda s: s.ino):
        if s.dead:
            continue
        if not s.has_file:
            st = 2 if s.state == TCP_ESTABLISHED else 4      # SS_CONNECTING / DISCONNECTING
        elif s.stype == SOCK_DGRAM:
            st = 1
        else:
            st = 3 if s.state == TCP_ESTABLISHED else 1
        flags = 1 << 16 if s.state == TCP_LISTEN else 0      # __SO_ACCEPTCON
        refs = 3 if s.peer is not None else 2
        row = f"0000000000000000: {refs:08X} 00000000 {flags:08X} {s.stype:04X} {st:02X} {s.ino:5d}"
        if s.addr is not None and len(s.addr) > SUN_PATH_OFFSET:
            name = s.addr[SUN_PATH_OFFSET:]
            if name[:1] == b"\0":
                row += " @" + name[1:].replace(b"\0", b"@").decode(errors="replace")
            else:
                row += " " + name.rstrip(b"\0").decode(errors="replace")
        rows.append(row + "\n")
    return "".join(rows).encode()

