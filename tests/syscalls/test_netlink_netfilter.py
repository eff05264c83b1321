"""Netlink sockets and netfilter: NETLINK_NETFILTER (pyvisor/sentry/socket/netlink/
netfilter.py, nftables.py), the iptables socket options, iptables-nft itself, and the
sockets of every netlink protocol served.
tests/programs/nftables.c builds, reads, breaks and deletes an nftables ruleset in a
network namespace of its own (unshare(CLONE_NEWNET), so the host's ruleset is never
touched) and prints every answer; Linux and pyvisor must print the same."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.pvtest import Builder, Comparer, Runner


@pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs CAP_SYS_ADMIN for "
                    "a network namespace of its own")
def test_nftables_ruleset(program: Builder, compare: Comparer) -> None:
    native, _ = compare([program("nftables.c")])
    assert native.stdout.endswith("ok\n")
    assert "ack seq=116 error=-17" in native.stdout     # the program reached its checks


@pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs CAP_SYS_ADMIN for "
                    "a network namespace of its own")
def test_iptables_socket_options(program: Builder, compare: Comparer) -> None:
    """IPT_SO_GET_INFO/GET_ENTRIES/GET_REVISION_* (pyvisor/sentry/socket/iptables.py):
    tests/programs/iptables_info.c reads the built-in tables of a fresh namespace."""
    native, _ = compare([program("iptables_info.c")])
    assert "nat: hooks=0x1b entries=5" in native.stdout
    assert native.stdout.endswith("ok\n")


# iptables(8) in Debian is iptables-nft: it talks NETLINK_NETFILTER (tables, chains,
# rules with payload/cmp/immediate expressions, x_tables matches through nft_compat,
# revision queries).  Run natively only inside a network namespace of its own.
IPTABLES_SCRIPT = """
iptables -A INPUT -p tcp --dport 22 -j DROP; echo rc=$?
iptables -N mine; echo rc=$?
iptables -A mine -s 10.0.0.0/8 -j ACCEPT; echo rc=$?
iptables -I INPUT -j mine; echo rc=$?
iptables -N mine; echo rc=$?
iptables -X mine; echo rc=$?
iptables -P FORWARD DROP; echo rc=$?
iptables -A FORWARD -p udp -m conntrack --ctstate NEW -j ACCEPT; echo rc=$?
iptables -S
iptables -L INPUT -n --line-numbers
iptables -D INPUT -j mine; iptables -F mine; iptables -X mine; echo rc=$?
iptables -S
iptables -t nat -A POSTROUTING -o lo -j MASQUERADE; echo rc=$?
iptables -t nat -A PREROUTING -j SNAT --to-source 10.0.0.1; echo rc=$?
iptables -t nat -S
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("iptables") is None
                    or shutil.which("unshare") is None,
                    reason="needs root, iptables and unshare for a namespace of its own")
def test_iptables_nft(run: Runner) -> None:
    native = run("native", ["unshare", "-n", "sh", "-c", IPTABLES_SCRIPT])
    sandboxed = run("pyvisor", ["sh", "-c", IPTABLES_SCRIPT])
    assert native.returncode == 0, native.output
    assert "-A INPUT -p tcp -m tcp --dport 22 -j DROP" in native.stdout
    assert sandboxed.returncode == native.returncode, sandboxed.output
    assert sandboxed.output == native.output


@pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs CAP_SYS_ADMIN for "
                    "a network namespace of its own")
def test_netlink_sockets(program: Builder, compare: Comparer) -> None:
    """Port ids, binds, peers and acks of NETLINK_ROUTE, NETLINK_NETFILTER and
    NETLINK_KOBJECT_UEVENT sockets (pyvisor/sentry/socket/netlink/__init__.py)."""
    native, _ = compare([program("netlink_sock.c")])
    assert "second: port=negative" in native.stdout
    assert native.stdout.endswith("ok\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs CAP_SYS_ADMIN for "
                    "a network namespace of its own")
def test_netlink_route_requests(program: Builder, compare: Comparer) -> None:
    """Route lookups, rules, link errors, memberships and credentials on NETLINK_ROUTE
    (pyvisor/sentry/socket/netlink/route.py)."""
    native, _ = compare([program("netlink_route.c")])
    assert "route to 10.1.2.3 (flags 0)\n  error -101" in native.stdout
    assert native.stdout.endswith("ok\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs CAP_SYS_ADMIN for "
                    "a network namespace of its own")
def test_proc_net_snmp(program: Builder, compare: Comparer) -> None:
    """/proc/net/snmp and netstat of the reader's namespace, and UDP counters moving
    (pyvisor/sentry/socket/netstack/procnet.py)."""
    native, _ = compare([program("proc_net_snmp.c")])
    assert "udp: NoPorts +1 OutDatagrams +2 InDatagrams +1" in native.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs CAP_SYS_ADMIN for "
                    "a network namespace of its own")
def test_netlink_socket_filters(program: Builder, compare: Comparer) -> None:
    """SO_ATTACH_FILTER/SO_DETACH_FILTER/SO_LOCK_FILTER on netlink sockets
    (pyvisor/sentry/socket/sockfilter.py)."""
    native, _ = compare([program("netlink_filter.c")])
    assert "without acks: [56 bytes, type 2, error -101]" in native.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs CAP_SYS_ADMIN for "
                    "a network namespace of its own")
def test_netlink_rules(program: Builder, compare: Comparer) -> None:
    """RTM_NEWRULE/RTM_DELRULE/RTM_GETRULE (pyvisor/sentry/socket/netlink/route.py)."""
    native, _ = compare([program("netlink_rules.c")])
    assert " err -17\n" in native.stdout and native.stdout.endswith("ok\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="the native side needs CAP_SYS_ADMIN for "
                    "a network namespace of its own")
def test_netlink_route_changes(program: Builder, compare: Comparer) -> None:
    """RTM_NEWADDR/DELADDR, RTM_NEWROUTE/DELROUTE, RTM_NEWLINK/SETLINK/DELLINK and their
    notifications (pyvisor/sentry/socket/netlink/route_change.py, route_link.py and
    netstack/devinet.py, vlink.py): addresses that work for bind/send, routes that
    connect meets, a veth carrying UDP between two namespaces, Linux's errnos for bad
    requests."""
    native, _ = compare([program("netlink_route_changes.c")])
    assert "datagram on lo's subnet from 10.1.2.3\n" in native.stdout
    assert "type 7 route: 0, connect: -113, del: 0\n" in native.stdout
    assert "echo over the veth: 6 across\n" in native.stdout
    assert native.stdout.endswith("ok\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="the native side drops to uid 65534 first")
def test_netlink_route_in_own_user_namespace(program: Builder, compare: Comparer) -> None:
    """An unprivileged `unshare -Urn` by hand: refused (EPERM) outside, root after the
    exec inside (kernel/creds.py at_exec: root is uid 0 of the credentials' namespace),
    so lo comes up and an address is added and bound (netlink's CAP_NET_ADMIN over the
    socket's namespace)."""
    native, _ = compare([program("netlink_userns.c")])
    assert "unprivileged: lo up -1\n" in native.stdout
    assert "inside: add 10.0.0.1/8 0\n" in native.stdout and native.stdout.endswith("ok\n")
