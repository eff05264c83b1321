"""process.terminal and exec --tty on the user's own terminal, as runc does them.

Without --console-socket, a foreground `run` of a bundle with process.terminal,
and `exec --tty`, give the container a pty of its own and copy between it and
the caller's terminal (runc's tty.go; pyvisor's runtime/console.py).  The test
is the user: it runs the runtime on a fresh pty (its controlling terminal),
types, reads the screen, resizes the window, and checks the exit status; the
same steps run against runc.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import termios
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from pvtest import REPO, pyvisor_env
from ttydriver import UserTerminal

APPLETS = ("sh", "echo", "sleep", "stty", "tty", "cat")


def bundle(base: Path, args: list[str], terminal: bool) -> Path:
    b = base / f"bundle-{uuid.uuid4().hex[:6]}"
    (b / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", b / "rootfs" / "bin" / "busybox")
    for name in APPLETS:
        (b / "rootfs" / "bin" / name).symlink_to("busybox")
    for d in ("proc", "dev", "tmp", "etc", "sys"):
        (b / "rootfs" / d).mkdir()
    (b / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2",
        "process": {"terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "tty",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "mode=755"]},
                   {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                    "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666"]}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts",
                                                        "network")]}}))
    os.chmod(base, 0o755)
    return b


class Runtime:
    def __init__(self, name: str, root: Path) -> None:
        if name == "runc" and shutil.which("runc") is None:
            pytest.skip("runc is not installed (scripts/install.sh installs it)")
        self.name = name
        self.root = root
        self.argv = ([sys.executable, "-m", "pyvisor"] if name == "pyvisor" else ["runc"]) + \
            ["--root", str(root)]
        self.env = pyvisor_env(None)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60, env=self.env,
                              cwd=str(REPO))

    def terminal(self, *args: str, rows: int, cols: int) -> UserTerminal:
        return UserTerminal([*self.argv, *args], rows=rows, cols=cols, env=self.env,
                            cwd=str(REPO))


@pytest.fixture(params=["pyvisor", "runc"])
def rt(request: pytest.FixtureRequest, world_tmp: Path) -> Iterator[Runtime]:
    r = Runtime(request.param, world_tmp / "state")
    yield r
    if r.root.is_dir():
        for cid in os.listdir(r.root):
            r("delete", "--force", cid)


def test_run_with_terminal_on_the_users_terminal(rt: Runtime, world_tmp: Path) -> None:
    b = bundle(world_tmp, ["sh"], terminal=True)
    term = rt.terminal("run", "--bundle", str(b), f"t-{uuid.uuid4().hex[:8]}", rows=30, cols=100)
    try:
        before = termios.tcgetattr(term.master)
        term.expect(b"# ")
        term.write(b"stty size; tty\r")
        assert b"30 100\r\n" in term.expect(b"/dev/pts/0\r\n")
        term.resize(42, 120)
        term.retype_until(b"stty size\r", b"42 120\r\n")
        term.write(b"sleep 30\r")
        term.expect(b"sleep 30\r\n")
        term.write(b"\x03")                      # ^C reaches the container's sleep
        term.expect(b"# ")
        term.retype_until(b"echo hi\r", b"\r\nhi\r\n")     # see the exec test below
        term.write(b"exit 3\r")
        assert term.wait() == 3, bytes(term.out)
        assert termios.tcgetattr(term.master) == before    # raw mode undone
    finally:
        term.close()


def test_exec_tty_on_the_users_terminal(rt: Runtime, world_tmp: Path) -> None:
    b = bundle(world_tmp, ["sleep", "100"], terminal=False)
    cid = f"t-{uuid.uuid4().hex[:8]}"
    with open(world_tmp / "out", "w") as out:
        r = subprocess.run([*rt.argv, "create", "--bundle", str(b), cid],
                           stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=rt.env,
                           timeout=60)
    assert r.returncode == 0, (world_tmp / "out").read_text()
    assert rt("start", cid).returncode == 0
    term = rt.terminal("exec", "-t", cid, "sh", rows=20, cols=70)
    try:
        term.expect(b"# ")
        term.write(b"stty size; tty\r")
        assert b"20 70\r\n" in term.expect(b"/dev/pts/")
        term.resize(21, 71)
        term.retype_until(b"stty size\r", b"21 71\r\n")
        term.write(b"sleep 30\r")
        term.expect(b"sleep 30\r\n")
        term.write(b"\x03")
        term.expect(b"# ")
        # busybox's line editor may ask the terminal for the cursor position (ESC[6n)
        # after a ^C and read the reply from what is typed: retype until it runs.
        term.retype_until(b"echo hi\r", b"\r\nhi\r\n")
        term.write(b"exit 5\r")
        assert term.wait() == 5, bytes(term.out)
    finally:
        term.close()
    assert rt("state", cid).returncode == 0
    assert json.loads(rt("state", cid).stdout)["status"] == "running"


def test_users_terminal_is_never_reconfigured(rt: Runtime, world_tmp: Path) -> None:
    """Without a terminal of its own, a container whose stdio is the user's terminal
    (`create` from a shell, `exec` without -t) cannot reconfigure it: pyvisor gives exec a
    pty of its own (runc: pipes) and refuses termios changes on the user's terminal that
    `create` passed in; runc lets that container put it in raw mode, which shows the check
    can fail."""
    b = bundle(world_tmp, ["sh", "-c", "stty raw -echo; echo init-rc=$?; sleep 100"],
               terminal=False)
    cid = f"t-{uuid.uuid4().hex[:8]}"
    term = rt.terminal("create", "--bundle", str(b), cid, rows=20, cols=70)
    try:
        before = termios.tcgetattr(term.master)
        assert term.wait() == 0, bytes(term.out)
        assert rt("start", cid).returncode == 0
        init_rc = term.expect(b"init-rc=", timeout=60) and term.expect(b"\n")
        after_init = termios.tcgetattr(term.master)
        ex = rt.terminal("exec", cid, "sh", "-c", "stty raw -echo; echo exec-rc=$?; tty",
                         rows=20, cols=70)
        try:
            ex_before = termios.tcgetattr(ex.master)
            ex_code = ex.wait()
            ex_after = termios.tcgetattr(ex.master)
        finally:
            ex.close()
    finally:
        term.close()
    assert ex_after == ex_before
    if rt.name == "pyvisor":
        assert init_rc.startswith(b"1") and after_init == before
        assert ex_code == 0 and b"exec-rc=0" in ex.out and b"/dev/pts/" in ex.out, ex.out
    else:
        assert init_rc.startswith(b"0") and after_init != before
        assert ex_code == 1 and b"exec-rc=1" in ex.out and b"not a tty" in ex.out, ex.out
