"""Hostile frames into a sandbox's eth0 (framefuzz.py, written by the peer side of the
veth): random bytes, truncated and bit-flipped frames, and ARP/IPv4/IPv6/NDP/UDP/TCP/ICMP
frames with wrong fields, fragments that overlap or never complete.  Every 1000 frames
the fuzzer waits until the sandbox answers a ping (so the frames were read, not dropped
by a full socket buffer).  The run fails if the Sentry logs an internal error, stops
answering, or the program inside does not finish normally afterwards.

PYVISOR_NIC_FUZZ_FRAMES sets the number of frames (default 5000, a few seconds;
the long run is 100000 or more), PYVISOR_NIC_FUZZ_SEED the seed (default: from the
clock, printed).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from netpair import Box, NetPair, finish
from pvtest import Builder

FRAMES = int(os.environ.get("PYVISOR_NIC_FUZZ_FRAMES", "5000"))


def test_frame_fuzz(netpair: NetPair, box: Box, program: Builder) -> None:
    seed = int(os.environ.get("PYVISOR_NIC_FUZZ_SEED", str(time.time_ns() % 10**9)))
    print(f"seed {seed}, {FRAMES} frames")
    peer_prog = program("net_peer")
    p = box.start(["/bin/sh", "-c", f"{peer_prog} echo 7777 1 && cat /proc/net/dev"],
                  netpair.box_path)
    try:
        # Until the sandbox has taken eth0 over (before that the box namespace's own kernel
        # would answer the pings) and answers.
        for _ in range(600):
            if "inet " not in netpair.box_addrs():
                break
            time.sleep(0.1)
        for _ in range(120):
            r = netpair.peer(["ping", "-c", "1", "-W", "1", netpair.box4])
            if r.returncode == 0:
                break
        else:
            raise AssertionError("the sandbox never answered a ping")
        fuzz = Path(__file__).with_name("framefuzz.py")
        r = netpair.peer([sys.executable, str(fuzz), netpair.peer_if, netpair.box_mac,
                          netpair.box4, netpair.box6, netpair.peer4, netpair.peer6, str(seed),
                          str(FRAMES)], timeout=60 + FRAMES / 50)
        assert r.returncode == 0, f"seed {seed}\n{r.output}"
        m = re.search(rf"sent {FRAMES} written (\d+) synced (\d+)", r.stdout)
        assert m, r.output
        written = int(m.group(1))
        # Still serving: UDP both ways, ping over IPv6 (neighbour cache intact).
        r = netpair.peer(["ping", "-c", "1", "-W", "5", netpair.box6])
        assert r.returncode == 0, f"seed {seed}\n{r.output}"
        r = netpair.peer([peer_prog, "ask", netpair.box4, "7777", "5"])
        assert r.returncode == 0 and "reply 5 ok" in r.stdout, f"seed {seed}\n{r.output}"
    finally:
        code, out = finish(p)
    log = box.log_text()
    assert code == 0 and "echoed 1 5" in out, f"seed {seed}\n{out}\n{log}"
    for bad in ("internal error", "Traceback", "sandbox failed"):
        assert bad not in log and bad not in out, f"seed {seed}\n{log}"
    # The frames reached the stack: the syncs keep the socket buffer from overflowing, but
    # a loaded machine may still drop a few, as any NIC may (seen: 30 in 190,000).
    rx = int(re.search(r"eth0:\s*\d+\s+(\d+)", out).group(1))
    print(f"{written} frames written, eth0 received {rx}")
    assert rx >= written * 0.999, out
