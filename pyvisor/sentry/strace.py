"""--strace: the one place that formats application syscalls, like `runsc --strace`.

Arguments are decoded by kind: paths and strings are read from the application
(at most 64 bytes shown), flags and fds as numbers, pointers in hex.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.sysno_amd64 import Sysno

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

# Argument kinds: s = C string (path), d = signed int, x = hex/pointer, u = unsigned.
_KINDS: dict[int, str] = {
    Sysno.read: "dxu", Sysno.write: "dsu", Sysno.open: "sxo", Sysno.openat: "dsxo",
    Sysno.close: "d", Sysno.stat: "sx", Sysno.lstat: "sx", Sysno.fstat: "dx",
    Sysno.newfstatat: "dsxx", Sysno.statx: "dsxxx", Sysno.access: "so", Sysno.faccessat: "dso",
    Sysno.faccessat2: "dsox", Sysno.execve: "sxx", Sysno.mmap: "xuxxdx", Sysno.munmap: "xu",
    Sysno.mprotect: "xux", Sysno.brk: "x", Sysno.chdir: "s", Sysno.mkdir: "so",
    Sysno.mkdirat: "dso", Sysno.unlink: "s", Sysno.unlinkat: "dsx", Sysno.rmdir: "s",
    Sysno.rename: "ss", Sysno.renameat2: "dsdsx", Sysno.readlink: "sxu",
    Sysno.readlinkat: "dsxu", Sysno.symlink: "ss", Sysno.exit_group: "d", Sysno.exit: "d",
    Sysno.wait4: "dxxx", Sysno.kill: "dd", Sysno.clone: "xxxxx", Sysno.dup2: "dd",
    Sysno.dup3: "ddx", Sysno.pipe2: "xx", Sysno.fcntl: "ddx", Sysno.ioctl: "dxx",
    Sysno.lseek: "ddd", Sysno.getdents64: "dxu", Sysno.rt_sigaction: "dxxu",
    Sysno.rt_sigprocmask: "dxxu", Sysno.futex: "xdxxxx", Sysno.pread64: "dxud",
    Sysno.pwrite64: "dxud", Sysno.chmod: "so", Sysno.truncate: "sd",
}


def _fmt_arg(t: Task, kind: str, v: int) -> str:
    if kind == "s":
        if v == 0:
            return "NULL"
        try:
            s = t.mm.copy_in_partial(v, 64)
        except Exception:  # noqa: BLE001
            return hex(v)
        s = s.split(b"\0", 1)[0]
        return repr(s.decode("utf-8", "backslashreplace"))
    if kind == "d":
        v &= 0xFFFFFFFF
        return str(v - (1 << 32) if v & 0x80000000 else v)
    if kind == "o":
        return oct(v)
    if kind == "u":
        return str(v)
    return hex(v)


def _name(nr: int) -> str:
    try:
        return Sysno(nr).name
    except ValueError:
        return f"syscall_{nr}"


def enter(t: Task, nr: int) -> None:
    r = t.regs
    vals = (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9)
    kinds = _KINDS.get(nr, "xxx")
    args = ", ".join(_fmt_arg(t, k, v) for k, v in zip(kinds, vals))
    print(f"I [{t.tid:>4}] {t.tg.comm.decode(errors='replace')} E {_name(nr)}({args})",
          file=sys.stderr, flush=True)


def exit(t: Task, nr: int, ret: Any) -> None:
    if isinstance(ret, int):
        if -4096 < ret < 0:
            try:
                res = f"{ret} ({Errno(-ret).name})"
            except ValueError:
                res = str(ret)
        else:
            res = hex(ret) if ret > 0xFFFF else str(ret)
    else:
        res = str(getattr(ret, "value", ret))
    print(f"I [{t.tid:>4}] {t.tg.comm.decode(errors='replace')} X {_name(nr)} = {res}",
          file=sys.stderr, flush=True)
