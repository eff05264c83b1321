"""The control socket: how the CLI talks to a running Sentry.  runsc: runsc/boot/controller.go
(urpc over a Unix socket) and pkg/control/server.

Transport: an AF_UNIX SOCK_SEQPACKET socket at <state>/control.sock, bound and
listened on by the monitor before the Sentry starts (the Sentry inherits the
listening fd; its seccomp filter allows accept4 on that fd only).  The state
directory is 0700, so only its owner can connect.  Every message is one
datagram of at most MAX_MESSAGE bytes of UTF-8 JSON; a request may carry host
fds as SCM_RIGHTS (at most MAX_FDS), e.g. the stdio of `exec`.

| direction | message |
| --- | --- |
| request  | `{"id": N, "method": "start" \\| "kill" \\| "exec" \\| "wait_pid" \\| "ps" \\| ..., "params": {...}}` |
| reply    | `{"id": N, "result": ...}` or `{"id": N, "error": {"errno": E, "message": "..."}}` |

A connection carries any number of requests, answered in order of completion;
`wait_pid` is answered only when that process exits.  The server never blocks:
it reads with MSG_DONTWAIT when the loop says the socket is readable, and a
client that does not read its replies is disconnected.  Bad input (not JSON, an
unknown method, wrong types, too many fds) is an error reply, never an
exception in the Sentry; fds nobody took are closed.

Methods (the Sentry side is runtime/sentry_control.py):
  start                          the held init runs
  kill {signal, all}             signal the init (or, with all, every process)
  exec {args, env, cwd, uid, gid, groups, fd_numbers, tty} + fds   -> {pid}
                                 the fds become the process's fds fd_numbers (default:
                                 stdin, stdout, stderr); with tty, the terminal on its
                                 stdio is its session's (exec --tty)
  wait_pid {pid}                 -> {status}: the wait status of an exec'd process
  signal_process {pid, signal, session}   signal one exec'd process (session: and every
                                 process of its session)
  signal_foreground {pid, signal}   signal the foreground process group of the terminal
                                 of exec'd process pid (what its pty raised outside)
  ps                             -> [{pid, ppid, uid, gid, state, threads, comm, args,
                                     started (epoch seconds), utime_ns}]
  update {pids_limit}            the Sentry's task limit
  stats                          -> {tasks, processes}
  fs_read fs_write fs_stat fs_list fs_mkdir fs_symlink   file transfer (sentry_files.py)
"""

from __future__ import annotations

import array
import errno
import json
import logging
import os
import socket
from typing import Any, Callable

log = logging.getLogger("pyvisor.control")

MAX_MESSAGE = 64 * 1024
MAX_PRESERVE_FDS = 200          # exec --preserve-fds (SCM_RIGHTS carries at most 253 fds)
MAX_FDS = 3 + MAX_PRESERVE_FDS  # also a pod member's stdio and Gofers (runtime/pod.py)


class ControlError(Exception):
    """An error reply (or no reply: the Sentry is gone)."""

    def __init__(self, message: str, err: int = errno.EIO) -> None:
        super().__init__(message)
        self.errno = err


def listen(path: str) -> socket.socket:
    """Binds and listens at `path` (through /proc/self/fd: any length); non-blocking."""
    d = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
                          | socket.SOCK_NONBLOCK)
        try:
            s.bind(f"/proc/self/fd/{d}/{os.path.basename(path)}")
            os.chmod(path, 0o600)
            s.listen(16)
        except BaseException:
            s.close()
            raise
    finally:
        os.close(d)
    return s


class Client:
    """One connection to a Sentry's control socket."""

    def __init__(self, path: str, timeout: float | None = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self._next = 1
        try:
            d = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            self.sock.close()
            raise ControlError(f"no control socket: {e.strerror}", e.errno or errno.EIO) \
                from None
        try:
            self.sock.connect(f"/proc/self/fd/{d}/{os.path.basename(path)}")
        except OSError as e:
            self.sock.close()
            raise ControlError(f"the sandbox does not answer: {e.strerror or e}",
                               e.errno or errno.EIO) from None
        finally:
            os.close(d)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, method: str, params: dict[str, Any] | None = None,
             fds: list[int] | None = None) -> int:
        rid = self._next
        self._next += 1
        data = json.dumps({"id": rid, "method": method, "params": params or {}}).encode()
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] \
            if fds else []
        try:
            self.sock.sendmsg([data], anc)
        except OSError as e:
            raise ControlError(f"the sandbox does not answer: {e.strerror or e}",
                               e.errno or errno.EIO) from None
        return rid

    def receive(self, timeout: float | None = -1.0) -> dict[str, Any]:
        if timeout != -1.0:
            self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(MAX_MESSAGE)
        except socket.timeout:
            raise ControlError("the sandbox did not answer in time", errno.ETIMEDOUT) from None
        except OSError as e:
            raise ControlError(f"the sandbox does not answer: {e.strerror or e}",
                               e.errno or errno.EIO) from None
        if not data:
            raise ControlError("the sandbox closed the control connection", errno.ECONNRESET)
        try:
            msg = json.loads(data)
        except ValueError:
            raise ControlError("garbled reply from the sandbox") from None
        if not isinstance(msg, dict):
            raise ControlError("garbled reply from the sandbox")
        return msg

    def call(self, method: str, params: dict[str, Any] | None = None,
             fds: list[int] | None = None, timeout: float | None = -1.0) -> Any:
        """Sends a request and returns its result; raises ControlError for an error reply."""
        rid = self.send(method, params, fds)
        while True:
            msg = self.receive(timeout)
            if msg.get("id") == rid:
                break
        err = msg.get("error")
        if err is not None:
            e = err if isinstance(err, dict) else {}
            raise ControlError(str(e.get("message", "error")), int(e.get("errno", errno.EIO)))
        return msg.get("result")


