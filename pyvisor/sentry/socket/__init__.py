"""Sockets served by the Sentry.  Linux: net/socket.c (__sock_create, the
net_families table).  gVisor: pkg/sentry/socket/socket.go (the provider table).

The seam: a `Family` makes sockets of one address family.  Each kernel has
one `Network` (the sandbox's network namespace), which maps address
families to families: AF_UNIX is always the Sentry's own (unix.py);
AF_INET and AF_INET6 come from the network chosen at boot:

  sandbox, none   netstack: a TCP/IP stack inside the Sentry (loopback today);
  host            hostinet: host sockets the Sentry owns and proxies.

AF_NETLINK (NETLINK_ROUTE) describes whichever stack serves AF_INET.  A
family missing from the table gets EAFNOSUPPORT, as Linux does for a
protocol family it does not know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.common import (AF_INET, AF_INET6, AF_MAX, AF_NETLINK, AF_PACKET,
                                          AF_UNIX)

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket.inet import Interface, Route
    from pyvisor.sentry.vfs.file import FileDescription

NETWORK_MODES = ("sandbox", "none", "host")


class Family(Protocol):
    """Makes the sockets of one address family.  Linux: struct net_proto_family."""

    def socket(self, t: Task, family: int, stype: int, protocol: int, flags: int
               ) -> FileDescription:
        """socket(2) minus the fd: an open socket file (`flags` may hold SOCK_NONBLOCK)."""
        ...

    def socketpair(self, t: Task, family: int, stype: int, protocol: int, flags: int
                   ) -> tuple[FileDescription, FileDescription]:
        ...


class InetStack(Protocol):
    """What netlink and /proc/net read of the stack serving AF_INET/AF_INET6."""

    def interfaces(self) -> list[Interface]: ...

    def routes(self) -> list[Route]: ...

    def proc_net(self, name: str) -> bytes | None:
        """The text of /proc/net/NAME (tcp, tcp6, udp, udp6, ...), None if absent."""
        ...


class _Unix:
    """AF_UNIX, always in the Sentry."""

    def socket(self, t: Task, family: int, stype: int, protocol: int, flags: int
               ) -> FileDescription:
        from pyvisor.sentry.socket import unix
        return unix.new_socket(t, stype, protocol, flags)

    def socketpair(self, t: Task, family: int, stype: int, protocol: int, flags: int
                   ) -> tuple[FileDescription, FileDescription]:
        from pyvisor.sentry.socket import unix
        return unix.new_socketpair(t, stype, protocol, flags)


class Network:
    """The sandbox's network namespace: which family serves what.  Owned by the Kernel."""

    def __init__(self, mode: str, kernel: Any) -> None:
        if mode not in NETWORK_MODES:
            raise ValueError(f"network mode {mode!r}")
        self.mode = mode
        self.kernel = kernel
        self.families: dict[int, Family] = {AF_UNIX: _Unix()}
        self.nftables: Any = None              # netlink/nftables.NFTables, made on first use
        self.netlink_ports: dict[int, Any] = {}  # protocol -> netlink.PortTable
        self.fib_rules: Any = None             # netlink/route.RuleSet, made on first use
        self.userns: Any = None                # the owning user namespace (None: the sandbox's)
        self.stack: InetStack
        if mode == "host":
            from pyvisor.sentry.socket.hostinet import HostStack
            hs = HostStack(kernel)
            self.stack = hs
            self.families[AF_INET] = self.families[AF_INET6] = hs
        else:
            from pyvisor.sentry.socket.netstack import Stack
            ns = Stack(kernel)
            ns.network = self
            self.stack = ns
            self.families[AF_INET] = self.families[AF_INET6] = ns
            from pyvisor.sentry.socket.netstack.packet import PacketFamily
            self.families[AF_PACKET] = PacketFamily(ns)     # the sandbox's own frames only
        from pyvisor.sentry.socket.netlink import NetlinkFamily
        self.families[AF_NETLINK] = NetlinkFamily(self.stack, self)


    def proc_net(self, name: str) -> bytes | None:
        """/proc/net/NAME: AF_UNIX's table, or the inet stack's files."""
        if name == "unix":
            from pyvisor.sentry.socket.unix import proc_net_unix
            return proc_net_unix(self.kernel)
        return self.stack.proc_net(name)


def network_of(kernel: Any) -> Network:
    """The kernel's network; a sandbox (loopback) network if boot chose none."""
    net = getattr(kernel, "network", None)
    if net is None:
        net = Network("sandbox", kernel)
        kernel.network = net
    assert isinstance(net, Network)
    return net


def network_for(t: Task) -> Network:
    """The network of the task's network namespace (kernel/namespaces.py): the
    sandbox's unless it made or joined another."""
    p = getattr(t, "nsproxy", None)
    if p is not None and p.net is not None:
        net: Network = p.net.stack
        return net
    return network_of(t.kernel)


# The network of a task's namespace, by the name the netfilter and /proc/net code uses.
task_network = network_for


def net_capable(t: Task, cap: int) -> bool:
    """Whether `t` has `cap` over its network namespace: in the user namespace that owns
    it (Linux: ns_capable(net->user_ns, cap), as netlink_net_capable and the raw and
    packet socket checks ask), so the creator of a user namespace administers the
    network namespaces it made."""
    from pyvisor.sentry.kernel.namespaces import ns_capable
    p = getattr(t, "nsproxy", None)
    owner = p.net.userns if p is not None and p.net is not None else None
    return ns_capable(t.creds, owner, cap)


def _family(t: Task, family: int) -> Family:
    if family < 0 or family >= AF_MAX:
        raise SyscallError(Errno.EAFNOSUPPORT)
    fam = network_for(t).families.get(family)
    if fam is None:
        raise SyscallError(Errno.EAFNOSUPPORT)
    return fam


def new_socket(t: Task, family: int, stype: int, protocol: int, flags: int) -> FileDescription:
    """socket(2) minus the fd: an open socket file.  `flags` may hold SOCK_NONBLOCK."""
    return _family(t, family).socket(t, family, stype, protocol, flags)


def new_socketpair(t: Task, family: int, stype: int, protocol: int, flags: int
                   ) -> tuple[FileDescription, FileDescription]:
    """socketpair(2) minus the fds."""
    return _family(t, family).socketpair(t, family, stype, protocol, flags)
