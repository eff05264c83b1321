"""A real Kernel on the fake platform: futexes, signals and procfs with no process.

The programs are Python generators yielding syscalls (platform/fake.py); the
kernel, its loop, signal frames on the (fake) user stack, futex queues and
procfs are the real ones."""

from __future__ import annotations

import struct
from collections.abc import Callable

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.sysno_amd64 import Sysno
from pyvisor.sentry.platform.fake import RESTORER, Program
from pyvisor.sentry.platform.platform import StopKind, StopReason
from tests.sentry.fakekernel import Sandbox, sandbox

FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 128, 129
CLONE_THREAD_FLAGS = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000
SIGUSR1, SIGTERM = 10, 15
SA_SIGINFO, SA_RESTORER = 0x4, 0x04000000
SIG_BLOCK, SIG_UNBLOCK = 0, 1


def test_futex_wait_is_woken_by_another_thread() -> None:
    """A waits on a word; B (a real clone'd thread) wakes it; A sees 0, B sees 1."""
    seen: dict[str, int] = {}

    def thread_b(sb: Sandbox) -> Program:
        word = sb.scratch
        while True:
            n = yield (Sysno.futex, word, FUTEX_WAKE_PRIVATE, 1)
            if n == 1:
                break
            yield (Sysno.sched_yield,)          # A has not slept yet
        seen["woke"] = n
        yield (Sysno.exit, 0)

    def main(sb: Sandbox) -> Program:
        word = sb.scratch
        sb.platform.child_programs.append(thread_b(sb))
        tid = yield (Sysno.clone, CLONE_THREAD_FLAGS, sb.init.regs.sp - 4096, 0, 0, 0)
        seen["tid"] = tid
        seen["wait"] = yield (Sysno.futex, word, FUTEX_WAIT_PRIVATE, 0, 0)
        seen["mismatch"] = yield (Sysno.futex, word, FUTEX_WAIT_PRIVATE, 7, 0)
        ts = sb.scratch + 64
        sb.poke(ts, struct.pack("<qq", 0, 5_000_000))         # 5 ms
        seen["timeout"] = yield (Sysno.futex, word, FUTEX_WAIT_PRIVATE, 0, ts)

    sb = sandbox(main)
    assert sb.run() == 0
    assert seen == {"tid": 2, "woke": 1, "wait": 0, "mismatch": -Errno.EAGAIN,
                    "timeout": -Errno.ETIMEDOUT}


def _sigaction(sb: Sandbox, at: int, handler: int, flags: int, mask: int = 0) -> None:
    sb.poke(at, struct.pack("<QQQQ", handler, flags | SA_RESTORER, RESTORER, mask))


def test_signal_blocked_then_delivered_to_a_handler() -> None:
    """kill() of a blocked signal leaves it pending; unblocking runs the handler (with
    the signal masked inside it and a siginfo in user memory) before sigprocmask
    returns; rt_sigreturn then restores the mask and the interrupted registers."""
    log: list[object] = []
    base = 0

    def handler(sb: Sandbox) -> Callable[[int, int, int], Program]:
        def h(signo: int, info: int, uc: int) -> Program:
            si_signo, _, si_code, _, si_pid = struct.unpack_from("<iiiiI", sb.peek(info, 20))
            log.append(("handler", signo, si_signo, si_code, si_pid))
            yield (Sysno.rt_sigprocmask, SIG_BLOCK, 0, base + 96, 8)
            log.append(("mask in handler", sb.peek(base + 96, 8)))
            log.append(("getpid in handler", (yield (Sysno.getpid,))))
        return h

    def main(sb: Sandbox) -> Program:
        nonlocal base
        base = sb.scratch
        _sigaction(sb, base, sb.platform.handler(handler(sb)), SA_SIGINFO)
        assert (yield (Sysno.rt_sigaction, SIGUSR1, base, 0, 8)) == 0
        sb.poke(base + 64, struct.pack("<Q", 1 << (SIGUSR1 - 1)))
        assert (yield (Sysno.rt_sigprocmask, SIG_BLOCK, base + 64, 0, 8)) == 0
        assert (yield (Sysno.kill, 1, SIGUSR1)) == 0
        log.append("after kill")
        assert (yield (Sysno.rt_sigpending, base + 72, 8)) == 0
        log.append(("pending", sb.peek(base + 72, 8)))
        r = yield (Sysno.rt_sigprocmask, SIG_UNBLOCK, base + 64, 0, 8)
        log.append(("unblock returned", r))
        yield (Sysno.rt_sigprocmask, SIG_BLOCK, 0, base + 80, 8)
        log.append(("mask after", sb.peek(base + 80, 8)))

    sb = sandbox(main)
    assert sb.run() == 0
    usr1 = struct.pack("<Q", 1 << (SIGUSR1 - 1))
    assert log == ["after kill", ("pending", usr1),
                   ("handler", SIGUSR1, SIGUSR1, 0, 1),        # SI_USER from pid 1
                   ("mask in handler", usr1),
                   ("getpid in handler", 1),
                   ("unblock returned", 0),
                   ("mask after", bytes(8))]


