"""Bind mounts of single files and mount points missing from the image, compared with runc.

The mounts engines give every container (/etc/hosts, /etc/resolv.conf, /etc/hostname,
/run/.containerenv: single files, rw or ro, with rbind/nosuid/nodev/noexec and a
propagation option) and a read-only root without /dev, /sys, /tmp or /run, where the
mount points must be created as runc creates them.  The same bundle (a fresh copy
per runtime: runc creates missing mount points in the image on the host) runs under
pyvisor and runc; their outputs and the host files afterwards must agree.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from test_lifecycle import BUSYBOX, RUNTIMES, Runtime

SCRIPT = r"""
cat /etc/hosts /etc/resolv.conf /etc/hostname /run/.containerenv
echo added >> /etc/hosts; echo "hosts rw $?"
echo x 2>/dev/null > /etc/resolv.conf; echo "resolv ro $?"
echo x 2>/dev/null > /run/.containerenv; echo "containerenv ro $?"
touch /newfile 2>/dev/null; echo "root ro $?"
test -f /run/.containerenv && echo "containerenv is a file"
test -d /sys && test -d /dev && echo "/sys and /dev exist"
echo tmp > /tmp/t && cat /tmp/t
ls /data; echo data > /data/new; echo "data rw $?"
cat /ro/file; echo x 2>/dev/null > /ro/file; echo "ro dir $?"
"""


def _bundle(base: Path, host: Path, args: list[str], extra_mounts: list[dict[str, Any]]
            ) -> Path:
    """A busybox image with only /bin and /etc: no /dev, /sys, /proc, /tmp or /run."""
    bundle = base / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for name in ("sh", "echo", "cat", "ls", "touch", "test"):
        (rootfs / "bin" / name).symlink_to("busybox")
    bind = ["rbind", "rprivate"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777"]},
        {"destination": "/etc/hosts", "type": "bind", "source": str(host / "hosts"),
         "options": bind},
        {"destination": "/etc/resolv.conf", "type": "bind", "source": str(host / "resolv"),
         "options": [*bind, "ro", "nosuid", "nodev", "noexec"]},
        {"destination": "/etc/hostname", "type": "bind", "source": str(host / "hostname"),
         "options": ["bind", "ro"]},
        {"destination": "/run/.containerenv", "type": "bind",
         "source": str(host / "containerenv"), "options": ["bind", "ro", "private"]},
        {"destination": "/data", "type": "bind", "source": str(host / "data"),
         "options": ["rbind", "rw"]},
        {"destination": "/ro", "type": "bind", "source": str(host / "rodir"),
         "options": ["rbind", "ro"]},
        *extra_mounts,
    ]
    config = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/bin"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "mounts",
        "mounts": mounts,
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts",
                                                        "network")]},
    }
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def _host_files(base: Path) -> Path:
    host = base / "host"
    (host / "data").mkdir(parents=True)
    (host / "rodir").mkdir()
    (host / "hosts").write_text("127.0.0.1 localhost\n10.0.0.2 ctr\n")
    (host / "resolv").write_text("nameserver 10.0.0.53\n")
    (host / "hostname").write_text("mounts\n")
    (host / "containerenv").write_text("engine=\"test\"\n")
    (host / "data" / "old").write_text("old\n")
    (host / "rodir" / "file").write_text("ro file\n")
    for p in (base, host):
        p.chmod(0o755)
    return host


@pytest.fixture(params=RUNTIMES)
def rt(request: pytest.FixtureRequest, world_tmp: Path) -> Any:
    r = Runtime(request.param, world_tmp)
    yield r
    if r.root.is_dir():
        for cid in list(r.root.iterdir()):
            r("delete", "--force", cid.name)


def test_file_binds_and_missing_mount_points_under_readonly_root(rt: Runtime,
                                                                  world_tmp: Path) -> None:
    host = _host_files(world_tmp)
    bundle = _bundle(world_tmp, host, ["sh", "-c", SCRIPT], [])
    r = rt("run", "--bundle", str(bundle), "mounts-1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [
        "127.0.0.1 localhost", "10.0.0.2 ctr", "nameserver 10.0.0.53", "mounts",
        'engine="test"',
        "hosts rw 0", "resolv ro 1", "containerenv ro 1", "root ro 1",
        "containerenv is a file", "/sys and /dev exist", "tmp", "old", "data rw 0",
        "ro file", "ro dir 1"], r.stdout + r.stderr
    # Writes through rw binds reach the host files; ro ones left them alone.
    assert (host / "hosts").read_text() == "127.0.0.1 localhost\n10.0.0.2 ctr\nadded\n"
    assert (host / "resolv").read_text() == "nameserver 10.0.0.53\n"
    assert (host / "data" / "new").read_text() == "data\n"
    assert (host / "rodir" / "file").read_text() == "ro file\n"


def test_file_bind_mountinfo_and_stat(world_tmp: Path) -> None:
    """pyvisor only (runc's mountinfo shows host paths): the options are reported."""
    rt = Runtime("pyvisor", world_tmp)
    host = _host_files(world_tmp)
    bundle = _bundle(world_tmp, host, ["sh", "-c", "cat /proc/self/mountinfo"], [])
    r = rt("run", "--bundle", str(bundle), "mounts-2")
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[4]: ln for ln in r.stdout.splitlines()}
    assert " - 9p " in lines["/etc/resolv.conf"]
    assert lines["/etc/resolv.conf"].endswith(" ro,nosuid,nodev,noexec"), lines
    assert lines["/etc/hosts"].endswith(" rw"), lines
    assert lines["/"].split()[5].startswith("ro"), lines


