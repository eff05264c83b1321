"""linux.cgroupsPath (both forms), blockIO weight and cpu shares, and `update` of them
(runtime/cgroup.py), compared with runc where runc can run the bundle: the cgroup is
where the path says in every hierarchy used, holds the container's processes while it
runs, has the limits, and is gone after delete (with the parents made for it)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from test_lifecycle import Runtime, _cid, make_bundle, rt  # noqa: F401

ROOT = Path("/sys/fs/cgroup")
V2 = (ROOT / "cgroup.controllers").exists()


def _own(ctrl: str) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if (V2 and ctrls == "") or ctrl in ctrls.split(","):
            return path
    return "/"


def _dir(ctrl: str, path: str) -> Path:
    """Where a cgroupsPath lands in hierarchy `ctrl` (relative: below our own cgroup)."""
    top = ROOT if V2 else ROOT / ctrl
    base = top if path.startswith("/") else top / _own(ctrl).lstrip("/")
    return base / path.lstrip("/")


def _bundle(world_tmp: Path, cgroups_path: str, resources: dict[str, Any]) -> Path:
    bundle = make_bundle(world_tmp, ["/bin/sh", "-c", "sleep 60"])
    doc = json.loads((bundle / "config.json").read_text())
    doc["linux"]["cgroupsPath"] = cgroups_path
    doc["linux"]["resources"] = resources
    (bundle / "config.json").write_text(json.dumps(doc))
    return bundle


def _cleanup(path: str) -> None:
    """What a runtime left of `path` and its parents in any hierarchy (runc leaves the
    parents it made, in every hierarchy; a failed assertion may leave the rest)."""
    for top in ROOT.iterdir():
        if not top.is_dir():
            continue
        base = top if path.startswith("/") else top / _own(top.name).lstrip("/")
        first = base / path.lstrip("/").split("/")[0]
        if first.exists():
            for d in sorted((p for p in first.rglob("*") if p.is_dir()), key=lambda p:
                            len(str(p)), reverse=True) + [first]:
                try:
                    d.rmdir()
                except OSError:
                    pass


def _procs(d: Path) -> list[int]:
    return [int(x) for x in (d / "cgroup.procs").read_text().split()]


@pytest.mark.parametrize("form", ["absolute", "relative"])
def test_cgroups_path_as_runc(rt: Runtime, world_tmp: Path, form: str) -> None:
    top = f"pvtest-{uuid.uuid4().hex[:8]}"
    path = f"/{top}/ctr" if form == "absolute" else f"{top}/ctr"
    bundle = _bundle(world_tmp, path, {"memory": {"limit": 256 << 20},
                                       "pids": {"limit": 100}, "cpu": {"shares": 512}})
    cid = _cid()
    assert rt.create(cid, bundle, world_tmp / "out").returncode == 0
    try:
        mem, pids, cpu = _dir("memory", path), _dir("pids", path), _dir("cpu", path)
        assert _procs(mem) and _procs(pids)            # the container's processes are in it
        if not V2:
            assert int((mem / "memory.limit_in_bytes").read_text()) == 256 << 20
            assert int((cpu / "cpu.shares").read_text()) == 512
        r = rt("update", "--cpu-share", "1000", cid)
        assert r.returncode == 0, r.stderr
        if not V2:
            assert int((cpu / "cpu.shares").read_text()) == 1000
        assert rt("delete", "--force", cid).returncode == 0
        assert not mem.exists() and not pids.exists()
        if rt.name == "pyvisor":   # runc leaves the parents it made; pyvisor removes them
            assert not mem.parent.exists()
    finally:
        rt("delete", "--force", cid)
        _cleanup(path)


def test_systemd_form(world_tmp: Path) -> None:
    """--systemd-cgroup: "slice:prefix:name" lands where systemd puts it
    (<slice expanded>/<prefix>-<name>.scope); this host has no systemd, as runc's
    systemd driver needs, so pyvisor alone is checked."""
    rt = Runtime("pyvisor", world_tmp)
    rt.argv.insert(-2, "--systemd-cgroup")
    tag = uuid.uuid4().hex[:8]
    bundle = _bundle(world_tmp, f"pvt{tag}-sub.slice:pv:{tag}", {"pids": {"limit": 50}})
    cid = _cid()
    assert rt.create(cid, bundle, world_tmp / "out").returncode == 0
    leaf = f"/pvt{tag}.slice/pvt{tag}-sub.slice/pv-{tag}.scope"
    try:
        assert _procs(_dir("pids", leaf))
        assert rt("delete", "--force", cid).returncode == 0
        assert not _dir("pids", f"/pvt{tag}.slice").exists()
    finally:
        rt("delete", "--force", cid)
        _cleanup(f"/pvt{tag}.slice")


@pytest.mark.parametrize("path,why", [
    ("nocolons", 'expected cgroupsPath to be of format "slice:prefix:name"'),
    ("bad:pv:x", "invalid slice name: bad"),
])
def test_bad_systemd_form_is_one_line(world_tmp: Path, path: str, why: str) -> None:
    rt = Runtime("pyvisor", world_tmp)
    rt.argv.insert(-2, "--systemd-cgroup")
    r = rt.create(_cid(), _bundle(world_tmp, path, {}), world_tmp / "out")
    assert r.returncode != 0 and why in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("path", ["..", "a/../../b", "/"])
def test_path_out_of_place_is_refused(world_tmp: Path, path: str) -> None:
    """A relative path climbing above our cgroup, or the root itself: one line.  ("/../x"
    is "/x", as runc cleans it.)"""
    rt = Runtime("pyvisor", world_tmp)
    r = rt.create(_cid(), _bundle(world_tmp, path, {}), world_tmp / "out")
    assert r.returncode != 0 and "cgroupsPath" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def _weight_file(d: Path) -> Path | None:
    for n in ("blkio.weight", "blkio.bfq.weight", "io.weight", "io.bfq.weight"):
        if (d / n).exists():
            return d / n
    return None


def test_blkio_weight_and_update(rt: Runtime, world_tmp: Path) -> None:
    """blockIO.weight lands in the host's weight file (blkio.bfq.weight here), `update`
    changes it; a host without one gets one warning line (pyvisor) where runc fails."""
    path = f"/pvtest-{uuid.uuid4().hex[:8]}"
    bundle = _bundle(world_tmp, path, {"blockIO": {"weight": 500}})
    cid = _cid()
    r = rt.create(cid, bundle, world_tmp / "out")
    d = _dir("io" if V2 else "blkio", path)
    try:
        wf = _weight_file(d) if d.exists() else None
        if wf is None:
            if rt.name == "pyvisor":
                assert r.returncode == 0 and "blockIO.weight=500" in r.stderr, r.stderr
                assert len(r.stderr.strip().splitlines()) == 1
            pytest.skip("this host has no I/O weight file to compare")
        assert r.returncode == 0, r.stderr
        assert wf.read_text().split()[-1] == "500"
        assert rt("update", "--blkio-weight", "300", cid).returncode == 0
        assert wf.read_text().split()[-1] == "300"
        r = rt("update", "-r", "-", cid, input=json.dumps({"blockIO": {"weight": 200}}))
        assert r.returncode == 0, r.stderr
        assert wf.read_text().split()[-1] == "200"
    finally:
        rt("delete", "--force", cid)
        _cleanup(path)


@pytest.mark.parametrize("given,systemd,want", [
    ("/a/b", False, "/a/b"), ("a/b/", False, "a/b"), ("/../x", False, "/x"),
    ("machine.slice:libpod:abc", True, "/machine.slice/libpod-abc.scope"),
    (":docker:abc", True, "/system.slice/docker-abc.scope"),
    ("a-b-c.slice:p:n", True, "/a.slice/a-b.slice/a-b-c.slice/p-n.scope"),
    ("-.slice:p:n", True, "/p-n.scope"),
    ("x.slice::n", True, "/x.slice/n.scope"),
    ("x.slice:p:k8s-pod.slice", True, "/k8s.slice/k8s-pod.slice"),
])
def test_resolve_path(given: str, systemd: bool, want: str) -> None:
    """runc's placement rules (cgroupfs paths; systemd's ExpandSlice and unit names)."""
    from pyvisor.runtime.cgroup import resolve_path
    assert resolve_path(given, systemd) == want


@pytest.mark.parametrize("given", ["a:b", "x:y:z", "a--b.slice:p:n", "a/b.slice:p:n"])
def test_resolve_path_refuses(given: str) -> None:
    from pyvisor.runtime.cgroup import CgroupPathError, resolve_path
    with pytest.raises(CgroupPathError):
        resolve_path(given, True)
