"""Tests of the Gofer server and its client against a temporary tree."""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import struct
import time
from pathlib import Path
from typing import Iterator

import pytest

from pyvisor.gofer import protocol
from pyvisor.gofer.protocol import HEADER, Op, SetattrMask, Stat
from pyvisor.gofer.server import start_gofer
from pyvisor.sentry.fsimpl.gofer.client import GoferClient


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A small tree with files, dirs, a FIFO and symlinks pointing out."""
    r = tmp_path / "root"
    (r / "a" / "sub").mkdir(parents=True)
    (r / "a" / "b.txt").write_bytes(b"hello")
    (r / "file.txt").write_bytes(b"0123456789")
    (r / "passwd_link").symlink_to("/etc/passwd")
    (r / "rel_escape").symlink_to("../../../../../../etc/passwd")
    (r / "dirlink").symlink_to("a")
    os.mkfifo(r / "fifo")
    (tmp_path / "outside.txt").write_bytes(b"secret")
    return r


def _start(root: Path, readonly: bool) -> Iterator[tuple[GoferClient, int]]:
    sock, pid = start_gofer(str(root), readonly)
    client = GoferClient(sock)
    try:
        yield client, pid
    finally:
        client.shutdown()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


@pytest.fixture
def gofer(root: Path) -> Iterator[GoferClient]:
    yield from (c for c, _ in _start(root, readonly=False))


@pytest.fixture
def ro_gofer(root: Path) -> Iterator[GoferClient]:
    yield from (c for c, _ in _start(root, readonly=True))


def _raises(code: int, fn, *args):
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == code, info.value
    return info.value


def _same(st: Stat, path: Path) -> None:
    """Checks a gofer Stat against os.lstat of `path`."""
    host = os.lstat(path)
    want = Stat.from_os(host)
    assert (st.mode, st.ino, st.dev, st.nlink, st.uid, st.gid, st.rdev,
            st.size, st.blksize, st.blocks, st.mtime_ns, st.ctime_ns) == (
        want.mode, want.ino, want.dev, want.nlink, want.uid, want.gid,
        want.rdev, want.size, want.blksize, want.blocks, want.mtime_ns,
        want.ctime_ns)


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root` with its type, mode, size, mtime and content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = b""
            if stat.S_ISREG(st.st_mode):
                data = Path(p).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p).encode()
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size,
                                             st.st_mtime_ns, st.st_uid, data)
    return out


# Lookup and attributes.


def test_attach_and_walk_match_lstat(gofer: GoferClient, root: Path) -> None:
    fid, st = gofer.attach()
    _same(st, root)
    a, st = gofer.walk(fid, b"a")
    _same(st, root / "a")
    b, st = gofer.walk(a, b"b.txt")
    _same(st, root / "a" / "b.txt")
    _same(gofer.stat(b), root / "a" / "b.txt")
    _, st = gofer.walk(fid, b"fifo")
    assert stat.S_ISFIFO(st.mode)


def test_walk_rejects_bad_names(gofer: GoferClient) -> None:
    fid, _ = gofer.attach()
    a, _ = gofer.walk(fid, b"a")
    for name in (b"", b".", b"..", b"a/b", b"/etc", b"a/../..", b"x\0y",
                 b"sub/"):
        _raises(errno.EINVAL, gofer.walk, a, name)
    _raises(errno.ENAMETOOLONG, gofer.walk, fid, b"x" * 256)
    _raises(errno.ENOENT, gofer.walk, fid, b"missing")
    f, _ = gofer.walk(fid, b"file.txt")
    _raises(errno.ENOTDIR, gofer.walk, f, b"x")


def test_symlinks_are_never_followed(gofer: GoferClient, root: Path) -> None:
    fid, _ = gofer.attach()
    for name, target in ((b"passwd_link", b"/etc/passwd"),
                         (b"rel_escape", b"../../../../../../etc/passwd"),
                         (b"dirlink", b"a")):
        link, st = gofer.walk(fid, name)
        assert stat.S_ISLNK(st.mode)
        _same(st, root / name.decode())
        assert gofer.readlink(link) == target
        _raises(errno.ELOOP, gofer.open, link, os.O_RDONLY)
        _raises(errno.ENOTDIR, gofer.walk, link, b"passwd")
        _raises(errno.ENOTDIR, gofer.readdir, link)
    f, _ = gofer.walk(fid, b"file.txt")
    _raises(errno.EINVAL, gofer.readlink, f)


def test_walk_many(gofer: GoferClient, root: Path) -> None:
    fid, _ = gofer.attach()
    walked, err = gofer.walk_many(fid, [b"a", b"sub"])
    assert err == 0 and len(walked) == 2
    _same(walked[1][1], root / "a" / "sub")
    # Stops after a non-directory: the symlink is for the caller to resolve.
    walked, err = gofer.walk_many(fid, [b"dirlink", b"b.txt"])
    assert err == 0 and len(walked) == 1 and stat.S_ISLNK(walked[0][1].mode)
    walked, err = gofer.walk_many(fid, [b"a", b"b.txt", b"x"])
    assert err == 0 and [s.size for _, s in walked][-1] == 5
    walked, err = gofer.walk_many(fid, [b"a", b"nope", b"x"])
    assert err == errno.ENOENT and len(walked) == 1
    walked, err = gofer.walk_many(fid, [b"a", b"..", b"a"])
    assert err == errno.EINVAL and len(walked) == 1
    assert gofer.walk_many(fid, []) == ([], 0)
    # Walked fids are real fids.
    walked, _ = gofer.walk_many(fid, [b"a", b"b.txt"])
    fd = gofer.open(walked[1][0], os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"hello"
    finally:
        os.close(fd)


def test_statfs(gofer: GoferClient, root: Path) -> None:
    fid, _ = gofer.attach()
    s = gofer.statfs(fid)
    host = os.statvfs(root)
    assert (s.bsize, s.blocks, s.namelen) == (host.f_bsize, host.f_blocks,
                                              host.f_namemax)
    assert s.f_type != 0


def test_close(gofer: GoferClient) -> None:
    fid, _ = gofer.attach()
    a, _ = gofer.walk(fid, b"a")
    b, _ = gofer.walk(a, b"b.txt")
    gofer.close(a)          # the child keeps working without its parent fid
    fd = gofer.open(b, os.O_RDONLY)
    os.close(fd)
    _raises(errno.EBADF, gofer.stat, a)
    _raises(errno.EBADF, gofer.close, a)
    _raises(errno.EBADF, gofer.walk, 12345, b"a")


# Opening and reading.


def test_open_donates_readable_fds(gofer: GoferClient, root: Path) -> None:
    fid, _ = gofer.attach()
    f, _ = gofer.walk(fid, b"file.txt")
    fd = gofer.open(f, os.O_RDONLY)
    try:
        assert os.pread(fd, 4, 3) == b"3456"
        assert os.get_inheritable(fd) is False
        assert os.fstat(fd).st_ino == os.stat(root / "file.txt").st_ino
    finally:
        os.close(fd)
    fd = gofer.open(f, os.O_RDWR | os.O_APPEND)
    try:
        os.write(fd, b"AB")
    finally:
        os.close(fd)
    assert (root / "file.txt").read_bytes() == b"0123456789AB"
    fd = gofer.open(f, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert (root / "file.txt").read_bytes() == b""
    d = gofer.open(fid, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert sorted(os.listdir(d)) == sorted(os.listdir(root))
    finally:
        os.close(d)


def test_open_rejects(gofer: GoferClient, root: Path) -> None:
    fid, _ = gofer.attach()
    f, _ = gofer.walk(fid, b"file.txt")
    _raises(errno.ENOTDIR, gofer.open, f, os.O_RDONLY | os.O_DIRECTORY)
    _raises(errno.EISDIR, gofer.open, fid, os.O_WRONLY)
    for bad in (os.O_CREAT, os.O_PATH, os.O_ACCMODE, 1 << 30):
        _raises(errno.EINVAL, gofer.open, f, bad)
    fifo, _ = gofer.walk(fid, b"fifo")
    _raises(errno.EPERM, gofer.open, fifo, os.O_RDONLY)   # and did not block


def test_open_after_host_replacement_is_stale(gofer: GoferClient,
                                              root: Path) -> None:
    fid, _ = gofer.attach()
    f, _ = gofer.walk(fid, b"file.txt")
    os.rename(root / "file.txt", root / "moved.txt")
    (root / "file.txt").write_bytes(b"other")
    _raises(errno.ESTALE, gofer.open, f, os.O_RDONLY)
    os.unlink(root / "file.txt")
    os.symlink("/etc/passwd", root / "file.txt")
    _raises(errno.ELOOP, gofer.open, f, os.O_RDONLY)


def test_readdir(gofer: GoferClient, root: Path) -> None:
    fid, _ = gofer.attach()
    got = sorted(gofer.readdir(fid))
    want = sorted((os.fsencode(e.name), e.inode(),
                   stat.S_IFMT(e.stat(follow_symlinks=False).st_mode) >> 12)
                  for e in os.scandir(root))
    assert got == want
    assert {d for _, _, d in got} == {4, 8, 10, 1}   # dir, reg, lnk, fifo
    a, _ = gofer.walk(fid, b"a")
    sub, _ = gofer.walk(a, b"sub")
    assert gofer.readdir(sub) == []
    f, _ = gofer.walk(fid, b"file.txt")
    _raises(errno.ENOTDIR, gofer.readdir, f)


def test_readdir_large(gofer: GoferClient, root: Path) -> None:
    for i in range(600):     # ~130 KiB of entries: more than one buffer
        (root / "a" / "sub" / (f"{i:04d}-" + "n" * 200)).touch()
    fid, _ = gofer.attach()
    walked, _ = gofer.walk_many(fid, [b"a", b"sub"])
    names = sorted(n for n, _, _ in gofer.readdir(walked[1][0]))
    assert names == sorted(os.fsencode(n) for n in os.listdir(root / "a" / "sub"))


# Mutations.


def test_create(gofer: GoferClient, root: Path) -> None:
    fid, _ = gofer.attach()
    new, st, fd = gofer.create(fid, b"new.txt", os.O_RDWR, 0o640)
    try:
        os.write(fd, b"data")
    finally:
        os.close(fd)
    assert (root / "new.txt").read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(root / "new.txt").st_mode) == 0o640  # no umask
    assert st.ino == os.stat(root / "new.txt").st_ino
    assert gofer.stat(new).size == 4
    _raises(errno.EEXIST, gofer.create, fid, b"new.txt", os.O_RDWR, 0o600)
    _raises(errno.EEXIST, gofer.create, fid, b"passwd_link", os.O_RDWR, 0o600)
    _raises(errno.EINVAL, gofer.create, fid, b"../x", os.O_RDWR, 0o600)
    _raises(errno.EINVAL, gofer.create, fid, b"x", os.O_RDWR | os.O_DIRECTORY,
            0o600)
    f, _ = gofer.walk(fid, b"file.txt")
    _raises(errno.ENOTDIR, gofer.create, f, b"x", os.O_RDWR, 0o600)


def test_mkdir_symlink_link(gofer: GoferClient, root: Path) -> None:
    fid, _ = gofer.attach()
    d, st = gofer.mkdir(fid, b"d", 0o751)
    assert stat.S_ISDIR(st.mode) and stat.S_IMODE(st.mode) == 0o751
    _same(st, root / "d")
    s, st = gofer.symlink(d, b"ln", b"/etc/shadow")
    assert os.readlink(root / "d" / "ln") == "/etc/shadow"
    _same(st, root / "d" / "ln")
    _raises(errno.ELOOP, gofer.open, s, os.O_RDONLY)
    _raises(errno.EINVAL, gofer.symlink, d, b"ln2", b"")
    f, _ = gofer.walk(fid, b"file.txt")
    h, st = gofer.link(f, d, b"hard")
    assert st.nlink == 2 and st.ino == os.stat(root / "file.txt").st_ino
    # Linking a symlink links the symlink itself, not /etc/shadow.
    _, st = gofer.link(s, fid, b"ln_hard")
    assert stat.S_ISLNK(st.mode)
    _raises(errno.EPERM, gofer.link, d, fid, b"dirhard")
    _raises(errno.EEXIST, gofer.mkdir, fid, b"d", 0o755)
    _raises(errno.EPERM, gofer.mknod, fid, b"node", stat.S_IFCHR | 0o666, 0x103)
    assert not (root / "node").exists()


def test_unlink(gofer: GoferClient, root: Path) -> None:
    fid, _ = gofer.attach()
    f, _ = gofer.walk(fid, b"file.txt")
    gofer.unlink(fid, b"file.txt", False)
    assert not (root / "file.txt").exists()
    assert gofer.stat(f).nlink == 0     # the fid still holds the inode
    _raises(errno.ENOENT, gofer.open, f, os.O_RDONLY)
    _raises(errno.ENOTEMPTY, gofer.unlink, fid, b"a", True)
    a, _ = gofer.walk(fid, b"a")
    gofer.unlink(a, b"sub", True)
    assert not (root / "a" / "sub").exists()
    _raises(errno.EISDIR, gofer.unlink, fid, b"a", False)
    _raises(errno.ENOTDIR, gofer.unlink, fid, b"passwd_link", True)
    _raises(errno.EINVAL, gofer.unlink, a, b"..", True)
    gofer.unlink(fid, b"passwd_link", False)
    assert os.path.exists("/etc/passwd")


def test_rename_moves_fids(gofer: GoferClient, root: Path) -> None:
    fid, _ = gofer.attach()
    a, _ = gofer.walk(fid, b"a")
    b, _ = gofer.walk(a, b"b.txt")
    f, _ = gofer.walk(fid, b"file.txt")
    gofer.rename(a, b"b.txt", fid, b"file.txt")     # replaces file.txt
    assert (root / "file.txt").read_bytes() == b"hello"
    fd = gofer.open(b, os.O_RDONLY)                 # follows the file
    try:
        assert os.read(fd, 10) == b"hello"
    finally:
        os.close(fd)
    _raises(errno.ENOENT, gofer.open, f, os.O_RDONLY)   # the replaced one
    gofer.rename(fid, b"a", fid, b"a2")
    _same(gofer.stat(a), root / "a2")
    _raises(errno.EINVAL, gofer.rename, fid, b"a2", fid, b"../a3")
    _raises(errno.EINVAL, gofer.rename, fid, b"a2/sub", fid, b"x")
    # Renaming one hard link onto another is a no-op; both fids stay valid.
    h, _ = gofer.link(b, fid, b"hard")
    gofer.rename(fid, b"hard", fid, b"file.txt")
    assert (root / "hard").exists()
    os.close(gofer.open(h, os.O_RDONLY))
    os.close(gofer.open(b, os.O_RDONLY))


def test_rename2(gofer: GoferClient, root: Path) -> None:
    """RENAME2: renameat2 on the host with RENAME_EXCHANGE or RENAME_NOREPLACE, through
    the Gofer's seccomp filter; fids follow their files; RENAME_WHITEOUT never."""
    fid, _ = gofer.attach()
    a, _ = gofer.walk(fid, b"a")
    b, _ = gofer.walk(a, b"b.txt")
    f, _ = gofer.walk(fid, b"file.txt")
    gofer.rename2(a, b"b.txt", fid, b"file.txt", 2)            # RENAME_EXCHANGE
    assert (root / "file.txt").read_bytes() == b"hello"
    assert (root / "a" / "b.txt").read_bytes() == b"0123456789"
    for fid_, data in ((b, b"hello"), (f, b"0123456789")):      # each fid follows its file
        fd = gofer.open(fid_, os.O_RDONLY)
        try:
            assert os.read(fd, 20) == data
        finally:
            os.close(fd)
    gofer.rename2(fid, b"a", fid, b"file.txt", 2)               # a directory with a file
    assert (root / "a").is_file() and (root / "file.txt" / "sub").is_dir()
    _raises(errno.EEXIST, gofer.rename2, fid, b"a", fid, b"fifo", 1)
    gofer.rename2(fid, b"a", fid, b"new", 1)                    # RENAME_NOREPLACE
    assert (root / "new").is_file() and not (root / "a").exists()
    _raises(errno.ENOENT, gofer.rename2, fid, b"new", fid, b"missing", 2)
    for bad in (4, 3, 6, 8):                                    # WHITEOUT, both, unknown
        _raises(errno.EINVAL, gofer.rename2, fid, b"new", fid, b"x", bad)
    assert not (root / "x").exists()


