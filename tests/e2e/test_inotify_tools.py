"""inotify-tools inside the sandbox: inotifywait (-m -r) and inotifywatch watch a
directory while a shell changes it; the event lines and the counts are Linux's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pvtest import Runner

SCRIPT = r'''
set -e
d=$1
rm -rf "$d"; mkdir -p "$d/sub"
log=$(mktemp); err=$(mktemp)
inotifywait -m -r --format '%w|%e|%f' "$d" >"$log" 2>"$err" &
pid=$!
until grep -q "Watches established" "$err"; do sleep 0.05; done
echo hi > "$d/sub/f"
mv "$d/sub/f" "$d/g"
chmod 600 "$d/g"
cat "$d/g" >/dev/null
ln "$d/g" "$d/h"
rm "$d/g" "$d/h"
rmdir "$d/sub"
mkdir "$d/new"
# inotifywait -r then reads the new directory to watch it: wait for that too.
until grep -q "|CLOSE_NOWRITE,CLOSE,ISDIR|new" "$log"; do sleep 0.05; done
kill $pid; wait $pid 2>/dev/null || true
sed "s|$d|D|" "$log"
(until grep -q "Finished establishing" "$err.2" 2>/dev/null; do sleep 0.05; done
 for i in 1 2 3 4 5; do echo $i >> "$d/new/x"; done; rm "$d/new/x") &
inotifywatch -t 3 -e modify,create,delete,close_write "$d/new" 2>"$err.2" | sed "s|$d|D|"
wait
rmdir "$d/new" "$d"
rm -f "$log" "$err" "$err.2"
'''


@pytest.mark.skipif(shutil.which("inotifywait") is None,
                    reason="inotify-tools missing: run scripts/install.sh")
@pytest.mark.parametrize("fs", ["overlay", "tmpfs"])
def test_inotifywait_inotifywatch(fs: str, run: Runner, world_tmp: Path) -> None:
    script = world_tmp / "iw.sh"
    script.write_text(SCRIPT)
    d = str(world_tmp / "watched") if fs == "overlay" else "/dev/shm/pyvisor-iw-test"
    native = run("native", ["bash", str(script), d], timeout=60)
    sandboxed = run("pyvisor", ["bash", str(script), d], timeout=120)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and sandboxed.returncode == 0, detail
    assert sandboxed.stdout == native.stdout, detail
    lines = sandboxed.stdout.splitlines()
    assert "D/sub/|MOVED_FROM|f" in lines and "D/|MOVED_TO|g" in lines
    assert "D/sub/|DELETE_SELF|" in lines
    assert lines[-1].split()[:5] == ["12", "5", "5", "1", "1"], detail
