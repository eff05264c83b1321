"""netstack: the sandbox's own TCP/IP stack, in the Sentry.  gVisor: pkg/tcpip
(stack, transport/tcp, transport/udp, transport/icmp) behind
pkg/sentry/socket/netstack.

Today the stack has one interface, lo (127.0.0.1/8 and ::1/128), and
serves --network=sandbox and --network=none alike: nothing leaves the
Sentry.  `Stack` owns the interfaces, the routes, the port tables and the
counters /proc/net and netlink report; the sockets (tcp.py, udp.py) hold
the connection state.  Segments between two sockets of this stack are
method calls (see tcp.py for the short-circuit and for where a packet path
for real interfaces plugs in; docs/networking.md for the design).

Concurrency: Sentry loop only.
"""

from __future__ import annotations

import gc
import os
import time
import weakref
import zlib
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import (IN6ADDR_LOOPBACK, IPPROTO_ICMP, IPPROTO_ICMPV6,
                                    IPPROTO_TCP, IPPROTO_UDP, TCP_LISTEN)
from pyvisor.sentry.kernel.errors import SyscallError
from pyvisor.sentry.kernel.memacct import Kind
from pyvisor.sentry.kernel.waitqueue import EVENT_OUT, WaitQueue
from pyvisor.sentry.socket import inet
from pyvisor.sentry.socket.common import (AF_INET, SOCK_DGRAM, SOCK_RAW,
                                          SOCK_STREAM, new_socket_file)
from pyvisor.sentry.socket.inet import Interface
from pyvisor.sentry.socket.netstack.ports import Binding, PortTable

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket.netstack.sock import NetSocket
    from pyvisor.sentry.socket.netstack.tcp import TCPSocket
    from pyvisor.sentry.socket.netstack.udp import UDPSocket
    from pyvisor.sentry.vfs.file import FileDescription

IPPROTO_MAX = 263
BUFFER_BUDGET = 256 << 20      # unread bytes all of the stack's sockets may hold together
# What a socket or a TIME_WAIT remnant costs the Sentry's heap (tracemalloc: a TCPSocket
# with its dicts is ~5 KiB, plus its file description), charged to the Sentry memory
# account so that a flood of sockets (a SYN flood through many processes, a connect/close
# loop filling TIME_WAIT) is bounded by --sentry-memory, not only by fd limits.
SOCKET_COST = 6 << 10
TIMEWAIT_COST = 512
GC_INTERVAL_NS = 10**9         # a refused charge collects garbage at most this often


def _match(b: Binding, dst: bytes) -> int:
    """How well a binding's local address takes a packet for `dst` (0: not at all)."""
    la = b.laddr
    if len(la) == len(dst):
        if la == dst:
            return 3
        return 2 if inet.is_any(la) else 0
    if len(dst) == 4 and inet.is_any(la) and not b.v6only:
        return 1                          # the dual-stack wildcard of an AF_INET6 socket
    return 0