def test_setattr(gofer: GoferClient, root: Path) -> None:
    fid, _ = gofer.attach()
    f, _ = gofer.walk(fid, b"file.txt")
    st = gofer.setattr(f, SetattrMask.MODE, mode=0o604)
    assert stat.S_IMODE(st.mode) == 0o604
    st = gofer.setattr(f, SetattrMask.SIZE, size=3)
    assert st.size == 3 and (root / "file.txt").read_bytes() == b"012"
    st = gofer.setattr(f, SetattrMask.ATIME | SetattrMask.MTIME,
                       atime_ns=1_000_000_123, mtime_ns=2_000_000_456)
    assert (st.atime_ns, st.mtime_ns) == (1_000_000_123, 2_000_000_456)
    st = gofer.setattr(f, SetattrMask.MTIME, mtime_ns=5_000_000_000)
    assert (st.atime_ns, st.mtime_ns) == (1_000_000_123, 5_000_000_000)
    _same(st, root / "file.txt")
    if os.geteuid() == 0:
        st = gofer.setattr(f, SetattrMask.UID_GID, uid=1234, gid=-1)
        assert st.uid == 1234 and st.gid == os.getegid()
    # Directories through their own fd, symlinks never followed.
    st = gofer.setattr(fid, SetattrMask.MODE, mode=0o711)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o711
    link, _ = gofer.walk(fid, b"passwd_link")
    before = os.stat("/etc/passwd")
    _raises(errno.EOPNOTSUPP, gofer.setattr, link, SetattrMask.MODE, 0o777)
    _raises(errno.EINVAL, gofer.setattr, link, SetattrMask.SIZE, 0, -1, -1, 0)
    st = gofer.setattr(link, SetattrMask.MTIME, mtime_ns=7_000_000_000)
    assert st.mtime_ns == 7_000_000_000
    assert os.stat("/etc/passwd") == before
    _raises(errno.EISDIR, gofer.setattr, fid, SetattrMask.SIZE, 0, -1, -1, 0)
    _raises(errno.EINVAL, gofer.setattr, f, 1 << 20)
    assert gofer.setattr(f, 0) == gofer.stat(f)


