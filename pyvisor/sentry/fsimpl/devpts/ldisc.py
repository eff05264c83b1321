"""The line discipline of the sandbox's own pseudo-terminals.

Linux: drivers/tty/n_tty.c, drivers/tty/tty_ioctl.c; gVisor:
pkg/sentry/fsimpl/devpts/line_discipline.go, queue.go.

One `LineDiscipline` per pty pair holds the slave's termios (the master's
termios ioctls act on the slave's, as tty_mode_ioctl does) and two queues:

* input (master -> slave): bytes the master writes wait in `pending` and are
  processed one at a time with the termios input rules (ICRNL, IXON, ISIG,
  ICANON editing, echo) into `inq`, which the slave reads: a line at a time in
  canonical mode, VMIN/VTIME in raw mode.  `inq` holds at most N_TTY_BUF_SIZE
  - 1 bytes; what does not fit stays in `pending` (bounded: PENDING_MAX), and
  the master's write blocks beyond it.
* output (slave -> master): bytes the slave writes are processed with the
  output rules (OPOST, ONLCR, OCRNL, ONOCR, ONLRET, TAB3) into `outq`, which
  the master reads; echoes go there too.  Bounded by OUTQ_MAX.

The discipline knows nothing of processes: signals it raises (ISIG) and
readiness changes go to the callbacks of its owner (devpts.Pty).
Concurrency: Sentry loop only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable

# c_iflag bits.  From <asm-generic/termbits.h>.
IGNBRK, BRKINT, IGNPAR, PARMRK, INPCK, ISTRIP = 0o1, 0o2, 0o4, 0o10, 0o20, 0o40
INLCR, IGNCR, ICRNL, IUCLC, IXON, IXANY, IXOFF, IMAXBEL, IUTF8 = \
    0o100, 0o200, 0o400, 0o1000, 0o2000, 0o4000, 0o10000, 0o20000, 0o40000
# c_oflag bits.
OPOST, OLCUC, ONLCR, OCRNL, ONOCR, ONLRET = 0o1, 0o2, 0o4, 0o10, 0o20, 0o40
TABDLY, XTABS = 0o14000, 0o14000
# c_cflag bits.
B38400, CS8, CREAD, HUPCL, CBAUD = 0o17, 0o60, 0o200, 0o2000, 0o10017
# c_lflag bits.
ISIG, ICANON, XCASE, ECHO, ECHOE, ECHOK, ECHONL, NOFLSH, TOSTOP = \
    0o1, 0o2, 0o4, 0o10, 0o20, 0o40, 0o100, 0o200, 0o400
ECHOCTL, ECHOPRT, ECHOKE, FLUSHO, PENDIN, IEXTEN, EXTPROC = \
    0o1000, 0o2000, 0o4000, 0o10000, 0o40000, 0o100000, 0o200000
# c_cc indices.
VINTR, VQUIT, VERASE, VKILL, VEOF, VTIME, VMIN, VSWTC, VSTART, VSTOP, VSUSP, VEOL, \
    VREPRINT, VDISCARD, VWERASE, VLNEXT, VEOL2 = range(17)
NCCS = 19
DISABLED = 0          # _POSIX_VDISABLE

# Linux's struct termios (36 bytes) and termios2 (44: with the speeds).
TERMIOS = struct.Struct("<IIIIB19s")
TERMIOS2 = struct.Struct("<IIIIB19sII")
WINSIZE = struct.Struct("<HHHH")

N_TTY_BUF_SIZE = 4096       # n_tty's read buffer: a canonical line is at most 4095 bytes
PENDING_MAX = 64 << 10      # master writes not yet taken by the slave's input queue
OUTQ_MAX = 64 << 10         # slave output (and echoes) not yet read by the master

# Signals a typed character raises.  From <asm-generic/signal.h>.
SIGINT, SIGQUIT, SIGTSTP = 2, 3, 20

# Packet-mode status bits (TIOCPKT).  From <asm-generic/ioctls.h>.
TIOCPKT_FLUSHREAD, TIOCPKT_FLUSHWRITE, TIOCPKT_STOP, TIOCPKT_START = 1, 2, 4, 8
TIOCPKT_NOSTOP, TIOCPKT_DOSTOP = 16, 32

# Linux's INIT_C_CC: ^C ^\ DEL ^U ^D, VTIME 0, VMIN 1, ^Q ^S ^Z, ^R ^O ^W ^V.
_INIT_CC = bytes([3, 0o34, 0o177, 0o25, 4, 0, 1, 0, 0o21, 0o23, 0o32, 0, 0o22, 0o17, 0o27,
                  0o26, 0, 0, 0])


@dataclass
class Termios:
    """struct termios (the kernel's: speeds live in c_cflag's CBAUD)."""

    iflag: int = ICRNL | IXON
    oflag: int = OPOST | ONLCR
    cflag: int = B38400 | CS8 | CREAD        # a pty slave's (pty_unix98_install): no HUPCL
    lflag: int = ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN
    line: int = 0
    cc: bytearray = field(default_factory=lambda: bytearray(_INIT_CC))

    def pack(self) -> bytes:
        return TERMIOS.pack(self.iflag, self.oflag, self.cflag, self.lflag, self.line,
                            bytes(self.cc))

    def pack2(self) -> bytes:
        speed = 38400
        return TERMIOS2.pack(self.iflag, self.oflag, self.cflag, self.lflag, self.line,
                             bytes(self.cc), speed, speed)

    @classmethod
    def unpack(cls, raw: bytes) -> Termios:
        i, o, c, lf, line, cc = TERMIOS.unpack_from(raw)
        return cls(i, o, c, lf, line, bytearray(cc))


def _ctl(c: int) -> bool:
    return c < 0x20 or c == 0x7F


class LineDiscipline:
    """n_tty for one pty pair.  See the module docstring."""

    def __init__(self, on_signal: Callable[[int], None], on_input: Callable[[], None],
                 on_output: Callable[[], None]) -> None:
        self.termios = Termios()
        self.winsize = (0, 0, 0, 0)           # rows, cols, xpixel, ypixel
        self.on_signal = on_signal            # signal the foreground group
        self.on_input = on_input              # inq changed (slave readers, master writers)
        self.on_output = on_output            # outq changed (master readers, slave writers)
        self.pending = bytearray()            # master writes not processed yet
        self.inq = bytearray()                # processed input, read by the slave
        self.lines = 0                        # complete lines in inq (canonical mode)
        self.line_ends: list[int] = []        # end offsets in inq of complete lines
        self.eof_at: list[int] = []           # ends that came from VEOF (not delivered)
        self.outq = bytearray()               # output for the master
        self.column = 0
        self.canon_start = 0                  # inq offset where the line being edited starts
        self.lnext = False                    # the previous byte was VLNEXT
        self.erasing = False                  # inside an ECHOPRT \ ... / erasure
        self.stopped = False                  # output stopped (^S, TCOOFF)
        self.packet_status = 0                # TIOCPKT status not yet read by the master

    # -- helpers ------------------------------------------------------------------------

    @property
    def canonical(self) -> bool:
        return bool(self.termios.lflag & ICANON)

    def _cc(self, i: int) -> int:
        return self.termios.cc[i]

    def _is(self, c: int, i: int) -> bool:
        v = self.termios.cc[i]
        return v != DISABLED and c == v

    # -- termios --------------------------------------------------------------------------

    def set_termios(self, new: Termios) -> None:
        """TCSETS.  Leaving canonical mode makes the partial line readable; entering
        it makes what was typed so far a line being edited (n_tty_set_termios)."""
        old = self.termios
        was_canon = bool(old.lflag & ICANON)
        self.termios = new
        if was_canon and not new.lflag & ICANON:
            self.line_ends.clear()
            self.eof_at.clear()
            self.canon_start = len(self.inq)
        elif not was_canon and new.lflag & ICANON:
            # What was received raw becomes one line, readable at once (n_tty's push).
            self.line_ends = [len(self.inq)] if self.inq else []
            self.eof_at.clear()
            self.canon_start = len(self.inq)
        if old.iflag & IXON and not new.iflag & IXON and self.stopped:
            self.start_output()
        self.process_pending()
        self.on_input()
        self.on_output()

    # -- readability --------------------------------------------------------------------

    def readable(self) -> int:
        """Bytes the slave may read now (canonical: through the first complete line)."""
        if self.canonical:
            return self.line_ends[0] if self.line_ends else 0
        return len(self.inq)

    def input_ready(self) -> bool:
        """poll: a line (canonical) or VMIN bytes (raw with VTIME 0, n_tty_poll)."""
        if self.canonical:
            return bool(self.line_ends)
        amt = 1 if self._cc(VTIME) else max(1, self._cc(VMIN))
        return len(self.inq) >= amt

    def inq_count(self) -> int:
        """FIONREAD on the slave: complete lines without their VEOF (inq_canon)."""
        if self.canonical:
            if not self.line_ends:
                return 0
            return self.line_ends[-1] - len(self.eof_at)     # VEOFs are not data
        return len(self.inq)

    def read_input(self, n: int) -> bytes:
        """Takes up to `n` bytes for the slave: at most one line in canonical mode.
        A VEOF at the start of a line gives b"" (end of file)."""
        if self.canonical:
            if not self.line_ends:
                return b""
            end = self.line_ends[0]
            eof = bool(self.eof_at and self.eof_at[0] == end)
            take = min(n, end - (1 if eof else 0))
            data = bytes(self.inq[:take])
            if take >= end - (1 if eof else 0):
                consumed = end          # the whole line (and its VEOF) is gone
                self.line_ends.pop(0)
                if eof:
                    self.eof_at.pop(0)
            else:
                consumed = take
            del self.inq[:consumed]
            self.line_ends = [e - consumed for e in self.line_ends]
            self.eof_at = [e - consumed for e in self.eof_at]
            self.canon_start = max(0, self.canon_start - consumed)
        else:
            data = bytes(self.inq[:n])
            del self.inq[:len(data)]
            self.canon_start = max(0, self.canon_start - len(data))
        if data or self.pending:
            self.process_pending()
            self.on_input()
        return data

    # -- input (master -> slave) ----------------------------------------------------------

    def input_room(self) -> int:
        return max(0, PENDING_MAX - len(self.pending))

    def write_input(self, data: bytes) -> int:
        """The master writes `data`: what fits is taken (processed or pending)."""
        k = min(len(data), self.input_room())
        if k:
            self.pending += data[:k]
            self.process_pending()
            self.on_input()
        return k

    def process_pending(self) -> None:
        """Moves pending master writes into the input queue while there is room."""
        if not self.pending:
            return
        i = 0
        out_before = len(self.outq)
        p = self.pending
        while i < len(p):
            if not self._receive(p[i]):
                break
            i += 1
        del self.pending[:i]
        if len(self.outq) != out_before:
            self.on_output()

    def _room(self) -> int:
        return N_TTY_BUF_SIZE - 1 - len(self.inq)

    def _receive(self, c: int) -> bool:
        """One input byte through the termios input rules.  False: no room, retry later."""
        tio = self.termios
        ifl, lfl = tio.iflag, tio.lflag
        if self._room() <= 0:
            # A full canonical line with no end: drop what is typed except its end
            # (n_tty's overflow), so the writer never waits on a reader that cannot read.
            if not (self.canonical and not self.line_ends):
                return False
            if not (c == 0x0A or self._is(c, VEOF) or self._is(c, VEOL) or
                    (lfl & IEXTEN and self._is(c, VEOL2))):
                return True
        if ifl & ISTRIP:
            c &= 0x7F
        if self.lnext:
            self.lnext = False
            self._put_literal(c)
            return True
        if ifl & IXON:
            if self._is(c, VSTOP):
                self.stop_output()
                return True
            if self._is(c, VSTART):
                self.start_output()
                return True
            if self.stopped and ifl & IXANY:
                self.start_output()
        if c == 0x0D:
            if ifl & IGNCR:
                return True
            if ifl & ICRNL:
                c = 0x0A
        elif c == 0x0A and ifl & INLCR:
            c = 0x0D
        if lfl & ISIG:
            for idx, sig in ((VINTR, SIGINT), (VQUIT, SIGQUIT), (VSUSP, SIGTSTP)):
                if self._is(c, idx):
                    self._isig(sig, c)
                    return True
        if self.canonical:
            if self._is(c, VERASE) or self._is(c, VKILL) or \
                    (lfl & IEXTEN and self._is(c, VWERASE)):
                self._erase(c)
                return True
            if lfl & IEXTEN and self._is(c, VLNEXT):
                self.lnext = True
                if lfl & ECHO and lfl & ECHOCTL:
                    self._echo(b"^\b")
                return True
            if lfl & IEXTEN and self._is(c, VREPRINT):
                self._echo_char(c)
                self._echo_out(b"\n")
                for b in self.inq[self.canon_start:]:
                    self._echo_char(b)
                return True
            if c == 0x0A:
                if lfl & (ECHO | ECHONL):
                    self._echo_out(b"\n")
                self._end_line(c)
                return True
            if self._is(c, VEOF):
                self._end_line(c, eof=True)
                return True
            if self._is(c, VEOL) or (lfl & IEXTEN and self._is(c, VEOL2)):
                self._echo_char(c)
                self._end_line(c)
                return True
        self._put_literal(c)
        return True

    def _put_literal(self, c: int) -> None:
        self._echo_char(c)
        self.inq.append(c)

    def _end_line(self, c: int, eof: bool = False) -> None:
        self.inq.append(c)
        end = len(self.inq)
        self.line_ends.append(end)
        if eof:
            self.eof_at.append(end)
        self.canon_start = end

    def _isig(self, sig: int, c: int) -> None:
        """^C ^\\ ^Z: flush (unless NOFLSH), echo, signal the foreground group."""
        if not self.termios.lflag & NOFLSH:
            self.flush_input(pending=False)
            self.flush_output()
        if self.stopped and self.termios.iflag & IXON:
            self.start_output()
        self._echo_char(c)
        self.on_signal(sig)

    def _erase(self, c: int) -> None:
        """VERASE, VWERASE, VKILL (n_tty's eraser)."""
        lfl = self.termios.lflag
        kind = "erase" if self._is(c, VERASE) else "werase" if self._is(c, VWERASE) \
            else "kill"
        line = self.inq[self.canon_start:]
        if not line:
            return
        if kind == "kill":
            if not lfl & ECHO:
                del self.inq[self.canon_start:]
                return
            if not (lfl & ECHOK and lfl & ECHOKE and lfl & ECHOE):
                del self.inq[self.canon_start:]
                self._echo_char(c)
                if lfl & ECHOK:
                    self._echo_out(b"\n")
                return
        seen_alnum = False
        utf8 = self.termios.iflag & IUTF8
        while len(self.inq) > self.canon_start:
            # One character: with IUTF8 its continuation bytes go with it, and a
            # character whose start is not in the line is not erased at all.
            start = len(self.inq) - 1
            while utf8 and self.inq[start] & 0xC0 == 0x80 and start > self.canon_start:
                start -= 1
            b = self.inq[start]
            if utf8 and b & 0xC0 == 0x80:
                break
            if kind == "werase":
                alnum = (b < 0x80 and chr(b).isalnum()) or b == 0x5F
                if alnum:
                    seen_alnum = True
                elif seen_alnum:
                    break
            del self.inq[start:]
            if lfl & ECHO:
                if kind == "erase" and not lfl & ECHOE:
                    self._echo_char(self._cc(VERASE))
                elif b == 0x09:
                    self._echo_out(b"\b" * self._tab_width())
                else:
                    if _ctl(b) and lfl & ECHOCTL:
                        self._echo_out(b"\b \b")
                    if not _ctl(b) or lfl & ECHOCTL:
                        self._echo_out(b"\b \b")
            if kind == "erase":
                break

    def _tab_width(self) -> int:
        """Columns a just-erased tab took, counting the line from column 0."""
        col = 0
        for b in self.inq[self.canon_start:]:
            if b == 0x09:
                col = (col | 7) + 1
            elif _ctl(b):
                col += 2 if self.termios.lflag & ECHOCTL else 0
            else:
                col += 1
        return 8 - (col & 7)

    # -- echo -----------------------------------------------------------------------------

    def _echo_char(self, c: int) -> None:
        """Echoes one input byte (ECHOCTL shows control bytes as ^X, except \\t \\n and
        the flow-control bytes)."""
        lfl = self.termios.lflag
        if not lfl & ECHO:
            return
        if lfl & ECHOCTL and _ctl(c) and c not in (0x09, 0x0A, self._cc(VSTART),
                                                     self._cc(VSTOP)):
            self._echo_out(bytes((0x5E, c ^ 0x40)))
        else:
            self._echo_out(bytes((c,)))

    def _echo(self, raw: bytes) -> None:
        if self.termios.lflag & ECHO:
            self._echo_out(raw)

    def _echo_out(self, raw: bytes) -> None:
        """Echoes go through output processing, ahead of a stopped output."""
        self.outq += self._opost(raw)
        if len(self.outq) > OUTQ_MAX + N_TTY_BUF_SIZE:
            del self.outq[OUTQ_MAX + N_TTY_BUF_SIZE:]    # a master that never reads

    # -- output (slave -> master) -----------------------------------------------------------

    def output_room(self) -> int:
        if self.stopped:
            return 0
        return max(0, OUTQ_MAX - len(self.outq))

    def write_output(self, data: bytes) -> int:
        """The slave writes `data`: what fits goes to the master, processed."""
        room = self.output_room()
        if room <= 0:
            return 0
        take = data[:room]
        self.outq += self._opost(take)
        self.on_output()
        return len(take)

    def _opost(self, data: bytes) -> bytes:
        oflag = self.termios.oflag
        if not oflag & OPOST:
            for b in data:
                self.column = 0 if b in (0x0A, 0x0D) else self.column + 1
            return bytes(data)
        out = bytearray()
        for b in data:
            if b == 0x0A:
                if oflag & ONLRET:
                    self.column = 0
                if oflag & ONLCR:
                    self.column = 0
                    out += b"\r\n"
                    continue
                out.append(b)
            elif b == 0x0D:
                if oflag & ONOCR and self.column == 0:
                    continue
                if oflag & OCRNL:
                    if oflag & ONLRET:
                        self.column = 0
                    out.append(0x0A)
                    continue
                self.column = 0
                out.append(b)
            elif b == 0x09:
                spaces = 8 - (self.column & 7)
                self.column += spaces
                if oflag & TABDLY == XTABS:
                    out += b" " * spaces
                else:
                    out.append(b)
            elif b == 0x08:
                if self.column > 0:
                    self.column -= 1
                out.append(b)
            else:
                if not _ctl(b):
                    if oflag & OLCUC and 0x61 <= b <= 0x7A:
                        b -= 0x20
                    self.column += 1
                out.append(b)
        return bytes(out)

    def read_output(self, n: int) -> bytes:
        data = bytes(self.outq[:n])
        del self.outq[:len(data)]
        if data:
            self.on_output()
        return data

    # -- flow and flushing --------------------------------------------------------------------

    def stop_output(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.packet_status = (self.packet_status & ~TIOCPKT_START) | TIOCPKT_STOP
            self.on_output()

    def start_output(self) -> None:
        if self.stopped:
            self.stopped = False
            self.packet_status = (self.packet_status & ~TIOCPKT_STOP) | TIOCPKT_START
            self.on_output()

    def flush_input(self, report: bool = True, pending: bool = True) -> None:
        """The slave's unread input goes (TCIFLUSH on the slave; with `report`, a
        packet-mode master is told).  `pending`: master writes not yet received too
        (tty_buffer_flush); a signal character flushes only what was received."""
        self.inq.clear()
        if pending:
            self.pending.clear()
        self.line_ends.clear()
        self.eof_at.clear()
        self.canon_start = 0
        self.lnext = False
        if report:
            self.packet_status |= TIOCPKT_FLUSHREAD
        self.on_input()
        self.on_output()

    def flush_output(self, report: bool = True) -> None:
        """Output the master has not read goes (TCOFLUSH on the slave)."""
        self.outq.clear()
        if report:
            self.packet_status |= TIOCPKT_FLUSHWRITE
        self.on_output()
