"""keyctl, add_key, request_key.  Linux: security/keys/keyctl.c.

Keys and keyrings live in kernel/keys.py.  Key types: "keyring" and "user"
(any other type is unknown: ENODEV).  request_key
finds existing keys only: there is no /sbin/request-key upcall (ENOKEY).
"""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel import keys
from pyvisor.sentry.kernel.keys import (KEY_LINK, KEY_READ, KEY_SEARCH, KEY_SETATTR, KEY_VIEW,
                                        KEY_WRITE, Key)
from pyvisor.sentry.kernel.task import Task

# From <linux/keyctl.h>.
KEYCTL_GET_KEYRING_ID = 0
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_UPDATE = 2
KEYCTL_REVOKE = 3
KEYCTL_SETPERM = 5
KEYCTL_DESCRIBE = 6
KEYCTL_CLEAR = 7
KEYCTL_LINK = 8
KEYCTL_UNLINK = 9
KEYCTL_SEARCH = 10
KEYCTL_READ = 11

_TYPES = ("keyring", "user")


def _type(t: Task, addr: int) -> str:
    name = t.copy_in_str(addr, 32)
    try:
        s = name.decode()
    except UnicodeDecodeError:
        raise SyscallError(Errno.ENODEV) from None
    if s.startswith("."):
        raise SyscallError(Errno.EPERM)          # internal types (Linux: key_get_type_from_user)
    if s not in _TYPES:
        raise SyscallError(Errno.ENODEV)
    return s


def _desc(t: Task, addr: int) -> bytes:
    desc = t.copy_in_str(addr, keys.KEY_MAX_DESC_SIZE)
    if not desc:
        raise SyscallError(Errno.EINVAL)
    return desc


def _copy_result(t: Task, data: bytes, buf: int, buflen: int) -> int:
    """Copies `data` out only if it all fits; returns its length either way."""
    if buf and buflen >= len(data):
        t.copy_out(buf, data)
    return len(data)


def sys_keyctl(t: Task, r: SyscallArguments) -> int:
    """Implements keyctl(2) for the operations above."""
    op = r.int32(0)
    serial = r.int32(1)                      # key_serial_t
    if op == KEYCTL_GET_KEYRING_ID:
        return keys.lookup(t, serial, 0)[0].serial
    if op == KEYCTL_JOIN_SESSION_KEYRING:
        addr = r.pointer(1)
        name = t.copy_in_str(addr, keys.KEY_MAX_DESC_SIZE) if addr else None
        if name is not None and not name:
            raise SyscallError(Errno.EINVAL)
        return keys.join_session(t, name)
    if op == KEYCTL_DESCRIBE:
        key, _ = keys.lookup(t, serial, KEY_VIEW)
        return _copy_result(t, keys.describe(key), r.pointer(2), r.uint64(3))
    if op == KEYCTL_SETPERM:
        perm = r.uint32(2)
        if perm & ~keys.KEY_PERM_VALID:
            raise SyscallError(Errno.EINVAL)
        key, _ = keys.lookup(t, serial, KEY_SETATTR)
        if key.uid != t.creds.fsuid and not t.creds.capable(21):     # CAP_SYS_ADMIN
            raise SyscallError(Errno.EACCES)
        key.perm = perm
        return 0
    if op == KEYCTL_UPDATE:
        key, _ = keys.lookup(t, serial, KEY_WRITE)
        if key.type != "user":
            raise SyscallError(Errno.EOPNOTSUPP)
        key.payload = _payload(t, r.pointer(2), r.uint64(3))
        return 0
    if op == KEYCTL_REVOKE:
        key, _ = keys.lookup(t, serial, KEY_WRITE | KEY_SETATTR)
        key.revoked = True
        return 0
    if op == KEYCTL_CLEAR:
        key, _ = keys.lookup(t, serial, KEY_WRITE)
        if key.type != "keyring":
            raise SyscallError(Errno.ENOTDIR)
        key.links = []
        return 0
    if op in (KEYCTL_LINK, KEYCTL_UNLINK):
        key, _ = keys.lookup(t, serial, KEY_LINK if op == KEYCTL_LINK else 0)
        ring, _ = keys.lookup(t, r.int32(2), KEY_WRITE)
        if op == KEYCTL_LINK:
            keys.link(ring, key)
        elif key in ring.links:
            ring.links.remove(key)
        else:
            raise SyscallError(Errno.ENOENT)
        return 0
    if op == KEYCTL_SEARCH:
        ring, _ = keys.lookup(t, serial, KEY_SEARCH)
        found = keys.search(t, ring, _type(t, r.pointer(2)), _desc(t, r.pointer(3)))
        if found is None:
            raise SyscallError(Errno.ENOKEY)
        dest = r.int32(4)
        if dest:
            keys.link(keys.lookup(t, dest, KEY_WRITE)[0], found)
        return found.serial
    if op == KEYCTL_READ:
        key, poss = keys.lookup(t, serial, 0)
        if not keys.has_perm(t, key, KEY_READ, poss) and not (
                poss and keys.has_perm(t, key, KEY_SEARCH, poss)):
            raise SyscallError(Errno.EACCES)
        if key.revoked:
            raise SyscallError(Errno.EKEYREVOKED)
        data = (b"".join(struct.pack("<i", k.serial) for k in key.links)
                if key.type == "keyring" else key.payload)
        buf, buflen = r.pointer(2), r.uint64(3)
        if buf and buflen:
            t.copy_out(buf, data[:buflen])   # keyctl_read_key copies what fits
        return len(data)
    raise SyscallError(Errno.EOPNOTSUPP)


