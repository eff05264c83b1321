"""Two (or more) netstack Stacks wired back to back in-process for tcpseg's tests: a fake
clock with the Kernel's timer interface, and a wire that hands each IP payload to the
other stack's transport handler after a delay, with injectable loss, duplication,
reordering and a drop filter.  No ptrace, no host network."""

from __future__ import annotations

import heapq
import random
from types import SimpleNamespace
from typing import Any, Callable

from pyvisor.sentry.kernel.task import Credentials
from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError, WouldBlock
from pyvisor.sentry.kernel.kernel import Timer
from pyvisor.sentry.kernel.sysctl import CoreSysctls
from pyvisor.sentry.socket import inet
from pyvisor.sentry.socket.common import AF_INET, MSG_NOSIGNAL
from pyvisor.sentry.socket.netstack import Stack
from pyvisor.sentry.socket.netstack import tcpseg
from pyvisor.sentry.socket.netstack import tcpwire as w
from pyvisor.sentry.socket.netstack.tcp import TCPSocket

MS = 1_000_000
S = 1_000_000_000


class FakeKernel:
    """now() and add_timer() as the Sentry's Kernel has them, on a clock tests move."""

    def __init__(self) -> None:
        from pyvisor.sentry.kernel.sysctl import CoreSysctls
        self.t = 10 * S
        self.net_core = CoreSysctls()       # net.core.{w,r}mem_max: Linux's defaults
        self.heap: list[tuple[int, int, Timer]] = []
        self.n = 0
        self.net_core = CoreSysctls()       # SO_SNDBUF/SO_RCVBUF caps, as Kernel's

    def now(self) -> int:
        return self.t

    def add_timer(self, deadline: int, callback: Callable[[], None]) -> Timer:
        tm = Timer(deadline, callback)
        self.n += 1
        heapq.heappush(self.heap, (deadline, self.n, tm))
        return tm

    def step(self) -> bool:
        """Runs the next timer (moving the clock to it); False when none is left."""
        while self.heap:
            deadline, _n, tm = heapq.heappop(self.heap)
            if tm.cancelled:
                continue
            self.t = max(self.t, deadline)
            tm.callback()
            return True
        return False

    def run_until(self, cond: Callable[[], bool], limit_ns: int = 600 * S) -> None:
        end = self.t + limit_ns
        while not cond():
            if not self.heap or self.heap[0][0] > end:
                break
            self.step()
        assert cond(), "condition not reached by the fake clock's limit"

    def advance(self, ns: int) -> None:
        """Runs every timer due in the next `ns` and leaves the clock there."""
        end = self.t + ns
        while self.heap and self.heap[0][0] <= end:
            self.step()
        self.t = end


class Wire:
    """A link between stacks: delay, loss, duplication, reordering; `drop` filters."""

    def __init__(self, kernel: FakeKernel, seed: int = 1, delay: int = 1 * MS) -> None:
        self.kernel = kernel
        self.rng = random.Random(seed)
        self.delay = delay
        self.loss = 0.0
        self.dup = 0.0
        self.reorder = 0.0
        self.stacks: dict[bytes, WireStack] = {}
        self.drop: Callable[[bytes, bytes, w.Segment], bool] | None = None
        self.sent: list[tuple[bytes, bytes, w.Segment]] = []
        self.keep_log = True
        self.bytes_per_ns = 0.0          # 0: no bandwidth limit
        self.busy_until = 0

    def send(self, src: bytes, dst: bytes, payload: bytes) -> None:
        seg = w.parse(src, dst, payload)
        assert seg is not None, "a segment with a bad checksum or header left a stack"
        if self.keep_log:
            self.sent.append((src, dst, seg))
        if self.drop is not None and self.drop(src, dst, seg):
            return
        if self.loss and self.rng.random() < self.loss:
            return
        target = self.stacks.get(dst)
        if target is None:
            return
        copies = 2 if self.dup and self.rng.random() < self.dup else 1
        now = self.kernel.now()
        start = now
        if self.bytes_per_ns:
            start = max(now, self.busy_until)
            self.busy_until = start + int(len(payload) / self.bytes_per_ns)
        for _ in range(copies):
            d = self.delay + (start - now)
            if self.reorder and self.rng.random() < self.reorder:
                d += self.rng.randrange(1, 4 * max(self.delay, 1))

            def deliver(p: bytes = payload) -> None:
                target.transport_handlers[6](src, dst, p, None)
            self.kernel.add_timer(now + d, deliver)


