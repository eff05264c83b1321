"""AF_INET/AF_INET6 over the sandbox's loopback (netstack), compared with Linux:
the self-checking tests/programs/inet_*.c natively and under pyvisor, and real
programs (Python's http.server fetched with urllib, ping)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Callable, Sequence

import pytest

if TYPE_CHECKING:
    from conftest import Builder, CliRunner, Result, Runner

NETWORKS = ["sandbox", "host"]
Compare = Callable[..., "tuple[Result, Result]"]


@pytest.fixture
def compare_net(run: Runner, pyvisor_cli: CliRunner) -> Callable[..., tuple[Result, Result]]:
    """compare(network, argv): runs argv natively and under `pyvisor do --network=N`,
    asserts the same exit status and stdout."""

    def comparer(network: str, argv: Sequence[str], timeout: float = 300) -> tuple[Result, Result]:
        native = run("native", argv, timeout=timeout)
        sandboxed = pyvisor_cli(["do", f"--network={network}", "--", *argv], timeout=timeout)
        detail = (f"{list(argv)!r} --network={network}\n=== native ===\n{native.output}"
                  f"=== pyvisor ===\n{sandboxed.output}")
        assert sandboxed.returncode == native.returncode, detail
        assert sandboxed.stdout == native.stdout, f"stdout differs\n{detail}"
        return native, sandboxed

    return comparer


@pytest.mark.parametrize("network", NETWORKS)
def test_inet_socket_api(network: str, program: Builder, compare_net: Compare) -> None:
    native, _ = compare_net(network, [program("inet_socket.c")])
    assert native.stdout == "ok\n", native.output


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("mode", ["tcp4", "tcp6", "udp4", "udp6"])
def test_echo(mode: str, network: str, program: Builder, compare_net: Compare) -> None:
    native, _ = compare_net(network, [program("inet_echo.c"), mode])
    assert native.stdout.endswith(f"{mode} last: quit\nok\n"), native.output


@pytest.mark.parametrize("network", NETWORKS)
def test_epoll_server_100_clients(network: str, program: Builder, compare_net: Compare) -> None:
    native, _ = compare_net(network, [program("inet_epoll.c"), "100"])
    assert native.stdout == "accepted 100 served 100 finished 100\nok\n", native.output


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("family", ["4", "6"])
def test_bulk_transfer(family: str, network: str, program: Builder,
                       compare_net: Compare) -> None:
    """64 MiB through one connection, checked byte by byte and by checksum."""
    native, _ = compare_net(network, [program("inet_bulk.c"), "64", family])
    assert native.stdout.startswith("bytes 67108864 checksum "), native.output


@pytest.mark.parametrize("network", NETWORKS)
def test_server_socket_behaviour(network: str, program: Builder, compare_net: Compare) -> None:
    """What servers do to sockets: accept4 flags, TCP_DEFER_ACCEPT rounding, options an
    accepted socket inherits, sendfile from a file to a socket, epoll on listeners
    (EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE), SO_REUSEPORT groups sharing connections, a
    full accept queue, shutdown of a listener blocked in accept."""
    native, _ = compare_net(network, [program("inet_server.c")])
    assert native.stdout.endswith("ok\n") and "match" in native.stdout, native.output


@pytest.mark.parametrize("network", NETWORKS)
def test_splice_and_tee(network: str, program: Builder, compare_net: Compare) -> None:
    """splice(2) between pipes, TCP sockets and files, tee(2), and sendfile's EINVAL for
    a non-file input: no byte lost when an output takes less than was offered."""
    native, _ = compare_net(network, [program("splice.c")])
    assert native.stdout.endswith("ok\n") and "same bytes 0" not in native.stdout, \
        native.output


HTTP = r"""
set -e
mkdir -p /tmp/www && cd /tmp/www
head -c 300000 /usr/bin/python3 > blob
python3 -m http.server 0 --bind 127.0.0.1 > /tmp/www.log 2>&1 &
srv=$!
python3 - <<'PY'
import hashlib, re, time, urllib.request
for _ in range(300):
    m = re.search(r"port (\d+)", open("/tmp/www.log").read())
    if m:
        break
    time.sleep(0.05)
