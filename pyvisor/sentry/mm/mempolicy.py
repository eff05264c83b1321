"""NUMA memory policies.  Linux: mm/mempolicy.c.

The sandbox has one memory node, node 0, so a policy never changes where pages
come from: it is kept (per task by set_mempolicy, per VMA by mbind) only to be
checked and reported back, as Linux would on a one-node machine.  Linux's
internal MPOL_F_MOF/MORON bits are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.mempolicy import (MPOL_BIND, MPOL_DEFAULT, MPOL_F_NUMA_BALANCING,
                                         MPOL_F_RELATIVE_NODES, MPOL_F_STATIC_NODES, MPOL_LOCAL,
                                         MPOL_MAX, MPOL_MODE_FLAGS, MPOL_PREFERRED,
                                         MPOL_PREFERRED_MANY)
from pyvisor.sentry.errors import SyscallError

NR_NODE_IDS = 1               # nodes the sandbox has: node 0 only
MEMS_ALLOWED = (1 << NR_NODE_IDS) - 1
MAX_NUMNODES = 1024           # the nodemask_t width (CONFIG_NODES_SHIFT=10)


@dataclass(frozen=True, slots=True)
class Mempolicy:
    """A non-default policy.  Linux: struct mempolicy.  Immutable; shared freely."""

    mode: int                 # MPOL_PREFERRED ... MPOL_WEIGHTED_INTERLEAVE, never DEFAULT
    flags: int                # MPOL_MODE_FLAGS bits
    nodes: int                # the nodes in use (within MEMS_ALLOWED)
    user_nodes: int           # as given, kept for MPOL_F_STATIC/RELATIVE_NODES

    def reported_mode(self) -> int:
        return self.mode | self.flags

    def reported_nodes(self) -> int:
        """get_mempolicy's nodemask (get_policy_nodemask)."""
        if self.flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
            return self.user_nodes
        return 0 if self.mode == MPOL_LOCAL else self.nodes


def split_mode(mode: int) -> tuple[int, int]:
    """(mode, flags) from a mode argument.  Linux: sanitize_mpol_flags."""
    flags = mode & MPOL_MODE_FLAGS
    mode &= ~MPOL_MODE_FLAGS & 0xFFFFFFFF
    if mode >= MPOL_MAX:
        raise SyscallError(Errno.EINVAL)
    if flags & MPOL_F_STATIC_NODES and flags & MPOL_F_RELATIVE_NODES:
        raise SyscallError(Errno.EINVAL)
    if flags & MPOL_F_NUMA_BALANCING and mode not in (MPOL_BIND, MPOL_PREFERRED_MANY):
        raise SyscallError(Errno.EINVAL)
    return mode, flags


def new_policy(mode: int, flags: int, nodes: int) -> Mempolicy | None:
    """The policy `mode` with `nodes`; None for MPOL_DEFAULT.  EINVAL where Linux's
    mpol_new and mpol_set_nodemask refuse."""
    if mode == MPOL_DEFAULT:
        if nodes:
            raise SyscallError(Errno.EINVAL)
        return None
    fixed = flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES)
    if mode == MPOL_PREFERRED and not nodes:
        if fixed:
            raise SyscallError(Errno.EINVAL)
        mode = MPOL_LOCAL                     # Linux 5.15+: an empty preference is local
    elif mode == MPOL_LOCAL:
        if nodes or fixed:
            raise SyscallError(Errno.EINVAL)
    elif not nodes:
        raise SyscallError(Errno.EINVAL)
    if mode == MPOL_LOCAL:
        return Mempolicy(mode, flags, 0, nodes)
    # The nodes the policy may use: relative ones fold onto the allowed nodes.
    used = (MEMS_ALLOWED if nodes else 0) if flags & MPOL_F_RELATIVE_NODES \
        else nodes & MEMS_ALLOWED
    if not used:
        raise SyscallError(Errno.EINVAL)
    return Mempolicy(mode, flags, used, nodes)
