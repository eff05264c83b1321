"""Key retention: keys, keyrings, session keyrings.  Linux: security/keys/.

A key has a random serial, a type ("keyring" or "user"), a description, an
owner, a 32-bit permission mask (possessor, user, group, other: six bits each)
and a payload (a keyring's is the keys linked into it).  Each thread's
credentials name its session keyring; clone shares them, and
KEYCTL_JOIN_SESSION_KEYRING gives the caller alone new credentials with a new
(or an existing, searchable named) keyring, as Linux's copy-on-write creds do.
The sandbox's first session keyring, "_ses", plays the login session's part.

A key is *possessed* by a task when it is the task's session keyring or is
reachable from it through searchable keyrings; possession adds the possessor
bits to what the owner/group/other bits grant (Linux: key_task_permission).
Root has no key privilege over permissions: a key with no permission bits is
refused to everybody (EACCES), as in Linux.

Keys live while something refers to them (a credentials' session keyring, a
keyring's link, the kernel's per-uid keyrings); the registry holds them
weakly, so an abandoned named keyring stops being found by name, but only
after the last RECENT_KEYS keys made or joined (Linux frees unreferenced keys
from a garbage collector, some time after the last reference went).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import random
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task

# From <linux/key.h>: permission bits, per class.
KEY_VIEW, KEY_READ, KEY_WRITE, KEY_SEARCH, KEY_LINK, KEY_SETATTR = 1, 2, 4, 8, 0x10, 0x20
KEY_ALL = 0x3f
KEY_POS_ALL = KEY_ALL << 24
KEY_USR_VIEW, KEY_USR_READ, KEY_USR_LINK = 0x10000, 0x20000, 0x100000
KEY_USR_ALL = KEY_ALL << 16
KEY_PERM_VALID = KEY_POS_ALL | KEY_USR_ALL | KEY_ALL << 8 | KEY_ALL

# From <linux/keyctl.h>: special keyring ids.
KEY_SPEC_THREAD_KEYRING = -1
KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_SESSION_KEYRING = -3
KEY_SPEC_USER_KEYRING = -4
KEY_SPEC_USER_SESSION_KEYRING = -5

KEY_MAX_DESC_SIZE = 4096
KEY_MAX_PAYLOAD = 32767          # user keys (Linux: user_preparse)
MAX_KEYS = 20000                 # all keys of the sandbox (Linux: key_quota_maxkeys per user)
RECENT_KEYS = 64                 # unreferenced keys kept alive (Linux: key_gc_delay)


@dataclass(eq=False)
class Key:
    """One key or keyring.  Linux: struct key."""

    serial: int                   # immutable
    type: str                     # "keyring" | "user"; immutable
    description: bytes            # immutable
    uid: int
    gid: int
    perm: int
    payload: bytes = b""          # "user" keys
    links: list[Key] = field(default_factory=list)   # keyrings: the keys linked in
    revoked: bool = False
    __weakref__: Any = field(default=None, init=False, repr=False, compare=False)


class KeyRegistry:
    """Every live key of a sandbox by serial.  Linux: key_serial_tree."""

    def __init__(self) -> None:
        self.by_serial: weakref.WeakValueDictionary[int, Key] = weakref.WeakValueDictionary()
        self.user_keyrings: dict[tuple[int, bool], Key] = {}  # (uid, session?) -> keyring
        self.init_session: Key | None = None                  # the sandbox's "_ses"
        self.recent: deque[Key] = deque(maxlen=RECENT_KEYS)   # the garbage collector's delay

    def new(self, type_: str, desc: bytes, uid: int, gid: int, perm: int) -> Key:
        if len(self.by_serial) >= MAX_KEYS:
            raise SyscallError(Errno.EDQUOT)
        while True:
            serial = random.randint(3, (1 << 31) - 1)     # Linux: key_alloc_serial
            if serial not in self.by_serial:
                break
        key = Key(serial, type_, desc, uid, gid, perm)
        self.by_serial[serial] = key
        self.recent.append(key)
        return key


def registry(t: Task) -> KeyRegistry:
    k = t.kernel
    reg: KeyRegistry | None = getattr(k, "keys", None)
    if reg is None:
        reg = k.keys = KeyRegistry()
    return reg


def session_keyring(t: Task) -> Key:
    """The task's session keyring; the sandbox's "_ses" until it joins another."""
    ring: Key | None = t.creds.session_keyring
    if ring is None:
        reg = registry(t)
        if reg.init_session is None:
            reg.init_session = reg.new("keyring", b"_ses", 0, 0,
                                       KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ)
        ring = reg.init_session
    return ring


def _user_keyring(t: Task, session: bool) -> Key:
    """"_uid.UID" and "_uid_ses.UID".  Linux: look_up_user_keyrings."""
    reg = registry(t)
    uid = t.creds.uid
    ring = reg.user_keyrings.get((uid, session))
    if ring is None:
        name = (b"_uid_ses.%d" if session else b"_uid.%d") % uid
        ring = reg.new("keyring", name, uid, 0xFFFFFFFF, KEY_POS_ALL | KEY_USR_ALL)
        reg.user_keyrings[(uid, session)] = ring
    return ring


def _reachable(root: Key, target: Key, t: Task) -> bool:
    """Whether `target` is `root` or linked below it through keyrings the task may
    search.  Linux: search_process_keyrings, for possession."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        ring = todo.pop()
        if ring is target:
            return True
        if ring.serial in seen:
            continue
        seen.add(ring.serial)
        for k in ring.links:
            if k is target:
                return True
            if k.type == "keyring" and has_perm(t, k, KEY_SEARCH, True):
                todo.append(k)
    return False