def test_readonly_rejects_writes(ro_gofer: GoferClient, root: Path) -> None:
    before = _snapshot(root)
    g = ro_gofer
    fid, _ = g.attach()
    f, _ = g.walk(fid, b"file.txt")
    a, _ = g.walk(fid, b"a")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC,
                  os.O_WRONLY | os.O_APPEND):
        _raises(errno.EROFS, g.open, f, flags)
    _raises(errno.EROFS, g.create, fid, b"new", os.O_RDWR, 0o644)
    _raises(errno.EROFS, g.create, fid, b"file.txt", os.O_RDWR, 0o644)
    _raises(errno.EROFS, g.mkdir, fid, b"d", 0o755)
    _raises(errno.EROFS, g.mknod, fid, b"n", stat.S_IFIFO | 0o644, 0)
    _raises(errno.EROFS, g.symlink, fid, b"s", b"/etc/passwd")
    _raises(errno.EROFS, g.link, f, fid, b"h")
    _raises(errno.EROFS, g.unlink, fid, b"file.txt", False)
    _raises(errno.EROFS, g.unlink, a, b"sub", True)
    _raises(errno.EROFS, g.rename, fid, b"file.txt", fid, b"x")
    for mask in SetattrMask:
        _raises(errno.EROFS, g.setattr, f, mask)
    fd = g.open(f, os.O_RDONLY)       # reading is still fine
    try:
        assert os.read(fd, 3) == b"012"
    finally:
        os.close(fd)
    assert g.readdir(fid)
    assert _snapshot(root) == before


