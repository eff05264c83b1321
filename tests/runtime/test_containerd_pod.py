"""containerd with pyvisor: a pod made with `ctr run --annotation`, as the CRI plugin makes
one (the pause container with `io.kubernetes.cri.container-type: sandbox`, the others with
`container` and the sandbox's id), under the runc v2 shim, which groups a pod's
containers in one shim by that id.  The containerd set-up is test_containerd.py's.
"""

from __future__ import annotations

import time
import uuid

import pytest

from test_containerd import IMAGE, NS, Ctr, ctr  # noqa: F401 - the fixture

pytestmark = pytest.mark.engines

TYPE, SANDBOX = "io.kubernetes.cri.container-type", "io.kubernetes.cri.sandbox-id"


def test_ctr_pod_members_share_loopback(ctr: Ctr) -> None:  # noqa: F811
    tag = uuid.uuid4().hex[:6]
    pod, srv, cli = f"pod-{tag}", f"srv-{tag}", f"cli-{tag}"

    def member(*args: str) -> list[str]:
        return ["--annotation", f"{TYPE}=container", "--annotation", f"{SANDBOX}={pod}", *args]
    try:
        r = ctr.run("--detach", "--null-io", "--annotation", f"{TYPE}=sandbox",
                    "--annotation", f"{SANDBOX}={pod}", IMAGE, pod, "sleep", "1000")
        assert r.returncode == 0, r.stderr
        r = ctr.run("--detach", "--null-io", *member(IMAGE, srv, "sh", "-c",
                                                     "echo hello | nc -l -p 9090"))
        assert r.returncode == 0, r.stderr
        # The member is in the pod's Sentry (its loopback), but sees only its own
        # processes: not the pause container's sleep, which is pid 1 there.
        r = ctr.run("--rm", *member(IMAGE, cli, "sh", "-c",
                                    "until nc 127.0.0.1 9090 </dev/null; do sleep 0.1; done; "
                                    "test -e /proc/1 || echo no-pid-1"))
        assert (r.returncode, r.stdout) == (0, "hello\nno-pid-1\n"), r.stderr
        state = ctr.runtime_root / NS / srv / "state.json"
        assert f'"sandbox": "{pod}"' in state.read_text()
        deadline = time.monotonic() + 30    # the server's nc exits once it has served
        while f"{srv}" not in _stopped(ctr) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert srv in _stopped(ctr)
        assert pod not in _stopped(ctr)       # the pod runs on
        r = ctr("task", "delete", srv)
        assert r.returncode == 0, r.stderr
        r = ctr("task", "exec", "--fifo-dir", str(ctr.base / "fifo"), "--exec-id", "e1", pod,
                "echo", "still")
        assert (r.returncode, r.stdout) == (0, "still\n"), r.stderr
    finally:
        for cid in (cli, srv, pod):
            ctr("task", "kill", "--signal", "SIGKILL", cid)
            ctr("task", "delete", "--force", cid)
            ctr("containers", "delete", cid)
    assert list((ctr.runtime_root / NS).iterdir()) == []


def _stopped(ctr: Ctr) -> list[str]:  # noqa: F811
    return [ln.split()[0] for ln in ctr("task", "list").stdout.splitlines()[1:]
            if "STOPPED" in ln]
