"""Landlock: unprivileged file-system sandboxing.  Linux: security/landlock/.

A ruleset handles some access rights and allows some of them beneath chosen
directories (LANDLOCK_RULE_PATH_BENEATH rules, keyed by the directory's
inode).  landlock_restrict_self adds a frozen copy of it as a layer to the
calling thread's domain, kept in its credentials: inherited by clone and
fork, kept across execve, never removed.  An access right that some layer
handles is granted only if, in every such layer, a rule on the file itself or
on one of the directories above it (up through mount points to the root)
allows it; otherwise the call fails with EACCES.

Rights enforced (ABI 5): execute, read and write of files, reading
directories, removing files and directories, making each kind of file
(checked on the parent directory), REFER (a link or rename to another
directory needs it on both directories), TRUNCATE (truncate(2), O_TRUNC; for
ftruncate(2) the right is taken when the file is opened, as Linux does),
IOCTL_DEV (ioctls on device files, also taken at open), and TCP bind and
connect by port (LANDLOCK_RULE_NET_PORT).  Scopes (ABI 6) are not modelled,
so the version reported is 5 and rulesets with `scoped` are refused (EINVAL).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.vfs.file import FileDescription
    from pyvisor.sentry.vfs.inode import Inode
    from pyvisor.sentry.vfs.vfs import Dentry, Mount

# From <linux/landlock.h>.
ABI_VERSION = 5
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2
ACCESS_FS_EXECUTE = 1 << 0
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_READ_FILE = 1 << 2
ACCESS_FS_READ_DIR = 1 << 3
ACCESS_FS_REMOVE_DIR = 1 << 4
ACCESS_FS_REMOVE_FILE = 1 << 5
ACCESS_FS_MAKE_CHAR = 1 << 6
ACCESS_FS_MAKE_DIR = 1 << 7
ACCESS_FS_MAKE_REG = 1 << 8
ACCESS_FS_MAKE_SOCK = 1 << 9
ACCESS_FS_MAKE_FIFO = 1 << 10
ACCESS_FS_MAKE_BLOCK = 1 << 11
ACCESS_FS_MAKE_SYM = 1 << 12
ACCESS_FS_REFER = 1 << 13
ACCESS_FS_TRUNCATE = 1 << 14
ACCESS_FS_IOCTL_DEV = 1 << 15
ACCESS_FS_ALL = (1 << 16) - 1
# Rights that make sense on a file (not a directory) in a path-beneath rule.
ACCESS_FILE = ACCESS_FS_EXECUTE | ACCESS_FS_WRITE_FILE | ACCESS_FS_READ_FILE | \
    ACCESS_FS_TRUNCATE | ACCESS_FS_IOCTL_DEV
ACCESS_NET_BIND_TCP = 1 << 0
ACCESS_NET_CONNECT_TCP = 1 << 1
ACCESS_NET_ALL = ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP
MAX_LAYERS = 16
MAX_RULES = 4096                   # per ruleset: the Sentry's bound, not Linux's

_S_IFMT = 0o170000
_MAKE_FOR_TYPE = {0o100000: ACCESS_FS_MAKE_REG, 0o040000: ACCESS_FS_MAKE_DIR,
                  0o020000: ACCESS_FS_MAKE_CHAR, 0o060000: ACCESS_FS_MAKE_BLOCK,
                  0o010000: ACCESS_FS_MAKE_FIFO, 0o140000: ACCESS_FS_MAKE_SOCK,
                  0o120000: ACCESS_FS_MAKE_SYM}


def _key(inode: Inode) -> tuple[int, int]:
    """A rule's identity: the file, whatever dentry or Inode object reaches it."""
    return (inode.fs.dev, inode.ino)


@dataclass(eq=False)
class Ruleset:
    """struct landlock_ruleset while it is being built (a ruleset fd's)."""

    handled_fs: int
    handled_net: int = 0
    rules: dict[tuple[int, int], int] = field(default_factory=dict)
    # The rules' inodes, so a number is not reused for another file while it lives.
    pinned: list[Any] = field(default_factory=list)
    ports: dict[int, int] = field(default_factory=dict)    # TCP port -> allowed rights


@dataclass(frozen=True)
class Layer:
    """One enforced ruleset in a domain (immutable)."""

    handled_fs: int
    rules: dict[tuple[int, int], int]
    pinned: tuple[Any, ...]
    handled_net: int
    ports: dict[int, int]


