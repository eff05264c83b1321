"""Pseudo-terminals made inside the sandbox: /dev/ptmx, /dev/pts/N, controlling terminals.

Linux: drivers/tty/pty.c, tty_io.c (open, hang-up), tty_jobctrl.c (controlling
terminals and job control), fs/devpts; gVisor: pkg/sentry/fsimpl/devpts.

Opening /dev/ptmx (or /dev/pts/ptmx) makes a `Pty`: a master (the open
description) and a slave named /dev/pts/N (the lowest N free, skipping the
names the console and `exec --tty` terminals hold), owned by the opener with
gid tty (5) and mode 0620 (what grantpt leaves), locked until TIOCSPTLCK(0).
Data flows through the pair's `LineDiscipline` (ldisc.py).  The name goes
when the master closes (devpts_pty_kill); the index is free again when both
ends are gone.

Controlling terminals: Linux keeps signal->tty per process; here a pty
records the session it controls (`Pty.session`) and the registry maps a
session to its terminal, which /dev/tty opens (devfs.TtyDevice asks
`Registry.terminal_of`).  A session made by setsid() inside has no terminal
until its leader opens a slave without O_NOCTTY or uses TIOCSCTTY; the
sandbox's first session keeps the console (runtime/console.py: a host pty
whose line discipline is the host's).  A non-leader's TIOCNOTTY detaches just
that process (`detached`).

Job control (__tty_check_change): a process of the terminal's session that is
not in its foreground group gets SIGTTIN for reading, SIGTTOU for changing
the terminal (and for writing with TOSTOP), and the call restarts once it is
continued; with the signal ignored or blocked a read is EIO and a write goes
ahead; an orphaned group gets EIO.
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
import weakref
from typing import TYPE_CHECKING, Any

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.signal import SI_KERNEL, SIG_IGN, Signal, sigmask
from pyvisor.abi.linux.stat import S_IFCHR
from pyvisor.sentry.errors import Interrupted, SyscallError, WouldBlock
from pyvisor.sentry.fsimpl.devpts import ldisc as ld
from pyvisor.sentry.kernel import signal as ksignal
from pyvisor.sentry.kernel.memacct import Kind
from pyvisor.sentry.vfs.file import FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import Filesystem, Inode
from pyvisor.sentry.waitqueue import (EVENT_ERR, EVENT_HUP, EVENT_IN, EVENT_OUT,
                                       EVENT_PRI, WaitQueue)

if TYPE_CHECKING:
    from pyvisor.sentry.kernel.task import Task, ThreadGroup

# Device numbers.  From Documentation/admin-guide/devices.txt.
TTYAUX_MAJOR, PTMX_MINOR = 5, 2
UNIX98_PTY_SLAVE_MAJOR = 136
TTY_GID = 5                # devpts's gid=5 (Debian's "tty" group, as mounted by runc)
MAX_PTYS = 4096            # Linux's default /proc/sys/kernel/pty/max
# What one pty may hold: its queues' bounds and its objects (charged to the Sentry).
PTY_COST = ld.PENDING_MAX + ld.OUTQ_MAX + 2 * ld.N_TTY_BUF_SIZE + 4096

# Terminal ioctls.  From <asm-generic/ioctls.h>.
TCGETS, TCSETS, TCSETSW, TCSETSF = 0x5401, 0x5402, 0x5403, 0x5404
TCSBRK, TCXONC, TCFLSH = 0x5409, 0x540A, 0x540B
TIOCEXCL, TIOCNXCL, TIOCSCTTY, TIOCGPGRP, TIOCSPGRP = 0x540C, 0x540D, 0x540E, 0x540F, 0x5410
TIOCOUTQ, TIOCSTI, TIOCGWINSZ, TIOCSWINSZ = 0x5411, 0x5412, 0x5413, 0x5414
FIONREAD = 0x541B          # also TIOCINQ
TIOCPKT, TIOCNOTTY, TIOCSETD, TIOCGETD = 0x5420, 0x5422, 0x5423, 0x5424
TCSBRKP, TIOCGSID = 0x5425, 0x5429
TCGETS2, TCSETS2, TCSETSW2, TCSETSF2 = 0x802C542A, 0x402C542B, 0x402C542C, 0x402C542D
TIOCGPTN, TIOCSPTLCK, TIOCGPTLCK, TIOCGPKT = 0x80045430, 0x40045431, 0x80045439, 0x80045438
TIOCGEXCL, TIOCVHANGUP, TIOCGPTPEER = 0x80045440, 0x5437, 0x5441
TIOCGLCKTRMIOS, TIOCSLCKTRMIOS = 0x5456, 0x5457
TCOOFF, TCOON, TCIOFF, TCION = 0, 1, 2, 3
TCIFLUSH, TCOFLUSH, TCIOFLUSH = 0, 1, 2

_I32 = struct.Struct("<i")
_CAP_SYS_ADMIN = 21
_O_NOCTTY, _O_ACCMODE, _O_NONBLOCK, _O_CLOEXEC = 0o400, 0o3, 0o4000, 0o2000000
_O_LARGEFILE = 0o100000


def _encode_dev(major: int, minor: int) -> int:
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


# -- the registry: ptys and controlling terminals -----------------------------------------


class Registry:
    """One kernel's ptys, and which terminal each session controls."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.ptys: dict[int, Pty] = {}
        self.sessions: dict[int, Inode] = {}          # sid -> its controlling terminal
        self.no_tty: set[int] = set()                 # sessions made inside, without one
        self.detached: weakref.WeakSet[Any] = weakref.WeakSet()   # TIOCNOTTY'd processes
        self.console: Inode | None = None             # the first session's (devfs)
        self.pts_dir: Any = None                      # devfs's /dev/pts (a TmpfsDir)

    def terminal_of(self, tg: ThreadGroup) -> Inode | None:
        """The process's controlling terminal (what /dev/tty opens)."""
        if tg in self.detached:
            return None
        term = self.sessions.get(tg.sid)
        if term is None and tg.sid not in self.no_tty:
            term = self.console
        return term

    def controls(self, tg: ThreadGroup, pty: Pty) -> bool:
        return pty.session is not None and pty.session == tg.sid and tg not in self.detached

    def set_session_terminal(self, sid: int, inode: Inode | None) -> None:
        if inode is None:
            self.sessions.pop(sid, None)
        else:
            self.sessions[sid] = inode
            self.no_tty.discard(sid)

    def new_session(self, tg: ThreadGroup) -> None:
        """setsid(): the new session has no controlling terminal."""
        self.sessions.pop(tg.sid, None)
        self.no_tty.add(tg.sid)
        self.detached.discard(tg)
        for p in self.ptys.values():
            if p.session == tg.sid:       # a stale session id being reused
                p.session = p.fg_pgrp = None

    def clear_session(self, sid: int) -> None:
        """Every process of session `sid` loses its terminal (session_clear_tty)."""
        self.sessions.pop(sid, None)
        self.no_tty.add(sid)

    def free_index(self) -> int:
        used = set(self.ptys)
        entries = getattr(self.pts_dir, "entries", {})
        for n in range(MAX_PTYS):
            if n not in used and str(n).encode() not in entries:
                return n
        raise SyscallError(Errno.ENOSPC)


