"""ptrace(2), process_vm_readv(2), process_vm_writev(2).  Linux: kernel/ptrace.c
(ptrace_request, ptrace_get_syscall_info, ptrace_peek_siginfo), arch/x86/kernel/ptrace.c
(arch_ptrace, getreg/putreg, the regsets), mm/process_vm_access.c.

The tracee side (stops, wait, events) lives in kernel/ptrace.py; this file decodes
requests.  Registers are the Task's (arch.registers), never the host's: a tracer
cannot reach the platform's own ptrace.

Differences from Linux: cs and ss may only hold the 64-bit user selectors (a tracer
cannot move a tracee to 32-bit code); DR7 enable bits are refused (EIO: no hardware
breakpoints); PEEKSIGINFO lists pending signals by first queueing, signal by signal.
"""

from __future__ import annotations

import struct

from pyvisor.abi.linux import ptrace as P
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.signal import SI_KERNEL, UNBLOCKABLE, Signal
from pyvisor.sentry.arch import fpu
from pyvisor.sentry.arch.registers import REGS_SIZE, TASK_SIZE_MAX, USER_CS, USER_DS, Registers
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel import ptrace
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.kernel.ptrace import Resume
from pyvisor.sentry.kernel.task import Task, sees
from pyvisor.sentry.syscalls.linux.sys_read_write import read_iovecs

_M64 = 0xFFFFFFFFFFFFFFFF
_REG_NAMES = [name for name, _ in Registers._fields_]
# struct user (<sys/user.h>): u_debugreg[8] at 848, sizeof 912.
_USER_DEBUGREG = 848
_USER_SIZE = 912
# X86 FLAG_MASK: the eflags bits a tracer may change.
_FLAG_MASK = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x10000 | 0x40000
_ARCH_SET_GS, _ARCH_SET_FS, _ARCH_GET_FS, _ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
_RESUMES = {
    P.PTRACE_CONT: Resume.CONT,
    P.PTRACE_SYSCALL: Resume.SYSCALL,
    P.PTRACE_SINGLESTEP: Resume.SINGLESTEP,
    P.PTRACE_SYSEMU: Resume.SYSEMU,
    P.PTRACE_SYSEMU_SINGLESTEP: Resume.SYSEMU_SINGLESTEP,
}
_SYSCALL_INFO = struct.Struct("<B3xIQQ")        # op, arch, instruction_pointer, stack_pointer
SYSCALL_INFO_SIZE = 88                          # sizeof(struct ptrace_syscall_info)


def _find(t: Task, pid: int) -> Task:
    target = t.kernel.tasks_by_tid.get(pid)
    if target is None or target.exited or not sees(t.tg, target.tg):
        raise SyscallError(Errno.ESRCH)
    return target


def sys_ptrace(t: Task, r: SyscallArguments) -> int:
    """Implements ptrace(2)."""
    req, pid, addr, data = r.int64(0), r.int32(1), r.uint64(2), r.uint64(3)
    if req == P.PTRACE_TRACEME:
        ptrace.traceme(t)
        return 0
    if req in (P.PTRACE_ATTACH, P.PTRACE_SEIZE):
        seize = req == P.PTRACE_SEIZE
        if seize and (addr != 0 or data & ~P.PTRACE_O_MASK):
            raise SyscallError(Errno.EIO)
        if seize and data & P.PTRACE_O_SUSPEND_SECCOMP:
            raise SyscallError(Errno.EINVAL)
        ptrace.attach(t, _find(t, pid), seize, data if seize else 0)
        return 0
    tracee = ptrace.check_attached(t, pid, need_stop=req not in (
        P.PTRACE_KILL, P.PTRACE_INTERRUPT))
    ps = tracee.ptrace
    assert ps is not None
    if req == P.PTRACE_KILL:
        ksignal.send_to_task(tracee, ksignal.SigInfo(Signal.SIGKILL, SI_KERNEL))
        return 0
    if req == P.PTRACE_INTERRUPT:
        if addr or data:
            raise SyscallError(Errno.EIO)
        ptrace.interrupt(tracee)
        return 0
    if req in _RESUMES:
        ptrace.resume(tracee, _RESUMES[req], data)
        return 0
    if req == P.PTRACE_DETACH:
        if not 0 <= data <= 64:
            raise SyscallError(Errno.EIO)
        ptrace.detach(tracee, data)
        return 0
    if req == P.PTRACE_LISTEN:
        ptrace.listen(tracee)
        return 0
    return _request(t, tracee, req, addr, data)


