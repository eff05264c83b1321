"""`pyvisor --root STATE run --bundle BUNDLE ID`: an OCI bundle whose rootfs
is busybox-static with an applet symlink for each command, read-only, with
/proc, a tmpfs at /tmp and a writable bind mount of a host directory at
/data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import CliRunner, Result

BUSYBOX = "/bin/busybox"


def make_rootfs(rootfs: Path) -> None:
    """bin/busybox plus `busybox --install -s`-style symlinks, and the
    mount points."""
    bindir = rootfs / "bin"
    bindir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bindir / "busybox")
    (bindir / "busybox").chmod(0o755)
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for name in ("sh", "echo", "cat", "ls"):
        assert name in applets
    for name in applets:
        if name != "busybox":
            (bindir / name).symlink_to("busybox")
    for d in ("proc", "tmp", "data", "etc", "dev"):
        (rootfs / d).mkdir(mode=0o755)


def make_config(args: list[str] | None, data: Path, root_path: str = "rootfs") -> dict[str, Any]:
    process: dict[str, Any] = {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin", "HOME=/", "GREETING=hello"],
        "cwd": "/",
    }
    if args is not None:
        process["args"] = args
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": root_path, "readonly": True},
        "hostname": "pyvisor-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": "/data", "type": "bind", "source": str(data),
             "options": ["rbind", "rw"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in
                           ("pid", "mount", "ipc", "uts", "network")],
        },
    }


class Bundle:
    """A bundle under a world-readable temp dir, a host dir for /data and a
    fresh state dir for --root."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.dir = base / "bundle"
        self.rootfs = self.dir / "rootfs"
        self.data = base / "data"
        self.state = base / "state"
        self.dir.mkdir(mode=0o755)
        self.data.mkdir(mode=0o755)
        self.state.mkdir(mode=0o700)
        make_rootfs(self.rootfs)

    def write_config(self, config: dict[str, Any] | str) -> None:
        text = config if isinstance(config, str) else json.dumps(config, indent=2)
        (self.dir / "config.json").write_text(text)

    def run(self, cli: CliRunner) -> Result:
        cid = f"pyvisor-test-{uuid.uuid4().hex[:12]}"
        return cli(["--root", str(self.state), "run", "--bundle", str(self.dir), cid])


@pytest.fixture
def bundle(world_tmp: Path) -> Bundle:
    return Bundle(world_tmp)


def test_run_exit_status(bundle: Bundle, pyvisor_cli: CliRunner) -> None:
    bundle.write_config(make_config(
        ["/bin/sh", "-c",
         "echo hi from $(cat /etc/hostname 2>/dev/null || echo bundle); exit 3"],
        bundle.data))
    result = bundle.run(pyvisor_cli)
    assert result.stdout == "hi from bundle\n", result.output
    assert result.returncode == 3, result.output


def test_run_mounts(bundle: Bundle, pyvisor_cli: CliRunner) -> None:
    name = f"pyvisor-tmp-{uuid.uuid4().hex}"
    (bundle.data / "from-host").write_text("host file\n")
    script = f"""
        echo "$GREETING from $(pwd)"
        cat /data/from-host
        echo data > /data/out
        echo tmp > /tmp/{name}
        cat /data/out /tmp/{name}
        if echo x > /rootfile 2>/dev/null; then echo root-writable; else echo root-readonly; fi
        [ -d /proc/self ] && echo proc-mounted
        echo ---
        ls /
    """
    bundle.write_config(make_config(["/bin/sh", "-c", script], bundle.data))
    result = bundle.run(pyvisor_cli)
    assert result.returncode == 0, result.output
    head, _, listing = result.stdout.partition("---\n")
    assert head == ("hello from /\nhost file\ndata\ntmp\nroot-readonly\n"
                    "proc-mounted\n"), result.output

    # The root is the bundle's rootfs, not the host's.
    names = set(listing.split())
    assert {"bin", "data", "proc", "tmp"} <= names, result.output
    assert not names & {"usr", "home", "root", "var"}, result.output

    # The bind mount passes writes through to the host directory...
    assert (bundle.data / "out").read_text() == "data\n"
    # ...while the tmpfs and the read-only root write nothing on the host.
    assert not (bundle.rootfs / "rootfile").exists()
    assert not (bundle.rootfs / "tmp" / name).exists()
    assert not (Path("/tmp") / name).exists()
    for dirpath, dirnames, filenames in os.walk(bundle.base):
        assert name not in filenames, f"{name} found in {dirpath}"


def _single_line_error(result: Result) -> None:
    assert result.returncode != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error:\n{result.stderr}"
    assert "Traceback" not in result.stderr


def test_missing_config(bundle: Bundle, pyvisor_cli: CliRunner) -> None:
    _single_line_error(bundle.run(pyvisor_cli))


def test_malformed_config(bundle: Bundle, pyvisor_cli: CliRunner) -> None:
    bundle.write_config('{"ociVersion": "1.0.2", "process": {')
    _single_line_error(bundle.run(pyvisor_cli))


def test_config_without_args(bundle: Bundle, pyvisor_cli: CliRunner) -> None:
    bundle.write_config(make_config(None, bundle.data))
    _single_line_error(bundle.run(pyvisor_cli))


def test_config_missing_root(bundle: Bundle, pyvisor_cli: CliRunner) -> None:
    bundle.write_config(make_config(["/bin/true"], bundle.data,
                                    root_path="no-such-rootfs"))
    _single_line_error(bundle.run(pyvisor_cli))
