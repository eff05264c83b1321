"""Interop of netstack's segment-level TCP with the host's Linux TCP, through a TUN device.

Run ONLY inside a fresh network namespace (the test does `unshare -rn` or `unshare -n`):
it makes a TUN device `pvtcp0` with 10.77.0.1/24 on the Linux side; a netstack Stack
(10.77.0.2) reads and writes raw IPv4 packets on it (a minimal IPv4 framing here, test
only: the nic branch's IP layer is the real one).  Then, on a real clock:

  1. a Linux client (a python3 subprocess in the namespace) connects to our listener
     and sends N MiB; we check its SHA-256 and send N MiB back, which it checks;
  2. our client connects to a Linux server in the namespace and sends N MiB; the server
     answers with the SHA-256 it computed;

and prints a JSON line with the results and throughputs.  Usage: tcpseg_tun.py MIB [LOSS]
(LOSS: the fraction of packets dropped each way at the TUN, seeded, to make both TCPs
recover from loss against each other).
"""

from __future__ import annotations

import fcntl
import hashlib
import heapq
import json
import os
import random
import select
import struct
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from pyvisor.sentry.kernel.task import Credentials
from pyvisor.abi.linux.errno import Errno  # noqa: E402
from pyvisor.sentry.errors import SyscallError, WouldBlock  # noqa: E402
from pyvisor.sentry.kernel.kernel import Timer  # noqa: E402
from pyvisor.sentry.socket import inet  # noqa: E402
from pyvisor.sentry.socket.common import AF_INET, MSG_NOSIGNAL  # noqa: E402
from pyvisor.sentry.socket.netstack import Stack, tcpseg  # noqa: E402
from pyvisor.sentry.socket.netstack.tcp import TCPSocket  # noqa: E402

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
DEV = "pvtcp0"
LINUX, OURS = bytes([10, 77, 0, 1]), bytes([10, 77, 0, 2])
IPV4 = struct.Struct("!BBHHHBBH4s4s")
CHUNK = 1 << 18                # what one write(2) of the application hands the socket


class RealKernel:
    """now() and add_timer() on the monotonic clock (the Sentry's Kernel interface)."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, int, Timer]] = []
        self.n = 0

    def now(self) -> int:
        return time.monotonic_ns()

    def add_timer(self, deadline: int, cb: Callable[[], None]) -> Timer:
        tm = Timer(deadline, cb)
        self.n += 1
        heapq.heappush(self.heap, (deadline, self.n, tm))
        return tm

    def run_due(self) -> float:
        now = self.now()
        while self.heap and (self.heap[0][2].cancelled or self.heap[0][0] <= now):
            _d, _n, tm = heapq.heappop(self.heap)
            if not tm.cancelled:
                tm.callback()
        return (self.heap[0][0] - now) / 1e9 if self.heap else 0.05


def ip_checksum(h: bytes) -> int:
    s = sum(struct.unpack("!%dH" % (len(h) // 2), h))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class TunStack(Stack):
    def __init__(self, kernel: RealKernel, fd: int) -> None:
        super().__init__(kernel)
        self.fd = fd
        self.transport_handlers: dict[int, Any] = {}
        self.ident = 0
        self.layer = tcpseg.attach(self)
        self.loss = 0.0
        self.rng = random.Random(1)
        self.dropped = 0

    def is_local(self, ip: bytes) -> bool:
        return ip == OURS or super().is_local(ip)

    def check_route(self, dst: bytes) -> None:
        pass

    def route_source(self, dst: bytes) -> bytes:
        return OURS

    def send_ip(self, proto: int, src: bytes, dst: bytes, payload: bytes) -> None:
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return
        self.ident = (self.ident + 1) & 0xFFFF
        h = IPV4.pack(0x45, 0, 20 + len(payload), self.ident, 0x4000, 64, proto, 0, src, dst)
        h = h[:10] + ip_checksum(h).to_bytes(2, "big") + h[12:]
        try:
            os.write(self.fd, h + payload)
        except BlockingIOError:
            pass                                   # a full queue: a lost packet

    def receive(self) -> int:
        n = 0
        while n < 256:
            try:
                pkt = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            n += 1
            if len(pkt) < 20 or pkt[0] >> 4 != 4:
                continue
            if self.loss and self.rng.random() < self.loss:
                self.dropped += 1
                continue
            ihl = (pkt[0] & 15) * 4
            total = int.from_bytes(pkt[2:4], "big")
            if pkt[9] != 6 or pkt[16:20] != OURS or total > len(pkt):
                continue
            self.transport_handlers[6](pkt[12:16], pkt[16:20], pkt[ihl:total], None)
        return n


TASK = SimpleNamespace(creds=Credentials())          # the sandbox's root
NONBLOCK = SimpleNamespace(nonblocking=True)

CLIENT = r"""
import hashlib, os, socket, sys, time
n = int(sys.argv[1]) << 20
s = socket.create_connection(("10.77.0.2", 8080), timeout=60)
data = os.urandom(n)
s.sendall(hashlib.sha256(data).digest() + data)
want = s.recv(32, socket.MSG_WAITALL)
h = hashlib.sha256(); got = 0
while got < n:
    b = s.recv(1 << 20)
    if not b: break
    h.update(b); got += len(b)
