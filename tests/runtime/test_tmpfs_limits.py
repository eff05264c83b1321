"""tmpfs limits, compared with Linux's tmpfs: `size=` bounds file pages and long symlink
targets, `nr_inodes=` bounds inodes and hard links; past either, ENOSPC, and the room
comes back once the files are removed.

Natively the test mounts a small tmpfs in a private mount namespace of its own
(`unshare -m`), never on the host's mounts; in the sandbox the same options are an OCI
tmpfs mount of a bundle run with `pyvisor run`.  tests/programs/tmpfsfill.c fills it and
reports key=value lines, which must be the same.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from pvtest import Builder, CliRunner

CASES = [
    ("files", "size=1m,nr_inodes=64"),
    ("dirs", "size=1m,nr_inodes=64"),
    ("names", "size=1m,nr_inodes=64"),
    ("links", "size=1m,nr_inodes=64"),
    ("symlinks", "size=1m,nr_inodes=5000"),
    ("data", "size=1m,nr_inodes=5000"),
    ("mixed", "size=200k,nr_inodes=300"),
]


def _native(prog: str, what: str, options: str, mnt: Path) -> str:
    mnt.mkdir()
    script = (f"mount --make-rprivate / && mount -t tmpfs -o {options} none {mnt} && "
              f"exec {prog} {mnt} {what}")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _bundle(base: Path, argv: list[str], mount_options: list[str]) -> Path:
    """A bundle over the host's root (read-only, with an overlay) with one tmpfs mount."""
    bundle = base / "bundle"
    bundle.mkdir()
    config = {
        "ociVersion": "1.0.2",
        "process": {"args": argv, "env": ["PATH=/usr/bin:/bin"], "cwd": "/"},
        "root": {"path": "/", "readonly": False},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/pvtmpfs", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", *mount_options]}],
    }
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def _sandboxed(cli: CliRunner, base: Path, argv: list[str], options: list[str]):  # noqa: ANN202
    bundle = _bundle(base, argv, options)
    return cli(["--root", str(base / "state"), "run", "--bundle", str(bundle),
                f"tmpfs-{uuid.uuid4().hex[:8]}"], timeout=180)


@pytest.mark.parametrize("what,options", CASES, ids=[c[0] for c in CASES])
def test_tmpfs_fill_like_linux(what: str, options: str, program: Builder,
                               pyvisor_cli: CliRunner, world_tmp: Path) -> None:
    prog = program("tmpfsfill.c")
    native = _native(prog, what, options, world_tmp / "mnt")
    assert "errno=ENOSPC" in native, native
    r = _sandboxed(pyvisor_cli, world_tmp, [prog, "/pvtmpfs", what], options.split(","))
    assert r.returncode == 0, r.output
    assert r.stdout == native, f"native:\n{native}\npyvisor:\n{r.stdout}{r.stderr}"


def test_tmpfs_metadata_charged_to_sentry_memory(program: Builder,
                                                 pyvisor_cli: CliRunner) -> None:
    """Inodes and names live in the Sentry's heap: with --sentry-memory 2M, empty files in
    /dev/shm (whose nr_inodes is far larger) stop with ENOSPC after a few thousand, and
    the same number can be made again once they are removed."""
    r = pyvisor_cli(["--sentry-memory", "2M", "do", "--", program("tmpfsfill.c"),
                     "/dev/shm", "files"], timeout=180)
    assert r.returncode == 0, r.output
    kv = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert kv["errno"] == "ENOSPC" and 1000 < int(kv["made"]) < 10000, r.output
    assert kv["again"] == kv["made"], r.output
    assert int(kv["f_ffree"]) > 100000, r.output


@pytest.mark.parametrize("option", ["size=lots", "nr_inodes=-1", "mode=99x"])
def test_bad_tmpfs_option(option: str, pyvisor_cli: CliRunner, world_tmp: Path) -> None:
    r = _sandboxed(pyvisor_cli, world_tmp, ["/bin/true"], [option])
    assert r.returncode == 125, r.output
    assert r.stderr.count("\n") == 1 and "/pvtmpfs" in r.stderr, r.output
    assert not list((world_tmp / "state").iterdir()), "state left behind"
