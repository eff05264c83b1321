"""`podman run -p 8080:80` with pyvisor as the runtime: nginx inside the sandbox, served
to "the host" through podman's bridge network, its veth and netavark's port forwarding.

The host here is a network namespace the test makes (`ip netns add`, lo up): podman,
netavark (bridge, veth, iptables/nftables DNAT rules, sysctls) and curl all run in it
through `nsenter --net`, so the machine's own namespace is never touched; the test
checks that by comparing `ip link`/`ip addr` and the firewall rules of the host's
namespace before and after.  Podman keeps its storage, runroot and netavark state
under a temp dir, as test_podman.py.  The container's network namespace is podman's;
the sandbox takes over its eth0 (runtime/netns.py), so the page comes from the
Sentry's own TCP/IP stack: fetched from 127.0.0.1:8080 (netavark's DNAT from
localhost, masqueraded to the bridge), from the bridge address, and from the
container's own address.  The image is built here: a busybox rootfs with the host's
nginx (Debian's package) and the libraries it links.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from engines import busybox_rootfs, kill_leftovers, unmount_under, write_launcher

pytestmark = pytest.mark.engines

IMAGE = "localhost/pyvisor-nginx:test"
NGINX_CONF = """\
daemon off;
user root root;
worker_processes 1;
error_log stderr notice;
pid /tmp/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    default_type text/html;
    server {
        listen 80;
        listen [::]:80;
        root /srv;
    }
}
"""
PAGE = "<h1>served by nginx in pyvisor</h1>\n"


def _libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/"):
                libs.append(p)
                break
    return libs


def nginx_image_tar(base: Path) -> Path:
    rootfs = busybox_rootfs(base / "nginx-rootfs")
    for path in ["/usr/sbin/nginx", *_libraries("/usr/sbin/nginx")]:
        dest = rootfs / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), dest)
    (rootfs / "etc" / "nginx").mkdir(parents=True)
    (rootfs / "etc" / "nginx" / "nginx.conf").write_text(NGINX_CONF)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    (rootfs / "srv").mkdir()
    (rootfs / "srv" / "index.html").write_text(PAGE)
    for d in ("var/log/nginx", "var/lib/nginx", "root"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    out = base / "nginx-rootfs.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(rootfs, arcname=".")
    return out


def host_network_view() -> str:
    """What the machine's own network namespace looks like: links, addresses, routes
    and the firewall rules (both iptables front ends and nftables)."""
    parts = []
    for argv in (["ip", "-o", "link"], ["ip", "-o", "addr"], ["ip", "route"],
                 ["ip", "-6", "route"], ["iptables-save"], ["ip6tables-save"],
                 ["nft", "list", "ruleset"]):
        if shutil.which(argv[0]) is None:
            continue
        r = subprocess.run(argv, capture_output=True, text=True)
        # Counters and the save tools' timestamps change by themselves.
        lines = [re.sub(r"counter packets \d+ bytes \d+", "counter", ln)
                 for ln in r.stdout.splitlines() if not ln.startswith("#")]
        parts.append(f"$ {' '.join(argv)}\n" + "\n".join(
            ln.split(" [", 1)[0] if ln.startswith(":") else ln for ln in lines))
    return "\n".join(parts)


class PodmanNet:
    """podman in a network namespace of its own, with state under `base`."""

    def __init__(self, base: Path, netns: str) -> None:
        self.base = base
        self.netns = netns
        self.state = base / "runtime-state"
        launcher = write_launcher(base / "pyvisor-launcher", "--root", str(self.state))
        self.argv = ["nsenter", f"--net=/run/netns/{netns}", "podman",
                     "--root", str(base / "storage"), "--runroot", str(base / "run"),
                     "--tmpdir", str(base / "tmp"), "--storage-driver", "vfs",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "none",
                     "--runtime", str(launcher)]

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def inside(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command in the test's "host" namespace."""
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", *argv],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture
def podman_net() -> Iterator[PodmanNet]:
    for tool in ("podman", "conmon", "nsenter", "curl", "nginx"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/install.sh installs it)")
    if not any(os.path.exists(p) for p in ("/usr/lib/podman/netavark", "/usr/libexec/podman/netavark")):
        pytest.skip("netavark is not installed (scripts/install.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("podman's bridge networks need root")
    before = host_network_view()
    netns = f"pvpm{os.getpid() % 100000}{random.randrange(1 << 16):04x}"
    subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
    base = Path(tempfile.mkdtemp(prefix="pvpn-", dir="/tmp"))   # podman: runroot <= 50 chars
    base.chmod(0o755)
    pm = PodmanNet(base, netns)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True,
                       capture_output=True)
        r = pm("import", "--change", "CMD=/usr/sbin/nginx", str(nginx_image_tar(base)), IMAGE)
        assert r.returncode == 0, r.stderr
        yield pm
    finally:
        pm("rm", "--all", "--force", "--time", "0")
        procs = kill_leftovers(base)
        left = unmount_under(base)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        assert left == [], f"podman left mounts: {left}"
        assert procs == [], f"podman left processes: {procs}"
    after = host_network_view()
    assert after == before, "the host's network namespace changed"


def fetch(inside: Callable[..., subprocess.CompletedProcess[str]], url: str,
          tries: int = 60) -> subprocess.CompletedProcess[str]:
    """curl in the test's namespace (through `inside`), retried while nginx starts in
    the sandbox.  The Docker test uses it too."""
    r = inside("curl", "-sS", "--max-time", "10", url)
    for _ in range(tries):
        if r.returncode == 0:
            break
        time.sleep(0.5)
        r = inside("curl", "-sS", "--max-time", "10", url)
    return r


def test_podman_publish_serves_nginx(podman_net: PodmanNet) -> None:
    pm = podman_net
    r = pm("run", "-d", "--name", "web", "-p", "8080:80", "--ipc", "host", IMAGE)
    assert r.returncode == 0, r.stderr
    r = pm("inspect", "--format", "{{.NetworkSettings.IPAddress}} {{.State.Status}}", "web")
    assert r.returncode == 0, r.stderr
    ip, status = r.stdout.split()
    assert status == "running", r.stdout
    gateway = pm("inspect", "--format", "{{.NetworkSettings.Gateway}}", "web").stdout.strip()
    for url in ("http://127.0.0.1:8080/", f"http://{gateway}:8080/", f"http://{ip}/"):
        r = fetch(pm.inside, url)
        assert r.returncode == 0 and r.stdout == PAGE, (url, r.stdout, r.stderr,
                                                         pm("logs", "web").stderr)
    # The sandbox answered, not the container namespace's kernel: inside, eth0 has the
    # address (the Sentry's stack); in the namespace itself it has none any more.
    r = pm("inspect", "--format", "{{.OCIRuntime}} {{.NetworkSettings.SandboxKey}}", "web")
    runtime, netns = r.stdout.split()
    assert runtime.endswith("pyvisor-launcher"), r.stdout
    r = pm("exec", "web", "/bin/sh", "-c", "ip addr show eth0")
    assert f"inet {ip}/" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(["nsenter", f"--net={netns}", "ip", "-o", "addr", "show", "eth0"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "inet " not in r.stdout, r.stdout + r.stderr
    r = pm.inside("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                  "http://127.0.0.1:8080/missing")
    assert r.stdout == "404", r.stdout + r.stderr
    r = pm("stop", "--time", "5", "web")
    assert r.returncode == 0, r.stderr
    assert pm("rm", "web").returncode == 0
    # The forwarding is gone with the container.
    r = pm.inside("curl", "-sS", "--max-time", "3", "http://127.0.0.1:8080/")
    assert r.returncode != 0, r.stdout
