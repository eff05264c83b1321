"""NETLINK_NETFILTER: nftables over nfnetlink.  Linux: net/netfilter/nfnetlink.c
(nfnetlink_rcv, nfnetlink_rcv_batch), net/netfilter/nf_tables_api.c (the
NFT_MSG_* handlers).  gVisor: pkg/sentry/socket/netlink/netfilter.

Requests need CAP_NET_ADMIN (else an EPERM ack).  Reads (GETTABLE,
GETCHAIN, GETRULE, GETGEN; single or NLM_F_DUMP) are answered at once.
Changes (NEW/DEL/DESTROY of tables, chains, rules) come only inside a batch
(NFNL_MSG_BATCH_BEGIN ... NFNL_MSG_BATCH_END with res_id
NFNL_SUBSYS_NFTABLES): every message is applied to a copy of the ruleset,
its error or (with NLM_F_ACK) its ack is queued, and at BATCH_END the copy
replaces the ruleset if nothing failed.  The replies come in Linux's order
(6.10 and later): BEGIN's ack, each message's, END's.
The ruleset is per network namespace (nftables.py).
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyvisor.abi.linux.capability import CAP_NET_ADMIN
from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.socket.netlink import (NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP,
                                           NLM_F_EXCL, NLM_F_MULTI, NLM_F_NONREC, NLM_F_REPLACE,
                                           NLM_F_REQUEST, NLMSG_MIN_TYPE,
                                           NetlinkSocket, messages, nlmsg)
from pyvisor.sentry.socket.netlink import nft_compat, nft_sets
from pyvisor.sentry.socket.netlink import nftables as nft
from pyvisor.sentry.socket.netlink import nlattr
from pyvisor.sentry.socket.netlink.nftables import (NFPROTO_UNSPEC, NFTables, Chain, ExprContext,
                                                    Rule, Table, chain_by_handle, chain_by_name,
                                                    rule_by_handle)
from pyvisor.sentry.socket.netlink.nlattr import be32, string
from pyvisor.sentry.socket import net_capable

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task
    from pyvisor.sentry.socket import Network

# From <linux/netfilter/nfnetlink.h>, <linux/netlink.h>.
NFGENMSG = struct.Struct(">BBH")            # family, version, res_id (big-endian)
NFNETLINK_V0 = 0
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = NLMSG_MIN_TYPE, NLMSG_MIN_TYPE + 1
NFNL_SUBSYS_NFTABLES, NFNL_SUBSYS_NFT_COMPAT, NFNL_SUBSYS_COUNT = 10, 11, 12
NFNL_MSG_COMPAT_GET = 0
NFNL_BATCH_GENID = 1
# From <linux/netfilter/nf_tables.h>: enum nf_tables_msg_types.
(NFT_MSG_NEWTABLE, NFT_MSG_GETTABLE, NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_GETCHAIN,
 NFT_MSG_DELCHAIN, NFT_MSG_NEWRULE, NFT_MSG_GETRULE, NFT_MSG_DELRULE, NFT_MSG_NEWSET,
 NFT_MSG_GETSET, NFT_MSG_DELSET, NFT_MSG_NEWSETELEM, NFT_MSG_GETSETELEM, NFT_MSG_DELSETELEM,
 NFT_MSG_NEWGEN, NFT_MSG_GETGEN, NFT_MSG_TRACE, NFT_MSG_NEWOBJ, NFT_MSG_GETOBJ,
 NFT_MSG_DELOBJ, NFT_MSG_GETOBJ_RESET, NFT_MSG_NEWFLOWTABLE, NFT_MSG_GETFLOWTABLE,
 NFT_MSG_DELFLOWTABLE, NFT_MSG_GETRULE_RESET, NFT_MSG_DESTROYTABLE, NFT_MSG_DESTROYCHAIN,
 NFT_MSG_DESTROYRULE, NFT_MSG_DESTROYSET, NFT_MSG_DESTROYSETELEM, NFT_MSG_DESTROYOBJ,
 NFT_MSG_DESTROYFLOWTABLE, NFT_MSG_GETSETELEM_RESET) = range(34)
NFTA_GEN_ID, NFTA_GEN_PROC_PID, NFTA_GEN_PROC_NAME = 1, 2, 3
BATCH_TYPES = frozenset((
    NFT_MSG_NEWTABLE, NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_DELCHAIN, NFT_MSG_NEWRULE,
    NFT_MSG_DELRULE, NFT_MSG_NEWSET, NFT_MSG_DELSET, NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM,
    NFT_MSG_NEWOBJ, NFT_MSG_DELOBJ, NFT_MSG_NEWFLOWTABLE, NFT_MSG_DELFLOWTABLE,
    NFT_MSG_DESTROYTABLE, NFT_MSG_DESTROYCHAIN, NFT_MSG_DESTROYRULE, NFT_MSG_DESTROYSET,
    NFT_MSG_DESTROYSETELEM, NFT_MSG_DESTROYOBJ, NFT_MSG_DESTROYFLOWTABLE))
READ_TYPES = frozenset((
    NFT_MSG_GETTABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, NFT_MSG_GETSET, NFT_MSG_GETSETELEM,
    NFT_MSG_GETGEN, NFT_MSG_GETOBJ, NFT_MSG_GETOBJ_RESET, NFT_MSG_GETFLOWTABLE,
    NFT_MSG_GETRULE_RESET, NFT_MSG_GETSETELEM_RESET))


def nftables_of(net: Network | None) -> NFTables:
    """The ruleset of a network namespace, made on first use."""
    if net is None:
        return NFTables()
    state = net.nftables
    if state is None:
        state = NFTables()
        net.nftables = state
    assert isinstance(state, NFTables)
    return state


def _mtype(msg: int) -> int:
    return NFNL_SUBSYS_NFTABLES << 8 | msg


class Batch:
    """One batch's transaction: the copy it changes and the chain ids it made."""

    def __init__(self, state: NFTables, validate_now: bool) -> None:
        self.state = copy.deepcopy(state)
        self.chain_ids: dict[tuple[Table, int], Chain] = {}
        self.set_ids: dict[tuple[Table, int], nft_sets.Set] = {}
        self.validate_now = validate_now         # rules validated as they are added
        self.deferred: list[Callable[[], None]] = []   # else at commit


