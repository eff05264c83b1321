"""/proc/net files of netstack.  Linux: net/ipv4/tcp_ipv4.c (tcp4_seq_show),
net/ipv6/tcp_ipv6.c, net/ipv4/udp.c, net/core/net-procfs.c (dev), net/ipv6/addrconf.c
(if_inet6), net/ipv4/fib_trie.c (route), net/ipv4/proc.c (snmp, netstat: every field
Linux prints, the ones the stack counts filled in, the others 0).

Rendered from the stack's port tables and interfaces on each open, in Linux's
column layout, so netstat/ss-style readers parse them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.inet import TCP_CLOSE, TCP_ESTABLISHED, TCP_TIME_WAIT

if TYPE_CHECKING:
    from pyvisor.sentry.socket import InetStack
    from pyvisor.sentry.socket.netstack import Stack

TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
              "   uid  timeout inode                                                     \n")
TCP6_HEADER = ("  sl  local_address                         remote_address                   "
               "     st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
UDP_HEADER = ("   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
              "   uid  timeout inode ref pointer drops             \n")
UDP6_HEADER = ("  sl  local_address                         remote_address                   "
               "     st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer"
               " drops\n")
DEV_HEADER = ("Inter-|   Receive                                                |  Transmit\n"
              " face |bytes    packets errs drop fifo frame compressed multicast|bytes    "
              "packets errs drop fifo colls carrier compressed\n")
ROUTE_HEADER = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow"
                "\tIRTT                                                       \n")


def _hex_addr(ip: bytes) -> str:
    """An address as Linux prints it: each 32-bit word in host (little-endian) order."""
    return "".join(f"{int.from_bytes(ip[i:i + 4], 'little'):08X}" for i in range(0, len(ip), 4))


def _v6(ip: bytes) -> bytes:
    return ip if len(ip) == 16 else b"\0" * 10 + b"\xff\xff" + ip


def _entries(table: Any, v6: bool) -> list[Any]:
    out = []
    for b in table:
        fam6 = getattr(b, "family", 2) == 10
        if fam6 == v6:
            out.append(b)
    return out


def _row(i: int, b: Any, v6: bool, state: int, rxq: int, width: int) -> str:
    conv = (lambda ip: _hex_addr(_v6(ip))) if v6 else (lambda ip: _hex_addr(ip[-4:]))
    return (f"{i:{width}d}: {conv(b.laddr)}:{b.lport:04X} {conv(b.raddr)}:{b.rport:04X} "
            f"{state:02X} {0:08X}:{rxq:08X} 00:00000000 00000000 {b.owner_uid:5d}        0 "
            f"{getattr(b, 'ino', 0)} 1 0000000000000000")


SNMP_FIELDS = {
    "Ip": ("Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams "
           "InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes "
           "ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates "
           "OutTransmits"),
    "Icmp": ("InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs "
             "InSrcQuenchs InRedirects InEchos InEchoReps InTimestamps InTimestampReps "
             "InAddrMasks InAddrMaskReps OutMsgs OutErrors OutRateLimitGlobal OutRateLimitHost "
             "OutDestUnreachs OutTimeExcds OutParmProbs OutSrcQuenchs OutRedirects OutEchos "
             "OutEchoReps OutTimestamps OutTimestampReps OutAddrMasks OutAddrMaskReps"),
    "Tcp": ("RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails "
            "EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors"),
    "Udp": ("InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors "
            "IgnoredMulti MemErrors"),
    "UdpLite": ("InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors "
                "InCsumErrors IgnoredMulti MemErrors"),
}
NETSTAT_FIELDS = {
    "TcpExt": ("SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled "
               "RcvPruned OfoPruned OutOfWindowIcmps LockDroppedIcmps ArpFilter TW TWRecycled "
               "TWKilled PAWSActive PAWSEstab BeyondWindow TSEcrRejected PAWSOldAck "
               "PAWSTimewait DelayedACKs DelayedACKLocked DelayedACKLost ListenOverflows "
               "ListenDrops TCPHPHits TCPPureAcks TCPHPAcks TCPRenoRecovery TCPSackRecovery "
               "TCPSACKReneging TCPSACKReorder TCPRenoReorder TCPTSReorder TCPFullUndo "
               "TCPPartialUndo TCPDSACKUndo TCPLossUndo TCPLostRetransmit TCPRenoFailures "
               "TCPSackFailures TCPLossFailures TCPFastRetrans TCPSlowStartRetrans TCPTimeouts "
               "TCPLossProbes TCPLossProbeRecovery TCPRenoRecoveryFail TCPSackRecoveryFail "
               "TCPRcvCollapsed TCPBacklogCoalesce TCPDSACKOldSent TCPDSACKOfoSent "
               "TCPDSACKRecv TCPDSACKOfoRecv TCPAbortOnData TCPAbortOnClose TCPAbortOnMemory "
               "TCPAbortOnTimeout TCPAbortOnLinger TCPAbortFailed TCPMemoryPressures "
               "TCPMemoryPressuresChrono TCPSACKDiscard TCPDSACKIgnoredOld "
               "TCPDSACKIgnoredNoUndo TCPSpuriousRTOs TCPMD5NotFound TCPMD5Unexpected "
               "TCPMD5Failure TCPSackShifted TCPSackMerged TCPSackShiftFallback "
               "TCPBacklogDrop PFMemallocDrop TCPMinTTLDrop TCPDeferAcceptDrop "
               "IPReversePathFilter TCPTimeWaitOverflow TCPReqQFullDoCookies TCPReqQFullDrop "
               "TCPRetransFail TCPRcvCoalesce TCPOFOQueue TCPOFODrop TCPOFOMerge "
               "TCPChallengeACK TCPSYNChallenge TCPFastOpenActive TCPFastOpenActiveFail "
               "TCPFastOpenPassive TCPFastOpenPassiveFail TCPFastOpenListenOverflow "
               "TCPFastOpenCookieReqd TCPFastOpenBlackhole TCPSpuriousRtxHostQueues "
               "BusyPollRxPackets TCPAutoCorking TCPFromZeroWindowAdv TCPToZeroWindowAdv "
               "TCPWantZeroWindowAdv TCPSynRetrans TCPOrigDataSent TCPHystartTrainDetect "
               "TCPHystartTrainCwnd TCPHystartDelayDetect TCPHystartDelayCwnd "
               "TCPACKSkippedSynRecv TCPACKSkippedPAWS TCPACKSkippedSeq TCPACKSkippedFinWait2 "
               "TCPACKSkippedTimeWait TCPACKSkippedChallenge TCPWinProbe TCPKeepAlive "
               "TCPMTUPFail TCPMTUPSuccess TCPDelivered TCPDeliveredCE TCPAckCompressed "
               "TCPZeroWindowDrop TCPRcvQDrop TCPWqueueTooBig TCPFastOpenPassiveAltKey "
               "TcpTimeoutRehash TcpDuplicateDataRehash TCPDSACKRecvSegs "
               "TCPDSACKIgnoredDubious TCPMigrateReqSuccess TCPMigrateReqFailure "
               "TCPPLBRehash"),
    "IpExt": ("InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts "
              "InOctets OutOctets InMcastOctets OutMcastOctets InBcastOctets OutBcastOctets "
              "InCsumErrors InNoECTPkts InECT1Pkts InECT0Pkts InCEPkts ReasmOverlaps"),
}


def _counter(obj: Any, name: str) -> int:
    v = getattr(obj, name, 0)
    return v if isinstance(v, int) else 0


def _snmp_values(stack: Stack) -> dict[str, dict[str, int]]:
    """The counters the stack keeps, by row and field; the rest read 0."""
    seg = stack.tcpseg
    estab = sum(1 for b in stack.tcp_ports if getattr(b, "tcp_state", 0) in (1, 8))
    ip = {"Forwarding": 2, "DefaultTTL": 64,                 # 2: not a router
          "InHdrErrors": stack.ip_in_hdr_errors, "InAddrErrors": stack.ip_in_addr_errors,
          "InUnknownProtos": stack.unknown_protos, "InDelivers": stack.ip_in_delivers,
          "OutRequests": stack.ip_out_requests, "OutNoRoutes": stack.ip_no_routes}
    icmp = {"InMsgs": stack.icmp_in, "InErrors": stack.icmp_in_errors,
            "OutMsgs": stack.icmp_out, "OutErrors": stack.icmp_out_errors}
    tcp = {"RtoAlgorithm": 1, "RtoMin": 200, "RtoMax": 120000, "MaxConn": -1,
           "ActiveOpens": stack.active_opens, "PassiveOpens": stack.passive_opens,
           "AttemptFails": stack.refused, "EstabResets": stack.resets, "CurrEstab": estab,
           "InSegs": _counter(seg, "in_segs"), "OutSegs": _counter(seg, "out_segs"),
           "RetransSegs": _counter(seg, "retrans_segs"), "InErrs": _counter(seg, "in_errs"),
           "OutRsts": stack.tcp_out_rsts + _counter(seg, "out_rsts"),
           "InCsumErrors": stack.tcp_in_csum_errors}
    udp = {"InDatagrams": stack.udp_in, "NoPorts": stack.udp_noport,
           "InErrors": stack.udp_in_errors, "OutDatagrams": stack.udp_out,
           "RcvbufErrors": stack.udp_rcvbuf_errors, "InCsumErrors": stack.udp_csum_errors}
    tcpext = {"SyncookiesSent": _counter(seg, "cookies_sent"),
              "SyncookiesRecv": _counter(seg, "cookies_recv"),
              "SyncookiesFailed": _counter(seg, "cookies_failed"), "TW": stack.time_waits,
              "ListenDrops": stack.syn_drops, "TCPAbortOnData": stack.aborts_on_data,
              "TCPAbortOnClose": stack.aborts_on_close,
              "TCPFastRetrans": _counter(seg, "fast_retrans"),
              "TCPTimeouts": _counter(seg, "timeouts"),
              "TCPSackRecovery": _counter(seg, "sack_recoveries"),
              "TCPRenoRecovery": _counter(seg, "reno_recoveries"),
              "TCPTimeWaitOverflow": stack.tw_overflows}
    return {"Ip": ip, "Icmp": icmp, "Tcp": tcp, "Udp": udp, "UdpLite": {}, "TcpExt": tcpext,
            "IpExt": {}}


def _rows(fields: dict[str, str], values: dict[str, dict[str, int]]) -> bytes:
    """Linux's layout: a line of names, then a line of values, per row."""
    out = []
    for row, names in fields.items():
        have = values.get(row, {})
        out.append(f"{row}: {names}\n")
        out.append(f"{row}: " + " ".join(str(have.get(n, 0)) for n in names.split()) + "\n")
    return "".join(out).encode()