# Robustness.


def _raw(client: GoferClient, data: bytes) -> tuple[int, bytes]:
    """Sends raw bytes on the client's socket; returns one raw reply frame."""
    sock: socket.socket = client._chan.sock
    sock.sendall(data)
    hdr = sock.recv(HEADER.size, socket.MSG_WAITALL)
    length, code = HEADER.unpack(hdr)
    body = sock.recv(length, socket.MSG_WAITALL) if length else b""
    return code, body


def _frame(code: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), code) + payload


def test_server_survives_garbage(root: Path) -> None:
    for gofer, pid in _start(root, readonly=False):
        _garbage(gofer, pid)


def _garbage(gofer: GoferClient, pid: int) -> None:
    fid, _ = gofer.attach()
    assert _raw(gofer, _frame(999, b"\xff" * 40)) == (errno.EINVAL, b"")
    assert _raw(gofer, _frame(0, b"")) == (errno.EINVAL, b"")
    for op in Op:
        # Truncated, oversized and junk payloads for every op.
        for junk in (b"", b"\x01", b"\xff" * 7, os.urandom(33)):
            code, body = _raw(gofer, _frame(op, junk))
            if code == 0:       # junk that happened to decode: still no harm
                assert op in (Op.ATTACH, Op.WALK_MANY) and len(junk) < 8
            else:
                assert code in (errno.EINVAL, errno.EBADF, errno.EROFS,
                                errno.EPERM), (op, junk, code)
    # Valid framing, bad fid; a name-walk with a length past the end.
    assert _raw(gofer, _frame(Op.STAT, struct.pack("<Q", 2**64 - 1)))[0] == \
        errno.EBADF
    bad = struct.pack("<QH", fid, 50) + b"abc"
    assert _raw(gofer, _frame(Op.WALK_MANY, bad))[0] == errno.EINVAL
    # An oversized frame is refused and skipped, keeping the stream in step.
    big = protocol.MAX_PAYLOAD + 1
    sock = gofer._chan.sock
    sock.sendall(HEADER.pack(big, Op.STAT))
    assert HEADER.unpack(sock.recv(8, socket.MSG_WAITALL)) == (0, errno.EMSGSIZE)
    chunk = b"\0" * (1 << 20)
    left = big
    while left:
        left -= sock.send(chunk[:min(left, len(chunk))])
    # Fds sent to the server are dropped, not installed.
    r, w = os.pipe()
    try:
        socket.send_fds(sock, [_frame(Op.STAT, struct.pack("<Q", fid))], [r, w])
        hdr = sock.recv(HEADER.size, socket.MSG_WAITALL)
        length, code = HEADER.unpack(hdr)
        assert code == 0
        sock.recv(length, socket.MSG_WAITALL)
        pipes = [os.readlink(f"/proc/{pid}/fd/{fd}")
                 for fd in os.listdir(f"/proc/{pid}/fd")]
        assert not [t for t in pipes if t.startswith("pipe:")]
    finally:
        os.close(r)
        os.close(w)
    # Still serving.
    _, st = gofer.walk(fid, b"a")
    assert stat.S_ISDIR(st.mode)