@pytest.mark.parametrize("case", ["file-on-dir", "dir-on-file", "missing-source"])
def test_bad_binds_fail_with_one_line(rt: Runtime, world_tmp: Path, case: str) -> None:
    host = _host_files(world_tmp)
    mount = {
        "file-on-dir": {"destination": "/etc", "type": "bind", "source": str(host / "hosts"),
                        "options": ["rbind"]},
        "dir-on-file": {"destination": "/bin/sh", "type": "bind", "source": str(host / "data"),
                        "options": ["rbind"]},
        "missing-source": {"destination": "/x", "type": "bind",
                           "source": str(host / "nonexistent"), "options": ["rbind"]},
    }[case]
    bundle = _bundle(world_tmp, host, ["true"], [mount])
    r = rt("run", "--bundle", str(bundle), "mounts-3")
    assert r.returncode != 0, r.stdout + r.stderr
    if rt.name == "pyvisor":
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr


def test_unknown_bind_option_is_refused(world_tmp: Path) -> None:
    """pyvisor refuses a bind option it does not know (runc hands it to mount(2) as data,
    which a bind mount ignores)."""
    rt = Runtime("pyvisor", world_tmp)
    host = _host_files(world_tmp)
    bundle = _bundle(world_tmp, host, ["true"], [
        {"destination": "/x", "type": "bind", "source": str(host / "hosts"),
         "options": ["rbind", "frobnicate"]}])
    r = rt("run", "--bundle", str(bundle), "mounts-4")
    assert r.returncode != 0, r.stderr
    assert r.stderr.strip().splitlines() == [
        "pyvisor: mount /x: unsupported option 'frobnicate'"], r.stderr


def test_noexec_bind(rt: Runtime, world_tmp: Path) -> None:
    """A program on a noexec bind mount cannot be executed (EACCES); on an exec one it can."""
    host = _host_files(world_tmp)
    for d in ("bin-noexec", "bin-exec"):
        (host / d).mkdir()
        (host / d).chmod(0o755)
        shutil.copy2(BUSYBOX, host / d / "busybox")
    bundle = _bundle(world_tmp, host, ["sh", "-c",
                                       "/x/busybox true; echo noexec=$?; /y/busybox true;"
                                       " echo exec=$?"], [
        {"destination": "/x", "type": "bind", "source": str(host / "bin-noexec"),
         "options": ["rbind", "ro", "noexec"]},
        {"destination": "/y", "type": "bind", "source": str(host / "bin-exec"),
         "options": ["rbind", "ro"]}])
    r = rt("run", "--bundle", str(bundle), "mounts-5")
    assert (r.returncode, r.stdout) == (0, "noexec=126\nexec=0\n"), r.stdout + r.stderr
    assert "Permission denied" in r.stderr, r.stderr


def test_mount_points_behind_dangling_symlinks(rt: Runtime, world_tmp: Path) -> None:
    """A mount point reached through symlinks whose targets are missing (an image's
    /etc/resolv.conf -> ../run/resolv/stub.conf) is created at the target, as runc does."""
    host = _host_files(world_tmp)
    bundle = _bundle(world_tmp, host, ["sh", "-c",
                                       "cat /run/resolv/stub.conf; ls /opt/data;"
                                       " cat /etc/resolv.conf"], [
        {"destination": "/etc/linked/sub", "type": "bind", "source": str(host / "data"),
         "options": ["rbind", "ro"]}])
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["readonly"] = False
    (bundle / "config.json").write_text(json.dumps(config))
    etc = bundle / "rootfs" / "etc"
    (etc / "resolv.conf").symlink_to("../run/resolv/stub.conf")
    (etc / "linked").symlink_to("/opt/data/..//data")
    r = rt("run", "--bundle", str(bundle), "mounts-6")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == "nameserver 10.0.0.53\nsub\nnameserver 10.0.0.53\n", r.stdout + r.stderr
