"""linux.sysctl (runtime/sysctl.py, sentry/kernel/sysctl.py), compared with runc on the
same bundle: the modelled sysctls are applied and /proc/sys inside shows them; runc's
refusals are pyvisor's, one line each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from test_lifecycle import Runtime, _cid, make_bundle, rt  # noqa: F401

APPLIED = {"net.ipv4.ip_unprivileged_port_start": "80",
           "net.ipv4.ping_group_range": "2000 2000",
           "net.ipv4.ip_local_port_range": "40000 40009",
           "net.core.somaxconn": "77",
           "kernel.domainname": "example.test"}


def _bundle(world_tmp: Path, program: Any, sysctl: dict[str, str], uid: int = 1000,
            groups: tuple[int, ...] = ()) -> Path:
    bundle = make_bundle(world_tmp, ["/probe"])
    shutil.copy2(program("sysctl_probe", static=True), bundle / "rootfs" / "probe")
    doc = json.loads((bundle / "config.json").read_text())
    doc["process"]["user"] = {"uid": uid, "gid": uid, "additionalGids": list(groups)}
    doc["linux"]["sysctl"] = sysctl
    (bundle / "config.json").write_text(json.dumps(doc))
    return bundle


def _run(rt: Runtime, bundle: Path) -> Any:
    return rt("run", "--bundle", str(bundle), _cid())


@pytest.mark.parametrize("groups", [(), (2000,)])
def test_applied_sysctls_as_runc(world_tmp: Path, program: Any,
                                 groups: tuple[int, ...]) -> None:
    outs = []
    for name in ("runc", "pyvisor"):
        rt = Runtime(name, world_tmp / name)
        r = _run(rt, _bundle(world_tmp / name, program, APPLIED, groups=groups))
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[1] == outs[0]
    assert "bind 80: ok" in outs[1] and "bind 79: Permission denied" in outs[1]
    assert "ephemeral in 40000-40009: yes" in outs[1]
    assert ("ping socket: ok" if groups else "ping socket: Permission denied") in outs[1]


def test_defaults_without_sysctls(world_tmp: Path, program: Any) -> None:
    rt = Runtime("pyvisor", world_tmp)
    r = _run(rt, _bundle(world_tmp, program, {}))
    assert r.returncode == 0, r.stderr
    assert "bind 80: Permission denied" in r.stdout
    assert "net/ipv4/ip_unprivileged_port_start: 1024" in r.stdout
    assert "ping socket: ok" in r.stdout          # gVisor's default range: every group


@pytest.mark.parametrize("sysctl,why", [
    ({"kernel.hostname": "x"}, 'sysctl "kernel.hostname" is not allowed as it conflicts'),
    ({"vm.swappiness": "1"}, 'sysctl "vm.swappiness" is not in a separate kernel namespace'),
    ({"no.such.thing": "1"}, 'sysctl "no.such.thing" is not in a separate kernel namespace'),
])
def test_refused_as_runc(rt: Runtime, world_tmp: Path, program: Any,
                         sysctl: dict[str, str], why: str) -> None:
    r = _run(rt, _bundle(world_tmp, program, sysctl))
    assert r.returncode != 0 and why in r.stderr.replace('\\"', '"'), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("sysctl", [{"net.ipv4.ip_local_port_range": "9 8"},
                                    {"net.ipv4.ping_group_range": "-1 5"},
                                    {"net.core.somaxconn": "lots"}])
def test_bad_value_refused(rt: Runtime, world_tmp: Path, program: Any,
                           sysctl: dict[str, str]) -> None:
    """runc fails writing it (EINVAL); pyvisor before anything starts."""
    r = _run(rt, _bundle(world_tmp, program, sysctl))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_unmodelled_net_sysctl_warns(world_tmp: Path, program: Any) -> None:
    rt = Runtime("pyvisor", world_tmp)
    r = _run(rt, _bundle(world_tmp, program, {"net.ipv4.tcp_keepalive_time": "60"}))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n") == 1 and "net.ipv4.tcp_keepalive_time" in r.stderr \
        and "not modelled" in r.stderr



@pytest.mark.parametrize("value,shown", [("5 3", "1\t0"), ("1000", "1000\t2147483647"),
                                         ("4 9 17", "4\t9")])
def test_ping_group_range_as_linux_reads_it(world_tmp: Path, program: Any, value: str,
                                            shown: str) -> None:
    """Linux's parsing of ping_group_range: a reversed pair is "no group", one value
    keeps the second (here the sandbox's default), a third is ignored."""
    rt = Runtime("pyvisor", world_tmp)
    r = _run(rt, _bundle(world_tmp, program, {"net.ipv4.ping_group_range": value}))
    assert r.returncode == 0, r.stderr
    assert f"net/ipv4/ping_group_range: {shown}\n" in r.stdout
