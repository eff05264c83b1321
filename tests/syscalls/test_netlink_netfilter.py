"""Netfilter: NETLINK_NETFILTER (pyvisor/sentry/socket/netlink/netfilter.py, nftables.py)
and the iptables socket options.
tests/programs/nftables.c builds, reads, breaks and deletes an nftables ruleset in a
network namespace of its own (unshare(CLONE_NEWNET), so the host's ruleset is never
touched) and prints every answer; Linux and pyvisor must print the same."""

from __future__ import annotations

import os

import pytest

from tests.pvtest import Builder, Comparer


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
