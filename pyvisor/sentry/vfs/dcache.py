"""The dentry cache bound and the Sentry's host-file budget.
Linux: fs/dcache.c (the dentry LRU and its shrinker), fs/file_table.c (files_stat,
ENFILE); gVisor: the gofer filesystem's dentry cache (runsc --dcache).

Who keeps a dentry alive: its users (open file descriptions, cwd and root,
mounts, child dentries through `parent`, a walk in progress) hold it strongly;
its parent's `children` map holds it only weakly; and this cache holds the
`limit` most recently looked-up dentries strongly. A dentry that falls off the
end of the LRU therefore dies at once if nobody uses it, and with it its inode,
which releases what it holds (a Gofer fid and its host fd, a donated fd, its
page cache). A dentry still in use stays alive and reachable through its
parent's map, so lookups keep returning the same object: dentries in use are
never evicted, by construction, with no reference counts to keep right.

The same holds for the per-filesystem child maps below the VFS (gofer and
overlay inodes): they are weak, so only a live dentry keeps an inode alive.
Nothing may keep a dentry or inode alive in a reference cycle (the cycle
collector would release it late); `reclaim` collects cycles anyway.

`FileBudget` counts the host fds the Sentry holds for files (those the Gofers
donate). It is smaller than the Sentry's RLIMIT_NOFILE by a reserve for the
Sentry's own fds (memory file, epoll, signalfd, Gofer sockets, stdio). When a
file would take the last fd, the dcache is shrunk first (releasing the fds of
unused inodes); if that frees none, the application gets ENFILE, as Linux
gives at file-max. The sandbox is never killed for it.

Concurrency: Sentry loop only. One instance of each per Sentry process (the
sandbox), configured at boot, as Linux's dcache is one per kernel.
"""

from __future__ import annotations

import gc
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Generic, Iterator, TypeVar
from weakref import KeyedRef

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError

if TYPE_CHECKING:
    from pyvisor.sentry.vfs.vfs import Dentry

_T = TypeVar("_T")

# Dentries kept cached when nothing else uses them (`--dcache`).
DEFAULT_DCACHE = 4096
# Extra host fds each process keeps for everything that is not a file.
FD_RESERVE = 256


def fd_budget_for(dcache: int) -> int:
    """RLIMIT_NOFILE of the Sentry and of each Gofer for a dcache of `dcache`.

    Each cached dentry may hold one Gofer fd for its fid plus one for its
    parent directory's node, and in the Sentry one read-only host fd; the
    remainder is left for files the application holds open and the reserve.
    """
    return max(4096, 2 * dcache + 2048)


class WeakChildren(Generic[_T]):
    """A directory's children by name, held weakly: an entry goes when its object dies.

    Like weakref.WeakValueDictionary, lighter: a directory's map costs one
    dict until its first child, and no reference cycle ever forms (the removal
    callback holds the map weakly).
    """

    __slots__ = ("_refs", "_cb", "__weakref__")

    def __init__(self) -> None:
        self._refs: dict[bytes, KeyedRef] = {}
        self._cb: Callable[[KeyedRef], None] | None = None

    def get(self, name: bytes) -> _T | None:
        r = self._refs.get(name)
        return r() if r is not None else None  # type: ignore[no-any-return]

    def __setitem__(self, name: bytes, obj: _T) -> None:
        cb = self._cb
        if cb is None:
            cb = self._cb = _remover(weakref.ref(self))
        self._refs[name] = KeyedRef(obj, cb, name)

    def pop(self, name: bytes, default: _T | None = None) -> _T | None:
        r = self._refs.pop(name, None)
        obj = r() if r is not None else None
        return obj if obj is not None else default  # type: ignore[no-any-return]

    def __contains__(self, name: object) -> bool:
        r = self._refs.get(name)  # type: ignore[call-overload]
        return r is not None and r() is not None

    def __len__(self) -> int:
        return len(self._refs)

    def items(self) -> Iterator[tuple[bytes, _T]]:
        for name, r in list(self._refs.items()):
            obj = r()
            if obj is not None:
                yield name, obj

    def values(self) -> Iterator[_T]:
        for _, obj in self.items():
            yield obj

    def clear(self) -> None:
        self._refs.clear()


def _remover(mref: weakref.ref[WeakChildren[_T]]) -> Callable[[KeyedRef], None]:
    def remove(r: KeyedRef) -> None:
        m = mref()
        if m is not None and m._refs.get(r.key) is r:
            del m._refs[r.key]
    return remove


class DentryCache:
    """An LRU of the most recently looked-up dentries.  Linux: the dcache LRU.

    `limit` bounds how many dentries are kept only because they were used
    lately; dentries in use live regardless (see the module docstring).
    """

    __slots__ = ("limit", "_lru", "evictions")

    def __init__(self, limit: int = DEFAULT_DCACHE) -> None:
        self.limit = limit                                # set by boot (--dcache)
        self._lru: OrderedDict[Dentry, None] = OrderedDict()   # never rebound (vfs binds it)
        self.evictions = 0                                # for tests and debugging

    def __len__(self) -> int:
        return len(self._lru)

    def touch(self, d: Dentry) -> None:
        """Marks `d` most recently used, inserting it if new; evicts past the limit."""
        lru = self._lru
        if d in lru:
            lru.move_to_end(d)
            return
        lru[d] = None
        if len(lru) > self.limit:
            self._evict(len(lru) - self.limit)

    def drop(self, d: Dentry) -> None:
        """Forgets `d` (removed from its directory): it lives on only while in use."""
        self._lru.pop(d, None)

    def _evict(self, n: int) -> None:
        lru = self._lru
        for _ in range(min(n, len(lru))):
            lru.popitem(last=False)
        self.evictions += n

    def shrink(self) -> None:
        """Drops every cached dentry: only those in use survive.  Linux: shrink_dcache_sb."""
        self._evict(len(self._lru))


class FileBudget:
    """Host fds the Sentry holds for files, against a limit.  Linux: files_stat.

    `reclaim` (the dcache shrink and anything else that frees fds) runs before
    giving up with ENFILE.
    """

    __slots__ = ("limit", "used", "reclaims")

    def __init__(self, limit: int) -> None:
        self.limit = limit      # set by boot: RLIMIT_NOFILE minus FD_RESERVE
        self.used = 0
        self.reclaims = 0

    def acquire(self) -> None:
        """Accounts for one more host fd; ENFILE if none is left even after reclaiming."""
        if self.used >= self.limit:
            reclaim()
            if self.used >= self.limit:
                raise SyscallError(Errno.ENFILE)
        self.used += 1

    def release(self) -> None:
        self.used -= 1


dcache = DentryCache()
files = FileBudget(1 << 30)


def reclaim() -> None:
    """Frees what unused dentries hold: shrinks the dcache and collects cycles.

    Host fds in the Sentry close at once (inode finalizers); Gofer fids are
    queued, and each GoferFS sends them before its next request.
    """
    files.reclaims += 1
    dcache.shrink()
    gc.collect()


def configure(dcache_limit: int, fd_limit: int) -> None:
    """Sets the sandbox's bounds (boot): dentries cached, host fds for files."""
    dcache.limit = max(1, dcache_limit)
    files.limit = max(16, fd_limit - FD_RESERVE)
