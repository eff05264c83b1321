"""Links made inside the sandbox (`ip link add ... type veth|dummy|bridge`) and what
`ip link set` changes on any link: up/down, name, MTU, MAC address, network namespace.
Linux: drivers/net/veth.c, drivers/net/dummy.c, net/core/dev.c (dev_change_flags,
dev_change_name, dev_set_mtu, __dev_change_net_namespace).

A made link is a `VirtualNIC`: a link.NIC without a host fd.  What a veth sends
arrives at its peer (in whichever namespace's stack the peer is), from the Sentry
loop, while both ends are up; a dummy swallows what it is given; a bridge has no
ports here (enslaving is refused), so it carries nothing.  A link is created down;
bringing it up adds the prefix routes of its addresses and an IPv6 link-local
address, taking it down removes every route through it (fib_sync_down_dev,
rt6_sync_down_dev); moving it to another namespace takes it down and flushes its
addresses, as unregistering does.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import (IFF_BROADCAST, IFF_LOOPBACK, IFF_LOWER_UP, IFF_MULTICAST,
                                    IFF_RUNNING, IFF_UP)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.inet import AddrInfo, Interface
from pyvisor.sentry.socket.netstack.link import NIC

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netstack import Stack

IFF_NOARP = 0x80
IFF_PROMISC, IFF_ALLMULTI = 0x100, 0x200
# dev_change_flags: what a request sets as given; UP, PROMISC and ALLMULTI are handled apart.
SETTABLE_FLAGS = 0x4 | 0x20 | IFF_NOARP | 0x8000 | IFF_MULTICAST | 0x2000 | 0x4000
IFNAMSIZ = 16
KINDS = (b"veth", b"dummy", b"bridge")
MAX_LINKS = 1024                   # links per namespace: a bound of ours
ETH_MIN_MTU, ETH_MAX_MTU = 68, 0xFFFF


class VirtualNIC(NIC):
    """A link of kind veth, dummy or bridge.  Linux: its net_device with that driver."""

    def __init__(self, stack: Stack, index: int, name: bytes, kind: bytes, mac: bytes) -> None:
        flags = IFF_BROADCAST | (IFF_NOARP if kind == b"dummy" else IFF_MULTICAST)
        super().__init__(stack, index, name, -1, mac, 1500, False, flags)
        self.iface.kind = kind
        self.kind = kind
        self.peer: VirtualNIC | None = None     # a veth's other end

    def start(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def carrier(self) -> bool:
        if self.kind == b"veth":
            return self.peer is not None and bool(self.peer.iface.flags & IFF_UP)
        return self.kind == b"dummy"

    def _write(self, frame: bytes) -> None:
        peer = self.peer
        if not self.iface.flags & IFF_UP or peer is None or not peer.iface.flags & IFF_UP:
            self.tx_dropped += 1
            return
        self.iface.tx_packets += 1
        self.iface.tx_bytes += len(frame)
        kernel = peer.stack.kernel
        kernel.add_timer(kernel.now(), lambda: peer.input(frame))   # the peer's softirq


def random_mac() -> bytes:
    """eth_hw_addr_random: a unicast, locally administered address."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return bytes(b)


def new_ifindex(stack: Stack) -> int:
    """dev_index_reserve: the namespace's next index, never one in use."""
    used = {i.index for i in stack.interfaces()}
    n = max(getattr(stack, "last_ifindex", 1), max(used))
    while True:
        n += 1
        if n not in used:
            stack.last_ifindex = n
            return n


def by_name(stack: Stack, name: bytes) -> Interface | None:
    return next((i for i in stack.interfaces() if i.name == name), None)


