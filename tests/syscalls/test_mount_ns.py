"""Mounts, namespaces and POSIX ACLs inside the sandbox, compared with Linux: the
programs run natively in a mount namespace of the test's own (unshare -m, private
propagation), so the host's mount table never changes."""

from __future__ import annotations

from pathlib import Path

from pvtest import Builder, Runner


def test_posix_acl(program: Builder, run: Runner, world_tmp: Path) -> None:
    """ACL xattrs on tmpfs and on an overlay mounted from inside: validation, mode
    sync, chmod, inheritance, enforcement, copy-up."""
    prog = program("posix_acl.c")
    (world_tmp / "n").mkdir()
    native = run("native", ["unshare", "-m", "--propagation", "private", prog,
                            str(world_tmp / "n")], timeout=60)
    (world_tmp / "s").mkdir()
    sandboxed = run("pyvisor", [prog, str(world_tmp / "s")], timeout=120)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and "ok" in native.stdout.split(), detail
    assert sandboxed.returncode == 0, detail
    assert sandboxed.stdout == native.stdout, detail
    assert "named user read: ok" in sandboxed.stdout
    assert "mount overlay: 0" in sandboxed.stdout


def test_namespaces(program: Builder, run: Runner, world_tmp: Path) -> None:
    """unshare/setns/clone with user, UTS, IPC and mount namespaces; uid_map, gid_map
    and setgroups rules; what the parent still sees."""
    prog = program("namespaces.c")
    for d in ("n", "s"):
        (world_tmp / d / "m").mkdir(parents=True)
    native = run("native", ["unshare", "-m", "--propagation", "private", prog,
                            str(world_tmp / "n")], timeout=60)
    sandboxed = run("pyvisor", [prog, str(world_tmp / "s")], timeout=120)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and "ok" in native.stdout.split(), detail
    assert sandboxed.returncode == 0, detail
    assert sandboxed.stdout == native.stdout, detail
    assert "mapped uid 0 gid 0" in sandboxed.stdout
    assert "parent sees the child's mount: 0" in sandboxed.stdout


def test_pivot_root(program: Builder, run: Runner, world_tmp: Path) -> None:
    """pivot_root(2) after chroot into a tmpfs: its errors, the old root under
    put_old, the working directory following, the old root unmounted."""
    prog = program("pivot_root.c")
    for d in ("n", "s"):
        (world_tmp / d).mkdir()
    native = run("native", ["unshare", "-m", "--propagation", "private", prog,
                            str(world_tmp / "n")], timeout=60)
    sandboxed = run("pyvisor", [prog, str(world_tmp / "s")], timeout=120)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and "ok" in native.stdout.split(), detail
    assert sandboxed.returncode == 0, detail
    assert sandboxed.stdout == native.stdout, detail
    assert "pivot: 0" in sandboxed.stdout


def test_propagation(program: Builder, run: Runner, world_tmp: Path) -> None:
    """Shared, slave, private and unbindable mounts: peer groups in mountinfo, mount
    and unmount events between peers and to slaves, and into a new namespace."""
    prog = program("propagation.c")
    for d in ("n", "s"):
        (world_tmp / d).mkdir()
    native = run("native", ["unshare", "-m", "--propagation", "private", prog,
                            str(world_tmp / "n")], timeout=60)
    sandboxed = run("pyvisor", [prog, str(world_tmp / "s")], timeout=120)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and "ok" in native.stdout.split(), detail
    assert sandboxed.returncode == 0, detail
    assert sandboxed.stdout == native.stdout, detail
    assert "  /s/c master:g2" in sandboxed.stdout


def test_new_mount_api(program: Builder, run: Runner, world_tmp: Path) -> None:
    """fsopen/fsconfig/fsmount/move_mount/open_tree: contexts, detached mounts,
    attaching, copies of trees, their errors."""
    prog = program("mount_api.c")
    for d in ("n", "s"):
        (world_tmp / d).mkdir()
    native = run("native", ["unshare", "-m", "--propagation", "private", prog,
                            str(world_tmp / "n")], timeout=60)
    sandboxed = run("pyvisor", [prog, str(world_tmp / "s")], timeout=120)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and "ok" in native.stdout.split(), detail
    assert sandboxed.returncode == 0, detail
    assert sandboxed.stdout == native.stdout, detail
    assert "copy's marker: ok" in sandboxed.stdout


def test_chroot_view(program: Builder, run: Runner, world_tmp: Path) -> None:
    """A chrooted process: getcwd outside the root, mounts/mountinfo limited to the
    root, maps paths relative to it."""
    prog = program("chroot_view.c")
    for d in ("n", "s"):
        (world_tmp / d).mkdir()
    native = run("native", ["unshare", "-m", "--propagation", "private", prog,
                            str(world_tmp / "n")], timeout=60)
    sandboxed = run("pyvisor", [prog, str(world_tmp / "s")], timeout=120)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and "ok" in native.stdout.split(), detail
    assert sandboxed.returncode == 0, detail
    assert sandboxed.stdout == native.stdout, detail
    assert "self/mounts: / /inner" in sandboxed.stdout


def test_tmpfs_size(program: Builder, run: Runner, world_tmp: Path) -> None:
    """tmpfs size= charges the pages a file holds: holes are free, fallocate and
    writes charge, a write stops at the first page that does not fit."""
    prog = program("tmpfs_size.c")
    for d in ("n", "s"):
        (world_tmp / d).mkdir()
    native = run("native", ["unshare", "-m", "--propagation", "private", prog,
                            str(world_tmp / "n")], timeout=60)
    sandboxed = run("pyvisor", [prog, str(world_tmp / "s")], timeout=120)
    detail = f"=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and "ok" in native.stdout.split(), detail
    assert sandboxed.returncode == 0, detail
    assert sandboxed.stdout == native.stdout, detail
    assert "truncate to 1M: 0 free 3" in sandboxed.stdout


def test_namespace_bounds(program: Builder, run: Runner) -> None:
    """Namespaces kept alive by nsfs files stop at the sandbox's bound (ENOSPC, as
    Linux's user.max_*_namespaces), and the process goes on (sandbox only: the
    bound is pyvisor's)."""
    from pyvisor.sentry.kernel.namespaces import NS_MAX
    r = run("pyvisor", [program("ns_limits.c")], timeout=120)
    assert r.returncode == 0, r.output
    assert f"stopped after {NS_MAX[b'net']}: ENOSPC" in r.stdout, r.output
    assert "still working: 1" in r.stdout, r.output