def test_signal_interrupts_a_futex_wait_with_eintr() -> None:
    """A handler without SA_RESTART: the wait it interrupted returns EINTR after it."""
    log: list[object] = []

    def thread_b(sb: Sandbox) -> Program:
        yield (Sysno.sched_yield,)
        yield (Sysno.sched_yield,)
        yield (Sysno.tgkill, 1, 1, SIGUSR1)
        yield (Sysno.exit, 0)

    def main(sb: Sandbox) -> Program:
        base = sb.scratch
        def handler(signo: int, info: int, uc: int) -> Program:
            yield (Sysno.getppid,)
        _sigaction(sb, base + 32, sb.platform.handler(handler), 0)
        assert (yield (Sysno.rt_sigaction, SIGUSR1, base + 32, 0, 8)) == 0
        sb.platform.child_programs.append(thread_b(sb))
        yield (Sysno.clone, CLONE_THREAD_FLAGS, sb.init.regs.sp - 4096, 0, 0, 0)
        log.append((yield (Sysno.futex, base, FUTEX_WAIT_PRIVATE, 0, 0)))

    sb = sandbox(main)
    assert sb.run() == 0
    assert log == [-Errno.EINTR]
    assert Sysno.getppid in sb.init.thread.syscalls      # the handler ran


def test_default_action_kills_init() -> None:
    def main(sb: Sandbox) -> Program:
        yield (Sysno.kill, 1, SIGTERM)
        raise AssertionError("survived SIGTERM")

    assert sandbox(main).run() == SIGTERM          # wait status: killed by SIGTERM


def test_procfs_status_of_self() -> None:
    """open + read of /proc/self/status, served by procfs from the kernel's state."""
    out: dict[str, bytes | int] = {}

    def main(sb: Sandbox) -> Program:
        path, buf = sb.scratch, sb.scratch + 256
        sb.poke(path, b"/proc/self/status\0")
        fd = yield (Sysno.openat, (-100) & (2**64 - 1), path, 0, 0)
        assert fd >= 0, fd
        n = yield (Sysno.read, fd, buf, 2048)
        out["text"] = sb.peek(buf, n) if n > 0 else b""
        out["close"] = yield (Sysno.close, fd)
        out["again"] = yield (Sysno.read, fd, buf, 16)

    sb = sandbox(main, with_proc=True)
    assert sb.run() == 0
    text = out["text"]
    assert isinstance(text, bytes)
    fields = dict(line.split(b":\t", 1) for line in text.splitlines() if b":\t" in line)
    assert fields[b"Name"] == b"scripted"
    assert fields[b"Pid"] == b"1" and fields[b"PPid"] == b"0"
    assert out["close"] == 0 and out["again"] == -Errno.EBADF


def test_platform_stops_fault_and_death() -> None:
    """A FAULT stop becomes a forced SIGSEGV with the fault address (here caught by a
    handler that reads si_addr); an EXIT stop (the context died on the host) kills
    the process with SIGKILL."""
    seen: list[int] = []

    def main(sb: Sandbox) -> Program:
        base = sb.scratch

        def on_segv(signo: int, info: int, uc: int) -> Program:
            seen.append(struct.unpack_from("<Q", sb.peek(info + 16, 8))[0])
            yield (Sysno.getpid,)
        _sigaction(sb, base, sb.platform.handler(on_segv), SA_SIGINFO)
        yield (Sysno.rt_sigaction, 11, base, 0, 8)
        raw = struct.pack("<iii4xQ", 11, 0, 1, 0xDEAD000).ljust(128, b"\0")  # SEGV_MAPERR
        sb.platform.inject_stop(sb.init.thread,  # type: ignore[arg-type]
                                StopReason(StopKind.FAULT, 11, 0xDEAD000, info=raw))
        yield (Sysno.getppid,)               # the fault "happens" before this call
        sb.platform.inject_stop(sb.init.thread,  # type: ignore[arg-type]
                                StopReason(StopKind.EXIT, 9))
        yield (Sysno.getppid,)
        raise AssertionError("ran after its context died")

    sb = sandbox(main)
    assert sb.run() == 9                      # killed by SIGKILL
    assert seen == [0xDEAD000]
