"""Terminals and passed fds in the OCI runtime, compared with runc on the same bundle.

* process.terminal with --console-socket: the runtime sends the pty master over
  the socket in runc's message (data "/dev/ptmx", exactly one SCM_RIGHTS fd); the
  test is the receiver, as conmon and containerd's shim are, and drives the
  container's shell through the master: process.consoleSize, `tty`, a resize
  (TIOCSWINSZ on the master) seen by `stty size` and as SIGWINCH, ^C, the exit.
* exec --tty --console-socket, in the foreground and with --detach (the pid in
  --pid-file exits with the process's status, reaped by a subreaper as conmon
  does).
* --preserve-fds N: the caller's fds 3..3+N-1 are the container's (a pipe read
  and one written, EOF when the container closes its end), for run and exec;
  in pyvisor they are host files of the Sentry, never held by a stub or Gofer.
* runc's rules for a terminal without a console socket and the reverse.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any, Iterator

import pytest

from test_lifecycle import RUNTIMES, Runtime, _cid, _one_error_line, _wait_for, make_bundle
from ttydriver import ConsoleSocket, Reader, set_size

APPLETS = ("stty", "tty", "readlink", "wc", "tr")
WINCH_LOOP = ("sh -c 'trap \"echo WINCH; stty size\" WINCH; echo ready; "
              "while :; do sleep 0.1; done'\n")


def tty_bundle(base: Path, args: list[str], terminal: bool = True,
               size: tuple[int, int] | None = (25, 90)) -> Path:
    """make_bundle's busybox rootfs, with a terminal and the /dev mounts runc's pty needs."""
    bundle = make_bundle(base, args)
    for name in APPLETS:
        (bundle / "rootfs" / "bin" / name).symlink_to("busybox")
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = terminal
    config["process"]["env"].append("TERM=xterm")
    if size is not None:
        config["process"]["consoleSize"] = {"height": size[0], "width": size[1]}
    config["mounts"] += [
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}]
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


@pytest.fixture(params=RUNTIMES)
def rt(request: pytest.FixtureRequest, world_tmp: Path) -> Iterator[Runtime]:
    r = Runtime(request.param, world_tmp)
    yield r
    if r.root.is_dir():
        for cid in os.listdir(r.root):
            r("delete", "--force", cid)


def _popen(rt: Runtime, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([*rt.argv, *args], text=True, env=rt.env, **kw)


def _create_with_console(rt: Runtime, bundle: Path, sock: ConsoleSocket,
                         cid: str) -> Reader:
    p = _popen(rt, "create", "--bundle", str(bundle), "--console-socket", str(sock.path),
               cid, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        master = sock.master()              # exactly runc's message, or it fails here
    finally:
        _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return master


def test_console_socket_create_start(rt: Runtime, world_tmp: Path) -> None:
    bundle = tty_bundle(world_tmp, ["sh"])
    sock, cid = ConsoleSocket(world_tmp / "console.sock"), _cid()
    term = _create_with_console(rt, bundle, sock, cid)
    assert rt.state(cid)["status"] == "created"
    assert rt("start", cid).returncode == 0
    term.expect(b"# ")
    term.write(b"stty size; tty; echo $$\n")
    assert term.expect(b"/dev/pts/0\r\n1\r\n").endswith(b"\r\n25 90\r\n/dev/pts/0\r\n1\r\n")
    term.write(WINCH_LOOP.encode())
    term.expect(b"ready\r\n")
    set_size(term.master, 40, 132)        # what conmon and the shim do on a resize
    term.expect(b"WINCH\r\n40 132\r\n")
    term.write(b"\x03")                   # ^C: SIGINT to the foreground process group
    term.expect(b"# ")
    term.write(b"stty size; exit 3\n")
    term.expect(b"40 132\r\n")
    term.drain_to_eof()                   # the slave is gone with the container
    assert term.eof
    assert rt.wait_status(cid, "stopped")["status"] == "stopped"
    if rt.name == "pyvisor":
        r = rt("wait", cid)
        assert json.loads(r.stdout)["exitStatus"] == 3, r.stdout + r.stderr
    assert rt("delete", cid).returncode == 0


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detach"])
def test_run_with_console_socket(rt: Runtime, world_tmp: Path, detach: bool) -> None:
    """`run -d --console-socket` (runc's way; pyvisor also takes it in the foreground,
    where `run` waits and passes the exit status back)."""
    if rt.name == "runc" and not detach:
        pytest.skip("runc refuses a console socket for a foreground run")
    bundle = tty_bundle(world_tmp, ["sh"], size=(11, 22))
    sock, cid = ConsoleSocket(world_tmp / "console.sock"), _cid()
    p = _popen(rt, "run", *(["--detach"] if detach else []), "--bundle", str(bundle),
               "--console-socket", str(sock.path), cid, stdin=subprocess.DEVNULL,
               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    term = sock.master()
    term.expect(b"# ")
    term.write(b"stty size; exit 4\n")
    term.expect(b"11 22\r\n")
    _, err = p.communicate(timeout=60)
    assert p.returncode == (0 if detach else 4), err
    if detach:
        assert rt.wait_status(cid, "stopped")["status"] == "stopped"
        assert rt("delete", cid).returncode == 0
    assert not rt.root.is_dir() or os.listdir(rt.root) == []


def test_closing_the_master_hangs_up(rt: Runtime, world_tmp: Path) -> None:
    """The engine closing the master (conmon gone) is a hang-up: SIGHUP to the init (a
    handler: an init ignores a SIGHUP it has no handler for, in runc's PID namespace)."""
    bundle = tty_bundle(world_tmp, ["sh", "-c", "trap 'exit 9' HUP; echo ready; "
                                    "while :; do sleep 0.1; done"])
    sock, cid = ConsoleSocket(world_tmp / "console.sock"), _cid()
    term = _create_with_console(rt, bundle, sock, cid)
    assert rt("start", cid).returncode == 0
    term.expect(b"ready\r\n")
    os.close(term.master)
    assert rt.wait_status(cid, "stopped")["status"] == "stopped"
    if rt.name == "pyvisor":
        assert json.loads(rt("wait", cid).stdout)["exitStatus"] == 9


# A stand-in for conmon: a subreaper that runs `exec --detach --pid-file`, then reaps the
# pid the file names (the runtime's process is reparented to it) and prints its status.
SUBREAPER = """
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)          # PR_SET_CHILD_SUBREAPER
pid_file, argv = sys.argv[1], sys.argv[2:]
rc = subprocess.run(argv, stdin=subprocess.DEVNULL).returncode
if rc != 0:
    sys.exit(f"exec failed: {rc}")
pid = int(open(pid_file).read())
while True:
    got, status = os.waitpid(-1, 0)
    if got == pid:
        print(os.waitstatus_to_exitcode(status), flush=True)
        break
"""


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detach"])
def test_exec_tty_console_socket(rt: Runtime, world_tmp: Path, detach: bool) -> None:
    if rt.name == "runc" and not detach:
        pytest.skip("runc refuses a console socket for a foreground exec")
    bundle = tty_bundle(world_tmp, ["sleep", "100"], terminal=False)
    cid = _cid()
    assert rt.create(cid, bundle, world_tmp / "out").returncode == 0
    assert rt("start", cid).returncode == 0
    sock = ConsoleSocket(world_tmp / "exec.sock")
    exec_args = ["exec", "--tty", "--console-socket", str(sock.path)]
    if detach:
        pid_file = world_tmp / "exec.pid"
        p = subprocess.Popen([sys.executable, "-c", SUBREAPER, str(pid_file), *rt.argv,
                              *exec_args, "--detach", "--pid-file", str(pid_file), cid, "sh"],
                             stdout=subprocess.PIPE, text=True, env=rt.env)
    else:
        p = _popen(rt, *exec_args, cid, "sh", stdout=subprocess.PIPE)
    term = sock.master()
    set_size(term.master, 30, 100)
    term.expect(b"# ")
    term.write(b"stty size; tty\n")
    assert b"30 100\r\n" in term.expect(b"\r\n/dev/pts/")
    term.write(b"echo via-dev-tty > /dev/tty\n")      # its own terminal, not the init's
    term.expect(b"\r\nvia-dev-tty\r\n")
    term.write(WINCH_LOOP.encode())
    term.expect(b"ready\r\n")
    set_size(term.master, 31, 101)
    term.expect(b"WINCH\r\n31 101\r\n")
    term.write(b"\x03")
    term.expect(b"# ")
    term.write(b"exit 7\n")
    out, _ = p.communicate(timeout=60)
    if detach:
        assert out.strip() == "7", out         # the status of the pid in --pid-file
    else:
        assert p.returncode == 7
    term.drain_to_eof()
    assert rt.state(cid)["status"] == "running"       # the container goes on
    assert rt("delete", "--force", cid).returncode == 0


def test_preserve_fds_run_and_exec(rt: Runtime, world_tmp: Path) -> None:
    """A pipe to read as fd 3 and one to write as fd 4, as runc passes them; the reader
    of fd 4 sees EOF as soon as the container closes it, while it still runs."""
    script = ("read line <&3; echo got:$line >&4; readlink /proc/self/fd/3 | tr -d 0-9 >&4;"
              " exec 4>&-; sleep 2")
    bundle = tty_bundle(world_tmp, ["sh", "-c", script], terminal=False)

    def pipes() -> tuple[int, int, int, int]:
        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()
        os.write(w_in, b"hello\n")
        return r_in, w_in, r_out, w_out

    def check(argv: list[str], r_in: int, w_in: int, r_out: int, w_out: int) -> None:
        # The child's fds 3 and 4, whatever numbers the pipes have here.
        def arrange() -> None:
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (r_in, w_out)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, preexec_fn=arrange, pass_fds=(3, 4),
                             env=rt.env)
        for fd in (r_in, w_out):
            os.close(fd)
        with os.fdopen(r_out, "rb") as f:
            got = f.read()                    # to EOF: the container closed fd 4
        assert p.poll() is None or p.returncode == 0   # EOF came before the exit
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert got == b"got:hello\npipe:[]\n", got
        os.close(w_in)

    check([*rt.argv, "run", "--preserve-fds", "2", "--bundle", str(bundle), _cid()],
          *pipes())
    holder = tty_bundle(world_tmp / "h", ["sleep", "100"], terminal=False)
    cid = _cid()
    assert rt.create(cid, holder, world_tmp / "out").returncode == 0
    assert rt("start", cid).returncode == 0
    check([*rt.argv, "exec", "--preserve-fds", "2", cid, "sh", "-c", script], *pipes())
    assert rt("delete", "--force", cid).returncode == 0


