"""The mqueue filesystem at /dev/mqueue, as an OCI spec mounts it (runc spec's default
mounts), compared with runc: queues made with mq_open appear as files, and files made
with open(O_CREAT) are queues."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from test_lifecycle import Runtime, make_bundle

if TYPE_CHECKING:
    from conftest import Builder


def test_mqueue_mount_matches_runc(program: Builder, world_tmp: Path) -> None:
    outputs = []
    for name in ("pyvisor", "runc"):
        base = world_tmp / name
        base.mkdir()
        bundle = make_bundle(base, ["/bin/mqueue_fs"])
        shutil.copy2(program("mqueue_fs.c", static=True), bundle / "rootfs" / "bin" / "mqueue_fs")
        config = json.loads((bundle / "config.json").read_text())
        config["mounts"] += [
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]}]
        (bundle / "config.json").write_text(json.dumps(config))
        rt = Runtime(name, base)
        r = rt("run", "--bundle", str(bundle), f"mqfs-{name}")
        rt("delete", "--force", f"mqfs-{name}")
        assert r.returncode == 0, (name, r.stdout, r.stderr)
        outputs.append(r.stdout)
    assert outputs[0] == outputs[1]
    assert "entry pvq type 8" in outputs[0] and "QSIZE:5 " in outputs[0]
    assert "fresh maxmsg 10 msgsize 8192" in outputs[0]