# Files opened without the right to truncate them (ftruncate checks this), and device
# files opened without IOCTL_DEV.
_no_truncate: weakref.WeakSet[FileDescription] = weakref.WeakSet()
_no_ioctl: weakref.WeakSet[FileDescription] = weakref.WeakSet()


def domain(t: Task) -> tuple[Layer, ...]:
    return t.creds.landlock or ()


def create_ruleset(handled_fs: int, handled_net: int, scoped: int) -> Ruleset:
    if handled_fs & ~ACCESS_FS_ALL or handled_net & ~ACCESS_NET_ALL or scoped:
        raise SyscallError(Errno.EINVAL)
    if not handled_fs and not handled_net:
        raise SyscallError(Errno.ENOMSG)      # an empty ruleset
    return Ruleset(handled_fs, handled_net)


def add_net_port(rs: Ruleset, port: int, allowed: int) -> None:
    """Linux: add_rule_net_port."""
    if not allowed:
        raise SyscallError(Errno.ENOMSG)
    if allowed & ~rs.handled_net or port > 0xFFFF:
        raise SyscallError(Errno.EINVAL)
    if port not in rs.ports and len(rs.ports) >= MAX_RULES:
        raise SyscallError(Errno.E2BIG)
    rs.ports[port] = rs.ports.get(port, 0) | allowed


def check_net(t: Task, port: int, right: int) -> None:
    """A TCP bind or connect to `port`: EACCES unless every layer handling the right
    has a rule allowing it for the port.  Linux: current_check_access_socket."""
    for layer in t.creds.landlock or ():
        if layer.handled_net & right and not layer.ports.get(port, 0) & right:
            raise SyscallError(Errno.EACCES)


def add_path_beneath(rs: Ruleset, inode: Inode, allowed: int) -> None:
    """Linux: landlock_append_fs_rule (rights beyond the handled ones: EINVAL)."""
    if not allowed:
        raise SyscallError(Errno.ENOMSG)
    if allowed & ~rs.handled_fs:
        raise SyscallError(Errno.EINVAL)
    if not inode.is_dir() and allowed & ~ACCESS_FILE:
        raise SyscallError(Errno.EINVAL)
    key = _key(inode)
    if key not in rs.rules:
        if len(rs.rules) >= MAX_RULES:
            raise SyscallError(Errno.E2BIG)
        rs.pinned.append(inode)
    rs.rules[key] = rs.rules.get(key, 0) | allowed


def restrict_self(t: Task, rs: Ruleset) -> None:
    """Adds `rs` as a layer to the calling thread's domain (new credentials)."""
    layers = domain(t)
    if len(layers) >= MAX_LAYERS:
        raise SyscallError(Errno.E2BIG)
    new = t.creds.copy()
    new.landlock = layers + (Layer(rs.handled_fs, dict(rs.rules), tuple(rs.pinned),
                                   rs.handled_net, dict(rs.ports)),)
    t.creds = new


def _granted(layer: Layer, mount: Mount, dentry: Dentry, want: int) -> bool:
    """Whether rules of `layer` on the file or the directories above it allow `want`."""
    allowed = 0
    m: Mount | None = mount
    d: Dentry | None = dentry
    while m is not None and d is not None:
        got = layer.rules.get(_key(d.inode))
        if got:
            allowed |= got
            if not want & ~allowed:
                return True
        if d is m.root or d.parent is None:
            d, m = m.mountpoint, m.parent
        else:
            d = d.parent
    return False


def check(t: Task, mount: Mount, dentry: Dentry, want: int) -> None:
    """EACCES unless every layer handling a right of `want` allows it at the path."""
    layers = t.creds.landlock
    if not layers:
        return
    for layer in layers:
        need = want & layer.handled_fs
        if need and not _granted(layer, mount, dentry, need):
            raise SyscallError(Errno.EACCES)


