"""Mounts, namespaces and POSIX ACLs inside the sandbox, compared with Linux: the
programs run natively in a mount namespace of the test's own (unshare -m, private
propagation), so the host's mount table never changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvtest import Builder, Runner


# program -> (what it covers, the subdirectory each side's directory needs, lines its
# sandboxed output must hold to show the feature was really exercised).  Each runs
# natively in a private mount namespace and in the sandbox, on a directory of its own.
MOUNT_PROGRAMS = {
    "posix_acl.c": ("ACL xattrs on tmpfs and on an overlay mounted from inside: validation, "
                    "mode sync, chmod, inheritance, enforcement, copy-up", "",
                    ("named user read: ok", "mount overlay: 0")),
    "namespaces.c": ("unshare/setns/clone with user, UTS, IPC and mount namespaces; uid_map, "
                     "gid_map and setgroups rules; what the parent still sees", "m",
                     ("mapped uid 0 gid 0", "parent sees the child's mount: 0")),
    "pivot_root.c": ("pivot_root(2) after chroot into a tmpfs: its errors, the old root under "
                     "put_old, the working directory following, the old root unmounted", "",
                     ("pivot: 0",)),
    "propagation.c": ("shared, slave, private and unbindable mounts: peer groups in "
                      "mountinfo, mount and unmount events between peers and to slaves, and "
                      "into a new namespace", "", ("  /s/c master:g2",)),
    "mount_api.c": ("fsopen/fsconfig/fsmount/move_mount/open_tree: contexts, detached mounts, "
                    "attaching, copies of trees, their errors", "", ("copy's marker: ok",)),
    "chroot_view.c": ("a chrooted process: getcwd outside the root, mounts/mountinfo limited "
                      "to the root, maps paths relative to it", "", ("self/mounts: / /inner",)),
    "tmpfs_size.c": ("tmpfs size= charges the pages a file holds: holes are free, fallocate "
                     "and writes charge, a write stops at the first page that does not fit", "",
                     ("truncate to 1M: 0 free 3",)),
}


@pytest.mark.parametrize("name", sorted(MOUNT_PROGRAMS), ids=lambda n: n.removesuffix(".c"))
def test_mount_program(name: str, program: Builder, run: Runner, world_tmp: Path) -> None:
    """A program of MOUNT_PROGRAMS natively and in the sandbox: "ok", the same output,
    and its marker lines."""
    _, sub, markers = MOUNT_PROGRAMS[name]
    prog = program(name)
    for d in ("n", "s"):
        (world_tmp / d / sub).mkdir(parents=True)
    native = run("native", ["unshare", "-m", "--propagation", "private", prog,
                            str(world_tmp / "n")], timeout=60)
    sandboxed = run("pyvisor", [prog, str(world_tmp / "s")], timeout=120)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and "ok" in native.stdout.split(), detail
    assert sandboxed.returncode == 0, detail
    assert sandboxed.stdout == native.stdout, detail
    for marker in markers:
        assert marker in sandboxed.stdout, detail


def test_namespace_bounds(program: Builder, run: Runner) -> None:
    """Namespaces kept alive by nsfs files stop at the sandbox's bound (ENOSPC, as
    Linux's user.max_*_namespaces), and the process goes on (sandbox only: the
    bound is pyvisor's)."""
    from pyvisor.sentry.kernel.namespaces import NS_MAX
    r = run("pyvisor", [program("ns_limits.c")], timeout=120)
    assert r.returncode == 0, r.output
    assert f"stopped after {NS_MAX[b'net']}: ENOSPC" in r.stdout, r.output
    assert "still working: 1" in r.stdout, r.output
