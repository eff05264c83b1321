"""The link layer of netstack: Ethernet frames on one host fd, and the neighbour
cache ARP and NDP fill.  Linux: net/ethernet/eth.c, net/core/neighbour.c.
gVisor: pkg/tcpip/link/fdbased, pkg/tcpip/link/ethernet, stack/neighbor_cache.go.

A `NIC` is one Ethernet interface taken over from the container's network
namespace (runtime/netns.py): an AF_PACKET socket bound to the device, made
non-blocking before confinement.  Reading: the Sentry loop watches the fd
(Kernel.watch_fd, one-shot, re-armed after each batch); a batch reads at
most READ_BATCH frames so a flood cannot starve the tasks, and whatever is
left makes the fd readable again at the next poll.  Each frame goes to
Stack.nic_input, which never raises: a frame the stack cannot parse is
dropped and counted (rx_errors), as a real NIC driver drops runts.

Checksum offload: the packet socket is opened with PACKET_VNET_HDR, so each
frame comes with a struct virtio_net_hdr.  A frame the other end's kernel
sent with its transport checksum left to the device (CHECKSUM_PARTIAL,
which a veth carries as is: VIRTIO_NET_HDR_F_NEEDS_CSUM) has the checksum
completed here, at csum_start/csum_offset, as skb_checksum_help does; from
then on every layer verifies checksums as on any frame.  Frames we write
carry an all-zero header (no offload, no GSO).

Writing: one write(2) per frame.  A full socket buffer (ENOBUFS/EAGAIN)
drops the frame, as a full device queue does; TCP and the applications
retransmit.

The neighbour cache (`Neighbors`) maps an IP address of the link to its
MAC address.  Packets to an unresolved neighbour wait in a bounded queue
(UNRES_QLEN per neighbour, Linux's unres_qlen) while the solicitation is
repeated every RETRANS_NS up to MAX_PROBES times; then they are dropped
and `on_fail` reports the destination unreachable.  The cache holds at most
MAX_NEIGHBORS entries (gc_thresh3): past that the oldest is forgotten.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import collections
import errno as host_errno
import logging
import os
import select
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pyvisor.abi.linux.inet import (ARPHRD_ETHER, IFF_BROADCAST, IFF_LOWER_UP, IFF_MULTICAST,
                                    IFF_RUNNING, IFF_UP)
from pyvisor.sentry.socket.inet import Interface

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netstack import Stack

log = logging.getLogger("pyvisor.netstack")

# From <linux/if_ether.h>.
ETH_ALEN = 6
ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
# What one read may return: a jumbo MTU, or a GSO packet a veth passes unsegmented (an IPv6
# header plus 65,535 bytes of payload), with the Ethernet and virtio-net headers.
ETH_FRAME_MAX = 1 << 17
BROADCAST = b"\xff" * ETH_ALEN

VNET_HDR = struct.Struct("<BBHHHH")   # struct virtio_net_hdr (flags, gso_type, hdr_len,
VNET_NEEDS_CSUM = 1                     #   gso_size, csum_start, csum_offset): 10 bytes
VNET_NONE = b"\0" * VNET_HDR.size

READ_BATCH = 64                # frames per wake-up of the loop
UNRES_QLEN = 16                # packets queued per unresolved neighbour
MAX_NEIGHBORS = 1024           # neighbour entries per cache (gc_thresh3)
RETRANS_NS = 1_000_000_000     # between solicitations (retrans_time_ms)
MAX_PROBES = 3                 # solicitations before giving up (mcast_solicit)
REACHABLE_NS = 60 * 10**9      # how long an answer is believed without re-asking


def ipv4_multicast_mac(ip: bytes) -> bytes:
    """01:00:5e + the low 23 bits of the group (RFC 1112 §6.4)."""
    return b"\x01\x00\x5e" + bytes([ip[1] & 0x7F]) + ip[2:4]


def ipv6_multicast_mac(ip: bytes) -> bytes:
    """33:33 + the low 32 bits of the group (RFC 2464 §7)."""
    return b"\x33\x33" + ip[12:16]


@dataclass(slots=True)
class Neighbor:
    """One entry of a neighbour cache.  Linux: struct neighbour."""

    ip: bytes
    mac: bytes | None = None                 # None: being resolved (NUD_INCOMPLETE)
    expires: int = 0                         # monotonic ns; past it, resolve again
    probes: int = 0
    queue: collections.deque[tuple[int, bytes]] = field(default_factory=collections.deque)
    timer: object = None                     # the retransmit timer while resolving


class Neighbors:
    """The neighbour cache of one NIC and one protocol (ARP for IPv4, NDP for IPv6).
    `solicit(ip)` sends a request; `on_fail(ip, packets)` is told about packets that
    could not be delivered."""

    def __init__(self, nic: NIC, solicit: Callable[[bytes], None],
                 on_fail: Callable[[bytes, list[tuple[int, bytes]]], None] | None = None
                 ) -> None:
        self.nic = nic
        self.solicit = solicit
        self.on_fail = on_fail
        self.entries: collections.OrderedDict[bytes, Neighbor] = collections.OrderedDict()
        self.dropped = 0

    def lookup(self, ip: bytes) -> bytes | None:
        n = self.entries.get(ip)
        if n is None or n.mac is None or n.expires <= self.nic.now():
            return None
        return n.mac

    def output(self, ip: bytes, ethertype: int, packet: bytes) -> None:
        """Sends `packet` to neighbour `ip`, resolving it first if needed."""
        mac = self.lookup(ip)
        if mac is not None:
            self.nic.transmit(mac, ethertype, packet)
            return
        n = self.entries.get(ip)
        if n is None:
            self._make_room()
            n = self.entries[ip] = Neighbor(ip)
        if len(n.queue) >= UNRES_QLEN:
            n.queue.popleft()                  # Linux drops the oldest (__neigh_event_send)
            self.dropped += 1
        n.queue.append((ethertype, packet))
        if n.timer is None:
            n.mac = None
            n.probes = 0
            self._probe(n)

    def _make_room(self) -> None:
        while len(self.entries) >= MAX_NEIGHBORS:
            _, old = self.entries.popitem(last=False)
            if old.timer is not None:
                old.timer.cancelled = True     # type: ignore[attr-defined]
            self.dropped += len(old.queue)

    def _probe(self, n: Neighbor) -> None:
        if n.probes >= MAX_PROBES:
            n.timer = None
            failed = list(n.queue)
            n.queue.clear()
            if self.entries.get(n.ip) is n:
                del self.entries[n.ip]
            self.dropped += len(failed)
            if self.on_fail is not None and failed:
                self.on_fail(n.ip, failed)
            return
        n.probes += 1
        self.solicit(n.ip)
        n.timer = self.nic.stack.kernel.add_timer(self.nic.now() + RETRANS_NS,
                                                  lambda: self._probe(n))

    def update(self, ip: bytes, mac: bytes, create: bool) -> None:
        """`ip` is at `mac` (an answer, or a request that names its sender).  Creates an
        entry only with `create` (the packet was for us, as arp_process and ndisc do)."""
        if len(mac) != ETH_ALEN or mac == BROADCAST or mac[0] & 1 or not any(mac):
            return                             # never a broadcast/multicast/zero link address
        n = self.entries.get(ip)
        if n is None:
            if not create:
                return
            self._make_room()
            n = self.entries[ip] = Neighbor(ip)
        n.mac = mac
        n.expires = self.nic.now() + REACHABLE_NS
        if n.timer is not None:
            n.timer.cancelled = True           # type: ignore[attr-defined]
            n.timer = None
        self.entries.move_to_end(ip)
        while n.queue:
            ethertype, packet = n.queue.popleft()
            self.nic.transmit(mac, ethertype, packet)


class NIC:
    """An Ethernet interface whose frames come and go through one host fd.  Linux: a
    struct net_device with its driver; gVisor: fdbased.endpoint + ethernet.Endpoint."""

    def __init__(self, stack: Stack, index: int, name: bytes, fd: int, mac: bytes, mtu: int,
                 vnet_hdr: bool = False,
                 flags: int = IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_MULTICAST
                 | IFF_LOWER_UP) -> None:
        self.stack = stack
        self.vnet_hdr = vnet_hdr               # frames carry a struct virtio_net_hdr
        self.fd = fd                           # owned: non-blocking, closed by close()
        self.mac = mac
        self.mtu = max(68, min(mtu, 65535))
        self.iface = Interface(index, name, flags, self.mtu, ARPHRD_ETHER, mac)
        from pyvisor.sentry.socket.netstack import arp, ipv6
        self.arp = Neighbors(self, lambda ip: arp.solicit(self, ip), stack.neighbor_failed)
        self.ndp = Neighbors(self, lambda ip: ipv6.solicit(self, ip), stack.neighbor_failed)
        self.rx_errors = 0                     # frames the stack could not take
        self.rx_dropped = 0                    # well-formed frames for nobody
        self.tx_dropped = 0
        self.closed = False
        self._logged = 0

    @property
    def index(self) -> int:
        return self.iface.index

    @property
    def name(self) -> bytes:
        return self.iface.name

    def now(self) -> int:
        return self.stack.kernel.now()  # type: ignore[no-any-return]

    # -- reading ----------------------------------------------------------------------------

    def start(self) -> None:
        """Starts reading frames from the Sentry loop."""
        self.stack.kernel.watch_fd(self.fd, select.EPOLLIN, self._readable)

    def _readable(self, events: int) -> None:
        if self.closed:
            return
        for _ in range(READ_BATCH):
            try:
                frame = os.read(self.fd, ETH_FRAME_MAX)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as e:
                # ENETDOWN and the like: the device went away on the host side.  Keep
                # watching; a device that comes back delivers frames again.
                self._log("read from %s failed: %s", self.name.decode(), e)
                break
            self.input(frame)
        self.stack.kernel.watch_fd(self.fd, select.EPOLLIN, self._readable)

    def input(self, frame: bytes) -> None:
        """One frame from the wire (with its virtio_net_hdr if the NIC has them).  Never
        raises.  A link set down takes nothing (`ip link set dev X down`)."""
        if not self.iface.flags & IFF_UP:
            self.rx_dropped += 1
            return
        try:
            if self.vnet_hdr:
                frame = self._offload(frame)
                if not frame:
                    self.rx_errors += 1
                    return
            self.iface.rx_packets += 1
            self.iface.rx_bytes += len(frame)
            self.stack.nic_input(self, frame)
        except Exception as e:  # noqa: BLE001 - a frame must never stop the Sentry
            self.rx_errors += 1
            self._log("frame dropped by an internal error on %s: %r", self.name.decode(), e)

    @staticmethod
    def _offload(frame: bytes) -> bytes:
        """The frame without its virtio_net_hdr, its checksum completed if the sender left
        it partial; b"" if the header is inconsistent."""
        if len(frame) < VNET_HDR.size:
            return b""
        flags, _gso, _hl, _gs, start, offset = VNET_HDR.unpack_from(frame)
        frame = frame[VNET_HDR.size:]
        if not flags & VNET_NEEDS_CSUM:
            return frame
        where = start + offset
        if start < ETH_HLEN or where + 2 > len(frame):
            return b""
        from pyvisor.sentry.socket.netstack.ipv4 import checksum
        # The field holds the pseudo-header sum: the sum from csum_start on completes it.
        c = checksum(frame[start:]) or 0xFFFF
        return frame[:where] + c.to_bytes(2, "big") + frame[where + 2:]

    def _log(self, fmt: str, *args: object) -> None:
        if self._logged < 16:                  # bounded: frames are the outside's choice
            self._logged += 1
            log.warning(fmt, *args)

    # -- writing ----------------------------------------------------------------------------

    def transmit(self, dst_mac: bytes, ethertype: int, payload: bytes) -> None:
        """Sends one frame; a full device queue drops it, as does a link set down."""
        if self.closed or not self.iface.flags & IFF_UP:
            self.tx_dropped += not self.closed
            return
        frame = dst_mac + self.mac + ethertype.to_bytes(2, "big") + payload
        if self.stack.packet_socks:
            from pyvisor.sentry.socket.netstack import packet
            packet.tap(self.stack, self.index, frame, True)
        self._write(frame)

    def transmit_frame(self, frame: bytes) -> None:
        """Sends a whole frame an AF_PACKET socket of the sandbox wrote."""
        if self.closed:
            return
        self._write(frame)

    def _write(self, frame: bytes) -> None:
        if self.vnet_hdr:
            frame = VNET_NONE + frame
        try:
            os.write(self.fd, frame)
        except OSError as e:
            self.tx_dropped += 1
            if e.errno not in (host_errno.ENOBUFS, host_errno.EAGAIN, host_errno.ENETDOWN,
                               host_errno.ENXIO):
                self._log("write to %s failed: %s", self.name.decode(), e)
            return
        self.iface.tx_packets += 1
        self.iface.tx_bytes += len(frame) - (VNET_HDR.size if self.vnet_hdr else 0)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stack.kernel.unwatch_fd(self.fd)
        try:
            os.close(self.fd)
        except OSError:
            pass


__all__ = ["BROADCAST", "ETH_HLEN", "ETH_P_ARP", "ETH_P_IP", "ETH_P_IPV6", "NIC", "Neighbors",
           "ipv4_multicast_mac", "ipv6_multicast_mac"]
