"""inotify, renameat2, O_TMPFILE and openat2: the same program natively and in the
sandbox, with identical output, on tmpfs (/dev/shm) and on the overlay root (a
directory of the host seen through the sandbox's overlay, with files of the
layer below that the program changes, so they are copied up)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from pvtest import REPO, Builder, Runner, execute, pyvisor_env


def _lower(where: Path) -> Path:
    """A fresh directory with a file "lower" and a directory "lowerdir/inner"."""
    if where.exists():
        shutil.rmtree(where)
    (where / "lowerdir").mkdir(parents=True)
    (where / "lower").write_text("abc\n")
    (where / "lowerdir" / "inner").write_text("")
    for p in (where, where / "lowerdir"):
        p.chmod(0o777)
    return where


def _compare(run: Runner, argv: list[str], prepare=None) -> str:  # type: ignore[no-untyped-def]
    if prepare:
        prepare()
    native = run("native", argv)
    if prepare:
        prepare()
    sandboxed = run("pyvisor", argv)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and "ok" in native.stdout.split(), detail
    assert sandboxed.returncode == native.returncode, detail
    assert sandboxed.stdout == native.stdout, detail
    return sandboxed.stdout


PROGRAMS = ["inotify.c", "renameat2.c", "tmpfile.c", "openat2.c"]


@pytest.mark.parametrize("name", PROGRAMS, ids=lambda n: n.removesuffix(".c"))
@pytest.mark.parametrize("fs", ["tmpfs", "overlay"])
def test_vfs_family(name: str, fs: str, program: Builder, run: Runner,
                    world_tmp: Path) -> None:
    if fs == "tmpfs":
        out = _compare(run, [program(name), "/dev/shm"])
    else:
        d = world_tmp / "t"
        out = _compare(run, [program(name), str(d)], lambda: _lower(d))
    if name == "inotify.c":
        # The events the program prints are the point: a few of them, for the record.
        assert "wd=1 MOVED_FROM name=f cookie#1" in out
        assert "overflow events: 1" in out
        assert ("wd=8 DELETE_SELF" in out) == (fs == "overlay")


PY_RENAME = r'''
import errno, os, sys
d = sys.argv[1]
def t(label, fn):
    try:
        fn()
        print(label, "ok")
    except OSError as e:
        print(label, errno.errorcode[e.errno])
os.makedirs(d + "/a/sub"); open(d + "/f", "w").write("1"); open(d + "/g", "w").write("2")
os.mkdir(d + "/empty")
t("file over file", lambda: os.rename(d + "/f", d + "/g"))
t("file over dir", lambda: os.rename(d + "/g", d + "/empty"))
t("dir over file", lambda: os.rename(d + "/empty", d + "/g"))
t("dir over empty dir", lambda: os.rename(d + "/a/sub", d + "/empty"))
t("dir over non-empty", lambda: os.rename(d + "/empty", d + "/a"))
os.mkdir(d + "/empty2"); open(d + "/a/x", "w").close()
t("dir over non-empty 2", lambda: os.rename(d + "/empty2", d + "/a"))
t("dir into itself", lambda: os.rename(d + "/a", d + "/a/inner"))
t("missing", lambda: os.rename(d + "/nope", d + "/z"))
t("replace", lambda: os.replace(d + "/g", d + "/a/x"))
t("across mounts", lambda: os.rename(d + "/a/x", "/dev/shm/pyvisor-xdev"))
t("same name", lambda: os.rename(d + "/a", d + "/a"))
print(sorted(os.listdir(d)), sorted(os.listdir(d + "/a")), open(d + "/a/x").read())
'''


def test_python_rename(run: Runner, world_tmp: Path) -> None:
    """os.rename and os.replace: the errors Python programs see are Linux's."""
    script = world_tmp / "ren.py"
    script.write_text(PY_RENAME)
    d = world_tmp / "r"
    outs = []
    for where in ("native", "pyvisor"):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        d.chmod(0o777)
        res = run(where, ["python3", str(script), str(d)])
        assert res.returncode == 0, res.output
        outs.append(res.stdout)
    assert outs[0] == outs[1], f"native:\n{outs[0]}pyvisor:\n{outs[1]}"
    assert "across mounts EXDEV" in outs[1]


