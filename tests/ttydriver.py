"""Driving programs through terminals, as a user at a terminal or an engine with a pty.

`UserTerminal` runs a command on a fresh pty that is its controlling terminal (the
command in the foreground), so `podman run -it`, `docker run -it` or `pyvisor run`
see a real interactive terminal; the test types into the master, reads what the
terminal shows and resizes it (the kernel sends SIGWINCH as for a real window).
`ConsoleSocket` is the receiving end of runc's --console-socket protocol, written
as conmon and containerd's shim read it: accept, one recvmsg, exactly one fd.
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import socket
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Mapping, Sequence

WINSZ = struct.Struct("HHHH")


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, WINSZ.pack(rows, cols, 0, 0))


class Reader:
    """What a pty master shows, read with deadlines (never a blocking read)."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.out = bytearray()
        self.eof = False

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.eof and time.monotonic() < deadline:
            self._read_some(min(0.1, max(0.0, deadline - time.monotonic())))

    def _read_some(self, wait: float) -> None:
        r, _, _ = select.select([self.master], [], [], wait)
        if not r:
            return
        try:
            data = os.read(self.master, 65536)
        except OSError:        # EIO: every slave end is closed
            data = b""
        if data:
            self.out += data
        else:
            self.eof = True

    def expect(self, needle: bytes, timeout: float = 60) -> bytes:
        """Reads until `needle` appears after what earlier calls consumed; returns the text
        up to and including it.  Raises AssertionError with what was seen on timeout."""
        deadline = time.monotonic() + timeout
        while needle not in self.out:
            if self.eof or time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} on the terminal; it shows {bytes(self.out)!r}")
            self._read_some(0.2)
        i = self.out.index(needle) + len(needle)
        seen = bytes(self.out[:i])
        del self.out[:i]
        return seen

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def retype_until(self, line: bytes, needle: bytes, timeout: float = 60) -> bytes:
        """Types `line` again every few seconds until `needle` shows: for effects that
        arrive asynchronously (an engine passes a resize on in its own time)."""
        deadline = time.monotonic() + timeout
        while True:
            self.write(line)
            try:
                return self.expect(needle, timeout=3)
            except AssertionError:
                if self.eof or time.monotonic() > deadline:
                    raise

    def drain_to_eof(self, timeout: float = 60) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._read_some(0.2)
        return bytes(self.out)


class UserTerminal(Reader):
    """A command on a fresh pty, which is its controlling terminal (the user's window)."""

    def __init__(self, argv: Sequence[str], rows: int = 24, cols: int = 80,
                 env: Mapping[str, str] | None = None, cwd: str | None = None,
                 pass_fds: Sequence[int] = ()) -> None:
        master, slave = os.openpty()
        super().__init__(master)
        set_size(slave, rows, cols)

        def make_ctty() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave,
                                     preexec_fn=make_ctty, env=dict(env) if env else None,
                                     cwd=cwd, pass_fds=tuple(pass_fds))
        os.close(slave)

    def resize(self, rows: int, cols: int) -> None:
        """As a terminal emulator does: the kernel signals the foreground group."""
        set_size(self.master, rows, cols)

    def wait(self, timeout: float = 60) -> int:
        """The command's exit status; what it showed until then stays in `out`."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.proc.args!r} did not exit; the terminal shows "
                                     f"{bytes(self.out)!r}")
            self._read_some(0.1)
        self.pump(0.3)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


class ConsoleSocket:
    """A --console-socket listener; `receive` takes the pty master the runtime sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.sock.settimeout(60)

    def receive(self) -> tuple[bytes, list[int]]:
        """(the message's data, the fds it carried): what conmon's recvfd reads."""
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(60)
            data, anc, flags, _ = conn.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
        fds = array.array("i")
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % 4])
        return data, list(fds)

    def master(self) -> Reader:
        data, fds = self.receive()
        assert data == b"/dev/ptmx" and len(fds) == 1, (data, fds)
        return Reader(fds[0])

    def close(self) -> None:
        self.sock.close()