def check_name(stack: Stack, name: bytes, iface: Interface | None = None) -> bytes:
    """dev_valid_name and dev_prep_valid_name: a free name, `%d` replaced by the lowest
    free number.  EINVAL for a bad name, EEXIST for a taken one."""
    if not name or len(name) >= IFNAMSIZ or name in (b".", b"..") or \
            any(c in b"/: \t\n\r\v\f" for c in name):
        raise SyscallError(Errno.EINVAL)
    if b"%" in name:
        if name.count(b"%") != 1 or b"%d" not in name:
            raise SyscallError(Errno.EINVAL)
        for n in range(32768):
            cand = name.replace(b"%d", str(n).encode())
            if len(cand) < IFNAMSIZ and by_name(stack, cand) is None:
                return cand
        raise SyscallError(Errno.ENFILE)
    other = by_name(stack, name)
    if other is not None and other is not iface:
        raise SyscallError(Errno.EEXIST)
    return name


def create(stack: Stack, kind: bytes, name: bytes, peer_stack: Stack | None,
           peer_name: bytes) -> list[VirtualNIC]:
    """veth_newlink / dummy / br_dev_newlink: the new links, the peer of a veth first
    (it is registered first, so it has the lower index)."""
    if kind not in KINDS:
        raise SyscallError(Errno.EOPNOTSUPP)            # "Unknown device type"
    if len(stack.nics) >= MAX_LINKS:
        raise SyscallError(Errno.ENOBUFS)
    pattern = name or kind + b"%d"
    name = check_name(stack, pattern)
    if kind != b"veth":
        nic = VirtualNIC(stack, new_ifindex(stack), name, kind, random_mac())
        _attach(stack, nic)
        return [nic]
    pstack = peer_stack or stack
    if len(pstack.nics) >= MAX_LINKS:
        raise SyscallError(Errno.ENOBUFS)
    pname = check_name(pstack, peer_name or b"veth%d")
    if pstack is stack and pname == name and b"%" not in pattern:
        raise SyscallError(Errno.EEXIST)
    peer = VirtualNIC(pstack, new_ifindex(pstack), pname, kind, random_mac())
    _attach(pstack, peer)
    try:
        # The device's own `%d` is resolved after its peer took a name (veth_newlink
        # registers the peer first).
        name = check_name(stack, pattern)
    except SyscallError:
        _detach(pstack, peer)
        raise
    nic = VirtualNIC(stack, new_ifindex(stack), name, kind, random_mac())
    _attach(stack, nic)
    nic.peer, peer.peer = peer, nic
    nic.iface.peer_index, peer.iface.peer_index = peer.index, nic.index
    return [peer, nic]


def _attach(stack: Stack, nic: NIC) -> None:
    stack.nics.append(nic)
    stack.nics.sort(key=lambda n: n.index)
    stack._attach_tcp()


def _detach(stack: Stack, nic: NIC) -> None:
    stack.route_table.remove_oif(nic.index)
    if nic in stack.nics:
        stack.nics.remove(nic)
    for key in [k for k in stack.mc_groups if k[0] == nic.index]:
        del stack.mc_groups[key]


def delete(stack: Stack, nic: NIC) -> list[tuple[Stack, NIC]]:
    """rtnl_delete_link: a made link and a veth's peer; EOPNOTSUPP for lo and the
    links the sandbox was given (they have no rtnl_link_ops)."""
    if not isinstance(nic, VirtualNIC):
        raise SyscallError(Errno.EOPNOTSUPP)
    gone = [(stack, nic)]
    if nic.peer is not None:
        gone.append((nic.peer.stack, nic.peer))
        nic.peer.peer = None
        nic.peer.iface.peer_index = 0
        nic.peer = None
    for s, n in gone:
        _detach(s, n)
        n.close()
    return gone


