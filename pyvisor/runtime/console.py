"""The sandbox's terminal: a pty of its own, proxied to the user's terminal.

runsc: process.terminal (console.go, the host TTY of fsimpl/host and the
loader's forwarding of signals to the foreground process group); also what
`docker run -t`, ssh and script(1) do.  When the caller's stdin, stdout or
stderr is a terminal, the launcher (`open_console`, before confinement)
makes a pseudo-terminal for the sandbox:

* the Sentry becomes a session leader with the pty's slave as its
  controlling terminal and serves the application's stdio and terminal
  ioctls on that slave (fsimpl/host): termios, window size, TCXONC, TCFLSH
  and TCSBRK act on the sandbox's own pty, never on the user's terminal;
  TIOCSPGRP/TIOCGPGRP are emulated (a virtual foreground group);
  TIOCSCTTY/TIOCNOTTY do nothing; TIOCSTI, TIOCCONS and other requests are
  ENOTTY;
* the launcher copies bytes between the user's terminal and the pty's
  master (`Console.serve`), with the user's terminal in raw mode while it
  does (only when the launcher is in the terminal's foreground process
  group), and passes window-size changes (SIGWINCH) on to the pty;
* ^C, ^\\, ^Z typed by the user reach the pty's line discipline, which
  signals the Sentry (the pty's foreground group); the Sentry forwards them
  to the sandbox's foreground process group (`forward_signals`), as runsc
  does; so do SIGWINCH and the signals the launcher forwards;
* the user's terminal modes are saved first and restored when the sandbox
  ends, however it ends: by the launcher (program exit, program killed by
  a signal, Sentry killed, SIGTERM/SIGINT/SIGHUP to the launcher, an
  exception), around a SIGTSTP of the launcher, and by a small guard
  process if the launcher itself is SIGKILLed (`_start_guard`).

Only termios is ever changed on the user's terminal (raw mode and back):
never its window size, flow control, queues or process groups.
Concurrency: the launcher is single-threaded; signal handlers only note the
signal (the wake-up fd) except SIGTSTP, which restores the modes first.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import struct
import termios
import tty
from typing import Any, Sequence

_WINSZ = struct.Struct("HHHH")
_CHUNK = 65536
_MAX_PENDING = 1 << 20     # typed input not yet taken by the pty


def _tty_rdev(fd: int) -> int | None:
    """The device number of the terminal on fd, or None if fd is not a terminal."""
    try:
        if not os.isatty(fd):
            return None
        return os.fstat(fd).st_rdev
    except OSError:
        return None


def _winsize(fd: int) -> bytes | None:
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(_WINSZ.size))
    except OSError:
        return None


class Console:
    """The sandbox's pty and the user's terminal(s) it stands for.  Owned by the launcher."""

    def __init__(self, stdio: Sequence[int], rdevs: list[int | None],
                 whole: bool = False) -> None:
        """`whole` (process.terminal): the pty is all of the sandbox's stdio, as runc's
        foreground terminal: the user's stdin is copied in (a pipe too) and the pty's
        output goes to stdout, whichever of them are terminals."""
        self.stdio = tuple(stdio)
        # Stdio fds the slave replaces.
        self.replaced = tuple(whole or r is not None for r in rdevs)
        # What we read from (stdin) and write to.
        self.in_fd: int | None = stdio[0] if rdevs[0] is not None or (whole and stdio[0] >= 0) \
            else None
        self.in_is_tty = rdevs[0] is not None
        self.out_fd: int = stdio[1] if whole and stdio[1] >= 0 else \
            next(stdio[i] for i in (1, 2, 0) if rdevs[i] is not None)
        # The user's terminal whose modes and size the pty takes.
        self.model_fd = next(stdio[i] for i in (0, 1, 2) if rdevs[i] is not None)
        # One saved mode per terminal (several fds may reach one terminal).
        self.saved: dict[int, tuple[int, list[Any]]] = {}
        for fd, rdev in zip(stdio, rdevs):
            if rdev is not None and rdev not in self.saved:
                try:
                    self.saved[rdev] = (fd, termios.tcgetattr(fd))
                except termios.error:
                    pass
        self.raw = False
        self.guard: tuple[int, int] | None = None      # (pid, write end of its pipe)
        self.master, self.slave = os.openpty()
        try:
            self._start_guard()
        except OSError:
            os.close(self.master)
            os.close(self.slave)
            raise
        try:
            termios.tcsetattr(self.slave, termios.TCSANOW, termios.tcgetattr(self.model_fd))
        except termios.error:
            pass
        self._copy_winsize()

    # -- the user's terminal -------------------------------------------------------------

    def _foreground(self, fd: int) -> bool:
        try:
            return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            return False

    def _enter_raw(self) -> None:
        """Raw mode on the input terminal (clear OPOST on an output-only one), if ours."""
        if self.raw:
            return
        in_rdev = _tty_rdev(self.in_fd) if self.in_fd is not None else None
        changed = False
        for rdev, (fd, mode) in self.saved.items():
            if not self._foreground(fd):
                continue
            try:
                if rdev == in_rdev:
                    tty.setraw(fd, termios.TCSANOW)
                else:
                    # Output only: the pty already did the output processing; keep
                    # ISIG so that ^C at this terminal still signals the launcher.
                    new = termios.tcgetattr(fd)
                    new[1] &= ~termios.OPOST
                    termios.tcsetattr(fd, termios.TCSANOW, new)
                changed = True
            except termios.error:
                pass
        if changed:
            self.raw = True
            self._tell_guard(b"r")

    def restore(self) -> None:
        """Puts every user terminal back in the mode it had when the sandbox started.

        Only if we changed it: a launcher that never went raw (in the background)
        leaves the terminal to its foreground, which may have changed it since.
        """
        if not self.raw:
            return
        self._set_saved_modes()
        self.raw = False
        self._tell_guard(b"c")

    def _set_saved_modes(self) -> None:
        for fd, mode in self.saved.values():
            try:
                termios.tcsetattr(fd, termios.TCSANOW, mode)
            except termios.error:
                pass

    def _reading_input(self) -> bool:
        return self.in_fd is not None and (not self.in_is_tty or self._foreground(self.in_fd))

    def _copy_winsize(self) -> None:
        ws = _winsize(self.model_fd)
        if ws is not None:
            try:
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, ws)
            except OSError:
                pass

    # -- the guard: restores the modes if the launcher is SIGKILLed --------------------------

    def _start_guard(self) -> None:
        """Forks a process that restores the saved modes when the launcher dies first.

        It follows the launcher on a pipe: b"r" when the launcher puts a terminal
        in raw mode, b"c" when it restores, b"x" when it is done; EOF after an
        b"r" means the launcher died in raw mode (SIGKILL), so the guard
        restores.  It ignores terminal and termination signals, is
        in a process group of its own (so a kill of the job's group spares it),
        and may set modes from the background because SIGTTOU is ignored.
        """
        if not self.saved:
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:    # the guard
            try:
                # Nothing but its pipe and the terminals (stdio): no pty end, and none of
                # the container's fds (--preserve-fds), whose readers wait for EOF.
                low = 3
                for keep in sorted({r, *(fd for fd, _ in self.saved.values())}):
                    if keep >= low:
                        os.closerange(low, keep)
                        low = keep + 1
                os.closerange(low, _open_max())
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                            signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH):
                    signal.signal(sig, signal.SIG_IGN)
                os.setpgid(0, 0)
                raw = False
                while True:
                    try:
                        data = os.read(r, 1)
                    except InterruptedError:
                        continue
                    if data in (b"", b"x"):
                        break
                    raw = data == b"r"
                if not data and raw:
                    self._set_saved_modes()
            finally:
                os._exit(0)
        os.close(r)
        self.guard = (pid, w)

    def _tell_guard(self, what: bytes) -> None:
        if self.guard is not None:
            try:
                os.write(self.guard[1], what)
            except OSError:
                pass

    def _stop_guard(self) -> None:
        if self.guard is None:
            return
        pid, w = self.guard
        self.guard = None
        try:
            os.write(w, b"x")      # restored already: the guard leaves the modes alone
        except OSError:
            pass
        os.close(w)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    # -- the two sides -----------------------------------------------------------------------

    def attach_sentry(self) -> None:
        """In the Sentry's process, before anything else: the pty becomes its terminal.

        A new session with the slave as controlling terminal (so ^C & co. signal the
        Sentry, which forwards them), and the slave in place of each stdio fd that was
        a terminal.  The master and the guard's pipe stay with the launcher.
        """
        os.close(self.master)
        if self.guard is not None:
            os.close(self.guard[1])
            self.guard = None
        take_terminal(self.slave, [fd for fd, r in zip(self.stdio, self.replaced) if r])

    def serve(self, pid: int) -> int:
        """In the launcher: copies between the user's terminal and the pty until the
        Sentry `pid` exits; returns its wait status.  The user's terminal is restored
        before this returns (and the guard stopped)."""
        os.close(self.slave)
        os.set_blocking(self.master, False)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        noted = (signal.SIGCHLD, signal.SIGWINCH, signal.SIGCONT)
        old = {sig: signal.signal(sig, _note) for sig in noted}
        old[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, self._on_tstp)
        try:
            self._enter_raw()
            status = self._copy_until_exit(pid, wake_r)
            self._drain()
            return status
        finally:
            self.restore()
            self._stop_guard()
            signal.set_wakeup_fd(old_wakeup)
            for sig, h in old.items():
                signal.signal(sig, h)
            for fd in (wake_r, wake_w, self.master):
                os.close(fd)

    def close_unused(self) -> None:
        """The launcher failed before serve(): restore and release everything."""
        self.restore()
        self._stop_guard()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def _on_tstp(self, sig: int, frame: object) -> None:
        """SIGTSTP to the launcher: restore the terminal, stop, and go raw again after."""
        self.restore()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)
        # ... stopped here until SIGCONT.
        signal.signal(signal.SIGTSTP, self._on_tstp)
        self._enter_raw()

    def _copy_until_exit(self, pid: int, wake_r: int) -> int:
        pending = b""          # typed input the pty has not taken yet
        master_open = True
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            reading = self._reading_input() and len(pending) < _MAX_PENDING
            rlist = [wake_r] + ([self.master] if master_open else [])
            if reading:
                assert self.in_fd is not None
                rlist.append(self.in_fd)
            wlist = [self.master] if pending and master_open else []
            r, w, _ = select.select(rlist, wlist, [])
            if wake_r in r:
                sigs = _drain_fd(wake_r)
                if signal.SIGWINCH in sigs:
                    self._copy_winsize()
                if signal.SIGCONT in sigs:
                    self._enter_raw()       # back in the foreground, perhaps
            if self.master in r:
                master_open = self._pump_output()
            if self.in_fd is not None and self.in_fd in r:
                try:
                    data = os.read(self.in_fd, _CHUNK)
                except OSError:
                    data = b""
                if data:
                    pending += data
                else:
                    self.in_fd = None       # the user's terminal hung up
            if self.master in w:
                try:
                    n = os.write(self.master, pending)
                    pending = pending[n:]
                except BlockingIOError:
                    pass
                except OSError:
                    pending = b""

    def _pump_output(self) -> bool:
        """Copies what the pty has for the user; False once the pty is closed."""
        try:
            data = os.read(self.master, _CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            return False        # EIO: every slave fd is closed
        if not data:
            return False
        _write_all(self.out_fd, data)
        return True

    def _drain(self) -> None:
        """After the Sentry exited: what the pty still holds goes to the user.

        Reads first, polls only on EAGAIN: data the slave wrote last may still be
        in the pty's flip buffer, which poll does not see but read flushes; once
        every slave fd is closed, read gives that data and then EIO.  EAGAIN
        means something still holds the slave: wait a little, then give up.
        """
        while True:
            try:
                data = os.read(self.master, _CHUNK)
            except BlockingIOError:
                r, _, _ = select.select([self.master], [], [], 0.2)
                if not r:
                    return
                continue
            except OSError:
                return          # EIO: all of it was read
            if not data:
                return
            _write_all(self.out_fd, data)


def _open_max() -> int:
    import resource
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if 0 < soft < 1 << 20 else 1 << 20


def _note(sig: int, frame: object) -> None:
    """A handler that does nothing: the wake-up fd carries the signal to the loop."""


def _drain_fd(fd: int) -> set[int]:
    sigs: set[int] = set()
    while True:
        try:
            data = os.read(fd, 512)
        except (BlockingIOError, InterruptedError):
            return sigs
        if not data:
            return sigs
        sigs.update(data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except OSError as e:
            if e.errno in (errno.EIO, errno.EBADF, errno.EPIPE):
                return          # the user's terminal is gone: drop the output
            raise
        view = view[n:]


def open_console(stdio: Sequence[int], whole: bool = False) -> Console | None:
    """A console for the sandbox if any of `stdio` is a terminal, else None.
    `whole`: the pty stands for all of stdio (process.terminal; see Console).

    Preconditions: called in the launcher before the PID namespace is unshared
    (the guard process must not become the namespace's init) and before the
    Sentry is forked.
    """
    rdevs = [_tty_rdev(fd) for fd in stdio]
    if not any(r is not None for r in rdevs):
        return None
    try:
        return Console(stdio, rdevs, whole)
    except OSError as e:
        # Never fall back to handing the user's terminal to the sandbox.
        from pyvisor.runtime.boot import BootError
        raise BootError(f"cannot make the sandbox's terminal: {e.strerror or e}", 125) \
            from None


# -- the Sentry's side ----------------------------------------------------------------------

# Host signals the Sentry passes on to the sandbox's foreground process group: those the
# launcher forwards and, with a console, those its pty generates (^C, ^\, ^Z, resizes).
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
CONSOLE_FORWARDED = (signal.SIGTSTP, signal.SIGWINCH)

# True in a Sentry process whose controlling terminal is the sandbox's pty (set by
# take_terminal; a fact about this process, which runs one kernel), and that pty's
# host device number (its TTYState holds the sandbox's foreground process group).
_sentry_has_console = False
_sentry_console_rdev: int | None = None


def take_terminal(slave: int, stdio: Sequence[int]) -> None:
    """In the Sentry's process, before anything else: the pty `slave` becomes its terminal.

    A new session with the slave as controlling terminal (so ^C, ^Z, hang-ups and
    resizes signal the Sentry, which forwards them), and the slave in place of each
    fd of `stdio`.  `slave` is closed unless it is one of them.  Used for the launcher's
    console (Console.attach_sentry) and for the pty sent to --console-socket
    (runtime/terminal.py), as runc's init makes the pty's slave its stdio and ctty.
    """
    global _sentry_has_console, _sentry_console_rdev
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in stdio:
        os.dup2(slave, fd)
    _sentry_console_rdev = os.fstat(slave).st_rdev
    if slave not in stdio:
        os.close(slave)
    _sentry_has_console = True


def sandbox_terminal(stdio: Sequence[Any]) -> Any:
    """The inode /dev/tty opens in the sandbox: its console's, if it has one (else None).

    `stdio` are the sandbox's stdio descriptions (None for a closed one).  Only
    the sandbox's own pty qualifies, never a terminal of the user's.
    """
    from pyvisor.sentry.fsimpl.host.host import HostInode
    if not _sentry_has_console:
        return None
    for f in stdio:
        if f is not None and isinstance(f.inode, HostInode) and f.inode.is_tty:
            return f.inode
    return None


def forward_signals(kernel: Any) -> None:
    """Installs, in the Sentry, the handlers that pass FORWARDED to the sandbox.

    They go to the foreground process group the sandbox set on its terminal
    (TIOCSPGRP), else to the init process's group, as runsc's loader does for
    a container with a TTY.  With a console, ^Z and resizes are forwarded
    too and SIGTTIN/SIGTTOU are ignored: the Sentry itself never stops for
    its terminal.  (Without one, a SIGTSTP stops the Sentry with the
    launcher, as before.)
    """
    from pyvisor.sentry.fsimpl.host.host import foreground_pgrp, tty_state
    from pyvisor.sentry.kernel import signal as ksignal

    def forward(sig: int, frame: object) -> None:
        init = kernel.init
        if init is None or init.zombie:
            return
        # The console's foreground group; without a console, that of a terminal the
        # sandbox was given as stdio (create from a terminal, without process.terminal).
        pgid = tty_state(_sentry_console_rdev).fg_pgrp if _sentry_console_rdev is not None \
            else foreground_pgrp(kernel)
        targets = [g for g in list(kernel.groups.values())
                   if pgid is not None and g.pgid == pgid and not g.zombie]
        if not targets:
            targets = [g for g in list(kernel.groups.values())
                       if (g.pgid == init.pgid or g is init) and not g.zombie]
        for g in targets:
            ksignal.send_to_group(g, ksignal.SigInfo(sig, 0))

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def woken(events: int) -> None:
        _drain_fd(wake_r)
        kernel.watch_fd(wake_r, select.EPOLLIN, woken)
    kernel.watch_fd(wake_r, select.EPOLLIN, woken)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for sig in FORWARDED:
        signal.signal(sig, forward)
    if _sentry_has_console:
        for sig in CONSOLE_FORWARDED:
            signal.signal(sig, forward)
        for sig in (signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)
