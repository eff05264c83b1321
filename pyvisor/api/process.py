"""Processes in a running sandbox: Sandbox.popen's Process and the Result of Sandbox.run.

A Process is one `exec` over the sandbox's control socket (runtime/control.py): its stdio
are host pipes (or files) passed to the Sentry as SCM_RIGHTS, and a `wait_pid` request is
sent at once on the same connection, so the socket turns readable exactly when the process
exits: poll() is one non-blocking recv, wait() one select.

Exit status: Process.returncode follows subprocess (-N for a death by signal N);
Result.returncode follows the shell and `pyvisor exec` (128+N), with Result.signal = N.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import selectors
import signal as host_signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from pyvisor.api.errors import CommandNotFound, SandboxClosed, SandboxError, Timeout
from pyvisor.runtime import control

if TYPE_CHECKING:
    from pyvisor.api.sandbox import Sandbox

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

Stdio = int | IO[Any] | None


@dataclass
class Result:
    """What one Sandbox.run produced.

    >>> r = Result(["true"], 0, b"", b"", 0.01)
    >>> r.ok, r.signal
    (True, None)
    """

    args: list[str]
    returncode: int               # the exit status, or 128+N for a death by signal N
    stdout: bytes | str
    stderr: bytes | str
    duration: float               # seconds, from exec to exit as seen by the caller
    signal: int | None = None     # N when a signal killed it
    timed_out: bool = False       # killed by run()'s timeout
    oom_killed: bool = False      # killed by the sandbox's memory limit
    pid: int = 0                  # its pid inside the sandbox
    # Resource use seen by the sandbox's cgroup during the run: cpu (seconds of the
    # Sentry, Gofers and stubs: the true cost of the run, but shared with any concurrent
    # run), memory_peak (bytes, the cgroup's high-water mark so far, v2 or v1).
    usage: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check_returncode(self) -> None:
        """Raises CommandError if the command failed (as CompletedProcess's)."""
        if self.returncode != 0:
            from pyvisor.api.errors import CommandError
            raise CommandError(f"{self.args!r} exited with status {self.returncode}", self)


def _open_stdio(spec: Stdio, fd_index: int, inherit: int) -> tuple[int, int | None, bool]:
    """(fd for the sandbox, our end of a pipe or None, whether the sandbox's fd is ours to
    close after exec)."""
    if spec is PIPE:
        r, w = os.pipe2(os.O_CLOEXEC)
        return (r, w, True) if fd_index == 0 else (w, r, True)
    if spec is DEVNULL:
        return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC), None, True
    if spec is None:
        return inherit, None, False
    if isinstance(spec, int):
        if spec < 0:
            raise ValueError(f"bad file descriptor {spec}")
        return spec, None, False
    if hasattr(spec, "fileno"):
        return spec.fileno(), None, False
    raise TypeError(f"stdio must be PIPE, DEVNULL, None, an fd or a file, not {spec!r}")


