"""Signals.  From <asm/signal.h>, <asm-generic/signal-defs.h>, <asm/siginfo.h>."""

from enum import IntEnum


class Signal(IntEnum):
    """Signal numbers on amd64."""

    SIGHUP = 1
    SIGINT = 2
    SIGQUIT = 3
    SIGILL = 4
    SIGTRAP = 5
    SIGABRT = 6
    SIGBUS = 7
    SIGFPE = 8
    SIGKILL = 9
    SIGUSR1 = 10
    SIGSEGV = 11
    SIGUSR2 = 12
    SIGPIPE = 13
    SIGALRM = 14
    SIGTERM = 15
    SIGSTKFLT = 16
    SIGCHLD = 17
    SIGCONT = 18
    SIGSTOP = 19
    SIGTSTP = 20
    SIGTTIN = 21
    SIGTTOU = 22
    SIGURG = 23
    SIGXCPU = 24
    SIGXFSZ = 25
    SIGVTALRM = 26
    SIGPROF = 27
    SIGWINCH = 28
    SIGIO = 29
    SIGPWR = 30
    SIGSYS = 31


NSIG = 64          # signals 1..64; realtime ones are SIGRTMIN..SIGRTMAX
SIGRTMIN = 32
SIGRTMAX = 64

# From <asm-generic/signal-defs.h>.
SIG_DFL = 0
SIG_IGN = 1
SIG_BLOCK = 0
SIG_UNBLOCK = 1
SIG_SETMASK = 2

# sa_flags.  From <asm/signal.h>.
SA_NOCLDSTOP = 0x00000001
SA_NOCLDWAIT = 0x00000002
SA_SIGINFO = 0x00000004
SA_RESTORER = 0x04000000
SA_ONSTACK = 0x08000000
SA_RESTART = 0x10000000
SA_NODEFER = 0x40000000
SA_RESETHAND = 0x80000000

# sigaltstack.
SS_ONSTACK = 1
SS_DISABLE = 2
MINSIGSTKSZ = 2048

# si_code values.  From <asm-generic/siginfo.h>.
SI_USER = 0
SI_KERNEL = 0x80
SI_QUEUE = -1
SI_TIMER = -2
SI_TKILL = -6
CLD_EXITED = 1
CLD_KILLED = 2
CLD_DUMPED = 3
CLD_TRAPPED = 4
CLD_STOPPED = 5
CLD_CONTINUED = 6
SEGV_MAPERR = 1
SEGV_ACCERR = 2
BUS_ADRERR = 2
FPE_INTDIV = 1
ILL_ILLOPN = 2
SYS_SECCOMP = 1
TRAP_BRKPT = 1


def sigmask(sig: int) -> int:
    """The bit for `sig` in a 64-bit signal set."""
    return 1 << (sig - 1)


# Signals that can be neither caught, blocked nor ignored.
UNBLOCKABLE = sigmask(Signal.SIGKILL) | sigmask(Signal.SIGSTOP)
