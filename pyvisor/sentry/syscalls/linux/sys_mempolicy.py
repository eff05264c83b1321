"""get_mempolicy, set_mempolicy, mbind.  Linux: mm/mempolicy.c.

Policies are checked and remembered as on a machine with one memory node
(mm/mempolicy.py); no page ever moves.
"""

from __future__ import annotations

import struct

from pyvisor.abi.linux.capability import CAP_SYS_NICE
from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mempolicy import (MPOL_DEFAULT, MPOL_F_ADDR, MPOL_F_MEMS_ALLOWED,
                                         MPOL_F_NODE, MPOL_INTERLEAVE, MPOL_MF_MOVE_ALL,
                                         MPOL_MF_VALID, MPOL_WEIGHTED_INTERLEAVE)
from pyvisor.abi.linux.mman import PAGE_SIZE
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.mm.mempolicy import (MAX_NUMNODES, MEMS_ALLOWED, NR_NODE_IDS, Mempolicy,
                                         new_policy, split_mode)

_U64 = (1 << 64) - 1


def _copy_in_nodes(t: Task, addr: int, maxnode: int) -> int:
    """A nodemask of `maxnode - 1` bits (Linux's get_nodes reads one bit fewer
    than the man page says); bits past MAX_NUMNODES must be clear."""
    bits = (maxnode - 1) & _U64
    if bits == 0 or not addr:
        return 0
    if bits > PAGE_SIZE * 8:
        raise SyscallError(Errno.EINVAL)
    raw = t.copy_in(addr, (bits + 63) // 64 * 8)
    nodes = int.from_bytes(raw, "little") & ((1 << bits) - 1)
    if nodes >> MAX_NUMNODES:
        raise SyscallError(Errno.EINVAL)
    return nodes


def _copy_out_nodes(t: Task, addr: int, maxnode: int, nodes: int) -> None:
    """copy_nodes_to_user: ALIGN(maxnode - 1, 64) bits, zeros past the node ids."""
    copy = ((maxnode - 1) + 63) // 64 * 8
    have = (NR_NODE_IDS + 63) // 64 * 8
    if copy > have:
        if copy > PAGE_SIZE:
            raise SyscallError(Errno.EINVAL)
        t.copy_out(addr + have, bytes(copy - have))
        copy = have
    if copy:
        t.copy_out(addr, nodes.to_bytes(have, "little")[:copy])


def _mode_and_nodes(pol: Mempolicy | None) -> tuple[int, int]:
    if pol is None:
        return MPOL_DEFAULT, 0
    return pol.reported_mode(), pol.reported_nodes()


def sys_get_mempolicy(t: Task, r: SyscallArguments) -> int:
    """Implements get_mempolicy(2)."""
    mode_addr, nmask, maxnode, addr, flags = (r.pointer(0), r.pointer(1), r.uint64(2),
                                              r.pointer(3), r.uint64(4))
    if nmask and maxnode < NR_NODE_IDS:
        raise SyscallError(Errno.EINVAL)
    if flags & ~(MPOL_F_NODE | MPOL_F_ADDR | MPOL_F_MEMS_ALLOWED):
        raise SyscallError(Errno.EINVAL)
    if flags & MPOL_F_MEMS_ALLOWED:
        if flags & (MPOL_F_NODE | MPOL_F_ADDR):
            raise SyscallError(Errno.EINVAL)
        mode, nodes = 0, MEMS_ALLOWED
    else:
        if flags & MPOL_F_ADDR:
            vma = t.mm.find(addr)
            if vma is None:
                raise SyscallError(Errno.EFAULT)
            pol = vma.mempolicy                 # not the task's: __get_vma_policy
        elif addr:
            raise SyscallError(Errno.EINVAL)
        else:
            pol = t.mempolicy
        mode, nodes = _mode_and_nodes(pol)
        if flags & MPOL_F_NODE:
            if flags & MPOL_F_ADDR:
                t.copy_in(addr, 1)              # lookup_node faults the page in
            elif pol is None or pol.mode not in (MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE):
                raise SyscallError(Errno.EINVAL)
            mode = 0                            # the node: there is only node 0
    if mode_addr:
        t.copy_out(mode_addr, struct.pack("<i", mode))
    if nmask:
        _copy_out_nodes(t, nmask, maxnode, nodes)
    return 0


def sys_set_mempolicy(t: Task, r: SyscallArguments) -> int:
    """Implements set_mempolicy(2)."""
    mode, flags = split_mode(r.uint32(0))
    nodes = _copy_in_nodes(t, r.pointer(1), r.uint64(2))
    t.mempolicy = new_policy(mode, flags, nodes)
    return 0


def sys_mbind(t: Task, r: SyscallArguments) -> int:
    """Implements mbind(2): the policy of every VMA of the range (all mapped, or
    EFAULT); MPOL_MF_MOVE/STRICT have nothing to move or find misplaced."""
    start, length, nmask, maxnode, mflags = (r.pointer(0), r.uint64(1), r.pointer(3),
                                             r.uint64(4), r.uint32(5))
    mode, flags = split_mode(r.uint32(2))
    nodes = _copy_in_nodes(t, nmask, maxnode)
    if mflags & ~MPOL_MF_VALID:
        raise SyscallError(Errno.EINVAL)
    if mflags & MPOL_MF_MOVE_ALL and not t.creds.capable(CAP_SYS_NICE):
        raise SyscallError(Errno.EPERM)
    if start % PAGE_SIZE:
        raise SyscallError(Errno.EINVAL)
    end = start + ((length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & _U64)
    if end > _U64 or end < start:
        raise SyscallError(Errno.EINVAL)
    if end == start:
        return 0
    t.mm.set_mempolicy(start, end, new_policy(mode, flags, nodes))
    return 0
