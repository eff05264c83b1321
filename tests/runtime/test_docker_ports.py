"""`docker run -p 8080:80` on Docker's default bridge network with pyvisor as the runtime.

dockerd runs in a network namespace the test makes (`ip netns add`; `nsenter --net`),
with its state, exec root, socket and containerd of its own under a temp dir (as
test_docker.py), and with its networking on: the docker0 bridge, iptables NAT rules
and docker-proxy all live in that namespace, and the test checks the machine's own
namespace is unchanged afterwards.

Docker does not hand the runtime a network namespace path: the runtime makes a new
one, and libnetwork's prestart hook (`libnetwork-setkey`) moves the veth end into
/proc/PID/ns/net of the container's pid (pyvisor's monitor, whose namespace the
Sentry shares) and configures it, after the Sentry booted.  `pyvisor start` then takes
over what the hook put there (runtime/netns.py, take_started) and hands the packet
sockets to the Sentry with the start request.  nginx inside the sandbox is then
fetched from 127.0.0.1:8080, the bridge address and the container's address.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from engines import (EngineHostDirs, kill_leftovers, stop_process, unmount_under,
                     wait_for_socket, write_launcher)
from test_podman_ports import PAGE, fetch, host_network_view, nginx_image_tar

pytestmark = pytest.mark.engines

IMAGE = "pv-nginx:test"


class DockerNet:
    def __init__(self, base: Path, netns: str) -> None:
        self.base = base
        self.netns = netns
        self.sock = base / "docker.sock"
        self.client = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else \
            shutil.which("docker") or "docker"

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.client, "--host", f"unix://{self.sock}", *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def inside(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", *argv],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture
def docker_net() -> Iterator[DockerNet]:
    for tool in ("dockerd", "containerd", "nsenter", "curl", "nginx"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/install.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("docker's bridge network needs root")
    before = host_network_view()
    host_dirs = EngineHostDirs("/run/docker/plugins", "/run/docker", "/run/containerd/s",
                               "/run/containerd")
    netns = f"pvdn{os.getpid() % 100000}{random.randrange(1 << 16):04x}"
    subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True,
                   capture_output=True)
    base = Path(tempfile.mkdtemp(prefix="pvdn-", dir="/tmp"))
    base.chmod(0o755)
    launcher = write_launcher(base / "pyvisor-launcher")
    config = base / "daemon.json"
    config.write_text(json.dumps({
        "runtimes": {"pyvisor": {"path": str(launcher)}},
        "deprecated-key-path": str(base / "key.json"),
    }))
    log = base / "dockerd.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", "dockerd", "--config-file", str(config),
             "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
             "--pidfile", str(base / "docker.pid"), "-H", f"unix://{base / 'docker.sock'}",
             "--storage-driver", "vfs", "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    d = DockerNet(base, netns)
    try:
        wait_for_socket(d.sock, proc, log)
        r = d("import", "--change", "CMD /usr/sbin/nginx", str(nginx_image_tar(base)), IMAGE)
        assert r.returncode == 0, r.stderr
        yield d
    finally:
        d("rm", "--force", *d("ps", "-aq").stdout.split())
        stop_process(proc.pid, timeout=30)
        procs = kill_leftovers(base)
        left = unmount_under(base)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        host_dirs.remove()
        assert left == [], f"dockerd left mounts: {left}"
        assert procs == [], f"dockerd left processes: {procs}"
    after = host_network_view()
    assert after == before, "the host's network namespace changed"


def test_docker_publish_serves_nginx(docker_net: DockerNet) -> None:
    d = docker_net
    r = d("run", "-d", "--runtime=pyvisor", "--name", "web", "-p", "8080:80", IMAGE)
    assert r.returncode == 0, r.stderr
    r = d("inspect", "--format",
          "{{.NetworkSettings.IPAddress}} {{.NetworkSettings.Gateway}} {{.State.Status}}", "web")
    assert r.returncode == 0, r.stderr
    ip, gateway, status = r.stdout.split()
    assert status == "running", r.stdout
    for url in ("http://127.0.0.1:8080/", f"http://{gateway}:8080/", f"http://{ip}/"):
        r = fetch(d.inside, url)
        assert r.returncode == 0 and r.stdout == PAGE, (url, r.stdout, r.stderr,
                                                         d("logs", "web").stderr)
    # Inside, eth0 is the Sentry's; the namespace's own kernel holds no address on it.
    r = d("exec", "web", "/bin/sh", "-c", "ip addr show eth0")
    assert f"inet {ip}/" in r.stdout, r.stdout + r.stderr
    pid = d("inspect", "--format", "{{.State.Pid}}", "web").stdout.strip()
    r = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-o", "addr", "show",
                        "eth0"], capture_output=True, text=True)
    assert r.returncode == 0 and "inet " not in r.stdout, r.stdout + r.stderr
    r = d("stop", "--time", "5", "web")
    assert r.returncode == 0, r.stderr
    assert d("rm", "web").returncode == 0