def test_child_holds_only_its_fds(root: Path, tmp_path: Path) -> None:
    leak = os.open(tmp_path / "outside.txt", os.O_RDONLY)   # inheritable
    os.set_inheritable(leak, True)
    try:
        for client, pid in _start(root, readonly=False):
            fid, _ = client.attach()
            a, _ = client.walk(fid, b"a")
            fds = os.listdir(f"/proc/{pid}/fd")
            targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}
            assert str(tmp_path / "outside.txt") not in targets
            assert targets <= {"/dev/null", str(root), str(root / "a")} | {
                t for t in targets if t.startswith("socket:")}
            assert sum(t.startswith("socket:") for t in targets) == 1
            assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    finally:
        os.close(leak)


def test_server_exits_on_close(root: Path) -> None:
    sock, pid = start_gofer(str(root), readonly=True)
    sock.close()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_many_clients_independent(root: Path) -> None:
    gens = [_start(root, readonly=False) for _ in range(2)]
    (c1, _), (c2, _) = (next(g) for g in gens)
    f1, _ = c1.attach()
    f2, _ = c2.attach()
    c1.close(f1)
    assert stat.S_ISDIR(c2.stat(f2).mode)
    for g in gens:
        with pytest.raises(StopIteration):
            next(g)


def test_gofer_dies_with_its_parent(root: Path) -> None:
    # The middle process hands us its socket end, so only PR_SET_PDEATHSIG,
    # not end of stream, can stop the gofer when the middle process exits.
    here, there = socket.socketpair()
    middle = os.fork()
    if middle == 0:
        try:
            sock, pid = start_gofer(str(root), readonly=True)
            socket.send_fds(there, [struct.pack("<i", pid)], [sock.fileno()])
            there.recv(1)       # wait until the gofer is known to serve
        finally:
            os._exit(0)
    there.close()
    try:
        msg, fds, _, _ = socket.recv_fds(here, 4, 1)
        (pid,) = struct.unpack("<i", msg)
        client = GoferClient(socket.socket(fileno=fds[0]))
        client.attach()
        here.send(b"x")
        os.waitpid(middle, 0)
    finally:
        here.close()
    for _ in range(500):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("gofer outlived its parent")
    client.shutdown()


