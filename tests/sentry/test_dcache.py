"""The bounded dentry cache (pyvisor/sentry/vfs/dcache.py) over real filesystems:
tmpfs, the gofer filesystem with a real Gofer, and the overlay above it.

What must hold: unused dentries are evicted past the limit and release what
their inodes hold (Gofer fids, so the Gofer's fds); dentries in use are never
evicted and stay the one object for their name; overlay state (copy-ups,
whiteouts, opaque directories, origin inode numbers) survives eviction; a Gofer
at its fd budget answers ENFILE, the Sentry reclaims and retries, and only
then does the caller get ENFILE.
"""

from __future__ import annotations

import gc
import os
import weakref
from pathlib import Path
from typing import Iterator

import pytest

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_RDONLY, O_WRONLY
from pyvisor.gofer.server import GOFER_FD_RESERVE, start_gofer
from pyvisor.sentry.fsimpl.gofer.client import GoferClient
from pyvisor.sentry.fsimpl.gofer.goferfs import FID_BATCH, make_gofer_root
from pyvisor.sentry.fsimpl.overlay.overlay import XINO_UPPER, OverlayInode, make_overlay_root
from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.memfile import MemoryFile
from pyvisor.sentry.vfs import dcache
from pyvisor.sentry.vfs.file import FileDescription
from pyvisor.sentry.vfs.vfs import Dentry, Mount

NFILES = 300


@pytest.fixture(scope="module")
def memfile() -> MemoryFile:
    return MemoryFile()


@pytest.fixture
def small_dcache() -> Iterator[dcache.DentryCache]:
    """The process-wide dcache, limited to 16 entries for the test."""
    saved = dcache.dcache.limit
    dcache.dcache.shrink()
    dcache.dcache.limit = 16
    try:
        yield dcache.dcache
    finally:
        dcache.dcache.limit = saved


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "hostname").write_bytes(b"sandbox\n")
    (r / "etc" / "gone").write_bytes(b"to be removed\n")
    (r / "etc" / "sub").mkdir()
    (r / "etc" / "sub" / "x").write_bytes(b"x\n")
    many = r / "many"
    many.mkdir()
    for i in range(NFILES):
        (many / f"f{i:04}").write_bytes(b"%d\n" % i)
    return r


def _gofer(root: Path, nofile: int | None = None) -> Iterator[tuple[GoferClient, int]]:
    sock, pid = start_gofer(str(root), True, nofile=nofile)
    client = GoferClient(sock)
    try:
        yield client, pid
    finally:
        client.shutdown()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


@pytest.fixture
def gofer(tree: Path) -> Iterator[tuple[GoferClient, int]]:
    yield from _gofer(tree)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _root(fs: object, inode: object) -> Dentry:
    return Dentry(b"/", None, inode)  # type: ignore[arg-type]


def _walk(d: Dentry, path: str) -> Dentry:
    for c in path.split("/"):
        d = d.child(c.encode())
    return d


def test_unused_dentries_are_evicted_and_used_ones_stay(small_dcache: dcache.DentryCache,
                                                        memfile: MemoryFile) -> None:
    fs = TmpFS(memfile)
    root_inode = fs.new_root()
    for i in range(100):
        root_inode.create(b"f%d" % i, 0o644, 0, 0)
    root = _root(fs, root_inode)
    held = root.child(b"f0")                     # in use: held by us, as an open file would
    refs = [weakref.ref(root.child(b"f%d" % i)) for i in range(1, 100)]
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive <= small_dcache.limit            # the rest were evicted and died
    assert len(small_dcache) <= small_dcache.limit
    assert root.child(b"f0") is held              # never evicted while in use: the same object
    assert refs[-1]() is not None                 # the most recent ones are still cached
    assert root.child(b"f99") is refs[-1]()


def test_evicted_gofer_inodes_release_fids_and_gofer_fds(
        small_dcache: dcache.DentryCache, gofer: tuple[GoferClient, int],
        memfile: MemoryFile) -> None:
    client, pid = gofer
    fs, rinode = make_gofer_root(client, memfile, readonly=True)
    root = _root(fs, rinode)
    many = root.child(b"many")
    base = _fds(pid)
    peak = 0
    for i in range(NFILES):
        d = many.child(b"f%04d" % i)
        assert d.inode.size() == len(b"%d\n" % i)
        peak = max(peak, _fds(pid))
    # Without eviction the Gofer would hold NFILES more fds; with it, at most the cache
    # plus the fids queued for one batched CLOSE.
    assert peak - base <= small_dcache.limit + FID_BATCH + 2, (base, peak)
    fs.flush_dead_fids()
    assert _fds(pid) - base <= small_dcache.limit + 2