class WireStack(Stack):
    """A netstack Stack with one address on the wire (the nic branch's IP layer stands
    in as `send_ip`/`transport_handlers`, the interface tcpseg is written against)."""

    def __init__(self, kernel: FakeKernel, addr: bytes, wire: Wire) -> None:
        super().__init__(kernel)
        self.addr = addr
        self.wire = wire
        self.transport_handlers: dict[int, Any] = {}
        wire.stacks[addr] = self
        self.layer = tcpseg.attach(self)

    def is_local(self, ip: bytes) -> bool:
        return ip == self.addr or super().is_local(ip)

    def check_route(self, dst: bytes) -> None:
        pass

    def route_source(self, dst: bytes) -> bytes:
        return self.addr if not super().is_local(dst) else super().route_source(dst)

    def send_ip(self, proto: int, src: bytes, dst: bytes, payload: bytes) -> None:
        assert proto == 6 and src == self.addr
        self.wire.send(src, dst, payload)


A, B = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
TASK = SimpleNamespace(creds=Credentials())          # the sandbox's root
NONBLOCK = SimpleNamespace(nonblocking=True)


def pair(seed: int = 1, delay: int = 1 * MS) -> tuple[FakeKernel, Wire, WireStack, WireStack]:
    k = FakeKernel()
    wire = Wire(k, seed, delay)
    TASK.kernel = k
    return k, wire, WireStack(k, A, wire), WireStack(k, B, wire)


def run_sync(coro: Any) -> Any:
    """Runs a socket coroutine that must not block (non-blocking file)."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    raise AssertionError("the call blocked")


def listener(stack: WireStack, port: int, backlog: int = 16) -> TCPSocket:
    s = TCPSocket(stack, AF_INET, 0)
    s.bind(TASK, inet.encode(AF_INET, stack.addr, port))  # type: ignore[arg-type]
    s.listen(TASK, backlog)  # type: ignore[arg-type]
    return s


def connect(stack: WireStack, ip: bytes, port: int, s: TCPSocket | None = None) -> TCPSocket:
    s = s or TCPSocket(stack, AF_INET, 0)
    try:
        run_sync(s.connect(TASK, NONBLOCK, inet.encode(AF_INET, ip, port)))  # type: ignore
    except SyscallError as e:
        assert e.errno == Errno.EINPROGRESS, e
    return s


def accept(lst: TCPSocket) -> TCPSocket:
    nf, _addr = run_sync(lst.accept(TASK, NONBLOCK, 0))  # type: ignore[arg-type]
    return nf.impl  # type: ignore[no-any-return]


def established(k: FakeKernel, a: WireStack, b: WireStack, port: int = 80
                ) -> tuple[TCPSocket, TCPSocket, TCPSocket]:
    """A connected pair: (client on a, server child on b, b's listener)."""
    lst = listener(b, port)
    c = connect(a, b.addr, port)
    k.run_until(lambda: bool(lst.acceptq) and c.state == 1)
    return c, accept(lst), lst


def send_some(s: TCPSocket, data: bytes) -> int:
    try:
        return s._try_send(TASK, data, MSG_NOSIGNAL)  # type: ignore[arg-type]
    except WouldBlock:
        return 0


def recv_some(s: TCPSocket, n: int = 1 << 20) -> bytes:
    try:
        return s._try_recv(n, 0).data
    except WouldBlock:
        return b""


def transfer(k: FakeKernel, src: TCPSocket, dst: TCPSocket, data: bytes,
             limit_ns: int = 3600 * S, on_step: Callable[[], None] | None = None) -> bytes:
    """Sends `data` from src to dst, reading at dst, until all arrived (or the limit)."""
    sent = 0
    got = bytearray()
    end = k.t + limit_ns
    while len(got) < len(data):
        if sent < len(data):
            sent += send_some(src, data[sent:sent + (1 << 16)])
        got += recv_some(dst)
        if on_step is not None:
            on_step()
        if len(got) >= len(data):
            break
        if not k.step() or k.t > end:
            break
    return bytes(got)
