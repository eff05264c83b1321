"""The Sentry's and the Gofer's seccomp filters, in forked children.

Each check forks a child that installs a filter with the production default
(kill), makes syscalls, and reports each result on a pipe before the next.
A syscall outside the list must kill the child by SIGSYS; one on the list
must work; argument filters must tell the two apart.

Safety: checks that send signals (kill, tgkill) run in a child that is PID 1
of a fresh PID namespace and leader of its own session, so even a wrong filter
could only signal processes of that namespace and session.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import signal
import socket
from collections.abc import Callable

import pytest

seccomp = pytest.importorskip("seccomp")

from pyvisor.seccomp import filters as F

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
CLONE_NEWPID = 0x20000000

SYS_ptrace, SYS_kill, SYS_tgkill, SYS_ioctl, SYS_mmap = 101, 62, 234, 16, 9
SYS_openat, SYS_newfstatat, SYS_linkat, SYS_fcntl, SYS_prctl = 257, 262, 265, 72, 157
PTRACE_ATTACH, PTRACE_SEIZE, PTRACE_TRACEME = 16, 0x4206, 0
TIOCSTI = 0x5412
AT_FDCWD = -100


def raw(nr: int, *args: int) -> int:
    """A raw syscall: returns the result or -errno."""
    ctypes.set_errno(0)
    r = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return -ctypes.get_errno() if r == -1 else r


class Report:
    """What a child says on its pipe, and how it ended."""

    def __init__(self, lines: list[str], status: int) -> None:
        self.lines = lines
        self.status = status

    @property
    def sigsys(self) -> bool:
        return os.WIFSIGNALED(self.status) and os.WTERMSIG(self.status) == signal.SIGSYS

    def __repr__(self) -> str:
        how = (f"signal {os.WTERMSIG(self.status)}" if os.WIFSIGNALED(self.status)
               else f"exit {os.WEXITSTATUS(self.status)}")
        return f"<{how}: {self.lines}>"


def in_child(body: Callable[[Callable[[str], None]], None], pidns: bool = False) -> Report:
    """Runs body(say) in a forked child (PID 1 of a new PID namespace with pidns).

    say(line) writes one line to the parent at once, so lines said before a
    fatal syscall survive it.  The child exits 0 after body returns.
    """
    r, w = os.pipe()
    st_r, st_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        os.close(st_r)
        try:
            def say(line: str) -> None:
                os.write(w, (line + "\n").encode())

            if pidns:
                if _libc.unshare(CLONE_NEWPID) != 0:
                    os._exit(99)
                inner = os.fork()
                if inner == 0:
                    os.setsid()
                    body(say)
                    os._exit(0)
                _, status = os.waitpid(inner, 0)
                os.write(st_w, str(status).encode())
                os._exit(0)
            body(say)
        except BaseException as e:  # noqa: BLE001
            os.write(w, f"exception {e!r}\n".encode())
            os._exit(98)
        os._exit(0)
    os.close(w)
    os.close(st_w)
    with os.fdopen(r) as f:
        lines = f.read().splitlines()
    with os.fdopen(st_r) as f:
        inner_status = f.read()
    _, status = os.waitpid(pid, 0)
    if pidns:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, lines)
        status = int(inner_status)
    return Report(lines, status)


def sentry(action: str = "kill") -> None:
    F.build_sentry_filter(action).load()


def gofer(action: str = "kill", sock_fd: int | None = None) -> None:
    F.build_gofer_filter(action, sock_fd=sock_fd).load()


# -- the lists themselves --------------------------------------------------------------------

def test_lists_are_documented_and_resolvable() -> None:
    for rules, refused in ((F.SENTRY_RULES, F.SENTRY_REFUSED), (F.GOFER_RULES, F.GOFER_REFUSED)):
        for name, spec in rules.items():
            assert spec.reason, name
            assert seccomp.resolve_syscall(seccomp.Arch.X86_64, name) >= 0, name
        assert not set(rules) & set(refused)
    for name in ("clone", "clone3", "fork", "vfork", "execve", "execveat", "socket",
                 "connect", "bind", "mount", "umount2", "pivot_root", "chroot", "unshare",
                 "setns", "memfd_create", "userfaultfd", "bpf", "perf_event_open",
                 "io_uring_setup", "keyctl", "add_key", "init_module", "finit_module",
                 "kexec_load", "reboot", "open_by_handle_at", "name_to_handle_at", "mknodat",
                 "ptrace_attach_is_not_a_syscall"):
        assert name not in F.SENTRY_SYSCALLS, name
        assert name not in F.GOFER_SYSCALLS, name
    assert set(F.GOFER_SYSCALLS) != set(F.SENTRY_SYSCALLS)
    # The Sentry never touches the file system by path; the Gofer never drives processes.
    for name in ("openat", "mkdirat", "unlinkat", "renameat", "linkat", "symlinkat"):
        assert name not in F.SENTRY_SYSCALLS
    for name in ("ptrace", "process_vm_readv", "process_vm_writev", "kill", "tgkill", "wait4"):
        assert name not in F.GOFER_SYSCALLS


def test_summary() -> None:
    s = F.sentry_filter_summary()
    assert s["allowed_count"] == len(F.SENTRY_SYSCALLS) == len(s["allowed"])
    assert "ptrace" in s["argument_filters"] and "PTRACE_SYSEMU" in s["argument_filters"]["ptrace"]
    assert s["refused_with_errno"]["openat"] == "EACCES"
    g = F.gofer_filter_summary()
    assert g["allowed_count"] == len(F.GOFER_SYSCALLS)
    assert "O_NOFOLLOW" in g["argument_filters"]["openat"]


def test_bad_action_is_refused() -> None:
    with pytest.raises(ValueError):
        F.build_sentry_filter("allow")


# -- the Sentry ------------------------------------------------------------------------------

def test_sentry_allows_listed_and_kills_unlisted() -> None:
    def body(say: Callable[[str], None]) -> None:
        F.install_sentry_filter()
        say(f"getpid {os.getpid() > 0}")
        say(f"status-fd-read {len(os.pread(status_fd, 4096, 0)) > 0}")
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)   # socket(2): not on the list
        say("socket survived")

    status_fd = os.open("/proc/self/status", os.O_RDONLY)
    try:
        rep = in_child(body)
    finally:
        os.close(status_fd)
    assert rep.lines == ["getpid True", "status-fd-read True"], rep
    assert rep.sigsys, rep


def test_sentry_seccomp_status_is_2() -> None:
    def body(say: Callable[[str], None]) -> None:
        status_fd = os.open("/proc/self/status", os.O_RDONLY)   # before: open is refused after
        sentry()
        text = os.pread(status_fd, 8192, 0).decode()
        say(next(ln for ln in text.splitlines() if ln.startswith("Seccomp:")))
        say(next(ln for ln in text.splitlines() if ln.startswith("NoNewPrivs:")))

    rep = in_child(body)
    assert rep.lines == ["Seccomp:\t2", "NoNewPrivs:\t1"], rep


@pytest.mark.parametrize("call", [
    "fork", "execve", "mkdir", "memfd_create", "unshare", "clone-thread", "mount",
])
def test_sentry_kills_after_startup_calls(call: str) -> None:
    def body(say: Callable[[str], None]) -> None:
        sentry()
        say("installed")
        if call == "fork":
            os.fork()
        elif call == "execve":
            os.execv("/bin/true", ["true"])
        elif call == "mkdir":
            os.mkdir("/tmp/pyvisor-seccomp-should-not-exist")
        elif call == "memfd_create":
            os.memfd_create("x")
        elif call == "unshare":
            raw(272, 0x00020000)
        elif call == "clone-thread":
            import threading
            threading.Thread(target=lambda: None).start()
        elif call == "mount":
            raw(165, 0, 0, 0, 0, 0)
        say("survived")

    rep = in_child(body)
    assert rep.lines == ["installed"] and rep.sigsys, rep


def test_sentry_refuses_path_probes_with_errno() -> None:
    def body(say: Callable[[str], None]) -> None:
        sentry()
        for path in ("/etc/passwd", "/proc/self/status"):
            try:
                os.open(path, os.O_RDONLY)
                say("open ok")
            except OSError as e:
                say(f"open {errno.errorcode[e.errno]}")
        try:
            os.stat("/")
            say("stat ok")
        except OSError as e:
            say(f"stat {errno.errorcode[e.errno]}")
        say(f"fstat {os.fstat(0).st_mode != 0}")       # newfstatat(0, "", AT_EMPTY_PATH)
        import time
        say(f"localtime {time.localtime().tm_year > 2000}")  # glibc tzset stats /etc/localtime
        import linecache
        say(f"linecache {linecache.getline(os.__file__, 1)!r}")

    rep = in_child(body)
    assert rep.lines == ["open EACCES", "open EACCES", "stat EACCES", "fstat True",
                         "localtime True", "linecache ''"], rep
    assert os.WIFEXITED(rep.status) and os.WEXITSTATUS(rep.status) == 0, rep


@pytest.mark.parametrize("request_", [PTRACE_ATTACH, PTRACE_SEIZE, PTRACE_TRACEME])
def test_sentry_ptrace_only_on_its_own_stubs(request_: int) -> None:
    def body(say: Callable[[str], None]) -> None:
        target = os.fork()
        if target == 0:
            signal.pause()
            os._exit(0)
        sentry()
        say(f"getregs {raw(SYS_ptrace, 12, target, 0, 0)}")   # allowed (ESRCH: not traced)
        raw(SYS_ptrace, request_, target, 0, 0)
        say("survived")

    rep = in_child(body, pidns=True)
    assert rep.lines == [f"getregs {-errno.ESRCH}"] and rep.sigsys, rep


@pytest.mark.parametrize("other", ["sigterm", "pgrp0", "pgrp-n"])
def test_sentry_kill_only_sigkill_to_a_pid(other: str) -> None:
    def body(say: Callable[[str], None]) -> None:
        target = os.fork()
        if target == 0:
            signal.pause()
            os._exit(0)
        sentry()
        say(f"sigkill {raw(SYS_kill, target, signal.SIGKILL)}")
        _, st = os.waitpid(target, 0)
        say(f"target {os.WTERMSIG(st)}")
        if other == "sigterm":
            raw(SYS_kill, os.getpid(), signal.SIGTERM)
        elif other == "pgrp0":
            raw(SYS_kill, 0, signal.SIGKILL)                 # own process group
        else:
            raw(SYS_kill, -os.getpid(), signal.SIGKILL)      # a process group by id
        say("survived")

    rep = in_child(body, pidns=True)
    assert rep.lines == ["sigkill 0", "target 9"] and rep.sigsys, rep


@pytest.mark.parametrize("action", ["kill", "log", "errno"])
def test_sentry_kill_minus_one_is_fatal_in_every_mode(action: str) -> None:
    def body(say: Callable[[str], None]) -> None:
        target = os.fork()
        if target == 0:
            signal.pause()
            os._exit(0)
        sentry(action)
        say("installed")
        raw(SYS_kill, -1, signal.SIGKILL)
        say("survived")

    rep = in_child(body, pidns=True)
    assert rep.lines == ["installed"] and rep.sigsys, rep


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGUSR1])
def test_sentry_tgkill_only_sigstop(sig: int) -> None:
    def body(say: Callable[[str], None]) -> None:
        target = os.fork()
        if target == 0:
            signal.pause()
            os._exit(0)
        sentry()
        say(f"sigstop {raw(SYS_tgkill, target, target, signal.SIGSTOP)}")
        _, st = os.waitpid(target, os.WUNTRACED)
        say(f"stopped {os.WIFSTOPPED(st)}")
        raw(SYS_kill, target, signal.SIGKILL)
        os.waitpid(target, 0)
        raw(SYS_tgkill, os.getpid(), os.getpid(), sig)
        say("survived")

    rep = in_child(body, pidns=True)
    assert rep.lines == ["sigstop 0", "stopped True"] and rep.sigsys, rep


def test_sentry_ioctl_only_terminal_requests() -> None:
    def body(say: Callable[[str], None]) -> None:
        sentry()
        buf = ctypes.create_string_buffer(64)
        say(f"tcgets {raw(SYS_ioctl, rfd, 0x5401, ctypes.addressof(buf))}")
        say(f"fionread {raw(SYS_ioctl, rfd, 0x541B, ctypes.addressof(buf))}")
        c = ctypes.c_char(b"x")
        raw(SYS_ioctl, rfd, TIOCSTI, ctypes.addressof(c))   # terminal input injection
        say("survived")

    rfd, wfd = os.pipe()
    try:
        rep = in_child(body)
    finally:
        os.close(rfd)
        os.close(wfd)
    assert rep.lines == [f"tcgets {-errno.ENOTTY}", "fionread 0"] and rep.sigsys, rep


def test_sentry_memory_never_executable() -> None:
    def body(say: Callable[[str], None]) -> None:
        sentry()
        m = mmap.mmap(-1, 1 << 20)
        m[:4] = b"data"
        say(f"anon {m[:4]!r}")
        big = bytearray(64 << 20)
        say(f"big {len(big)}")
        del big
        raw(SYS_mmap, 0, 4096, mmap.PROT_READ | mmap.PROT_EXEC,
            mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        say("survived")

    rep = in_child(body)
    assert rep.lines == ["anon b'data'", f"big {64 << 20}"] and rep.sigsys, rep


@pytest.mark.parametrize("call", ["fcntl", "prctl"])
def test_sentry_fcntl_never_prctl_limited(call: str) -> None:
    def body(say: Callable[[str], None]) -> None:
        sentry()
        say(f"seccomp {raw(SYS_prctl, 21)}")               # PR_GET_SECCOMP: allowed
        if call == "fcntl":
            raw(SYS_fcntl, rfd, 3)                         # F_GETFL: not needed after start-up
        else:
            raw(SYS_prctl, 4, 1)                           # PR_SET_DUMPABLE
        say("survived")

    rfd, wfd = os.pipe()
    try:
        rep = in_child(body)
    finally:
        os.close(rfd)
        os.close(wfd)
    assert rep.lines == ["seccomp 2"] and rep.sigsys, rep


def test_install_is_idempotent_and_stackable() -> None:
    def body(say: Callable[[str], None]) -> None:
        status_fd = os.open("/proc/self/status", os.O_RDONLY)
        install = F.install_sentry_filter
        install()
        install()                # no-op
        sentry()                 # a second, stacked filter needs prctl and seccomp
        text = os.pread(status_fd, 8192, 0).decode()
        say(next(ln for ln in text.splitlines() if ln.startswith("Seccomp_filters:")))

    rep = in_child(body)
    assert rep.lines == ["Seccomp_filters:\t2"], rep


# -- the Gofer -------------------------------------------------------------------------------

def test_gofer_allows_listed_and_kills_unlisted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f").write_text("hello")
    dfd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)

    def body(say: Callable[[str], None]) -> None:
        install = F.install_gofer_filter
        install(sock_fd=a.fileno())
        say(f"getpid {os.getpid() > 0}")
        fd = os.open("f", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        say(f"open {os.fstat(fd).st_size}")
        say(f"lstat {os.stat('f', dir_fd=dfd, follow_symlinks=False).st_size}")
        a.sendall(b"ping")                                   # sendto on the connection
        say("sent")
        b.recv(4)                                            # recvfrom on another fd
        say("survived")

    a, b = socket.socketpair()
    try:
        rep = in_child(body)
    finally:
        a.close()
        b.close()
        os.close(dfd)
    assert rep.lines == ["getpid True", "open 5", "lstat 5", "sent"] and rep.sigsys, rep


def test_gofer_never_follows_symlinks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f").write_text("x")
    dfd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)

    def body(say: Callable[[str], None]) -> None:
        gofer()
        try:
            os.stat("f", dir_fd=dfd)                      # follows: refused, not fatal
            say("stat ok")
        except OSError as e:
            say(f"stat {errno.errorcode[e.errno]}")
        fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
        say(f"attach {fd > 0}")
        os.open("f", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)   # no O_NOFOLLOW: fatal
        say("survived")

    try:
        rep = in_child(body)
    finally:
        os.close(dfd)
    assert rep.lines == ["stat EACCES", "attach True"] and rep.sigsys, rep


def test_gofer_linkat_of_an_fd_is_fatal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f").write_text("x")
    dfd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    ffd = os.open(tmp_path / "f", os.O_RDONLY)

    def body(say: Callable[[str], None]) -> None:
        gofer()
        os.link("f", "g", src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        say("link ok")
        empty, new = ctypes.create_string_buffer(b""), ctypes.create_string_buffer(b"h")
        raw(SYS_linkat, ffd, ctypes.addressof(empty), dfd, ctypes.addressof(new),
            F.AT_EMPTY_PATH)                               # link an fd: fatal
        say("survived")

    try:
        rep = in_child(body)
    finally:
        os.close(dfd)
        os.close(ffd)
    assert rep.lines == ["link ok"] and rep.sigsys, rep
    assert (tmp_path / "g").exists() and not (tmp_path / "h").exists()


def test_gofer_cannot_drive_processes() -> None:
    def body(say: Callable[[str], None]) -> None:
        target = os.fork()
        if target == 0:
            signal.pause()
            os._exit(0)
        gofer()
        say("installed")
        raw(SYS_kill, target, signal.SIGKILL)
        say("survived")

    rep = in_child(body, pidns=True)
    assert rep.lines == ["installed"] and rep.sigsys, rep


def test_log_action_lets_unlisted_calls_run() -> None:
    def body(say: Callable[[str], None]) -> None:
        sentry("log")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        say("socket ok")
        s.close()

    rep = in_child(body)
    assert rep.lines == ["socket ok"] and os.WIFEXITED(rep.status), rep


def test_errno_action_fails_unlisted_calls() -> None:
    def body(say: Callable[[str], None]) -> None:
        sentry("errno")
        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            say("socket ok")
        except OSError as e:
            say(f"socket {errno.errorcode[e.errno]}")

    rep = in_child(body)
    assert rep.lines == ["socket EPERM"], rep


@pytest.mark.parametrize("target", ["control", "other"])
def test_sentry_control_socket_rules(target: str) -> None:
    """With a control socket, accept4 works on that fd only and fcntl(F_GETFL) is allowed
    (exec's stdio fds); getsockname, which CPython makes on every accepted fd, too."""
    SYS_accept4, SYS_getsockname = 288, 51
    kind = socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK
    listener, other = socket.socket(socket.AF_UNIX, kind), socket.socket(socket.AF_UNIX, kind)
    listener.bind("")
    listener.listen(1)
    other.bind("")
    other.listen(1)

    def body(say: Callable[[str], None]) -> None:
        F.build_sentry_filter("kill", control_fd=listener.fileno()).load()
        say(f"getfl {raw(SYS_fcntl, listener.fileno(), 3) >= 0}")
        buf = ctypes.create_string_buffer(128)
        n = ctypes.c_uint(128)
        got = raw(SYS_getsockname, listener.fileno(), ctypes.addressof(buf), ctypes.addressof(n))
        say(f"getsockname {got}")
        fd = listener.fileno() if target == "control" else other.fileno()
        say(f"accept4 {raw(SYS_accept4, fd, 0, 0, 0)}")

    try:
        rep = in_child(body)
    finally:
        listener.close()
        other.close()
    assert rep.lines[:2] == ["getfl True", "getsockname 0"], rep
    if target == "control":
        assert rep.lines[2:] == [f"accept4 {-errno.EAGAIN}"] and not rep.sigsys, rep
    else:
        assert rep.lines[2:] == [] and rep.sigsys, rep

# -- hostinet (--network=host) ----------------------------------------------------------------

def test_hostinet_calls_only_with_network_host() -> None:
    assert not {"socket", "bind", "connect", "listen"} & set(F.sentry_rules())
    rules = F.sentry_rules(hostinet=True)
    assert {"socket", "bind", "connect", "listen", "accept4", "setsockopt"} <= set(rules)
    assert "SOCK_NONBLOCK|SOCK_CLOEXEC" in rules["socket"].describe()
    assert "SO_ATTACH_FILTER" not in rules["setsockopt"].describe()


@pytest.mark.parametrize("call", ["unix", "blocking", "raw", "attach_filter", "netlink"])
def test_hostinet_filter(call: str) -> None:
    """With the hostinet rules, the sockets hostinet makes work; any other socket, and
    SO_ATTACH_FILTER, kill the process."""
    def body(say: Callable[[str], None]) -> None:
        F.install_sentry_filter(hostinet=True)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                          | socket.SOCK_CLOEXEC)
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        say("inet ok")
        if call == "unix":
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                          | socket.SOCK_CLOEXEC)
        elif call == "blocking":
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        elif call == "raw":
            socket.socket(socket.AF_INET, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                          | socket.SOCK_CLOEXEC, socket.IPPROTO_ICMP)
        elif call == "attach_filter":
            s.setsockopt(socket.SOL_SOCKET, 26, b"\0" * 16)      # SO_ATTACH_FILTER
        else:
            socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                          | socket.SOCK_CLOEXEC, 0)
        say("survived")

    rep = in_child(body)
    assert rep.lines == ["inet ok"], rep
    assert rep.sigsys, rep


