"""Socket behaviour beyond plain data transfer, compared with Linux: the same C program
(tests/programs) natively and under `pyvisor do --network=N`, with identical output.

  inet_linger.c   SO_LINGER {1, 0} resets (the peer sees ECONNRESET); {1, N} makes
                  close(2) wait until the data is acknowledged or N seconds pass;
  inet_oob.c      urgent data: MSG_OOB, SO_OOBINLINE, SIOCATMARK, FIONREAD at the
                  mark, POLLPRI, and the EINVAL/ENOTCONN/EOPNOTSUPP cases;
  inet_mcast.c    IP multicast over loopback: one sender, two receivers sharing a port
                  (SO_REUSEADDR), IP_ADD/DROP_MEMBERSHIP, IP_MULTICAST_LOOP/TTL/IF,
                  IPV6_JOIN_GROUP;
  inet_raw.c      raw sockets: ICMP echo over SOCK_RAW (and IP_HDRINCL), ICMPv6 echo,
                  raw UDP, and socket(2)'s permission and protocol checks.

The programs print only what Linux makes deterministic (no timings but loose bounds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import pytest

if TYPE_CHECKING:
    from pvtest import Builder, CliRunner, Result, Runner

NETWORKS = ["sandbox", "host"]


def compare_net(run: Runner, cli: CliRunner, network: str, argv: Sequence[str],
                timeout: float = 180) -> tuple[Result, Result]:
    native = run("native", argv, timeout=timeout)
    boxed = cli(["do", f"--network={network}", "--", *argv], timeout=timeout)
    detail = (f"{list(argv)!r} --network={network}\n=== native ===\n{native.output}"
              f"=== pyvisor ===\n{boxed.output}")
    assert boxed.returncode == native.returncode, detail
    assert boxed.stdout == native.stdout, f"stdout differs\n{detail}"
    assert native.stdout.endswith("ok\n"), detail
    return native, boxed


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("family", ["4", "6"])
def test_so_linger(family: str, network: str, program: Builder, run: Runner,
                   pyvisor_cli: CliRunner) -> None:
    native, _ = compare_net(run, pyvisor_cli, network, [program("inet_linger"), family])
    out = native.stdout
    assert "linger 0: then -1 ECONNRESET" in out, out
    assert "waited >= 1.5 s: yes" in out and "peer got all bytes: yes" in out, out


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("family", ["4", "6"])
def test_urgent_data(family: str, network: str, program: Builder, run: Runner,
                     pyvisor_cli: CliRunner) -> None:
    native, _ = compare_net(run, pyvisor_cli, network, [program("inet_oob"), family])
    assert '1 oob 1 "X"' in native.stdout and "1 atmark 1" in native.stdout, native.stdout


@pytest.mark.parametrize("network", NETWORKS)
def test_multicast_loopback(network: str, program: Builder, run: Runner,
                            pyvisor_cli: CliRunner) -> None:
    native, _ = compare_net(run, pyvisor_cli, network, [program("inet_mcast")])
    out = native.stdout
    assert "  r1: m1\n  r2: m1\n  r3: m1\n" in out, out
    assert "v6 join r1 again: EADDRINUSE" in out, out


def test_raw_sockets(program: Builder, run: Runner, pyvisor_cli: CliRunner) -> None:
    """Only under the sandbox's own stack: --network=host gives no CAP_NET_RAW on the host
    (socket(SOCK_RAW) is EPERM there, as the hostinet docstring says)."""
    native, _ = compare_net(run, pyvisor_cli, "sandbox", [program("inet_raw")])
    out = native.stdout
    assert "icmp type 8 code 0 seq 1" in out and "icmp type 0 code 0 seq 1" in out, out
    assert "type 129 code 0 seq 6" in out and "as nobody: -1 EPERM" in out, out
