"""Taking over the container's network namespace, as runsc does.  runsc:
runsc/sandbox/network.go (createInterfacesAndRoutesFromNS, createSocket,
removeAddress).

When the OCI spec's linux.namespaces has a `network` entry with a path
(podman, Docker and CNI make these), the Sentry under --network=sandbox
joins that namespace (`join`, in place of a fresh empty one) and, once
boot() has forked the Gofers and the master stub but before confinement,
`take_interfaces` does for every interface that is up, not loopback, an
Ethernet device and has addresses:

  1. reads its MAC, MTU, addresses and the routes of the main table through
     it (default routes included) over rtnetlink;
  2. opens an AF_PACKET/SOCK_RAW socket for ETH_P_ALL bound to it
     (non-blocking, close-on-exec, PACKET_IGNORE_OUTGOING so the host's own
     transmissions are not read back, PACKET_VNET_HDR for checksum offload
     (link.py), 4 MiB buffers as runsc sets);
  3. removes the addresses from the device (RTM_DELADDR; their routes go
     with them) and turns IPv6 off on it (disable_ipv6), so the host kernel
     of that namespace no longer answers ARP, NDP, ping or anything else for
     them: only the Sentry's stack does, through the packet socket.

The namespace must not be the host's own: init's network namespace and the
one pyvisor itself was started in are refused (runsc refuses the root one,
isRootNS), so a bundle can never make the Sentry strip the host's
interfaces.  The device itself stays up on the
host side (the veth must carry frames).  Loopback is the Sentry's own.
Runs unconfined, as root, in the Sentry process before seccomp.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
from dataclasses import dataclass, field

from pyvisor.runtime.errors import BootError
from pyvisor.sentry.socket.inet import Route

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

# From <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>.
NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 1, 2, 4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_GETLINK, RTM_NEWLINK = 18, 16
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU = 1, 3, 4
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
IFF_UP, IFF_LOOPBACK = 0x1, 0x8
ARPHRD_ETHER = 1

NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBI")
RTMSG = struct.Struct("=BBBBBBBBI")
RTATTR = struct.Struct("=HH")

# From <linux/if_ether.h>, <linux/if_packet.h>.
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
SO_RCVBUFFORCE, SO_SNDBUFFORCE = 33, 32
PACKET_BUFFER = 4 << 20


@dataclass
class TakenInterface:
    """An interface the Sentry took over: its packet socket and what it had."""

    index: int
    name: str
    mac: bytes
    mtu: int
    fd: int                                  # AF_PACKET, non-blocking; the Sentry's now
    vnet_hdr: bool = False                   # PACKET_VNET_HDR is on
    addrs4: list[tuple[bytes, int]] = field(default_factory=list)
    addrs6: list[tuple[bytes, int]] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)


def join(path: str) -> None:
    """Enters the network namespace at `path` (instead of a new, empty one).  Refuses the
    host's own namespace."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise BootError(f"network namespace {path}: {e.strerror}", 125) from None
    try:
        st = os.fstat(fd)
        # Neither init's namespace nor the one pyvisor was started in (not joined yet).
        for host in ("/proc/1/ns/net", "/proc/self/ns/net"):
            try:
                h = os.stat(host)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (h.st_dev, h.st_ino):
                raise BootError(f"network namespace {path} is the host's: refusing to take "
                                "over its interfaces", 125)
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise BootError(f"cannot join network namespace {path}: {os.strerror(e)}", 125)
    finally:
        os.close(fd)
    # A second guard, as runsc's isRootNS: this sysctl exists only in the initial namespace.
    if os.path.exists("/proc/sys/net/core/rmem_default") and _is_init_netns():
        raise BootError(f"network namespace {path} is the host's: refusing", 125)


def _is_init_netns() -> bool:
    try:
        me = os.stat("/proc/self/ns/net")
        init = os.stat("/proc/1/ns/net")
    except OSError:
        return False
    return (me.st_dev, me.st_ino) == (init.st_dev, init.st_ino)


# -- rtnetlink ----------------------------------------------------------------------------------


