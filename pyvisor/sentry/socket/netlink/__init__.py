"""AF_NETLINK sockets talking to the Sentry.  Linux: net/netlink/af_netlink.c.
gVisor: pkg/sentry/socket/netlink (socket.go, provider.go).

The socket is generic; what a request means is its protocol's (a `NetlinkProtocol`):

  NETLINK_ROUTE      route.py: interfaces, addresses, routes of the stack
  NETLINK_NETFILTER  netfilter.py: nftables (tables, chains, rules) of the namespace

A request is answered at once: the replies are queued as datagrams on the
socket (several messages per datagram, a dump ending with NLMSG_DONE), read
with recvmsg(2) as Linux delivers them.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pyvisor.abi.linux.capability import CAP_NET_ADMIN
from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.socket import sockfilter
from pyvisor.sentry.waitqueue import EVENT_IN, EVENT_OUT, WaitQueue
from pyvisor.sentry.socket.common import (AF_NETLINK, MSG_DONTWAIT, MSG_PEEK, MSG_TRUNC,
                                          SO_PASSCRED, SOCK_DGRAM, SOCK_RAW, SOL_SOCKET,
                                          Control, Received, Socket, deadline_of,
                                          new_socket_file, wait)

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Credentials
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket import InetStack, Network
    from pyvisor.sentry.vfs.file import FileDescription

# From <linux/netlink.h>.
NETLINK_ROUTE, NETLINK_KOBJECT_UEVENT, NETLINK_NETFILTER = 0, 15, 12
SOL_NETLINK = 270
NLMSGHDR = struct.Struct("<IHHII")          # len, type, flags, seq, pid
SOCKADDR_NL = struct.Struct("<HHII")        # family, pad, pid, groups
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_MIN_TYPE = 1, 2, 3, 0x10
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300
NLM_F_CAPPED = 0x100                         # in an NLMSG_ERROR: the request was cut off
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800  # NEW
NLM_F_NONREC = 0x100                                                                # DEL
NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP, NETLINK_LIST_MEMBERSHIPS = 1, 2, 9
NETLINK_NO_ENOBUFS, NETLINK_CAP_ACK = 5, 10
NETLINK_OPTIONS = frozenset((1, 2, 3, 5, 8, 10, 11, 12))    # others stored only
DUMP_CHUNK = 16384                                         # bytes of messages per datagram
RCVBUF_MAX_QUEUED = 1 << 20
SKB_OVERHEAD = 320           # what a queued datagram costs beyond its bytes (skb truesize)


def _align(n: int) -> int:
    return (n + 3) & ~3


def rta(atype: int, data: bytes) -> bytes:
    """One route attribute, padded."""
    ln = 4 + len(data)
    return struct.pack("<HH", ln, atype) + data + b"\0" * (_align(ln) - ln)


def nlmsg(mtype: int, flags: int, seq: int, pid: int, body: bytes) -> bytes:
    ln = NLMSGHDR.size + len(body)
    return NLMSGHDR.pack(ln, mtype, flags, seq, pid) + body + b"\0" * (_align(ln) - ln)


class NetlinkProtocol(Protocol):
    """What one netlink protocol does with the requests sent to the kernel.  Linux:
    the `input` of netlink_kernel_create; gVisor: netlink.Protocol."""

    nonroot_groups: bool             # NL_CFG_F_NONROOT_RECV: anyone may join its groups
    nonroot_send: bool               # NL_CFG_F_NONROOT_SEND: anyone may send to groups
    ngroups: int                     # its multicast groups (netlink_kernel_cfg.groups)

    def receive(self, sock: NetlinkSocket, t: Task | None, data: bytes) -> None:
        """Handles one sendmsg's buffer, queueing the replies on `sock`."""
        ...

    def released(self, sock: NetlinkSocket) -> None:
        """The socket is closed (NETLINK_URELEASE)."""
        ...


