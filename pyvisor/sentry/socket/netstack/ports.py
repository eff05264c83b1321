"""Port reservations.  Linux: net/ipv4/inet_connection_sock.c (inet_csk_get_port,
inet_bind_conflict), net/ipv4/udp.c (udp_lib_get_port, udp_lib_lport_inuse).
gVisor: pkg/tcpip/ports.

A `PortTable` per transport protocol maps a port to the `Binding`s on it:
bound sockets and TCP TIME_WAIT remnants.  Whether a new binding may join
is Linux's rule:

  * the addresses must overlap (equal, or either a wildcard of a family
    the other can reach: an AF_INET6 wildcard without IPV6_V6ONLY also
    covers every IPv4 address) for there to be any conflict;
  * TCP: no conflict if both set SO_REUSEADDR and the other is not
    listening, or both set SO_REUSEPORT and have the same owner (or the
    other is in TIME_WAIT);
  * UDP: no conflict if both set SO_REUSEADDR, or both SO_REUSEPORT with
    the same owner.

Ephemeral ports come from net.ipv4.ip_local_port_range (32768-60999),
starting at a random offset, connect(2) and bind(2) each preferring a parity
(`_ephemeral`).  Concurrency: Sentry loop only.
"""

from __future__ import annotations

import random
from typing import Any, Iterable, Iterator, Protocol

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import EPHEMERAL_HIGH, EPHEMERAL_LOW, TCP_LISTEN, TCP_TIME_WAIT
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.inet import is_any


class Binding(Protocol):
    """What the table reads of a bound socket or a TIME_WAIT remnant."""

    laddr: bytes           # 4 or 16 bytes; a wildcard for "any"
    lport: int
    v6only: bool           # an AF_INET6 wildcard that does not also cover IPv4
    reuse: bool            # SO_REUSEADDR
    reuseport: bool        # SO_REUSEPORT
    owner_uid: int

    @property
    def tcp_state(self) -> int: ...


def overlap(a: Binding, b: Binding) -> bool:
    """Whether two local addresses can receive the same packet.  Linux: inet_rcv_saddr_equal
    with match_wildcard."""
    x, y = a.laddr, b.laddr
    if len(x) == len(y):
        return x == y or is_any(x) or is_any(y)
    v6 = y if len(y) == 16 else x
    other = a if v6 is x else b
    # An IPv4 address against an IPv6 one: only the dual-stack wildcard covers it.
    return is_any(v6) and not other.v6only


class PortTable:
    """The ports of one transport protocol.  Linux: the bind hash (inet_bind_bucket)."""

    def __init__(self, tcp: bool, sysctl: Any = None) -> None:
        self.tcp = tcp
        self.sysctl = sysctl          # NetSysctls: the ephemeral range (None: Linux's)
        # Per port, its bindings in the order they came (a dict, so that removing one of
        # thousands of connections or TIME_WAIT remnants on a server's port is O(1)).
        self.ports: dict[int, dict[Binding, None]] = {}
        # TCP listeners per port, so a SYN finds them without walking the connections
        # and TIME_WAIT remnants that share the port (Linux: the listening hash).
        self.listening: dict[int, dict[Binding, None]] = {}
        self._rand = random.Random()

    def on(self, port: int) -> Iterable[Binding]:
        return self.ports.get(port, ())

    def listeners_on(self, port: int) -> Iterable[Binding]:
        return self.listening.get(port, ())

    def listen(self, b: Binding) -> None:
        """`b` (bound here) now listens."""
        self.listening.setdefault(b.lport, {})[b] = None

    def unlisten(self, b: Binding) -> None:
        d = self.listening.get(b.lport)
        if d is not None and d.pop(b, 0) is None and not d:
            del self.listening[b.lport]

    def __iter__(self) -> Iterator[Binding]:
        for lst in self.ports.values():
            yield from lst

    def conflict(self, new: Binding, old: Binding) -> bool:
        if new is old or not overlap(new, old):
            return False
        if self.tcp:
            if new.reuse and old.reuse and old.tcp_state != TCP_LISTEN:
                return False
            if new.reuseport and old.reuseport and (
                    old.tcp_state == TCP_TIME_WAIT or old.owner_uid == new.owner_uid):
                return False
            return True
        if new.reuse and old.reuse:
            return False
        if new.reuseport and old.reuseport and old.owner_uid == new.owner_uid:
            return False
        return True

    def free(self, new: Binding, port: int) -> bool:
        return not any(self.conflict(new, b) for b in self.on(port))

    def _free_strict(self, new: Binding, port: int) -> bool:
        """Whether an ephemeral port may be picked: TCP never picks a port another socket
        holds, even one both could share through SO_REUSEADDR or SO_REUSEPORT
        (inet_csk_find_open_port's bind conflict with relax off; __inet_hash_connect skips
        ports bind(2) took); UDP shares as bind(2) would."""
        if not self.tcp:
            return self.free(new, port)
        return not any(b is not new and overlap(new, b) for b in self.on(port))

    def bind(self, new: Binding, port: int, connecting: bool = False) -> int:
        """Reserves `port` (0: an ephemeral one) for `new`; EADDRINUSE if taken.
        `connecting`: an ephemeral port for connect(2), which may reuse a port held only
        by TIME_WAIT remnants (net.ipv4.tcp_tw_reuse = 2, Linux's default for loopback)."""
        if port == 0:
            port = self._ephemeral(new, connecting)
        elif not self.free(new, port):
            raise SyscallError(Errno.EADDRINUSE)
        self.ports.setdefault(port, {})[new] = None
        new.lport = port
        return port

    def _ephemeral(self, new: Binding, connecting: bool) -> int:
        """A port from net.ipv4.ip_local_port_range, from a random one on.  As Linux,
        connect(2) tries the ports of the range's low end's parity first and bind(2)
        the others first (__inet_hash_connect, inet_csk_find_open_port), so that
        connections cycling through TIME_WAIT in a small range leave ports for
        listeners; and TCP takes only a port no overlapping socket holds, whatever
        their SO_REUSEADDR (_free_strict; net.ipv4.ip_autobind_reuse = 0).  A TCP
        connect takes a free port of a parity, else one of that parity held only by
        TIME_WAIT remnants (tcp_tw_reuse), before the other parity."""
        low, high = self.sysctl.port_range if self.sysctl is not None else \
            (EPHEMERAL_LOW, EPHEMERAL_HIGH)
        first = 0 if connecting else 1
        for parity in (first, first ^ 1):
            ports = list(self._scan(low, high, parity))
            for port in ports:
                if port not in self.ports or self._free_strict(new, port):
                    return port
            if connecting and self.tcp:
                for port in ports:
                    if all(b.tcp_state == TCP_TIME_WAIT or not self.conflict(new, b)
                           for b in self.on(port)):
                        return port
        raise SyscallError(Errno.EADDRINUSE)

    def _scan(self, low: int, high: int, parity: int) -> Iterator[int]:
        """The ports of [low, high] whose offset from `low` has `parity`, each once,
        from a random one of them."""
        offs = range(parity, high - low + 1, 2)
        if offs:
            k = self._rand.randrange(len(offs))
            for i in range(len(offs)):
                yield low + offs[(k + i) % len(offs)]

    def add(self, b: Binding) -> None:
        """Adds an entry on a port that is already owned (an accepted connection, a
        TIME_WAIT remnant), without the conflict check."""
        self.ports.setdefault(b.lport, {})[b] = None

    def remove(self, b: Binding) -> None:
        self.unlisten(b)
        d = self.ports.get(b.lport)
        if d is None or d.pop(b, 0) is not None:
            return
        if not d:
            del self.ports[b.lport]