def _pipe_holders(ino: int) -> set[int]:
    """Host processes (other than us) with an fd on pipe `ino`."""
    out = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"pipe:[{ino}]":
                    out.add(int(pid))
        except OSError:
            continue
    return out


def test_preserved_fds_are_held_only_by_the_sentry(world_tmp: Path) -> None:
    """The application reaches a preserved fd only through the Sentry: no stub (where
    application code runs), Gofer or monitor holds the host fd."""
    rt = Runtime("pyvisor", world_tmp)
    bundle = tty_bundle(world_tmp, ["sh", "-c", "echo in >&3; sleep 100"], terminal=False)
    r, w = os.pipe()
    cid = _cid()
    try:
        err = world_tmp / "create.err"     # not a pipe: the container would hold it
        with open(err, "w") as e:
            p = subprocess.run([*rt.argv, "create", "--preserve-fds", "1", "--bundle",
                                str(bundle), cid], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=e,
                               preexec_fn=lambda: os.dup2(w, 3), pass_fds=(3,), env=rt.env,
                               timeout=60)
        assert p.returncode == 0, err.read_text()
        os.close(w)
        state = json.loads((rt.root / cid / "state.json").read_text())
        assert _pipe_holders(os.fstat(r).st_ino) == {state["sentry_pid"]}
        assert rt("start", cid).returncode == 0
        assert os.read(r, 100) == b"in\n"
    finally:
        os.close(r)
        rt("delete", "--force", cid)


