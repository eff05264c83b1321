"""Helpers and fixtures for the packet-path tests (registered by conftest.py): a pair of network namespaces joined by a veth, made
for one test and removed after it, and a way to run `pyvisor run` on a bundle whose
linux.namespaces network path is one side of it.

Only namespaces this fixture makes are touched: addresses (10.x.y.0/24 and a ULA
fd00::/64 picked at random) live inside them, and the host's root namespace is never
changed.  The "peer" namespace plays the host side of a container network (the bridge
or CNI end); the "box" namespace is the container's, whose eth0 the sandbox takes over.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from pvtest import Result, execute, pyvisor_env


@dataclass
class NetPair:
    """Two namespaces and a veth: `peer_if` in `peer_ns`, eth0 in `box_ns`."""

    tag: str
    peer_ns: str
    box_ns: str
    peer_if: str
    peer4: str
    box4: str
    peer6: str
    box6: str
    box_mac: str

    @property
    def box_path(self) -> str:
        return f"/run/netns/{self.box_ns}"

    def peer(self, argv: Sequence[str], timeout: float = 60) -> Result:
        """Runs argv in the peer namespace."""
        return execute(["ip", "netns", "exec", self.peer_ns, *argv], timeout=timeout)

    def peer_popen(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["ip", "netns", "exec", self.peer_ns, *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def box_addrs(self) -> str:
        """`ip addr show eth0` as the box namespace's own kernel has it."""
        return subprocess.run(["ip", "-n", self.box_ns, "addr", "show", "eth0"],
                              capture_output=True, text=True).stdout


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def netpair() -> Iterator[NetPair]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = f"{os.getpid() % 100000:05d}{random.randrange(1 << 16):04x}"
    a, b = random.randrange(200, 250), random.randrange(256)
    h = random.randrange(1 << 16)
    pair = NetPair(tag, f"pvpeer{tag}", f"pvbox{tag}", f"pv{tag}",
                   f"10.{a}.{b}.1", f"10.{a}.{b}.2", f"fd00:{a}:{b}:{h:x}::1",
                   f"fd00:{a}:{b}:{h:x}::2", "")
    made: list[str] = []
    try:
        for ns in (pair.peer_ns, pair.box_ns):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", pair.peer_if, "netns", pair.peer_ns, "type", "veth", "peer", "name",
            "eth0", "netns", pair.box_ns)
        for ns, dev, v4, v6 in ((pair.peer_ns, pair.peer_if, pair.peer4, pair.peer6),
                                (pair.box_ns, "eth0", pair.box4, pair.box6)):
            _ip("-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            _ip("-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", pair.box_ns, "route", "add", "default", "via", pair.peer4)
        link = subprocess.run(["ip", "-n", pair.box_ns, "-j", "link", "show", "eth0"],
                              capture_output=True, text=True, check=True).stdout
        pair.box_mac = json.loads(link)[0]["address"]
        yield pair
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def bundle_config(args: Sequence[str], netns: str,
                  sysctl: dict[str, str] | None = None) -> dict[str, object]:
    """A bundle over the host's root (read-only), whose network namespace is `netns`."""
    linux: dict[str, object] = {
        "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                       {"type": "uts"}, {"type": "network", "path": netns}]}
    if sysctl:
        linux["sysctl"] = dict(sysctl)
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": list(args),
                    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/"},
        "root": {"path": "/", "readonly": True},
        "hostname": "pyvisor-net",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": linux,
    }


class Box:
    """`pyvisor run` of a bundle in the box namespace."""

    def __init__(self, base: Path, name: str) -> None:
        self.base = base
        self.name = name
        self.bundle = base / f"bundle-{name}"
        self.bundle.mkdir(mode=0o755)
        self.state = base / "state"
        self.state.mkdir(exist_ok=True)
        self.log = base / f"{name}.log"

    def argv(self, args: Sequence[str], netns: str, network: str,
             sysctl: dict[str, str] | None = None) -> list[str]:
        (self.bundle / "config.json").write_text(json.dumps(bundle_config(args, netns,
                                                                          sysctl)))
        return [sys.executable, "-m", "pyvisor", "--root", str(self.state), "--log",
                str(self.log), f"--network={network}", "run", "--bundle", str(self.bundle),
                f"pv-{self.name}-{os.getpid()}"]

    def run(self, args: Sequence[str], netns: str, network: str = "sandbox",
            timeout: float = 120, sysctl: dict[str, str] | None = None) -> Result:
        return execute(self.argv(args, netns, network, sysctl), timeout=timeout,
                       env=pyvisor_env(None))

    def start(self, args: Sequence[str], netns: str, network: str = "sandbox"
              ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(args, netns, network), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=pyvisor_env(None),
                                start_new_session=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def finish(p: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str]:
    """Waits for a started sandbox (killing its process group, which we made, on timeout)."""
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        pytest.fail(f"sandbox did not finish in {timeout}s:\n{out.decode(errors='replace')}")
    return p.returncode, out.decode(errors="replace")


@pytest.fixture
def box(world_tmp: Path) -> Box:
    return Box(world_tmp, "box")
