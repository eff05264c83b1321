"""Packet sockets (AF_PACKET) of netstack.  Linux: net/packet/af_packet.c.
gVisor: pkg/sentry/socket/netstack (packet endpoints), pkg/tcpip/transport/packet.

socket(AF_PACKET, SOCK_RAW | SOCK_DGRAM, htons(ETH_P_*)) needs CAP_NET_RAW.
A packet socket sees the frames of the sandbox's own interfaces, never the
host's: lo, and the NICs the stack took over.

  receiving  `tap(stack, ifindex, frame, outgoing)` gives each packet socket a
             copy of a frame that crosses an interface (dev_queue_xmit_nit for
             `outgoing`, __netif_receive_skb otherwise).  A socket bound to
             ETH_P_ALL sees both directions (an outgoing copy is PACKET_OUTGOING,
             never given back to the socket that sent it); one bound to another
             protocol sees only received frames of that ethertype; protocol 0
             sees nothing.  A socket bound to an interface sees only its frames.
             SOCK_RAW reads the whole Ethernet frame, SOCK_DGRAM the frame
             without its 14-byte header; both learn a struct sockaddr_ll.
             What crosses lo is synthesised where the stack short-circuits it:
             a UDP datagram between two sockets of the sandbox is given a real
             IP and UDP header only when a packet socket exists (`lo_udp`; the
             UDP checksum left partial, the pseudo-header's sum, as Linux's lo
             leaves it to a device that never completes it), and so is the
             port unreachable a closed port draws; the ICMP and raw traffic of
             the IP layer's loop (Stack._loop) likewise.  TCP between sockets of the sandbox
             is a method call and is not seen.
  sending    a frame (SOCK_RAW: with its Ethernet header; SOCK_DGRAM: the
             header is built from sll_protocol and sll_addr) goes to the
             interface of sll_ifindex, or of bind(2) when no address is given
             (ENXIO without either).  On lo it comes back as received: the
             packet sockets see it, and an IPv4/IPv6 datagram in it goes up
             the stack (checked as ip_rcv checks it: version, header length,
             header checksum, total length) from the Sentry loop.  On a NIC it
             is written to the NIC's fd as is.

Socket filters (SO_ATTACH_FILTER, sockfilter.py) run on each frame a socket
would queue.  PACKET_RX_RING (TPACKET_V1 and V2) puts frames in a ring of
frames in the memory file that the application maps (mmap of the socket):
each frame is written whole, its tp_status set to TP_STATUS_USER last, and a
frame the application has not handed back (TP_STATUS_KERNEL) is not
overwritten: the packet is dropped and counted (PACKET_STATISTICS).  The
ring cannot change once mapped (EBUSY), for the socket's life: munmap is
not tracked.  No TPACKET_V3, no TX_RING, no fanout; SOL_PACKET options other
than those named here give ENOPROTOOPT.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import collections
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import ARPHRD_LOOPBACK, IPPROTO_UDP
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.socket import sockfilter
from pyvisor.sentry.socket.common import (AF_PACKET, MSG_DONTWAIT, MSG_ERRQUEUE, MSG_PEEK,
                                          MSG_TRUNC, SIOCINQ, SIOCOUTQ, SO_ACCEPTCONN,
                                          SO_ERROR, SOCK_DGRAM, SOCK_RAW, SOL_SOCKET, Control,
                                          Received, Socket, deadline_of, wait)
from pyvisor.sentry.waitqueue import EVENT_IN, EVENT_OUT, WaitQueue
from pyvisor.sentry.socket import net_capable

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.mm.memfile import MappedRange
    from pyvisor.sentry.socket.netstack import Stack
    from pyvisor.sentry.vfs.file import FileDescription

# From <linux/if_ether.h>, <linux/if_packet.h>.
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_HLEN = 14
ETH_ALEN = 6
ETH_DATA_LEN = 1500
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING = range(5)
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_AUXDATA = 8
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_HDRLEN = 11
PACKET_RESERVE = 12
TPACKET_V1, TPACKET_V2 = 0, 1
TP_STATUS_KERNEL, TP_STATUS_USER, TP_STATUS_LOSING = 0, 1, 4
TPACKET_ALIGNMENT = 16
TPACKET_REQ = struct.Struct("<IIII")      # block_size, block_nr, frame_size, frame_nr
TPACKET_HDR = struct.Struct("<QIIHHII")   # V1: status, len, snaplen, mac, net, sec, usec
TPACKET2_HDR = struct.Struct("<IIIHHIIHH4x")   # V2: ... sec, nsec, vlan_tci, vlan_tpid
RING_MAX = 256 << 20                      # bytes a ring may take from the memory file
ARPHRD_ETHER = 1
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
CAP_NET_RAW = 13
# struct sockaddr_ll: family, protocol (be16), ifindex, hatype, pkttype, halen, addr[8].
SOCKADDR_LL = struct.Struct("<HHiHBB8s")
SLL_ADDR_OFF = 12
_I32 = struct.Struct("<i")


def htons(v: int) -> int:
    return ((v & 0xFF) << 8) | ((v >> 8) & 0xFF)


@dataclass(slots=True)
class Frame:
    """A queued frame.  Linux: an sk_buff with its struct sockaddr_ll in skb->cb."""

    data: bytes              # the whole Ethernet frame
    ifindex: int
    hatype: int
    pkttype: int
    stamp_ns: int


class PacketSocket(Socket):
    """An AF_PACKET socket.  Linux: struct packet_sock."""

    family = AF_PACKET

    def __init__(self, stack: Stack, stype: int, protocol: int) -> None:
        super().__init__(stype, 0)          # packet_create leaves sk_protocol 0 (SO_PROTOCOL)
        self.stack = stack
        self.wq = WaitQueue()
        self.num = protocol & 0xFFFF        # bound protocol, network byte order (po->num)
        self.ifindex = 0                    # bound interface (0: all)
        self.rcvq: collections.deque[Frame] = collections.deque()
        self.rcv_mem = 0
        self.drops = 0
        self.released = False
        self.sk_filter: sockfilter.Program | None = None     # SO_ATTACH_FILTER
        self.pkt_opts: dict[int, int] = {PACKET_VERSION: 0, PACKET_AUXDATA: 0,
                                         PACKET_RESERVE: 0}
        self.ring: Ring | None = None       # PACKET_RX_RING
        self.stat_packets = self.stat_drops = 0     # PACKET_STATISTICS, since last read
        stack.packet_socks.append(self)

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.wq

    def release(self, fd: FileDescription) -> None:
        self.released = True
        try:
            self.stack.packet_socks.remove(self)
        except ValueError:
            pass
        self.stack.unbuffer(self.rcv_mem)
        self.rcvq.clear()
        self.rcv_mem = 0
        if self.ring is not None and not self.ring.mapped:
            self.ring.free()
        # A mapped ring stays in the memory file: the mapping may outlive the socket.
        self.ring = None

    def mappable(self) -> Ring | None:
        """packet_mmap: the ring, if there is one."""
        if self.ring is None:
            return None
        self.ring.mapped = True
        return self.ring

    def readiness(self, fd: FileDescription, mask: int) -> int:
        ev = EVENT_OUT
        if self.rcvq or (self.ring is not None and self.ring.user_ready()):
            ev |= EVENT_IN
        return ev & mask

    # -- names -------------------------------------------------------------------------------

    def _device(self, index: int) -> tuple[int, bytes]:
        """(hatype, hardware address) of interface `index`; ENODEV if there is none."""
        iface = self.stack.iface_by_index(index)
        if iface is None:
            raise SyscallError(Errno.ENODEV)
        return iface.hwtype, iface.hwaddr

    def bind(self, t: Task, addr: bytes) -> None:
        """packet_bind: a struct sockaddr_ll; sll_protocol 0 keeps the bound protocol."""
        if len(addr) < SOCKADDR_LL.size:
            raise SyscallError(Errno.EINVAL)
        family, proto, ifindex = struct.unpack_from("<HHi", addr)
        if family != AF_PACKET:
            raise SyscallError(Errno.EINVAL)
        if ifindex:
            self._device(ifindex)
        self.ifindex = ifindex
        if proto:
            self.num = proto

    def getsockname(self, t: Task) -> bytes:
        """packet_getname: only the bytes of sll_addr the device uses count."""
        hatype, hwaddr, halen = 0, b"", 0
        if self.ifindex:
            iface = self.stack.iface_by_index(self.ifindex)
            if iface is not None:
                hatype, hwaddr, halen = iface.hwtype, iface.hwaddr, len(iface.hwaddr)
        raw = SOCKADDR_LL.pack(AF_PACKET, self.num, self.ifindex, hatype, 0, halen,
                               hwaddr.ljust(8, b"\0"))
        return raw[:SLL_ADDR_OFF + halen]

    def getpeername(self, t: Task) -> bytes:
        raise SyscallError(Errno.EOPNOTSUPP)

    async def connect(self, t: Task, f: FileDescription, addr: bytes) -> None:
        raise SyscallError(Errno.EOPNOTSUPP)

    def shutdown(self, t: Task, how: int) -> None:
        raise SyscallError(Errno.EOPNOTSUPP)

    # -- receiving ---------------------------------------------------------------------------

    def wants(self, ifindex: int, ethertype: int, outgoing: bool) -> bool:
        """Whether this socket's protocol hook sees the frame (ptype_all / ptype_base)."""
        if self.ifindex and self.ifindex != ifindex:
            return False
        if self.num == htons(ETH_P_ALL):
            return True
        return not outgoing and self.num != 0 and self.num == htons(ethertype)

    def enqueue(self, fr: Frame) -> None:
        """packet_rcv: dropped when the queue is over SO_RCVBUF or the stack's budget."""
        if self.released:
            return
        self.stat_packets += 1
        if self.sk_filter is not None:
            # run_filter: from the Ethernet header (SOCK_RAW) or the network header; the
            # result is the snap length.
            off = 0 if self.stype == SOCK_RAW else ETH_HLEN
            p = sockfilter.Packet(fr.data[off:], fr.data[ETH_HLEN:], fr.data,
                                  int.from_bytes(fr.data[12:14], "big"), fr.pkttype,
                                  fr.ifindex)
            keep = sockfilter.run(self.sk_filter, p)
            if keep == 0:
                self.drops += 1
                return
            if keep < len(p.data):
                fr = Frame(fr.data[:off + keep], fr.ifindex, fr.hatype, fr.pkttype,
                           fr.stamp_ns)
        if self.ring is not None:
            if not self.ring.put(self, fr):
                self.stat_drops += 1
            self.wq.notify(EVENT_IN)
            return
        cost = len(fr.data) + 512
        if self.rcv_mem > self.rcvbuf or self.stack.budget_left() < cost:
            self.drops += 1
            self.stat_drops += 1
            return
        self.rcvq.append(fr)
        self.rcv_mem += cost
        self.stack.buffered += cost
        self.wq.notify(EVENT_IN)

    def _try_recv(self, n: int, flags: int, want_addr: bool) -> Received:
        if flags & MSG_ERRQUEUE or not self.rcvq:
            raise WouldBlock()
        fr = self.rcvq[0]
        if not flags & MSG_PEEK:
            self.rcvq.popleft()
            cost = len(fr.data) + 512
            self.rcv_mem -= cost
            self.stack.unbuffer(cost)
        body = fr.data if self.stype == SOCK_RAW else fr.data[ETH_HLEN:]
        data = body[:n]
        mflags = MSG_TRUNC if len(body) > n else 0
        length = len(body) if flags & MSG_TRUNC else len(data)
        addr = None
        if want_addr:
            proto = int.from_bytes(fr.data[12:14], "little")    # already network order
            addr = SOCKADDR_LL.pack(AF_PACKET, proto, fr.ifindex, fr.hatype, fr.pkttype,
                                    ETH_ALEN, fr.data[6:12] + b"\0\0")
        return Received(data, length, mflags, addr)

    async def recvmsg(self, t: Task, f: FileDescription, n: int, flags: int,
                      want_addr: bool) -> Received:
        nonblock = f.nonblocking or bool(flags & MSG_DONTWAIT) or self.rcvtimeo == 0 \
            or bool(flags & MSG_ERRQUEUE)
        deadline = deadline_of(t, self.rcvtimeo)
        while True:
            try:
                return self._try_recv(n, flags, want_addr)
            except WouldBlock:
                if nonblock:
                    raise
            await wait(t, self.wq, EVENT_IN, deadline, self.rcvtimeo is not None)

    # -- sending -----------------------------------------------------------------------------

    async def sendmsg(self, t: Task, f: FileDescription, data: bytes, flags: int,
                      addr: bytes | None, control: Control) -> int:
        """packet_snd."""
        if addr is not None:
            if len(addr) < SLL_ADDR_OFF:
                raise SyscallError(Errno.EINVAL)
            family, proto, ifindex, _hatype, _pkttype, halen = \
                struct.unpack_from("<HHiHBB", addr)
            if family != AF_PACKET:
                raise SyscallError(Errno.EINVAL)
            if len(addr) < SLL_ADDR_OFF + halen:
                raise SyscallError(Errno.EINVAL)
            dst_mac = addr[SLL_ADDR_OFF:SLL_ADDR_OFF + min(halen, ETH_ALEN)].ljust(6, b"\0")
        else:
            proto, ifindex, dst_mac = self.num, self.ifindex, b"\0" * 6
        iface = self.stack.iface_by_index(ifindex) if ifindex else None
        if iface is None:
            raise SyscallError(Errno.ENXIO)
        if self.stype == SOCK_RAW:
            if len(data) < ETH_HLEN:
                raise SyscallError(Errno.EINVAL)     # dev_validate_header
            frame = data
            body = len(data) - ETH_HLEN
        else:
            frame = dst_mac + iface.hwaddr + (proto & 0xFFFF).to_bytes(2, "little") + data
            body = len(data)
        if body > iface.mtu:
            raise SyscallError(Errno.EMSGSIZE)
        transmit(self.stack, ifindex, frame, sender=self)
        return len(data)

    # -- options -----------------------------------------------------------------------------

    def getsockopt(self, t: Task, level: int, name: int) -> bytes:
        if level == SOL_SOCKET:
            if name in (SO_ERROR, SO_ACCEPTCONN):
                return _I32.pack(0)
            if name == SO_DETACH_FILTER:
                raise SyscallError(Errno.ENOPROTOOPT)
            return super().getsockopt(t, level, name)
        if level == SOL_PACKET:
            if name == PACKET_STATISTICS:
                # packet_getsockopt: tp_packets counts the drops too; both restart.
                out = struct.pack("<II", self.stat_packets, self.stat_drops)
                self.stat_packets = self.stat_drops = 0
                return out
            if name in self.pkt_opts:
                return _I32.pack(self.pkt_opts[name])
            if name == PACKET_HDRLEN:
                raise SyscallError(Errno.EINVAL)
            raise SyscallError(Errno.ENOPROTOOPT)
        raise SyscallError(Errno.ENOPROTOOPT)

    def setsockopt(self, t: Task, level: int, name: int, optval: bytes) -> None:
        if level == SOL_SOCKET:
            if name == SO_DETACH_FILTER:
                if self.sk_filter is None:
                    raise SyscallError(Errno.ENOENT)
                self.sk_filter = None
                return
            if name == SO_ATTACH_FILTER:
                self.sk_filter = sockfilter.attach(t, optval)
                return
            super().setsockopt(t, level, name, optval)
            return
        if level == SOL_PACKET:
            if name in (PACKET_ADD_MEMBERSHIP, PACKET_DROP_MEMBERSHIP):
                if len(optval) < 16:
                    raise SyscallError(Errno.EINVAL)
                ifindex = _I32.unpack_from(optval)[0]
                self._device(ifindex)
                return                   # every frame of lo and of a NIC is seen already
            if name == PACKET_RX_RING:
                self._set_ring(optval)
                return
            if name in self.pkt_opts:
                if len(optval) < 4:
                    raise SyscallError(Errno.EINVAL)
                v = _I32.unpack_from(optval)[0]
                if name in (PACKET_VERSION, PACKET_RESERVE) and self.ring is not None:
                    raise SyscallError(Errno.EBUSY)
                if name == PACKET_VERSION and v not in (0, 1, 2):
                    raise SyscallError(Errno.EINVAL)
                self.pkt_opts[name] = v
                return
            raise SyscallError(Errno.ENOPROTOOPT)
        raise SyscallError(Errno.ENOPROTOOPT)

    def _set_ring(self, optval: bytes) -> None:
        """packet_set_ring for the receive ring (TPACKET_V1/V2)."""
        if len(optval) < TPACKET_REQ.size:
            raise SyscallError(Errno.EINVAL)
        if self.pkt_opts[PACKET_VERSION] not in (TPACKET_V1, TPACKET_V2):
            raise SyscallError(Errno.EINVAL)
        block_size, block_nr, frame_size, frame_nr = TPACKET_REQ.unpack_from(optval)
        if self.ring is not None and self.ring.mapped:
            raise SyscallError(Errno.EBUSY)
        if block_nr == 0:
            if frame_nr:
                raise SyscallError(Errno.EINVAL)
            if self.ring is not None:
                self.ring.free()
            self.ring = None
            return
        hdrlen = _align(TPACKET_HDR.size if self.pkt_opts[PACKET_VERSION] == TPACKET_V1
                        else TPACKET2_HDR.size) + SOCKADDR_LL.size
        if block_size == 0 or block_size >= 1 << 31 or block_size % 4096:
            raise SyscallError(Errno.EINVAL)
        if frame_size < hdrlen + self.pkt_opts[PACKET_RESERVE] \
                or frame_size % TPACKET_ALIGNMENT:
            raise SyscallError(Errno.EINVAL)
        per_block = block_size // frame_size
        if per_block == 0 or per_block * block_nr != frame_nr:
            raise SyscallError(Errno.EINVAL)
        if block_size * block_nr > RING_MAX:
            raise SyscallError(Errno.ENOMEM)
        if self.ring is not None:
            self.ring.free()
        self.ring = Ring(self.stack.kernel.memfile, block_size, block_nr, frame_size,
                         per_block, self.pkt_opts[PACKET_VERSION], hdrlen)

    def proto_ioctl(self, t: Task, cmd: int, arg: int) -> int:
        if cmd == SIOCINQ:
            fr = self.rcvq[0] if self.rcvq else None
            n = 0 if fr is None else len(fr.data) - (0 if self.stype == SOCK_RAW else ETH_HLEN)
            t.copy_out(arg, _I32.pack(n))
            return 0
        if cmd == SIOCOUTQ:
            t.copy_out(arg, _I32.pack(0))
            return 0
        raise SyscallError(Errno.ENOTTY)


