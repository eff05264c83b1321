"""sched_* and ioprio_*.  Linux: kernel/sched/syscalls.c, block/ioprio.c.

The attributes are checked, kept and reported (kernel/sched.py); the host's
scheduler never sees them.
"""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mman import PAGE_SIZE
from pyvisor.abi.linux.sched import (IOPRIO_WHO_PGRP, IOPRIO_WHO_PROCESS, IOPRIO_WHO_USER,
                                     SCHED_ATTR_SIZE_VER0, SCHED_ATTR_SIZE_VER1,
                                     SCHED_DEADLINE, SCHED_FLAG_KEEP_PARAMS,
                                     SCHED_FLAG_KEEP_POLICY, SCHED_FLAG_RESET_ON_FORK,
                                     SCHED_FLAG_UTIL_CLAMP_MAX, SCHED_FLAG_UTIL_CLAMP_MIN,
                                     SCHED_RESET_ON_FORK)
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel import sched
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.syscalls.linux.sys_process import prio_targets, sched_target

# struct sched_attr (SCHED_ATTR_SIZE_VER1): size, policy, flags, nice, priority,
# runtime, deadline, period, util_min, util_max.
_SCHED_ATTR = struct.Struct("<IIQiIQQQII")
assert _SCHED_ATTR.size == SCHED_ATTR_SIZE_VER1
_CPUMASK_SIZE = (sched.NCPU + 63) // 64 * 8        # cpumask_size()
_SETPARAM_POLICY = -1


def sys_sched_getaffinity(t: Task, r: SyscallArguments) -> int:
    """Implements sched_getaffinity(2): the mask last set (all CPUs at first)."""
    pid, n, addr = r.int32(0), r.uint64(1), r.pointer(2)
    if n * 8 < sched.NCPU or n % 8:
        raise SyscallError(Errno.EINVAL)
    p = sched_target(t, pid)
    size = min(n, _CPUMASK_SIZE)
    t.copy_out(addr, p.sched.affinity.to_bytes(size, "little"))
    return size


def sys_sched_setaffinity(t: Task, r: SyscallArguments) -> int:
    """Implements sched_setaffinity(2): kept and reported, not applied (the host
    places the stubs)."""
    pid, n, addr = r.int32(0), r.uint64(1), r.pointer(2)
    mask = int.from_bytes(t.copy_in(addr, min(n, _CPUMASK_SIZE)), "little")
    sched.set_affinity(t, sched_target(t, pid), mask)
    return 0


def sys_sched_getparam(t: Task, r: SyscallArguments) -> int:
    """Implements sched_getparam(2)."""
    pid, param = r.int32(0), r.pointer(1)
    if not param or pid < 0:
        raise SyscallError(Errno.EINVAL)
    p = sched_target(t, pid)
    prio = p.sched.rt_priority if sched.rt_policy(p.sched.policy) else 0
    t.copy_out(param, struct.pack("<i", prio))
    return 0


def _setscheduler(t: Task, pid: int, policy: int, param: int) -> int:
    """do_sched_setscheduler: the legacy interface (priority only; nice kept)."""
    if not param or pid < 0:
        raise SyscallError(Errno.EINVAL)
    (prio,) = struct.unpack("<i", t.copy_in(param, 4))
    p = sched_target(t, pid)
    flags = 0
    if policy != _SETPARAM_POLICY and policy & SCHED_RESET_ON_FORK:
        flags, policy = SCHED_FLAG_RESET_ON_FORK, policy & ~SCHED_RESET_ON_FORK
    sched.setscheduler(t, p, policy, flags, p.nice, prio & 0xFFFFFFFF, (0, 0, 0))
    return 0


def sys_sched_setscheduler(t: Task, r: SyscallArguments) -> int:
    """Implements sched_setscheduler(2)."""
    policy = r.int32(1)
    if policy < 0:
        raise SyscallError(Errno.EINVAL)
    return _setscheduler(t, r.int32(0), policy, r.pointer(2))


def sys_sched_setparam(t: Task, r: SyscallArguments) -> int:
    """Implements sched_setparam(2)."""
    return _setscheduler(t, r.int32(0), _SETPARAM_POLICY, r.pointer(1))


def sys_sched_getscheduler(t: Task, r: SyscallArguments) -> int:
    """Implements sched_getscheduler(2)."""
    p = sched_target(t, r.int32(0))
    return p.sched.policy | (SCHED_RESET_ON_FORK if p.sched.reset_on_fork else 0)


def sys_sched_get_priority_max(t: Task, r: SyscallArguments) -> int:
    """Implements sched_get_priority_max(2)."""
    policy = r.int32(0)
    if sched.rt_policy(policy):
        return sched.MAX_RT_PRIO - 1
    if sched.valid_policy(policy) or policy == 7:         # SCHED_EXT
        return 0
    raise SyscallError(Errno.EINVAL)


