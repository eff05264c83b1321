"""Restartable sequences.  Linux: kernel/rseq.c.

A thread registers a struct rseq in its memory.  The Sentry writes the CPU
fields there (cpu_id_start, cpu_id, node_id, mm_cid) when it registers and
whenever the thread comes back from being stopped in application code; the
sandbox shows one CPU to each thread (getcpu says 0), so they only change
from "uninitialised" to 0.

A thread stopped in application code (an interrupt, a fault, a signal about
to be delivered) has "been preempted": if its rseq_cs names a critical
section its instruction pointer is in, it resumes at the section's abort
handler, after the signature check Linux makes (a bad descriptor or signature
is SIGSEGV); rseq_cs is cleared either way (Linux: rseq_ip_fixup).  Host
preemption is invisible to the Sentry, so a ticker stops the registered
threads that are running with an rseq_cs set, at most every TICK_NS: a thread
spinning in a critical section is aborted within a tick, and a thread with
no rseq_cs (glibc registers every thread and leaves rseq_cs 0) costs one
8-byte read of its memory per tick while it runs.

A registration belongs to a task and an address space: it is gone after
execve (a new MemoryManager) and is not inherited by new threads or, unlike
Linux, by forked children.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.signal import Signal
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

# From <linux/rseq.h>.
RSEQ_FLAG_UNREGISTER = 1
RSEQ_CPU_ID_UNINITIALIZED = 0xFFFFFFFF
ORIG_RSEQ_SIZE = 32
RSEQ_FEATURE_SIZE = 28               # offsetof(struct rseq, end): AT_RSEQ_FEATURE_SIZE
RSEQ_ALIGN = 32                      # AT_RSEQ_ALIGN
# struct rseq: cpu_id_start, cpu_id, rseq_cs, flags, node_id, mm_cid.
OFF_CPU_ID_START, OFF_RSEQ_CS, OFF_NODE_ID = 0, 8, 20
RSEQ_CS = struct.Struct("<IIQQQ")    # version, flags, start_ip, post_commit_offset, abort_ip
TASK_SIZE = 0x7FFFFFFFF000
TICK_NS = 20_000_000
SI_KERNEL = 0x80


@dataclass(slots=True)
class Registration:
    """current->rseq, rseq_len, rseq_sig."""

    addr: int
    length: int
    sig: int
    mm: Any                          # the address space it was made in (exec drops it)


# Registered tasks (weak: an exited task drops out).  Its owner is the kernel loop.
_registered: weakref.WeakKeyDictionary[Task, Registration] = weakref.WeakKeyDictionary()
_ticker: list[Any] = []              # the armed ticker Timer, if any


def active() -> bool:
    """Whether any thread has registered (the loop's fast path asks first)."""
    return bool(_registered)


def registration(t: Task) -> Registration | None:
    reg = _registered.get(t)
    if reg is not None and reg.mm is not t.mm:
        del _registered[t]           # an execve replaced the address space
        return None
    return reg


def _write_cpu(t: Task, reg: Registration, cpu: int) -> None:
    """cpu_id_start, cpu_id, then node_id and mm_cid (Linux: rseq_update_cpu_node_id)."""
    t.copy_out(reg.addr + OFF_CPU_ID_START, struct.pack("<II", cpu & 0xFFFFFFFF,
                                                         cpu & 0xFFFFFFFF))
    t.copy_out(reg.addr + OFF_NODE_ID, struct.pack("<II", 0, 0))


def _segv(t: Task) -> None:
    from pyvisor.sentry.kernel import signal as ksignal
    ksignal.force_sig(t, ksignal.SigInfo(Signal.SIGSEGV, SI_KERNEL))


def sys_rseq(t: Task, addr: int, length: int, flags: int, sig: int) -> int:
    """Implements rseq(2)."""
    reg = registration(t)
    if flags & RSEQ_FLAG_UNREGISTER:
        if flags & ~RSEQ_FLAG_UNREGISTER or reg is None or reg.addr != addr \
                or reg.length != length:
            raise SyscallError(Errno.EINVAL)
        if reg.sig != sig:
            raise SyscallError(Errno.EPERM)
        t.copy_out(addr + OFF_CPU_ID_START, struct.pack("<II", 0, RSEQ_CPU_ID_UNINITIALIZED))
        t.copy_out(addr + OFF_NODE_ID, struct.pack("<II", 0, 0))
        del _registered[t]
        return 0
    if flags:
        raise SyscallError(Errno.EINVAL)
    if reg is not None:
        if reg.addr != addr or reg.length != length:
            raise SyscallError(Errno.EINVAL)
        if reg.sig != sig:
            raise SyscallError(Errno.EPERM)
        raise SyscallError(Errno.EBUSY)
    if length < ORIG_RSEQ_SIZE or addr % RSEQ_ALIGN:
        raise SyscallError(Errno.EINVAL)
    if addr + length > TASK_SIZE or addr + length < addr:
        raise SyscallError(Errno.EFAULT)
    reg = Registration(addr, length, sig, t.mm)
    _registered[t] = reg
    try:
        _write_cpu(t, reg, 0)
    except SyscallError:
        _segv(t)                     # Linux: the notify-resume write faults
    _arm(t)
    return 0


def preempted(t: Task) -> None:
    """`t` stopped in application code and is about to run again (maybe through a
    signal handler): refresh its CPU fields and abort its critical section, if its
    instruction pointer is in one.  Linux: rseq_handle_notify_resume."""
    reg = registration(t)
    if reg is None:
        return
    try:
        _write_cpu(t, reg, 0)
        (cs_ptr,) = struct.unpack("<Q", t.copy_in(reg.addr + OFF_RSEQ_CS, 8))
        if cs_ptr == 0:
            return
        if not _fixup(t, reg, cs_ptr):
            _segv(t)
    except SyscallError:
        _segv(t)


def _fixup(t: Task, reg: Registration, cs_ptr: int) -> bool:
    """Linux: rseq_get_rseq_cs and rseq_ip_fixup.  False for an invalid descriptor."""
    if cs_ptr >= TASK_SIZE:
        return False
    version, cs_flags, start, post, abort = RSEQ_CS.unpack(t.copy_in(cs_ptr, RSEQ_CS.size))
    if version > 0 or start >= TASK_SIZE or start + post >= TASK_SIZE or abort >= TASK_SIZE:
        return False
    if (abort - start) & ((1 << 64) - 1) < post:
        return False                 # the abort handler is inside the section
    (sig,) = struct.unpack("<I", t.copy_in(abort - 4, 4))
    if sig != reg.sig:
        return False
    ip = t.regs.ip
    in_cs = (ip - start) & ((1 << 64) - 1) < post
    if in_cs and cs_flags:
        return False                 # the deprecated RSEQ_CS_FLAG_NO_RESTART_* flags
    t.copy_out(reg.addr + OFF_RSEQ_CS, bytes(8))
    if in_cs:
        t.regs.ip = abort
    return True


def fence(t: Task) -> None:
    """MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ: every other registered thread of the
    caller's address space gets its CPU fields rewritten now and, if it is running
    with an rseq_cs, stops so its section is aborted."""
    for other, reg in list(_registered.items()):
        if other is t or other.mm is not t.mm or reg.mm is not other.mm or other.exited:
            continue
        try:
            _write_cpu(other, reg, 0)
        except SyscallError:
            continue
        _kick(other, reg)


def _kick(t: Task, reg: Registration) -> None:
    """Stops `t` if it runs application code with an rseq_cs set."""
    if t.exited or not t.thread.running:
        return
    try:
        (cs_ptr,) = struct.unpack("<Q", t.copy_in(reg.addr + OFF_RSEQ_CS, 8))
    except SyscallError:
        return
    if cs_ptr:
        t.kernel.platform.interrupt(t.thread)


def _arm(t: Task) -> None:
    if _ticker and not _ticker[0].cancelled:
        return
    k = t.kernel

    def tick() -> None:
        _ticker.clear()
        live = False
        for task, reg in list(_registered.items()):
            if task.exited or reg.mm is not task.mm:
                continue
            live = True
            _kick(task, reg)
        if live:
            _ticker.append(k.add_timer(k.now() + TICK_NS, tick))

    _ticker.append(k.add_timer(k.now() + TICK_NS, tick))