def call(path: str, method: str, params: dict[str, Any] | None = None,
         timeout: float | None = 30.0) -> Any:
    with Client(path, timeout) as c:
        return c.call(method, params)


# -- the server (in the Sentry) ------------------------------------------------------------

Reply = Callable[[Any, "int | None", str], None]   # (result, errno or None, message)
Handler = Callable[["Connection", dict[str, Any], list[int], Reply], None]


class Connection:
    """One accepted client.  Owned by the Server; touched only from the Sentry loop."""

    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.closed = False
        self.on_close: list[Callable[[], None]] = []   # e.g. drop pending waits

    def reply(self, rid: Any, result: Any = None, err: int | None = None,
              message: str = "") -> None:
        if self.closed:
            return
        msg: dict[str, Any] = {"id": rid}
        if err is None:
            msg["result"] = result
        else:
            msg["error"] = {"errno": err, "message": message or os.strerror(err)}
        try:
            self.sock.send(json.dumps(msg).encode(), socket.MSG_DONTWAIT)
        except OSError as e:
            log.info("control: dropping a client that does not read (%s)", e)
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.kernel.unwatch_fd(self.sock.fileno())
        self.server.conns.discard(self)
        for cb in self.on_close:
            try:
                cb()
            except Exception:  # noqa: BLE001 - a callback must never stop the loop
                log.exception("control: close callback")
        self.on_close.clear()
        self.sock.close()


class Server:
    """Accepts control connections on the Sentry loop and dispatches requests."""

    def __init__(self, kernel: Any, listener: socket.socket,
                 handlers: dict[str, Handler]) -> None:
        self.kernel = kernel
        self.listener = listener
        self.handlers = handlers
        self.conns: set[Connection] = set()

    def start(self) -> None:
        self.kernel.watch_fd(self.listener.fileno(), 0x001, self._on_listen)   # EPOLLIN

    def close(self) -> None:
        for c in list(self.conns):
            c.close()
        self.kernel.unwatch_fd(self.listener.fileno())
        self.listener.close()

    def _on_listen(self, events: int) -> None:
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                log.warning("control: accept: %s", e)
                break
            conn = Connection(self, sock)
            self.conns.add(conn)
            self._watch(conn)
        self.kernel.watch_fd(self.listener.fileno(), 0x001, self._on_listen)

    def _watch(self, conn: Connection) -> None:
        if not conn.closed:
            self.kernel.watch_fd(conn.sock.fileno(), 0x001 | 0x010,     # EPOLLIN | EPOLLHUP
                                 lambda ev: self._on_readable(conn))

    def _on_readable(self, conn: Connection) -> None:
        try:
            data, anc, flags, _ = conn.sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(
                MAX_FDS * 4), socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            self._watch(conn)
            return
        except OSError:
            conn.close()
            return
        fds: list[int] = []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(payload[:len(payload) - len(payload) % 4])
                fds.extend(a)
        if not data:
            _close_all(fds)
            conn.close()
            return
        try:
            self._dispatch(conn, data, fds, flags)
        finally:
            self._watch(conn)

    def _dispatch(self, conn: Connection, data: bytes, fds: list[int], flags: int) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            msg = None
        rid = msg.get("id") if isinstance(msg, dict) else None
        if not isinstance(msg, dict) or not isinstance(msg.get("method"), str) or \
                not isinstance(msg.get("params", {}), dict):
            _close_all(fds)
            conn.reply(rid, err=errno.EINVAL, message="malformed request")
            return
        if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            _close_all(fds)
            conn.reply(rid, err=errno.E2BIG, message="request or fds too large")
            return
        handler = self.handlers.get(msg["method"])
        if handler is None:
            _close_all(fds)
            conn.reply(rid, err=errno.ENOSYS, message=f"unknown method {msg['method']!r}")
            return

        def reply(result: Any, err: int | None = None, message: str = "") -> None:
            conn.reply(rid, result, err, message)
        try:
            handler(conn, msg.get("params") or {}, fds, reply)
        except (TypeError, ValueError, KeyError) as e:
            _close_all(fds)
            reply(None, errno.EINVAL, f"bad parameters: {e}")
        except Exception as e:  # noqa: BLE001 - a control bug must not stop the sandbox
            log.exception("control: %s failed", msg["method"])
            _close_all(fds)
            reply(None, errno.EIO, f"internal error: {e!r}")


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()