def sys_sched_get_priority_min(t: Task, r: SyscallArguments) -> int:
    """Implements sched_get_priority_min(2)."""
    policy = r.int32(0)
    if sched.rt_policy(policy):
        return 1
    if sched.valid_policy(policy) or policy == 7:
        return 0
    raise SyscallError(Errno.EINVAL)


def _copy_in_attr(t: Task, addr: int) -> tuple[int, ...]:
    """sched_copy_attr: a struct of `size` bytes (0: the first version), bytes past
    ours zero; a bad size is E2BIG with our size written back to the caller."""
    size = struct.unpack("<I", t.copy_in(addr, 4))[0] or SCHED_ATTR_SIZE_VER0
    if size < SCHED_ATTR_SIZE_VER0 or size > PAGE_SIZE:
        t.copy_out(addr, struct.pack("<I", SCHED_ATTR_SIZE_VER1))
        raise SyscallError(Errno.E2BIG)
    raw = t.copy_in(addr, size)
    if any(raw[SCHED_ATTR_SIZE_VER1:]):
        t.copy_out(addr, struct.pack("<I", SCHED_ATTR_SIZE_VER1))
        raise SyscallError(Errno.E2BIG)
    raw = raw[:SCHED_ATTR_SIZE_VER1].ljust(SCHED_ATTR_SIZE_VER1, b"\0")
    fields = _SCHED_ATTR.unpack(raw)
    if fields[2] & (SCHED_FLAG_UTIL_CLAMP_MIN | SCHED_FLAG_UTIL_CLAMP_MAX) and \
            size < SCHED_ATTR_SIZE_VER1:
        raise SyscallError(Errno.EINVAL)
    return fields


def sys_sched_setattr(t: Task, r: SyscallArguments) -> int:
    """Implements sched_setattr(2)."""
    pid, addr, flags = r.int32(0), r.pointer(1), r.uint32(2)
    if not addr or pid < 0 or flags:
        raise SyscallError(Errno.EINVAL)
    (_, policy, sflags, nice, prio, runtime, deadline, period, _, _) = _copy_in_attr(t, addr)
    if policy >> 31:
        raise SyscallError(Errno.EINVAL)
    nice = max(-20, min(19, nice))
    if sflags & SCHED_FLAG_KEEP_POLICY:
        policy = _SETPARAM_POLICY
    p = sched_target(t, pid)
    if sflags & SCHED_FLAG_KEEP_PARAMS:                  # get_params
        cur = p.sched
        runtime, deadline, period = cur.dl
        prio, nice = cur.rt_priority, p.nice
    sched.setscheduler(t, p, policy, sflags, nice, prio, (runtime, deadline, period))
    return 0


def sys_sched_getattr(t: Task, r: SyscallArguments) -> int:
    """Implements sched_getattr(2).  (Linux 6.12+ reports a fair task's slice in
    sched_runtime; pyvisor, which has none, reports 0.)  A bigger buffer than ours
    is zero-filled past our struct, as Linux 6.13+ does."""
    pid, addr, usize, flags = r.int32(0), r.pointer(1), r.uint32(2), r.uint32(3)
    if not addr or pid < 0 or usize > PAGE_SIZE or usize < SCHED_ATTR_SIZE_VER0 or flags:
        raise SyscallError(Errno.EINVAL)
    p = sched_target(t, pid)
    s = p.sched
    size = min(usize, SCHED_ATTR_SIZE_VER1)
    nice = prio = 0
    dl = (0, 0, 0)
    if s.policy == SCHED_DEADLINE:
        dl = s.dl
    elif sched.rt_policy(s.policy):
        prio = s.rt_priority
    else:
        nice = p.nice
    raw = _SCHED_ATTR.pack(size, s.policy, SCHED_FLAG_RESET_ON_FORK if s.reset_on_fork else 0,
                           nice, prio, *dl, 0, 0)
    t.copy_out(addr, raw[:size] + bytes(usize - size))    # copy_struct_to_user zero-fills
    return 0


def _ioprio_targets(t: Task, which: int, who: int) -> list[Task]:
    if which not in (IOPRIO_WHO_PROCESS, IOPRIO_WHO_PGRP, IOPRIO_WHO_USER):
        raise SyscallError(Errno.EINVAL)
    return prio_targets(t, which - 1, who)               # PRIO_PROCESS, _PGRP, _USER


def sys_ioprio_set(t: Task, r: SyscallArguments) -> int:
    """Implements ioprio_set(2): kept per thread, inherited by clone, not applied."""
    which, who, ioprio = r.int32(0), r.int32(1), r.int32(2)
    sched.check_ioprio(t, ioprio)
    for p in _ioprio_targets(t, which, who):
        sched.set_ioprio(t, p, ioprio)
    return 0


def sys_ioprio_get(t: Task, r: SyscallArguments) -> int:
    """Implements ioprio_get(2): the best (lowest) of the named threads'."""
    return min(p.sched.ioprio for p in _ioprio_targets(t, r.int32(0), r.int32(1)))
