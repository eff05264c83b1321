"""netstack's segment-level TCP against the host's Linux TCP: tests/sentry/tcpseg_tun.py
runs in a network namespace of its own (unshare; nothing outside it changes: the TUN
device and its 10.77.0.0/24 addresses vanish with the namespace) and moves MiBs each
way between our stack and Linux sockets, both as the listener and as the client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "tcpseg_tun.py")


def _unshare() -> list[str]:
    """`unshare -rn` (a user namespace gives CAP_NET_ADMIN over the new network namespace),
    or plain `unshare -n` when we are root and user namespaces are off."""
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    if probe.returncode == 0:
        return ["unshare", "-rn"]
    return ["unshare", "-n"]


@pytest.mark.parametrize("mib,loss", [("8", "0"), ("4", "0.02")])
def test_interop_with_linux_tcp_over_tun(mib: str, loss: str) -> None:
    """Without loss, and with 2% of packets dropped each way at the TUN (both TCPs then
    retransmit, SACK each other's holes and back off)."""
    r = subprocess.run(_unshare() + [sys.executable, SCRIPT, mib, loss], capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["linux_to_ours_ok"], out       # what Linux sent arrived intact at our socket
    assert out["client"] == "client-ok", out  # what we sent arrived intact at Linux's
    assert out["ours_client_ok"], out         # active open from our stack to a Linux server
    assert out["ours_client_mss"] == 1448     # MSS 1460 from Linux, less timestamps
    if loss != "0":
        assert out["dropped"] > 0 and out["ours_retrans_total"] > 0, out