class Process:
    """A process running in a sandbox, as subprocess.Popen: .stdin/.stdout/.stderr (binary
    file objects for PIPE), .pid (its pid inside the sandbox), poll(), wait(), communicate(),
    send_signal(), terminate(), kill(), .returncode.  Made by Sandbox.popen.

    >>> with pyvisor.Sandbox() as sb:                                  # doctest: +SKIP
    ...     p = sb.popen(["sh", "-c", "echo ready; read x; echo got $x"])
    ...     p.stdout.readline()
    ...     p.stdin.write(b"hi\\n"); p.stdin.close()
    ...     p.stdout.read(), p.wait()
    b'ready\\n'
    (b'got hi\\n', 0)
    """

    def __init__(self, sandbox: Sandbox, args: list[str], proc: dict[str, Any], *,
                 stdin: Stdio = PIPE, stdout: Stdio = PIPE, stderr: Stdio = PIPE) -> None:
        self.args = args
        self.returncode: int | None = None
        self.signal: int | None = None
        self.stdin: IO[bytes] | None = None
        self.stdout: IO[bytes] | None = None
        self.stderr: IO[bytes] | None = None
        self._sandbox = sandbox
        self._control = sandbox.control_path
        self._client: control.Client | None = None
        self._status: int | None = None
        theirs: list[int] = []
        close_after: list[int] = []
        ours: list[int | None] = []
        try:
            for i, spec in enumerate((stdin, stdout, stderr)):
                if i == 2 and spec is STDOUT:
                    theirs.append(theirs[1])
                    ours.append(None)
                    continue
                fd, mine, close = _open_stdio(spec, i, i)
                theirs.append(fd)
                ours.append(mine)
                if close:
                    close_after.append(fd)
            self._client = self._connect()
            self.started = time.monotonic()
            try:
                self.pid = int(self._client.call("exec", proc, fds=theirs)["pid"])
            except control.ControlError as e:
                raise _exec_error(args, e) from None
            self._wait_rid = self._client.send("wait_pid", {"pid": self.pid})
        except BaseException:
            for fd in [*close_after, *(o for o in ours if o is not None)]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if self._client is not None:
                self._client.close()
            raise
        for fd in close_after:
            os.close(fd)
        if ours[0] is not None:
            self.stdin = open(ours[0], "wb")
        if ours[1] is not None:
            self.stdout = open(ours[1], "rb")
        if ours[2] is not None:
            self.stderr = open(ours[2], "rb")

    def _connect(self) -> control.Client:
        try:
            return control.Client(self._control, timeout=None)
        except control.ControlError as e:
            raise SandboxClosed(f"the sandbox is not running ({e})") from None

    def __repr__(self) -> str:
        return f"<pyvisor Process pid={self.pid} returncode={self.returncode}>"

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        if self.returncode is None:
            self.wait()

    # -- exit status --------------------------------------------------------------------

    def fileno(self) -> int:
        """Readable when the process has exited (for select/selectors)."""
        assert self._client is not None
        return self._client.sock.fileno()

    def _take_status(self, block: bool, timeout: float | None = None) -> bool:
        if self.returncode is not None:
            return True
        client = self._client
        assert client is not None
        if not block:
            timeout = 0.0
        if timeout is not None:
            try:
                ready, _, _ = select.select([client.sock], [], [], max(0.0, timeout))
            except InterruptedError:
                ready = []
            if not ready:
                return False
        try:
            msg = client.receive(None)     # the reply (or EOF) is there: no wait
        except control.ControlError:
            status = int(host_signal.SIGKILL)        # the sandbox ended under it
        else:
            err = msg.get("error")
            res = msg.get("result") or {}
            status = int(host_signal.SIGKILL) if err else int(res.get("status", 0))
        self._status = status
        if status & 0x7F:
            self.signal = status & 0x7F
            self.returncode = -self.signal
        else:
            self.returncode = (status >> 8) & 0xFF
        self.ended = time.monotonic()
        client.close()
        return True

    def poll(self) -> int | None:
        """The returncode if the process has exited, else None (never blocks)."""
        self._take_status(False)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Waits for the exit; raises Timeout after `timeout` seconds (the process runs on)."""
        if not self._take_status(True, timeout):
            raise Timeout(f"{self.args!r} did not exit within {timeout} s")
        assert self.returncode is not None
        return self.returncode

    @property
    def exit_code(self) -> int | None:
        """The shell's view of returncode: 128+N for a death by signal N."""
        if self.returncode is None:
            return None
        return 128 + self.signal if self.signal else self.returncode

    # -- signals ------------------------------------------------------------------------

    def send_signal(self, sig: int, session: bool = False) -> None:
        """Sends `sig` to the process (with session=True: and every process of its session,
        i.e. everything it started that did not call setsid)."""
        if self.returncode is not None:
            return
        try:
            control.call(self._control, "signal_process",
                         {"pid": self.pid, "signal": int(sig), "session": session}, 10.0)
        except control.ControlError as e:
            if e.errno != errno.ESRCH:
                raise SandboxError(f"cannot signal pid {self.pid}: {e}") from None

    def terminate(self) -> None:
        self.send_signal(host_signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the process and its session (its children die with it)."""
        self.send_signal(host_signal.SIGKILL, session=True)

    # -- I/O ----------------------------------------------------------------------------

    def communicate(self, input: bytes | None = None,
                    timeout: float | None = None) -> tuple[bytes | None, bytes | None]:
        """Writes `input`, reads stdout and stderr until the process exits; returns them.
        Raises Timeout after `timeout` seconds (the process runs on; kill() it).  Output
        still held by pipes after the exit is drained; what background children write
        later is not waited for."""
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        try:
            pending = input or b""
            if self.stdin is not None:
                if pending:
                    self.stdin.flush()
                    os.set_blocking(self.stdin.fileno(), False)
                    sel.register(self.stdin.fileno(), selectors.EVENT_WRITE, "in")
                else:
                    self.stdin.close()
            for f, sink in ((self.stdout, out), (self.stderr, err)):
                if f is not None:
                    os.set_blocking(f.fileno(), False)
                    sel.register(f.fileno(), selectors.EVENT_READ, sink)
            if self.returncode is None:
                sel.register(self.fileno(), selectors.EVENT_READ, "exit")
            while self.returncode is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self._partial = (b"".join(out), b"".join(err))
                    raise Timeout(f"{self.args!r} did not exit within {timeout} s")
                for key, _ in sel.select(left):
                    if key.data == "exit":
                        sel.unregister(key.fd)
                        self._take_status(True)
                    elif key.data == "in":
                        assert self.stdin is not None
                        try:
                            n = os.write(key.fd, pending[:65536])
                            pending = pending[n:]
                        except BlockingIOError:
                            continue
                        except OSError:        # EPIPE: it stopped reading
                            pending = b""
                        if not pending:
                            sel.unregister(key.fd)
                            self.stdin.close()
                    else:
                        if not _read_into(key.fd, key.data):
                            sel.unregister(key.fd)
            # Exited: everything it wrote is in the pipes now; take it without waiting
            # for writers it left behind.
            for f, sink in ((self.stdout, out), (self.stderr, err)):
                if f is not None:
                    while _read_into(f.fileno(), sink, drain=True):
                        pass
        finally:
            sel.close()
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        return (b"".join(out) if self.stdout is not None else None,
                b"".join(err) if self.stderr is not None else None)


def _read_into(fd: int, sink: list[bytes], drain: bool = False) -> bool:
    """Reads what is there; False at EOF (or, draining, when nothing more is there now)."""
    try:
        b = os.read(fd, 1 << 16)
    except BlockingIOError:
        return not drain
    except OSError:
        return False
    if not b:
        return False
    sink.append(b)
    return True


def _exec_error(args: list[str], e: control.ControlError) -> SandboxError:
    if e.errno in (errno.ENOENT, errno.ENOTDIR) and \
            ("command not found" in str(e) or "cannot execute" in str(e)):
        return CommandNotFound(str(e), e.errno)
    if e.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.ENOENT, errno.ESRCH,
                   errno.EPIPE):
        return SandboxClosed(f"the sandbox is not running ({e})")
    return SandboxError(f"cannot run {args!r}: {e}")

