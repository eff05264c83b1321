"""Times that applications pass in memory: struct timespec and struct timeval.

Linux: include/linux/time64.h (timespec64_valid), fs/utimes.c (nsec_valid),
kernel/time/time.c.  Every syscall that reads a time from the application
decodes it here, so a value out of range is EINVAL in one place and never
reaches the Sentry's clocks, timers or inodes.  Results are in nanoseconds
(Python ints: no overflow, however large the seconds).
"""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import Task

TIMESPEC = struct.Struct("<qq")        # tv_sec, tv_nsec
TIMEVAL = struct.Struct("<qq")         # tv_sec, tv_usec
NSEC_PER_SEC = 10**9
# Durations saturate here, as Linux's ktime_t (timespec64_to_ktime): so does every
# deadline and remaining time computed from them, which then fits any C field.
KTIME_MAX = (1 << 63) - 1
# utimensat's special tv_nsec values.  From <linux/stat.h>.
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def copy_in_timespec(t: Task, addr: int) -> int:
    """A duration or deadline: 0 <= tv_nsec < 10^9 and tv_sec >= 0, else EINVAL
    (timespec64_valid); EFAULT if unreadable.  Returns nanoseconds."""
    sec, nsec = TIMESPEC.unpack(t.copy_in(addr, TIMESPEC.size))
    if sec < 0 or not 0 <= nsec < NSEC_PER_SEC:
        raise SyscallError(Errno.EINVAL)
    return min(sec * NSEC_PER_SEC + nsec, KTIME_MAX)


def copy_in_timeval(t: Task, addr: int) -> int:
    """A duration as struct timeval: 0 <= tv_usec < 10^6 and tv_sec >= 0, else EINVAL."""
    sec, usec = TIMEVAL.unpack(t.copy_in(addr, TIMEVAL.size))
    if sec < 0 or not 0 <= usec < 1_000_000:
        raise SyscallError(Errno.EINVAL)
    return min(sec * NSEC_PER_SEC + usec * 1000, KTIME_MAX)


def copy_in_select_timeval(t: Task, addr: int) -> int:
    """select's timeout: tv_usec may exceed a second and is carried into tv_sec
    (poll_select_set_timeout); a negative or overflowing result is EINVAL."""
    sec, usec = TIMEVAL.unpack(t.copy_in(addr, TIMEVAL.size))
    if sec < 0 or usec < 0 or sec + usec // 1_000_000 > KTIME_MAX:
        raise SyscallError(Errno.EINVAL)
    return min(sec * NSEC_PER_SEC + usec * 1000, KTIME_MAX)


def utimens_omit_both(raw: bytes) -> bool:
    """Whether utimensat's raw timestamps both say UTIME_OMIT (nothing to do)."""
    return TIMESPEC.unpack_from(raw, 0)[1] == UTIME_OMIT and \
        TIMESPEC.unpack_from(raw, TIMESPEC.size)[1] == UTIME_OMIT


def decode_utimens(raw: bytes, now: int) -> tuple[int | None, int | None]:
    """utimensat's two raw timespecs as (atime, mtime) in ns: None for UTIME_OMIT,
    `now` for UTIME_NOW.  tv_nsec must be one of those or in [0, 10^9), else EINVAL
    (nsec_valid); tv_sec may be any value, before 1970 too."""
    out: list[int | None] = []
    for i in range(2):
        sec, nsec = TIMESPEC.unpack_from(raw, i * TIMESPEC.size)
        if nsec == UTIME_OMIT:
            out.append(None)
        elif nsec == UTIME_NOW:
            out.append(now)
        elif 0 <= nsec < NSEC_PER_SEC:
            out.append(sec * NSEC_PER_SEC + nsec)
        else:
            raise SyscallError(Errno.EINVAL)
    return out[0], out[1]


def copy_in_utimes(t: Task, addr: int) -> tuple[int, int]:
    """utimes' two struct timevals: 0 <= tv_usec < 10^6, else EINVAL; any tv_sec."""
    raw = t.copy_in(addr, 2 * TIMEVAL.size)
    out = []
    for i in range(2):
        sec, usec = TIMEVAL.unpack_from(raw, i * TIMEVAL.size)
        if not 0 <= usec < 1_000_000:
            raise SyscallError(Errno.EINVAL)
        out.append(sec * NSEC_PER_SEC + usec * 1000)
    return out[0], out[1]
