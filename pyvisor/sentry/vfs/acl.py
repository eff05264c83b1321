"""POSIX access control lists.  Linux: fs/posix_acl.c, fs/namei.c (acl_permission_check).

An ACL is kept as the extended attribute Linux names it (system.posix_acl_access,
system.posix_acl_default) in the inode's XattrStore, in the wire format of
<linux/posix_acl_xattr.h>: a 4-byte version (2), then 8-byte entries
(u16 tag, u16 perm, u32 id).  What is stored was parsed and validated
(posix_acl_from_xattr, posix_acl_valid) and re-serialised, so the ids of the
USER_OBJ, GROUP_OBJ, MASK and OTHER entries read back as ACL_UNDEFINED_ID.

The rules mirrored:
* Setting an access ACL sets the mode's owner, group (the mask when there is
  one) and other bits; an ACL a mode can say (only the three base entries) is
  not stored (posix_acl_update_mode).  Setting or removing one clears S_ISGID
  unless the caller is in the file's group or has CAP_FSETID.
* chmod rewrites USER_OBJ, MASK (GROUP_OBJ without a mask) and OTHER
  (posix_acl_chmod).
* A new file in a directory with a default ACL takes an access ACL made from
  it, masked by the requested mode, and no umask; a new directory also takes
  the default ACL itself (posix_acl_create).
* Access checks by someone other than the owner consult the access ACL when the
  mode has group bits (acl_permission_check, posix_acl_permission).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_FSETID
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.stat import S_ISGID
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Credentials, Task
    from pyvisor.sentry.vfs.inode import Inode

# From <linux/posix_acl_xattr.h> and <linux/posix_acl.h>.
ACCESS = b"system.posix_acl_access"
DEFAULT = b"system.posix_acl_default"
NAMES = (ACCESS, DEFAULT)
POSIX_ACL_XATTR_VERSION = 2
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = \
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
_ENTRY = struct.Struct("<HHI")
_HEADER = struct.Struct("<I")
_MAX_ENTRIES = 8191          # what fits in XATTR_SIZE_MAX

Entry = tuple[int, int, int]    # (tag, perm, id)


def is_acl_name(name: bytes) -> bool:
    return name in NAMES


def parse(value: bytes) -> list[Entry] | None:
    """posix_acl_from_xattr: the entries, or None for "no ACL" (empty value or a
    header with no entries).  EINVAL for a malformed value, EOPNOTSUPP for another
    version."""
    if not value:
        return None
    if len(value) < _HEADER.size:
        raise SyscallError(Errno.EINVAL)
    if _HEADER.unpack_from(value)[0] != POSIX_ACL_XATTR_VERSION:
        raise SyscallError(Errno.EOPNOTSUPP)
    body = len(value) - _HEADER.size
    if body % _ENTRY.size:
        raise SyscallError(Errno.EINVAL)
    n = body // _ENTRY.size
    if n == 0:
        return None
    if n > _MAX_ENTRIES:
        raise SyscallError(Errno.EINVAL)
    out: list[Entry] = []
    for tag, perm, xid in _ENTRY.iter_unpack(value[_HEADER.size:]):
        if tag in (ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER):
            xid = ACL_UNDEFINED_ID
        elif tag in (ACL_USER, ACL_GROUP):
            if xid == ACL_UNDEFINED_ID:      # no kuid/kgid maps to it
                raise SyscallError(Errno.EINVAL)
        else:
            raise SyscallError(Errno.EINVAL)
        out.append((tag, perm, xid))
    return out


def serialize(entries: list[Entry]) -> bytes:
    """posix_acl_to_xattr."""
    return _HEADER.pack(POSIX_ACL_XATTR_VERSION) + b"".join(
        _ENTRY.pack(tag, perm, xid) for tag, perm, xid in entries)


def valid(entries: list[Entry]) -> None:
    """posix_acl_valid: one USER_OBJ, USER..., one GROUP_OBJ, GROUP..., a MASK (needed
    with named entries), one OTHER, in that order; permissions within rwx."""
    state = ACL_USER_OBJ
    needs_mask = False
    for tag, perm, _ in entries:
        if perm & ~7:
            raise SyscallError(Errno.EINVAL)
        if tag == ACL_USER_OBJ and state == ACL_USER_OBJ:
            state = ACL_USER
        elif tag == ACL_USER and state == ACL_USER:
            needs_mask = True
        elif tag == ACL_GROUP_OBJ and state == ACL_USER:
            state = ACL_GROUP
        elif tag == ACL_GROUP and state == ACL_GROUP:
            needs_mask = True
        elif tag == ACL_MASK and state == ACL_GROUP:
            state = ACL_OTHER
        elif tag == ACL_OTHER and (state == ACL_OTHER or
                                   (state == ACL_GROUP and not needs_mask)):
            state = 0
        else:
            raise SyscallError(Errno.EINVAL)
    if state != 0:
        raise SyscallError(Errno.EINVAL)


def equiv_mode(entries: list[Entry], mode: int) -> tuple[bool, int]:
    """posix_acl_equiv_mode: (whether the ACL says more than a mode can, the mode
    with its rwx bits from the ACL)."""
    bits = 0
    mask = None
    not_equiv = False
    for tag, perm, _ in entries:
        if tag == ACL_USER_OBJ:
            bits |= (perm & 7) << 6
        elif tag == ACL_GROUP_OBJ:
            bits |= (perm & 7) << 3
        elif tag == ACL_OTHER:
            bits |= perm & 7
        elif tag == ACL_MASK:
            mask = perm
            not_equiv = True
        else:
            not_equiv = True
    if mask is not None:
        bits = (bits & ~0o070) | ((mask & 7) << 3)
    return not_equiv, (mode & ~0o777) | bits


def get_entries(inode: Inode, name: bytes = ACCESS) -> list[Entry] | None:
    """The stored ACL `name` of `inode` (None: none)."""
    store = inode.xattr_store(False)
    if store is None:
        return None
    raw = store.attrs.get(name)
    if raw is None:
        return None
    return [_ENTRY.unpack_from(raw, off)
            for off in range(_HEADER.size, len(raw), _ENTRY.size)]


def _in_group_or_capable(t: Task, inode: Inode) -> bool:
    from pyvisor.sentry.vfs.perms import capable_wrt_inode
    return t.creds.in_group(inode.gid) or capable_wrt_inode(t.creds, inode, CAP_FSETID)


def _owner_or_capable(t: Task, inode: Inode) -> bool:
    from pyvisor.sentry.vfs.perms import owner_or_capable
    return owner_or_capable(t, inode)


def _put(inode: Inode, name: bytes, entries: list[Entry] | None) -> None:
    store = inode.xattr_store(True)
    if store is None:
        raise SyscallError(Errno.EOPNOTSUPP)
    if entries is None:
        if name in store.attrs:
            store.remove(name)
    else:
        store.set(name, serialize(entries), 0)


def set_acl(t: Task, inode: Inode, name: bytes, value: bytes | None) -> None:
    """setxattr/removexattr of an ACL name (`value` None: remove).  Linux:
    do_set_acl, vfs_set_acl, set_posix_acl, simple_set_acl."""
    entries = parse(value) if value else None
    if inode.is_symlink() or not _keeps_xattrs(inode):
        raise SyscallError(Errno.EOPNOTSUPP)
    if name == DEFAULT and not inode.is_dir():
        if entries is not None:
            raise SyscallError(Errno.EACCES)
        return
    if not _owner_or_capable(t, inode):
        raise SyscallError(Errno.EPERM)
    if entries is not None:
        valid(entries)
    if entries is None and getattr(inode, "upper", True) is None and \
            get_entries(inode, name) is None:
        # An overlay file not copied up with no such ACL below: nothing to remove, and
        # no copy-up for it (Linux: ovl_set_or_remove_acl).
        raise SyscallError(Errno.ENODATA)
    if name == ACCESS:
        mode = inode.mode
        if entries is not None:
            not_equiv, mode = equiv_mode(entries, mode)
            if not not_equiv:
                entries = None          # a mode says it all: not stored
        if not _in_group_or_capable(t, inode):
            mode &= ~S_ISGID
        _put(inode, name, entries)
        inode.setattr(mode=mode & 0o7777)      # ctime too
        return
    _put(inode, name, entries)
    inode.setattr()                              # ctime


def _keeps_xattrs(inode: Inode) -> bool:
    """Whether the filesystem stores xattrs (a probe that creates nothing visible)."""
    from pyvisor.sentry.fsimpl.tmpfs.tmpfs import TmpfsInode
    if isinstance(inode, TmpfsInode):
        return True
    return hasattr(inode, "copy_up")


def get_acl(inode: Inode, name: bytes) -> bytes:
    """getxattr of an ACL name.  Linux: vfs_get_acl."""
    if inode.is_symlink():
        raise SyscallError(Errno.EOPNOTSUPP)
    store = inode.xattr_store(False)
    raw = store.attrs.get(name) if store is not None else None
    if raw is None:
        raise SyscallError(Errno.ENODATA)
    return raw


def chmod(inode: Inode) -> None:
    """posix_acl_chmod: an access ACL follows a new mode."""
    entries = get_entries(inode, ACCESS)
    if entries is None:
        return
    mode = inode.mode
    has_mask = any(tag == ACL_MASK for tag, _, _ in entries)
    out: list[Entry] = []
    for tag, perm, xid in entries:
        if tag == ACL_USER_OBJ:
            perm = (mode >> 6) & 7
        elif tag == ACL_MASK or (tag == ACL_GROUP_OBJ and not has_mask):
            perm = (mode >> 3) & 7
        elif tag == ACL_OTHER:
            perm = mode & 7
        out.append((tag, perm, xid))
    _put(inode, ACCESS, out)


def permission(creds: Credentials, inode: Inode, want: int) -> bool | None:
    """posix_acl_permission for a caller that does not own `inode`: whether the access
    ACL grants `want` (MAY_* rwx bits); None if there is no ACL (the mode decides)."""
    if not inode.mode & 0o070:
        return None
    entries = get_entries(inode, ACCESS)
    if entries is None:
        return None
    want &= 7
    found = False
    n = len(entries)
    for i, (tag, perm, xid) in enumerate(entries):
        matched = False
        if tag == ACL_USER_OBJ:
            if creds.fsuid == inode.uid:
                return perm & want == want
        elif tag == ACL_USER:
            matched = creds.fsuid == xid
        elif tag in (ACL_GROUP_OBJ, ACL_GROUP):
            if creds.in_group(inode.gid if tag == ACL_GROUP_OBJ else xid):
                found = True
                matched = perm & want == want
        elif tag == ACL_OTHER:
            return False if found else perm & want == want
        if matched:
            for j in range(i + 1, n):
                if entries[j][0] == ACL_MASK:
                    return perm & entries[j][1] & want == want
            return perm & want == want
    return False


def inherit(t: Task, parent: Inode, mode: int, is_dir: bool
            ) -> tuple[int, list[Entry] | None, list[Entry] | None]:
    """posix_acl_create: (the new file's permission bits, its access ACL, its default
    ACL) for `mode` (rwx and special bits, no umask yet) made in `parent`."""
    dacl = get_entries(parent, DEFAULT)
    if dacl is None:
        return mode & ~t.fs.umask & 0o7777, None, None
    acl = list(dacl)
    m = mode & 0o777
    mask_i = group_i = None
    not_equiv = False
    for i, (tag, perm, xid) in enumerate(acl):
        if tag == ACL_USER_OBJ:
            perm &= (m >> 6) | ~7
            m &= (perm << 6) | ~0o700
        elif tag in (ACL_USER, ACL_GROUP):
            not_equiv = True
        elif tag == ACL_GROUP_OBJ:
            group_i = i
        elif tag == ACL_OTHER:
            perm &= m | ~7
            m &= perm | ~0o007
        elif tag == ACL_MASK:
            mask_i = i
            not_equiv = True
        acl[i] = (tag, perm & 0xFFFF, xid)
    k = mask_i if mask_i is not None else group_i
    if k is not None:
        tag, perm, xid = acl[k]
        perm &= (m >> 3) | ~7
        m &= (perm << 3) | ~0o070
        acl[k] = (tag, perm & 0xFFFF, xid)
    new_mode = (mode & 0o7000) | (m & 0o777)
    return new_mode, acl if not_equiv else None, dacl if is_dir else None


def apply_inherited(inode: Inode, access: list[Entry] | None,
                    default: list[Entry] | None) -> None:
    """Stores what `inherit` gave on the new inode (no permission checks: the caller
    just made it)."""
    if access is not None:
        _put(inode, ACCESS, access)
    if default is not None:
        _put(inode, DEFAULT, default)