@pytest.mark.parametrize("name", ["inotify.c", "renameat2.c"], ids=lambda n: n[:-2])
def test_vfs_family_on_gofer_bind(name: str, program: Builder, run: Runner,
                                  world_tmp: Path) -> None:
    """The same programs in a directory bind-mounted from the host (served by the
    Gofer: renameat2 reaches the host through its RENAME2 request), compared with the
    program run natively on that directory."""
    prog = program(name, static=True)
    host = world_tmp / "data"
    native = run("native", [prog, str(host)], timeout=60) if _lower(host) else None
    assert native is not None and native.returncode == 0, native.output if native else ""
    bundle = world_tmp / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "data").mkdir(parents=True)
    shutil.copy2(prog, rootfs / "prog")
    config = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0},
                    "args": ["/prog", "/data"], "env": ["PATH=/"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": True},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": str(_lower(host)),
             "options": ["rbind", "rw"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts",
                                                        "network")]},
    }
    (bundle / "config.json").write_text(json.dumps(config))
    r = execute([sys.executable, "-m", "pyvisor", "--root", str(world_tmp / "state"),
                 "run", "--bundle", str(bundle), "vfs-" + name[:-2]],
                timeout=120, env=pyvisor_env(None), cwd=str(REPO))
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{r.output}"
    assert r.returncode == 0, detail
    assert r.stdout == native.stdout, detail
    # The changes reached the host: the lower file was removed (inotify.c) or
    # swapped and renamed back (renameat2.c).
    assert not (host / "lower").exists()


def test_mount_umount(program: Builder, run: Runner, world_tmp: Path) -> None:
    """mount/umount2 of tmpfs, proc and bind mounts, remounts, MS_MOVE and IN_UNMOUNT,
    with /proc/self/mountinfo and /proc/self/mounts, compared with Linux (natively in a
    mount namespace of the test's own, so the host's mounts never change)."""
    prog = program("mount.c")
    native = run("native", ["unshare", "-m", "--propagation", "private", prog,
                            str(world_tmp)], timeout=60)
    sandboxed = run("pyvisor", [prog, str(world_tmp)], timeout=120)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and "ok" in native.stdout.split(), detail
    assert sandboxed.returncode == 0, detail
    assert sandboxed.stdout == native.stdout, detail
    assert "event wd=1 mask=2000" in sandboxed.stdout           # IN_UNMOUNT


def test_runtime_mounts_are_locked(run: Runner) -> None:
    """The runtime's mounts (root, /proc, /dev, ...) cannot be unmounted, moved or
    made writable from inside (Linux locks a container's mounts the same way)."""
    script = ("import ctypes, os\n"
              "libc = ctypes.CDLL(None, use_errno=True)\n"
              "def e(r): return os.strerror(ctypes.get_errno()) if r else 'ok'\n"
              "print('umount /proc', e(libc.umount2(b'/proc', 0)))\n"
              "print('umount /sys', e(libc.umount2(b'/sys', 2)))\n"
              "print('remount /sys rw', e(libc.mount(None, b'/sys', None, 32 | 4096, None)))\n"
              "print('move /dev/shm', e(libc.mount(b'/dev/shm', b'/mnt', None, 8192, None)))\n"
              "print('ro bind of /sys rw', e(libc.mount(b'/sys', b'/mnt', None, 4096, None)"
              " or libc.mount(None, b'/mnt', None, 32 | 4096, None)))\n"
              "libc.umount2(b'/mnt', 0)\n"
              "print('bind / without MS_REC', e(libc.mount(b'/', b'/mnt', None, 4096, None)))\n"
              "print('rbind /', e(libc.mount(b'/', b'/mnt', None, 4096 | 16384, None)))\n"
              "print('umount its /proc', e(libc.umount2(b'/mnt/proc', 0)))\n"
              "print('detach it all', e(libc.umount2(b'/mnt', 2)))\n")
    res = run("pyvisor", ["python3", "-c", script])
    assert res.returncode == 0, res.output
    assert res.stdout.splitlines() == [
        "umount /proc Invalid argument", "umount /sys Invalid argument",
        "remount /sys rw Operation not permitted", "move /dev/shm Invalid argument",
        "ro bind of /sys rw Operation not permitted",
        "bind / without MS_REC Invalid argument", "rbind / ok",
        "umount its /proc Invalid argument", "detach it all ok"], res.output