def check_open(t: Task, mount: Mount, dentry: Dentry, flags: int,
               exec_: bool = False) -> bool:
    """An open (not O_PATH) with `flags`: the read, write and execute rights, and
    TRUNCATE for O_TRUNC.  Returns whether the file may be truncated through the new
    description (see opened()).  Linux: hook_file_open, hook_file_truncate."""
    if not t.creds.landlock:
        return True
    acc = flags & 3
    want = 0
    is_dir = dentry.inode.is_dir()
    if acc in (0, 2) or exec_:
        want |= ACCESS_FS_READ_DIR if is_dir else ACCESS_FS_READ_FILE
    if acc in (1, 2):
        want |= ACCESS_FS_WRITE_FILE
    if exec_:
        want |= ACCESS_FS_EXECUTE
    check(t, mount, dentry, want)
    if is_dir:
        return True
    ftype = dentry.inode.mode & _S_IFMT
    if ftype in (0o020000, 0o060000):       # a device: IOCTL_DEV, kept by the description
        try:
            check(t, mount, dentry, ACCESS_FS_IOCTL_DEV)
        except SyscallError:
            return False
        return True
    try:
        check(t, mount, dentry, ACCESS_FS_TRUNCATE)
    except SyscallError:
        if flags & 0o1000:                  # O_TRUNC
            raise
        return False
    return True


def opened(f: FileDescription, allowed: bool) -> None:
    """Remembers a description opened without the right to truncate it (a regular
    file) or to use ioctls on it (a device)."""
    if not allowed:
        if f.inode.is_regular():
            _no_truncate.add(f)
        else:
            _no_ioctl.add(f)


def check_ioctl(f: FileDescription) -> None:
    """Device ioctls (past the generic ones) of a file opened without IOCTL_DEV."""
    if f in _no_ioctl:
        raise SyscallError(Errno.EACCES)


def check_ftruncate(f: FileDescription) -> None:
    if f in _no_truncate:
        raise SyscallError(Errno.EACCES)


def make_right(mode: int) -> int:
    return _MAKE_FOR_TYPE.get(mode & _S_IFMT, ACCESS_FS_MAKE_REG)


def remove_right(inode: Inode) -> int:
    return ACCESS_FS_REMOVE_DIR if inode.is_dir() else ACCESS_FS_REMOVE_FILE


def check_reparent(t: Task, old_parent: tuple[Mount, Dentry], new_parent: tuple[Mount, Dentry],
                   moved: Inode, removed: Inode | None, exchange: bool = False) -> None:
    """A rename or link: remove/make rights on the two directories, and REFER on
    both when the file changes directory.  Linux: current_check_refer_path, simplified
    (a move between directories needs REFER wherever it is handled)."""
    if not t.creds.landlock:
        return
    om, od = old_parent
    nm, nd = new_parent
    check(t, om, od, remove_right(moved))
    check(t, nm, nd, make_right(moved.mode))
    if removed is not None:
        check(t, nm, nd, remove_right(removed))
        if exchange:
            check(t, om, od, make_right(removed.mode))
    if od is not nd or om is not nm:
        _check_refer(t, (om, od), (nm, nd))


def _check_refer(t: Task, old: tuple[Mount, Dentry], new: tuple[Mount, Dentry]) -> None:
    """REFER on both directories; its denial is EXDEV, so that programs fall back to
    copying (Linux: current_check_refer_path)."""
    try:
        check(t, old[0], old[1], ACCESS_FS_REFER)
        check(t, new[0], new[1], ACCESS_FS_REFER)
    except SyscallError:
        raise SyscallError(Errno.EXDEV) from None


def check_link(t: Task, new_parent: tuple[Mount, Dentry], old_parent: tuple[Mount, Dentry],
               inode: Inode) -> None:
    """link(2): making the file in the new directory, REFER when it is another one."""
    if not t.creds.landlock:
        return
    nm, nd = new_parent
    check(t, nm, nd, make_right(inode.mode))
    om, od = old_parent
    if od is not nd or om is not nm:
        _check_refer(t, (om, od), (nm, nd))


def landlock_tcp(t: Task, sock: Any, addr: bytes, bind: bool) -> None:
    """bind(2) or connect(2) of an AF_INET/AF_INET6 stream socket to a port.
    Other sockets and malformed addresses are left to the socket code.  Linux:
    hook_socket_bind, hook_socket_connect."""
    if getattr(sock, "family", 0) not in (2, 10) or getattr(sock, "stype", 0) & 0xF != 1:
        return
    if len(addr) < 4 or int.from_bytes(addr[:2], "little") not in (2, 10):
        return
    port = int.from_bytes(addr[2:4], "big")
    check_net(t, port, ACCESS_NET_BIND_TCP if bind else ACCESS_NET_CONNECT_TCP)
