"""Capabilities kept in step with the ids.  Linux: security/commoncap.c, kernel/capability.c,
kernel/signal.c (kill_ok_by_cred).

The sandbox is one user namespace whose root holds every capability.  A task's
capabilities follow its ids as Linux's do: losing every root uid clears the
permitted and effective sets (unless PR_SET_KEEPCAPS), leaving euid 0 clears the
effective set and regaining it restores it from the permitted one; the fsuid
moves the file-system capabilities (CAP_FS_MASK) in and out of the effective
set (SECBIT_NO_SETUID_FIXUP stops both).  capset(2) may only shrink the
permitted set, execve recomputes the sets (root gets the bounding set unless
SECBIT_NOROOT, everyone keeps the ambient set; no file capabilities here),
PR_CAPBSET_DROP shrinks the bounding set for later execs, and the ambient set
stays within permitted & inheritable.
Permission checks ask `Credentials.capable`, never the uid.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import (ALL_CAPS, CAP_FS_MASK, CAP_KILL, CAP_LAST_CAP,
                                          CAP_SETPCAP, CAP_SETUID, PR_CAP_AMBIENT_CLEAR_ALL,
                                          PR_CAP_AMBIENT_IS_SET, PR_CAP_AMBIENT_LOWER,
                                          PR_CAP_AMBIENT_RAISE, SECBIT_KEEP_CAPS,
                                          SECBIT_KEEP_CAPS_LOCKED, SECBIT_NO_CAP_AMBIENT_RAISE,
                                          SECBIT_NO_SETUID_FIXUP, SECBIT_NOROOT,
                                          SECURE_ALL_BITS, SECURE_ALL_LOCKS, cap_mask)
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.stat import S_ISGID, S_ISUID
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Credentials


def _default(c: Credentials) -> tuple[int, int, int]:
    return (ALL_CAPS, ALL_CAPS, 0) if c.euid == 0 else (0, 0, 0)


def _store(c: Credentials, caps: tuple[int, int, int]) -> None:
    """Keeps the sets, as None when they are what the ids alone would give."""
    c.caps = None if caps == _default(c) and c.fsuid == c.euid else caps


def from_spec(c: Credentials, caps: object) -> None:
    """Gives `c` an OCI process.capabilities object ({"bounding": [names], "effective":
    ..., "permitted": ..., "inheritable": ..., "ambient": ...}; None leaves root's
    default), as runc sets them on the container's process before its execve: a set
    that is absent is empty, names this kernel does not know are left out, and the
    ambient set keeps only what is also permitted and inheritable (Linux's rule).  The
    exec that starts the program then transforms them as Linux does (at_exec).
    Raises ValueError for a malformed object (the control messages carry it)."""
    if caps is None:
        return
    if not isinstance(caps, dict) or not all(
            isinstance(v, list) and all(isinstance(n, str) for n in v) for v in caps.values()):
        raise ValueError("capabilities must map set names to lists of names")
    def mask(key: str) -> int:
        return cap_mask(caps.get(key) or ())
    eff, prm, inh = mask("effective"), mask("permitted"), mask("inheritable")
    c.bset = mask("bounding")
    _store(c, (eff & prm, prm, inh))
    c.ambient = mask("ambient") & prm & inh


def fix_setuid(old: Credentials, new: Credentials) -> None:
    """After a set*uid: cap_emulate_setxuid (Preconditions: new.fsuid follows new.euid)."""
    eff, prm, inh = old.cap_sets()
    if old.securebits & SECBIT_NO_SETUID_FIXUP:
        _store(new, (eff, prm, inh))
        return
    roots_old = 0 in (old.uid, old.euid, old.suid)
    roots_new = 0 in (new.uid, new.euid, new.suid)
    if roots_old and not roots_new:
        if not old.securebits & SECBIT_KEEP_CAPS:
            prm = eff = 0
        new.ambient = 0      # "setresuid to nonroot followed by exec drops capabilities"
    if old.euid == 0 and new.euid != 0:
        eff = 0
    elif old.euid != 0 and new.euid == 0:
        eff = prm
    _store(new, (eff, prm, inh))


def fix_setfsuid(old: Credentials, new: Credentials) -> None:
    """After setfsuid: the file-system capabilities follow the fsuid (LSM_SETID_FS)."""
    eff, prm, inh = old.cap_sets()
    if old.securebits & SECBIT_NO_SETUID_FIXUP:
        pass
    elif old.fsuid == 0 and new.fsuid != 0:
        eff &= ~CAP_FS_MASK
    elif old.fsuid != 0 and new.fsuid == 0:
        eff |= prm & CAP_FS_MASK
    _store(new, (eff, prm, inh))


def at_exec(c: Credentials) -> None:
    """cap_bprm_creds_from_file for a binary without file capabilities or set-id bits:
    root (real or effective, unless SECBIT_NOROOT) gets the bounding set and its
    inheritable set, effective only if the euid is 0; everyone keeps the ambient set,
    in the permitted set and, where nothing else is, as the effective set.
    SECBIT_KEEP_CAPS is cleared."""
    from pyvisor.sentry.kernel.namespaces import make_kid, userns_of
    _eff, _prm, inh = c.cap_sets()
    prm, full = 0, False
    # Root is the id 0 of the credentials' user namespace (root_uid = make_kuid(ns, 0)):
    # uid 0 of an `unshare -Ur` namespace is its creator's kernel id.
    root = make_kid(userns_of(c), 0, True)
    if not c.securebits & SECBIT_NOROOT and root is not None and \
            (c.euid == root or c.uid == root):
        prm = c.bset | inh
        full = c.euid == root
    prm |= c.ambient
    eff = prm if full else c.ambient
    c.securebits &= ~SECBIT_KEEP_CAPS
    _store(c, (eff, prm, inh))


def exec_creds(old: Credentials, mode: int, file_uid: int, file_gid: int, may_setid: bool,
               unsafe: bool) -> tuple[Credentials, bool]:
    """The credentials an execve runs the new image with, and whether it is a
    secure exec (AT_SECURE).  A set-user-ID file makes its owner the euid, a
    set-group-ID one (with group execute) its group the egid, unless `may_setid`
    is False (a nosuid mount, no_new_privs).  Under an `unsafe` exec (traced by a
    tracer without CAP_SYS_PTRACE) the ids stay unless the caller has CAP_SETUID,
    and no capability is gained.  Set-id cancels the ambient set; saved and fs ids
    follow the effective ones.  Linux: bprm_fill_uid, cap_bprm_creds_from_file."""
    new = old.copy()
    if may_setid:
        if mode & S_ISUID:
            new.euid = file_uid
        if mode & (S_ISGID | 0o010) == S_ISGID | 0o010:      # and S_IXGRP
            new.egid = file_gid
    id_changed = new.euid != old.euid or new.egid != old.egid
    if id_changed and unsafe and not old.capable(CAP_SETUID):
        new.euid, new.egid = new.uid, new.gid
    is_setid = new.euid != old.uid or new.egid != old.gid
    if is_setid:
        new.ambient = 0
    new.suid = new.fsuid = new.euid
    new.sgid = new.fsgid = new.egid
    _old_eff, old_prm, _inh = old.cap_sets()
    at_exec(new)
    if unsafe:
        eff, prm, inh = new.cap_sets()
        _store(new, (eff & old_prm, prm & old_prm, inh))
    return new, is_setid or id_changed


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
    c.ambient &= prm & inh


def bset_drop(c: Credentials, cap: int) -> None:
    """PR_CAPBSET_DROP.  Preconditions: `c` is the new copy, `cap` is valid."""
    if not c.capable(CAP_SETPCAP):
        raise SyscallError(Errno.EPERM)
    c.bset &= ~(1 << cap)


def set_keepcaps(c: Credentials, on: int) -> None:
    """PR_SET_KEEPCAPS.  Preconditions: `c` is the new copy."""
    if on > 1:
        raise SyscallError(Errno.EINVAL)
    if c.securebits & SECBIT_KEEP_CAPS_LOCKED:
        raise SyscallError(Errno.EPERM)
    c.securebits = c.securebits | SECBIT_KEEP_CAPS if on else c.securebits & ~SECBIT_KEEP_CAPS


def set_securebits(c: Credentials, bits: int) -> None:
    """PR_SET_SECUREBITS: no locked bit changes, no lock undone, known bits only,
    CAP_SETPCAP.  Preconditions: `c` is the new copy."""
    old = c.securebits
    if ((old & SECURE_ALL_LOCKS) >> 1) & (old ^ bits) or old & SECURE_ALL_LOCKS & ~bits or \
            bits & ~(SECURE_ALL_LOCKS | SECURE_ALL_BITS) or not c.capable(CAP_SETPCAP):
        raise SyscallError(Errno.EPERM)
    c.securebits = bits


def ambient(c: Credentials, op: int, cap: int, rest: int) -> int:
    """PR_CAP_AMBIENT.  Preconditions: `c` is the new copy (committed by the caller)."""
    if op == PR_CAP_AMBIENT_CLEAR_ALL:
        if cap or rest:
            raise SyscallError(Errno.EINVAL)
        c.ambient = 0
        return 0
    if not 0 <= cap <= CAP_LAST_CAP or rest:
        raise SyscallError(Errno.EINVAL)
    if op == PR_CAP_AMBIENT_IS_SET:
        return c.ambient >> cap & 1
    if op == PR_CAP_AMBIENT_RAISE:
        _eff, prm, inh = c.cap_sets()
        if not prm >> cap & 1 or not inh >> cap & 1 or \
                c.securebits & SECBIT_NO_CAP_AMBIENT_RAISE:
            raise SyscallError(Errno.EPERM)
        c.ambient |= 1 << cap
    elif op == PR_CAP_AMBIENT_LOWER:
        c.ambient &= ~(1 << cap)
    else:
        raise SyscallError(Errno.EINVAL)
    return 0


def may_kill(sender: Credentials, target: Credentials) -> bool:
    """kill_ok_by_cred: matching uids or CAP_KILL."""
    return sender.euid in (target.suid, target.uid) or sender.uid in (target.suid, target.uid) \
        or sender.capable(CAP_KILL)