def set_up(stack: Stack, i: Interface, up: bool) -> list[Interface]:
    """__dev_open / __dev_close, and the carrier they give a veth's peer.  Returns the
    interfaces whose state changed (for notifications)."""
    from pyvisor.sentry.socket.netstack import devinet, ipv6
    if bool(i.flags & IFF_UP) == up:
        return []
    nic = stack.nic_by_index(i.index)
    changed = [i]
    if not up:
        i.flags &= ~(IFF_UP | IFF_RUNNING | IFF_LOWER_UP)
        if not i.flags & IFF_LOOPBACK:
            stack.route_table.remove_oif(i.index)
    else:
        i.flags |= IFF_UP
        for a, p in i.addrs4:
            r = devinet._prefix_route4(i, a, p, devinet.info_of(i, a, p).metric)
            if r is not None and not devinet.info_of(i, a, p).flags & devinet.IFA_F_SECONDARY:
                stack.route_table.add(r)
        for a, p in list(i.addrs6):
            r6 = devinet._prefix_route6(i, a, p, devinet.info_of(i, a, p).metric)
            stack.route_table.add(r6)
        if nic is not None and not any(ipv6.is_link_local(a) for a, _ in i.addrs6) and \
                not i.flags & IFF_LOOPBACK:
            try:
                devinet.add6(stack, i, ipv6.link_local_from_mac(nic.mac), 64,
                             AddrInfo(), 0)
            except SyscallError:
                pass
    if isinstance(nic, VirtualNIC):
        for n in (nic, nic.peer):
            if n is None:
                continue
            before = n.iface.flags
            if n.iface.flags & IFF_UP and n.carrier():
                n.iface.flags |= IFF_RUNNING | IFF_LOWER_UP
            else:
                n.iface.flags &= ~(IFF_RUNNING | IFF_LOWER_UP)
            if n is not nic and n.iface.flags != before:
                changed.append(n.iface)
    elif up:
        i.flags |= IFF_RUNNING | IFF_LOWER_UP
    return changed


def set_mtu(stack: Stack, i: Interface, mtu: int) -> bool:
    """dev_set_mtu: False when unchanged; EINVAL out of the link's range."""
    if mtu == i.mtu:
        return False
    nic = stack.nic_by_index(i.index)
    lo_min = 0 if i.flags & IFF_LOOPBACK or getattr(nic, "kind", b"") == b"dummy" \
        else ETH_MIN_MTU
    hi = ETH_MAX_MTU if isinstance(nic, VirtualNIC) and nic.kind != b"dummy" else 0x7FFFFFFF
    if mtu < lo_min or mtu > hi or mtu < 0:
        raise SyscallError(Errno.EINVAL)
    i.mtu = mtu
    if nic is not None:
        nic.mtu = max(68, min(mtu, 65535))
    return True


def set_mac(stack: Stack, i: Interface, mac: bytes) -> bool:
    """dev_set_mac_address: a unicast Ethernet address; lo has none to change."""
    if mac == i.hwaddr:
        return False
    nic = stack.nic_by_index(i.index)
    if nic is None or mac[0] & 1:
        raise SyscallError(Errno.EADDRNOTAVAIL if nic is not None else Errno.EOPNOTSUPP)
    i.hwaddr = nic.mac = mac
    return True


def move(stack: Stack, nic: NIC, target: Stack, pattern: bytes) -> None:
    """__dev_change_net_namespace: `nic` leaves `stack` for `target`, down and without
    addresses; its index stays unless taken there, its name likewise (else `pattern`)."""
    if target is stack:
        return
    name = nic.iface.name
    if by_name(target, name) is not None:
        if not pattern:
            raise SyscallError(Errno.EEXIST)
        name = check_name(target, pattern)
    set_up(stack, nic.iface, False)
    _detach(stack, nic)
    nic.iface.addrs4.clear()
    nic.iface.addrs6.clear()
    nic.iface.addr_info.clear()
    if target.iface_by_index(nic.index) is not None:
        nic.iface.index = new_ifindex(target)
        if isinstance(nic, VirtualNIC) and nic.peer is not None:
            nic.peer.iface.peer_index = nic.index
    nic.iface.name = name
    nic.stack = target
    nic.arp.entries.clear()
    nic.ndp.entries.clear()
    _attach(target, nic)
    if isinstance(nic, VirtualNIC) and nic.peer is not None:
        set_up(nic.peer.stack, nic.peer.iface, bool(nic.peer.iface.flags & IFF_UP))


__all__ = ["KINDS", "VirtualNIC", "check_name", "create", "delete", "move", "set_mac",
           "set_mtu", "set_up"]