def _attrs(data: bytes, off: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= len(data):
        ln, atype = RTATTR.unpack_from(data, off)
        if ln < 4 or off + ln > len(data):
            break
        out[atype & 0x3FFF] = data[off + 4:off + ln]
        off += (ln + 3) & ~3
    return out


class _Rtnl:
    """A NETLINK_ROUTE socket for dumps and requests."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 1

    def close(self) -> None:
        self.sock.close()

    def request(self, mtype: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Sends one message; returns the (type, body) answers up to DONE or the ACK.
        Raises OSError for an error answer."""
        self.seq += 1
        seq = self.seq
        msg = NLMSGHDR.pack(NLMSGHDR.size + len(body), mtype, flags | NLM_F_REQUEST, seq, 0)
        self.sock.send(msg + body)
        out: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + NLMSGHDR.size <= len(data):
                ln, t, fl, s, _ = NLMSGHDR.unpack_from(data, off)
                if ln < NLMSGHDR.size:
                    return out
                body_ = data[off + NLMSGHDR.size:off + ln]
                off += (ln + 3) & ~3
                if s != seq:
                    continue
                if t == NLMSG_DONE:
                    return out
                if t == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", body_)[0]
                    if err:
                        raise OSError(err, os.strerror(err))
                    return out
                out.append((t, body_))
                if not fl & NLM_F_MULTI and not flags & NLM_F_ACK:
                    return out

    def links(self) -> list[tuple[int, int, int, str, bytes, int]]:
        """(index, type, flags, name, mac, mtu) of each link."""
        out = []
        for t, b in self.request(RTM_GETLINK, NLM_F_DUMP, IFINFOMSG.pack(0, 0, 0, 0, 0)):
            if t != RTM_NEWLINK or len(b) < IFINFOMSG.size:
                continue
            _, htype, index, flags, _ = IFINFOMSG.unpack_from(b)
            a = _attrs(b, IFINFOMSG.size)
            name = a.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
            mtu = struct.unpack("=I", a[IFLA_MTU])[0] if len(a.get(IFLA_MTU, b"")) == 4 else 1500
            out.append((index, htype, flags, name, a.get(IFLA_ADDRESS, b""), mtu))
        return out

    def addrs(self) -> list[tuple[int, int, int, bytes, bytes]]:
        """(family, prefix length, index, local address, peer address) of each address."""
        out = []
        for t, b in self.request(RTM_GETADDR, NLM_F_DUMP, IFADDRMSG.pack(0, 0, 0, 0, 0)):
            if t != RTM_NEWADDR or len(b) < IFADDRMSG.size:
                continue
            fam, plen, _, _, index = IFADDRMSG.unpack_from(b)
            a = _attrs(b, IFADDRMSG.size)
            addr = a.get(IFA_ADDRESS, b"")
            local = a.get(IFA_LOCAL, addr)
            out.append((fam, plen, index, local, addr))
        return out

    def routes(self) -> list[Route]:
        """The unicast routes of the main table."""
        out = []
        for t, b in self.request(RTM_GETROUTE, NLM_F_DUMP, RTMSG.pack(0, 0, 0, 0, 0, 0, 0, 0, 0)):
            if t != RTM_NEWROUTE or len(b) < RTMSG.size:
                continue
            fam, dlen, _, _, table, _, scope, rtype, _ = RTMSG.unpack_from(b)
            a = _attrs(b, RTMSG.size)
            if len(a.get(RTA_TABLE, b"")) == 4:
                table = struct.unpack("=I", a[RTA_TABLE])[0]
            if table != RT_TABLE_MAIN or rtype != RTN_UNICAST or RTA_OIF not in a:
                continue
            size = 4 if fam == socket.AF_INET else 16
            dst = a.get(RTA_DST, b"\0" * size)
            out.append(Route(fam, dst, dlen, struct.unpack("=i", a[RTA_OIF])[0],
                             scope=scope, prefsrc=a.get(RTA_PREFSRC, b""),
                             metric=struct.unpack("=I", a[RTA_PRIORITY])[0]
                             if len(a.get(RTA_PRIORITY, b"")) == 4 else 0,
                             gateway=a.get(RTA_GATEWAY, b"")))
        return out

    def del_addr(self, fam: int, plen: int, index: int, local: bytes, addr: bytes) -> None:
        body = IFADDRMSG.pack(fam, plen, 0, 0, index)
        for atype, value in ((IFA_LOCAL, local), (IFA_ADDRESS, addr)):
            body += RTATTR.pack(4 + len(value), atype) + value + b"\0" * (-len(value) % 4)
        self.request(RTM_DELADDR, NLM_F_ACK, body)


# -- the takeover -------------------------------------------------------------------------------


def _packet_socket(index: int) -> tuple[int, bool]:
    """An AF_PACKET socket bound to device `index`; whether it has PACKET_VNET_HDR (frames
    then carry a virtio_net_hdr, which says when the sender left a checksum partial, as a
    veth passes them)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                      | socket.SOCK_CLOEXEC, socket.htons(ETH_P_ALL))
    try:
        vnet = True
        try:
            s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        except OSError:
            vnet = False
        s.bind((socket.if_indextoname(index), ETH_P_ALL))
        try:
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass                 # older kernels: NIC input drops frames from our own MAC
        for opt in (SO_RCVBUFFORCE, SO_SNDBUFFORCE):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, PACKET_BUFFER)
            except OSError:
                pass
    except BaseException:
        s.close()
        raise
    return s.detach(), vnet


def take_interfaces() -> list[TakenInterface]:
    """Takes over the namespace's Ethernet interfaces (see the module docstring)."""
    nl = _Rtnl()
    taken: list[TakenInterface] = []
    try:
        links = nl.links()
        addrs = nl.addrs()
        routes = nl.routes()
        for index, htype, flags, name, mac, mtu in links:
            if flags & IFF_LOOPBACK or not flags & IFF_UP or htype != ARPHRD_ETHER \
                    or len(mac) != 6:
                continue
            mine = [a for a in addrs if a[2] == index and a[0] in (socket.AF_INET,
                                                                    socket.AF_INET6)]
            if not mine:
                continue
            fd, vnet = _packet_socket(index)
            ti = TakenInterface(index, name, mac, mtu, fd, vnet)
            taken.append(ti)
            for fam, plen, _, local, _addr in mine:
                (ti.addrs4 if fam == socket.AF_INET else ti.addrs6).append((local, plen))
            # Scraped before the addresses go: removing them removes their routes.
            ti.routes = [r for r in routes if r.oif == index]
            for fam, plen, _, local, addr in mine:
                nl.del_addr(fam, plen, index, local, addr)
            try:
                with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
                    f.write("1")
            except OSError:
                pass
    except OSError as e:
        for ti in taken:
            os.close(ti.fd)
        raise BootError(f"cannot take over the container's network interfaces: {e}", 125) \
            from None
    finally:
        nl.close()
    return taken


# -- after create: what an engine's hook configured (Docker) --------------------------------


def take_from(pid: int) -> list[TakenInterface]:
    """take_interfaces in the network namespace of host process `pid` (the sandbox's
    monitor, whose namespace the Sentry shares), from a thread of the calling process:
    setns(2) moves only that thread, which ends there, so the caller never leaves its own
    namespace.  For `start`: Docker's libnetwork-setkey prestart hook moves a veth end
    into /proc/PID/ns/net and configures it after the Sentry booted, so the interfaces
    are taken over then and handed to the Sentry with the start request (runsc does the
    same from `runsc start`).  Refuses the host's namespace and the caller's own."""
    import threading
    out: list[TakenInterface] = []
    err: list[BaseException] = []
    path = f"/proc/{pid}/ns/net"

    def work() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            err.append(BootError(f"network namespace of pid {pid}: {e.strerror}", 1))
            return
        try:
            st = os.fstat(fd)
            # The monitor made this namespace itself (launch: unshare_net), so it is
            # neither init's nor ours; checked anyway where /proc lets us look.
            for host in ("/proc/1/ns/net", "/proc/self/ns/net"):
                try:
                    h = os.stat(host)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == (h.st_dev, h.st_ino):
                    err.append(BootError(f"network namespace of pid {pid} is the host's: "
                                         "refusing to take over its interfaces", 1))
                    return
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                err.append(BootError(f"cannot join the sandbox's network namespace: "
                                     f"{os.strerror(e)}", 1))
                return
            out.extend(take_interfaces())
        except BaseException as e:  # noqa: BLE001 - reported to the caller below
            err.append(e)
        finally:
            os.close(fd)

    th = threading.Thread(target=work, name="pyvisor-netns")
    th.start()
    th.join()
    if err:
        for ti in out:
            os.close(ti.fd)
        raise err[0]
    return out


def to_json(ti: TakenInterface) -> dict[str, object]:
    """A taken interface for the start request (its fd travels as SCM_RIGHTS)."""
    return {"index": ti.index, "name": ti.name, "mac": ti.mac.hex(), "mtu": ti.mtu,
            "vnet": ti.vnet_hdr,
            "addrs4": [[a.hex(), p] for a, p in ti.addrs4],
            "addrs6": [[a.hex(), p] for a, p in ti.addrs6],
            "routes": [[r.family, r.dst.hex(), r.prefix, r.oif, r.table, r.rtype, r.scope,
                        r.prefsrc.hex(), r.metric, r.gateway.hex()] for r in ti.routes]}


def from_json(d: dict[str, object], fd: int) -> TakenInterface:
    """The Sentry's side of to_json; ValueError/TypeError/KeyError for a malformed one."""
    def addrs(v: object) -> list[tuple[bytes, int]]:
        assert isinstance(v, list)
        return [(bytes.fromhex(str(a)), int(p)) for a, p in v]
    routes = []
    rv = d.get("routes", [])
    assert isinstance(rv, list)
    for r in rv:
        fam, dst, prefix, oif, table, rtype, scope, prefsrc, metric, gw = r
        routes.append(Route(int(fam), bytes.fromhex(dst), int(prefix), int(oif), int(table),
                            int(rtype), int(scope), bytes.fromhex(prefsrc), int(metric),
                            bytes.fromhex(gw)))
    mac = bytes.fromhex(str(d["mac"]))
    if len(mac) != 6:
        raise ValueError("mac")
    return TakenInterface(int(str(d["index"])), str(d["name"]), mac, int(str(d["mtu"])), fd,
                          bool(d.get("vnet")), addrs(d.get("addrs4", [])),
                          addrs(d.get("addrs6", [])), routes)


__all__ = ["TakenInterface", "from_json", "join", "take_from", "take_interfaces", "to_json"]