def registry(kernel: Any) -> Registry:
    """The kernel's registry, made on first use (kept on the kernel object)."""
    reg = getattr(kernel, "_devpts", None)
    if reg is None:
        reg = Registry(kernel)
        setattr(kernel, "_devpts", reg)
    return reg


def _existing(kernel: Any) -> Registry | None:
    return getattr(kernel, "_devpts", None)


def new_session(tg: ThreadGroup) -> None:
    """sys_setsid's hook: the new session starts without a terminal."""
    reg = _existing(tg.kernel)
    if reg is not None:
        reg.new_session(tg)


def session_leader_exit(tg: ThreadGroup) -> None:
    """A session leader died (disassociate_ctty(1)): the foreground group of the pty it
    controlled gets SIGHUP, and the session loses its terminal."""
    reg = _existing(tg.kernel)
    if reg is None:
        return
    for p in list(reg.ptys.values()):
        if p.session == tg.sid:
            fg = p.fg_pgrp
            p.session = p.fg_pgrp = None
            reg.clear_session(tg.sid)
            if fg is not None:
                _kill_pgrp(tg.kernel, fg, Signal.SIGHUP)


# -- process-group helpers ---------------------------------------------------------------


def _kill_pgrp(kernel: Any, pgid: int, sig: int) -> None:
    info = ksignal.SigInfo(sig, SI_KERNEL)
    for g in list(kernel.groups.values()):
        if g.pgid == pgid and not g.zombie:
            ksignal.send_to_group(g, info)