def _request(t: Task, tracee: Task, req: int, addr: int, data: int) -> int:
    """The requests on a stopped tracee that only read or change its state."""
    ps = tracee.ptrace
    assert ps is not None
    if req in (P.PTRACE_PEEKTEXT, P.PTRACE_PEEKDATA):
        t.copy_out(data, struct.pack("<Q", ptrace.peek_word(tracee, addr)))
        return 0
    if req in (P.PTRACE_POKETEXT, P.PTRACE_POKEDATA):
        ptrace.poke_word(tracee, addr, data)
        return 0
    if req == P.PTRACE_PEEKUSER:
        t.copy_out(data, struct.pack("<Q", _peek_user(tracee, addr)))
        return 0
    if req == P.PTRACE_POKEUSER:
        _poke_user(tracee, addr, data)
        return 0
    if req == P.PTRACE_GETREGS:
        t.copy_out(data, bytes(tracee.regs))
        return 0
    if req == P.PTRACE_SETREGS:
        _set_regs(tracee, t.copy_in(data, REGS_SIZE))
        return 0
    if req == P.PTRACE_GETFPREGS:
        t.copy_out(data, tracee.kernel.get_fpregs(tracee)[:fpu.FXSAVE_SIZE])
        return 0
    if req == P.PTRACE_SETFPREGS:
        _set_fxsave(tracee, t.copy_in(data, fpu.FXSAVE_SIZE))
        return 0
    if req == P.PTRACE_GETREGSET:
        return _get_regset(t, tracee, addr, data)
    if req == P.PTRACE_SETREGSET:
        return _set_regset(t, tracee, addr, data)
    if req == P.PTRACE_GETSIGINFO:
        if ps.siginfo is None:
            raise SyscallError(Errno.EINVAL)
        t.copy_out(data, ps.siginfo.pack())
        return 0
    if req == P.PTRACE_SETSIGINFO:
        if ps.siginfo is None:
            raise SyscallError(Errno.EINVAL)
        raw = t.copy_in(data, 128)
        signo, errno_, code = struct.unpack_from("<iii", raw)
        ps.siginfo = ksignal.SigInfo(signo, code, errno_, raw=raw)
        return 0
    if req == P.PTRACE_GETEVENTMSG:
        t.copy_out(data, struct.pack("<Q", ps.eventmsg & _M64))
        return 0
    if req == P.PTRACE_SETOPTIONS:
        if data & ~P.PTRACE_O_MASK or data & P.PTRACE_O_SUSPEND_SECCOMP:
            raise SyscallError(Errno.EINVAL)
        ps.options = data
        return 0
    if req == P.PTRACE_GET_SYSCALL_INFO:
        return _get_syscall_info(t, tracee, addr, data)
    if req == P.PTRACE_PEEKSIGINFO:
        return _peek_siginfo(t, tracee, addr, data)
    if req == P.PTRACE_GETSIGMASK:
        if addr != 8:
            raise SyscallError(Errno.EINVAL)
        t.copy_out(data, struct.pack("<Q", tracee.sigmask))
        return 0
    if req == P.PTRACE_SETSIGMASK:
        if addr != 8:
            raise SyscallError(Errno.EINVAL)
        (mask,) = struct.unpack("<Q", t.copy_in(data, 8))
        tracee.sigmask = mask & ~UNBLOCKABLE
        return 0
    if req == P.PTRACE_ARCH_PRCTL:
        return _arch_prctl(t, tracee, addr, data)
    raise SyscallError(Errno.EIO)


# -- registers -------------------------------------------------------------------------------