def possessed(t: Task, key: Key) -> bool:
    return _reachable(session_keyring(t), key, t)


def has_perm(t: Task, key: Key, need: int, is_possessed: bool) -> bool:
    """Linux: key_task_permission."""
    c = t.creds
    if key.uid == c.fsuid:
        kperm = key.perm >> 16
    elif key.gid != 0xFFFFFFFF and c.in_group(key.gid):
        kperm = key.perm >> 8
    else:
        kperm = key.perm
    if is_possessed:
        kperm |= key.perm >> 24
    return not need & ~kperm & KEY_ALL


def lookup(t: Task, serial: int, need: int) -> tuple[Key, bool]:
    """(key, possessed) for a keyctl id, with permission `need`.  Linux: lookup_user_key."""
    if serial == KEY_SPEC_SESSION_KEYRING:
        key, poss = session_keyring(t), True
    elif serial in (KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING):
        key, poss = _user_keyring(t, serial == KEY_SPEC_USER_SESSION_KEYRING), True
    elif serial in (KEY_SPEC_THREAD_KEYRING, KEY_SPEC_PROCESS_KEYRING):
        raise SyscallError(Errno.ENOKEY)      # no thread or process keyrings here
    elif serial < 1:
        raise SyscallError(Errno.EINVAL)
    else:
        found = registry(t).by_serial.get(serial)
        if found is None:
            raise SyscallError(Errno.ENOKEY)
        key, poss = found, possessed(t, found)
    if need and not has_perm(t, key, need, poss):
        raise SyscallError(Errno.EACCES)
    return key, poss


def describe(key: Key) -> bytes:
    """"type;uid;gid;perm;description" and its NUL.  Linux: keyctl_describe_key."""
    uid = key.uid if key.uid != 0xFFFFFFFF else -1
    gid = key.gid if key.gid != 0xFFFFFFFF else -1
    return b"%s;%d;%d;%08x;%s\0" % (key.type.encode(), uid, gid, key.perm, key.description)


def join_session(t: Task, name: bytes | None) -> int:
    """Gives the calling thread new credentials with a session keyring: a new
    anonymous "_ses", or the named keyring of the caller's uid it may search, or a
    new one of that name.  Returns its serial, or 0 when the caller already has
    the named keyring it found.  Linux: join_session_keyring."""
    reg = registry(t)
    c = t.creds
    ring: Key | None = None
    if name is None:
        ring = reg.new("keyring", b"_ses", c.uid, c.gid,
                       KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ)
    else:
        for k in list(reg.by_serial.values()):
            if (k.type == "keyring" and k.description == name and not k.revoked
                    and not k.description.startswith(b".")
                    and has_perm(t, k, KEY_SEARCH, False)):
                ring = k
                break
        if ring is None:
            ring = reg.new("keyring", name, c.uid, c.gid,
                           KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ | KEY_USR_LINK)
        elif ring is c.session_keyring:
            return 0
        reg.recent.append(ring)
    new = c.copy()
    new.session_keyring = ring
    t.creds = new
    return ring.serial


def search(t: Task, ring: Key, type_: str, desc: bytes) -> Key | None:
    """The first key of `type_` and `desc` below `ring` (searchable keyrings only)
    the task may search.  Linux: keyring_search."""
    seen: set[int] = set()
    todo = [ring]
    while todo:
        r = todo.pop(0)
        if r.serial in seen:
            continue
        seen.add(r.serial)
        for k in r.links:
            poss = True
            if k.type == type_ and k.description == desc and not k.revoked \
                    and has_perm(t, k, KEY_SEARCH, poss):
                return k
            if k.type == "keyring" and has_perm(t, k, KEY_SEARCH, poss):
                todo.append(k)
    return None


def link(ring: Key, key: Key) -> None:
    """Links `key` into `ring`, replacing a key of the same type and description."""
    if ring.type != "keyring":
        raise SyscallError(Errno.ENOTDIR)
    if key is ring or (key.type == "keyring" and _contains(key, ring)):
        raise SyscallError(Errno.EDEADLK)
    ring.links = [k for k in ring.links
                  if k is key or not (k.type == key.type and k.description == key.description)]
    if key not in ring.links:
        ring.links.append(key)


def _contains(root: Key, target: Key) -> bool:
    seen: set[int] = set()
    todo = [root]
    while todo:
        r = todo.pop()
        if r is target:
            return True
        if r.serial in seen:
            continue
        seen.add(r.serial)
        todo.extend(k for k in r.links if k.type == "keyring")
    return False
