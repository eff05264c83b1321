"""linux.maskedPaths and linux.readonlyPaths (runtime/masks.py), compared with runc running
the same bundle: a masked file reads as /dev/null, a masked directory is an empty read-only
tmpfs, a read-only path gives EROFS on every write and reads as before; missing paths are
skipped."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from test_lifecycle import Runtime, _cid, make_bundle, rt  # noqa: F401

SCRIPT = r"""
b=busybox
echo rw > /rw/new && $b cat /rw/new
echo x > /ro/new 2>&1 || :
echo x >> /ro/file 2>&1 || :
$b rm /ro/file 2>&1 || :
$b mkdir /ro/d 2>&1 || :
$b chmod 600 /ro/file 2>&1 || :
$b touch /ro/file 2>&1 || :
$b cat /ro/file /ro/sub/deep
echo x > /ro/sub/deep 2>&1 || :
$b cat /secret | $b wc -c
$b stat -c '%F %t,%T' /secret
echo gone > /secret && $b cat /secret | $b wc -c
$b ls -A /masked | $b wc -l
$b stat -c '%F %a' /masked
$b touch /masked/x 2>&1 || :
$b cat /masked/inner 2>&1 || :
echo x > /proc/sys/kernel/hostname 2>&1 || :
$b cat /proc/sys/kernel/ostype
$b grep -c ' /ro \| /masked \| /proc/sys ' /proc/self/mountinfo
"""


def _bundle(world_tmp: Path) -> Path:
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", SCRIPT])
    root = bundle / "rootfs"
    for d in ("rw", "ro/sub", "masked"):
        (root / d).mkdir(parents=True)
    (root / "ro" / "file").write_text("ro file\n")
    (root / "ro" / "sub" / "deep").write_text("deep\n")
    (root / "masked" / "inner").write_text("hidden\n")
    (root / "secret").write_text("secret\n")
    doc = json.loads((bundle / "config.json").read_text())
    doc["root"]["readonly"] = False
    doc["linux"]["readonlyPaths"] = ["/ro", "/proc/sys", "/no/such/path"]
    doc["linux"]["maskedPaths"] = ["/secret", "/masked", "/proc/no-such-file"]
    (bundle / "config.json").write_text(json.dumps(doc))
    return bundle


def _run(rt: Runtime, bundle: Path) -> subprocess.CompletedProcess[str]:
    return rt("run", "--bundle", str(bundle), _cid())


def test_masked_and_readonly_paths_as_runc(world_tmp: Path) -> None:
    runc, pv = Runtime("runc", world_tmp), Runtime("pyvisor", world_tmp)
    want = _run(runc, _bundle(world_tmp / "runc"))
    assert want.returncode == 0, want.stderr
    got = _run(pv, _bundle(world_tmp / "pyvisor"))
    assert got.returncode == 0, got.stderr
    # runc's busybox names the sandbox's errors the same way: compare whole outputs.
    assert got.stdout == want.stdout
    assert got.stderr == want.stderr        # the shell's own redirection errors
    assert "Read-only file system" in got.stdout and "character special file 1,3" in got.stdout
    # The image on the host is untouched by the writes that were refused.
    root = world_tmp / "pyvisor" / "bundle" / "rootfs"
    assert (root / "ro" / "file").read_text() == "ro file\n"
    assert (root / "secret").read_text() == "secret\n"


@pytest.mark.parametrize("key", ["maskedPaths", "readonlyPaths"])
def test_relative_path_is_one_line(world_tmp: Path, key: str) -> None:
    pv = Runtime("pyvisor", world_tmp)
    bundle = make_bundle(world_tmp, ["/bin/true"])
    doc = json.loads((bundle / "config.json").read_text())
    doc["linux"][key] = ["proc/kcore"]
    (bundle / "config.json").write_text(json.dumps(doc))
    r = _run(pv, bundle)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"linux.{key}[0]: must be an absolute path" in r.stderr