class Stack:
    """One network stack: interfaces, routes, ports.  gVisor: tcpip/stack.Stack."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.lo: Interface = inet.loopback()
        self.tcp_ports = PortTable(tcp=True)
        self.udp_ports = PortTable(tcp=False)
        self.icmp_ports = PortTable(tcp=False)
        self.icmp6_ports = PortTable(tcp=False)
        # Counters for /proc/net/snmp and netstat.
        self.active_opens = self.passive_opens = self.refused = self.resets = 0
        self.syn_drops = self.time_waits = self.aborts_on_close = self.aborts_on_data = 0
        self.tw_overflows = 0
        self.udp_in = self.udp_out = self.udp_noport = self.udp_rcvbuf_errors = 0
        self.icmp_in = self.icmp_out = 0
        # Unread data queued on the stack's sockets (TCP bytes, UDP/ICMP datagrams' true
        # sizes), against BUFFER_BUDGET: past it TCP senders wait and datagrams are dropped.
        self.buffered = 0
        self.budget = BUFFER_BUDGET
        test_budget = os.environ.get("PYVISOR_TEST_NETSTACK_BUDGET")   # tests only
        if test_budget and test_budget.isdigit():
            self.budget = int(test_budget)
        self.starved: list[WaitQueue] = []     # senders stopped by the budget, not a window
        self.last_gc = 0

    def charge(self, obj: object, cost: int) -> bool:
        """Charges `cost` to the Sentry memory account for as long as `obj` lives (a
        finalizer returns it, so no path that drops a socket can leak or double the
        charge).  False when the account is full, even after collecting closed sockets
        kept alive only by reference cycles (the two ends of a connection)."""
        mem = getattr(self.kernel, "memory", None)
        if mem is None:
            return True
        if not mem.try_charge(Kind.NETSTACK, cost):
            now = time.monotonic_ns()
            if now - self.last_gc < GC_INTERVAL_NS:
                return False
            self.last_gc = now
            gc.collect()
            if not mem.try_charge(Kind.NETSTACK, cost):
                return False
        weakref.finalize(obj, mem.uncharge, Kind.NETSTACK, cost)
        return True

    def budget_left(self) -> int:
        return self.budget - self.buffered

    def unbuffer(self, n: int) -> None:
        """`n` queued bytes were read or dropped: senders the budget stopped may go on."""
        self.buffered -= n
        if self.starved and self.budget_left() > 0:
            starved, self.starved = self.starved, []
            for q in starved:
                q.notify(EVENT_OUT)

    # -- the Family seam ---------------------------------------------------------------------

    def socket(self, t: Task, family: int, stype: int, protocol: int, flags: int
               ) -> FileDescription:
        """inet_create / inet6_create: the protocol for (type, protocol)."""
        from pyvisor.sentry.socket.netstack.tcp import TCPSocket
        from pyvisor.sentry.socket.netstack.udp import PingSocket, UDPSocket
        if protocol < 0 or protocol >= IPPROTO_MAX:
            raise SyscallError(Errno.EINVAL)
        uid = t.creds.euid
        s: NetSocket
        if stype == SOCK_STREAM:
            if protocol not in (0, IPPROTO_TCP):
                raise SyscallError(Errno.EPROTONOSUPPORT)
            s = TCPSocket(self, family, uid)
        elif stype == SOCK_DGRAM:
            ping = IPPROTO_ICMP if family == AF_INET else IPPROTO_ICMPV6
            if protocol in (0, IPPROTO_UDP):
                s = UDPSocket(self, family, uid)
            elif protocol == ping:
                s = PingSocket(self, family, uid)
            else:
                raise SyscallError(Errno.EPROTONOSUPPORT)
        elif stype == SOCK_RAW:
            # Raw sockets need CAP_NET_RAW; the sandbox grants it to nobody (yet).
            raise SyscallError(Errno.EPERM)
        else:
            raise SyscallError(Errno.ESOCKTNOSUPPORT)
        if not self.charge(s, SOCKET_COST):
            raise SyscallError(Errno.ENOBUFS)        # inet_create: sk_alloc failed
        return new_socket_file(s, flags, t.creds.fsuid, t.creds.fsgid)

    def socketpair(self, t: Task, family: int, stype: int, protocol: int, flags: int
                   ) -> tuple[FileDescription, FileDescription]:
        if stype not in (SOCK_STREAM, SOCK_DGRAM, SOCK_RAW):
            raise SyscallError(Errno.ESOCKTNOSUPPORT)
        raise SyscallError(Errno.EOPNOTSUPP)

    # -- addresses and routes ----------------------------------------------------------------

    def is_local(self, ip: bytes) -> bool:
        """An address of this host (lo: all of 127.0.0.0/8, and ::1)."""
        if len(ip) == 4:
            return ip[0] == 127
        return ip == IN6ADDR_LOOPBACK

    def check_route(self, dst: bytes) -> None:
        """ENETUNREACH for a destination no interface reaches."""
        if not self.is_local(dst) and dst != b"\xff\xff\xff\xff":
            raise SyscallError(Errno.ENETUNREACH)

    def route_source(self, dst: bytes) -> bytes:
        self.check_route(dst)
        return b"\x7f\0\0\1" if len(dst) == 4 else IN6ADDR_LOOPBACK

    def interfaces(self) -> list[Interface]:
        return [self.lo]

    def routes(self) -> list[inet.Route]:
        return inet.loopback_routes()

    # -- ports and demultiplexing ------------------------------------------------------------

    def ports_for(self, s: NetSocket) -> PortTable:
        if s.protocol == IPPROTO_TCP:
            return self.tcp_ports
        if s.protocol == IPPROTO_UDP:
            return self.udp_ports
        return self.icmp_ports if s.family == AF_INET else self.icmp6_ports

    def note_bound(self, s: NetSocket) -> None:
        """A socket took a port (hook for /proc/net ordering; nothing to do yet)."""

    def note_unbound(self, s: NetSocket) -> None:
        """A socket gave its port back."""

    def tcp_listener(self, dst: bytes, port: int, src: bytes = b"", sport: int = 0
                     ) -> TCPSocket | None:
        """The listening socket a SYN for (dst, port) from (src, sport) reaches.  Linux:
        __inet_lookup_listener (an exact address beats a wildcard, an AF_INET socket the
        dual-stack one); among the best, an SO_REUSEPORT group shares the connections by
        a hash of the four-tuple (reuseport_select_sock), so each listener gets some."""
        best: list[Any] = []
        score = 0
        for b in self.tcp_ports.listeners_on(port):
            if b.tcp_state != TCP_LISTEN:
                continue
            sc = _match(b, dst)
            if sc > score:
                best, score = [b], sc
            elif sc == score and sc:
                best.append(b)
        if not best:
            return None
        first = best[0]
        if len(best) > 1 and first.reuseport:
            group = [b for b in best if b.reuseport and b.owner_uid == first.owner_uid]
            h = zlib.crc32(b"%s%s%d:%d" % (src, dst, sport, port))
            return group[h % len(group)]  # type: ignore[no-any-return]
        return first  # type: ignore[no-any-return]

    def udp_receiver(self, dst: bytes, port: int, src: bytes, sport: int) -> UDPSocket | None:
        """The socket a datagram for (dst, port) from (src, sport) goes to.  Linux:
        __udp4_lib_lookup (connected sockets only take their peer's datagrams)."""
        best: Any = None
        score = 0
        for b in self.udp_ports.on(port):
            sc = _match(b, dst)
            if not sc:
                continue
            rport = getattr(b, "rport", 0)
            if rport:
                if rport != sport or b.raddr != src:   # type: ignore[attr-defined]
                    continue
                sc += 4
            if sc > score:
                best, score = b, sc
        return best  # type: ignore[no-any-return]

    def proc_net(self, name: str) -> bytes | None:
        from pyvisor.sentry.socket.netstack import procnet
        return procnet.render(self, name)


__all__ = ["Stack"]
