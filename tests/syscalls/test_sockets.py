"""AF_UNIX sockets, natively and under pyvisor: the self-checking
tests/programs/unix_socket.c, and Python's socket.socketpair and
multiprocessing.connection over a path in /tmp, compared with Linux; then
unit tests of pyvisor/sentry/socket/unix.py without ptrace."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Coroutine

import pytest

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.fd_table import FDTable
from pyvisor.sentry.kernel.memacct import Kind, SentryMemory
from pyvisor.sentry.kernel.sysctl import CoreSysctls
from pyvisor.sentry.kernel.task import RLIMIT_NOFILE, Credentials, default_rlimits
from pyvisor.sentry.waitqueue import EVENT_OUT
from pyvisor.sentry.socket.common import (MSG_DONTWAIT, MSG_NOSIGNAL, SHUTDOWN_MASK, SOCK_DGRAM,
                                          SOCK_STREAM, Control)
from pyvisor.sentry.socket.unix import (FAMILY_ONLY, MSG_OVERHEAD, UnixSocket, new_socket,
                                        new_socketpair)
from pyvisor.sentry.vfs.file import FileDescription

if TYPE_CHECKING:
    from conftest import Builder, Comparer, Runner

WHERE = ["native", "pyvisor"]


@pytest.mark.parametrize("where", WHERE)
def test_unix_socket_program(where: str, program: Builder, run: Runner) -> None:
    result = run(where, [program("unix_socket.c")])
    assert result.returncode == 0, result.output
    assert "ok" in result.stdout.split(), result.output


@pytest.mark.parametrize("where", WHERE)
def test_unix_socket_program_static(where: str, program: Builder, run: Runner) -> None:
    result = run(where, [program("unix_socket.c", static=True)])
    assert result.returncode == 0, result.output
    assert "ok" in result.stdout.split(), result.output


PYTHON = r"""
import os, socket, stat, tempfile
from multiprocessing.connection import Client, Listener

a, b = socket.socketpair()
a.sendall(b"ping")
print(b.recv(16), a.family.name, a.type.name, stat.S_ISSOCK(os.fstat(a.fileno()).st_mode))
print(os.readlink(f"/proc/self/fd/{a.fileno()}").startswith("socket:["))
b.close()
print(a.recv(16))

d = tempfile.mkdtemp(dir="/tmp")
path = os.path.join(d, "sock")
with Listener(path, family="AF_UNIX") as listener:
    print(stat.S_ISSOCK(os.stat(path).st_mode), listener.address == path)
    pid = os.fork()
    if pid == 0:
        with Client(path, family="AF_UNIX") as c:
            c.send({"n": 41, "data": list(range(5))})
            c.send_bytes(b"x" * 100000)
            print("child got", c.recv())
        os._exit(0)
    with listener.accept() as conn:
        msg = conn.recv()
        print("parent got", msg)
        print("bytes", len(conn.recv_bytes()))
        conn.send(msg["n"] + 1)
    _, status = os.waitpid(pid, 0)
    print("child status", status)
print(os.path.exists(path))
os.rmdir(d)
"""


def test_python_sockets(compare: Comparer) -> None:
    native, sandboxed = compare(["/usr/bin/python3", "-c", PYTHON], timeout=300)
    assert native.returncode == 0, native.output
    assert "parent got {'n': 41, 'data': [0, 1, 2, 3, 4]}" in sandboxed.stdout
    assert "child got 42" in sandboxed.stdout


def test_families(compare: Comparer) -> None:
    """AF_INET is served; a family Linux does not know gets EAFNOSUPPORT."""
    script = ("import socket\n"
              "socket.socket(socket.AF_INET, socket.SOCK_STREAM).close(); print('inet ok')\n"
              "try:\n"
              "    socket.socket(200, socket.SOCK_STREAM)\n"
              "except OSError as e:\n"
              "    print('family 200:', e.errno)\n")
    native, _ = compare(["/usr/bin/python3", "-c", script], timeout=300)
    assert native.stdout.split("\n")[:2] == ["inet ok", "family 200: 97"], native.output


# -- the AF_UNIX layer without ptrace: a fake task, coroutines driven by hand ----------------------


class _Kernel:
    """Just enough kernel: an identity for the abstract namespace, a clock and the
    Sentry memory account that queued messages are charged to."""

    def __init__(self) -> None:
        self.memory = SentryMemory()
        self.net_core = CoreSysctls()       # net.core.{w,r}mem_max: Linux's defaults

    def now(self) -> int:
        return 0


def _task(kernel: _Kernel, tgid: int = 7, uid: int = 1000) -> Any:
    creds = Credentials(uid, uid, uid, uid, 100, 100, 100, 100)
    return SimpleNamespace(kernel=kernel, tg=SimpleNamespace(tgid=tgid, rlimits=default_rlimits()),
                           creds=creds, fd_table=FDTable(), fs=SimpleNamespace(umask=0o022))


def _unix(f: FileDescription) -> UnixSocket:
    assert isinstance(f.impl, UnixSocket)
    return f.impl


def _now(coro: Coroutine[Any, Any, Any]) -> Any:
    """Runs a socket coroutine that must not sleep."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the operation blocked")