def _orphaned(kernel: Any, pgid: int) -> bool:
    """Linux: will_become_orphaned_pgrp(pgrp, NULL): no member has a parent in another
    group of the same session (init does not count)."""
    for g in kernel.groups.values():
        if g.pgid != pgid or g.zombie:
            continue
        p = g.parent
        if p is not None and p.pgid != pgid and p.sid == g.sid and p.tgid != 1 \
                and not getattr(p, "pod_init", False):
            return False
    return True


def _sig_blocked_or_ignored(t: Task, sig: int) -> bool:
    return bool(t.sigmask & sigmask(sig)) or t.tg.sighand.actions[sig].handler == SIG_IGN


# -- the pair ---------------------------------------------------------------------------


class Pty:
    """One pseudo-terminal pair.  Linux: the two tty_structs of a pty and their link."""

    def __init__(self, reg: Registry, index: int, uid: int, pts_dentry: Any,
                 mount: Any) -> None:
        self.reg = reg
        self.kernel = reg.kernel
        self.index = index
        self.name = str(index).encode()
        self.ldisc = ld.LineDiscipline(self._signal_fg, self._input_changed,
                                       self._output_changed)
        self.master_q = WaitQueue()
        self.slave_q = WaitQueue()
        self.master_opens = 0
        self.slave_opens = 0
        self.slave_opened = False       # TTY_OTHER_CLOSED only once the slave has been open
        self.locked = True              # TIOCSPTLCK
        self.hung_up = False            # the master is gone (tty_vhangup of the slave)
        self.packet = False             # TIOCPKT
        self.exclusive = False          # TIOCEXCL
        self.session: int | None = None
        self.fg_pgrp: int | None = None
        self.pts_dentry = pts_dentry
        self.mount = mount
        self.acct: Any = None             # the Sentry memory account charged PTY_COST
        self.inode = PtsInode(reg.pts_dir.fs if reg.pts_dir is not None else _PtsFS(),
                              self, uid)

    # -- line-discipline callbacks ------------------------------------------------------

    def _signal_fg(self, sig: int) -> None:
        if self.fg_pgrp is not None:
            _kill_pgrp(self.kernel, self.fg_pgrp, sig)

    def _input_changed(self) -> None:
        self.slave_q.notify(EVENT_IN)
        self.master_q.notify(EVENT_OUT)

    def _output_changed(self) -> None:
        self.master_q.notify(EVENT_IN)
        self.slave_q.notify(EVENT_OUT)

    # -- state ------------------------------------------------------------------------------

    @property
    def other_closed(self) -> bool:
        """The master's TTY_OTHER_CLOSED: the slave was open and is not any more."""
        return self.slave_opened and self.slave_opens == 0

    def master_closed(self) -> None:
        """The last master description went: the slave hangs up (pty_close)."""
        self.hung_up = True
        reg = self.reg
        if self.session is not None:
            sid = self.session
            for g in list(self.kernel.groups.values()):
                if g.tgid == sid and g.sid == sid and not g.zombie:
                    ksignal.send_to_group(g, ksignal.SigInfo(Signal.SIGHUP, SI_KERNEL))
                    ksignal.send_to_group(g, ksignal.SigInfo(Signal.SIGCONT, SI_KERNEL))
            if reg.sessions.get(sid) is self.inode:
                reg.clear_session(sid)
            self.session = self.fg_pgrp = None
        self._unlink()
        self.slave_q.notify(EVENT_IN | EVENT_OUT | EVENT_HUP | EVENT_ERR)
        self._maybe_free()

    def slave_closed(self) -> None:
        if self.slave_opens == 0:
            self.master_q.notify(EVENT_IN | EVENT_HUP)
            self._maybe_free()

    def _unlink(self) -> None:
        d = self.reg.pts_dir
        if d is not None and d.entries.get(self.name) is self.inode:
            d.remove_child(self.name)
            if self.pts_dentry is not None:
                self.pts_dentry.forget(self.name)

    def _maybe_free(self) -> None:
        if self.master_opens == 0 and self.slave_opens == 0:
            if self.reg.ptys.get(self.index) is self:
                del self.reg.ptys[self.index]
            if self.acct is not None:
                self.acct.uncharge(Kind.TTY, PTY_COST)
                self.acct = None

    def open_slave(self, t: Task | None, flags: int) -> FileImpl:
        """An open of /dev/pts/N (pty_open; tty_open's controlling-terminal rule)."""
        if self.hung_up or self.master_opens == 0:
            raise SyscallError(Errno.EIO)
        if self.locked:
            raise SyscallError(Errno.EIO)
        if self.exclusive and t is not None and not t.creds.capable(_CAP_SYS_ADMIN):
            raise SyscallError(Errno.EBUSY)
        impl = SlaveImpl(self)
        if t is not None and not flags & _O_NOCTTY:
            tg = t.tg
            reg = self.reg
            if tg.sid == tg.tgid and reg.terminal_of(tg) is None and self.session is None:
                self._acquire(tg)
        return impl

    def _acquire(self, tg: ThreadGroup) -> None:
        """proc_set_tty: the terminal now controls tg's session, tg's group in front."""
        self.session = tg.sid
        self.fg_pgrp = tg.pgid
        self.reg.set_session_terminal(tg.sid, self.inode)
        self.reg.detached.discard(tg)


