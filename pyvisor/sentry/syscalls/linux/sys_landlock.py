"""landlock_create_ruleset, landlock_add_rule, landlock_restrict_self.
Linux: security/landlock/syscalls.c.  The model and its checks: security/landlock.py.
Rules: LANDLOCK_RULE_PATH_BENEATH and LANDLOCK_RULE_NET_PORT."""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_RDWR
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.security import landlock
from pyvisor.sentry.security.landlock import Ruleset
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.syscalls.linux.sys_poll import anon_file
from pyvisor.sentry.vfs.file import FileDescription, FileImpl

_RULESET_ATTR = struct.Struct("<QQQ")         # handled_access_fs, handled_access_net, scoped
_PATH_BENEATH_ATTR = struct.Struct("<Qi")     # allowed_access, parent_fd (packed)
_NET_PORT_ATTR = struct.Struct("<QQ")         # allowed_access, port
_CAP_SYS_ADMIN = 21
_PAGE_SIZE = 4096


class RulesetFile(FileImpl):
    """A ruleset fd ("anon_inode:landlock-ruleset")."""

    splice_read = False

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset


def _ruleset_of(t: Task, fd: int) -> Ruleset:
    f = t.fd_table.get(fd)
    if not isinstance(f.impl, RulesetFile):
        raise SyscallError(Errno.EBADFD)
    return f.impl.ruleset


def sys_landlock_create_ruleset(t: Task, r: SyscallArguments) -> int:
    """Implements landlock_create_ruleset(2)."""
    addr, size, flags = r.pointer(0), r.uint64(1), r.uint32(2)
    if flags:
        if flags == landlock.LANDLOCK_CREATE_RULESET_VERSION and not addr and not size:
            return landlock.ABI_VERSION
        raise SyscallError(Errno.EINVAL)
    if size < 8:
        raise SyscallError(Errno.EINVAL)          # copy_min_struct_from_user
    if size > _PAGE_SIZE:
        raise SyscallError(Errno.E2BIG)
    if not addr:
        raise SyscallError(Errno.EFAULT)
    raw = t.copy_in(addr, size)
    if any(raw[_RULESET_ATTR.size:]):
        raise SyscallError(Errno.E2BIG)           # unknown trailing fields must be zero
    fs, net, scoped = _RULESET_ATTR.unpack(raw[:_RULESET_ATTR.size].ljust(_RULESET_ATTR.size,
                                                                          b"\0"))
    rs = landlock.create_ruleset(fs, net, scoped)
    f = anon_file(b"landlock-ruleset", RulesetFile(rs), O_RDWR)
    return t.fd_table.install(f, cloexec=True)


def sys_landlock_add_rule(t: Task, r: SyscallArguments) -> int:
    """Implements landlock_add_rule(2)."""
    fd, rule_type, addr, flags = r.fd(0), r.uint32(1), r.pointer(2), r.uint32(3)
    if flags:
        raise SyscallError(Errno.EINVAL)
    rs = _ruleset_of(t, fd)
    if rule_type == landlock.LANDLOCK_RULE_NET_PORT:
        allowed, port = _NET_PORT_ATTR.unpack(t.copy_in(addr, _NET_PORT_ATTR.size))
        landlock.add_net_port(rs, port, allowed)
        return 0
    if rule_type != landlock.LANDLOCK_RULE_PATH_BENEATH:
        raise SyscallError(Errno.EINVAL)
    allowed, parent_fd = _PATH_BENEATH_ATTR.unpack(t.copy_in(addr, _PATH_BENEATH_ATTR.size))
    if not allowed:
        raise SyscallError(Errno.ENOMSG)
    if allowed & ~rs.handled_fs:
        raise SyscallError(Errno.EINVAL)
    pf: FileDescription = t.fd_table.get(parent_fd)       # O_PATH files too (fdget_raw)
    if pf.inode.fs.name in ("anon_inodefs", "pipefs", "sockfs"):
        raise SyscallError(Errno.EBADFD)                  # internal filesystems
    landlock.add_path_beneath(rs, pf.inode, allowed)
    return 0


def sys_landlock_restrict_self(t: Task, r: SyscallArguments) -> int:
    """Implements landlock_restrict_self(2)."""
    fd, flags = r.fd(0), r.uint32(1)
    if not t.no_new_privs and not t.creds.capable(_CAP_SYS_ADMIN):
        raise SyscallError(Errno.EPERM)
    if flags:
        raise SyscallError(Errno.EINVAL)
    landlock.restrict_self(t, _ruleset_of(t, fd))
    return 0
