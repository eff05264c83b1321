"""TCP semantics of the sandbox's own stack, compared with Linux: the same C program
(tests/programs) natively and under `pyvisor do` (--network=sandbox, loopback), with
identical output.

  inet_tcp_ports.c   FIN_WAIT2 orphans and TCP_LINGER2, connect(2) to a four-tuple in
                     use (EADDRNOTAVAIL), self-connects, a SYN meeting a stale
                     connection of its four-tuple, IPv6/IPv4 address-family mismatches.
  inet_tcp_opts.c    TCP_CORK and MSG_MORE (held partial segments, the 200 ms ceiling),
                     TCP_WINDOW_CLAMP's floor, shutdown(2) of a connecting socket,
                     SO_PASSCRED on an inet socket, send and receive buffers (the
                     autotuned send buffer, a peer that does not read, a reset
                     cutting a blocking send short), recvmsg's TCP_INQ and
                     SO_TIMESTAMP control messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pvtest import Builder, Comparer


@pytest.mark.parametrize("args", [["4", "slow"], ["6"]])
def test_tcp_ports(args: list[str], program: Builder, compare: Comparer) -> None:
    native, _ = compare([program("inet_tcp_ports"), *args])
    out = native.stdout
    assert out.endswith("ok\n"), out
    assert "fin_wait2: bind at once: EADDRINUSE" in out, out
    assert "reuse: connect c2 to c1's peer: EADDRNOTAVAIL" in out, out
    assert 'self: read 5 "hello"' in out, out
    if "6" in args:
        assert "connect to a v4-mapped address: ENETUNREACH" in out, out
    if "slow" in args:
        assert "fin_wait2: bind after the linger2 timeout: 0" in out, out


@pytest.mark.parametrize("family", ["4", "6"])
def test_tcp_opts(family: str, program: Builder, compare: Comparer) -> None:
    native, _ = compare([program("inet_tcp_opts"), family])
    out = native.stdout
    assert out.endswith("ok\n"), out
    assert "cork: held EAGAIN, outq 3" in out and "cork: after the ceiling 3 bytes" in out, out
    assert "clamp 1: 0, reads 1152" in out, out
    assert "revents HUP ERR, SO_ERROR ECONNRESET" in out, out
    assert "non-blocking send of 3 x sndbuf: partial 1" in out, out
    assert "next send -1 ECONNRESET" in out, out
    assert "inq: recvmsg 512 flags 0: TCP_INQ 512 (len 20)" in out, out
    assert "at EOF: recvmsg 0 flags 0: TCP_INQ 1" in out, out
