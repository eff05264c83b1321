"""Hand-written ctypes bindings for ptrace, process_vm_{readv,writev} and friends.

These are the Sentry's only doors to its stubs.  Every function raises OSError
with the host errno on failure; callers at the platform edge translate.
Concurrency: called only from the Sentry's single thread (ptrace requires the
tracer thread to be the one that attached).
"""

from __future__ import annotations

import ctypes
import os

from pyvisor.abi.linux import ptrace as P
from pyvisor.sentry.arch.registers import REGS_SIZE, Registers  # noqa: F401 (re-exported)

_libc = ctypes.CDLL(None, use_errno=True)

_ptrace = _libc.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]

_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


# PTRACE_GETREGS/SETREGS read and write the Sentry's own register type in place:
# arch.Registers has user_regs_struct's layout.
UserRegs = Registers

FPREGS_SIZE = 512  # struct user_fpregs_struct (fxsave layout)


class IOVec(ctypes.Structure):
    """struct iovec."""

    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_process_vm_readv = _libc.process_vm_readv
_process_vm_readv.restype = ctypes.c_ssize_t
_process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(IOVec), ctypes.c_ulong,
                              ctypes.POINTER(IOVec), ctypes.c_ulong, ctypes.c_ulong]
_process_vm_writev = _libc.process_vm_writev
_process_vm_writev.restype = ctypes.c_ssize_t
_process_vm_writev.argtypes = _process_vm_readv.argtypes


def _check(ret: int) -> int:
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def ptrace(req: int, pid: int, addr: int = 0, data: int = 0) -> int:
    """Raw ptrace(2); raises OSError."""
    ctypes.set_errno(0)
    ret = _ptrace(req, pid, addr, data)
    if ret == -1 and ctypes.get_errno() != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def traceme() -> None:
    """PTRACE_TRACEME, called in a freshly forked stub before exec."""
    ptrace(P.PTRACE_TRACEME, 0)


def set_options(pid: int, options: int) -> None:
    ptrace(P.PTRACE_SETOPTIONS, pid, 0, options)


def get_regs(pid: int, regs: UserRegs) -> None:
    """PTRACE_GETREGS into `regs`."""
    if _ptrace(P.PTRACE_GETREGS, pid, None, ctypes.addressof(regs)) == -1:
        _check(-1)


def set_regs(pid: int, regs: UserRegs) -> None:
    """PTRACE_SETREGS from `regs`."""
    if _ptrace(P.PTRACE_SETREGS, pid, None, ctypes.addressof(regs)) == -1:
        _check(-1)


def get_fpregs(pid: int, buf: ctypes.Array[ctypes.c_char]) -> None:
    if _ptrace(P.PTRACE_GETFPREGS, pid, None, ctypes.addressof(buf)) == -1:
        _check(-1)


def set_fpregs(pid: int, buf: ctypes.Array[ctypes.c_char]) -> None:
    if _ptrace(P.PTRACE_SETFPREGS, pid, None, ctypes.addressof(buf)) == -1:
        _check(-1)


def get_xstate(pid: int, buf: ctypes.Array[ctypes.c_char]) -> int:
    """PTRACE_GETREGSET NT_X86_XSTATE into `buf`; returns the bytes the host wrote."""
    iov = IOVec(ctypes.addressof(buf), len(buf))
    if _ptrace(P.PTRACE_GETREGSET, pid, ctypes.c_void_p(P.NT_X86_XSTATE),
               ctypes.addressof(iov)) == -1:
        _check(-1)
    return int(iov.iov_len)


def set_xstate(pid: int, buf: ctypes.Array[ctypes.c_char], n: int) -> None:
    """PTRACE_SETREGSET NT_X86_XSTATE from the first `n` bytes of `buf` (the host
    wants exactly its regset size)."""
    iov = IOVec(ctypes.addressof(buf), n)
    if _ptrace(P.PTRACE_SETREGSET, pid, ctypes.c_void_p(P.NT_X86_XSTATE),
               ctypes.addressof(iov)) == -1:
        _check(-1)


def resume(req: int, pid: int, sig: int = 0) -> None:
    """PTRACE_SYSEMU / PTRACE_CONT / PTRACE_SINGLESTEP with a signal to inject."""
    if _ptrace(req, pid, None, sig) == -1:
        _check(-1)


def get_event_msg(pid: int) -> int:
    val = ctypes.c_ulong(0)
    if _ptrace(P.PTRACE_GETEVENTMSG, pid, None, ctypes.addressof(val)) == -1:
        _check(-1)
    return val.value


def get_siginfo(pid: int) -> bytes:
    """PTRACE_GETSIGINFO: the raw 128-byte siginfo of the current signal stop."""
    buf = ctypes.create_string_buffer(128)
    if _ptrace(P.PTRACE_GETSIGINFO, pid, None, ctypes.addressof(buf)) == -1:
        _check(-1)
    return buf.raw


def vm_read(pid: int, addr: int, size: int) -> bytes:
    """Reads `size` bytes of another process's memory; may return fewer (a fault)."""
    buf = ctypes.create_string_buffer(size)
    local = IOVec(ctypes.addressof(buf), size)
    remote = IOVec(addr, size)
    n = _process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if n < 0:
        _check(-1)
    return buf.raw[:n]


def vm_read_into(pid: int, addr: int, local_addr: int, size: int) -> int:
    """Reads into a local buffer address; returns the byte count (may be short)."""
    local = IOVec(local_addr, size)
    remote = IOVec(addr, size)
    n = _process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return _check(n)


def vm_write(pid: int, addr: int, data: bytes | bytearray | memoryview) -> int:
    """Writes to another process's memory; returns the byte count (may be short)."""
    size = len(data)
    if size == 0:
        return 0
    if isinstance(data, bytes):
        src = ctypes.c_char_p(data)
        local = IOVec(ctypes.cast(src, ctypes.c_void_p).value, size)
    else:
        cbuf = (ctypes.c_char * size).from_buffer(data) if not isinstance(data, memoryview) \
            else (ctypes.c_char * size).from_buffer(data.cast("B")) if not data.readonly \
            else ctypes.create_string_buffer(bytes(data), size)
        local = IOVec(ctypes.addressof(cbuf), size)
    remote = IOVec(addr, size)
    n = _process_vm_writev(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return _check(n)


def vm_write_from(pid: int, addr: int, local_addr: int, size: int) -> int:
    """Writes from a local buffer address; returns the byte count (may be short)."""
    local = IOVec(local_addr, size)
    remote = IOVec(addr, size)
    n = _process_vm_writev(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return _check(n)


def tgkill(tgid: int, tid: int, sig: int) -> None:
    _check(_syscall(234, tgid, tid, sig))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    f = _libc.prctl
    f.restype = ctypes.c_int
    f.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return _check(f(option, arg2, arg3, arg4, arg5))


PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
