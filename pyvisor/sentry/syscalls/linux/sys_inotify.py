"""inotify_init, inotify_init1, inotify_add_watch, inotify_rm_watch.

Linux: fs/notify/inotify/inotify_user.c.  The watches and events: vfs/inotify.py.
"""

from __future__ import annotations

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_RDONLY
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.syscalls.linux.sys_poll import anon_file
from pyvisor.sentry.vfs import inotify as ino
from pyvisor.sentry.vfs import ops
from pyvisor.sentry.vfs.perms import MAY_READ, check_access
from pyvisor.sentry.vfs.vfs import PATH_MAX


def _init(t: Task, flags: int) -> int:
    if flags & ~(ino.IN_NONBLOCK | ino.IN_CLOEXEC):
        raise SyscallError(Errno.EINVAL)
    impl = ino.new_instance(t)
    f = anon_file(b"inotify", impl, O_RDONLY | (flags & ino.IN_NONBLOCK))
    try:
        return t.fd_table.install(f, cloexec=bool(flags & ino.IN_CLOEXEC))
    except SyscallError:
        f.decref()
        raise


def sys_inotify_init(t: Task, r: SyscallArguments) -> int:
    """Implements inotify_init(2)."""
    return _init(t, 0)


def sys_inotify_init1(t: Task, r: SyscallArguments) -> int:
    """Implements inotify_init1(2)."""
    return _init(t, r.int32(0))


def _instance(t: Task, fd: int) -> ino.Inotify:
    f = t.fd_table.get(fd)
    impl = f.impl
    if not isinstance(impl, ino.Inotify):
        raise SyscallError(Errno.EINVAL)
    return impl


def sys_inotify_add_watch(t: Task, r: SyscallArguments) -> int:
    """Implements inotify_add_watch(2), in Linux's order of checks."""
    fd, addr, mask = r.int32(0), r.pointer(1), r.uint32(2)
    if mask & ino.IN_MASK_ADD and mask & ino.IN_MASK_CREATE:
        raise SyscallError(Errno.EINVAL)
    if mask & ~ino.ALL_INOTIFY_BITS or not mask & ino.ALL_INOTIFY_BITS:
        raise SyscallError(Errno.EINVAL)
    inst = _instance(t, fd)
    path = t.copy_in_str(addr, PATH_MAX)
    loc = ops.lookup_at(t, -100, path, follow=not mask & ino.IN_DONT_FOLLOW)
    if mask & ino.IN_ONLYDIR and not loc.inode.is_dir():
        raise SyscallError(Errno.ENOTDIR)
    check_access(t, loc.inode, MAY_READ)
    return inst.add(loc.inode, mask)


def sys_inotify_rm_watch(t: Task, r: SyscallArguments) -> int:
    """Implements inotify_rm_watch(2)."""
    inst = _instance(t, r.int32(0))
    w = inst.by_wd.get(r.int32(1))
    if w is None:
        raise SyscallError(Errno.EINVAL)
    inst.remove(w)
    return 0
