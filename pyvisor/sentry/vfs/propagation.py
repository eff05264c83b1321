"""Mount propagation: peer groups and slaves.  Linux: fs/pnode.c, fs/namespace.c
(change_mnt_propagation, attach_recursive_mnt, propagate_mnt, propagate_umount).

A shared mount belongs to a `PeerGroup` (mountinfo's "shared:N"); a mount and
its peers receive each other's mount and unmount events.  A slave mount has a
master group ("master:N") whose events it receives without sending its own
back.  Events reach the peers and, transitively, the slaves of the group
(`targets`); syscalls/linux/sys_mount.py makes the copies.

Group ids are the smallest free ones from 1 (Linux: mnt_group_ida), so an id is
reused once its group is gone.  A group goes when its last member leaves; its
slaves then follow the master of that last member (do_make_slave).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyvisor.sentry.vfs.vfs import Mount

_used_ids: set[int] = set()


class PeerGroup:
    """The mounts sharing events, and the mounts slaved to them."""

    __slots__ = ("id", "members", "slaves", "__weakref__")

    def __init__(self) -> None:
        i = 1
        while i in _used_ids:
            i += 1
        _used_ids.add(i)
        self.id = i
        self.members: list[Mount] = []
        self.slaves: list[Mount] = []


def _group(m: Mount) -> PeerGroup | None:
    return getattr(m, "group", None)


def _master(m: Mount) -> PeerGroup | None:
    return getattr(m, "master", None)


def is_shared(m: Mount | None) -> bool:
    return m is not None and _group(m) is not None


def set_master(m: Mount, g: PeerGroup | None) -> None:
    old = _master(m)
    if old is g:
        return
    if old is not None and m in old.slaves:
        old.slaves.remove(m)
    m.master = g                       # type: ignore[attr-defined]
    if g is not None:
        g.slaves.append(m)


def join(m: Mount, g: PeerGroup) -> None:
    """`m` becomes a peer of group `g`."""
    if _group(m) is g:
        return
    leave(m)
    m.group = g                        # type: ignore[attr-defined]
    g.members.append(m)
    m.unbindable = False               # type: ignore[attr-defined]


def make_shared(m: Mount) -> PeerGroup:
    g = _group(m)
    if g is None:
        g = PeerGroup()
        join(m, g)
    m.unbindable = False               # type: ignore[attr-defined]
    return g


def leave(m: Mount) -> None:
    """`m` leaves its peer group (do_make_slave's first half): a group left empty
    goes, its slaves passing to `m`'s master."""
    g = _group(m)
    if g is None:
        return
    g.members.remove(m)
    m.group = None                     # type: ignore[attr-defined]
    if not g.members:
        for s in list(g.slaves):
            set_master(s, _master(m))
        _used_ids.discard(g.id)


def make_slave(m: Mount) -> None:
    """MS_SLAVE: a shared mount with peers becomes their slave; the last of its group
    keeps (only) its own master; a private mount stays private."""
    g = _group(m)
    if g is None:
        return
    if len(g.members) > 1:
        leave(m)
        set_master(m, g)
    else:
        leave(m)


def make_private(m: Mount) -> None:
    make_slave(m)
    set_master(m, None)
    m.unbindable = False               # type: ignore[attr-defined]


def make_unbindable(m: Mount) -> None:
    make_private(m)
    m.unbindable = True                # type: ignore[attr-defined]


def is_unbindable(m: Mount) -> bool:
    return bool(getattr(m, "unbindable", False))


def forget(m: Mount) -> None:
    """An unmounted mount leaves every relation."""
    leave(m)
    set_master(m, None)


def clone_relation(src: Mount, copy: Mount, slave: bool = False) -> None:
    """The propagation a copy of `src` gets (clone_mnt): a peer of a shared source
    and a slave of the source's master; with `slave` (CL_SLAVE, a copy into a less
    privileged mount namespace), a slave of the source's group instead."""
    g = _group(src)
    if slave:
        set_master(copy, g if g is not None else _master(src))
        return
    if g is not None:
        join(copy, g)
    if _master(src) is not None:
        set_master(copy, _master(src))
    if is_unbindable(src):
        copy.unbindable = True         # type: ignore[attr-defined]


def targets(dest: Mount) -> list[tuple[Mount, Any, PeerGroup | None]]:
    """Where an event on `dest` propagates, masters before their slaves: (mount, key,
    via) triples.  key None: a peer of `dest` (copies there are peers of the
    source); otherwise the receiving slave group or mount: copies there are peers
    of the other copies with the same key, and slaves of the copies made in group
    `via` (None: of the source itself)."""
    out: list[tuple[Mount, Any, PeerGroup | None]] = []
    g = _group(dest)
    if g is None:
        return out
    out.extend((p, None, None) for p in g.members if p is not dest)
    seen = {id(g)}
    queue: list[tuple[PeerGroup, PeerGroup | None]] = [(g, None)]
    while queue:
        cur, cur_via = queue.pop(0)
        via = None if cur is g else cur
        for s in list(cur.slaves):
            sg = _group(s)
            if sg is None:
                out.append((s, s, via))
                continue
            if id(sg) in seen:
                continue
            seen.add(id(sg))
            out.extend((p, sg, via) for p in sg.members)
            queue.append((sg, via))
    return out


def optional_fields(m: Mount) -> bytes:
    """mountinfo's optional fields (show_mountinfo): shared:N master:N unbindable."""
    parts = []
    g = _group(m)
    if g is not None:
        parts.append(b"shared:%d" % g.id)
    mg = _master(m)
    if mg is not None:
        parts.append(b"master:%d" % mg.id)
    if is_unbindable(m):
        parts.append(b"unbindable")
    return b" ".join(parts)