# -- systrap's additions (--platform=systrap) ------------------------------------------------

SYS_futex = 202


def test_systrap_rules_only_with_systrap() -> None:
    assert "futex" not in F.sentry_rules()
    rules = F.sentry_rules(platform="systrap")
    assert "futex" in rules and "PTRACE_POKEDATA" in rules["ptrace"].describe()
    assert "PTRACE_POKEDATA" not in F.sentry_rules()["ptrace"].describe()
    assert "PTRACE_DETACH" not in rules["ptrace"].describe()


@pytest.mark.parametrize("bad", ["futex_requeue", "futex_lock_pi", "tgkill_sigkill"])
def test_sentry_systrap_futex_and_tgkill(bad: str) -> None:
    """With --platform=systrap the Sentry may FUTEX_WAKE/FUTEX_WAIT (shared, on the
    regions) and tgkill SIGUSR2 (its interrupt); no other futex operation, no other
    signal."""
    def body(say: Callable[[str], None]) -> None:
        target = os.fork()
        if target == 0:
            signal.signal(signal.SIGUSR2, lambda *_: None)
            signal.pause()
            os._exit(0)
        word = ctypes.c_uint32(7)
        addr = ctypes.addressof(word)
        F.build_sentry_filter("kill", platform="systrap").load()
        say(f"wake {raw(SYS_futex, addr, 1, 1, 0, 0, 0)}")
        say(f"wait {raw(SYS_futex, addr, 0, 8, 0, 0, 0)}")     # value differs: EAGAIN
        say(f"usr2 {raw(SYS_tgkill, target, target, signal.SIGUSR2)}")
        raw(SYS_kill, target, signal.SIGKILL)
        os.waitpid(target, 0)
        if bad == "futex_requeue":
            raw(SYS_futex, addr, 3, 1, 0, addr, 0)
        elif bad == "futex_lock_pi":
            raw(SYS_futex, addr, 6, 0, 0, 0, 0)
        else:
            raw(SYS_tgkill, os.getpid(), os.getpid(), signal.SIGKILL)
        say("survived")

    rep = in_child(body, pidns=True)
    assert rep.lines == ["wake 0", f"wait {-errno.EAGAIN}", "usr2 0"] and rep.sigsys, rep
