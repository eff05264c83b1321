"""process.capabilities of the OCI spec, compared with runc running the same bundle: the
five sets as /proc/self/status shows them, and what the capabilities allow (chown needs
CAP_CHOWN, reading another user's 0600 file needs CAP_DAC_OVERRIDE, sethostname
CAP_SYS_ADMIN), for Docker's default set, for a set of one, and for a non-root user
(whose exec leaves only the ambient set)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from test_lifecycle import Runtime, _cid, make_bundle  # noqa: F401

# Docker's (moby's) default capabilities.
DOCKER = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
          "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
          "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

SCRIPT = r"""
b=busybox
$b grep '^Cap' /proc/self/status
$b chown 1:1 /owned && echo chown ok || echo chown refused
$b cat /private >/dev/null 2>&1 && echo read ok || echo read refused
$b hostname other 2>/dev/null && echo hostname ok || echo hostname refused
"""

CASES = {
    "docker-default": ({"bounding": DOCKER, "effective": DOCKER, "permitted": DOCKER}, 0),
    "kill-only": ({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                   "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"],
                   "ambient": ["CAP_KILL"]}, 0),
    "user-1000": ({"bounding": DOCKER, "effective": DOCKER, "permitted": DOCKER,
                   "inheritable": ["CAP_CHOWN"], "ambient": ["CAP_CHOWN"]}, 1000),
    "unknown-name": ({"bounding": DOCKER + ["CAP_NO_SUCH_THING"], "effective": DOCKER,
                      "permitted": DOCKER}, 0),
}


def _bundle(base: Path, caps: dict[str, list[str]], uid: int) -> Path:
    bundle = make_bundle(base, ["/bin/sh", "-c", SCRIPT])
    root = bundle / "rootfs"
    (root / "owned").write_text("x\n")
    (root / "private").write_text("secret\n")
    (root / "private").chmod(0o600)
    import os
    os.chown(root / "private", 4242, 4242)
    doc = json.loads((bundle / "config.json").read_text())
    doc["root"]["readonly"] = False
    doc["process"]["capabilities"] = caps
    doc["process"]["user"] = {"uid": uid, "gid": uid}
    (bundle / "config.json").write_text(json.dumps(doc))
    return bundle


def _run(rt: Runtime, bundle: Path) -> subprocess.CompletedProcess[str]:
    return rt("run", "--bundle", str(bundle), _cid())


@pytest.mark.parametrize("case", sorted(CASES))
def test_capabilities_as_runc(world_tmp: Path, case: str) -> None:
    caps, uid = CASES[case]
    runc, pv = Runtime("runc", world_tmp), Runtime("pyvisor", world_tmp)
    want = _run(runc, _bundle(world_tmp / "runc", caps, uid))
    assert want.returncode == 0, want.stderr
    got = _run(pv, _bundle(world_tmp / "pyvisor", caps, uid))
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout, f"runc:\n{want.stdout}\npyvisor:\n{got.stdout}"
