"""Tests of the gofer filesystem and of the overlay over it, with a real Gofer
serving a temporary tree and a TmpFS upper layer in a real memory file."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable, Iterator

import pytest

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY
from pyvisor.abi.linux.stat import STAT, STATFS, V9FS_MAGIC, OVERLAYFS_SUPER_MAGIC
from pyvisor.gofer.server import start_gofer
from pyvisor.sentry.fsimpl.gofer.client import GoferClient
from pyvisor.sentry.fsimpl.gofer.goferfs import GoferInode, make_gofer_root
from pyvisor.sentry.fsimpl.overlay.overlay import (XINO_UPPER, OverlayFS, OverlayInode,
                                                    make_overlay_root)
from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpFS, TmpfsDir
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.mm.memfile import MemoryFile
from pyvisor.sentry.vfs.file import DirectoryImpl, FileDescription
from pyvisor.sentry.vfs.inode import Filesystem, Inode
from pyvisor.sentry.vfs.vfs import Dentry, Mount

NO_TASK = None  # the impls under test never look at the task


@pytest.fixture(scope="module")
def memfile() -> MemoryFile:
    return MemoryFile()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "hostname").write_bytes(b"sandbox\n")
    (r / "etc" / "conf.d").mkdir()
    (r / "etc" / "conf.d" / "a.conf").write_bytes(b"a=1\n")
    (r / "bin").mkdir()
    big = bytes(range(256)) * 40          # 10240 bytes: more than two pages
    (r / "bin" / "prog").write_bytes(big)
    os.chmod(r / "bin" / "prog", 0o755)
    (r / "link").symlink_to("etc/hostname")
    (r / "empty").mkdir()
    return r


def _gofer(root: Path, readonly: bool) -> Iterator[GoferClient]:
    sock, pid = start_gofer(str(root), readonly)
    client = GoferClient(sock)
    try:
        yield client
    finally:
        client.shutdown()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


@pytest.fixture
def ro_client(tree: Path) -> Iterator[GoferClient]:
    yield from _gofer(tree, readonly=True)


@pytest.fixture
def rw_client(tree: Path) -> Iterator[GoferClient]:
    yield from _gofer(tree, readonly=False)


@pytest.fixture
def overlay(ro_client: GoferClient, memfile: MemoryFile) -> tuple[OverlayFS, OverlayInode]:
    return make_overlay_root(ro_client, memfile, TmpFS(memfile))


def errno_of(fn: Callable[..., object], *args: object, **kw: object) -> int:
    with pytest.raises(SyscallError) as info:
        fn(*args, **kw)
    return info.value.errno


def walk(root: Inode, path: str) -> Inode:
    node = root
    for comp in path.encode().split(b"/"):
        if comp:
            node = node.lookup(comp)
    return node


def open_file(fs: Filesystem, root: Inode, path: str, flags: int) -> FileDescription:
    """Opens `path` as vfs would: a Mount and Dentries down to the file."""
    mount = Mount(fs, Dentry(b"/", None, root))
    d = mount.root
    for comp in path.encode().split(b"/"):
        if comp:
            d = d.child(comp)
    return FileDescription.open(mount, d, flags)


def read_all(f: FileDescription) -> bytes:
    out = b""
    while True:
        chunk = f.impl.read(f, NO_TASK, 4096, len(out))  # type: ignore[arg-type]
        if not chunk:
            return out
        out += chunk


def names(d: Inode) -> set[bytes]:
    return {e.name for e in d.readdir()}


def stat_of(inode: Inode) -> tuple[int, ...]:
    return STAT.unpack(inode.stat_bytes())


# -- the gofer filesystem ------------------------------------------------------------------


def test_gofer_lookup_readdir_read(ro_client: GoferClient, memfile: MemoryFile,
                                   tree: Path) -> None:
    fs, root = make_gofer_root(ro_client, memfile, readonly=True)
    assert root.is_dir()
    assert names(root) == {b"etc", b"bin", b"link", b"empty"}
    host = tree / "etc" / "hostname"
    f = walk(root, "etc/hostname")
    assert isinstance(f, GoferInode) and f.is_regular()
    st = host.stat()
    assert (f.ino, f.size(), f.mode, f.nlink) == (st.st_ino, 8, st.st_mode, 1)
    assert f.mtime_ns == st.st_mtime_ns
    dev, ino, _, mode, *_ = stat_of(f)
    assert (dev, ino, mode) == (fs.dev, st.st_ino, st.st_mode)
    fd = open_file(fs, root, "etc/hostname", O_RDONLY)
    assert read_all(fd) == b"sandbox\n"
    fd.decref()
    assert walk(root, "link").is_symlink()
    assert walk(root, "link").readlink() == b"etc/hostname"
    assert errno_of(root.lookup, b"missing") == Errno.ENOENT
    assert errno_of(f.lookup, b"x") == Errno.ENOTDIR
    assert STATFS.unpack(fs.statfs())[0] == V9FS_MAGIC
    dirfd = open_file(fs, root, "etc", O_RDONLY)
    assert isinstance(dirfd.impl, DirectoryImpl)
    listed = {n for n, _, _ in dirfd.impl.listing(dirfd)}
    assert listed == {b".", b"..", b"hostname", b"conf.d"}


def test_gofer_lookup_is_cached(ro_client: GoferClient, memfile: MemoryFile) -> None:
    fs, root = make_gofer_root(ro_client, memfile, readonly=True)
    calls = 0
    real_walk = ro_client.walk

    def counting_walk(fid: int, name: bytes) -> object:
        nonlocal calls
        calls += 1
        return real_walk(fid, name)

    ro_client.walk = counting_walk  # type: ignore[method-assign]
    a = root.lookup(b"etc")
    b = root.lookup(b"etc")
    assert a is b and calls == 1
    for _ in range(2):                      # negative results are not cached
        errno_of(root.lookup, b"nope")
    assert calls == 3


def test_gofer_stat_refreshes(ro_client: GoferClient, memfile: MemoryFile,
                              tree: Path) -> None:
    fs, root = make_gofer_root(ro_client, memfile, readonly=True)
    f = walk(root, "etc/hostname")
    (tree / "etc" / "hostname").write_bytes(b"changed on the host\n")
    assert stat_of(f)[8] == len(b"changed on the host\n")


def test_gofer_exclusive_caches(ro_client: GoferClient, memfile: MemoryFile,
                                tree: Path) -> None:
    """--file-access=exclusive (the root image): stat answers from the cache, a failed
    lookup and a listing are asked once; the same calls on a shared filesystem see
    the host's changes (test_gofer_stat_refreshes)."""
    from pyvisor.sentry.fsimpl.gofer.goferfs import GoferFS
    fs = GoferFS(ro_client, memfile, readonly=True, exclusive=True)
    root = fs.root
    calls: dict[str, int] = {}
    for name in ("walk", "stat", "readdir"):
        real = getattr(ro_client, name)

        def counting(*a: object, _real: Callable[..., object] = real,
                     _name: str = name) -> object:
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*a)
        setattr(ro_client, name, counting)
    f = walk(root, "etc/hostname")
    size = stat_of(f)[8]
    (tree / "etc" / "hostname").write_bytes(b"changed on the host, not seen\n")
    assert stat_of(f)[8] == size and calls.get("stat", 0) == 0
    for _ in range(3):
        assert errno_of(root.lookup, b"nope") == Errno.ENOENT
    etc = root.lookup(b"etc")
    first = sorted(e.name for e in etc.readdir())
    (tree / "etc" / "new").write_bytes(b"")
    assert sorted(e.name for e in etc.readdir()) == first
    assert calls["readdir"] == 1 and calls["walk"] == 2 + 1     # etc, hostname, nope once
    # A writable filesystem is never exclusive: the sandbox itself changes it.
    assert not GoferFS(ro_client, memfile, readonly=False, exclusive=True).exclusive