def render(stack: Stack, name: str) -> bytes | None:
    if name == "snmp":
        return _rows(SNMP_FIELDS, _snmp_values(stack))
    if name == "netstat":
        return _rows(NETSTAT_FIELDS, _snmp_values(stack))
    if name in ("tcp", "tcp6"):
        v6 = name == "tcp6"
        rows = [TCP6_HEADER if v6 else TCP_HEADER]
        for i, b in enumerate(_entries(stack.tcp_ports, v6)):
            state = b.tcp_state
            if state == TCP_CLOSE:
                continue
            rows.append(_row(i, b, v6, state, getattr(b, "rcv_len", 0), 4)
                        + ("" if state == TCP_TIME_WAIT else " 100 0 0 10 0") + "\n")
        return "".join(rows).encode()
    if name in ("udp", "udp6"):
        v6 = name == "udp6"
        rows = [UDP6_HEADER if v6 else UDP_HEADER]
        for i, b in enumerate(_entries(stack.udp_ports, v6)):
            state = TCP_ESTABLISHED if b.rport else TCP_CLOSE
            rows.append(_row(i, b, v6, state, getattr(b, "rcv_mem", 0), 5 if not v6 else 4)
                        + f" 2 0000000000000000 {getattr(b, 'drops', 0)}\n")
        return "".join(rows).encode()
    return render_common(stack, name)