def _put_reg(tracee: Task, name: str, value: int) -> None:
    """One user_regs_struct field.  Linux: putreg."""
    regs = tracee.regs
    value &= _M64
    if name in ("fs_base", "gs_base"):
        if value >= TASK_SIZE_MAX:
            raise SyscallError(Errno.EIO)
    elif name == "cs":
        if value != USER_CS:
            raise SyscallError(Errno.EIO)
    elif name == "ss":
        if value != USER_DS:
            raise SyscallError(Errno.EIO)
    elif name in ("ds", "es", "fs", "gs"):
        # The null selector, the user data segment or what it holds: another selector
        # could make the host refuse the registers when the stub is resumed.
        if value not in (0, USER_DS, getattr(regs, name)):
            raise SyscallError(Errno.EIO)
    elif name == "eflags":
        value = (regs.eflags & ~_FLAG_MASK) | (value & _FLAG_MASK)
        ps = tracee.ptrace
        if ps is not None:
            ps.forced_tf = False
    setattr(regs, name, value)


def _set_regs(tracee: Task, raw: bytes) -> None:
    """SETREGS / SETREGSET(NT_PRSTATUS): validated as a whole before any is set."""
    n = len(raw) // 8
    vals = struct.unpack_from(f"<{n}Q", raw)
    saved = tracee.regs.copy()
    try:
        for name, v in zip(_REG_NAMES, vals):
            _put_reg(tracee, name, v)
    except SyscallError:
        tracee.regs.load(saved)
        raise