def test_gofer_readonly_rejects_writes(ro_client: GoferClient, memfile: MemoryFile,
                                       tree: Path) -> None:
    fs, root = make_gofer_root(ro_client, memfile, readonly=True)
    etc = walk(root, "etc")
    f = walk(root, "etc/hostname")
    assert errno_of(open_file, fs, root, "etc/hostname", O_WRONLY) == Errno.EROFS
    assert errno_of(open_file, fs, root, "etc/hostname", O_RDONLY | O_TRUNC) == Errno.EROFS
    assert errno_of(etc.create, b"new", 0o644, 0, 0) == Errno.EROFS
    assert errno_of(etc.mkdir, b"new", 0o755, 0, 0) == Errno.EROFS
    assert errno_of(etc.symlink, b"new", b"x", 0, 0) == Errno.EROFS
    assert errno_of(etc.unlink, b"hostname") == Errno.EROFS
    assert errno_of(root.rmdir, b"empty") == Errno.EROFS
    assert errno_of(etc.rename, b"hostname", root, b"h") == Errno.EROFS
    assert errno_of(f.setattr, mode=0o600) == Errno.EROFS
    assert errno_of(f.truncate, 1) == Errno.EROFS
    assert errno_of(etc.link, b"h2", f) == Errno.EROFS
    assert (tree / "etc" / "hostname").read_bytes() == b"sandbox\n"
    assert sorted(os.listdir(tree / "etc")) == ["conf.d", "hostname"]


