"""The user's terminal is never left changed by the sandbox (issue #6), and still works.

Each test gives pyvisor a pseudo-terminal as "the user's terminal" (stdin,
stdout and stderr, and its controlling terminal, with pyvisor in the
foreground), with odd but valid settings and window size.  The sandboxed
tests/programs/ttymess.c changes everything it can about its terminal; the
user's termios (every field, c_cc included), window size and output flow
must be exactly as before once pyvisor is gone, however the sandbox ended.
Natively the same program leaves the terminal changed, which shows the
comparison can fail.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pvtest import REPO, Builder, pyvisor_env

PV = [sys.executable, "-m", "pyvisor", "do", "--"]
WINSZ = struct.pack("HHHH", 33, 111, 800, 600)


def _setup_terminal(fd: int) -> None:
    """Odd but valid settings, so 'restored' cannot mean 'reset to defaults'."""
    attrs = termios.tcgetattr(fd)
    attrs[3] |= termios.ECHOCTL | termios.ECHOKE
    attrs[6] = list(attrs[6])
    attrs[6][termios.VKILL] = b"\x0b"
    attrs[6][termios.VWERASE] = b"\x05"
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, WINSZ)


def _state(fd: int) -> tuple[list[object], bytes]:
    return termios.tcgetattr(fd), fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8))


@dataclass
class Terminal:
    """A pty standing for the user's terminal, with a program in its foreground."""

    master: int
    slave: int
    proc: subprocess.Popen[bytes]
    before: tuple[list[object], bytes]      # the state before the program started
    out: bytearray = field(default_factory=bytearray)

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str] | None = None) -> Terminal:
        master, slave = os.openpty()
        _setup_terminal(slave)
        before = _state(slave)

        def make_ctty() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                preexec_fn=make_ctty, env=pyvisor_env(env), cwd=REPO)
        return cls(master, slave, proc, before)

    def pump(self, seconds: float) -> None:
        """Reads what the terminal shows for `seconds` (or until nothing more comes)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.master], [], [], 0.1)
            if r:
                try:
                    self.out += os.read(self.master, 65536)
                except OSError:
                    return

    def expect(self, text: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.out:
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} never shown; the terminal shows {bytes(self.out)!r}",
                            pytrace=False)
            self.pump(0.2)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"still running; the terminal shows {bytes(self.out)!r}",
                            pytrace=False)
            self.pump(0.1)
        self.pump(0.2)
        return self.proc.returncode

    def output_flows(self) -> bool:
        """Whether output written to the terminal now reaches its reader (not TCOOFF)."""
        os.set_blocking(self.slave, False)
        try:
            os.write(self.slave, b"PING\n")
        except BlockingIOError:
            return False
        before = len(self.out)
        self.pump(1.0)
        return b"PING" in self.out[before:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            termios.tcflow(self.slave, termios.TCOON)
        except termios.error:
            pass
        os.close(self.master)
        os.close(self.slave)


def _sentry_pid(launcher: int) -> int:
    """The launcher's child that is PID 1 of a PID namespace of its own."""
    with open(f"/proc/{launcher}/task/{launcher}/children") as f:
        children = [int(p) for p in f.read().split()]
    for pid in children:
        with open(f"/proc/{pid}/status") as f:
            nspid = next(ln for ln in f if ln.startswith("NSpid:")).split()[1:]
        if nspid[-1] == "1":
            return pid
    raise AssertionError(f"no Sentry among {children}")


def test_native_program_changes_the_terminal(program: Builder) -> None:
    """The oracle: natively, ttymess leaves termios, size and flow changed."""
    term = Terminal.start([program("ttymess.c"), "exit"])
    try:
        before = term.before
        term.expect(b"CHANGED")
        assert term.wait() == 0
        after = _state(term.slave)
        assert after[0] != before[0] and after[1] != before[1]
        assert not term.output_flows()
    finally:
        term.close()