def test_close_many_releases_every_fid(gofer: GoferClient) -> None:
    root_fid, _ = gofer.attach()
    fids = [gofer.walk(root_fid, b"a")[0] for _ in range(5)]
    gofer.close_many(fids[:3])
    for fid in fids[:3]:
        _raises(errno.EBADF, gofer.stat, fid)
    gofer.stat(fids[3])
    # An unknown fid among known ones: the known ones go anyway, then EBADF.
    _raises(errno.EBADF, gofer.close_many, [fids[3], 999999, fids[4]])
    _raises(errno.EBADF, gofer.stat, fids[4])


def test_fd_budget_gives_enfile_before_any_change(root: Path) -> None:
    """A Gofer at its fd budget (RLIMIT_NOFILE less GOFER_FD_RESERVE nodes) refuses
    new nodes with ENFILE before touching the host, so the request can be retried."""
    from pyvisor.gofer.server import GOFER_FD_RESERVE
    nofile = GOFER_FD_RESERVE + 8
    sock, pid = start_gofer(str(root), readonly=False, nofile=nofile)
    client = GoferClient(sock)
    try:
        root_fid, _ = client.attach()
        held = []
        with pytest.raises(OSError) as info:
            for _ in range(20):
                held.append(client.walk(root_fid, b"a")[0])
        assert info.value.errno == errno.ENFILE and len(held) == 7
        for make in (lambda: client.create(root_fid, b"new", os.O_RDWR, 0o644),
                     lambda: client.mkdir(root_fid, b"newdir", 0o755),
                     lambda: client.symlink(root_fid, b"newlink", b"x")):
            _raises(errno.ENFILE, make)
        assert not (root / "new").exists() and not (root / "newdir").exists()
        assert not os.path.lexists(root / "newlink")
        assert len(os.listdir(f"/proc/{pid}/fd")) <= nofile
        client.close_many(held)
        fid, _, fd = client.create(root_fid, b"new", os.O_RDWR, 0o644)
        os.close(fd)
        assert (root / "new").exists()
    finally:
        client.shutdown()
        os.waitpid(pid, 0)


def test_rename2_confined(root: Path) -> None:
    """RENAME2 passes the confined Gofer's seccomp filter (renameat2 with
    RENAME_EXCHANGE); RENAME_WHITEOUT is refused before reaching the host."""
    (root / "x").write_text("X")
    for client, _ in _start_confined(root):
        fid, _ = client.attach()
        client.rename2(fid, b"x", fid, b"file.txt", 2)
        assert (root / "x").read_text() == "0123456789"
        assert (root / "file.txt").read_text() == "X"
        _raises(errno.EINVAL, client.rename2, fid, b"x", fid, b"w", 4)


def _start_confined(root: Path) -> Iterator[tuple[GoferClient, int]]:
    sock, pid = start_gofer(str(root), False, confine=True)
    client = GoferClient(sock)
    try:
        yield client, pid
    finally:
        client.shutdown()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
