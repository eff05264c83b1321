"""netstack: the sandbox's own TCP/IP stack, in the Sentry.  gVisor: pkg/tcpip
(stack, transport/tcp, transport/udp, transport/icmp) behind
pkg/sentry/socket/netstack.

The stack has lo (127.0.0.1/8 and ::1/128) always, and under
--network=sandbox the Ethernet NICs it took over from the container's
network namespace (runtime/netns.py: eth0 of a veth pair, say; none under
--network=none or without a namespace path).  `Stack` owns the interfaces,
the routes, the port tables and the counters /proc/net and netlink report;
the sockets (tcp.py, udp.py) hold the connection state.  Between two
sockets of this stack a segment is a method call (tcp.py's short-circuit,
udp.py's direct delivery; docs/networking.md for the design).  What goes to
another host takes the packet path:

  socket ─ transport.py (UDP, ping, RST) ─ Stack.send_ip ─ route.py ─ ipv4.py/ipv6.py
        (fragments to the MTU) ─ link.Neighbors (arp.py / NDP in ipv6.py; packets wait
        while a neighbour is resolved) ─ link.NIC ─ one AF_PACKET fd
  frame ─ link.NIC (the Sentry loop polls the fd) ─ Stack.nic_input ─ arp.py | ipv4.py |
        ipv6.py (checks, reassembly, ICMP/NDP) ─ Stack.deliver_transport ─ UDP socket,
        ping socket, transport_handlers[6], or an ICMP error / TCP RST

The interface between the IP layer and the transports (also what a
segment-level TCP, tcpseg.py, plugs into):

  stack.deliver_transport(proto, src_ip, dst_ip, payload_bytes, nic)
      The IP layer calls it for each reassembled datagram addressed to us:
      `proto` the IP protocol number (after IPv6 extension headers), the
      addresses 4 or 16 bytes, `payload_bytes` the transport header and data,
      `nic` the link.NIC it came in on (None when the stack sent it to
      itself through send_ip).  Optional keywords: `header` (the IP header
      as received, for ICMP errors that quote it) and `unicast` (False for
      a broadcast/multicast destination, which never draws an error).
      TCP (6) goes to `stack.transport_handlers[6](src_ip, dst_ip,
      payload_bytes, nic)` if registered; the handler owns the segment from
      then on and calls `stack.tcp_reset(src_ip, dst_ip, payload_bytes)` for
      a segment no connection or listener takes.  Without a handler every
      TCP segment is answered by that reset (transport.tcp_reset, RFC 9293
      §3.10.7.1).  UDP (17), ICMP (1) and ICMPv6 (58) are served here;
      other protocols draw a protocol unreachable.

  stack.send_ip(proto, src_ip, dst_ip, payload_bytes) -> None
      Sends a transport payload (its checksum already computed by the
      caller over the pseudo-header, ipv4.pseudo_header).  Routes it (a
      destination of this stack is delivered back through
      deliver_transport from the loop, never re-entrantly), fragments it to
      the NIC's MTU, and resolves the next hop with ARP or NDP, queueing
      the packet meanwhile (link.UNRES_QLEN per neighbour).  Never raises
      and never blocks: no route, a full device queue or an unresolvable
      neighbour drop the packet (counted), as an IP output queue does;
      callers that must know check `stack.check_route(dst_ip)` first.
      Optional keywords: `ttl` (hop limit) and `tos` (traffic class).

Also for the transports: `stack.route_source(dst_ip)` picks the source
address for a destination, `stack.mtu_for(dst_ip)` the MTU of the path, and
ICMP errors about TCP segments we sent (unreachable, fragmentation needed,
packet too big) go to `stack.tcpseg.icmp_error(local_ip, remote_ip,
quoted_tcp_header, errno, mtu)` when a TCP layer is attached (`tcpseg`,
which `attach_nic` attaches when the module is there).
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
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.memacct import Kind
from pyvisor.sentry.waitqueue import EVENT_OUT, WaitQueue
from pyvisor.sentry.socket import inet
from pyvisor.sentry.socket.common import (AF_INET, AF_INET6, SOCK_DGRAM, SOCK_RAW,
                                          SOCK_STREAM, new_socket_file)
from pyvisor.sentry.socket.inet import Interface
from pyvisor.sentry.socket.netstack.ports import Binding, PortTable

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket.netstack.link import NIC
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
        from pyvisor.sentry.kernel.sysctl import NetSysctls
        self.kernel = kernel
        self.network: Any = None       # the socket.Network (namespace) this stack serves
        self.lo: Interface = inet.loopback()
        self.sysctl = NetSysctls()          # net.* (kernel/sysctl.py)
        self.tcp_ports = PortTable(tcp=True, sysctl=self.sysctl)
        self.udp_ports = PortTable(tcp=False, sysctl=self.sysctl)
        self.icmp_ports = PortTable(tcp=False)
        self.icmp6_ports = PortTable(tcp=False)
        # Counters for /proc/net/snmp and netstat.
        self.active_opens = self.passive_opens = self.refused = self.resets = 0
        self.syn_drops = self.time_waits = self.aborts_on_close = self.aborts_on_data = 0
        self.tw_overflows = 0
        self.udp_in = self.udp_out = self.udp_noport = self.udp_rcvbuf_errors = 0
        self.icmp_in = self.icmp_out = 0
        self._init_packet_path()
        # Unread data queued on the stack's sockets (TCP bytes, UDP/ICMP datagrams' true
        # sizes), against BUFFER_BUDGET: past it TCP senders wait and datagrams are dropped.
        self.buffered = 0
        self.budget = BUFFER_BUDGET
        test_budget = os.environ.get("PYVISOR_TEST_NETSTACK_BUDGET")   # tests only
        if test_budget and test_budget.isdigit():
            self.budget = int(test_budget)
        self.starved: list[WaitQueue] = []     # senders stopped by the budget, not a window
        self.tcpseg: Any = None        # tcpseg.TCPLayer once an IP layer is attached
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
                if not self.sysctl.may_ping((t.creds.egid, *t.creds.groups)):
                    raise SyscallError(Errno.EACCES)    # net.ipv4.ping_group_range
                s = PingSocket(self, family, uid)
            else:
                raise SyscallError(Errno.EPROTONOSUPPORT)
        elif stype == SOCK_RAW:
            from pyvisor.sentry.socket.netstack.raw import new_raw_socket
            s = new_raw_socket(self, t, family, protocol)      # CAP_NET_RAW
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
        """An address of this host: one an interface holds, lo's whole prefixes
        (127.0.0.0/8), or a broadcast address of an up interface (devinet.py)."""
        from pyvisor.sentry.socket.netstack import devinet
        return devinet.local_iface(self, ip) is not None

    def is_broadcast(self, ip: bytes) -> bool:
        """255.255.255.255 or a subnet broadcast of an up interface (RTN_BROADCAST)."""
        from pyvisor.sentry.socket.netstack import devinet
        return ip == b"\xff\xff\xff\xff" or devinet.broadcast_iface(self, ip) is not None

    def check_route(self, dst: bytes) -> None:
        """ENETUNREACH for a destination no interface reaches (EADDRNOTAVAIL for IPv6
        when no interface has an address to send from, as ip6_dst_lookup_tail picks the
        source first); EHOSTUNREACH, EINVAL, EACCES for unreachable, blackhole and
        prohibit routes (fib_props)."""
        if self.is_local(dst) or dst == b"\xff\xff\xff\xff":
            return
        if len(dst) == 16:
            from pyvisor.sentry.socket.netstack import devinet
            if not devinet.has_source6(self):
                raise SyscallError(Errno.EADDRNOTAVAIL)
        r = self.route_table.lookup(dst)
        err = _ROUTE_ERRORS.get(r.rtype) if r is not None else None
        if err is not None:
            raise SyscallError(err)
        if r is not None and self.iface_by_index(r.oif) is not None:
            return
        raise SyscallError(Errno.ENETUNREACH)

    def route_source(self, dst: bytes) -> bytes:
        """The source address of a packet to `dst`.  Linux: inet_select_addr via the route's
        prefsrc, ipv6_dev_get_saddr."""
        from pyvisor.sentry.socket.netstack import devinet
        self.check_route(dst)
        if self.is_local(dst):
            return devinet.local_source(self, dst)
        r = self.route_table.lookup(dst)
        if r is not None and r.prefsrc:
            return r.prefsrc
        nic = self.nic_by_index(r.oif) if r is not None else None
        if r is None or nic is None:
            i = self.iface_by_index(r.oif) if r is not None else None
            if i is not None and len(dst) == 16 and i.addrs6:
                return i.addrs6[0][0]
            if i is not None and len(dst) == 4 and r is not None:
                src = devinet.select_addr(self, i, r.gateway or dst, r.scope)
                if src != bytes(4):
                    return src
            if len(dst) == 4 and self.nics and self.nics[0].iface.addrs4:
                return self.nics[0].iface.addrs4[0][0]   # 255.255.255.255
            return b"\x7f\0\0\1" if len(dst) == 4 else IN6ADDR_LOOPBACK
        if len(dst) == 4:
            return self.nic_source4(nic, r.gateway or dst)
        return self.nic_source6(nic, dst) or IN6ADDR_LOOPBACK

    def interfaces(self) -> list[Interface]:
        return [self.lo] + [n.iface for n in self.nics]

    # -- multicast ---------------------------------------------------------------------------

    def iface_by_index(self, index: int) -> Interface | None:
        if index == self.lo.index:
            return self.lo
        nic = self.nic_by_index(index)
        return nic.iface if nic is not None else None

    def index_of_addr(self, ip: bytes) -> int:
        """__ip_dev_find: the interface holding address `ip` (0: none)."""
        from pyvisor.sentry.socket.netstack import devinet
        i = devinet.local_iface(self, ip)
        return i.index if i is not None else 0

    def route_index(self, dst: bytes) -> int:
        """The interface the route to `dst` leaves by (0: no route)."""
        if self.is_local(dst):
            return self.lo.index
        if dst[0] == 0xFF and len(dst) == 16:
            return self.nics[0].index if self.nics else 0  # ff00::/8 dev eth0 (local table)
        r = self.route_table.lookup(dst)
        return r.oif if r is not None and self.iface_by_index(r.oif) is not None else 0

    def index_source4(self, index: int) -> bytes:
        """inet_select_addr for an interface: its first address."""
        if index == self.lo.index:
            return b"\x7f\0\0\1"
        nic = self.nic_by_index(index)
        if nic is not None and nic.iface.addrs4:
            return nic.iface.addrs4[0][0]
        return b"\0\0\0\0"

    def mc_join(self, index: int, group: bytes) -> None:
        """A socket joined `group` on interface `index` (ip_mc_inc_group)."""
        key = (index, group)
        self.mc_groups[key] = self.mc_groups.get(key, 0) + 1

    def mc_leave(self, index: int, group: bytes) -> None:
        key = (index, group)
        n = self.mc_groups.get(key, 0) - 1
        if n > 0:
            self.mc_groups[key] = n
        else:
            self.mc_groups.pop(key, None)

    def mc_member(self, index: int, group: bytes) -> bool:
        """ip_check_mc_rcu: whether this host listens to `group` on interface `index`."""
        return (index, group) in self.mc_groups

    def routes(self) -> list[inet.Route]:
        """The main table's routes (and other tables' made through netlink) after lo's
        local ones, then the NICs' local routes (devinet.local_routes)."""
        from pyvisor.sentry.socket.netstack import devinet
        out = devinet.local_routes(self.lo) + list(self.route_table.routes)
        for n in self.nics:
            out += devinet.local_routes(n.iface)
        return out

    # -- the packet path: NICs ---------------------------------------------------------------

    def _init_packet_path(self) -> None:
        from pyvisor.sentry.socket.netstack.ipv4 import Reassembler, initial_ident
        from pyvisor.sentry.socket.netstack.ipv6 import initial_ident as initial_ident6
        from pyvisor.sentry.socket.netstack.route import RouteTable
        self.nics: list[NIC] = []              # in index order
        self.last_ifindex = 1                  # the last index given (vlink.new_ifindex)
        self.route_table = RouteTable()
        self.mc_groups: dict[tuple[int, bytes], int] = {}   # (ifindex, group) -> members
        self.raw_socks: list[Any] = []                       # raw.RawSocket, in creation order
        self.packet_socks: list[Any] = []                    # packet.PacketSocket (AF_PACKET)
        # Transport protocols served elsewhere, by IP protocol number: {6: tcpseg's input}.
        self.transport_handlers: dict[int, Callable[[bytes, bytes, bytes, NIC | None], None]] = {}
        self.frags4 = Reassembler(self)
        self.frags6 = Reassembler(self)
        self._ip_id = initial_ident()
        self._ip6_id = initial_ident6()
        self._icmp_tokens = 0.0
        self._icmp_stamp = 0
        self._loopq: list[tuple[int, bytes, bytes, bytes, bytes | None]] = []
        # Counters for /proc/net/snmp (Ip:, Icmp:, Udp:, Tcp: rows) and the tests.
        self.ip_in_hdr_errors = self.ip_in_addr_errors = self.ip_in_delivers = 0
        self.ip_out_requests = self.ip_no_routes = 0
        self.ip6_in_hdr_errors = self.ip6_in_addr_errors = self.ip6_in_delivers = 0
        self.ip6_out_requests = 0
        self.icmp_in_errors = self.icmp_out_errors = 0
        self.icmp6_in = self.icmp6_out = self.icmp6_in_errors = 0
        self.udp_in_errors = self.udp_csum_errors = 0
        self.tcp_in_csum_errors = self.tcp_out_rsts = 0
        self.unknown_protos = 0

    def attach_nic(self, index: int, name: bytes, fd: int, mac: bytes, mtu: int,
                   addrs4: list[tuple[bytes, int]], addrs6: list[tuple[bytes, int]],
                   routes: list[inet.Route], vnet_hdr: bool = False) -> NIC:
        """Adds an Ethernet NIC reading and writing frames on host `fd` (an AF_PACKET socket
        bound to the device, non-blocking), with the addresses and routes it had on the
        host.  An interface without an IPv6 link-local address gets one from its MAC.
        `vnet_hdr`: the fd has PACKET_VNET_HDR (frames carry a virtio_net_hdr)."""
        from pyvisor.sentry.socket.netstack import ipv6
        from pyvisor.sentry.socket.netstack.link import NIC
        from pyvisor.sentry.socket.netstack.route import network_of
        nic = NIC(self, index, name, fd, mac, mtu, vnet_hdr)
        nic.iface.addrs4 = list(addrs4)
        nic.iface.addrs6 = list(addrs6)
        if not any(ipv6.is_link_local(a) for a, _ in addrs6):
            nic.iface.addrs6.append((ipv6.link_local_from_mac(mac), 64))
        for r in routes:
            self.route_table.add(r)
        # The connected routes, in case the namespace's table did not list them.
        for ip, prefix in nic.iface.addrs4:
            self.route_table.add(inet.Route(AF_INET, network_of(ip, prefix), prefix, index,
                                            scope=253, prefsrc=ip, rtype=1))
        for ip, prefix in nic.iface.addrs6:
            r6 = inet.Route(AF_INET6, network_of(ip, prefix), prefix, index, metric=256)
            if not any(x.family == AF_INET6 and x.dst == r6.dst and x.prefix == prefix
                       and x.oif == index for x in self.route_table.routes):
                self.route_table.add(r6)
        self.nics.append(nic)
        nic.start()
        self._attach_tcp()
        return nic

    def _attach_tcp(self) -> None:
        """TCP over the NICs: the segment-level endpoint (tcpseg.py, written alongside this
        packet path) registers itself in transport_handlers[6].  Without it every segment
        from the wire is answered with a reset, and connect(2) to another host is refused."""
        try:
            from pyvisor.sentry.socket.netstack import tcpseg  # type: ignore[attr-defined]
        except ImportError:
            return
        tcpseg.attach(self)

    def mtu_for(self, dst: bytes) -> int:
        """The MTU of the path to `dst`: its NIC's (or lo's for ourselves); 1500 without
        a route.  No path MTU cache: a segment-level TCP keeps what ICMP tells it."""
        if self.is_local(dst):
            return self.lo.mtu
        r = self.route_table.lookup(dst)
        nic = self.nic_by_index(r.oif) if r is not None else None
        return nic.mtu if nic is not None else 1500

    def nic_by_index(self, index: int) -> NIC | None:
        for n in self.nics:
            if n.index == index:
                return n
        return None

    def nic_input(self, nic: NIC, frame: bytes) -> None:
        """One frame from `nic`: to ARP, IPv4 or IPv6.  Linux: eth_type_trans +
        __netif_receive_skb."""
        from pyvisor.sentry.socket.netstack import arp, ipv4, ipv6
        from pyvisor.sentry.socket.netstack.link import (BROADCAST, ETH_HLEN, ETH_P_ARP,
                                                         ETH_P_IP, ETH_P_IPV6)
        if len(frame) < ETH_HLEN:
            nic.rx_errors += 1
            return
        dst_mac, src_mac = frame[:6], frame[6:12]
        if src_mac == nic.mac:
            return                       # our own frame, reflected
        if dst_mac != nic.mac and dst_mac != BROADCAST and not dst_mac[0] & 1:
            nic.rx_dropped += 1          # PACKET_OTHERHOST
            return
        if self.packet_socks:
            from pyvisor.sentry.socket.netstack import packet
            pkttype = packet.PACKET_HOST if dst_mac == nic.mac else \
                packet.PACKET_BROADCAST if dst_mac == BROADCAST else packet.PACKET_MULTICAST
            packet.tap(self, nic.index, frame, False, pkttype)
        etype = int.from_bytes(frame[12:14], "big")
        body = frame[ETH_HLEN:]
        if etype == ETH_P_IP:
            ipv4.receive(nic, body)
        elif etype == ETH_P_IPV6:
            ipv6.receive(nic, body)
        elif etype == ETH_P_ARP:
            arp.receive(nic, body)
        else:
            nic.rx_dropped += 1

    def nic_owns4(self, nic: NIC, ip: bytes) -> bool:
        return any(ip == a for a, _ in nic.iface.addrs4)

    def nic_owns6(self, nic: NIC, ip: bytes) -> bool:
        return any(ip == a for a, _ in nic.iface.addrs6)

    def nic_subnet_broadcast(self, nic: NIC, ip: bytes) -> bool:
        from pyvisor.sentry.socket.netstack.route import prefix_match
        for a, prefix in nic.iface.addrs4:
            if prefix < 31 and prefix_match(ip, a, prefix):
                host = (1 << (32 - prefix)) - 1
                if int.from_bytes(ip, "big") & host == host:
                    return True
        return False

    def nic_accepts4(self, nic: NIC, dst: bytes) -> int:
        """1: a unicast address of the NIC; 2: a broadcast or all-hosts address; 0: not
        ours (Linux: ip_route_input's RTN_LOCAL / RTN_BROADCAST / multicast)."""
        if self.nic_owns4(nic, dst):
            return 1
        if dst == b"\xff\xff\xff\xff" or dst == b"\xe0\0\0\1" \
                or self.nic_subnet_broadcast(nic, dst) or self.mc_member(nic.index, dst):
            return 2
        return 0

    def nic_accepts6(self, nic: NIC, dst: bytes) -> int:
        """1: a unicast address of the NIC; 2: all-nodes or one of its solicited-node groups;
        0: not ours."""
        from pyvisor.sentry.socket.netstack.ipv6 import ALL_NODES, solicited_node
        if self.nic_owns6(nic, dst):
            return 1
        if dst == ALL_NODES or any(dst == solicited_node(a) for a, _ in nic.iface.addrs6) \
                or self.mc_member(nic.index, dst):
            return 2
        return 0

    def nic_source4(self, nic: NIC, dst: bytes) -> bytes:
        """The NIC's address on `dst`'s subnet, else its first (inet_select_addr)."""
        from pyvisor.sentry.socket.netstack.route import prefix_match
        for a, prefix in nic.iface.addrs4:
            if prefix_match(dst, a, prefix):
                return a
        return nic.iface.addrs4[0][0] if nic.iface.addrs4 else b"\0\0\0\0"

    def nic_source6(self, nic: NIC, dst: bytes) -> bytes | None:
        """A link-local source for link-scope destinations, else a global one (RFC 6724's
        scope rule, the one that matters with one interface)."""
        from pyvisor.sentry.socket.netstack.ipv6 import is_link_local
        from pyvisor.sentry.socket.netstack.route import prefix_match
        addrs = nic.iface.addrs6
        link = [a for a, _ in addrs if is_link_local(a)]
        if is_link_local(dst) or (dst[0] == 0xFF and dst[1] & 0xF == 2):
            return link[0] if link else None
        for a, prefix in addrs:
            if not is_link_local(a) and prefix_match(dst, a, prefix):
                return a
        glob = [a for a, _ in addrs if not is_link_local(a)]
        return glob[0] if glob else (link[0] if link else None)

    def next_ip_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id

    def next_ip6_id(self) -> int:
        self._ip6_id = (self._ip6_id + 1) & 0xFFFFFFFF
        return self._ip6_id

    def icmp_rate_ok(self) -> bool:
        """A token of the ICMP error bucket (icmp_ratelimit / icmp_msgs_per_sec)."""
        from pyvisor.sentry.socket.netstack.ipv4 import ERROR_BURST
        now = self.kernel.now()
        self._icmp_tokens = min(float(ERROR_BURST),
                                self._icmp_tokens + (now - self._icmp_stamp) * ERROR_BURST / 1e9)
        self._icmp_stamp = now
        if self._icmp_tokens < 1:
            return False
        self._icmp_tokens -= 1
        return True

    def neighbor_failed(self, ip: bytes, packets: list[tuple[int, bytes]]) -> None:
        """Packets to a neighbour that never answered were dropped (Linux reports a host
        unreachable to the senders; datagram senders see nothing unless connected)."""
        self.ip_no_routes += len(packets)

    def send_ip(self, proto: int, src_ip: bytes, dst_ip: bytes, payload: bytes,
                ttl: int | None = None, tos: int = 0, oif: int = 0) -> None:
        """Sends a transport payload; see the module docstring.  Never raises.  `oif`
        names the NIC a multicast leaves by (IP_MULTICAST_IF)."""
        from pyvisor.sentry.socket.netstack import ipv4, ipv6
        if self.is_local(dst_ip):
            header = None
            if self.raw_socks or self.packet_socks:   # they read the real TTL/TOS
                header = _synthetic_header(proto, src_ip, dst_ip, len(payload),
                                           64 if ttl is None else ttl, tos)
            if self.packet_socks:
                from pyvisor.sentry.socket.netstack import packet
                packet.lo_ip(self, header, payload)
            self._loop(proto, src_ip, dst_ip, payload, header)
            return
        r = self.route_table.lookup(dst_ip)
        nic = self.nic_by_index(r.oif) if r is not None else None
        if oif and self.nic_by_index(oif) is not None:
            nic, r = self.nic_by_index(oif), None
        elif len(dst_ip) == 16 and dst_ip[0] == 0xFF and self.nics and nic is None:
            nic = self.nics[0]
        if r is not None and r.rtype != 1 and nic is not None and not oif:
            nic = None                           # blackhole, unreachable, prohibit
        if nic is None:
            if dst_ip == b"\xff\xff\xff\xff" and self.nics:
                nic = self.nics[0]
            else:
                self.ip_no_routes += 1
                return
        hop = (r.gateway if r is not None else b"") or dst_ip
        if inet.is_any(src_ip):
            src_ip = self.route_source(dst_ip)
        if len(dst_ip) == 4:
            ipv4.output(nic, hop, src_ip, dst_ip, proto, payload,
                        ipv4.DEFAULT_TTL if ttl is None else ttl, tos)
        else:
            ipv6.output(nic, hop, src_ip, dst_ip, proto, payload,
                        ipv6.DEFAULT_HOPS if ttl is None else ttl, tos)

    def _loop(self, proto: int, src: bytes, dst: bytes, payload: bytes,
              header: bytes | None = None) -> None:
        """A packet for this stack: delivered from the loop, as loopback's softirq does."""
        if len(self._loopq) >= 4096:
            self.ip_no_routes += 1
            return
        self._loopq.append((proto, src, dst, payload, header))
        if len(self._loopq) == 1:
            self.kernel.add_timer(self.kernel.now(), self._drain_loop)

    def loop_packet(self, proto: int, src: bytes, dst: bytes, payload: bytes,
                    header: bytes, tap: bool = True) -> None:
        """A datagram for this host with the IP header it was built with (a raw socket's
        IP_HDRINCL, a frame a packet socket wrote to lo): delivered from the loop like any
        other.  `tap`: packet sockets still have to see it cross lo."""
        if tap and self.packet_socks:
            from pyvisor.sentry.socket.netstack import packet
            packet.lo_ip(self, header, payload)
        self._loop(proto, src, dst, payload, header)

    def flush_loop(self) -> bool:
        """Delivers what waits on lo now (Linux: the softirq that runs as the sending
        syscall returns), for a reader that must know whether more is coming.  True if
        anything was delivered."""
        if not self._loopq:
            return False
        self._drain_loop()
        return True

    def _drain_loop(self) -> None:
        q, self._loopq = self._loopq, []
        for proto, src, dst, payload, header in q:
            self.lo.count(len(payload) + (20 if len(dst) == 4 else 40))
            try:
                self.deliver_transport(proto, src, dst, payload, None, header)
            except Exception:  # noqa: BLE001 - as NIC.input: a packet never stops the Sentry
                import logging
                logging.getLogger("pyvisor.netstack").warning("loopback packet dropped",
                                                              exc_info=True)

    def deliver_transport(self, proto: int, src_ip: bytes, dst_ip: bytes, payload: bytes,
                          nic: NIC | None, header: bytes | None = None,
                          unicast: bool = True) -> None:
        """A datagram for us, to its transport; see the module docstring."""
        from pyvisor.sentry.socket.netstack import ipv4, ipv6, transport
        if header is None:
            header = _synthetic_header(proto, src_ip, dst_ip, len(payload))
        if self.raw_socks:
            from pyvisor.sentry.socket.netstack import raw
            raw.deliver(self, proto, src_ip, dst_ip, header, payload)
        if proto == IPPROTO_UDP:
            transport.udp_receive(self, src_ip, dst_ip, payload, header, unicast, nic)
        elif proto == IPPROTO_TCP:
            handler = self.transport_handlers.get(IPPROTO_TCP)
            if handler is not None:
                handler(src_ip, dst_ip, payload, nic)
            elif unicast:
                transport.tcp_reset(self, src_ip, dst_ip, payload, header)
        elif proto == IPPROTO_ICMP and len(src_ip) == 4:
            ipv4.icmp_receive(self, src_ip, dst_ip, header, payload, unicast)
        elif proto == IPPROTO_ICMPV6 and len(src_ip) == 16:
            ipv6.icmp6_receive(self, nic, src_ip, dst_ip, header[7] if len(header) > 7 else 64,
                               header, payload, unicast)
        else:
            self.unknown_protos += 1
            if unicast:
                transport.protocol_unreachable(self, proto, header, payload)

    def tcp_reset(self, src_ip: bytes, dst_ip: bytes, segment: bytes) -> None:
        """Answers a TCP segment from `src_ip` that no socket takes with a reset (for the
        transport handler of TCP; see the module docstring)."""
        from pyvisor.sentry.socket.netstack import transport
        transport.tcp_reset(self, src_ip, dst_ip, segment, b"")

    def ping_deliver(self, src: bytes, dst: bytes, msg: bytes, tos: int) -> None:
        from pyvisor.sentry.socket.netstack import transport
        transport.ping_deliver(self, src, dst, msg, tos)

    def transport_error(self, proto: int, src: bytes, dst: bytes, head: bytes, mtype: int,
                        code: int, hard: bool, mtu: int = 0) -> None:
        """An ICMP error about a datagram we sent (quoted: its addresses and 8 bytes of its
        transport header; `mtu` the next-hop MTU of a fragmentation-needed or
        packet-too-big)."""
        from pyvisor.sentry.socket.netstack import transport
        transport.transport_error(self, proto, src, dst, head, mtype, code, hard, mtu)

    def leaves(self, dst: bytes) -> bool:
        """Whether a datagram to `dst` goes out through a NIC rather than to a socket of
        this stack (a limited broadcast does both)."""
        if self.is_local(dst):
            return False
        return bool(self.nics) or dst != b"\xff\xff\xff\xff"

    def close_nics(self) -> None:
        for n in self.nics:
            n.close()

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
        if self.nics and not self.is_local(dst):
            return None                   # another host's port: no socket of ours listens
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
        __udp4_lib_lookup (connected sockets only take their peer's datagrams).  Among
        equally good sockets the one bound last wins (SO_REUSEADDR), unless they form an
        SO_REUSEPORT group, which shares the datagrams by a hash of the four-tuple
        (reuseport_select_sock)."""
        best: list[Any] = []
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
                best, score = [b], sc
            elif sc == score:
                best.append(b)
        if not best:
            return None
        last = best[-1]
        if len(best) > 1 and last.reuseport:
            group = [b for b in best if b.reuseport and b.owner_uid == last.owner_uid]
            h = zlib.crc32(b"%s%s%d:%d" % (src, dst, sport, port))
            return group[h % len(group)]  # type: ignore[no-any-return]
        return last  # type: ignore[no-any-return]

    def proc_net(self, name: str) -> bytes | None:
        from pyvisor.sentry.socket.netstack import procnet
        return procnet.render(self, name)


# What a connect or send meets on a route of these types (fib_props[].error).
_ROUTE_ERRORS = {6: Errno.EINVAL, 7: Errno.EHOSTUNREACH, 8: Errno.EACCES}   # blackhole, ...


def _synthetic_header(proto: int, src: bytes, dst: bytes, length: int, ttl: int = 64,
                      tos: int = 0) -> bytes:
    """An IP header for a datagram that came without one (from the stack itself, or a
    caller of deliver_transport that passed none): what an ICMP error quotes and a raw
    socket reads."""
    from pyvisor.sentry.socket.netstack.ipv4 import IP_DF, IPV4_HDR, checksum
    from pyvisor.sentry.socket.netstack.ipv6 import IPV6_HDR
    if len(src) == 4:
        h = IPV4_HDR.pack(0x45, tos & 0xFF, 20 + length, 0, IP_DF, ttl & 0xFF, proto, 0,
                          src, dst)
        return h[:10] + checksum(h).to_bytes(2, "big") + h[12:]
    return IPV6_HDR.pack((6 << 28) | ((tos & 0xFF) << 20), length, proto, ttl & 0xFF, src, dst)


__all__ = ["Stack"]