@pytest.mark.parametrize("end", ["exit", "signal", "segv", "sigterm-launcher",
                                 "sigkill-sentry", "sigkill-launcher"])
def test_terminal_restored(program: Builder, end: str) -> None:
    mode = {"exit": "exit", "signal": "signal", "segv": "segv"}.get(end, "wait")
    term = Terminal.start([*PV, program("ttymess.c"), mode])
    try:
        before = term.before
        term.expect(b"CHANGED")
        if end == "sigterm-launcher":
            term.proc.send_signal(signal.SIGTERM)
        elif end == "sigkill-sentry":
            os.kill(_sentry_pid(term.proc.pid), signal.SIGKILL)
        elif end == "sigkill-launcher":
            term.proc.kill()
        status = term.wait()
        assert status == {"exit": 0, "signal": 128 + 9, "segv": 128 + 11,
                          "sigterm-launcher": 128 + 15, "sigkill-sentry": 128 + 9,
                          "sigkill-launcher": -9}[end], bytes(term.out)
        if end == "sigkill-launcher":
            # The launcher is gone: its guard process restores, just after.
            deadline = time.monotonic() + 30
            while _state(term.slave) != before and time.monotonic() < deadline:
                time.sleep(0.05)
        after = _state(term.slave)
        assert after[0] == before[0], (before, after)      # every field, c_cc included
        assert after[1] == before[1]
        assert term.output_flows()
    finally:
        term.close()


def test_read_gets_the_typed_line() -> None:
    term = Terminal.start([*PV, "/bin/sh", "-c",
                           "test -t 0 && test -t 1 && echo TTY; echo READY; read a; "
                           "echo \"got <$a>\""])
    try:
        term.expect(b"READY")
        term.type(b"hello there\n")
        assert term.wait() == 0
        assert b"TTY\r\n" in term.out and b"got <hello there>" in term.out
    finally:
        term.close()


def test_dev_tty_is_the_console() -> None:
    """/dev/tty opens the sandbox's terminal (ENXIO without one: test_procfs_devfs)."""
    term = Terminal.start([*PV, "/bin/sh", "-c",
                           "echo to-tty > /dev/tty; stty -F /dev/tty size; echo READY; "
                           "read a < /dev/tty; echo \"got <$a>\""])
    try:
        term.expect(b"READY")
        term.type(b"typed\n")
        assert term.wait() == 0
        assert b"to-tty\r\n33 111\r\n" in term.out and b"got <typed>" in term.out
    finally:
        term.close()


def test_ctrl_c_interrupts_sleep() -> None:
    """^C reaches the sandbox's foreground group as SIGINT at once (not when sleep ends)."""
    term = Terminal.start([*PV, "/bin/sh", "-c",
                           "trap 'echo caught' INT; echo READY; sleep 1000; echo after $?"])
    try:
        term.expect(b"READY")
        term.type(b"\x03")
        assert term.wait(timeout=120) == 0
        assert b"caught\r\nafter 130" in term.out, bytes(term.out)
    finally:
        term.close()


def test_job_control_in_an_interactive_shell() -> None:
    """sh -i puts `sleep` in a group of its own (TIOCSPGRP); ^C ends it, not the shell."""
    term = Terminal.start([*PV, "/usr/bin/env", "PS1=$ ", "/bin/sh", "-i"])
    try:
        term.expect(b"$ ")
        term.type(b"sleep 1000\n")
        term.expect(b"sleep 1000\r\n")
        term.pump(1.0)       # sleep runs (no timing asserted: ^C must end it whenever)
        term.type(b"\x03")
        term.type(b"echo alive $?\n")
        term.expect(b"alive 130")
        term.type(b"exit 5\n")
        assert term.wait() == 5
    finally:
        term.close()


