"""Scheduling attributes: policy, priorities, CPU affinity, I/O priority.
Linux: kernel/sched/syscalls.c (__sched_setscheduler), block/ioprio.c.

pyvisor does not schedule: the host runs the stubs.  These attributes are
checked as Linux checks them, kept per task, inherited at clone (with
SCHED_RESET_ON_FORK's reset) and reported back, never applied to the host.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_SYS_ADMIN, CAP_SYS_NICE
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.sched import (IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE, IOPRIO_CLASS_NONE,
                                     IOPRIO_CLASS_RT, IOPRIO_CLASS_SHIFT, IOPRIO_NR_LEVELS,
                                     SCHED_BATCH, SCHED_DEADLINE, SCHED_FIFO, SCHED_FLAG_ALL,
                                     SCHED_FLAG_RESET_ON_FORK, SCHED_FLAG_UTIL_CLAMP_MAX,
                                     SCHED_FLAG_UTIL_CLAMP_MIN, SCHED_IDLE, SCHED_NORMAL,
                                     SCHED_RR)
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

NCPU = os.cpu_count() or 1          # read once: after confinement /sys may be out of reach
ALL_CPUS = (1 << NCPU) - 1
MAX_RT_PRIO = 100
RLIMIT_NICE, RLIMIT_RTPRIO = 13, 14
_VALID_POLICIES = (SCHED_NORMAL, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE)


@dataclass(frozen=True, slots=True)
class SchedAttrs:
    """What sched_setattr sets and sched_getattr reports (bar nice, kept in
    Task.nice for setpriority).  Immutable: clone shares it until either side
    changes it.  No utilization clamps: as a kernel without CONFIG_UCLAMP_TASK,
    they read as 0 and cannot be set (EOPNOTSUPP)."""

    policy: int = SCHED_NORMAL
    rt_priority: int = 0
    reset_on_fork: bool = False
    dl: tuple[int, int, int] = (0, 0, 0)          # runtime, deadline, period (ns)
    affinity: int = ALL_CPUS                      # CPUs it may run on (a bitmask)
    ioprio: int = 0                               # IOPRIO_PRIO_VALUE(class, data)


DEFAULT = SchedAttrs()


def valid_policy(policy: int) -> bool:
    return policy in _VALID_POLICIES


def rt_policy(policy: int) -> bool:
    return policy in (SCHED_FIFO, SCHED_RR)


def fair_policy(policy: int) -> bool:
    return policy in (SCHED_NORMAL, SCHED_BATCH)


def at_fork(parent: SchedAttrs, nice: int) -> tuple[SchedAttrs, int]:
    """The child's attributes and nice (sched_fork): SCHED_RESET_ON_FORK turns real-time
    and deadline policies back into SCHED_NORMAL and a negative nice into 0."""
    if not parent.reset_on_fork:
        return parent, nice
    if rt_policy(parent.policy) or parent.policy == SCHED_DEADLINE:
        return replace(parent, policy=SCHED_NORMAL, rt_priority=0, dl=(0, 0, 0),
                       reset_on_fork=False), 0
    return replace(parent, reset_on_fork=False), max(nice, 0)


def _nice_allowed(p: Task, nice: int) -> bool:
    """is_nice_reduction: within RLIMIT_NICE (20 - nice <= limit)."""
    return 20 - nice <= p.tg.rlimits[RLIMIT_NICE][0]


def _same_owner(t: Task, p: Task) -> bool:
    return t.creds.euid in (p.creds.euid, p.creds.uid)


def _check_dl(runtime: int, deadline: int, period: int) -> bool:
    """__checkparam_dl (without the global bandwidth limits)."""
    if deadline == 0 or runtime < 1024:
        return False
    if deadline >> 63 or period >> 63:
        return False
    return (period == 0 or period >= deadline) and runtime <= deadline


def setscheduler(t: Task, p: Task, policy: int, flags: int, nice: int, rt_priority: int,
                 dl: tuple[int, int, int]) -> None:
    """__sched_setscheduler's checks, then the change.  `policy` -1 keeps p's
    (sched_setparam, SCHED_FLAG_KEEP_POLICY)."""
    old = p.sched
    reset_on_fork = bool(flags & SCHED_FLAG_RESET_ON_FORK)
    if policy < 0:
        policy = old.policy
        reset_on_fork = old.reset_on_fork
    elif not valid_policy(policy):
        raise SyscallError(Errno.EINVAL)
    if flags & ~SCHED_FLAG_ALL:
        raise SyscallError(Errno.EINVAL)
    if rt_priority > MAX_RT_PRIO - 1:
        raise SyscallError(Errno.EINVAL)
    if policy == SCHED_DEADLINE and not _check_dl(*dl) or \
            rt_policy(policy) != (rt_priority != 0):
        raise SyscallError(Errno.EINVAL)
    if not t.creds.capable(CAP_SYS_NICE):
        if fair_policy(policy) and nice < p.nice and not _nice_allowed(p, nice):
            raise SyscallError(Errno.EPERM)
        if rt_policy(policy):
            rtprio = p.tg.rlimits[RLIMIT_RTPRIO][0]
            if policy != old.policy and not rtprio:
                raise SyscallError(Errno.EPERM)
            if rt_priority > old.rt_priority and rt_priority > rtprio:
                raise SyscallError(Errno.EPERM)
        if policy == SCHED_DEADLINE:
            raise SyscallError(Errno.EPERM)
        if old.policy == SCHED_IDLE and policy != SCHED_IDLE and \
                not _nice_allowed(p, p.nice):
            raise SyscallError(Errno.EPERM)
        if not _same_owner(t, p):
            raise SyscallError(Errno.EPERM)
        if old.reset_on_fork and not reset_on_fork:
            raise SyscallError(Errno.EPERM)
    if flags & (SCHED_FLAG_UTIL_CLAMP_MIN | SCHED_FLAG_UTIL_CLAMP_MAX):
        raise SyscallError(Errno.EOPNOTSUPP)     # uclamp_validate without CONFIG_UCLAMP_TASK
    if fair_policy(policy) or policy == SCHED_IDLE:
        p.nice = nice
    p.sched = replace(old, policy=policy, rt_priority=rt_priority, reset_on_fork=reset_on_fork,
                      dl=dl if policy == SCHED_DEADLINE else (0, 0, 0))


def set_affinity(t: Task, p: Task, mask: int) -> None:
    """sched_setaffinity: the CPUs that exist of `mask` (EINVAL if none); another
    owner's task needs CAP_SYS_NICE."""
    if not _same_owner(t, p) and not t.creds.capable(CAP_SYS_NICE):
        raise SyscallError(Errno.EPERM)
    mask &= ALL_CPUS
    if not mask:
        raise SyscallError(Errno.EINVAL)
    p.sched = replace(p.sched, affinity=mask)


def check_ioprio(t: Task, ioprio: int) -> None:
    """ioprio_check_cap."""
    cls = ioprio >> IOPRIO_CLASS_SHIFT & 7
    level = ioprio & (IOPRIO_NR_LEVELS - 1)
    if cls == IOPRIO_CLASS_RT:
        if not t.creds.capable(CAP_SYS_NICE) and not t.creds.capable(CAP_SYS_ADMIN):
            raise SyscallError(Errno.EPERM)
    elif cls == IOPRIO_CLASS_NONE:
        if level:
            raise SyscallError(Errno.EINVAL)
    elif cls not in (IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE):
        raise SyscallError(Errno.EINVAL)


def set_ioprio(t: Task, p: Task, ioprio: int) -> None:
    """set_task_ioprio: the target's uid must be the caller's, or CAP_SYS_NICE."""
    c = t.creds
    if p.creds.uid not in (c.euid, c.uid) and not c.capable(CAP_SYS_NICE):
        raise SyscallError(Errno.EPERM)
    p.sched = replace(p.sched, ioprio=ioprio & 0xFFFF)