def test_gofer_rw_writes_reach_host(rw_client: GoferClient, memfile: MemoryFile,
                                    tree: Path) -> None:
    fs, root = make_gofer_root(rw_client, memfile)
    etc = walk(root, "etc")
    # create + open reuses the donated fd
    new = etc.create(b"new.txt", 0o640, os.getuid(), os.getgid())
    assert isinstance(new, GoferInode) and new._donated >= 0
    assert etc.lookup(b"new.txt") is new
    fd = open_file(fs, root, "etc/new.txt", O_WRONLY)
    assert new._donated == -1
    assert fd.impl.write(fd, NO_TASK, b"hello", 0) == 5  # type: ignore[arg-type]
    assert new.size() == 5
    fd.decref()
    assert (tree / "etc" / "new.txt").read_bytes() == b"hello"
    assert stat.S_IMODE((tree / "etc" / "new.txt").stat().st_mode) == 0o640
    # overwrite with O_TRUNC
    fd = open_file(fs, root, "etc/hostname", O_RDWR | O_TRUNC)
    assert walk(root, "etc/hostname").size() == 0
    fd.impl.write(fd, NO_TASK, b"x", 0)  # type: ignore[arg-type]
    assert fd.impl.size(fd) == 1
    fd.decref()
    assert (tree / "etc" / "hostname").read_bytes() == b"x"
    # setattr / truncate
    f = walk(root, "etc/hostname")
    f.setattr(mode=0o600)
    assert stat.S_IMODE((tree / "etc" / "hostname").stat().st_mode) == 0o600
    assert stat.S_IMODE(f.mode) == 0o600
    f.truncate(4)
    assert (tree / "etc" / "hostname").read_bytes() == b"x\0\0\0"
    f.setattr(atime_ns=10**18, mtime_ns=2 * 10**18)
    assert (tree / "etc" / "hostname").stat().st_mtime_ns == 2 * 10**18
    # mkdir, symlink, link, rename, unlink, rmdir
    d = root.mkdir(b"dir", 0o700, os.getuid(), os.getgid())
    assert (tree / "dir").is_dir() and d.is_dir()
    root.symlink(b"sl", b"dir", os.getuid(), os.getgid())
    assert os.readlink(tree / "sl") == "dir"
    d.link(b"hard", f)
    assert (tree / "dir" / "hard").stat().st_ino == (tree / "etc" / "hostname").stat().st_ino
    assert f.nlink == 2
    root.rename(b"dir", etc, b"moved")
    assert (tree / "etc" / "moved" / "hard").exists()
    assert etc.lookup(b"moved") is d
    assert errno_of(root.lookup, b"dir") == Errno.ENOENT
    d.unlink(b"hard")
    assert errno_of(d.lookup, b"hard") == Errno.ENOENT
    etc.rmdir(b"moved")
    assert not (tree / "etc" / "moved").exists()
    assert errno_of(root.rmdir, b"etc") == Errno.ENOTEMPTY
    assert errno_of(root.mkdir, b"etc", 0o755, 0, 0) == Errno.EEXIST
    other = TmpFS(memfile).new_root()
    assert errno_of(root.rename, b"sl", other, b"x") == Errno.EXDEV