def test_window_size_changes_reach_the_sandbox() -> None:
    """The initial size, then a resize of the user's terminal, with SIGWINCH inside."""
    term = Terminal.start([*PV, "/bin/sh", "-c",
                           "trap 'echo winch' WINCH; stty size; echo READY; "
                           "read a; stty size"])
    try:
        term.expect(b"READY")
        assert b"33 111\r\n" in term.out
        fcntl.ioctl(term.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 55, 0, 0))
        term.expect(b"winch")
        term.type(b"\n")
        assert term.wait() == 0
        assert b"44 55\r\n" in term.out[term.out.index(b"winch"):], bytes(term.out)
    finally:
        term.close()


def test_terminal_stdin_with_stdout_to_a_file(tmp_path: Path) -> None:
    """Only the stdio fds that are terminals get the pty; a file stays a file (no CRs)."""
    master, slave = os.openpty()
    _setup_terminal(slave)
    before = _state(slave)

    def make_ctty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    with open(tmp_path / "out", "wb") as out:
        proc = subprocess.Popen(
            [*PV, "/bin/sh", "-c", "test -t 0 && echo in-tty; test -t 1 || echo out-file; "
             "echo READY >&2; read a; echo \"got $a\""],
            stdin=slave, stdout=out, stderr=slave, preexec_fn=make_ctty,
            env=pyvisor_env(None), cwd=REPO)
    term = Terminal(master, slave, proc, before)
    try:
        term.expect(b"READY")
        term.type(b"typed\n")
        assert term.wait() == 0
        assert (tmp_path / "out").read_bytes() == b"in-tty\nout-file\ngot typed\n"
        assert b"typed\r\n" in term.out       # the echo, by the sandbox's pty
        assert _state(slave) == before
    finally:
        term.close()


def test_run_bundle_on_a_terminal(program: Builder, tmp_path: Path) -> None:
    """`pyvisor run` has the same console as `do`."""
    import json
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2", "root": {"path": "/", "readonly": True},
        "process": {"terminal": True, "args": [program("ttymess.c"), "exit"], "cwd": "/"}}))
    term = Terminal.start([sys.executable, "-m", "pyvisor", "--root", str(tmp_path / "state"),
                           "run", "--bundle", str(bundle), "console"])
    try:
        term.expect(b"CHANGED")
        assert term.wait() == 0
        assert _state(term.slave) == term.before
        assert term.output_flows()
    finally:
        term.close()


def test_background_launcher_leaves_the_terminal_alone(program: Builder) -> None:
    """A pyvisor in the background (sh -m: a job of its own) never sets raw mode: the
    terminal belongs to the foreground; the sandbox still has its own pty."""
    script = (f"{sys.executable} -m pyvisor do -- {program('ttymess.c')} exit & "
              "wait $!; echo status=$?")
    term = Terminal.start(["/bin/sh", "-m", "-c", script])
    try:
        term.expect(b"CHANGED")
        during = _state(term.slave)
        assert term.wait() == 0
        assert b"status=0" in term.out
        assert during == term.before and _state(term.slave) == term.before
    finally:
        term.close()


@pytest.mark.parametrize("prefork", ["1", "0"])
@pytest.mark.parametrize("delay", [i / 100 for i in range(11)])
def test_ctrl_c_during_start_up(prefork: str, delay: float) -> None:
    """^C typed at any moment of start-up, from the launcher's first mark on (before
    it, the interpreter itself is starting): the run ends with 130, the program does
    not go on as if nothing was typed, nothing prints a traceback, and the user's
    terminal is as before."""
    env = dict(os.environ, PYVISOR_PHASES="1", PYVISOR_PREFORK=prefork)
    t = Terminal.start([*PV, "/bin/sleep", "20"], env=env)
    try:
        t.expect(b"interpreter up")
        time.sleep(delay)
        t.type(b"\x03")
        rc = t.wait(timeout=15)
        out = bytes(t.out)
        assert rc == 130, out
        assert b"Traceback" not in out and b"Exception ignored" not in out, out
        assert _state(t.slave) == t.before
    finally:
        t.close()
