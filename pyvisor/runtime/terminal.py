"""Container terminals: process.terminal with --console-socket, and exec --tty.
runc: the console socket (libcontainer/utils/cmsg.go SendRawFd, setupConsole in
libcontainer/init_linux.go, tty.go); runsc: console.NewWithSocket and the TTY of an
exec'd process (its host TTY file, signals to the foreground process group).

The terminal is a host pty that pyvisor's CLI makes (`new_pty`), sized by
process.consoleSize:

* Its master goes to the engine over the AF_UNIX stream socket that
  --console-socket names, in runc's exact message (`send_master`): one sendmsg
  whose data is the name "/dev/ptmx" and whose one SCM_RIGHTS fd is the master.
  containerd's shim (go-runc's ReceiveMaster) and podman's conmon (recvfd) read
  it with recvmsg and insist on exactly one fd.  pyvisor keeps no copy: from
  then on the engine's process alone holds the master, for as long as the
  container lives, whatever becomes of the CLI.
* For a container's init (create, run) the slave becomes the Sentry's stdio and
  controlling terminal (console.take_terminal, in the forked Sentry): the pty's
  line discipline signals the Sentry (^C, ^\\, ^Z typed into the master,
  SIGWINCH when the engine resizes the master with TIOCSWINSZ, SIGHUP when the
  master is closed) and the Sentry forwards each to the sandbox's foreground
  process group (console.forward_signals), as the pty would.  The application's
  termios and window-size ioctls act on the slave (fsimpl/host).
* For an exec'd process the Sentry has a controlling terminal already (or
  none it may take), so a small holder process outside the sandbox leads the
  pty's session (`lead_session`): the `exec` CLI's child, which waits for the
  process and exits with its status (its pid is the one --pid-file names for
  `exec --detach`, as with runsc).  It forwards what the pty signals it to the
  foreground process group of that terminal in the sandbox (control method
  signal_foreground); inside, the exec'd process leads a session of its own
  with the pty as its terminal and itself in the foreground.

Without --console-socket, a foreground `run` or `exec --tty` uses the caller's
terminal through runtime/console.py (the launcher copies between it and the
pty), as runc's foreground run and exec copy between their terminal and the pty.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import signal
import socket
import struct
import termios
from typing import Iterator

from pyvisor.runtime.errors import BootError

PTMX_NAME = b"/dev/ptmx"      # runc sends the master's file name: "/dev/ptmx"
_WINSZ = struct.Struct("HHHH")

# What a pty raises for its session and the holder passes on; and the signals an
# engine sends the holder (conmon and the shim signal the exec pid they know).
HOLDER_FORWARDED = (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGWINCH,
                    signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def new_pty(size: tuple[int, int] | None) -> tuple[int, int]:
    """A fresh host pty (master, slave), close-on-exec, with window size `size` (rows,
    columns) when it has both (consoleSize; runc skips a zero one)."""
    master, slave = os.openpty()
    if size is not None and size[0] and size[1]:
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, _WINSZ.pack(size[0], size[1], 0, 0))
        except OSError:
            pass
    return master, slave


def connect(path: str) -> socket.socket:
    """A connection to the engine's console socket (through /proc/self/fd: any length)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        d = os.open(os.path.dirname(os.path.abspath(path)) or "/",
                    os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            s.connect(f"/proc/self/fd/{d}/{os.path.basename(path)}")
        finally:
            os.close(d)
    except OSError as e:
        s.close()
        raise BootError(f"console socket {path!r}: {e.strerror or e}", 1) from None
    return s


def send_master(sock: socket.socket, master: int, path: str) -> None:
    """runc's message: data "/dev/ptmx", one SCM_RIGHTS fd (the master)."""
    try:
        sock.sendmsg([PTMX_NAME], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    array.array("i", [master]).tobytes())])
    except OSError as e:
        raise BootError(f"console socket {path!r}: {e.strerror or e}", 1) from None


def pty_for_socket(path: str, size: tuple[int, int] | None) -> int:
    """Makes the terminal, sends its master to `path`; returns the slave (ours to close)."""
    sock = connect(path)
    try:
        master, slave = new_pty(size)
        try:
            send_master(sock, master, path)
        except BaseException:
            os.close(slave)
            raise
        finally:
            os.close(master)
    finally:
        sock.close()
    return slave


def lead_session(slave: int) -> None:
    """In the exec holder: a session of its own with the pty as controlling terminal,
    so the pty's signals (and only its) come here to be forwarded."""
    with contextlib.suppress(OSError):
        os.setsid()                 # already a session leader (exec --detach's child)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)


@contextlib.contextmanager
def forwarding_to_foreground(control_path: str, pid: int) -> Iterator[None]:
    """In the exec holder: HOLDER_FORWARDED to the foreground process group of exec'd
    process `pid`'s terminal inside the sandbox."""
    from pyvisor.runtime import control

    def forward(sig: int, frame: object) -> None:
        with contextlib.suppress(control.ControlError):
            control.call(control_path, "signal_foreground", {"pid": pid, "signal": sig}, 5.0)
    old = {s: signal.signal(s, forward) for s in HOLDER_FORWARDED}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
