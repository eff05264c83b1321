"""Helpers shared by the container-engine tests (podman, docker, containerd).

Each engine runs pyvisor through a launcher script generated for the checkout the
tests run from (so a clean clone in CI tests itself), and imports a busybox-static
image built here: no registry is ever reached.  Engines are started with state of
their own under a temp dir; `unmount_under` cleans up any mount they leave there.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from pvtest import REPO

BUSYBOX = "/bin/busybox"
IMAGE_DIRS = ("proc", "tmp", "dev", "etc", "sys", "run")


def write_launcher(path: Path, *global_flags: str) -> Path:
    """A launcher running this checkout's pyvisor with Debian's python3 (as install.sh's)."""
    flags = "".join(f" {f}" for f in global_flags)
    path.write_text("#!/bin/sh\n"
                    f"PYTHONPATH={REPO} exec /usr/bin/python3 -m pyvisor{flags} \"$@\"\n")
    path.chmod(0o755)
    return path


def busybox_rootfs(dest: Path) -> Path:
    """A busybox-static tree: /bin/busybox, an applet symlink per applet, empty dirs."""
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for name in applets:
        if name != "busybox":
            (dest / "bin" / name).symlink_to("busybox")
    for d in IMAGE_DIRS:
        (dest / d).mkdir()
    (dest / "tmp").chmod(0o1777)
    return dest


def busybox_tar(base: Path) -> Path:
    """The busybox tree as a tarball (for `podman import` / `docker import`)."""
    rootfs = busybox_rootfs(base / "bb-rootfs")
    out = base / "bb-rootfs.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(rootfs, arcname=".")
    return out


def busybox_oci_archive(base: Path, name: str) -> Path:
    """An OCI image layout archive of the busybox tree (for `ctr images import`), named
    `name` by the io.containerd.image.name annotation."""
    layer = busybox_tar(base).read_bytes()
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}
    gz = gzip.compress(layer, mtime=0)
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(gz)}
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
              "rootfs": {"type": "layers",
                         "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **blob(json.dumps(config).encode())}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": [layer_desc]}
    manifest_desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                     **blob(json.dumps(manifest).encode()),
                     "annotations": {"io.containerd.image.name": name,
                                     "org.opencontainers.image.ref.name": "test"},
                     "platform": {"architecture": "amd64", "os": "linux"}}
    index = {"schemaVersion": 2, "manifests": [manifest_desc]}
    out = base / "bb-oci.tar"
    with tarfile.open(out, "w") as tar:
        def add(path: str, data: bytes) -> None:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    return out


def mounts_under(base: Path) -> list[str]:
    """Mount points under `base` in this mount namespace, deepest first."""
    prefix = str(base).rstrip("/") + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp.startswith(prefix) or mp == str(base):
            points.append(mp)
    return sorted(set(points), key=len, reverse=True)


def unmount_under(base: Path) -> list[str]:
    """Unmounts (lazily) whatever an engine of ours left mounted under `base`; returns
    what it found, so a test can insist there was nothing."""
    found = mounts_under(base)
    for mp in found:
        subprocess.run(["umount", "-l", mp], capture_output=True)
    return found


class EngineHostDirs:
    """Directories an engine makes on the host whatever its state directory is (the runc
    v2 shim's /run/containerd/s, dockerd's /run/docker/plugins, ...): those missing at
    the start are removed at the end if the engine left them empty."""

    def __init__(self, *paths: str) -> None:
        self.new = [Path(p) for p in paths if not os.path.lexists(p)]

    def remove(self) -> None:
        for p in sorted(self.new, key=lambda p: len(str(p)), reverse=True):
            with contextlib.suppress(OSError):
                p.rmdir()


def kill_leftovers(base: Path) -> list[str]:
    """SIGKILLs every process whose command line names `base` (an engine's unique temp
    dir: its containerd, shims, pyvisor launchers); returns what it found."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if str(base) in cmd:
            found.append(f"{entry} {cmd.strip()}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), 9)
    return found


def stop_process(pid: int, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL, to a daemon we started; waits for it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes], log: Path,
                    timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args[0]} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
