"""ARP for netstack's Ethernet NICs (RFC 826).  Linux: net/ipv4/arp.c.  gVisor:
pkg/tcpip/network/arp.

Only Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4) is read.  A
request for one of the NIC's addresses is answered, and its sender is
remembered (arp_process creates the entry when the request is for us); a
reply or any other ARP message only refreshes an entry that already exists,
so a stranger cannot fill the cache.  Senders that are not plain unicast
hosts (0.0.0.0 probes, multicast, broadcast, loopback) are never learnt.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from pyvisor.sentry.socket.netstack.link import BROADCAST, ETH_P_ARP

if TYPE_CHECKING:
    from pyvisor.sentry.socket.netstack.link import NIC

ARP = struct.Struct("!HHBBH6s4s6s4s")        # struct arphdr + the Ethernet/IPv4 body: 28 bytes
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
PTYPE_IP = 0x0800


def _unicast(ip: bytes) -> bool:
    return ip[0] not in (0, 127) and ip[0] < 224 and ip != b"\xff" * 4


def receive(nic: NIC, body: bytes) -> None:
    """An ARP packet from the wire (the Ethernet header removed)."""
    if len(body) < ARP.size:
        return
    htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = ARP.unpack_from(body)
    if htype != ARPHRD_ETHER or ptype != PTYPE_IP or hlen != 6 or plen != 4:
        return
    if op not in (ARPOP_REQUEST, ARPOP_REPLY):
        return
    stack = nic.stack
    for_us = stack.nic_owns4(nic, tpa)
    if _unicast(spa) and not stack.nic_owns4(nic, spa):
        nic.arp.update(spa, sha, create=for_us)
    if op == ARPOP_REQUEST and for_us and sha[0] & 1 == 0:
        reply = ARP.pack(ARPHRD_ETHER, PTYPE_IP, 6, 4, ARPOP_REPLY, nic.mac, tpa, sha, spa)
        nic.transmit(sha, ETH_P_ARP, reply)


def solicit(nic: NIC, ip: bytes) -> None:
    """Broadcasts a request for `ip`, from the NIC's address on its subnet."""
    src = nic.stack.nic_source4(nic, ip)
    req = ARP.pack(ARPHRD_ETHER, PTYPE_IP, 6, 4, ARPOP_REQUEST, nic.mac, src, b"\0" * 6, ip)
    nic.transmit(BROADCAST, ETH_P_ARP, req)
