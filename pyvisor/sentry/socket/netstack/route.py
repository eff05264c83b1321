"""The route table of netstack's NICs.  Linux: net/ipv4/fib_trie.c (fib_table_lookup),
net/ipv6/route.c.  gVisor: tcpip/stack/route.go (Stack.FindRoute over the table).

The main table holds what the container's namespace had (runtime/netns.py
copies it): the connected routes of each address and the routes through
gateways, default routes included.  Lookup is longest prefix first, then
the lowest metric, as a FIB lookup without policy rules.  Loopback and the
local addresses are not in this table: Stack.is_local answers for them
before a route is looked up, as Linux's local table is consulted first.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from pyvisor.sentry.socket.inet import Route

RT_TABLE_MAIN = 254


def prefix_match(ip: bytes, net: bytes, prefix: int) -> bool:
    """Whether `ip` is in `net`/`prefix` (both of one family)."""
    if len(ip) != len(net):
        return False
    bits = len(ip) * 8
    if prefix <= 0:
        return True
    if prefix > bits:
        return False
    shift = bits - prefix
    return int.from_bytes(ip, "big") >> shift == int.from_bytes(net, "big") >> shift


def network_of(ip: bytes, prefix: int) -> bytes:
    """`ip` with its host bits cleared."""
    bits = len(ip) * 8
    mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1) if prefix else 0
    return (int.from_bytes(ip, "big") & mask).to_bytes(len(ip), "big")


class RouteTable:
    """The routes of the NICs (RT_TABLE_MAIN)."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, r: Route) -> None:
        if r not in self.routes:
            self.routes.append(r)

    def remove(self, r: Route) -> None:
        if r in self.routes:
            self.routes.remove(r)

    def remove_oif(self, oif: int) -> None:
        self.routes = [r for r in self.routes if r.oif != oif]

    def lookup(self, dst: bytes) -> Route | None:
        """The main table's best route to `dst` (its type may be unreachable,
        blackhole or prohibit: the caller answers those)."""
        best: Route | None = None
        for r in self.routes:
            if r.table != RT_TABLE_MAIN or not prefix_match(dst, r.dst, r.prefix):
                continue
            if best is None or r.prefix > best.prefix or \
                    (r.prefix == best.prefix and r.metric < best.metric):
                best = r
        return best


__all__ = ["RouteTable", "network_of", "prefix_match"]