def test_gofer_at_its_budget_gets_fds_back_before_enfile(
        small_dcache: dcache.DentryCache, tree: Path, memfile: MemoryFile) -> None:
    nofile = GOFER_FD_RESERVE + 40                # room for 40 nodes
    for client, pid in _gofer(tree, nofile):
        small_dcache.limit = 30
        fs, rinode = make_gofer_root(client, memfile, readonly=True)
        with open(f"/proc/{pid}/limits") as f:     # set before the Gofer answered
            assert any(ln.startswith("Max open files") and f" {nofile} " in ln for ln in f)
        root = _root(fs, rinode)
        many = root.child(b"many")
        reclaims = dcache.files.reclaims
        # A long walk: every lookup succeeds, the cache and the retry keep it under budget.
        for i in range(NFILES):
            many.child(b"f%04d" % i)
        assert _fds(pid) <= nofile
        # Holding more than the budget allows: ENFILE, and the Gofer lives on.
        small_dcache.limit = 1000
        held = []
        with pytest.raises(SyscallError) as info:
            for i in range(NFILES):
                held.append(many.child(b"f%04d" % i))
        assert info.value.errno == Errno.ENFILE
        assert dcache.files.reclaims > reclaims
        assert 30 <= len(held) < 40
        assert _fds(pid) <= nofile
        held.clear()
        assert root.child(b"etc").child(b"hostname").inode.size() == 8   # works again


def _open(fs: object, d: Dentry, flags: int) -> FileDescription:
    mount = Mount(fs, d)  # type: ignore[arg-type]
    return FileDescription.open(mount, d, flags)


def test_overlay_state_survives_eviction(small_dcache: dcache.DentryCache,
                                         gofer: tuple[GoferClient, int], tree: Path,
                                         memfile: MemoryFile) -> None:
    client, pid = gofer
    fs, rinode = make_overlay_root(client, memfile, TmpFS(memfile))
    root = _root(fs, rinode)
    etc = root.child(b"etc")
    # A copy-up with new contents, a whiteout, an opaque directory, a new file.
    host = _walk(root, "etc/hostname")
    origin = host.inode.ino
    f = _open(fs, host, O_WRONLY)
    f.impl.write(f, None, b"changed", 0)  # type: ignore[arg-type]
    f.decref()
    etc.inode.unlink(b"gone")
    etc.forget(b"gone")
    sub = etc.child(b"sub")
    sub.inode.unlink(b"x")
    sub.forget(b"x")
    etc.inode.rmdir(b"sub")
    etc.forget(b"sub")
    etc.inode.mkdir(b"sub", 0o755, 0, 0)
    etc.inode.create(b"new", 0o644, 0, 0)
    weak = weakref.ref(host.inode)
    del host, sub, f, etc
    # Churn the cache: everything above is evicted.
    many = root.child(b"many")
    for i in range(NFILES):
        many.child(b"f%04d" % i)
    del many
    gc.collect()
    assert weak() is None                          # the copied-up inode was evicted...
    etc = root.child(b"etc")
    host = etc.child(b"hostname")
    assert isinstance(host.inode, OverlayInode) and host.inode.upper is not None
    assert host.inode.ino == origin                # ...and comes back with its origin number
    f = _open(fs, host, O_RDONLY)
    assert f.impl.read(f, None, 100, 0) == b"changed\n"  # type: ignore[arg-type]
    f.decref()
    with pytest.raises(SyscallError) as info:
        etc.child(b"gone")
    assert info.value.errno == Errno.ENOENT        # the whiteout held
    sub = etc.child(b"sub")
    assert isinstance(sub.inode, OverlayInode) and sub.inode.opaque
    assert list(sub.inode.readdir()) == []         # opaque: the lower x stays hidden
    new = etc.child(b"new")
    assert new.inode.ino & XINO_UPPER
    names = {e.name for e in etc.inode.readdir()}
    assert names == {b"hostname", b"sub", b"new"}
    inos = {e.name: e.ino for e in etc.inode.readdir()}
    assert inos[b"hostname"] == origin             # readdir agrees with stat
    assert (tree / "etc" / "hostname").read_bytes() == b"sandbox\n"   # the host is untouched
    assert (tree / "etc" / "gone").exists()


def test_overlay_inode_in_use_is_never_split(small_dcache: dcache.DentryCache,
                                             gofer: tuple[GoferClient, int],
                                             memfile: MemoryFile) -> None:
    """An overlay file held open while its dentry's siblings churn the cache stays the one
    inode for its name, so a copy-up through a new lookup is seen by the open file."""
    client, pid = gofer
    fs, rinode = make_overlay_root(client, memfile, TmpFS(memfile))
    root = _root(fs, rinode)
    held = _open(fs, _walk(root, "many/f0000"), O_RDONLY)
    many = root.child(b"many")
    for i in range(1, NFILES):
        many.child(b"f%04d" % i)
    gc.collect()
    again = _walk(root, "many/f0000")
    assert again.inode is held.inode
    again.inode.setattr(mode=0o600)                # a copy-up through the new walk
    assert held.inode.mode & 0o777 == 0o600        # ...is the open file's too
    held.decref()