class NetfilterProtocol:
    """nfnetlink with the nf_tables subsystem.  Linux: nfnetlink_rcv."""

    nonroot_groups = True            # NL_CFG_F_NONROOT_RECV
    nonroot_send = False             # NL_CFG_F_NONROOT_SEND not set
    ngroups = 9                      # NFNLGRP_MAX

    def __init__(self, net: Network | None) -> None:
        self.net = net
        self.own = NFTables()                 # used when the socket has no namespace

    @property
    def state(self) -> NFTables:
        return nftables_of(self.net) if self.net is not None else self.own

    def receive(self, sock: NetlinkSocket, t: Task | None, data: bytes) -> None:
        msgs = messages(data)
        if not msgs:
            return
        first = msgs[0]
        if t is not None and not net_capable(t, CAP_NET_ADMIN):
            sock._queue([sock.ack_msg(first[5], Errno.EPERM)])
            return
        if first[0] == NFNL_MSG_BATCH_BEGIN:
            self._batch(sock, msgs)
            return
        for mtype, flags, _seq, _pid, body, whole in msgs:
            if not flags & NLM_F_REQUEST or mtype < NLMSG_MIN_TYPE:
                if flags & NLM_F_ACK:
                    sock._queue([sock.ack_msg(whole, 0)])
                continue
            err = 0
            try:
                dumped = self._read(sock, t, mtype, flags, body, whole)
            except SyscallError as e:
                err, dumped = e.errno, False
            if err or (flags & NLM_F_ACK and not dumped):
                sock._queue([sock.ack_msg(whole, err)])

    def released(self, sock: NetlinkSocket) -> None:
        if sock.portid:
            self.state.release_port(sock.portid)

    # -- reads ---------------------------------------------------------------------------

    def _read(self, sock: NetlinkSocket, t: Task | None, mtype: int, flags: int, body: bytes,
              whole: bytes) -> bool:
        """nfnetlink_rcv_msg for a message outside a batch; True if it was a dump (which
        Linux never acknowledges)."""
        if len(body) < NFGENMSG.size:
            raise SyscallError(Errno.EINVAL)
        msg = mtype & 0xFF
        family = body[0]
        seq = struct.unpack_from("<I", whole, 8)[0]
        if mtype >> 8 == NFNL_SUBSYS_NFT_COMPAT and msg == NFNL_MSG_COMPAT_GET:
            name, rev, kind = nft_compat.revision_reply(
                family, nlattr.parse(body[NFGENMSG.size:], nft_compat.GET_POLICY))
            b = NFGENMSG.pack(family, NFNETLINK_V0, 0)
            b += nlattr.attr_str(nft_compat.NFTA_COMPAT_NAME, name)
            b += nlattr.attr_be32(nft_compat.NFTA_COMPAT_REV, rev)
            b += nlattr.attr_be32(nft_compat.NFTA_COMPAT_TYPE, kind)
            sock._queue([nlmsg(mtype, 0, seq, sock.portid, b)])
            return False
        if mtype >> 8 != NFNL_SUBSYS_NFTABLES:
            raise SyscallError(Errno.EINVAL)
        st = self.state
        dump = bool(flags & NLM_F_DUMP)           # NLM_F_ROOT or NLM_F_MATCH
        if msg in BATCH_TYPES or msg not in READ_TYPES:
            raise SyscallError(Errno.EINVAL)
        if msg == NFT_MSG_GETGEN:
            b = NFGENMSG.pack(NFPROTO_UNSPEC, NFNETLINK_V0, st.genid & 0xFFFF)
            b += nlattr.attr_be32(NFTA_GEN_ID, st.genid)
            b += nlattr.attr_be32(NFTA_GEN_PROC_PID, t.tg.tgid if t is not None else 0)
            b += nlattr.attr_str(NFTA_GEN_PROC_NAME, t.tg.comm if t is not None else b"")
            sock._queue([nlmsg(_mtype(NFT_MSG_NEWGEN), 0, seq, sock.portid, b)])
            return False
        if msg == NFT_MSG_GETTABLE:
            attrs = nlattr.parse(body[NFGENMSG.size:], nft.TABLE_POLICY)
            if dump:
                self._dump(sock, seq, NFT_MSG_NEWTABLE,
                           [self._table_info(x) for x in st.by_family(family)])
                return True
            table = st.table(attrs.get(nft.NFTA_TABLE_NAME), family, 0)
            self._reply(sock, seq, NFT_MSG_NEWTABLE, self._table_info(table))
            return False
        if msg == NFT_MSG_GETCHAIN:
            attrs = nlattr.parse(body[NFGENMSG.size:], nft.CHAIN_POLICY)
            if dump:
                self._dump(sock, seq, NFT_MSG_NEWCHAIN,
                           [self._chain_info(c) for x in st.by_family(family)
                            for c in x.chains])
                return True
            table = st.table(attrs.get(nft.NFTA_CHAIN_TABLE), family, 0)
            chain = chain_by_name(table, attrs.get(nft.NFTA_CHAIN_NAME))
            self._reply(sock, seq, NFT_MSG_NEWCHAIN, self._chain_info(chain))
            return False
        if msg == NFT_MSG_GETRULE:
            attrs = nlattr.parse(body[NFGENMSG.size:], nft.RULE_POLICY)
            if dump:
                tname = attrs.get(nft.NFTA_RULE_TABLE)
                cname = attrs.get(nft.NFTA_RULE_CHAIN)
                out = []
                for x in st.by_family(family):
                    if tname is not None and x.name != string(tname):
                        continue
                    for c in x.chains:
                        if cname is not None and c.name != string(cname):
                            continue
                        out += [self._rule_info(c, r) for r in c.rules]
                self._dump(sock, seq, NFT_MSG_NEWRULE, out)
                return True
            table = st.table(attrs.get(nft.NFTA_RULE_TABLE), family, 0)
            chain = chain_by_name(table, attrs.get(nft.NFTA_RULE_CHAIN))
            if nft.NFTA_RULE_HANDLE not in attrs:
                raise SyscallError(Errno.EINVAL)
            rule = rule_by_handle(chain, attrs[nft.NFTA_RULE_HANDLE])
            self._reply(sock, seq, NFT_MSG_NEWRULE, self._rule_info(chain, rule))
            return False
        if msg == NFT_MSG_GETSET:
            attrs = nlattr.parse(body[NFGENMSG.size:], nft_sets.SET_POLICY_ATTRS)
            if dump:
                tname = attrs.get(nft_sets.SET_TABLE)
                self._dump(sock, seq, NFT_MSG_NEWSET,
                           [self._genmsg(x.family) + nft_sets.set_info(s)
                            for x in st.by_family(family)
                            if tname is None or x.name == string(tname) for s in x.sets])
                return True
            table = st.table(attrs.get(nft_sets.SET_TABLE), family, 0)
            s = nft_sets.find(table, attrs.get(nft_sets.SET_NAME))
            self._reply(sock, seq, NFT_MSG_NEWSET, self._genmsg(family) + nft_sets.set_info(s))
            return False
        if msg == NFT_MSG_GETSETELEM:
            attrs = nlattr.parse(body[NFGENMSG.size:], nft_sets.LIST_POLICY)
            table = st.table(attrs.get(nft_sets.LIST_TABLE), family, 0)
            s = nft_sets.find(table, attrs.get(nft_sets.LIST_SET))
            if not dump:
                raise SyscallError(Errno.EOPNOTSUPP)   # single elements: TODO(#10)
            self._dump(sock, seq, NFT_MSG_NEWSETELEM,
                       [self._genmsg(family) + b for b in nft_sets.elements_info(s)])
            return True
        # Objects and flowtables are not modelled: none exist to read.
        if dump:
            self._dump(sock, seq, msg, [])
            return True
        raise SyscallError(Errno.ENOENT)

    def _reply(self, sock: NetlinkSocket, seq: int, msg: int, body: bytes) -> None:
        sock._queue([nlmsg(_mtype(msg), 0, seq, sock.portid, body)])

    def _dump(self, sock: NetlinkSocket, seq: int, msg: int, bodies: list[bytes]) -> None:
        sock.dump_msgs(seq, [nlmsg(_mtype(msg), NLM_F_MULTI, seq, sock.portid, b)
                             for b in bodies])

    def _genmsg(self, family: int) -> bytes:
        return NFGENMSG.pack(family, NFNETLINK_V0, self.state.genid & 0xFFFF)

    def _table_info(self, t: Table) -> bytes:
        """nf_tables_fill_table_info."""
        b = self._genmsg(t.family) + nlattr.attr_str(nft.NFTA_TABLE_NAME, t.name)
        b += nlattr.attr_be32(nft.NFTA_TABLE_USE, t.use)
        b += nlattr.attr_be64(nft.NFTA_TABLE_HANDLE, t.handle)
        b += nlattr.attr_be32(nft.NFTA_TABLE_FLAGS, t.flags)
        if t.flags & nft.NFT_TABLE_F_OWNER:
            b += nlattr.attr_be32(nft.NFTA_TABLE_OWNER, t.owner)
        if t.udata is not None:
            b += nlattr.attr(nft.NFTA_TABLE_USERDATA, t.udata)
        return b

    def _chain_info(self, c: Chain) -> bytes:
        """nf_tables_fill_chain_info."""
        b = self._genmsg(c.table.family) + nlattr.attr_str(nft.NFTA_CHAIN_TABLE, c.table.name)
        b += nlattr.attr_str(nft.NFTA_CHAIN_NAME, c.name)
        b += nlattr.attr_be64(nft.NFTA_CHAIN_HANDLE, c.handle)
        if c.hook is not None:
            hook = nlattr.attr_be32(nft.NFTA_HOOK_HOOKNUM, c.hook.num)
            hook += nlattr.attr_be32(nft.NFTA_HOOK_PRIORITY, c.hook.priority)
            b += nlattr.attr(nft.NFTA_CHAIN_HOOK, hook)
            b += nlattr.attr_be32(nft.NFTA_CHAIN_POLICY, c.policy)
            b += nlattr.attr_str(nft.NFTA_CHAIN_TYPE, c.hook.ctype)
            if c.counters is not None:
                cnt = nlattr.attr_be64(nft.NFTA_COUNTER_PACKETS, c.counters[0])
                cnt += nlattr.attr_be64(nft.NFTA_COUNTER_BYTES, c.counters[1])
                b += nlattr.attr(nft.NFTA_CHAIN_COUNTERS, cnt)
        if c.flags:
            b += nlattr.attr_be32(nft.NFTA_CHAIN_FLAGS, c.flags)
        b += nlattr.attr_be32(nft.NFTA_CHAIN_USE, c.use)
        if c.udata is not None:
            b += nlattr.attr(nft.NFTA_CHAIN_USERDATA, c.udata)
        return b

    def _rule_info(self, c: Chain, r: Rule) -> bytes:
        """nf_tables_fill_rule_info."""
        b = self._genmsg(c.table.family) + nlattr.attr_str(nft.NFTA_RULE_TABLE, c.table.name)
        b += nlattr.attr_str(nft.NFTA_RULE_CHAIN, c.name)
        b += nlattr.attr_be64(nft.NFTA_RULE_HANDLE, r.handle)
        at = c.rules.index(r)
        if at:                                        # the handle of the rule before it
            b += nlattr.attr_be64(nft.NFTA_RULE_POSITION, c.rules[at - 1].handle)
        b += nlattr.attr(nft.NFTA_RULE_EXPRESSIONS,
                         b"".join(nlattr.attr(nft.NFTA_LIST_ELEM, e) for e in r.exprs))
        if r.udata is not None:
            b += nlattr.attr(nft.NFTA_RULE_USERDATA, r.udata)
        return b

    # -- batches -------------------------------------------------------------------------

    def _batch(self, sock: NetlinkSocket, msgs: list[tuple[int, int, int, int, bytes, bytes]]
               ) -> None:
        """nfnetlink_rcv_skb_batch + nfnetlink_rcv_batch."""
        begin = msgs[0]
        bbody = begin[4]
        if len(bbody) < NFGENMSG.size:
            return
        try:
            battrs = nlattr.parse(bbody[NFGENMSG.size:], {NFNL_BATCH_GENID: (nlattr.Kind.U32, 0)})
        except SyscallError as e:
            sock._queue([sock.ack_msg(begin[5], e.errno)])
            return
        res_id = NFGENMSG.unpack_from(bbody)[2]
        if bbody[2:4] == bytes([NFNL_SUBSYS_NFTABLES, 0]):
            res_id = NFNL_SUBSYS_NFTABLES          # old nft sent it in host order
        if res_id >= NFNL_SUBSYS_COUNT:
            sock._queue([sock.ack_msg(begin[5], Errno.EINVAL)])
            return
        if res_id != NFNL_SUBSYS_NFTABLES:
            sock._queue([sock.ack_msg(begin[5], Errno.EOPNOTSUPP)])
            return
        if NFNL_BATCH_GENID in battrs and be32(battrs[NFNL_BATCH_GENID]) != self.state.genid:
            sock._queue([sock.ack_msg(begin[5], Errno.ERESTART)])
            return
        # A batch whose ruleset fails validation at commit is run again with each rule
        # validated as it is added, so the error names the rule (nf_tables_commit's
        # -EAGAIN and nfnetlink's replay).
        replies = self._run(sock, msgs, res_id, validate_now=False)
        if replies is None:
            replies = self._run(sock, msgs, res_id, validate_now=True)
        assert replies is not None
        sock._queue(replies)

    def _run(self, sock: NetlinkSocket, msgs: list[tuple[int, int, int, int, bytes, bytes]],
             res_id: int, validate_now: bool) -> list[bytes] | None:
        """One pass over a batch: its replies, or None when it must be replayed."""
        begin = msgs[0]
        replies: list[bytes] = []
        if begin[1] & NLM_F_ACK:
            replies.append(sock.ack_msg(begin[5], 0))
        batch = Batch(self.state, validate_now)
        failed = False
        for mtype, flags, _seq, _pid, body, whole in msgs[1:]:
            if len(body) < NFGENMSG.size:
                return []                          # malformed: the whole batch is dropped
            err = 0
            if not flags & NLM_F_REQUEST:
                err = Errno.EINVAL
            elif mtype == NFNL_MSG_BATCH_BEGIN:
                return []
            elif mtype == NFNL_MSG_BATCH_END:
                if failed:
                    break
                if not validate_now:
                    try:
                        for check in batch.deferred:
                            check()
                    except SyscallError:
                        return None
                if batch.state.size() > nft.MAX_OBJECTS:
                    # Bounded like everything the Sentry holds for the sandbox.
                    replies.append(sock.ack_msg(whole, Errno.ENOMEM))
                    break
                if batch.state.unbound_chains():
                    # An anonymous chain no rule jumps to (nf_tables_commit refuses).
                    replies.append(sock.ack_msg(whole, Errno.EINVAL))
                    break
                self._commit(batch)
                if flags & NLM_F_ACK:
                    replies.append(sock.ack_msg(whole, 0))
                break
            elif mtype < NLMSG_MIN_TYPE or mtype >> 8 != res_id:
                err = Errno.EINVAL
            elif mtype & 0xFF not in BATCH_TYPES:
                err = Errno.EINVAL
            else:
                try:
                    self._change(batch, sock.portid, mtype & 0xFF, flags, body)
                except SyscallError as e:
                    err = e.errno
            if flags & NLM_F_ACK or err:
                replies.append(sock.ack_msg(whole, err))
                if err:
                    failed = True
        return replies                             # without END the copy is dropped

    def _commit(self, batch: Batch) -> None:
        batch.state.genid += 1
        if self.net is not None:
            self.net.nftables = batch.state
        else:
            self.own = batch.state

    def _change(self, batch: Batch, portid: int, msg: int, flags: int, body: bytes) -> None:
        family = body[0]
        data = body[NFGENMSG.size:]
        st = batch.state
        if msg == NFT_MSG_NEWTABLE:
            self._new_table(st, portid, family, flags, nlattr.parse(data, nft.TABLE_POLICY))
        elif msg in (NFT_MSG_DELTABLE, NFT_MSG_DESTROYTABLE):
            self._del_table(st, portid, family, flags, msg,
                            nlattr.parse(data, nft.TABLE_POLICY))
        elif msg == NFT_MSG_NEWCHAIN:
            self._new_chain(batch, portid, family, flags, nlattr.parse(data, nft.CHAIN_POLICY))
        elif msg in (NFT_MSG_DELCHAIN, NFT_MSG_DESTROYCHAIN):
            self._del_chain(st, portid, family, flags, msg,
                            nlattr.parse(data, nft.CHAIN_POLICY))
        elif msg == NFT_MSG_NEWRULE:
            self._new_rule(batch, portid, family, flags, nlattr.parse(data, nft.RULE_POLICY))
        elif msg in (NFT_MSG_DELRULE, NFT_MSG_DESTROYRULE):
            self._del_rule(st, portid, family, msg, nlattr.parse(data, nft.RULE_POLICY))
        elif msg == NFT_MSG_NEWSET:
            attrs = nlattr.parse(data, nft_sets.SET_POLICY_ATTRS)
            table = st.table(attrs.get(nft_sets.SET_TABLE), family, portid)
            nft_sets.new_set(table, attrs, flags, batch.set_ids)
        elif msg in (NFT_MSG_DELSET, NFT_MSG_DESTROYSET):
            attrs = nlattr.parse(data, nft_sets.SET_POLICY_ATTRS)
            table = st.table(attrs.get(nft_sets.SET_TABLE), family, portid)
            nft_sets.del_set(table, attrs, flags, msg == NFT_MSG_DESTROYSET)
        elif msg in (NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM, NFT_MSG_DESTROYSETELEM):
            attrs = nlattr.parse(data, nft_sets.LIST_POLICY)
            table = st.table(attrs.get(nft_sets.LIST_TABLE), family, portid)
            try:
                s = nft_sets.find(table, attrs.get(nft_sets.LIST_SET))
            except SyscallError:
                found = batch.set_ids.get((table, be32(attrs[nft_sets.LIST_SET_ID]))) \
                    if nft_sets.LIST_SET_ID in attrs else None
                if found is None:
                    raise
                s = found
            if msg == NFT_MSG_NEWSETELEM:
                if nft_sets.LIST_ELEMENTS not in attrs:
                    raise SyscallError(Errno.EINVAL)
                nft_sets.add_elements(s, attrs[nft_sets.LIST_ELEMENTS], flags)
            else:
                nft_sets.del_elements(s, attrs.get(nft_sets.LIST_ELEMENTS),
                                      msg == NFT_MSG_DESTROYSETELEM)
        else:
            # Objects and flowtables: not modelled yet (TODO(#10)).
            raise SyscallError(Errno.EOPNOTSUPP)

    # -- tables: nf_tables_newtable, nf_tables_updtable, nf_tables_deltable ----------------

    def _new_table(self, st: NFTables, portid: int, family: int, flags: int,
                   attrs: dict[int, bytes]) -> None:
        if family not in nft.FAMILIES:
            raise SyscallError(Errno.EOPNOTSUPP)
        try:
            table: Table | None = st.table(attrs.get(nft.NFTA_TABLE_NAME), family, portid)
        except SyscallError as e:
            if e.errno != Errno.ENOENT:
                raise
            table = None
        tflags = be32(attrs[nft.NFTA_TABLE_FLAGS]) if nft.NFTA_TABLE_FLAGS in attrs else 0
        if table is not None:
            if flags & NLM_F_EXCL:
                raise SyscallError(Errno.EEXIST)
            if flags & NLM_F_REPLACE:
                raise SyscallError(Errno.EOPNOTSUPP)
            if nft.NFTA_TABLE_FLAGS not in attrs:
                return
            if tflags & ~nft.NFT_TABLE_F_MASK:
                raise SyscallError(Errno.EOPNOTSUPP)
            if tflags == table.flags:
                return
            if (table.flags & nft.NFT_TABLE_F_OWNER and not tflags & nft.NFT_TABLE_F_OWNER) \
                    or (tflags & nft.NFT_TABLE_F_OWNER and not table.flags &
                        nft.NFT_TABLE_F_OWNER):
                raise SyscallError(Errno.EOPNOTSUPP)
            if (tflags ^ table.flags) & nft.NFT_TABLE_F_PERSIST:
                raise SyscallError(Errno.EOPNOTSUPP)
            table.flags = tflags
            return
        if tflags & ~nft.NFT_TABLE_F_MASK:
            raise SyscallError(Errno.EOPNOTSUPP)
        st.new_table(family, string(attrs[nft.NFTA_TABLE_NAME]), tflags,
                     attrs.get(nft.NFTA_TABLE_USERDATA), portid)

    def _del_table(self, st: NFTables, portid: int, family: int, flags: int, msg: int,
                   attrs: dict[int, bytes]) -> None:
        if family == NFPROTO_UNSPEC or (nft.NFTA_TABLE_NAME not in attrs and
                                        nft.NFTA_TABLE_HANDLE not in attrs):
            st.flush(family, attrs.get(nft.NFTA_TABLE_NAME), portid)
            return
        try:
            if nft.NFTA_TABLE_HANDLE in attrs:
                table = st.table_by_handle(attrs[nft.NFTA_TABLE_HANDLE], family, portid)
            else:
                table = st.table(attrs.get(nft.NFTA_TABLE_NAME), family, portid)
        except SyscallError as e:
            if e.errno == Errno.ENOENT and msg == NFT_MSG_DESTROYTABLE:
                return
            raise
        if flags & NLM_F_NONREC and table.use > 0:
            raise SyscallError(Errno.EBUSY)
        st.delete_table(table)

    # -- chains: nf_tables_newchain, nf_tables_addchain, nf_tables_updchain ----------------

    def _new_chain(self, batch: Batch, portid: int, family: int, flags: int,
                   attrs: dict[int, bytes]) -> None:
        st = batch.state
        table = st.table(attrs.get(nft.NFTA_CHAIN_TABLE), family, portid)
        chain: Chain | None = None
        if nft.NFTA_CHAIN_HANDLE in attrs:
            chain = chain_by_handle(table, attrs[nft.NFTA_CHAIN_HANDLE])
        elif nft.NFTA_CHAIN_NAME in attrs:
            try:
                chain = chain_by_name(table, attrs[nft.NFTA_CHAIN_NAME])
            except SyscallError as e:
                if e.errno != Errno.ENOENT:
                    raise
        elif nft.NFTA_CHAIN_ID not in attrs:
            raise SyscallError(Errno.EINVAL)
        policy = nft.NF_ACCEPT
        if nft.NFTA_CHAIN_POLICY in attrs:
            if chain is not None and chain.hook is None:
                raise SyscallError(Errno.EOPNOTSUPP)
            if chain is None and nft.NFTA_CHAIN_HOOK not in attrs:
                raise SyscallError(Errno.EOPNOTSUPP)
            policy = be32(attrs[nft.NFTA_CHAIN_POLICY]) & 0xFF      # a u8 in Linux
            if policy not in (nft.NF_DROP, nft.NF_ACCEPT):
                raise SyscallError(Errno.EINVAL)
        if nft.NFTA_CHAIN_FLAGS in attrs:
            cflags = be32(attrs[nft.NFTA_CHAIN_FLAGS])
        else:
            cflags = chain.flags if chain is not None else 0
        if cflags & ~nft.NFT_CHAIN_FLAGS:
            raise SyscallError(Errno.EOPNOTSUPP)
        if chain is not None:
            if chain.flags & nft.NFT_CHAIN_BINDING:
                raise SyscallError(Errno.EINVAL)
            if flags & NLM_F_EXCL:
                raise SyscallError(Errno.EEXIST)
            if flags & NLM_F_REPLACE:
                raise SyscallError(Errno.EOPNOTSUPP)
            if nft.NFTA_CHAIN_HOOK in attrs:
                # A hook or priority that differs is refused before the update's checks.
                if chain.hook is None:
                    raise SyscallError(Errno.EEXIST)
                hook = nft.parse_hook(family, attrs)
                if hook.num != chain.hook.num or hook.priority != chain.hook.priority:
                    raise SyscallError(Errno.EOPNOTSUPP)
            cflags |= chain.flags & nft.NFT_CHAIN_BASE
            self._update_chain(table, chain, family, policy, cflags, attrs)
            return
        self._add_chain(batch, table, family, policy, cflags, attrs)

    def _add_chain(self, batch: Batch, table: Table, family: int, policy: int, cflags: int,
                   attrs: dict[int, bytes]) -> None:
        hook = None
        counters = None
        if nft.NFTA_CHAIN_HOOK in attrs:
            if cflags & nft.NFT_CHAIN_BINDING:
                raise SyscallError(Errno.EOPNOTSUPP)
            hook = nft.parse_hook(family, attrs)
            if cflags & nft.NFT_CHAIN_HW_OFFLOAD:
                raise SyscallError(Errno.EOPNOTSUPP)      # no device offloads here
            cflags |= nft.NFT_CHAIN_BASE
            if nft.NFTA_CHAIN_COUNTERS in attrs:
                counters = nft.parse_counters(attrs[nft.NFTA_CHAIN_COUNTERS])
        else:
            if cflags & nft.NFT_CHAIN_BASE:
                raise SyscallError(Errno.EINVAL)
            if cflags & nft.NFT_CHAIN_HW_OFFLOAD:
                raise SyscallError(Errno.EOPNOTSUPP)
        handle = table.alloc_handle()                # taken even if the chain fails
        if nft.NFTA_CHAIN_NAME in attrs:
            name = string(attrs[nft.NFTA_CHAIN_NAME])
        else:
            if not cflags & nft.NFT_CHAIN_BINDING:
                raise SyscallError(Errno.EINVAL)
            name = b"__chain%d" % batch.state.anon_chains.next()
        if any(c.name == name for c in table.chains):
            raise SyscallError(Errno.EEXIST)
        chain = Chain(table, name, handle, cflags, hook, policy, counters,
                      attrs.get(nft.NFTA_CHAIN_USERDATA))
        table.chains.append(chain)
        if nft.NFTA_CHAIN_ID in attrs:
            batch.chain_ids[(table, be32(attrs[nft.NFTA_CHAIN_ID]))] = chain

    def _update_chain(self, table: Table, chain: Chain, family: int, policy: int, cflags: int,
                      attrs: dict[int, bytes]) -> None:
        if chain.flags ^ cflags:
            raise SyscallError(Errno.EOPNOTSUPP)
        if nft.NFTA_CHAIN_HOOK in attrs:
            if chain.hook is None:
                raise SyscallError(Errno.EEXIST)
            hook = nft.parse_hook(family, attrs)
            if hook.ctype != chain.hook.ctype or hook.num != chain.hook.num or \
                    hook.priority != chain.hook.priority:
                raise SyscallError(Errno.EEXIST)
        if nft.NFTA_CHAIN_HANDLE in attrs and nft.NFTA_CHAIN_NAME in attrs:
            new = string(attrs[nft.NFTA_CHAIN_NAME])
            if any(c.name == new for c in table.chains):
                raise SyscallError(Errno.EEXIST)
        counters = None
        if nft.NFTA_CHAIN_COUNTERS in attrs:
            if chain.hook is None:
                raise SyscallError(Errno.EOPNOTSUPP)
            counters = nft.parse_counters(attrs[nft.NFTA_CHAIN_COUNTERS])
        # Checked; now change.
        if nft.NFTA_CHAIN_HANDLE in attrs and nft.NFTA_CHAIN_NAME in attrs:
            chain.name = string(attrs[nft.NFTA_CHAIN_NAME])
        if counters is not None:
            chain.counters = counters
        if nft.NFTA_CHAIN_POLICY in attrs:
            chain.policy = policy

    def _del_chain(self, st: NFTables, portid: int, family: int, flags: int, msg: int,
                   attrs: dict[int, bytes]) -> None:
        """nf_tables_delchain."""
        table = st.table(attrs.get(nft.NFTA_CHAIN_TABLE), family, portid)
        try:
            if nft.NFTA_CHAIN_HANDLE in attrs:
                chain = chain_by_handle(table, attrs[nft.NFTA_CHAIN_HANDLE])
            else:
                chain = chain_by_name(table, attrs.get(nft.NFTA_CHAIN_NAME))
        except SyscallError as e:
            if e.errno == Errno.ENOENT and msg == NFT_MSG_DESTROYCHAIN:
                return
            raise
        if chain.flags & nft.NFT_CHAIN_BINDING:
            raise SyscallError(Errno.EOPNOTSUPP)
        if nft.NFTA_CHAIN_HOOK in attrs and (msg == NFT_MSG_DESTROYCHAIN or
                                             chain.flags & nft.NFT_CHAIN_HW_OFFLOAD):
            raise SyscallError(Errno.EOPNOTSUPP)
        if flags & NLM_F_NONREC and chain.use > 0:
            raise SyscallError(Errno.EBUSY)
        # Its own rules go with it; references from elsewhere keep it.
        if chain.use - len(chain.rules) > 0:
            raise SyscallError(Errno.EBUSY)
        for r in list(chain.rules):
            st.delete_rule(chain, r)
        table.chains.remove(chain)

    # -- rules: nf_tables_newrule, nf_tables_delrule ---------------------------------------

    def _new_rule(self, batch: Batch, portid: int, family: int, flags: int,
                  attrs: dict[int, bytes]) -> None:
        st = batch.state
        table = st.table(attrs.get(nft.NFTA_RULE_TABLE), family, portid)
        if nft.NFTA_RULE_CHAIN in attrs:
            chain = chain_by_name(table, attrs[nft.NFTA_RULE_CHAIN])
        elif nft.NFTA_RULE_CHAIN_ID in attrs:
            found = batch.chain_ids.get((table, be32(attrs[nft.NFTA_RULE_CHAIN_ID])))
            if found is None:
                raise SyscallError(Errno.ENOENT)
            chain = found
        else:
            raise SyscallError(Errno.EINVAL)
        if chain.bound:
            raise SyscallError(Errno.EOPNOTSUPP)
        old: Rule | None = None
        if nft.NFTA_RULE_HANDLE in attrs:
            old = rule_by_handle(chain, attrs[nft.NFTA_RULE_HANDLE])
            if flags & NLM_F_EXCL:
                raise SyscallError(Errno.EEXIST)
            if not flags & NLM_F_REPLACE:
                raise SyscallError(Errno.EOPNOTSUPP)
            handle = old.handle
        else:
            if not flags & NLM_F_CREATE or flags & NLM_F_REPLACE:
                raise SyscallError(Errno.EINVAL)
            handle = table.alloc_handle()            # taken even if the rule fails
            if nft.NFTA_RULE_POSITION in attrs:
                old = rule_by_handle(chain, attrs[nft.NFTA_RULE_POSITION])
            elif nft.NFTA_RULE_POSITION_ID in attrs:
                raise SyscallError(Errno.ENOENT)        # rule ids of a batch: not kept
        elems = []
        if nft.NFTA_RULE_EXPRESSIONS in attrs:
            for atype, payload in nlattr.split(attrs[nft.NFTA_RULE_EXPRESSIONS]):
                if atype != nft.NFTA_LIST_ELEM or len(elems) == nft.NFT_RULE_MAXEXPRS:
                    raise SyscallError(Errno.EINVAL)
                elems.append(payload)
        ctx = ExprContext(table, chain, batch.chain_ids, batch.set_ids,
                          compat=attrs.get(nft.NFTA_RULE_COMPAT))
        exprs = []
        try:
            for e in elems:
                exprs.append(nft.parse_expr(ctx, e))
            if batch.validate_now:
                for check in ctx.validations:
                    check()
        except SyscallError:
            for target in ctx.targets:
                target.use -= 1
                target.bound = False
            for used in ctx.sets:
                used.use -= 1
            raise
        udata = attrs.get(nft.NFTA_RULE_USERDATA) or None
        rule = Rule(handle, exprs, udata, ctx.targets, ctx.sets)
        batch.deferred.extend(ctx.validations)
        if flags & NLM_F_REPLACE and old is not None:
            at = chain.rules.index(old)
            st.delete_rule(chain, old)
            chain.rules.insert(at, rule)
        elif flags & NLM_F_APPEND:
            if old is not None:
                chain.rules.insert(chain.rules.index(old) + 1, rule)
            else:
                chain.rules.append(rule)
        else:
            chain.rules.insert(chain.rules.index(old) if old is not None else 0, rule)
        chain.use += 1

    def _del_rule(self, st: NFTables, portid: int, family: int, msg: int,
                  attrs: dict[int, bytes]) -> None:
        table = st.table(attrs.get(nft.NFTA_RULE_TABLE), family, portid)
        if nft.NFTA_RULE_CHAIN not in attrs:
            for c in table.chains:
                if not c.flags & nft.NFT_CHAIN_BINDING:
                    for r in list(c.rules):
                        st.delete_rule(c, r)
            return
        try:
            chain = chain_by_name(table, attrs[nft.NFTA_RULE_CHAIN])
            if chain.flags & nft.NFT_CHAIN_BINDING:
                raise SyscallError(Errno.EOPNOTSUPP)
            if nft.NFTA_RULE_HANDLE in attrs:
                st.delete_rule(chain, rule_by_handle(chain, attrs[nft.NFTA_RULE_HANDLE]))
            elif nft.NFTA_RULE_ID in attrs:
                raise SyscallError(Errno.ENOENT)        # rule ids of a batch: not kept
            else:
                for r in list(chain.rules):
                    st.delete_rule(chain, r)
        except SyscallError as e:
            if e.errno == Errno.ENOENT and msg == NFT_MSG_DESTROYRULE:
                return
            raise