def render_common(stack: InetStack, name: str) -> bytes | None:
    """Files that only need the interfaces (also for hostinet's snapshot)."""
    if name == "dev":
        rows = [DEV_HEADER]
        for i in stack.interfaces():
            rows.append(f"{i.name.decode():>6s}:{i.rx_bytes:8d} {i.rx_packets:7d}    0    0    0"
                        f"     0          0         0 {i.tx_bytes:8d} {i.tx_packets:7d}    0"
                        f"    0    0     0       0          0\n")
        return "".join(rows).encode()
    if name == "if_inet6":
        rows = []
        for i in stack.interfaces():
            for ip, prefix in i.addrs6:
                scope = 0x10 if i.flags & 8 else (0x20 if ip[:2] == b"\xfe\x80" else 0)
                rows.append(f"{ip.hex()} {i.index:02x} {prefix:02x} {scope:02x} 80 "
                            f"{i.name.decode():>8s}\n")
        return "".join(rows).encode()
    if name == "route":
        rows = [ROUTE_HEADER]
        names = {i.index: i.name.decode() for i in stack.interfaces()}
        for r in stack.routes():
            if r.family != 2 or r.table != 254:
                continue                   # the main table only
            mask = ((0xFFFFFFFF << (32 - r.prefix)) & 0xFFFFFFFF).to_bytes(4, "big")
            gw = r.gateway or b"\0" * 4
            flags = 0x1 | (0x2 if r.gateway else 0)
            rows.append(f"{names.get(r.oif, '*')}\t{_hex_addr(r.dst)}\t{_hex_addr(gw)}\t"
                        f"{flags:04X}\t0\t0\t{r.metric}\t{_hex_addr(mask)}\t0\t0\t0"
                        "                                                                \n")
        return "".join(rows).encode()
    return None
