"""Capabilities following the ids (sentry/kernel/creds.py), without a sandbox:
the transitions of Linux's commoncap.c that tests/programs/caps.c checks
end to end."""

from __future__ import annotations

import pytest

from pyvisor.abi.linux.capability import (ALL_CAPS, CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FS_MASK,
                                          CAP_KILL, CAP_NET_RAW, CAP_SETPCAP, SECBIT_KEEP_CAPS)
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel import creds
from pyvisor.sentry.kernel.task import Credentials


def _with_ids(old: Credentials, uid: int, euid: int, suid: int) -> Credentials:
    new = old.copy()
    new.uid, new.euid, new.suid, new.fsuid = uid, euid, suid, euid
    creds.fix_setuid(old, new)
    return new


def test_root_has_everything_others_nothing() -> None:
    assert Credentials().cap_sets() == (ALL_CAPS, ALL_CAPS, 0)
    assert Credentials(1000, 1000, 1000, 1000).cap_sets() == (0, 0, 0)
    assert Credentials().capable(CAP_KILL)
    assert not Credentials(1000, 1000, 1000, 1000).capable(CAP_KILL)


def test_seteuid_round_trip_keeps_permitted() -> None:
    away = _with_ids(Credentials(), 0, 1000, 0)
    assert away.cap_sets() == (0, ALL_CAPS, 0)
    back = _with_ids(away, 0, 0, 0)
    assert back.cap_sets() == (ALL_CAPS, ALL_CAPS, 0)
    assert back.caps is None                        # the default again


def test_losing_every_root_uid_clears_unless_keepcaps() -> None:
    assert _with_ids(Credentials(), 1000, 1000, 1000).cap_sets() == (0, 0, 0)
    keep = Credentials()
    keep.securebits = SECBIT_KEEP_CAPS
    assert _with_ids(keep, 1000, 1000, 1000).cap_sets() == (0, ALL_CAPS, 0)


def test_fsuid_moves_only_fs_caps() -> None:
    old = Credentials()
    new = old.copy()
    new.fsuid = 1000
    creds.fix_setfsuid(old, new)
    eff, prm, _ = new.cap_sets()
    assert eff == ALL_CAPS & ~CAP_FS_MASK and prm == ALL_CAPS
    assert not new.capable(CAP_DAC_OVERRIDE) and new.capable(CAP_KILL)
    assert not new.fs_superuser()
    back = new.copy()
    back.fsuid = 0
    creds.fix_setfsuid(new, back)
    assert back.cap_sets() == (ALL_CAPS, ALL_CAPS, 0)


def test_capset_only_shrinks() -> None:
    c = Credentials()
    creds.capset(c, ALL_CAPS & ~(1 << CAP_CHOWN), ALL_CAPS & ~(1 << CAP_CHOWN), 0)
    assert not c.capable(CAP_CHOWN) and not c.fs_superuser()
    with pytest.raises(SyscallError):
        creds.capset(c, ALL_CAPS, ALL_CAPS, 0)        # permitted never grows
    with pytest.raises(SyscallError):
        creds.capset(c, 1 << CAP_CHOWN, 0, 0)        # effective within permitted


def test_exec_gives_root_the_bounding_set() -> None:
    c = Credentials()
    creds.bset_drop(c, CAP_NET_RAW)
    assert c.capable(CAP_NET_RAW)                    # until exec
    creds.at_exec(c)
    assert not c.capable(CAP_NET_RAW) and c.capable(CAP_KILL)
    creds.capset(c, c.cap_sets()[0] & ~(1 << CAP_SETPCAP), c.cap_sets()[1], 0)
    with pytest.raises(SyscallError):
        creds.bset_drop(c, CAP_KILL)                 # needs CAP_SETPCAP
    user = Credentials(1000, 1000, 1000, 1000)
    creds.at_exec(user)
    assert user.cap_sets() == (0, 0, 0)


def test_kill_permission() -> None:
    root, a, b = Credentials(), Credentials(1000, 1000, 1000, 1000), \
        Credentials(2000, 2000, 2000, 2000)
    assert creds.may_kill(root, a) and creds.may_kill(a, a) and not creds.may_kill(a, b)
    creds.capset(root, ALL_CAPS & ~(1 << CAP_KILL), ALL_CAPS, 0)
    assert not creds.may_kill(root, a)


def test_ambient_within_permitted_and_inheritable() -> None:
    c = Credentials()
    with pytest.raises(SyscallError):
        creds.ambient(c, 2, CAP_KILL, 0)             # RAISE: not inheritable
    creds.capset(c, ALL_CAPS, ALL_CAPS, 1 << CAP_KILL)
    creds.ambient(c, 2, CAP_KILL, 0)
    assert creds.ambient(c, 1, CAP_KILL, 0) == 1
    user = c.copy()
    user.uid = user.euid = user.suid = user.fsuid = 1000
    creds.fix_setuid(c, user)
    assert user.ambient == 0                         # root uids gone: cleared
    creds.capset(c, ALL_CAPS, ALL_CAPS, 0)
    assert c.ambient == 0                            # inheritable dropped: cleared


def test_securebits_locks() -> None:
    c = Credentials()
    creds.set_securebits(c, SECBIT_KEEP_CAPS | SECBIT_KEEP_CAPS << 1)   # set and lock
    with pytest.raises(SyscallError):
        creds.set_keepcaps(c, 0)
    with pytest.raises(SyscallError):
        creds.set_securebits(c, 0)                   # no unlocking