def _align(n: int) -> int:
    return (n + TPACKET_ALIGNMENT - 1) & ~(TPACKET_ALIGNMENT - 1)


class Ring:
    """A PACKET_RX_RING: frames in a memory-file extent the application maps.
    Linux: struct packet_ring_buffer.  The application owns a frame whose tp_status has
    TP_STATUS_USER; it hands it back by writing TP_STATUS_KERNEL, which is read from the
    shared memory before each frame is filled."""

    def __init__(self, memfile: Any, block_size: int, block_nr: int, frame_size: int,
                 per_block: int, version: int, hdrlen: int) -> None:
        self.memfile = memfile
        self.size = block_size * block_nr
        self.off, self.cap = memfile.allocate(self.size)
        self.block_size, self.frame_size, self.per_block = block_size, frame_size, per_block
        self.frame_nr = per_block * block_nr
        self.version = version
        self.hdrlen = hdrlen
        self.head = 0
        self.mapped = False

    def free(self) -> None:
        self.memfile.free(self.off, self.cap)

    def _frame(self, i: int) -> int:
        return self.off + (i // self.per_block) * self.block_size + \
            (i % self.per_block) * self.frame_size

    def _status(self, i: int) -> int:
        at = self._frame(i)
        return int.from_bytes(self.memfile.map[at:at + 4], "little")

    def user_ready(self) -> bool:
        """packet_poll: the frame before the head is the application's."""
        return self._status((self.head - 1) % self.frame_nr) != TP_STATUS_KERNEL

    def put(self, sock: PacketSocket, fr: Frame) -> bool:
        """tpacket_rcv: False (a drop) when the head frame is still the application's."""
        if self._status(self.head) != TP_STATUS_KERNEL:
            return False
        reserve = sock.pkt_opts[PACKET_RESERVE]
        if sock.stype == SOCK_DGRAM:
            data = fr.data[ETH_HLEN:]
            macoff = netoff = _align(self.hdrlen) + 16 + reserve
        else:
            data = fr.data
            netoff = _align(self.hdrlen + 16) + reserve
            macoff = netoff - ETH_HLEN
        snap = max(0, min(len(data), self.frame_size - macoff))
        at = self._frame(self.head)
        m = self.memfile.map
        m[at + macoff:at + macoff + snap] = data[:snap]
        proto = int.from_bytes(fr.data[12:14], "little")
        sll = SOCKADDR_LL.pack(AF_PACKET, proto, fr.ifindex, fr.hatype, fr.pkttype,
                               ETH_ALEN, fr.data[6:12] + b"\0\0")
        hsize = TPACKET_HDR.size if self.version == TPACKET_V1 else TPACKET2_HDR.size
        m[at + _align(hsize):at + _align(hsize) + len(sll)] = sll
        sec, ns = divmod(fr.stamp_ns, 10**9)
        status = TP_STATUS_USER | (TP_STATUS_LOSING if sock.stat_drops else 0)
        if self.version == TPACKET_V1:
            hdr = TPACKET_HDR.pack(0, len(data), snap, macoff, netoff, sec, ns // 1000)
            m[at + 8:at + TPACKET_HDR.size] = hdr[8:]
            m[at:at + 8] = status.to_bytes(8, "little")    # last: the frame is ready
        else:
            hdr = TPACKET2_HDR.pack(0, len(data), snap, macoff, netoff, sec, ns, 0, 0)
            m[at + 4:at + TPACKET2_HDR.size] = hdr[4:]
            m[at:at + 4] = status.to_bytes(4, "little")
        self.head = (self.head + 1) % self.frame_nr
        return True

    # -- Mappable ----------------------------------------------------------------------------

    def translate(self, offset: int, length: int, writable_shared: bool) -> list[MappedRange]:
        from pyvisor.sentry.mm.memfile import MappedRange
        if offset < 0 or offset + length > self.cap:
            raise SyscallError(Errno.EINVAL)
        return [MappedRange(offset, self.off + offset, length)]


# -- the stack's side ---------------------------------------------------------------------------


def tap(stack: Stack, ifindex: int, frame: bytes, outgoing: bool, pkttype: int = PACKET_HOST,
        sender: PacketSocket | None = None) -> None:
    """A frame crossed interface `ifindex`: a copy to each packet socket that takes it."""
    if len(frame) < ETH_HLEN:
        return
    iface = stack.iface_by_index(ifindex)
    hatype = iface.hwtype if iface is not None else ARPHRD_ETHER
    ethertype = int.from_bytes(frame[12:14], "big")
    now = time.time_ns()
    for s in list(stack.packet_socks):
        if outgoing and s is sender:
            continue                                  # skb_loop_sk
        if s.wants(ifindex, ethertype, outgoing):
            s.enqueue(Frame(frame, ifindex, hatype,
                            PACKET_OUTGOING if outgoing else pkttype, now))


def transmit(stack: Stack, ifindex: int, frame: bytes, sender: PacketSocket | None) -> None:
    """A frame a packet socket wrote to interface `ifindex`."""
    if ifindex != stack.lo.index:
        nic = stack.nic_by_index(ifindex)
        if nic is not None:
            tap(stack, ifindex, frame, True, sender=sender)
            nic.transmit_frame(frame)
        return
    stack.lo.count(len(frame))
    tap(stack, ifindex, frame, True, sender=sender)
    tap(stack, ifindex, frame, False)
    ethertype = int.from_bytes(frame[12:14], "big")
    body = frame[ETH_HLEN:]
    if ethertype == ETH_P_IP:
        _lo_ip4(stack, body)
    elif ethertype == ETH_P_IPV6:
        _lo_ip6(stack, body)


def _lo_ip4(stack: Stack, pkt: bytes) -> None:
    """ip_rcv's checks on a datagram written to lo, then up the stack from the loop."""
    from pyvisor.sentry.socket.netstack.ipv4 import checksum
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        stack.ip_in_hdr_errors += 1
        return
    ihl = (pkt[0] & 0xF) * 4
    total = int.from_bytes(pkt[2:4], "big")
    if ihl < 20 or total < ihl or total > len(pkt) or checksum(pkt[:ihl]) != 0:
        stack.ip_in_hdr_errors += 1
        return
    if int.from_bytes(pkt[6:8], "big") & 0x3FFF:
        stack.ip_in_hdr_errors += 1          # fragments of frames written to lo: not reassembled
        return
    src, dst = pkt[12:16], pkt[16:20]
    if not stack.is_local(dst) and dst != b"\xff\xff\xff\xff":
        stack.ip_in_addr_errors += 1
        return
    stack.loop_packet(pkt[9], src, dst, pkt[ihl:total], pkt[:ihl], tap=False)


def _lo_ip6(stack: Stack, pkt: bytes) -> None:
    if len(pkt) < 40 or pkt[0] >> 4 != 6:
        stack.ip6_in_hdr_errors += 1
        return
    plen = int.from_bytes(pkt[4:6], "big")
    if 40 + plen > len(pkt):
        stack.ip6_in_hdr_errors += 1
        return
    src, dst = pkt[8:24], pkt[24:40]
    if not stack.is_local(dst):
        stack.ip6_in_addr_errors += 1
        return
    stack.loop_packet(pkt[6], src, dst, pkt[40:40 + plen], pkt[:40], tap=False)


def lo_ip(stack: Stack, header: bytes, payload: bytes) -> None:
    """An IP datagram crossing lo inside the stack: both taps (sent, then received)."""
    etype = ETH_P_IP if header[0] >> 4 == 4 else ETH_P_IPV6
    frame = b"\0" * 12 + etype.to_bytes(2, "big") + header + payload
    tap(stack, stack.lo.index, frame, True)
    tap(stack, stack.lo.index, frame, False)


def lo_udp(stack: Stack, src: bytes, sport: int, dst: bytes, dport: int, data: bytes,
           ttl: int, tos: int, unreachable: bool = False) -> None:
    """A UDP datagram the stack short-circuits over lo, as the packet sockets and the raw
    sockets (IPPROTO_UDP) would have seen it: with its IP and UDP headers.
    `unreachable`: nobody holds the port, so the port unreachable that answers it crosses
    lo too (the stack's sender learns of it directly)."""
    from pyvisor.sentry.socket.netstack import _synthetic_header
    from pyvisor.sentry.socket.netstack.ipv4 import checksum, pseudo_header
    ulen = 8 + len(data)
    seg = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + ulen.to_bytes(2, "big") \
        + b"\0\0" + data
    # CHECKSUM_PARTIAL, as lo carries it: only the pseudo-header's sum (udp4_hwcsum).
    c = ~checksum(pseudo_header(src, dst, IPPROTO_UDP, ulen)) & 0xFFFF
    seg = seg[:6] + c.to_bytes(2, "big") + seg[8:]
    header = _synthetic_header(IPPROTO_UDP, src, dst, ulen, ttl, tos)
    if len(src) == 4:
        ident = stack.next_ip_id().to_bytes(2, "big")
        from pyvisor.sentry.socket.netstack.ipv4 import checksum as csum
        h = header[:4] + ident + header[6:10] + b"\0\0" + header[12:]
        header = h[:10] + csum(h).to_bytes(2, "big") + h[12:]
    if stack.packet_socks:
        lo_ip(stack, header, seg)
    if stack.raw_socks:
        from pyvisor.sentry.socket.netstack import raw
        raw.deliver(stack, IPPROTO_UDP, src, dst, header, seg)
    if unreachable:
        _lo_port_unreachable(stack, src, dst, header + seg)


def _lo_port_unreachable(stack: Stack, src: bytes, dst: bytes, quoted: bytes) -> None:
    """icmp_send / icmp6_send of a port unreachable from `dst` back to `src`, quoting the
    datagram (up to 576 / 1280 bytes in all), with the TOS of an ICMP error (0xc0)."""
    from pyvisor.sentry.socket.netstack import _synthetic_header, raw
    from pyvisor.sentry.socket.netstack.ipv4 import checksum, pseudo_header
    v4 = len(src) == 4
    if v4:
        body = bytes([3, 3, 0, 0, 0, 0, 0, 0]) + quoted[:576 - 28]
        msg = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
        h = _synthetic_header(1, dst, src, len(msg), 64, 0xC0)
        h = h[:4] + stack.next_ip_id().to_bytes(2, "big") + b"\0\0" + h[8:10] + b"\0\0" \
            + h[12:]
        header = h[:10] + checksum(h).to_bytes(2, "big") + h[12:]
        proto = 1
    else:
        body = bytes([1, 4, 0, 0, 0, 0, 0, 0]) + quoted[:1280 - 48]
        c = checksum(pseudo_header(dst, src, 58, len(body)) + body)
        msg = body[:2] + c.to_bytes(2, "big") + body[4:]
        header = _synthetic_header(58, dst, src, len(msg), 64, 0)
        proto = 58
    if stack.packet_socks:
        lo_ip(stack, header, msg)
    if stack.raw_socks:
        raw.deliver(stack, proto, dst, src, header, msg)


class PacketFamily:
    """AF_PACKET over a netstack Stack (the socket.Family seam)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def socket(self, t: Task, family: int, stype: int, protocol: int, flags: int
               ) -> FileDescription:
        from pyvisor.sentry.socket.common import new_socket_file
        from pyvisor.sentry.socket.netstack import SOCKET_COST
        s = new_packet_socket(self.stack, t, stype, protocol)
        if not self.stack.charge(s, SOCKET_COST):
            s.release(None)   # type: ignore[arg-type]
            raise SyscallError(Errno.ENOBUFS)
        return new_socket_file(s, flags, t.creds.fsuid, t.creds.fsgid)

    def socketpair(self, t: Task, family: int, stype: int, protocol: int, flags: int
                   ) -> tuple[FileDescription, FileDescription]:
        raise SyscallError(Errno.EOPNOTSUPP)


def new_packet_socket(stack: Stack, t: Task, stype: int, protocol: int) -> PacketSocket:
    """packet_create: CAP_NET_RAW, SOCK_RAW or SOCK_DGRAM."""
    if not net_capable(t, CAP_NET_RAW):
        raise SyscallError(Errno.EPERM)
    if stype not in (SOCK_RAW, SOCK_DGRAM):
        raise SyscallError(Errno.ESOCKTNOSUPPORT)
    return PacketSocket(stack, stype, protocol & 0xFFFF)


__all__ = ["PacketFamily", "PacketSocket", "Ring", "lo_ip", "lo_udp", "new_packet_socket",
           "tap", "transmit"]