class _PtsFS(Filesystem):
    name = "devpts"


class PtsInode(Inode):
    """/dev/pts/N: the slave's device node (devpts_pty_new)."""

    __slots__ = ("pty",)

    def __init__(self, fs: Filesystem, pty: Pty, uid: int) -> None:
        super().__init__(fs, S_IFCHR | 0o620, uid, TTY_GID)
        self.rdev = _encode_dev(UNIX98_PTY_SLAVE_MAJOR + pty.index // 256, pty.index % 256)
        self.pty = pty

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        t = getattr(self.pty.kernel, "current", None)
        return self.pty.open_slave(t, flags)

    def truncate(self, size: int) -> None:
        """O_TRUNC on a terminal is ignored."""


class PtmxDevice(Inode):
    """/dev/ptmx and /dev/pts/ptmx: each open makes a new pty (ptmx_open)."""

    __slots__ = ("kernel",)

    def __init__(self, fs: Filesystem, kernel: Any, perm: int = 0o666) -> None:
        super().__init__(fs, S_IFCHR | perm)
        self.rdev = _encode_dev(TTYAUX_MAJOR, PTMX_MINOR)
        self.kernel = kernel

    def open(self, fd: FileDescription, flags: int) -> FileImpl:
        reg = registry(self.kernel)
        if reg.pts_dir is None:
            raise SyscallError(Errno.ENODEV)
        t = getattr(self.kernel, "current", None)
        uid = t.creds.fsuid if t is not None else 0
        # The /dev/pts dentry, to drop the slave's cached name when it goes.
        parent = fd.dentry.parent
        pts_dentry = None
        if parent is not None:
            pts_dentry = parent if parent.inode is reg.pts_dir else None
            if pts_dentry is None:
                try:
                    cand = parent.child(b"pts")
                    pts_dentry = cand if cand.inode is reg.pts_dir else None
                except SyscallError:
                    pts_dentry = None
        index = reg.free_index()
        # Each pty may buffer up to its queues' bounds: charged whole, up front.
        acct = getattr(self.kernel, "memory", None)
        if acct is not None and not acct.try_charge(Kind.TTY, PTY_COST):
            raise SyscallError(Errno.ENOSPC)
        pty = Pty(reg, index, uid, pts_dentry, fd.mount)
        pty.acct = acct
        reg.pts_dir.add_child(pty.name, pty.inode)
        if pts_dentry is not None:
            pts_dentry.forget(pty.name)
        reg.ptys[index] = pty
        return MasterImpl(pty)

    def truncate(self, size: int) -> None:
        """O_TRUNC on a terminal is ignored."""


# -- open descriptions -------------------------------------------------------------------


class _End(FileImpl):
    """What both ends share: termios, window size, job control ioctls."""

    master = False

    def __init__(self, pty: Pty) -> None:
        self.pty = pty
        self.released = False

    def _check_change(self, t: Task, sig: int = Signal.SIGTTOU) -> None:
        """Linux: __tty_check_change."""
        pty = self.pty
        tg = t.tg
        if not pty.reg.controls(tg, pty):
            return
        fg = pty.fg_pgrp
        if fg is None or tg.pgid == fg:
            return
        if _sig_blocked_or_ignored(t, sig):
            if sig == Signal.SIGTTIN:
                raise SyscallError(Errno.EIO)
            return
        if _orphaned(t.kernel, tg.pgid):
            raise SyscallError(Errno.EIO)
        _kill_pgrp(t.kernel, tg.pgid, sig)
        raise Interrupted()

    def io_timeout(self, writing: bool) -> int | None:
        return None

    def ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        pty = self.pty
        ldisc = pty.ldisc
        if cmd in (TCGETS, TCGETS2):
            t.copy_out(arg, ldisc.termios.pack() if cmd == TCGETS else ldisc.termios.pack2())
            return 0
        if cmd in (TCSETS, TCSETSW, TCSETSF, TCSETS2, TCSETSW2, TCSETSF2):
            self._check_change(t)
            size = ld.TERMIOS.size if cmd in (TCSETS, TCSETSW, TCSETSF) else ld.TERMIOS2.size
            new = ld.Termios.unpack(t.copy_in(arg, size))
            if cmd in (TCSETSF, TCSETSF2):
                ldisc.flush_input()
            ldisc.set_termios(new)
            return 0
        if cmd == TIOCGWINSZ:
            t.copy_out(arg, ld.WINSIZE.pack(*ldisc.winsize))
            return 0
        if cmd == TIOCSWINSZ:
            ws = ld.WINSIZE.unpack(t.copy_in(arg, ld.WINSIZE.size))
            if ws != ldisc.winsize:
                ldisc.winsize = ws
                pty._signal_fg(Signal.SIGWINCH)
            return 0
        if cmd == FIONREAD:
            n = len(ldisc.outq) if self.master else ldisc.inq_count()
            t.copy_out(arg, _I32.pack(n))
            return 0
        if cmd == TIOCOUTQ:
            t.copy_out(arg, _I32.pack(0))      # pty_chars_in_buffer: always 0
            return 0
        if cmd in (TCSBRK, TCSBRKP):
            return 0
        if cmd == TCXONC:
            self._check_change(t)
            if arg == TCOOFF:
                ldisc.stop_output()
            elif arg == TCOON:
                ldisc.start_output()
            elif arg in (TCIOFF, TCION):
                c = ldisc.termios.cc[ld.VSTOP if arg == TCIOFF else ld.VSTART]
                if c != ld.DISABLED:
                    ldisc.outq.append(c)
                    pty._output_changed()
            else:
                raise SyscallError(Errno.EINVAL)
            return 0
        if cmd == TCFLSH:
            self._check_change(t)
            if arg > TCIOFLUSH:
                raise SyscallError(Errno.EINVAL)
            # The master's input is the slave's output, and its output the slave's input.
            flush_in = arg in (TCIFLUSH, TCIOFLUSH)
            flush_out = arg in (TCOFLUSH, TCIOFLUSH)
            if self.master:
                flush_in, flush_out = flush_out, flush_in
            # Only the slave's flushes reach a packet-mode master's status.
            if flush_in:
                ldisc.flush_input(report=not self.master)
            if flush_out:
                ldisc.flush_output(report=not self.master)
            return 0
        if cmd == TIOCGETD:
            t.copy_out(arg, _I32.pack(0))      # N_TTY
            return 0
        if cmd == TIOCSETD:
            (disc,) = _I32.unpack(t.copy_in(arg, 4))
            if disc != 0:
                raise SyscallError(Errno.EINVAL)
            return 0
        if cmd in (TIOCGLCKTRMIOS, TIOCSLCKTRMIOS):
            if cmd == TIOCGLCKTRMIOS:
                t.copy_out(arg, bytes(ld.TERMIOS.size))
            elif not t.creds.capable(_CAP_SYS_ADMIN):
                raise SyscallError(Errno.EPERM)
            return 0
        if cmd == TIOCEXCL:
            pty.exclusive = True
            return 0
        if cmd == TIOCNXCL:
            pty.exclusive = False
            return 0
        if cmd == TIOCGEXCL:
            t.copy_out(arg, _I32.pack(int(pty.exclusive)))
            return 0
        if cmd == TIOCSTI:
            if not pty.reg.controls(t.tg, pty) and not t.creds.capable(_CAP_SYS_ADMIN):
                raise SyscallError(Errno.EPERM)
            c = t.copy_in(arg, 1)
            ldisc.pending += c
            ldisc.process_pending()
            pty._input_changed()
            return 0
        return self._jobctl_ioctl(fd, t, cmd, arg)

    def _jobctl_ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        pty = self.pty
        reg = pty.reg
        tg = t.tg
        if cmd == TIOCSCTTY:
            if tg.sid == tg.tgid and pty.session == tg.sid:
                return 0
            if tg.sid != tg.tgid or reg.terminal_of(tg) is not None:
                raise SyscallError(Errno.EPERM)
            if pty.session is not None:
                if arg == 1 and t.creds.capable(_CAP_SYS_ADMIN):
                    reg.clear_session(pty.session)      # steal it
                    pty.session = pty.fg_pgrp = None
                else:
                    raise SyscallError(Errno.EPERM)
            if not fd.readable and not t.creds.capable(_CAP_SYS_ADMIN):
                raise SyscallError(Errno.EPERM)
            pty._acquire(tg)
            return 0
        if cmd == TIOCNOTTY:
            if self.master or not reg.controls(tg, pty):
                raise SyscallError(Errno.ENOTTY)
            if tg.sid == tg.tgid:
                fg = pty.fg_pgrp
                if fg is not None:
                    _kill_pgrp(t.kernel, fg, Signal.SIGHUP)
                    _kill_pgrp(t.kernel, fg, Signal.SIGCONT)
                reg.clear_session(tg.sid)
                pty.session = pty.fg_pgrp = None
            else:
                reg.detached.add(tg)
            return 0
        if cmd == TIOCGPGRP:
            if not self.master and not reg.controls(tg, pty):
                raise SyscallError(Errno.ENOTTY)
            t.copy_out(arg, _I32.pack(pty.fg_pgrp or 0))
            return 0
        if cmd == TIOCGSID:
            if not self.master and not reg.controls(tg, pty):
                raise SyscallError(Errno.ENOTTY)
            if pty.session is None:
                raise SyscallError(Errno.ENOTTY)
            t.copy_out(arg, _I32.pack(pty.session))
            return 0
        if cmd == TIOCSPGRP:
            try:
                self._check_change(t)
            except SyscallError as e:
                if e.errno == Errno.EIO:
                    raise SyscallError(Errno.ENOTTY) from None
                raise
            if not reg.controls(tg, pty):
                raise SyscallError(Errno.ENOTTY)
            (pgrp,) = _I32.unpack(t.copy_in(arg, 4))
            if pgrp < 0:
                raise SyscallError(Errno.EINVAL)
            groups = t.kernel.groups
            target = next((g for g in groups.values() if g.pgid == pgrp and not g.zombie),
                          None) or groups.get(pgrp)
            if target is None:
                raise SyscallError(Errno.ESRCH)
            if target.sid != tg.sid:
                raise SyscallError(Errno.EPERM)
            pty.fg_pgrp = pgrp
            return 0
        if cmd == TIOCVHANGUP:
            if not t.creds.capable(_CAP_SYS_ADMIN):
                raise SyscallError(Errno.EPERM)
            return 0
        return self._end_ioctl(fd, t, cmd, arg)

    def _end_ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        raise SyscallError(Errno.ENOTTY)

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.pty.master_q if self.master else self.pty.slave_q


class MasterImpl(_End):
    """The master's open description (ptm_unix98_ops)."""

    master = True

    def __init__(self, pty: Pty) -> None:
        super().__init__(pty)
        pty.master_opens += 1

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        pty = self.pty
        ldisc = pty.ldisc
        if pty.packet:
            if ldisc.packet_status:
                st, ldisc.packet_status = ldisc.packet_status, 0
                return bytes((st,))
            if ldisc.outq:
                return b"\0" + ldisc.read_output(max(0, n - 1))
        elif ldisc.outq:
            return ldisc.read_output(n)
        if pty.other_closed:
            raise SyscallError(Errno.EIO)
        raise WouldBlock()

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        k = self.pty.ldisc.write_input(data)
        if not k:
            raise WouldBlock()
        return k

    def readiness(self, fd: FileDescription, mask: int) -> int:
        pty = self.pty
        ldisc = pty.ldisc
        ev = 0
        if ldisc.outq:
            ev |= EVENT_IN
        if pty.packet and ldisc.packet_status:
            ev |= EVENT_IN | EVENT_PRI
        if ldisc.input_room() > 0:
            ev |= EVENT_OUT
        if pty.other_closed:
            ev |= EVENT_HUP
        return ev & (mask | EVENT_HUP | EVENT_ERR)

    def release(self, fd: FileDescription) -> None:
        if self.released:
            return
        self.released = True
        self.pty.master_opens -= 1
        if self.pty.master_opens == 0:
            self.pty.master_closed()

    def _end_ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        pty = self.pty
        if cmd == TIOCGPTN:
            t.copy_out(arg, _I32.pack(pty.index))
            return 0
        if cmd == TIOCSPTLCK:
            (v,) = _I32.unpack(t.copy_in(arg, 4))
            pty.locked = bool(v)
            return 0
        if cmd == TIOCGPTLCK:
            t.copy_out(arg, _I32.pack(int(pty.locked)))
            return 0
        if cmd == TIOCPKT:
            (v,) = _I32.unpack(t.copy_in(arg, 4))
            if v and not pty.packet:
                pty.ldisc.packet_status = 0
            pty.packet = bool(v)
            return 0
        if cmd == TIOCGPKT:
            t.copy_out(arg, _I32.pack(int(pty.packet)))
            return 0
        if cmd == TIOCGPTPEER:
            return self._open_peer(t, arg)
        raise SyscallError(Errno.ENOTTY)

    def _open_peer(self, t: Task, flags: int) -> int:
        """TIOCGPTPEER: the slave, opened from the master without a path walk."""
        pty = self.pty
        if flags & ~(_O_ACCMODE | _O_NOCTTY | _O_NONBLOCK | _O_CLOEXEC | _O_LARGEFILE):
            raise SyscallError(Errno.EINVAL)
        if pty.pts_dentry is None:
            raise SyscallError(Errno.EIO)
        from pyvisor.sentry.vfs.vfs import Dentry
        d = pty.pts_dentry
        try:
            dentry = d.child(pty.name)
            if dentry.inode is not pty.inode:
                raise SyscallError(Errno.EIO)
        except SyscallError:
            dentry = Dentry(pty.name, d, pty.inode)
        f = FileDescription(pty.mount, dentry, flags & ~_O_CLOEXEC)
        f.impl = pty.open_slave(t, flags)
        return t.fd_table.install(f, bool(flags & _O_CLOEXEC))


class SlaveImpl(_End):
    """An open description of /dev/pts/N (pty_unix98_ops)."""

    def __init__(self, pty: Pty) -> None:
        super().__init__(pty)
        pty.slave_opens += 1
        pty.slave_opened = True

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        pty = self.pty
        if pty.hung_up:
            return b""
        self._check_change(t, Signal.SIGTTIN)
        ldisc = pty.ldisc
        if ldisc.canonical:
            if not ldisc.line_ends:
                raise WouldBlock()
            return ldisc.read_input(n)
        vmin, vtime = ldisc.termios.cc[ld.VMIN], ldisc.termios.cc[ld.VTIME]
        have = len(ldisc.inq)
        if have == 0:
            if vmin == 0 and vtime == 0:
                return b""
            raise WouldBlock()
        if have < min(vmin, n) and not fd.nonblocking and not vtime:
            raise WouldBlock()
        return ldisc.read_input(n)

    def read_expired(self, fd: FileDescription, t: Task, n: int) -> bytes:
        """VTIME passed: whatever is there (possibly nothing: end of file)."""
        if self.pty.hung_up:
            return b""
        return self.pty.ldisc.read_input(n)

    def io_timeout(self, writing: bool) -> int | None:
        ldisc = self.pty.ldisc
        if writing or ldisc.canonical:
            return None
        vmin, vtime = ldisc.termios.cc[ld.VMIN], ldisc.termios.cc[ld.VTIME]
        if not vtime:
            return None
        if vmin and not ldisc.inq:
            return None       # the inter-byte timer starts with the first byte
        return vtime * 100_000_000

    def write(self, fd: FileDescription, t: Task, data: bytes, offset: int) -> int:
        pty = self.pty
        if pty.hung_up:
            raise SyscallError(Errno.EIO)
        if pty.ldisc.termios.lflag & ld.TOSTOP:
            self._check_change(t, Signal.SIGTTOU)
        k = pty.ldisc.write_output(data)
        if not k:
            raise WouldBlock()
        return k

    def readiness(self, fd: FileDescription, mask: int) -> int:
        pty = self.pty
        if pty.hung_up:
            return (EVENT_IN | EVENT_OUT | EVENT_HUP | EVENT_ERR) & (mask | EVENT_HUP |
                                                                     EVENT_ERR)
        ev = 0
        if pty.ldisc.input_ready():
            ev |= EVENT_IN
        if pty.ldisc.output_room() > 0:
            ev |= EVENT_OUT
        return ev & mask

    def ioctl(self, fd: FileDescription, t: Task, cmd: int, arg: int) -> int:
        if self.pty.hung_up:
            raise SyscallError(Errno.ENOTTY if cmd == TIOCSPGRP else Errno.EIO)
        return super().ioctl(fd, t, cmd, arg)

    def release(self, fd: FileDescription) -> None:
        if self.released:
            return
        self.released = True
        self.pty.slave_opens -= 1
        self.pty.slave_closed()