def test_unit_stream_gluing_and_flow_control() -> None:
    k = _Kernel()
    t1, t2 = _task(k, 7), _task(k, 8)
    fa, fb = new_socketpair(t1, SOCK_STREAM, 0, 0)
    a, b = _unix(fa), _unix(fb)
    assert _now(a.sendmsg(t1, fa, b"abc", MSG_NOSIGNAL, None, Control())) == 3
    assert _now(a.sendmsg(t2, fa, b"def", MSG_NOSIGNAL, None, Control())) == 3
    assert a.wmem == 6 + 2 * MSG_OVERHEAD
    # Without SO_PASSCRED writes from different senders glue together...
    r = _now(b.recvmsg(t1, fb, 4, 0, False))
    assert (r.data, r.creds, a.wmem) == (b"abcd", None, 2 + MSG_OVERHEAD)
    assert _now(b.recvmsg(t1, fb, 10, 0, False)).data == b"ef"
    # ...with it, a read stops where the credentials change.
    b.passcred = True
    _now(a.sendmsg(t1, fa, b"abc", MSG_NOSIGNAL, None, Control()))
    _now(a.sendmsg(t2, fa, b"def", MSG_NOSIGNAL, None, Control()))
    r = _now(b.recvmsg(t1, fb, 10, 0, False))
    assert (r.data, r.creds) == (b"abc", (7, 1000, 100))
    assert _now(b.recvmsg(t1, fb, 10, 0, False)).creds == (8, 1000, 100)
    assert a.wmem == 0
    # Filling the send buffer: EAGAIN, and POLLOUT only once drained below a quarter.
    with pytest.raises(SyscallError) as e:
        for _ in range(1000):
            _now(a.sendmsg(t1, fa, b"x" * 4096, MSG_DONTWAIT, None, Control()))
    assert e.value.errno == Errno.EAGAIN
    assert a.wmem >= a.sndbuf and not a.readiness(fa, EVENT_OUT)
    assert k.memory.by_kind[Kind.SOCKET] == a.wmem
    while b.queue:
        _now(b.recvmsg(t1, fb, 1 << 20, 0, False))
    assert a.wmem == 0 and a.readiness(fa, EVENT_OUT) == EVENT_OUT
    assert k.memory.used == 0


def test_unit_rights_are_released_with_the_queue() -> None:
    k = _Kernel()
    t = _task(k)
    fa, fb = new_socketpair(t, SOCK_DGRAM, 0, 0)
    fx, fy = new_socketpair(t, SOCK_STREAM, 0, 0)
    ctl = Control(rights=[fx])
    fx.incref()                              # the message's reference
    assert _now(_unix(fa).sendmsg(t, fa, b"m", 0, None, ctl)) == 1
    assert ctl.rights is None and fx.refs == 2
    fx.decref()                              # our own "fd"
    assert not _unix(fx).dead                # still in flight
    fb.decref()                              # the receiver goes away unread
    assert _unix(fx).dead and _unix(fy).shutdown_flags == SHUTDOWN_MASK
    assert _unix(fa).ns.inflight_total == 0


def test_unit_files_in_flight_are_limited() -> None:
    """Without a garbage collector, what a user can keep in flight is bounded
    (Linux: too_many_unix_fds against RLIMIT_NOFILE)."""
    t = _task(_Kernel())
    t.tg.rlimits[RLIMIT_NOFILE][0] = 3
    fa, fb = new_socketpair(t, SOCK_DGRAM, 0, 0)
    fx, _ = new_socketpair(t, SOCK_DGRAM, 0, 0)
    for _ in range(4):                       # checked before adding, as Linux
        fx.incref()
        _now(_unix(fa).sendmsg(t, fa, b"", 0, None, Control(rights=[fx])))
    fx.incref()
    ctl = Control(rights=[fx])
    with pytest.raises(SyscallError) as e:
        _now(_unix(fa).sendmsg(t, fa, b"", 0, None, ctl))
    assert e.value.errno == Errno.ETOOMANYREFS
    ctl.release()
    r = _now(_unix(fb).recvmsg(t, fb, 1, 0, False))
    assert r.rights == [fx] and _unix(fa).ns.inflight == {1000: 3}
    r.drop_control()


def test_unit_abstract_names_are_per_kernel_and_type() -> None:
    k1, k2 = _Kernel(), _Kernel()
    t1, t2 = _task(k1), _task(k2)
    name = FAMILY_ONLY + b"\0abstract"
    s1 = new_socket(t1, SOCK_STREAM, 0, 0)
    _unix(s1).bind(t1, name)
    _unix(new_socket(t1, SOCK_DGRAM, 0, 0)).bind(t1, name)    # another type: another name
    _unix(new_socket(t2, SOCK_STREAM, 0, 0)).bind(t2, name)   # another sandbox
    with pytest.raises(SyscallError) as e:
        _unix(new_socket(t1, SOCK_STREAM, 0, 0)).bind(t1, name)
    assert e.value.errno == Errno.EADDRINUSE
    s1.decref()
    _unix(new_socket(t1, SOCK_STREAM, 0, 0)).bind(t1, name)   # free again
