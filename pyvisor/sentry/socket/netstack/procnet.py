"""/proc/net files of netstack.  Linux: net/ipv4/tcp_ipv4.c (tcp4_seq_show),
net/ipv6/tcp_ipv6.c, net/ipv4/udp.c, net/core/net-procfs.c (dev), net/ipv6/addrconf.c
(if_inet6), net/ipv4/fib_trie.c (route).

Rendered from the stack's port tables and interfaces on each open, in Linux's
column layout, so netstat/ss-style readers parse them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.inet import TCP_CLOSE, TCP_ESTABLISHED, TCP_TIME_WAIT

if TYPE_CHECKING:
    from pyvisor.sentry.socket import InetStack
    from pyvisor.sentry.socket.netstack import Stack

TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
              "   uid  timeout inode                                                     \n")
TCP6_HEADER = ("  sl  local_address                         remote_address                   "
               "     st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
UDP_HEADER = ("   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
              "   uid  timeout inode ref pointer drops             \n")
UDP6_HEADER = ("  sl  local_address                         remote_address                   "
               "     st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer"
               " drops\n")
DEV_HEADER = ("Inter-|   Receive                                                |  Transmit\n"
              " face |bytes    packets errs drop fifo frame compressed multicast|bytes    "
              "packets errs drop fifo colls carrier compressed\n")
ROUTE_HEADER = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow"
                "\tIRTT                                                       \n")


def _hex_addr(ip: bytes) -> str:
    """An address as Linux prints it: each 32-bit word in host (little-endian) order."""
    return "".join(f"{int.from_bytes(ip[i:i + 4], 'little'):08X}" for i in range(0, len(ip), 4))


def _v6(ip: bytes) -> bytes:
    return ip if len(ip) == 16 else b"\0" * 10 + b"\xff\xff" + ip


def _entries(table: Any, v6: bool) -> list[Any]:
    out = []
    for b in table:
        fam6 = getattr(b, "family", 2) == 10
        if fam6 == v6:
            out.append(b)
    return out


def _row(i: int, b: Any, v6: bool, state: int, rxq: int, width: int) -> str:
    conv = (lambda ip: _hex_addr(_v6(ip))) if v6 else (lambda ip: _hex_addr(ip[-4:]))
    return (f"{i:{width}d}: {conv(b.laddr)}:{b.lport:04X} {conv(b.raddr)}:{b.rport:04X} "
            f"{state:02X} {0:08X}:{rxq:08X} 00:00000000 00000000 {b.owner_uid:5d}        0 "
            f"{getattr(b, 'ino', 0)} 1 0000000000000000")


def render(stack: Stack, name: str) -> bytes | None:
    if name in ("tcp", "tcp6"):
        v6 = name == "tcp6"
        rows = [TCP6_HEADER if v6 else TCP_HEADER]
        for i, b in enumerate(_entries(stack.tcp_ports, v6)):
            state = b.tcp_state
            if state == TCP_CLOSE:
                continue
            rows.append(_row(i, b, v6, state, getattr(b, "rcv_len", 0), 4)
                        + ("" if state == TCP_TIME_WAIT else " 100 0 0 10 0") + "\n")
        return "".join(rows).encode()
    if name in ("udp", "udp6"):
        v6 = name == "udp6"
        rows = [UDP6_HEADER if v6 else UDP_HEADER]
        for i, b in enumerate(_entries(stack.udp_ports, v6)):
            state = TCP_ESTABLISHED if b.rport else TCP_CLOSE
            rows.append(_row(i, b, v6, state, getattr(b, "rcv_mem", 0), 5 if not v6 else 4)
                        + f" 2 0000000000000000 {getattr(b, 'drops', 0)}\n")
        return "".join(rows).encode()
    return render_common(stack, name)


def render_common(stack: InetStack, name: str) -> bytes | None:
    """Files that only need the interfaces (also for hostinet's snapshot)."""
    if name == "dev":
        rows = [DEV_HEADER]
        for i in stack.interfaces():
            rows.append(f"{i.name.decode():>6s}:{i.rx_bytes:8d} {i.rx_packets:7d}    0    0    0"
                        f"     0          0         0 {i.tx_bytes:8d} {i.tx_packets:7d}    0"
                        f"    0    0     0       0          0\n")
        return "".join(rows).encode()
    if name == "if_inet6":
        rows = []
        for i in stack.interfaces():
            for ip, prefix in i.addrs6:
                scope = 0x10 if i.flags & 8 else (0x20 if ip[:2] == b"\xfe\x80" else 0)
                rows.append(f"{ip.hex()} {i.index:02x} {prefix:02x} {scope:02x} 80 "
                            f"{i.name.decode():>8s}\n")
        return "".join(rows).encode()
    if name == "route":
        rows = [ROUTE_HEADER]
        names = {i.index: i.name.decode() for i in stack.interfaces()}
        for r in stack.routes():
            if r.family != 2 or r.table != 254:
                continue                   # the main table only
            mask = ((0xFFFFFFFF << (32 - r.prefix)) & 0xFFFFFFFF).to_bytes(4, "big")
            gw = r.gateway or b"\0" * 4
            flags = 0x1 | (0x2 if r.gateway else 0)
            rows.append(f"{names.get(r.oif, '*')}\t{_hex_addr(r.dst)}\t{_hex_addr(gw)}\t"
                        f"{flags:04X}\t0\t0\t{r.metric}\t{_hex_addr(mask)}\t0\t0\t0"
                        "                                                                \n")
        return "".join(rows).encode()
    return None
