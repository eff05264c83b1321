"""NETLINK_ROUTE requests on links: RTM_NEWLINK (make, or change), RTM_SETLINK and
RTM_DELLINK.  Linux: net/core/rtnetlink.c (__rtnl_newlink, rtnl_setlink, do_setlink,
rtnl_dellink), drivers/net/veth.c (veth_newlink).

The links themselves and what a change does to the stack are netstack's
(vlink.py); here requests are parsed and checked in Linux's order, and each
change that happened becomes a notification: RTM_NEWLINK (RTM_DELLINK for a link
that went away or left for another namespace) to RTNLGRP_LINK of the namespace it
happened in.  Links of kinds other than veth, dummy and bridge cannot be made
(EOPNOTSUPP, Linux's answer for a kind it has no driver for); under --network=host
no link can be changed.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.inet import IFF_UP
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.netlink import (NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE,
                                           NetlinkSocket, nlattr)
from pyvisor.sentry.socket.netlink.nlattr import Kind

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket import Network
    from pyvisor.sentry.socket.inet import Interface
    from pyvisor.sentry.socket.netstack import Stack

Notice = tuple[int, int, bytes]

RTM_NEWLINK, RTM_DELLINK, RTM_SETLINK = 16, 17, 19
RTNLGRP_LINK = 1
IFINFOMSG = struct.Struct("<BxHiII")        # family, type, index, flags, change
IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 2, 3, 4, 5
IFLA_MASTER, IFLA_PROTINFO, IFLA_TXQLEN, IFLA_MAP, IFLA_OPERSTATE, IFLA_LINKMODE = \
    10, 12, 13, 14, 16, 17
IFLA_LINKINFO, IFLA_NET_NS_PID, IFLA_IFALIAS, IFLA_GROUP, IFLA_NET_NS_FD = 18, 19, 20, 27, 28
IFLA_EXT_MASK, IFLA_CARRIER, IFLA_TARGET_NETNSID, IFLA_NEW_IFINDEX = 29, 33, 46, 49
IFLA_ALT_IFNAME = 53
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_DATA = 1, 2, 5
VETH_INFO_PEER = 1
IFLA_POLICY: nlattr.Policy = {
    IFLA_ADDRESS: (Kind.BINARY, 32), IFLA_BROADCAST: (Kind.BINARY, 32),
    IFLA_IFNAME: (Kind.STRING, 15), IFLA_MTU: (Kind.U32, 0), IFLA_LINK: (Kind.U32, 0),
    IFLA_MASTER: (Kind.U32, 0), IFLA_PROTINFO: (Kind.NESTED, 0),
    IFLA_TXQLEN: (Kind.U32, 0), IFLA_MAP: (Kind.BINARY, 0),
    IFLA_OPERSTATE: (Kind.U8, 0), IFLA_LINKMODE: (Kind.U8, 0),
    IFLA_LINKINFO: (Kind.NESTED, 0), IFLA_NET_NS_PID: (Kind.U32, 0),
    IFLA_IFALIAS: (Kind.STRING, 255), IFLA_GROUP: (Kind.U32, 0),
    IFLA_NET_NS_FD: (Kind.U32, 0), IFLA_EXT_MASK: (Kind.U32, 0),
    IFLA_CARRIER: (Kind.U8, 0), IFLA_TARGET_NETNSID: (Kind.U32, 0),
    IFLA_NEW_IFINDEX: (Kind.U32, 0), IFLA_ALT_IFNAME: (Kind.STRING, 127)}
INFO_POLICY: nlattr.Policy = {IFLA_INFO_KIND: (Kind.STRING, 0),
                              IFLA_INFO_DATA: (Kind.NESTED, 0),
                              IFLA_INFO_SLAVE_DATA: (Kind.NESTED, 0)}
# What do_setlink would do that netstack has nothing for: refused, not pretended.
_UNMODELLED = (IFLA_MAP, IFLA_PROTINFO, IFLA_MASTER, IFLA_TARGET_NETNSID, IFLA_NEW_IFINDEX,
               IFLA_ALT_IFNAME, IFLA_IFALIAS, IFLA_CARRIER)


def _u32(v: bytes) -> int:
    return int(struct.unpack_from("<I", v)[0])


def _netstack(net: Any) -> Stack:
    from pyvisor.sentry.socket.netstack import Stack
    stack = getattr(net, "stack", None)
    if not isinstance(stack, Stack):
        raise SyscallError(Errno.EOPNOTSUPP)          # --network=host: the host's links
    return stack


def _target_net(t: Task | None, a: dict[int, bytes]) -> Network | None:
    """rtnl_link_get_net: the namespace IFLA_NET_NS_FD or IFLA_NET_NS_PID names (None:
    none named).  The caller must be able to administer it (CAP_NET_ADMIN there)."""
    if IFLA_NET_NS_FD in a and IFLA_NET_NS_PID in a:
        raise SyscallError(Errno.EINVAL)             # rtnl_ensure_unique_netns
    if t is None or (IFLA_NET_NS_FD not in a and IFLA_NET_NS_PID not in a):
        return None
    from pyvisor.abi.linux.capability import CAP_NET_ADMIN
    from pyvisor.abi.linux.sched import CLONE_NEWNET
    from pyvisor.sentry.kernel import namespaces as N
    from pyvisor.sentry.socket import Network, network_of
    if IFLA_NET_NS_FD in a:
        f = t.fd_table.get(struct.unpack_from("<i", a[IFLA_NET_NS_FD])[0])   # EBADF
        obj = getattr(f.inode, "ns_object", None)
        if obj is None or N.flag_of(obj) != CLONE_NEWNET:
            raise SyscallError(Errno.EINVAL)
    else:
        target = t.kernel.tasks_by_tid.get(_u32(a[IFLA_NET_NS_PID]))
        if target is None or target.exited:
            raise SyscallError(Errno.ESRCH)
        obj = N.of_task(target, b"net")
    net = getattr(obj, "stack", None)
    if not isinstance(net, Network):
        net = network_of(t.kernel)
    if not N.ns_capable(t.creds, net.userns, CAP_NET_ADMIN):
        raise SyscallError(Errno.EPERM)
    return net


def _find(stack: Stack, index: int, name: bytes | None) -> Interface | None:
    if index > 0:
        return stack.iface_by_index(index)
    if name is not None:
        return next((i for i in stack.interfaces() if i.name == name), None)
    return None


def change_link(sock: NetlinkSocket, t: Task | None, mtype: int, nlflags: int,
                body: bytes) -> list[Notice]:
    """RTM_NEWLINK, RTM_SETLINK, RTM_DELLINK.  Notifications to other namespaces (a
    link that moved) are sent here; those of the socket's own are returned."""
    if len(body) < IFINFOMSG.size:
        raise SyscallError(Errno.EINVAL)
    _fam, _type, index, iflags, change = IFINFOMSG.unpack_from(body)
    a = nlattr.parse(body[IFINFOMSG.size:], IFLA_POLICY)
    name = nlattr.string(a[IFLA_IFNAME]) if IFLA_IFNAME in a else None
    if index < 0:
        raise SyscallError(Errno.EINVAL)
    stack = _netstack(sock)
    if mtype == RTM_DELLINK:
        return _dellink(sock, stack, index, name, a)
    target = _target_net(t, a)
    dev = _find(stack, index, name)
    if mtype == RTM_SETLINK:
        if index <= 0 and name is None:
            raise SyscallError(Errno.EINVAL)
        if dev is None:
            raise SyscallError(Errno.ENODEV)
        return _setlink(sock, stack, dev, index, name, iflags, change, a, target)
    info = nlattr.parse(a[IFLA_LINKINFO], INFO_POLICY) if IFLA_LINKINFO in a else {}
    kind = nlattr.string(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else b""
    if dev is not None:
        if nlflags & NLM_F_EXCL:
            raise SyscallError(Errno.EEXIST)
        if nlflags & NLM_F_REPLACE:
            raise SyscallError(Errno.EOPNOTSUPP)
        if IFLA_INFO_DATA in info:
            raise SyscallError(Errno.EOPNOTSUPP)      # no changelink for any kind here
        return _setlink(sock, stack, dev, index, name, iflags, change, a, target)
    if not nlflags & NLM_F_CREATE:
        raise SyscallError(Errno.ENODEV)
    if IFLA_MAP in a or IFLA_PROTINFO in a:
        raise SyscallError(Errno.EOPNOTSUPP)
    return _newlink(sock, t, stack, kind, name, iflags, change, a, info, target)


def _dellink(sock: NetlinkSocket, stack: Stack, index: int, name: bytes | None,
             a: dict[int, bytes]) -> list[Notice]:
    """rtnl_dellink."""
    from pyvisor.sentry.socket.netlink.route import link_body
    from pyvisor.sentry.socket.netstack import vlink
    if index <= 0 and name is None:
        raise SyscallError(Errno.EINVAL if IFLA_GROUP not in a else Errno.EOPNOTSUPP)
    dev = _find(stack, index, name)
    if dev is None:
        raise SyscallError(Errno.ENODEV)
    nic = stack.nic_by_index(dev.index)
    if nic is None:
        raise SyscallError(Errno.EOPNOTSUPP)             # lo: no rtnl_link_ops
    out: list[Notice] = []
    for s, n in vlink.delete(stack, nic):
        msg = (RTNLGRP_LINK, RTM_DELLINK, link_body(n.iface))
        if s is stack:
            out.append(msg)
        else:
            _notify_stack(s, [msg])
    return out


def _newlink(sock: NetlinkSocket, t: Task | None, stack: Stack, kind: bytes,
             name: bytes | None, iflags: int, change: int, a: dict[int, bytes],
             info: dict[int, bytes], target: Network | None) -> list[Notice]:
    """rtnl_newlink_create: a link of `kind` (a veth with its peer, from
    VETH_INFO_PEER's ifinfomsg and attributes), then what the request sets on it."""
    from pyvisor.sentry.socket.netlink.route import link_body
    from pyvisor.sentry.socket.netstack import vlink
    if kind not in vlink.KINDS:
        raise SyscallError(Errno.EOPNOTSUPP)             # "Unknown device type"
    if any(x in a for x in _UNMODELLED) or _u32(a.get(IFLA_GROUP, bytes(4))):
        raise SyscallError(Errno.EOPNOTSUPP)
    home = _netstack(target) if target is not None else stack
    peer_name = b""
    peer_stack: Stack | None = None
    if kind == b"veth" and IFLA_INFO_DATA in info:
        data = dict(nlattr.split(info[IFLA_INFO_DATA]))
        peer = data.get(VETH_INFO_PEER)
        if peer is not None:
            if len(peer) < IFINFOMSG.size:
                raise SyscallError(Errno.EINVAL)
            pa = nlattr.parse(peer[IFINFOMSG.size:], IFLA_POLICY)
            if IFLA_IFNAME in pa:
                peer_name = nlattr.string(pa[IFLA_IFNAME])
            ptarget = _target_net(t, pa)
            if ptarget is not None:
                peer_stack = _netstack(ptarget)
    elif IFLA_INFO_DATA in info and kind != b"bridge":
        raise SyscallError(Errno.EOPNOTSUPP)
    if IFLA_MTU in a:
        mtu = _u32(a[IFLA_MTU])
        if mtu < vlink.ETH_MIN_MTU or (kind != b"dummy" and mtu > vlink.ETH_MAX_MTU):
            raise SyscallError(Errno.EINVAL)
    if IFLA_ADDRESS in a and (len(a[IFLA_ADDRESS]) < 6 or a[IFLA_ADDRESS][0] & 1):
        raise SyscallError(Errno.EINVAL if len(a[IFLA_ADDRESS]) < 6 else Errno.EADDRNOTAVAIL)
    made = vlink.create(home, kind, name or b"", peer_stack or home, peer_name)
    dev = made[-1]
    if IFLA_MTU in a:
        vlink.set_mtu(home, dev.iface, _u32(a[IFLA_MTU]))
    if IFLA_ADDRESS in a:
        dev.iface.hwaddr = dev.mac = a[IFLA_ADDRESS][:6]
    if IFLA_TXQLEN in a:
        dev.iface.txqlen = _u32(a[IFLA_TXQLEN])
    if iflags or change:
        vlink.set_up(home, dev.iface, bool(_combine(dev.iface, iflags, change) & IFF_UP))
        _set_flags(dev.iface, _combine(dev.iface, iflags, change))
    out: list[Notice] = []
    for n in made:
        msg = (RTNLGRP_LINK, RTM_NEWLINK, link_body(n.iface))
        if n.stack is stack:
            out.append(msg)
        else:
            _notify_stack(n.stack, [msg])
    return out


def _combine(i: Interface, flags: int, change: int) -> int:
    """rtnl_dev_combine_flags."""
    if change:
        return (flags & change) | (i.flags & ~change)
    return flags


def _set_flags(i: Interface, flags: int) -> bool:
    """The flags dev_change_flags sets directly (all but UP): True if any changed."""
    from pyvisor.sentry.socket.netstack import vlink
    before = i.flags
    keep = vlink.IFF_PROMISC | vlink.IFF_ALLMULTI
    i.flags = (i.flags & ~(vlink.SETTABLE_FLAGS | keep)) | \
        (flags & (vlink.SETTABLE_FLAGS | keep))
    return i.flags != before


def _setlink(sock: NetlinkSocket, stack: Stack, dev: Interface, index: int,
             name: bytes | None, iflags: int, change: int, a: dict[int, bytes],
             target: Network | None) -> list[Notice]:
    """do_setlink, in its order: namespace, MAC address, MTU, name (when the link was
    named by index), flags.  Each change that happened is one RTM_NEWLINK; a move is an
    RTM_DELLINK here and an RTM_NEWLINK in the namespace it went to."""
    from pyvisor.sentry.socket.netlink.route import link_body
    from pyvisor.sentry.socket.netstack import vlink
    if any(x in a for x in _UNMODELLED) or _u32(a.get(IFLA_GROUP, bytes(4))):
        raise SyscallError(Errno.EOPNOTSUPP)
    if IFLA_ADDRESS in a and len(a[IFLA_ADDRESS]) < len(dev.hwaddr):
        raise SyscallError(Errno.EINVAL)                 # validate_linkmsg
    out: list[Notice] = []
    here = stack
    if target is not None:
        dest = _netstack(target)
        nic = stack.nic_by_index(dev.index)
        if nic is None:
            raise SyscallError(Errno.EINVAL)             # lo is NETIF_F_NETNS_LOCAL
        if dest is not stack:
            gone = link_body(dev)
            vlink.move(stack, nic, dest, name if index > 0 and name else b"")
            out.append((RTNLGRP_LINK, RTM_DELLINK, gone))
            here = dest
    events: list[bytes] = []
    if IFLA_ADDRESS in a and vlink.set_mac(here, dev, a[IFLA_ADDRESS][:len(dev.hwaddr)]):
        events.append(link_body(dev))
    if IFLA_MTU in a and vlink.set_mtu(here, dev, _u32(a[IFLA_MTU])):
        events.append(link_body(dev))
    if index > 0 and name is not None and name != dev.name:
        dev.name = vlink.check_name(here, name, dev)
        events.append(link_body(dev))
    if IFLA_TXQLEN in a:
        dev.txqlen = _u32(a[IFLA_TXQLEN])
    if iflags or change:
        flags = _combine(dev, iflags, change)
        changed = _set_flags(dev, flags)
        ups = vlink.set_up(here, dev, bool(flags & IFF_UP))
        if changed and dev not in ups:
            ups.insert(0, dev)
        events += [link_body(i) for i in ups]
    notices = [(RTNLGRP_LINK, RTM_NEWLINK, b) for b in events]
    if here is stack:
        return out + notices
    if target is not None:
        _notify_net(target, [(RTNLGRP_LINK, RTM_NEWLINK, link_body(dev))] + notices)
    return out


def _notify_net(net: Network, notices: list[Notice]) -> None:
    from pyvisor.sentry.socket.netlink import NETLINK_ROUTE, nlmsg, notify
    for group, mtype, body in notices:
        notify(net, NETLINK_ROUTE, group, [nlmsg(mtype, 0, 0, 0, body)])


def _notify_stack(stack: Stack, notices: list[Notice]) -> None:
    """Notifications for the namespace whose netstack is `stack`."""
    net = getattr(stack, "network", None)
    if net is not None:
        _notify_net(net, notices)


__all__ = ["change_link"]
