"""Host files, continued: mounts, roots, device nodes, /proc/sys and /sys.

Natively the mount-family attacks run in a throwaway child that first enters
private mount and UTS namespaces (so they really mount, unmount and pivot,
without touching the host); the sandboxed runs try the same and must leave
the host's mount table (checked by the autouse guard for every test), host
name and files unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

from seclib import (assert_native_ran, assert_same_tree, assert_sandbox_ran, file_state,
                    tree_state)

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
PROC_SYS = {
    "core_pattern": Path("/proc/sys/kernel/core_pattern"),
    "overcommit": Path("/proc/sys/vm/overcommit_memory"),
    "randomize": Path("/proc/sys/kernel/randomize_va_space"),
}


def _dir(world_tmp: Path) -> Path:
    d = world_tmp / "hostdir"
    (d / "jail").mkdir(parents=True)
    (d / "marker").write_text("marker\n")
    (d / "target").write_text("host file\n")
    for p in (d, d / "jail", d / "marker", d / "target"):
        p.chmod(0o755)
    return d


def _thp_mode() -> str:
    text = THP.read_text()
    return text[text.index("[") + 1:text.index("]")]


def _both(run, secprog, world_tmp, attack, *extra):
    """Runs the attack natively, then in the sandbox (each on a fresh dir);
    returns (native report, sandbox report, sandbox dir before, after)."""
    nd = _dir(world_tmp / "native")
    n = assert_native_ran(run("native", [secprog("mounts"), attack, "native", str(nd),
                                         *[str(x).replace("{dir}", str(nd)) for x in extra]],
                              timeout=30))
    sd = _dir(world_tmp / "sandbox")
    before = tree_state(sd)
    r = run("pyvisor", [secprog("mounts"), attack, "sandbox", str(sd),
                        *[str(x).replace("{dir}", str(sd)) for x in extra]], timeout=60)
    s = assert_sandbox_ran(r)
    assert s.get("child") == "exit:0", r.output
    assert s.get("parent_getpid") == "1", r.output
    return n, s, before, tree_state(sd), r


def test_mount_tmpfs_proc_sysfs(run, secprog, world_tmp):
    """mount tmpfs/proc/sysfs/devtmpfs over a host directory.  Inside the sandbox
    tmpfs, proc and sysfs mount (in the Sentry's own mount tree: the file created on
    the tmpfs is not on the host), devtmpfs does not (ENODEV)."""
    n, s, before, after, r = _both(run, secprog, world_tmp, "mount_tmpfs")
    assert n["mount"] == "0" and n["create_on_mount"] != "-1", n
    assert_same_tree(before, after)
    assert s["mount"] == "0" and s["create_on_mount"] != "-1", r.output
    assert s["mount_proc"] == "0" and s["mount_sysfs"] == "0", r.output
    assert s["mount_devtmpfs"] == "-1", r.output


def test_bind_mount_root(run, secprog, world_tmp):
    """Bind the root (and /proc) onto a directory: inside the sandbox, a second view of
    what the sandbox already sees (its own overlay root), never of more of the host,
    and the host directory stays as it was."""
    n, s, before, after, r = _both(run, secprog, world_tmp, "bind_root")
    assert n["bind_root"] == "0" and n["sees_passwd"] == "0", n
    assert_same_tree(before, after)
    assert s["bind_root"] == "0" and s["sees_passwd"] == "0", r.output


def test_remount_root_writable(run, secprog, world_tmp):
    """Remount the (read-only lower) root read-write, then write a host file.
    Natively only the per-mount bind remount is done (a superblock remount
    would change the host's ext4).  In the sandbox the root is the overlay, already
    writable: the remounts change nothing, and the write lands in its upper layer,
    never in the host file."""
    n, s, before, after, r = _both(run, secprog, world_tmp, "remount", "{dir}/target")
    assert n["remount_bind_rw"] == "0", n
    assert_same_tree(before, after)


def test_umount(run, secprog, world_tmp):
    """umount /dev/shm, /proc and / (lazily)."""
    n, s, before, after, r = _both(run, secprog, world_tmp, "umount")
    assert n["umount_shm"] == "0", n
    assert_same_tree(before, after)
    for k in ("umount_shm", "umount_proc", "umount_root"):
        assert s[k] == "-1", f"{k} succeeded in the sandbox\n{r.output}"


def test_pivot_root(run, secprog, world_tmp):
    n, s, before, after, r = _both(run, secprog, world_tmp, "pivot_root")
    assert n["pivot_root"] == "0", n
    assert_same_tree(before, after)
    assert s["pivot_root"] == "-1" and s["pivot_root_dot"] == "-1", r.output


def test_chroot_then_climb_stays_inside(run, secprog, world_tmp):
    """chroot(DIR); chdir("/"); chdir("../../..") stays in DIR (natively too)."""
    n, s, before, after, r = _both(run, secprog, world_tmp, "chroot")
    for rep in (n, s):
        assert rep["chroot"] == "0" and rep["cwd"] == "/", rep
        assert rep["marker"] == "0" and rep["marker_dotdot"] == "0", rep
        assert rep["passwd"] == "-1" and rep["passwd_dotdot"] == "-1", rep
    assert_same_tree(before, after)


def test_chroot_double_escape(run, secprog, world_tmp):
    """The classic double-chroot escape. Natively it leaves the jail and
    writes the host file; in the sandbox it may leave the jail (Linux
    semantics) but only into the sandbox's root: the write never lands."""
    n, s, before, after, r = _both(run, secprog, world_tmp, "chroot_escape",
                                   "{dir}/target")
    assert n["escaped"] == "1" and n["write_outside_write"] == "5", n
    assert_same_tree(before, after)


def test_mknod_devices(run, secprog, world_tmp):
    """mknod of the host disk (254:0), /dev/mem (1:1), /dev/kmsg (1:11): natively
    the nodes are made and the kmsg node reads the host's kernel log (the
    device cgroup here forbids opening the disk); the sandbox refuses every
    node."""
    n, s, before, after, r = _both(run, secprog, world_tmp, "mknod")
    for node in ("vda", "mem", "kmsg"):  # do not leave device nodes behind
        (world_tmp / "native" / "hostdir" / node).unlink(missing_ok=True)
    assert n["mknod_blk"] == "0" and n["mknod_kmsg"] == "0", n
    assert int(n["read_kmsg_node"]) > 0, n  # the host's kernel log, read
    assert_same_tree(before, after)
    for k in ("mknod_blk", "mknod_mem", "mknod_kmsg", "mknod_dev_sda", "mknodat_chr"):
        assert s[k] == "-1" and s[f"{k}_errno"] == "EPERM", f"{k}\n{r.output}"
    assert s["open_blk"] == "-1" and s["open_kmsg_node"] == "-1", r.output
    assert not Path("/tmp/.pyvisor-sec-kmem").exists()


def test_dangerous_devices_absent(run, secprog, world_tmp):
    """/dev/mem, /dev/kmsg, /dev/sda, /dev/vda, /dev/kvm, ... cannot be opened
    in the sandbox (natively /dev/kmsg and /dev/loop-control can; this host's
    device cgroup forbids its disk)."""
    n, s, before, after, r = _both(run, secprog, world_tmp, "devices")
    assert n["kmsg"] == "open" and n["loop-control"] == "open", n
    assert s["opened"] == "0", r.output
    assert s["mem"] == "ENOENT" and s["kmsg"] == "ENOENT" and s["sda"] == "ENOENT"


def test_proc_sys_writes(run, secprog, world_tmp):
    """Writes to /proc/sys (host name, core_pattern, overcommit, ASLR). The
    values written are the host's current ones (harmless if they landed);
    natively the host name is written in a private UTS namespace."""
    values = [PROC_SYS[k].read_text().strip() for k in ("core_pattern", "overcommit",
                                                         "randomize")]
    before = {k: p.read_text() for k, p in PROC_SYS.items()}
    n, s, dbefore, dafter, r = _both(run, secprog, world_tmp, "procsys", *values)
    assert n["hostname_write"] == "13" and n["hostname_now"] == "pyvisor-pwned", n
    assert n["core_pattern_write"] != "-1", n
    assert {k: p.read_text() for k, p in PROC_SYS.items()} == before
    for k in ("hostname", "domainname", "core_pattern", "overcommit", "randomize",
              "sysrq_trigger"):
        key = f"{k}_open"
        assert s.get(key, "-1") == "-1" or s.get(f"{k}_write") == "-1", (
            f"/proc/sys write {k} accepted in the sandbox\n{r.output}")


def test_sys_writes(run, secprog, world_tmp):
    """Writes to /sys (THP mode, written back with its current value;
    /sys/power/state and a cgroup.procs opened for writing only). Natively
    they open; in the sandbox they must fail and the host stay unchanged."""
    mode = _thp_mode()
    before = THP.read_text()
    n, s, dbefore, dafter, r = _both(run, secprog, world_tmp, "sysfs", mode)
    assert n["thp_write"] == str(len(mode)) and n["power_state_open"] != "-1", n
    assert THP.read_text() == before
    for k in ("thp", "power_state", "cgroup_procs"):
        assert s[f"{k}_open"] == "-1", (
            f"/sys file opened for writing in the sandbox ({k})\n{r.output}")


def test_sys_does_not_leak_host_state(run, secprog, world_tmp):
    """The host's /sys must not be readable inside: its cgroup.procs list host
    PIDs (defeating the PID namespace), its block devices and net devices
    describe the host."""
    n, s, dbefore, dafter, r = _both(run, secprog, world_tmp, "sysfs_leak")
    assert n["fs/cgroup/unified/cgroup.procs"].startswith("read:"), n
    leaks = {k: v for k, v in s.items() if k.startswith(("fs/", "block/", "class/"))
             and v.startswith("read:")}
    assert not leaks, f"host /sys readable in the sandbox: {leaks}\n{r.output}"


def test_sethostname(run, secprog, world_tmp):
    """sethostname/setdomainname inside change the sandbox's name only
    (natively done in a private UTS namespace); the guard checks the host's."""
    host = os.uname().nodename
    n, s, before, after, r = _both(run, secprog, world_tmp, "sethostname")
    assert n["sethostname"] == "0" and n["hostname_now"] == "pyvisor-pwned", n
    assert os.uname().nodename == host
    assert file_state("/proc/sys/kernel/hostname").content.strip() == host.encode()