def _peek_user(tracee: Task, off: int) -> int:
    if off & 7 or off >= _USER_SIZE:
        raise SyscallError(Errno.EIO)
    if off < REGS_SIZE:
        return int(getattr(tracee.regs, _REG_NAMES[off // 8]))
    if _USER_DEBUGREG <= off:
        ps = tracee.ptrace
        assert ps is not None
        return ps.debugreg[(off - _USER_DEBUGREG) // 8]
    return 0


def _poke_user(tracee: Task, off: int, value: int) -> None:
    if off & 7 or off >= _USER_SIZE:
        raise SyscallError(Errno.EIO)
    if off < REGS_SIZE:
        _put_reg(tracee, _REG_NAMES[off // 8], value)
        return
    if off < _USER_DEBUGREG:
        raise SyscallError(Errno.EIO)
    n = (off - _USER_DEBUGREG) // 8
    ps = tracee.ptrace
    assert ps is not None
    if n in (4, 5):
        raise SyscallError(Errno.EIO)
    if n < 4 and value >= TASK_SIZE_MAX:
        raise SyscallError(Errno.EINVAL)
    if n == 7 and value & 0xFF:
        raise SyscallError(Errno.EIO)          # no hardware breakpoints
    ps.debugreg[n] = value


def _set_fxsave(tracee: Task, fx: bytes) -> None:
    """SETFPREGS / SETREGSET(NT_PRFPREG): the legacy area; the rest is kept."""
    k = tracee.kernel
    state = bytearray(k.get_fpregs(tracee))
    buf = bytearray(fx)
    mxcsr = struct.unpack_from("<I", buf, fpu.MXCSR_OFFSET)[0]
    struct.pack_into("<I", buf, fpu.MXCSR_OFFSET, mxcsr & 0xFFFF)   # reserved bits dropped
    buf[fpu.SW_BYTES_OFFSET:fpu.FXSAVE_SIZE] = state[fpu.SW_BYTES_OFFSET:fpu.FXSAVE_SIZE]
    state[:fpu.FXSAVE_SIZE] = buf
    if fpu.HAS_XSAVE and len(state) > fpu.XSAVE_HDR_OFFSET:
        (bv,) = struct.unpack_from("<Q", state, fpu.XSAVE_HDR_OFFSET)
        struct.pack_into("<Q", state, fpu.XSAVE_HDR_OFFSET, bv | fpu.XFEATURE_MASK_FPSSE)
    if not k.set_fpregs(tracee, bytes(state)):
        raise SyscallError(Errno.EINVAL)


def _regset(tracee: Task, note: int) -> bytes:
    if note == P.NT_PRSTATUS:
        return bytes(tracee.regs)
    if note == P.NT_PRFPREG:
        return tracee.kernel.get_fpregs(tracee)[:fpu.FXSAVE_SIZE]
    if note == P.NT_X86_XSTATE and fpu.HAS_XSAVE:
        buf = bytearray(tracee.kernel.get_fpregs(tracee).ljust(fpu.REGSET_SIZE, b"\0"))
        # Bytes 464..511: XCR0, then zeros (Linux: xstate_fx_sw_bytes); gdb reads it.
        buf[fpu.SW_BYTES_OFFSET:fpu.FXSAVE_SIZE] = struct.pack("<Q", fpu.USER_XFEATURES).ljust(
            fpu.FXSAVE_SIZE - fpu.SW_BYTES_OFFSET, b"\0")
        return bytes(buf)
    raise SyscallError(Errno.EINVAL)


def _read_iov(t: Task, addr: int) -> tuple[int, int]:
    base, ln = struct.unpack("<QQ", t.copy_in(addr, 16))
    return base, ln


def _get_regset(t: Task, tracee: Task, note: int, iov_addr: int) -> int:
    data = _regset(tracee, note)
    base, ln = _read_iov(t, iov_addr)
    if ln % 8:
        raise SyscallError(Errno.EINVAL)
    n = min(ln, len(data))
    t.copy_out(base, data[:n])
    t.copy_out(iov_addr + 8, struct.pack("<Q", n))
    return 0


def _set_regset(t: Task, tracee: Task, note: int, iov_addr: int) -> int:
    size = len(_regset(tracee, note))
    base, ln = _read_iov(t, iov_addr)
    if ln % 8:
        raise SyscallError(Errno.EINVAL)
    n = min(ln, size)
    raw = t.copy_in(base, n)
    if note == P.NT_PRSTATUS:
        _set_regs(tracee, raw)
    elif note == P.NT_PRFPREG:
        if n != size:
            raise SyscallError(Errno.EINVAL)
        _set_fxsave(tracee, raw)
    else:
        if n != size:
            raise SyscallError(Errno.EFAULT)
        (bv,) = struct.unpack_from("<Q", raw, fpu.XSAVE_HDR_OFFSET)
        state = fpu.from_frame(raw, fpu.XCR0)
        if state is None or bv & ~fpu.USER_XFEATURES:
            raise SyscallError(Errno.EINVAL)
        if not tracee.kernel.set_fpregs(tracee, state):
            raise SyscallError(Errno.EINVAL)
    t.copy_out(iov_addr + 8, struct.pack("<Q", n))
    return 0


def _arch_prctl(t: Task, tracee: Task, addr: int, code: int) -> int:
    """PTRACE_ARCH_PRCTL: addr is the value or where to store it, data the code."""
    regs = tracee.regs
    if code == _ARCH_GET_FS:
        t.copy_out(addr, struct.pack("<Q", regs.fs_base))
    elif code == _ARCH_GET_GS:
        t.copy_out(addr, struct.pack("<Q", regs.gs_base))
    elif code == _ARCH_SET_FS:
        _put_reg(tracee, "fs_base", addr)
    elif code == _ARCH_SET_GS:
        _put_reg(tracee, "gs_base", addr)
    else:
        raise SyscallError(Errno.EINVAL)
    return 0


# -- siginfo and syscall info ------------------------------------------------------------------


def _get_syscall_info(t: Task, tracee: Task, size: int, addr: int) -> int:
    """PTRACE_GET_SYSCALL_INFO.  Linux: ptrace_get_syscall_info; the stop is told by
    last_siginfo's si_code (SIGTRAP|0x80) and ptrace_message (entry or exit)."""
    ps = tracee.ptrace
    assert ps is not None
    regs = tracee.regs
    si = ps.siginfo
    op = P.PTRACE_SYSCALL_INFO_NONE
    if si is not None and si.code == Signal.SIGTRAP | 0x80:
        if ps.eventmsg == P.PTRACE_EVENTMSG_SYSCALL_ENTRY:
            op = P.PTRACE_SYSCALL_INFO_ENTRY
        elif ps.eventmsg == P.PTRACE_EVENTMSG_SYSCALL_EXIT:
            op = P.PTRACE_SYSCALL_INFO_EXIT
    head = _SYSCALL_INFO.pack(op, P.AUDIT_ARCH_X86_64, regs.rip, regs.rsp)
    if op == P.PTRACE_SYSCALL_INFO_ENTRY:
        body = struct.pack("<7Q", regs.orig_rax, regs.rdi, regs.rsi, regs.rdx, regs.r10,
                           regs.r8, regs.r9)
        actual = len(head) + len(body)
    elif op == P.PTRACE_SYSCALL_INFO_EXIT:
        v = regs.rax - (1 << 64) if regs.rax >= 1 << 63 else regs.rax
        err = -4095 <= v < 0
        body = struct.pack("<qB", v, int(err))
        actual = len(head) + len(body)
    else:
        body = b""
        actual = len(head)
    out = (head + body).ljust(SYSCALL_INFO_SIZE, b"\0")
    n = min(size, actual)
    if n:
        t.copy_out(addr, out[:n])
    return actual



def _peek_siginfo(t: Task, tracee: Task, args_addr: int, buf: int) -> int:
    """PTRACE_PEEKSIGINFO: queued siginfos, from `off`, of the thread (or, with
    PTRACE_PEEKSIGINFO_SHARED, the process) without dequeueing them."""
    off, flags, nr = struct.unpack("<QIi", t.copy_in(args_addr, 16))
    if flags & ~P.PTRACE_PEEKSIGINFO_SHARED or nr < 0:
        raise SyscallError(Errno.EINVAL)
    if off > 1 << 62:
        raise SyscallError(Errno.EINVAL)
    source = tracee.tg if flags & P.PTRACE_PEEKSIGINFO_SHARED else tracee
    queued = [info for q in source.pending.values() for info in q]
    out = queued[off:off + nr]
    for i, info in enumerate(out):
        try:
            t.copy_out(buf + 128 * i, info.pack())
        except SyscallError:
            if i == 0:
                raise
            return i
    return len(out)


# -- process_vm_readv / process_vm_writev ---------------------------------------------------------


def _vm_target(t: Task, pid: int) -> Task:
    target = _find(t, pid)
    if not ptrace.may_access(t, target):
        raise SyscallError(Errno.EPERM)
    return target


def _process_vm(t: Task, r: SyscallArguments, write: bool) -> int:
    pid, liov, lcnt, riov, rcnt, flags = (r.int32(0), r.pointer(1), r.uint64(2),
                                          r.pointer(3), r.uint64(4), r.uint64(5))
    if flags:
        raise SyscallError(Errno.EINVAL)
    if lcnt > 1024 or rcnt > 1024:
        raise SyscallError(Errno.EINVAL)
    local = read_iovecs(t, liov, lcnt)
    remote = read_iovecs(t, riov, rcnt)
    target = _vm_target(t, pid)
    total = min(sum(ln for _, ln in local), ptrace.VM_MAX)
    done = 0
    li, loff = 0, 0
    local_fault = False
    for rbase, rlen in remote:
        want = min(rlen, total - done)
        if want <= 0 or local_fault:
            break
        if write:
            parts = []
            need = want
            while need and li < len(local):
                lb, ll = local[li]
                take = min(need, ll - loff)
                if take:
                    try:
                        parts.append(t.copy_in(lb + loff, take))
                    except SyscallError:
                        local_fault = True       # a partial transfer, up to here
                        break
                need -= take
                loff += take
                if loff == ll:
                    li, loff = li + 1, 0
            data = b"".join(parts)
            got = ptrace.access_vm(target, rbase, 0, data, force=False) if data else 0
            assert isinstance(got, int)
            done += got
            if got < want:
                break
        else:
            got_data = ptrace.access_vm(target, rbase, want, None, force=False)
            assert isinstance(got_data, bytes)
            pos = 0
            while pos < len(got_data) and li < len(local):
                lb, ll = local[li]
                take = min(len(got_data) - pos, ll - loff)
                if take:
                    try:
                        t.copy_out(lb + loff, got_data[pos:pos + take])
                    except SyscallError:
                        local_fault = True
                        break
                pos += take
                loff += take
                if loff == ll:
                    li, loff = li + 1, 0
            done += pos
            if pos < want:
                break
    if done == 0 and total and any(ln for _, ln in remote):
        raise SyscallError(Errno.EFAULT)
    return done


def sys_process_vm_readv(t: Task, r: SyscallArguments) -> int:
    """Implements process_vm_readv(2)."""
    return _process_vm(t, r, write=False)


def sys_process_vm_writev(t: Task, r: SyscallArguments) -> int:
    """Implements process_vm_writev(2)."""
    return _process_vm(t, r, write=True)
