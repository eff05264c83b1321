"""The Sentry's memory account: what the Sentry holds on the application's behalf.

Linux analogue: the kernel-memory (kmem) charges of a memory cgroup, which make
pipe pages, socket buffers, epoll items and signal queue entries fail their
allocation once the cgroup is full.  gVisor bounds the same objects with
per-object limits; here they also share one per-sandbox bound (`--sentry-memory`),
so that many small objects (thousands of pipes, epoll sets, queued signals)
cannot grow the Sentry's heap without limit, whatever the per-object limits.

Each kind of object charges what it holds when it takes it (`try_charge`) and
uncharges it exactly once when it lets it go; a charge that does not fit fails,
and the caller turns that into the errno Linux gives for that object (ENOMEM for
a pipe write, ENOBUFS for a socket send, ENOSPC for an epoll watch, EAGAIN for
sigqueue), never an exception in the Sentry.

Charges are estimates of the Python heap each object costs (its bytes plus a
fixed overhead per object), not exact measurements.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import enum
import logging

log = logging.getLogger("pyvisor.sentry")

DEFAULT_MAX = 1 << 30           # the default bound's ceiling (see default_limit)
MIN_LIMIT = 1 << 20             # smaller bounds would starve ordinary start-up


class Kind(enum.Enum):
    """What a charge is for (counted separately, for /proc/meminfo and tests)."""

    PIPE = "pipe"               # bytes buffered in pipes and FIFOs
    SOCKET = "socket"           # AF_UNIX messages queued on receivers
    EPOLL = "epoll"             # epoll interest-list entries
    SIGNAL = "signal"           # queued real-time signals (siginfo)
    TMPFS = "tmpfs"             # tmpfs inodes, directory entries, inline symlink targets
    DENTRY = "dentry"           # cached dentries (the dentry cache may charge here)
    NETSTACK = "netstack"       # netstack sockets (with their accept-queue children) and
                                # TCP TIME_WAIT remnants, a fixed cost each
    IPC = "ipc"                 # System V message queue contents
    TTY = "tty"                 # pseudo-terminals made inside: their queues' bound each


# Fixed per-object costs, from sys.getsizeof of the Python objects involved.
EPOLL_ITEM_COST = 256           # the interest entry: key tuple, list, dict slot
SIGQUEUE_COST = 192             # a SigInfo and its list slot


def default_limit(memory_limit: int) -> int:
    """The default bound: a quarter of the sandbox's memory limit, at most 1 GiB (the
    Sentry lives in the sandbox's memory cgroup, so its heap must stay well below it)."""
    return max(MIN_LIMIT, min(memory_limit // 4, DEFAULT_MAX))


class SentryMemory:
    """One sandbox's account.  Invariant: 0 <= used <= limit; used == sum(by_kind)."""

    __slots__ = ("limit", "used", "by_kind", "failures")

    def __init__(self, limit: int = DEFAULT_MAX) -> None:
        self.limit = limit
        self.used = 0
        self.by_kind: dict[Kind, int] = {k: 0 for k in Kind}
        self.failures = 0           # charges refused (for logs and tests)

    def try_charge(self, kind: Kind, n: int) -> bool:
        """Charges `n` bytes if they fit; False (nothing charged) if they do not."""
        if n <= 0:
            return True
        if self.used + n > self.limit:
            self.failures += 1
            return False
        self.used += n
        self.by_kind[kind] += n
        return True

    def uncharge(self, kind: Kind, n: int) -> None:
        """Returns `n` bytes charged earlier for `kind`."""
        if n <= 0:
            return
        if self.by_kind[kind] < n:
            # An accounting bug: never take the sandbox down for it, but say so.
            log.warning("sentry memory: uncharging %d bytes of %s, only %d charged",
                        n, kind.value, self.by_kind[kind])
            n = self.by_kind[kind]
        self.used -= n
        self.by_kind[kind] -= n

    def available(self) -> int:
        return self.limit - self.used