def _payload(t: Task, addr: int, n: int) -> bytes:
    if n > keys.KEY_MAX_PAYLOAD:
        raise SyscallError(Errno.EINVAL)
    if n and not addr:
        raise SyscallError(Errno.EFAULT)
    return t.copy_in(addr, n) if n else b""


def sys_add_key(t: Task, r: SyscallArguments) -> int:
    """Implements add_key(2): a "user" key or a "keyring", linked into a keyring
    the caller may write; an existing key of that type and description there is
    updated (user) or kept (keyring)."""
    type_ = _type(t, r.pointer(0))
    desc = _desc(t, r.pointer(1)) if r.pointer(1) or type_ != "keyring" else None
    if desc is None:
        raise SyscallError(Errno.EINVAL)
    if type_ == "keyring" and r.uint64(3):
        raise SyscallError(Errno.EINVAL)
    if type_ == "user" and desc.startswith(b"."):
        raise SyscallError(Errno.EPERM)
    payload = _payload(t, r.pointer(2), r.uint64(3))
    if type_ == "user" and not payload:
        raise SyscallError(Errno.EINVAL)
    ring, _ = keys.lookup(t, r.int32(4), KEY_WRITE)
    if ring.type != "keyring":
        raise SyscallError(Errno.ENOTDIR)
    for k in ring.links:
        if k.type == type_ and k.description == desc:
            if type_ == "user":
                k.payload = payload
            return k.serial
    c = t.creds
    # Linux: key_create_or_update's default for types that read and update.
    key: Key = keys.registry(t).new(type_, desc, c.fsuid, c.fsgid,
                                    keys.KEY_POS_ALL | keys.KEY_USR_VIEW)
    key.payload = payload
    keys.link(ring, key)
    return key.serial


def sys_request_key(t: Task, r: SyscallArguments) -> int:
    """Implements request_key(2) for keys that already exist: a search of the
    caller's session keyring; no upcall to construct a missing one (ENOKEY)."""
    type_ = _type(t, r.pointer(0))
    desc = _desc(t, r.pointer(1))
    found = keys.search(t, keys.session_keyring(t), type_, desc)
    if found is None:
        raise SyscallError(Errno.ENOKEY)
    dest = r.int32(3)
    if dest:
        keys.link(keys.lookup(t, dest, KEY_WRITE)[0], found)
    return found.serial