url = f"http://127.0.0.1:{m.group(1)}/blob"
data = urllib.request.urlopen(url, timeout=30).read()
want = hashlib.sha256(open("blob", "rb").read()).hexdigest()
print(len(data), hashlib.sha256(data).hexdigest() == want)
listing = urllib.request.urlopen(url[:-4], timeout=30).read().decode()
print("blob" in listing)
PY
kill $srv
wait $srv || true
"""


@pytest.mark.parametrize("network", NETWORKS)
def test_http_server_and_urllib(network: str, compare_net: Compare) -> None:
    native, _ = compare_net(network, ["/bin/sh", "-c", HTTP])
    assert native.stdout == "300000 True\nTrue\n", native.output


@pytest.mark.skipif(shutil.which("ping") is None, reason="iputils-ping not installed "
                    "(scripts/install.sh installs it)")
@pytest.mark.parametrize("network", ["sandbox", "none"])
def test_ping_loopback(network: str, run: Runner, pyvisor_cli: CliRunner) -> None:
    argv = ["ping", "-c", "3", "-i", "0.2", "127.0.0.1"]
    for r in (run("native", argv, timeout=120),
              pyvisor_cli(["do", f"--network={network}", "--", *argv], timeout=120)):
        assert r.returncode == 0, r.output
        assert "3 packets transmitted, 3 received, 0% packet loss" in r.stdout, r.output
        assert r.stdout.count("bytes from 127.0.0.1: icmp_seq=") == 3, r.output


def test_network_flag_rejects_unknown(pyvisor_cli: CliRunner) -> None:
    r = pyvisor_cli(["do", "--network=bridge", "--", "/bin/true"])
    assert r.returncode != 0 and "invalid choice" in r.stderr, r.output


IFACES = ("ip -o addr; ip -o link; ip route show table all; cat /proc/net/if_inet6; "
          "python3 -c 'import socket; print(socket.if_nameindex())'")


@pytest.mark.skipif(shutil.which("ip") is None or shutil.which("unshare") is None,
                    reason="iproute2/util-linux missing (scripts/install.sh installs them)")
def test_netlink_describes_loopback(run: Runner, pyvisor_cli: CliRunner) -> None:
    """ip addr/link/route (rtnetlink) and /proc/net/if_inet6 in the sandbox read as in a
    fresh network namespace whose lo is up (one made here, for the native side)."""
    native = run("native", ["unshare", "-n", "sh", "-c", "ip link set lo up; " + IFACES])
    sandboxed = pyvisor_cli(["do", "--", "sh", "-c", IFACES])
    assert native.returncode == 0 and sandboxed.returncode == 0, native.output + sandboxed.output
    assert sandboxed.stdout == native.stdout
    assert "inet 127.0.0.1/8 scope host lo" in sandboxed.stdout


PROCNET = r"""
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
port = s.getsockname()[1]
c = socket.create_connection(("127.0.0.1", port))
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(("::1", 0))
def rows(name):
    return [l.split() for l in open(f"/proc/net/{name}").read().splitlines()[1:]]
tcp = rows("tcp")
print("listen", any(r[1] == f"0100007F:{port:04X}" and r[3] == "0A" for r in tcp))
print("established", sum(1 for r in tcp if r[3] == "01" and f":{port:04X}" in r[1] + r[2]))
uport = u.getsockname()[1]
print("udp6", any(r[1].endswith(f":{uport:04X}") and r[1].startswith("0" * 24)
                  for r in rows("udp6")))
print("dev lo", any(l.strip().startswith("lo:") for l in open("/proc/net/dev")))
"""


def test_proc_net(compare_net: Compare) -> None:
    native, _ = compare_net("sandbox", ["/usr/bin/python3", "-c", PROCNET])
    assert native.stdout == "listen True\nestablished 2\nudp6 True\ndev lo True\n", native.output


PROC_UNIX = r"""
import os, socket, tempfile
d = tempfile.mkdtemp(dir="/tmp")
a = socket.socket(socket.AF_UNIX); a.bind("\0pyvisor-proc-net-%d" % os.getpid()); a.listen()
p = socket.socket(socket.AF_UNIX); p.bind(d + "/sock"); p.listen()
x, y = socket.socketpair()
c = socket.socket(socket.AF_UNIX); c.connect(a.getsockname())
lines = open("/proc/net/unix").read().splitlines()
print(lines[0])
for s in (a, p, x, c):
    ino = str(os.stat(f"/proc/self/fd/{s.fileno()}").st_ino)
    row = [l.split() for l in lines[1:] if l.split()[6] == ino][0]
    print(row[1:6], row[7:] == [] or row[7].replace(d, "D").replace(str(os.getpid()), "P"))
os.unlink(d + "/sock"); os.rmdir(d)
"""


def test_proc_net_unix(compare_net: Compare) -> None:
    native, _ = compare_net("sandbox", ["/usr/bin/python3", "-c", PROC_UNIX])
    assert "@pyvisor-proc-net-P" in native.stdout and "D/sock" in native.stdout, native.output


BUDGET = r"""
import socket, struct, threading, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(8)
pairs = []
for _ in range(3):
    c = socket.create_connection(l.getsockname()); s, _ = l.accept(); pairs.append((c, s))
# Fill most of the budget through the first connection, then send on the second: it must
# wait for the first one's reader, not forever.
c0, s0 = pairs[0]
c0.setblocking(False)
sent0 = 0
try:
    while True:
        sent0 += c0.send(b"x" * 65536)
except BlockingIOError:
    pass
c1, s1 = pairs[1]
# A blocking send returns early only if SO_SNDTIMEO (3 s) expires while it waits.
c1.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("qq", 3, 0))
def drain():
    time.sleep(0.5)         # let c1 block on the budget first
    got = 0
    while got < sent0:
        got += len(s0.recv(1 << 20))
t = threading.Thread(target=drain); t.start()
n = c1.send(b"y" * 300000)     # within c1's own window and send buffer (384 KiB)
print("sent", n)
got = 0
while got < n:
    got += len(s1.recv(1 << 20))
t.join()
print("ok", got)
"""


def test_stack_buffer_budget(run: Runner, pyvisor_cli: CliRunner) -> None:
    """A sender stopped by the stack-wide buffer budget (not by its own peer's window)
    resumes when another connection's reader frees the budget."""
    import os
    # 512 KiB: the first connection fills 384 KiB of it (its peer's 128 KiB window and
    # its 256 KiB send buffer), so the second one's 300000 bytes need the first reader.
    env = dict(os.environ, PYVISOR_TEST_NETSTACK_BUDGET=str(1 << 19))
    r = pyvisor_cli(["do", "--", "/usr/bin/python3", "-c", BUDGET], env=env, timeout=120)
    assert r.returncode == 0 and r.stdout == "sent 300000\nok 300000\n", r.output
