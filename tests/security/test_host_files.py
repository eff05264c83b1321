"""Host files: writes from inside never reach the host.

For `pyvisor do` the sandbox's root is the host's root, read-only, under a
copy-on-write overlay whose upper layer is a tmpfs that vanishes with the
sandbox. So `..` above the root, symlinks, /proc/*/root and /proc/*/fd all
lead to files the program may see; what matters is that no change it makes
-- content, size, mode, owner, times, xattrs, links, names -- reaches the
host file. Each attack runs natively on one copy of a target file (and must
change it: the attack is real) and in the sandbox on another (which must stay
byte-for-byte and metadata-identical, with its directory).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seclib import (assert_native_ran, assert_same_tree, assert_sandbox_ran, file_state,
                    kvs, tree_state)

CONTENT = b"host file: must not change\n" * 8

ATTACKS = {
    "write": "open(O_WRONLY) + write",
    "append": "open(O_APPEND) + write",
    "pwritev": "pwritev/pwrite + fsync",
    "trunc": "open(O_TRUNC)",
    "truncate": "truncate, ftruncate, fallocate",
    "creat": "creat() over the file; O_TMPFILE + linkat into its directory",
    "unlink": "unlink the file, rmdir its directory",
    "rename": "rename it away, rename another file over it",
    "chmod": "chmod 04777 the file and its directory",
    "chown": "chown/lchown",
    "utime": "utimensat on the file and its directory",
    "xattr": "setxattr user./trusted./security.capability",
    "link": "hard link into the host directory, write through it",
    "create": "create file, dir, symlink, fifo, socket node in the host dir",
    "dotdot": "chdir('/../..'), open('/../../..PATH') and '../'*13 + PATH",
    "symlink": "our own symlinks (absolute, relative, to the dir) to the file",
    "procroot": "/proc/self/root, /proc/1/root, /proc/self/cwd/.., thread-self",
    "procfd": "reopen a read-only / O_PATH fd for writing via /proc/self/fd",
    "mmap": "MAP_SHARED write + msync; RO map then mprotect(PROT_WRITE)",
    "copy": "copy_file_range, sendfile, and stdout dup2'ed onto the file",
}


def _target(root: Path) -> Path:
    d = root / "hostdir"
    d.mkdir()
    d.chmod(0o755)
    f = d / "target"
    f.write_bytes(CONTENT)
    f.chmod(0o644)
    (d / "neighbour").write_bytes(b"neighbour\n")
    return f


@pytest.mark.parametrize("attack", list(ATTACKS), ids=list(ATTACKS))
def test_native_attack_is_real(attack, secprog, run, world_tmp):
    """Natively, as root, the attack changes the host file or its directory."""
    target = _target(world_tmp)
    before = tree_state(target.parent)
    r = run("native", [secprog("files"), attack, str(target)], timeout=30)
    assert_native_ran(r)
    after = tree_state(target.parent)
    assert before != after, f"{attack}: natively nothing changed\n{r.output}"


@pytest.mark.parametrize("attack", list(ATTACKS), ids=list(ATTACKS))
def test_sandbox_cannot_change_host_file(attack, secprog, run, world_tmp):
    """In the sandbox the same attack leaves the host file and its directory
    identical (content and metadata), and no stray file appears in /tmp."""
    target = _target(world_tmp)
    before = tree_state(target.parent)
    strays = [Path("/tmp/.pyvisor-sec-replacement")]
    assert all(not p.exists() for p in strays)
    r = run("pyvisor", [secprog("files"), attack, str(target)], timeout=60)
    assert_sandbox_ran(r)
    assert_same_tree(before, tree_state(target.parent))
    assert file_state(target).content == CONTENT
    if attack == "dotdot":
        rep = kvs(r.stdout)
        assert rep["cwd"] == "/" and rep["root_is_dotdot"] == "1", r.output
        assert rep["shadow_same"] == "1", r.output
    for p in strays:
        assert not p.exists(), f"{p} appeared on the host"
    assert not list(Path("/tmp").glob(".pyvisor-sec-lnk-*")), "a symlink leaked to /tmp"


def test_file_handles(secprog, run, world_tmp):
    """name_to_handle_at + open_by_handle_at (the "shocker" container escape:
    a file handle opens a host file by inode, bypassing every path check).
    Natively the handle of the host file opens it read-write; inside,
    name_to_handle_at is refused, and open_by_handle_at with that very host
    handle (obtained natively, passed in) opens nothing."""
    target = _target(world_tmp)
    n = assert_native_ran(run("native", [secprog("kernel"), "handles", "native",
                                         str(target.parent)], timeout=30))
    assert n["name_to_handle_at"] == "0" and n["open_by_handle_at"] != "-1", n
    assert target.read_bytes().startswith(b"PWNED"), "natively the handle did not open"
    target.write_bytes(CONTENT)
    before = tree_state(target.parent)
    r = run("pyvisor", [secprog("kernel"), "handles", "sandbox", str(target.parent),
                        n["handle"]], timeout=60)
    s = assert_sandbox_ran(r)
    assert s["name_to_handle_at"] == "-1", r.output
    assert s["open_by_handle_at"] == "-1", f"a host file handle opened inside\n{r.output}"
    assert_same_tree(before, tree_state(target.parent))
