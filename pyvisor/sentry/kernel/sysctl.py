"""The sysctls the Sentry models: their values, what reads them, /proc/sys's view.

Linux: kernel/sysctl.c, net/ipv4/sysctl_net_ipv4.c, net/core/sysctl_net_core.c.
Set at boot from config.json's linux.sysctl (runtime/sysctl.py decides which are
accepted); /proc/sys shows the current values (fsimpl/proc).  Each sysctl is
held where its reader looks: the network stack's `NetSysctls` for net.*, the
kernel for the rest.

| sysctl                            | read by                                   |
| ---                               | ---                                       |
| kernel.domainname                 | uname(2), /proc/sys/kernel/domainname     |
| kernel.shmmax, shmall, shmmni     | shmget(2) and shmctl IPC_INFO (kernel/ipc/shm.py) |
| kernel.msgmax, msgmnb, msgmni, sem | /proc/sys only (msg/sem use Linux's defaults) |
| net.core.somaxconn                | listen(2)'s backlog clamp (TCP)           |
| net.ipv4.ip_local_port_range      | ephemeral ports (TCP, UDP)                |
| net.ipv4.ip_unprivileged_port_start | bind(2) below it needs root            |
| net.ipv4.ping_group_range         | socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pyvisor.abi.linux.inet import EPHEMERAL_HIGH, EPHEMERAL_LOW, PROT_SOCK
from pyvisor.sentry.waitqueue import EVENT_ALL, WaitQueue

GID_MAX = 2147483647          # ping_group_range's bound (Linux: GID_T_MAX)


class PollEvent:
    """A sysctl that pollers of its /proc/sys file hear change (kernel.hostname,
    kernel.domainname).  Linux: struct ctl_table_poll, proc_sys_poll_notify."""

    __slots__ = ("event", "wq")

    def __init__(self) -> None:
        self.event = 0
        self.wq = WaitQueue()

    def notify(self) -> None:
        self.event += 1
        self.wq.notify(EVENT_ALL)


@dataclass
class NetSysctls:
    """The net.* sysctls of one network stack (gVisor's defaults where they differ from
    Linux's: every group may open ping sockets)."""

    somaxconn: int = 4096
    port_range: tuple[int, int] = (EPHEMERAL_LOW, EPHEMERAL_HIGH)
    unprivileged_port_start: int = PROT_SOCK
    ping_group_range: tuple[int, int] = (0, GID_MAX)

    def may_ping(self, gids: tuple[int, ...]) -> bool:
        lo, hi = self.ping_group_range
        return any(lo <= g <= hi for g in gids)


# Values of the IPC sysctls (Linux's defaults on 64-bit).
IPC_DEFAULTS = {
    "kernel.shmmax": "18446744073692774399", "kernel.shmall": "18446744073692774399",
    "kernel.shmmni": "4096", "kernel.msgmax": "8192", "kernel.msgmnb": "16384",
    "kernel.msgmni": "32000", "kernel.sem": "32000\t1024000000\t500\t32000",
}


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(v: str) -> int:
        n = int(v.strip())
        if not lo <= n <= hi:
            raise ValueError(f"must be from {lo} to {hi}")
        return n
    return parse


class _Pair:
    """Two integers ("lo hi"), as Linux's proc_dointvec_minmax on a two-element vector
    reads them: a single one sets the first and keeps the second, more than two are
    ignored.  A reversed pair is EINVAL for a port range; for ping_group_range it
    means "no group" (1 0), as ipv4_ping_group_range makes it."""

    def __init__(self, lo: int, hi: int, port_range: bool) -> None:
        self.lo, self.hi, self.port_range = lo, hi, port_range

    def __call__(self, v: str, current: tuple[int, int] = (0, 0)) -> tuple[int, int]:
        parts = v.split()[:2]
        if not parts:
            raise ValueError("must be two integers")
        nums = [_int(self.lo, self.hi)(p) for p in parts]
        a, b = (nums[0], nums[1]) if len(nums) == 2 else (nums[0], current[1])
        if b < a:
            if self.port_range:
                raise ValueError("the first must not be above the second")
            return 1, 0
        return a, b


def _net(kernel: Any) -> NetSysctls | None:
    stack = getattr(getattr(kernel, "network", None), "stack", None)
    return getattr(stack, "sysctl", None)


def _ipc_parse(name: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        parts = v.split()
        want = 4 if name == "kernel.sem" else 1
        if len(parts) != want or not all(p.isdigit() for p in parts):
            raise ValueError(f"must be {want} non-negative integer{'s' if want > 1 else ''}")
        return "\t".join(parts)
    return parse


# name -> (parse, set(kernel, parsed) -> bool (False: this sandbox cannot hold it), get)
_NET: dict[str, tuple[Any, str, Callable[[Any], str]]] = {
    "net.core.somaxconn": (_int(0, 2147483647), "somaxconn", lambda v: str(v)),
    "net.ipv4.ip_local_port_range": (_Pair(1, 65535, True), "port_range",
                                     lambda v: f"{v[0]}\t{v[1]}"),
    "net.ipv4.ip_unprivileged_port_start": (_int(0, 65535), "unprivileged_port_start",
                                            lambda v: str(v)),
    "net.ipv4.ping_group_range": (_Pair(0, GID_MAX, False), "ping_group_range",
                                  lambda v: f"{v[0]}\t{v[1]}"),
}


def known(name: str) -> bool:
    return name in _NET or name in IPC_DEFAULTS or name == "kernel.domainname"


def set_value(kernel: Any, name: str, value: str) -> bool:
    """Sets a modelled sysctl; False if this sandbox has nowhere to hold it (net.* with
    --network=host).  Raises ValueError (a reason) for a value Linux would refuse."""
    if name == "kernel.domainname":
        raw = value.encode()
        if len(raw) > 64:
            raise ValueError("must be at most 64 bytes")
        kernel.domainname = raw
        return True
    if name in IPC_DEFAULTS:
        ipc = kernel.__dict__.setdefault("ipc_sysctl", dict(IPC_DEFAULTS))
        ipc[name] = _ipc_parse(name)(value)
        return True
    parse, attr, _ = _NET[name]
    net = _net(kernel)
    parsed = parse(value, getattr(net or NetSysctls(), attr)) if isinstance(parse, _Pair) \
        else parse(value)
    if net is None:
        return False
    setattr(net, attr, parsed)
    return True


def get_value(kernel: Any, name: str) -> bytes:
    """The value /proc/sys shows (with its newline)."""
    if name in IPC_DEFAULTS:
        return (getattr(kernel, "ipc_sysctl", IPC_DEFAULTS)[name] + "\n").encode()
    _, attr, fmt = _NET[name]
    net = _net(kernel) or NetSysctls()
    return (fmt(getattr(net, attr)) + "\n").encode()