def test_gofer_mappable(ro_client: GoferClient, memfile: MemoryFile, tree: Path) -> None:
    fs, root = make_gofer_root(ro_client, memfile, readonly=True)
    prog = walk(root, "bin/prog")
    data = (tree / "bin" / "prog").read_bytes()
    m = prog.mappable()
    assert m is not None
    (r,) = m.translate(0, 12288, False)
    assert (r.file_offset, r.length) == (0, 12288)
    assert memfile.map[r.mem_offset:r.mem_offset + len(data)] == data
    assert memfile.map[r.mem_offset + len(data):r.mem_offset + 12288] == bytes(12288 - len(data))
    # An interior page maps at the matching offset, from the same cache.
    (r2,) = m.translate(4096, 4096, False)
    assert r2.mem_offset == r.mem_offset + 4096
    # Past the extent: it grows, contents kept.
    (r3,) = m.translate(0, 1 << 16, False)
    assert memfile.map[r3.mem_offset:r3.mem_offset + len(data)] == data
    # The host file changes: the next open notices, and the cache is refilled.
    (tree / "bin" / "prog").write_bytes(b"new contents")
    open_file(fs, root, "bin/prog", O_RDONLY).decref()
    (r4,) = m.translate(0, 4096, False)
    assert memfile.map[r4.mem_offset:r4.mem_offset + 4096] == b"new contents" + bytes(4084)
    assert walk(root, "etc").mappable() is None


def test_gofer_write_through_page_cache(rw_client: GoferClient, memfile: MemoryFile,
                                        tree: Path) -> None:
    fs, root = make_gofer_root(rw_client, memfile)
    f = walk(root, "etc/hostname")
    m = f.mappable()
    assert m is not None
    (r,) = m.translate(0, 4096, True)
    fd = open_file(fs, root, "etc/hostname", O_RDWR)
    fd.impl.write(fd, NO_TASK, b"SAND", 0)  # type: ignore[arg-type]
    assert memfile.map[r.mem_offset:r.mem_offset + 8] == b"SANDbox\n"
    f.truncate(2)
    assert memfile.map[r.mem_offset:r.mem_offset + 8] == b"SA" + bytes(6)
    (r2,) = m.translate(0, 4096, True)
    assert r2.mem_offset == r.mem_offset        # still valid: no refill needed
    fd.decref()


# -- the overlay ---------------------------------------------------------------------------


def test_overlay_reads_lower(overlay: tuple[OverlayFS, OverlayInode], tree: Path) -> None:
    fs, root = overlay
    assert names(root) == {b"etc", b"bin", b"link", b"empty"}
    f = walk(root, "etc/hostname")
    assert isinstance(f, OverlayInode) and f.upper is None
    assert f.ino == (tree / "etc" / "hostname").stat().st_ino
    assert root.lookup(b"etc") is root.lookup(b"etc")
    fd = open_file(fs, root, "etc/hostname", O_RDONLY)
    assert read_all(fd) == b"sandbox\n"
    fd.decref()
    assert walk(root, "link").readlink() == b"etc/hostname"
    assert STATFS.unpack(fs.statfs())[0] == OVERLAYFS_SUPER_MAGIC
    st = stat_of(f)
    assert st[0] == fs.dev and st[1] == f.ino and st[8] == 8
    # The root takes the image root's attributes.
    assert stat.S_IMODE(root.mode) == stat.S_IMODE(tree.stat().st_mode)
    dirfd = open_file(fs, root, "etc", O_RDONLY)
    assert {n for n, _, _ in dirfd.impl.listing(dirfd)} == {b".", b"..", b"hostname",
                                                            b"conf.d"}


def test_overlay_write_copies_up(overlay: tuple[OverlayFS, OverlayInode],
                                 tree: Path) -> None:
    fs, root = overlay
    f = walk(root, "etc/hostname")
    lower_ino = f.ino
    mtime = f.mtime_ns
    fd = open_file(fs, root, "etc/hostname", O_RDWR)
    assert f.upper is not None                 # copied up on open for write
    assert walk(root, "etc").upper is not None  # and its parent
    assert read_all(fd) == b"sandbox\n"
    assert fd.impl.write(fd, NO_TASK, b"SAND", 0) == 4  # type: ignore[arg-type]
    fd.decref()
    assert (tree / "etc" / "hostname").read_bytes() == b"sandbox\n"
    fd = open_file(fs, root, "etc/hostname", O_RDONLY)
    assert read_all(fd) == b"SANDbox\n"
    fd.decref()
    assert f.ino == lower_ino                  # stable across copy-up
    assert f.uid == (tree / "etc" / "hostname").stat().st_uid
    # O_TRUNC copies up without data; setattr copies up.
    p = walk(root, "bin/prog")
    fd = open_file(fs, root, "bin/prog", O_WRONLY | O_TRUNC)
    assert p.size() == 0
    fd.decref()
    assert (tree / "bin" / "prog").stat().st_size == 10240
    a = walk(root, "etc/conf.d/a.conf")
    a.setattr(mode=0o600)
    assert stat.S_IMODE(a.mode) == 0o600 and a.size() == 4
    assert stat.S_IMODE((tree / "etc" / "conf.d" / "a.conf").stat().st_mode) != 0o600
    assert mtime != 0
    # The merged listing still shows everything once.
    assert names(walk(root, "etc")) == {b"hostname", b"conf.d"}
    assert walk(root, "etc").nlink == 1        # merged directory


