"""execve: replace a process's image.  Linux: fs/exec.c.

The new image is built in a fresh address space (a clone of the master stub)
before anything of the old one is touched, so a failed exec leaves the
caller as it was.  Only then are other threads killed, the old address space
dropped, close-on-exec fds closed and caught signals reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_SYS_PTRACE
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_RDONLY
from pyvisor.abi.linux.mman import PAGE_SIZE
from pyvisor.abi.linux.signal import SIG_DFL, SIG_IGN
from pyvisor.abi.linux.stat import S_IFLNK, S_IFMT, S_IFREG
from pyvisor.sentry.arch.fpu import initial_state
from pyvisor.sentry.kernel import cputime, futex, posix_timers, vdso
from pyvisor.sentry.kernel import creds as kcreds
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.loader import elf
from pyvisor.sentry.mm.memory_manager import MemoryManager
from pyvisor.sentry.vfs import inotify, textbusy
from pyvisor.sentry.vfs.file import FileDescription
from pyvisor.sentry.vfs.vfs import Location

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task


def open_exec(t: Task, path: bytes, dirloc: Location | None = None, follow: bool = True,
              loc: Location | None = None) -> FileDescription:
    """Opens a program for execution: a regular file with execute permission.  `loc`:
    the file itself (execveat's AT_EMPTY_PATH); `follow` False: a symlink at the end
    of `path` is ELOOP (AT_SYMLINK_NOFOLLOW)."""
    from pyvisor.sentry.vfs.ops import lookup
    if loc is None:
        loc = lookup(t, dirloc, path, follow=follow)
    inode = loc.dentry.inode
    if inode.mode & S_IFMT == S_IFLNK:
        raise SyscallError(Errno.ELOOP)
    if inode.is_dir():
        raise SyscallError(Errno.EACCES)
    if inode.mode & S_IFMT != S_IFREG:
        raise SyscallError(Errno.EACCES)
    if not inode.mode & 0o111:
        raise SyscallError(Errno.EACCES)
    if "noexec" in loc.mount.options.split(","):
        raise SyscallError(Errno.EACCES)      # Linux: path_noexec()
    if not t.creds.fs_superuser():
        from pyvisor.sentry.vfs.perms import check_access
        check_access(t, inode, 1)
    if t.creds.landlock:
        from pyvisor.sentry.security import landlock
        landlock.check_open(t, loc.mount, loc.dentry, O_RDONLY, exec_=True)
    textbusy.check_exec(t.kernel, inode)      # ETXTBSY while open for writing
    f = FileDescription.open(loc.mount, loc.dentry, O_RDONLY)
    if inotify._watches:
        inotify.file_event(f, inotify.IN_OPEN)
    return f


def load(t: Task, path: bytes, argv: list[bytes], envp: list[bytes],
         dirloc: Location | None = None, *, follow: bool = True, loc: Location | None = None,
         filename: bytes | None = None, path_inaccessible: bool = False,
         ) -> tuple[MemoryManager, int, int, FileDescription, list[bytes]]:
    """Builds a new address space running `path`.  Returns (mm, entry, sp, file, argv).
    `filename`: the name execve was given (AT_EXECFN, and a script's interpreter's
    argument; execveat's /dev/fd/N[/path]); `path_inaccessible`: that name dies with a
    close-on-exec fd, so a script cannot be run by it (ENOENT; Linux:
    BINPRM_FLAGS_PATH_INACCESSIBLE)."""
    fd = open_exec(t, path, dirloc, follow, loc)
    execfn = path = filename if filename is not None else path
    for _ in range(elf.MAX_SCRIPT_DEPTH + 1):
        head = elf.read_all(fd, t, 4096, 0)
        if head and inotify._watches:
            inotify.file_event(fd, inotify.IN_ACCESS)      # Linux: kernel_read
        if head[:2] != b"#!":
            break
        line = head[2:].split(b"\n", 1)[0]
        if path_inaccessible:
            fd.decref()
            raise SyscallError(Errno.ENOENT)
        if b"\n" not in head[2:] and len(head) >= 256:
            line = line[:254]
        line = line.replace(b"\t", b" ").strip()
        if not line:
            raise SyscallError(Errno.ENOEXEC)
        interp, _, arg = line.partition(b" ")
        arg = arg.strip()
        argv = [interp] + ([arg] if arg else []) + [path] + argv[1:]
        path = interp
        script = fd
        fd = open_exec(t, interp)
        script.decref()                # the script is read: closed (IN_CLOSE_NOWRITE)
    else:
        raise SyscallError(Errno.ELOOP)
    info = elf.parse_elf(head, fd, t)
    interp_fd = None
    interp_info = None
    if info.interp is not None:
        if not info.interp:
            # Linux opens "" as the working directory: not a regular file.
            raise SyscallError(Errno.EACCES)
        interp_fd = open_exec(t, info.interp)
        ihead = elf.read_all(interp_fd, t, 4096, 0)
        if ihead and inotify._watches:
            inotify.file_event(interp_fd, inotify.IN_ACCESS)
        if len(ihead) < elf.EHDR_SIZE:
            raise SyscallError(Errno.EIO)       # Linux: elf_read's short read
        interp_info = elf.parse_elf(ihead, interp_fd, t, is_interp=True)
    elf.check_args(argv, envp)
    kernel = t.kernel
    inode = fd.inode
    may_setid = not t.no_new_privs and "nosuid" not in fd.mount.options.split(",")
    # An unsafe exec gains nothing (Linux: check_unsafe_exec): traced by a tracer
    # without CAP_SYS_PTRACE, or sharing its fs context (CLONE_FS) with another process.
    unsafe = t.ptrace is not None and not t.ptrace.tracer.creds.capable(CAP_SYS_PTRACE) or \
        any(x.fs is t.fs and x.tg is not t.tg for x in kernel.tasks_by_tid.values())
    creds, secure = kcreds.exec_creds(t.creds, inode.mode, inode.uid, inode.gid, may_setid,
                                      unsafe)
    mm = MemoryManager(kernel.platform.new_address_space())
    mm.exec_creds = (creds, secure)
    # The point of no return (Linux: begin_new_exec): from here an error does not
    # return from execve; the new image is committed and killed by SIGSEGV
    # (Linux: bprm_execve's force_fatal_sig).  It is recorded in mm.exec_fatal.
    try:
        bias, end, phdr = elf.map_elf(mm, fd, info, is_interp=False)
        entry = info.entry + bias
        interp_bias = 0
        if interp_info is not None and interp_fd is not None:
            if interp_info.etype not in (elf.ET_EXEC, elf.ET_DYN):
                raise SyscallError(Errno.EINVAL)    # Linux: load_elf_interp
            interp_bias, _, _ = elf.map_elf(mm, interp_fd, interp_info, is_interp=True)
            start = interp_info.entry + interp_bias
        else:
            start = entry
        mm.brk_start = mm.brk = end
        sysinfo = vdso.get(kernel).map_into(mm)
        aux = elf.make_auxv(info, bias, phdr, interp_bias, creds, sysinfo, secure)
        sp = elf.build_stack(mm, argv, envp, execfn, aux, creds)
    except SyscallError as e:
        mm.exec_fatal = e.errno
        start = sp = 0
    except BaseException:
        mm.space.release()
        raise
    mm.exe = Location(fd.mount, fd.dentry)
    return mm, start, sp, fd, argv


def commit(t: Task, mm: MemoryManager, entry: int, sp: int, fd: FileDescription,
           argv: list[bytes], envp: list[bytes], filename: bytes | None = None) -> None:
    """Point of no return: the task now runs the new image.  `filename`: the path given
    to execve, whose last component names the process (comm), as in Linux."""
    kernel = t.kernel
    tg = t.tg
    # Other threads die (Linux: de_thread).
    for other in list(tg.tasks):
        if other is not t:
            other.exit_pending = True
            if other.thread.running or other.coro is not None or other.wake is not None:
                kernel.signal_wakeup(other)
            if not other.thread.running:
                kernel.task_exit(other)
    futex.exit_robust_list(t)              # with the old image (Linux: exec_mm_release)
    old_mm = t.mm
    old_thread = t.thread
    kernel.tasks_by_context.pop(old_thread, None)
    new_thread = kernel.platform.new_context(mm.space)
    t.thread = new_thread
    kernel.tasks_by_context[new_thread] = t
    t.mm = mm
    mm.add_user()
    textbusy.exe_acquire(kernel, mm)
    posix_timers.clear_all(tg)
    cputime.note_rss_of(tg, old_mm)
    cputime.settle_unused(tg, old_thread.space)
    kernel.platform.release_context(old_thread)
    kernel.release_mm(old_mm)
    # Registers: a clean slate at the entry point.
    regs = kernel.platform.initial_registers()
    regs.rip = entry
    regs.rsp = sp
    t.regs = regs
    tg.did_exec = True                     # its parent may no longer setpgid it (EACCES)
    if any(x.fd_table is t.fd_table for x in kernel.tasks_by_tid.values() if x is not t):
        t.fd_table = t.fd_table.fork()     # CLONE_FILES sharers keep theirs (unshare_files)
    t.fd_table.close_on_exec()
    for a in tg.sighand.actions[1:]:
        if a.handler not in (SIG_DFL, SIG_IGN):
            a.handler, a.flags, a.mask, a.restorer = SIG_DFL, 0, 0, 0
    t.altstack = (0, 2, 0)
    t.clear_child_tid = 0
    c = t.creds
    creds, secure = mm.exec_creds or kcreds.exec_creds(c, 0, 0, 0, False, False)
    if creds != c:
        t.creds = creds               # set-id bits and capabilities (kernel/creds.py)
    # Dumpable only if the ids are not mixed (Linux: begin_new_exec, suid_dumpable 0).
    tg.dumpable = 0 if creds.euid != creds.uid or creds.egid != creds.gid else 1
    if secure:
        t.pdeath_signal = 0
        t.personality &= ~0x0740000   # PER_CLEAR_ON_SETID
    # Linux (begin_new_exec): the last component of the path given to execve (a symlink's
    # own name: /bin/sleep -> busybox is "sleep"), truncated to 15 bytes.
    base = filename.rstrip(b"/").rsplit(b"/", 1)[-1] if filename else b""
    tg.comm = (base or fd.dentry.name)[:15]
    t.name = tg.comm
    tg.exe = Location(fd.mount, fd.dentry)
    tg.argv = b"".join(a + b"\0" for a in argv)
    tg.environ = b"".join(e + b"\0" for e in envp)
    if t.vfork_parent is not None:
        kernel._vfork_done(t)
    # Fresh FPU state for the new image.
    kernel.set_fpregs(t, initial_state())
    name_host_stub(t, sp)


def name_host_stub(t: Task, sp: int) -> None:
    """Gives the stub process of the new image the program's name on the host (its
    comm), so that the host's ps, `docker top` and `podman top` (which look up the host
    pids `pyvisor ps --format json` lists) show `[sleep]`, not the stub's memfd name.
    The name is written just below the fresh stack pointer (free at entry: the image
    has not run) and set by the platform (an injected prctl(PR_SET_NAME) in the stopped stub)."""
    name = t.tg.comm[:15] + b"\0"
    addr = (sp - 256) & ~15
    try:
        t.copy_out(addr, name)
    except SyscallError:
        return                  # no stack below sp to borrow: the stub keeps its name
    t.kernel.platform.set_host_name(t.thread, addr)


# Bytes read at once when collecting argv/envp strings: up to the end of the page after
# the string's first one (strings are packed together on the caller's stack).
_STRINGS_WINDOW = 2 * PAGE_SIZE
_POINTERS_CHUNK = 512          # bytes of a pointer array read at once (64 pointers)


def copy_strings(t: Task, addr: int, max_count: int = 1 << 17) -> list[bytes]:
    """argv or envp of execve: the strings of the NULL-terminated pointer array at `addr`.
    Linux: fs/exec.c, copy_strings.  E2BIG past `max_count` strings or MAX_ARGS_BYTES.

    The array and the strings are read in blocks, not a pointer and a page at a time, so
    an environment of 40 strings costs a few reads of application memory instead of ~80
    (each a process_vm_readv).  Each string is taken from a single read (no double fetch:
    another thread changing the memory meanwhile gets a consistent, if racy, result, as
    on Linux); a block is never read past the end of the page it ends in unless the
    string continues there."""
    out: list[bytes] = []
    if addr == 0:
        return out
    mm = t.mm
    total = 0
    ptrs = b""
    pos = addr
    win_base, win = 0, b""
    while True:
        if not ptrs:
            n = min(_POINTERS_CHUNK, PAGE_SIZE - pos % PAGE_SIZE)
            if n < 8:
                ptrs = mm.copy_in(pos, 8)            # a pointer across a page boundary
            else:
                ptrs = mm.copy_in_partial(pos, n)
                ptrs = ptrs[:len(ptrs) - len(ptrs) % 8]
                if not ptrs:
                    raise SyscallError(Errno.EFAULT)
            pos += len(ptrs)
        p = int.from_bytes(ptrs[:8], "little")
        ptrs = ptrs[8:]
        if p == 0:
            return out
        s = None
        off = p - win_base
        if 0 <= off < len(win):
            end = win.find(b"\0", off)
            if end >= 0:
                s = win[off:end]
        if s is None:
            chunk = mm.copy_in_partial(p, _STRINGS_WINDOW - p % PAGE_SIZE)
            end = chunk.find(b"\0")
            if end >= 0:
                win_base, win = p, chunk
                s = chunk[:end]
            else:                 # a string longer than the window, or a fault
                try:
                    s = mm.copy_in_str(p, elf.MAX_ARG_STRLEN)
                except SyscallError as e:
                    if e.errno != Errno.ENAMETOOLONG:
                        raise
                    # Linux: no NUL within MAX_ARG_STRLEN is E2BIG (valid_arg_len).
                    raise SyscallError(Errno.E2BIG) from None
        total += len(s) + 1
        if len(out) >= max_count or total > elf.MAX_ARGS_BYTES:
            raise SyscallError(Errno.E2BIG)
        out.append(s)