def messages(data: bytes) -> list[tuple[int, int, int, int, bytes, bytes]]:
    """The well-formed messages of a buffer as (type, flags, seq, pid, body, whole),
    stopping at the first truncated one, as netlink_rcv_skb does."""
    out = []
    off = 0
    while len(data) - off >= NLMSGHDR.size:
        ln, mtype, flags, seq, pid = NLMSGHDR.unpack_from(data, off)
        if ln < NLMSGHDR.size or off + ln > len(data):
            break
        out.append((mtype, flags, seq, pid, data[off + NLMSGHDR.size:off + ln],
                    data[off:off + ln]))
        off += _align(ln)
    return out


@dataclass(slots=True)
class Queued:
    """One datagram waiting on a socket, with who sent it (NETLINK_CB(skb))."""

    data: bytes
    portid: int = 0                          # the sender: 0 the kernel
    group: int = 0                           # the multicast group it went to (0: unicast)
    creds: tuple[int, int, int] = (0, 0, 0)  # the sender's pid, uid, gid


class NetlinkSocket(Socket):
    """An AF_NETLINK socket.  Linux: struct netlink_sock."""

    family = AF_NETLINK

    def __init__(self, stack: InetStack, stype: int, portid_hint: int,
                 protocol: int = NETLINK_ROUTE, net: Network | None = None,
                 creds: Credentials | None = None) -> None:
        super().__init__(stype, protocol)
        self.stack = stack
        self.opener = creds              # the file's credentials (file_ns_capable)
        self.sk_err = 0                  # a pending error (ENOBUFS after an overrun)
        self.explicit_dst = False        # the message in hand named its destination
        self.net = net                   # the network namespace the socket belongs to
        self.handler: NetlinkProtocol = _protocol(protocol, net)
        self.ports: PortTable = port_table(net, protocol)
        self.passcred = 0
        self.filter: sockfilter.Program | None = None   # SO_ATTACH_FILTER
        self.filter_locked = False                       # SO_LOCK_FILTER
        self.groups = 0                  # bitmap of the multicast groups joined (bit g-1)
        self.ngroups = 0                 # 0 until the socket first joins a group
        self.wq = WaitQueue()
        self.rcvq: collections.deque[Queued] = collections.deque()
        self.queued = 0
        self.portid = 0
        self.portid_hint = portid_hint
        self.nlopts: dict[int, int] = {}

    def _bind_auto(self) -> None:
        if not self.portid:
            self.portid = self.ports.autobind(self, self.portid_hint)

    # -- FileImpl ----------------------------------------------------------------------------

    def readiness(self, fd: FileDescription, mask: int) -> int:
        return ((EVENT_IN if self.rcvq or self.sk_err else 0) | EVENT_OUT) & mask

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.wq

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        return self._recv(n, 0).data

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        return self._request(data, t)

    def release(self, fd: FileDescription) -> None:
        self.handler.released(self)
        self.ports.release(self)
        self.ports.members.discard(self)

    # -- names -------------------------------------------------------------------------------

    def bind(self, t: Task, addr: bytes) -> None:
        if len(addr) < SOCKADDR_NL.size:
            raise SyscallError(Errno.EINVAL)
        fam, _, pid, groups = SOCKADDR_NL.unpack_from(addr)
        if fam != AF_NETLINK:
            raise SyscallError(Errno.EINVAL)
        if groups:
            if t.creds.euid != 0 and not self.handler.nonroot_groups:
                raise SyscallError(Errno.EPERM)
            self.ngroups = self.handler.ngroups
            mask = (1 << min(self.ngroups, 32)) - 1
            self.groups = (self.groups & ~0xFFFFFFFF) | (groups & mask)
            self._membership()
        if pid and self.portid and pid != self.portid:
            raise SyscallError(Errno.EINVAL)
        if not self.portid:
            self.portid = self.ports.bind(self, pid) if pid else \
                self.ports.autobind(self, self.portid_hint)

    async def connect(self, t: Task, f: FileDescription, addr: bytes) -> None:
        if len(addr) < 2:
            raise SyscallError(Errno.EINVAL)
        self._bind_auto()

    def getsockname(self, t: Task) -> bytes:
        return SOCKADDR_NL.pack(AF_NETLINK, 0, self.portid, 0)

    def getpeername(self, t: Task) -> bytes:
        return SOCKADDR_NL.pack(AF_NETLINK, 0, 0, 0)

    def shutdown(self, t: Task, how: int) -> None:
        raise SyscallError(Errno.EOPNOTSUPP)

    # -- requests ----------------------------------------------------------------------------

    def _membership(self) -> None:
        if self.groups:
            self.ports.members.add(self)
        else:
            self.ports.members.discard(self)

    async def sendmsg(self, t: Task, f: FileDescription, data: bytes, flags: int,
                      addr: bytes | None, control: Control) -> int:
        """netlink_sendmsg: to the kernel, or (with CAP_NET_ADMIN unless the protocol
        lets anyone send) to another socket's port and to the lowest group named."""
        dst_portid = dst_group = 0
        self.explicit_dst = False
        if addr:
            if len(addr) < SOCKADDR_NL.size or SOCKADDR_NL.unpack_from(addr)[0] != AF_NETLINK:
                raise SyscallError(Errno.EINVAL)
            _, _, dst_portid, groups = SOCKADDR_NL.unpack_from(addr)
            dst_group = (groups & -groups).bit_length()         # ffs
            if (dst_group or dst_portid) and not self.handler.nonroot_send and \
                    not self.capable(t, CAP_NET_ADMIN, False):
                raise SyscallError(Errno.EPERM)
            self.explicit_dst = True
        self._bind_auto()
        creds = (t.tg.tgid, t.creds.uid, t.creds.gid)
        if dst_group:
            broadcast(self.ports, dst_group, [data], exclude=self, portid=self.portid,
                      creds=creds)
        if dst_portid:
            peer = self.ports.socks.get(dst_portid)
            if peer is None:
                raise SyscallError(Errno.ECONNREFUSED)
            peer.deliver(Queued(data, self.portid, 0, creds))
            return len(data)
        try:
            return self._request(data, t)
        finally:
            self.explicit_dst = False

    def capable(self, t: Task | None, cap: int, check_opener: bool = True) -> bool:
        """netlink_net_capable / netlink_ns_capable: `cap` over the socket's network
        namespace, held by the caller and (unless the message named its destination) by
        whoever opened the socket."""
        if t is None:
            return True
        from pyvisor.sentry.kernel.namespaces import ns_capable
        owner = getattr(self.net, "userns", None)
        if not ns_capable(t.creds, owner, cap):
            return False
        if check_opener and not self.explicit_dst and \
                self.opener is not None:
            return ns_capable(self.opener, owner, cap)
        return True

    def deliver(self, q: Queued) -> bool:
        """A datagram from another socket or a kernel notification: queued if the
        receive buffer has room (netlink_broadcast_deliver), else an overrun: dropped,
        and the next receive fails with ENOBUFS unless NETLINK_NO_ENOBUFS is set."""
        if self.queued + len(q.data) + SKB_OVERHEAD > self.rcvbuf:
            if not self.nlopts.get(NETLINK_NO_ENOBUFS):
                self.sk_err = Errno.ENOBUFS
                self.wq.notify(EVENT_IN)
            return False
        if self.filter is not None:
            keep = sockfilter.run(self.filter, sockfilter.Packet(q.data))
            if keep == 0:
                return False
            q.data = q.data[:keep]
        self.rcvq.append(q)
        self.queued += len(q.data) + SKB_OVERHEAD
        self.wq.notify(EVENT_IN)
        return True

    def _request(self, data: bytes, t: Task | None = None) -> int:
        self._bind_auto()
        self.handler.receive(self, t, data)
        self.wq.notify(EVENT_IN)
        return len(data)

    def ack_msg(self, request: bytes, err: int) -> bytes:
        """The NLMSG_ERROR answering `request` (err 0: its acknowledgement).  Linux:
        netlink_ack: an error quotes the whole request unless NETLINK_CAP_ACK is set."""
        seq = NLMSGHDR.unpack_from(request)[3]
        if err and not self.nlopts.get(NETLINK_CAP_ACK):
            return nlmsg(NLMSG_ERROR, 0, seq, self.portid, struct.pack("<i", -err) + request)
        body = struct.pack("<i", -err) + request[:NLMSGHDR.size]
        return nlmsg(NLMSG_ERROR, NLM_F_CAPPED, seq, self.portid, body)

    def _error(self, seq: int, err: int, request: bytes) -> None:
        self._queue([self.ack_msg(request, err)])

    def _dump(self, mtype: int, seq: int, bodies: list[bytes], done_apart: bool = True) -> None:
        self.dump_msgs(seq, [nlmsg(mtype, NLM_F_MULTI, seq, self.portid, b) for b in bodies],
                       done_apart)

    def dump_msgs(self, seq: int, msgs: list[bytes], done_apart: bool = True) -> None:
        """A dump's messages, then NLMSG_DONE: in a datagram of its own when the dump
        function reports what it filled (netlink_dump sends DONE on the next round),
        after the entries when it reports being done at once (`done_apart` False)."""
        done = nlmsg(NLMSG_DONE, NLM_F_MULTI, seq, self.portid, struct.pack("<i", 0))
        if done_apart:
            self._queue(msgs)
            self._queue([done])
        else:
            self._queue(msgs + [done])

    def _queue(self, msgs: list[bytes]) -> None:
        """Packs messages into datagrams of at most DUMP_CHUNK bytes (netlink_dump)."""
        cur = b""
        for m in msgs:
            if cur and len(cur) + len(m) > DUMP_CHUNK:
                self._push(cur)
                cur = b""
            cur += m
        if cur:
            self._push(cur)

    def _push(self, dgram: bytes) -> None:
        if self.filter is not None:
            keep = sockfilter.run(self.filter, sockfilter.Packet(dgram))   # sk_filter_trim_cap
            if keep == 0:
                return
            dgram = dgram[:keep]
        if self.queued + len(dgram) > max(self.rcvbuf, RCVBUF_MAX_QUEUED):
            return                                   # dropped, as on an overrun
        self.rcvq.append(Queued(dgram))
        self.queued += len(dgram) + SKB_OVERHEAD

    # -- replies -----------------------------------------------------------------------------

    def _recv(self, n: int, flags: int) -> Received:
        if self.sk_err:                  # sock_error, before the queue (netlink_recvmsg)
            err, self.sk_err = self.sk_err, 0
            raise SyscallError(err)
        if not self.rcvq:
            raise WouldBlock()
        q = self.rcvq[0]
        d = q.data
        if not flags & MSG_PEEK:
            self.rcvq.popleft()
            self.queued -= len(d) + SKB_OVERHEAD
        data = d[:n]
        length = len(d) if flags & MSG_TRUNC else len(data)
        # With SO_PASSCRED every message carries its sender's credentials: the
        # kernel's are pid 0 and root (netlink_recvmsg's scm_recv).
        group = 1 << (q.group - 1) if q.group else 0
        return Received(data, length, MSG_TRUNC if len(d) > n else 0,
                        SOCKADDR_NL.pack(AF_NETLINK, 0, q.portid, group),
                        creds=q.creds if self.passcred else None)

    async def recvmsg(self, t: Task, f: FileDescription, n: int, flags: int,
                      want_addr: bool) -> Received:
        deadline = deadline_of(t, self.rcvtimeo)
        while True:
            try:
                return self._recv(n, flags)
            except WouldBlock:
                if f.nonblocking or flags & MSG_DONTWAIT or self.rcvtimeo == 0:
                    raise
            await wait(t, self.wq, EVENT_IN, deadline, self.rcvtimeo is not None)

    # -- options -----------------------------------------------------------------------------

    def _filter_option(self, t: Task, name: int, optval: bytes) -> None:
        """sock_setsockopt's SO_ATTACH_FILTER, SO_DETACH_FILTER and SO_LOCK_FILTER."""
        if name == sockfilter.SO_LOCK_FILTER:
            if len(optval) < 4:
                raise SyscallError(Errno.EINVAL)
            if self.filter_locked and not struct.unpack_from("<i", optval)[0]:
                raise SyscallError(Errno.EPERM)
            self.filter_locked = bool(struct.unpack_from("<i", optval)[0])
            return
        if self.filter_locked:
            raise SyscallError(Errno.EPERM)
        if name == sockfilter.SO_ATTACH_FILTER:
            self.filter = sockfilter.attach(t, optval)
            return
        if self.filter is None:
            raise SyscallError(Errno.ENOENT)
        self.filter = None

    def getsockopt_sized(self, t: Task, level: int, name: int, avail: int
                         ) -> tuple[bytes, int] | None:
        """NETLINK_LIST_MEMBERSHIPS: the joined groups as u32 words, as many whole words
        as fit; the length reported is the whole bitmap's."""
        if level != SOL_NETLINK or name != NETLINK_LIST_MEMBERSHIPS:
            return None
        size = ((self.ngroups + 7) // 8 + 3) & ~3
        words = b"".join(struct.pack("<I", (self.groups >> (32 * i)) & 0xFFFFFFFF)
                         for i in range(size // 4))
        return words[:avail & ~3], size

    def getsockopt(self, t: Task, level: int, name: int) -> bytes:
        if level == SOL_SOCKET and name == SO_PASSCRED:
            return struct.pack("<i", self.passcred)
        if level == SOL_NETLINK:
            if name not in NETLINK_OPTIONS:
                raise SyscallError(Errno.ENOPROTOOPT)
            return struct.pack("<i", self.nlopts.get(name, 0))
        return super().getsockopt(t, level, name)

    def setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        if level == SOL_SOCKET and name in (sockfilter.SO_ATTACH_FILTER,
                                            sockfilter.SO_DETACH_FILTER,
                                            sockfilter.SO_LOCK_FILTER):
            self._filter_option(t, name, optval)
            return
        if level == SOL_SOCKET and name == SO_PASSCRED:
            if len(optval) < 4:
                raise SyscallError(Errno.EINVAL)
            self.passcred = 1 if struct.unpack_from("<i", optval)[0] else 0
            return
        if level == SOL_NETLINK:
            if name not in NETLINK_OPTIONS:
                raise SyscallError(Errno.ENOPROTOOPT)
            if len(optval) < 4:
                raise SyscallError(Errno.EINVAL)
            val = struct.unpack_from("<i", optval)[0]
            if name in (NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP):
                if t.creds.euid != 0 and not self.handler.nonroot_groups:
                    raise SyscallError(Errno.EPERM)
                self.ngroups = self.handler.ngroups
                group = val & 0xFFFFFFFF
                if group == 0 or group - 1 >= self.ngroups:
                    raise SyscallError(Errno.EINVAL)
                if name == NETLINK_ADD_MEMBERSHIP:
                    self.groups |= 1 << (group - 1)
                else:
                    self.groups &= ~(1 << (group - 1))
                self._membership()
                return
            self.nlopts[name] = val
            return
        super().setsockopt(t, level, name, optval)


class PortTable:
    """The port ids of one netlink protocol in one namespace.  Linux: nl_table[].hash
    and netlink_autobind's rover."""

    def __init__(self) -> None:
        self.socks: dict[int, NetlinkSocket] = {}
        self.members: set[NetlinkSocket] = set()     # sockets in a group (nl_table mc_list)
        self.rover = -4096

    def bind(self, sock: NetlinkSocket, portid: int) -> int:
        if portid in self.socks:
            raise SyscallError(Errno.EADDRINUSE)
        self.socks[portid] = sock
        return portid

    def autobind(self, sock: NetlinkSocket, hint: int) -> int:
        """The process's id if free, else the next free negative id."""
        portid = hint
        while portid in self.socks or portid == 0:
            self.rover -= 1
            if self.rover > -4096 or self.rover < -(1 << 31):
                self.rover = -4097
            portid = self.rover & 0xFFFFFFFF
        return self.bind(sock, portid)

    def release(self, sock: NetlinkSocket) -> None:
        if self.socks.get(sock.portid) is sock:
            del self.socks[sock.portid]


def port_table(net: Network | None, protocol: int) -> PortTable:
    """The namespace's table for `protocol` (a private one without a namespace)."""
    if net is None:
        return PortTable()
    table = net.netlink_ports.get(protocol)
    if table is None:
        table = net.netlink_ports[protocol] = PortTable()
    assert isinstance(table, PortTable)
    return table


def broadcast(ports: PortTable, group: int, msgs: list[bytes],
              exclude: NetlinkSocket | None = None, portid: int = 0,
              creds: tuple[int, int, int] = (0, 0, 0)) -> None:
    """netlink_broadcast: `msgs` as one datagram to every socket of the table in
    `group` (1-based) but `exclude`, each getting it or an overrun."""
    if not msgs:
        return
    data = b"".join(msgs)
    for s in list(ports.members):
        if s is exclude or not s.groups >> (group - 1) & 1:
            continue
        s.deliver(Queued(data, portid, group, creds))


def notify(net: Network | None, protocol: int, group: int, msgs: list[bytes]) -> None:
    """A kernel notification to the namespace's sockets in `group` (rtnl_notify)."""
    if net is None:
        return
    table = net.netlink_ports.get(protocol)
    if table is not None:
        broadcast(table, group, msgs)


class UeventProtocol:
    """NETLINK_KOBJECT_UEVENT: the sandbox has no devices that come and go, so no
    event is ever sent; a message to the kernel is checked as uevent_net_rcv_skb
    does (CAP_SYS_ADMIN) and, having no listener to reach, dropped.
    Linux: lib/kobject_uevent.c."""

    nonroot_groups = True            # NL_CFG_F_NONROOT_RECV: anyone may listen
    nonroot_send = False
    ngroups = 1

    def receive(self, sock: NetlinkSocket, t: Task | None, data: bytes) -> None:
        from pyvisor.abi.linux.capability import CAP_SYS_ADMIN
        for mtype, flags, _seq, _pid, body, whole in messages(data):
            if not flags & NLM_F_REQUEST or mtype < NLMSG_MIN_TYPE:
                err = 0
            elif t is not None and not t.creds.capable(CAP_SYS_ADMIN):
                err = Errno.EPERM
            else:
                err = 0 if body else Errno.EINVAL
            if err or flags & NLM_F_ACK:
                sock._queue([sock.ack_msg(whole, err)])

    def released(self, sock: NetlinkSocket) -> None:
        pass


def _protocol(protocol: int, net: Network | None) -> NetlinkProtocol:
    if protocol == NETLINK_KOBJECT_UEVENT:
        return UeventProtocol()
    if protocol == NETLINK_NETFILTER:
        from pyvisor.sentry.socket.netlink.netfilter import NetfilterProtocol
        return NetfilterProtocol(net)
    from pyvisor.sentry.socket.netlink.route import RouteProtocol
    return RouteProtocol()


class NetlinkFamily:
    """The Family for AF_NETLINK: NETLINK_ROUTE, NETLINK_NETFILTER, NETLINK_KOBJECT_UEVENT."""

    def __init__(self, stack: InetStack, net: Network | None = None) -> None:
        self.stack = stack
        self.net = net

    def socket(self, t: Task, family: int, stype: int, protocol: int, flags: int
               ) -> FileDescription:
        if stype not in (SOCK_RAW, SOCK_DGRAM):
            raise SyscallError(Errno.ESOCKTNOSUPPORT)
        if protocol not in (NETLINK_ROUTE, NETLINK_NETFILTER, NETLINK_KOBJECT_UEVENT):
            raise SyscallError(Errno.EPROTONOSUPPORT)
        s = NetlinkSocket(self.stack, stype, t.tg.tgid, protocol, self.net, t.creds)
        return new_socket_file(s, flags, t.creds.fsuid, t.creds.fsgid)

    def socketpair(self, t: Task, family: int, stype: int, protocol: int, flags: int
                   ) -> tuple[FileDescription, FileDescription]:
        raise SyscallError(Errno.EOPNOTSUPP)