def test_overlay_unlink_hides_lower(overlay: tuple[OverlayFS, OverlayInode],
                                    tree: Path) -> None:
    fs, root = overlay
    etc = walk(root, "etc")
    assert isinstance(etc, OverlayInode)
    etc.unlink(b"hostname")
    assert b"hostname" in etc.whiteouts
    assert errno_of(etc.lookup, b"hostname") == Errno.ENOENT
    assert names(etc) == {b"conf.d"}
    assert (tree / "etc" / "hostname").read_bytes() == b"sandbox\n"
    assert errno_of(etc.unlink, b"hostname") == Errno.ENOENT
    # A new file under the old name shows the new contents, not the lower.
    new = etc.create(b"hostname", 0o644, 0, 0)
    assert new.size() == 0 and names(etc) == {b"conf.d", b"hostname"}
    assert new.ino & XINO_UPPER
    etc.unlink(b"hostname")
    assert errno_of(etc.lookup, b"hostname") == Errno.ENOENT
    # unlink of a directory
    assert errno_of(etc.unlink, b"conf.d") == Errno.EISDIR


def test_overlay_mkdir_rename_rmdir(overlay: tuple[OverlayFS, OverlayInode],
                                    tree: Path) -> None:
    fs, root = overlay
    d = root.mkdir(b"new", 0o755, 0, 0)
    assert d.is_dir() and b"new" in names(root)
    assert not (tree / "new").exists()
    assert errno_of(root.mkdir, b"etc", 0o755, 0, 0) == Errno.EEXIST
    assert errno_of(root.create, b"link", 0o644, 0, 0) == Errno.EEXIST
    # rename a lower file into an upper dir: copied up, old name whited out
    root.rename(b"link", d, b"l2")
    assert errno_of(root.lookup, b"link") == Errno.ENOENT
    assert d.lookup(b"l2").readlink() == b"etc/hostname"
    assert os.readlink(tree / "link") == "etc/hostname"
    etc = walk(root, "etc")
    etc.rename(b"hostname", d, b"h")
    assert read_all(open_file(fs, root, "new/h", O_RDONLY)) == b"sandbox\n"
    assert names(etc) == {b"conf.d"} and names(d) == {b"l2", b"h"}
    # renaming a directory with lower content is EXDEV; an upper one moves
    assert errno_of(root.rename, b"etc", d, b"etc") == Errno.EXDEV
    sub = d.mkdir(b"sub", 0o755, 0, 0)
    d.rename(b"sub", root, b"sub2")
    assert root.lookup(b"sub2") is sub
    assert errno_of(root.rename, b"new", d, b"x") == Errno.EINVAL
    # rename over a lower file
    root.rename(b"sub2", root, b"empty")         # upper dir over empty lower dir
    assert names(root.lookup(b"empty")) == set()
    # rmdir: lower non-empty, lower empty, merged non-empty
    assert errno_of(root.rmdir, b"etc") == Errno.ENOTEMPTY
    conf = walk(root, "etc/conf.d")
    assert errno_of(etc.rmdir, b"conf.d") == Errno.ENOTEMPTY
    conf.unlink(b"a.conf")
    etc.rmdir(b"conf.d")
    assert names(etc) == set()
    root.rmdir(b"etc")
    assert errno_of(root.lookup, b"etc") == Errno.ENOENT
    assert (tree / "etc" / "conf.d" / "a.conf").exists()
    # recreated: opaque, shows nothing of the lower
    etc2 = root.mkdir(b"etc", 0o755, 0, 0)
    assert isinstance(etc2, OverlayInode) and etc2.opaque
    assert names(etc2) == set()
    assert errno_of(etc2.lookup, b"hostname") == Errno.ENOENT
    assert errno_of(root.rmdir, b"new") == Errno.ENOTEMPTY