def test_preserved_terminal_is_never_changed(world_tmp: Path) -> None:
    """A terminal passed with --preserve-fds is read and written, never reconfigured:
    the user's terminal is outside the sandbox (SECURITY.md, *The terminal and stdio*)."""
    rt = Runtime("pyvisor", world_tmp)
    bundle = tty_bundle(world_tmp, ["sh", "-c", "echo to-tty >&3; stty raw -echo <&3;"
                                    " echo rc=$?; stty size <&3"], terminal=False)
    master, slave = os.openpty()
    set_size(slave, 12, 34)
    before = termios.tcgetattr(slave)
    try:
        p = subprocess.run([*rt.argv, "run", "--preserve-fds", "1", "--bundle", str(bundle),
                            _cid()], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, preexec_fn=lambda: os.dup2(slave, 3), pass_fds=(3,),
                           env=rt.env, timeout=60)
        assert (p.returncode, p.stdout) == (0, "rc=1\n12 34\n"), p.stdout + p.stderr
        assert os.read(master, 100) == b"to-tty\r\n"
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_terminal_flag_errors(rt: Runtime, world_tmp: Path) -> None:
    """runc's checkTerminal: a detached terminal needs a console socket, a console socket
    needs a terminal; a foreground run with a terminal needs one on stdio."""
    with_tty = tty_bundle(world_tmp, ["sh", "-c", "exit 0"])
    without = tty_bundle(world_tmp / "n", ["sleep", "100"], terminal=False)
    sock = ConsoleSocket(world_tmp / "unused.sock")
    _one_error_line(rt("create", "--bundle", str(with_tty), _cid()))
    _one_error_line(rt("create", "--bundle", str(without), "--console-socket",
                       str(sock.path), _cid()))
    _one_error_line(rt("run", "--bundle", str(with_tty), _cid()))      # stdin: /dev/null
    _one_error_line(rt("run", "-d", "--bundle", str(with_tty), _cid()))
    assert not rt.root.is_dir() or os.listdir(rt.root) == []
    cid = _cid()
    assert rt.create(cid, without, world_tmp / "out").returncode == 0
    _one_error_line(rt("exec", "--detach", "--tty", cid, "true"))
    _one_error_line(rt("exec", "--console-socket", str(sock.path), cid, "true"))
    assert rt("delete", "--force", cid).returncode == 0
    if rt.name == "pyvisor":
        r = rt("run", "--preserve-fds", "40", "--bundle", str(without), _cid())
        _one_error_line(r)
        assert "fd " in r.stderr and "not open" in r.stderr, r.stderr
        _one_error_line(rt("create", "--bundle", str(with_tty), "--console-socket",
                           str(world_tmp / "nobody-listens.sock"), _cid()))
        assert _wait_for(lambda: not rt.root.is_dir() or os.listdir(rt.root) == [])