s.close()
print("client-ok" if got == n and h.digest() == want else "client-bad %d" % got, flush=True)
"""

SERVER = r"""
import hashlib, socket, sys
n = int(sys.argv[1]) << 20
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("10.77.0.1", 9090)); ls.listen(1)
print("listening", flush=True)
c, _ = ls.accept(); c.settimeout(60)
h = hashlib.sha256(); got = 0
while got < n:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); got += len(b)
c.sendall(h.digest())
c.close()
"""


def pump(k: RealKernel, st: TunStack, until: Callable[[], bool], step: Callable[[], None],
         limit_s: float = 120.0) -> None:
    end = time.monotonic() + limit_s
    while not until():
        if time.monotonic() > end:
            raise TimeoutError("interop step did not finish")
        wait = min(max(k.run_due(), 0.0), 0.02)
        r, _, _ = select.select([st.fd], [], [], wait)
        if r:
            st.receive()
        step()


def main() -> None:
    mib = int(sys.argv[1])
    n = mib << 20
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", DEV.encode(), IFF_TUN | IFF_NO_PI))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "10.77.0.1/24", "dev", DEV], check=True)
    subprocess.run(["ip", "link", "set", DEV, "up"], check=True)
    k = RealKernel()
    st = TunStack(k, fd)
    st.loss = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    out: dict[str, Any] = {}

    # 1. A Linux client to our listener.
    lst = TCPSocket(st, AF_INET, 0)
    lst.bind(TASK, inet.encode(AF_INET, OURS, 8080))  # type: ignore[arg-type]
    lst.listen(TASK, 8)  # type: ignore[arg-type]
    cl = subprocess.Popen([sys.executable, "-c", CLIENT, str(mib)], stdout=subprocess.PIPE,
                          text=True)
    pump(k, st, lambda: bool(lst.acceptq), lambda: None)
    child = lst.acceptq.popleft()
    h = hashlib.sha256()
    state = {"got": 0, "want": b"", "t0": 0.0, "t1": 0.0, "sent": 0}
    reply = os.urandom(n)

    def rx() -> None:
        try:
            while True:
                b = child._try_recv(1 << 20, 0).data
                if not b:
                    break
                if not state["t0"]:
                    state["t0"] = time.monotonic()
                need = 32 - len(state["want"])
                if need > 0:
                    state["want"] += b[:need]
                    b = b[need:]
                h.update(b)
                state["got"] += len(b)
        except WouldBlock:
            pass
    pump(k, st, lambda: state["got"] >= n, rx)
    state["t1"] = time.monotonic()
    out["linux_to_ours_ok"] = h.digest() == state["want"]
    out["linux_to_ours_MiBps"] = round(mib / (state["t1"] - state["t0"]), 2)
    payload = hashlib.sha256(reply).digest() + reply
    t0 = time.monotonic()

    def tx() -> None:
        try:
            while state["sent"] < len(payload):
                at = state["sent"]
                state["sent"] += child._try_send(TASK, payload[at:at + CHUNK],  # type: ignore
                                                 MSG_NOSIGNAL)
        except WouldBlock:
            pass
    pump(k, st, lambda: state["sent"] >= len(payload) and child.ep is not None
         and not child.ep.sndq, tx)
    child.release(None)  # type: ignore[arg-type]
    pump(k, st, lambda: cl.poll() is not None, lambda: None)
    out["ours_to_linux_MiBps"] = round(mib / (time.monotonic() - t0), 2)
    out["client"] = (cl.stdout.read() if cl.stdout else "").strip()
    out["ours_retrans"] = st.layer.retrans_segs

    # 2. Our client to a Linux server.
    sv = subprocess.Popen([sys.executable, "-c", SERVER, str(mib)], stdout=subprocess.PIPE,
                          text=True)
    assert sv.stdout is not None and sv.stdout.readline().strip() == "listening"
    c = TCPSocket(st, AF_INET, 0)
    try:
        c.connect(TASK, NONBLOCK, inet.encode(AF_INET, LINUX, 9090)).send(None)  # type: ignore
    except SyscallError as e:
        assert e.errno == Errno.EINPROGRESS
    pump(k, st, lambda: c.state == 1, lambda: None)
    mss = c.ep.mss if c.ep is not None else None
    data = os.urandom(n)
    sent = {"n": 0}
    ans = bytearray()

    def tx2() -> None:
        try:
            while sent["n"] < n:
                sent["n"] += c._try_send(TASK, data[sent["n"]:sent["n"] + CHUNK],  # type: ignore
                                        MSG_NOSIGNAL)
        except WouldBlock:
            pass
        try:
            ans.extend(c._try_recv(64, 0).data)
        except (WouldBlock, SyscallError):
            pass
    t0 = time.monotonic()
    pump(k, st, lambda: len(ans) >= 32, tx2)
    out["ours_client_MiBps"] = round(mib / (time.monotonic() - t0), 2)
    out["ours_client_ok"] = bytes(ans[:32]) == hashlib.sha256(data).digest()
    c.release(None)  # type: ignore[arg-type]
    pump(k, st, lambda: sv.poll() is not None, lambda: None, 30)
    out["ours_client_mss"] = mss
    out["dropped"] = st.dropped
    out["ours_retrans_total"] = st.layer.retrans_segs
    out["ours_fast_retrans"] = st.layer.fast_retrans
    out["ours_rto"] = st.layer.timeouts
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