def test_overlay_mappable(overlay: tuple[OverlayFS, OverlayInode], tree: Path,
                          memfile: MemoryFile) -> None:
    fs, root = overlay
    data = (tree / "bin" / "prog").read_bytes()
    p = walk(root, "bin/prog")
    m = p.mappable()
    assert m is not None
    (r,) = m.translate(0, 12288, False)
    assert memfile.map[r.mem_offset:r.mem_offset + len(data)] == data
    # After copy-up the upper's pages are mapped.
    fd = open_file(fs, root, "bin/prog", O_RDWR)
    fd.impl.write(fd, NO_TASK, b"XY", 0)  # type: ignore[arg-type]
    fd.decref()
    m2 = p.mappable()
    assert m2 is not None and m2 is not m
    (r2,) = m2.translate(0, 4096, True)
    assert memfile.map[r2.mem_offset:r2.mem_offset + 4096] == b"XY" + data[2:4096]


def test_overlay_over_rw_gofer_never_writes(rw_client: GoferClient, memfile: MemoryFile,
                                            tree: Path) -> None:
    lower_fs, lower_root = make_gofer_root(rw_client, memfile)
    upper = TmpFS(memfile).new_root()
    fs = OverlayFS(upper, lower_root)
    root = fs.root
    b = walk(root, "bin")
    b.unlink(b"prog")
    root.lookup(b"empty").create(b"f", 0o644, 0, 0)
    a = walk(root, "etc/conf.d/a.conf")
    a.truncate(0)
    assert (tree / "bin" / "prog").exists()
    assert not (tree / "empty" / "f").exists()
    assert (tree / "etc" / "conf.d" / "a.conf").read_bytes() == b"a=1\n"
    assert isinstance(upper, TmpfsDir) and b"bin" in upper.entries


def test_gofer_fids_released_after_collection(ro_client: GoferClient,
                                              memfile: MemoryFile) -> None:
    import gc
    from pyvisor.sentry.fsimpl.gofer.goferfs import FID_BATCH
    fs, root = make_gofer_root(ro_client, memfile, readonly=True)
    closed: list[int] = []
    real_close_many = ro_client.close_many

    def counting_close_many(fids: list[int]) -> None:
        closed.extend(fids)
        real_close_many(fids)

    ro_client.close_many = counting_close_many  # type: ignore[method-assign]
    fids = []
    for _ in range(FID_BATCH):
        etc = root.lookup(b"etc")        # held by nobody but `etc`: a new fid each time
        assert isinstance(etc, GoferInode)
        fids.append(etc.fid)
        del etc
    gc.collect()
    assert len(set(fids)) == FID_BATCH
    assert closed == []                     # never from the finalizer itself
    root.lookup(b"bin")                     # the next RPC flushes the queue, in one message
    assert sorted(closed) == sorted(fids)


def test_overlay_link_and_orphan_copy_up(overlay: tuple[OverlayFS, OverlayInode],
                                         tree: Path) -> None:
    fs, root = overlay
    etc = walk(root, "etc")
    f = walk(root, "etc/hostname")
    etc.link(b"again", f)
    g = etc.lookup(b"again")
    assert isinstance(f, OverlayInode) and isinstance(g, OverlayInode)
    assert g.upper is f.upper and g.ino == f.ino and f.nlink == 2
    # A lower file removed while still in use is copied up into no directory.
    a = walk(root, "etc/conf.d/a.conf")
    walk(root, "etc/conf.d").unlink(b"a.conf")
    a.setattr(mode=0o600)
    assert a.upper is not None and a.upper.nlink == 0 and a.size() == 4
    assert names(walk(root, "etc/conf.d")) == set()
    assert (tree / "etc" / "conf.d" / "a.conf").read_bytes() == b"a=1\n"


def test_overlay_readonly_lower_open_keeps_flags(overlay: tuple[OverlayFS, OverlayInode]
                                                 ) -> None:
    fs, root = overlay
    fd = open_file(fs, root, "etc/hostname", O_RDONLY)
    from pyvisor.sentry.fsimpl.overlay.overlay import OverlayFileImpl
    assert isinstance(fd.impl, OverlayFileImpl)
    fd.flags |= os.O_NONBLOCK
    assert fd.impl.read(fd, NO_TASK, 3, 0) == b"san"  # type: ignore[arg-type]
    assert fd.impl.shadow.flags == fd.flags
    assert fd.impl.size(fd) == 8
    fd.decref()
