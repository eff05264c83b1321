"""Capabilities kept in step with the ids.  Linux: security/commoncap.c, kernel/capability.c,
kernel/signal.c (kill_ok_by_cred).

The sandbox is one user namespace whose root holds every capability.  A task's
capabilities follow its ids as Linux's do: losing every root uid clears the
permitted and effective sets (unless PR_SET_KEEPCAPS), leaving euid 0 clears the
effective set and regaining it restores it from the permitted one; the fsuid
moves the file-system capabilities (CAP_FS_MASK) in and out of the effective
set.  capset(2) may only shrink the permitted set, execve recomputes the sets
(root gets the bounding set, others none: no file capabilities here), and
PR_CAPBSET_DROP shrinks the bounding set for later execs.
Permission checks ask `Credentials.capable`, never the uid.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import ALL_CAPS, CAP_FS_MASK, CAP_KILL, CAP_SETPCAP
from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Credentials


def _default(c: Credentials) -> tuple[int, int, int]:
    return (ALL_CAPS, ALL_CAPS, 0) if c.euid == 0 else (0, 0, 0)


def _store(c: Credentials, caps: tuple[int, int, int]) -> None:
    """Keeps the sets, as None when they are what the ids alone would give."""
    c.caps = None if caps == _default(c) and c.fsuid == c.euid else caps


def fix_setuid(old: Credentials, new: Credentials) -> None:
    """After a set*uid: cap_emulate_setxuid (Preconditions: new.fsuid follows new.euid)."""
    eff, prm, inh = old.cap_sets()
    roots_old = 0 in (old.uid, old.euid, old.suid)
    roots_new = 0 in (new.uid, new.euid, new.suid)
    if roots_old and not roots_new and not old.keepcaps:
        prm = eff = 0
    if old.euid == 0 and new.euid != 0:
        eff = 0
    elif old.euid != 0 and new.euid == 0:
        eff = prm
    _store(new, (eff, prm, inh))


def fix_setfsuid(old: Credentials, new: Credentials) -> None:
    """After setfsuid: the file-system capabilities follow the fsuid (LSM_SETID_FS)."""
    eff, prm, inh = old.cap_sets()
    if old.fsuid == 0 and new.fsuid != 0:
        eff &= ~CAP_FS_MASK
    elif old.fsuid != 0 and new.fsuid == 0:
        eff |= prm & CAP_FS_MASK
    _store(new, (eff, prm, inh))


def at_exec(c: Credentials) -> None:
    """cap_bprm_creds_from_file for a binary without file capabilities or set-id bits:
    root (real or effective) gets the bounding set (and its inheritable set), effective
    only if the euid is 0; anyone else gets nothing.  PR_SET_KEEPCAPS is cleared."""
    _eff, _prm, inh = c.cap_sets()
    if c.euid == 0 or c.uid == 0:
        prm = c.bset | inh
        eff = prm if c.euid == 0 else 0
    else:
        prm = eff = 0
    c.keepcaps = False
    _store(c, (eff, prm, inh))


def capset(c: Credentials, eff: int, prm: int, inh: int) -> None:
    """cap_capset's rules, then the new sets.  Preconditions: `c` is the new copy."""
    old_eff, old_prm, old_inh = c.cap_sets()
    if inh & ~(old_inh | old_prm) and not c.capable(CAP_SETPCAP):
        raise SyscallError(Errno.EPERM)
    if inh & ~(old_inh | c.bset):
        raise SyscallError(Errno.EPERM)
    if prm & ~old_prm or eff & ~prm:
        raise SyscallError(Errno.EPERM)
    c.caps = (eff, prm, inh)


def bset_drop(c: Credentials, cap: int) -> None:
    """PR_CAPBSET_DROP.  Preconditions: `c` is the new copy, `cap` is valid."""
    if not c.capable(CAP_SETPCAP):
        raise SyscallError(Errno.EPERM)
    c.bset &= ~(1 << cap)


def may_kill(sender: Credentials, target: Credentials) -> bool:
    """kill_ok_by_cred: matching uids or CAP_KILL."""
    return sender.euid in (target.suid, target.uid) or sender.uid in (target.suid, target.uid) \
        or sender.capable(CAP_KILL)
