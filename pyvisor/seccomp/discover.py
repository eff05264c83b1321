"""Reproducible discovery of the host syscalls the Sentry and the Gofer make
after start-up, and end-to-end runs of workloads under their filters.

    python3 -m pyvisor.seccomp.discover [--only NAME ...] [--keep DIR] [--list]
    python3 -m pyvisor.seccomp.discover --cmd -- PROGRAM ARGS...
    python3 -m pyvisor.seccomp.discover --enforce [kill|log|errno] [--only ...]

Method (discovery, the default).  Each workload is a fresh `pyvisor` process
started through pyvisor.seccomp.harness, which stops it at the exact point
where the filters are installed in production: after boot() has returned and
before kernel.run().  There the harness reports the Sentry's pid and the
Gofers' pids and waits; this driver attaches `strace -qq -ff -p SENTRY -p
GOFER...` (no -f: the Sentry is single-threaded and never forks after
start-up; following children would also grab the stubs, which the Sentry
itself must trace, and would record their injected syscalls), waits until
/proc/PID/status shows the tracer on every pid, and lets the sandbox run.
strace writes one file per pid; every syscall name (with the arguments that
matter for argument filters) is collected, and the union over all workloads
is compared with SENTRY_SYSCALLS and GOFER_SYSCALLS.  Start-up (imports,
fork of the stubs and Gofers, memfd creation) is deliberately not traced: it
happens before the filters exist.

With --enforce ACTION each workload instead runs with both filters
installed (ACTION: kill, the production setting; log to have the kernel log
every syscall outside the lists to the audit log/dmesg and carry on; errno
to make them fail with EPERM).  A process killed by the filter exits with
-31 (SIGSYS); the driver then prints the audit records (dmesg) naming the
syscall number.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = REPO / "tests" / "programs"
CFLAGS = ["-O1", "-Wall", "-pthread"]
PYTHON = "/usr/bin/python3"


# -- workloads ----------------------------------------------------------------------------

POOL = ("import multiprocessing as m\n"
        "with m.Pool(2) as p: print(sum(p.map(abs, range(-50, 50))))\n"
        "q = m.Queue(); pr = m.Process(target=q.put, args=('from child',)); pr.start()\n"
        "print(q.get()); pr.join(); print('exit', pr.exitcode)\n")

PY_THREADS = ("import threading, subprocess, os, time, signal\n"
              "out = []\n"
              "ts = [threading.Thread(target=lambda i=i: out.append(i*i)) for i in range(8)]\n"
              "[t.start() for t in ts]; [t.join() for t in ts]\n"
              "print(sum(out))\n"
              "print(subprocess.run(['echo', 'sub'], capture_output=True, text=True).stdout.strip())\n"
              "print(subprocess.check_output('echo a | tr a b', shell=True, text=True).strip())\n"
              "signal.signal(signal.SIGALRM, lambda *a: print('alarm'))\n"
              "signal.setitimer(signal.ITIMER_REAL, 0.05); time.sleep(0.2)\n"
              "print(os.cpu_count() > 0, len(os.sched_getaffinity(0)) > 0)\n")

MEMORY = ("import mmap, os\n"
          "x = bytearray(64 << 20); x[::4096] = b'x' * len(x[::4096]); del x\n"
          "m = mmap.mmap(-1, 32 << 20); m[:5] = b'hello'; m.close()\n"
          "with open('/tmp/big', 'wb') as f: f.write(os.urandom(1 << 20))\n"
          "m = mmap.mmap(os.open('/tmp/big', os.O_RDWR), 0); print(len(m)); m.close()\n"
          "print('mem ok')\n")

GCC = ("cd /tmp && printf '#include <stdio.h>\\nint main(void){puts(\"hi from gcc\");return 0;}\\n'"
       " > h.c && gcc -O1 -o h h.c && ./h")

SH_PIPE = ("echo hello | tr a-z A-Z | sed s/H/J/; seq 1 2000 | sort -rn | head -3 | wc -l; "
           "grep root /etc/passwd | cut -d: -f1; x=$(ls / | wc -l); echo $x; "
           "for i in 1 2 3; do echo $i; done | paste -sd+ | bc 2>/dev/null || true; "
           "cat < /etc/hostname > /dev/null; (exit 3); echo rc=$?")

TAR = ("mkdir -p /tmp/t/a && cp -r /usr/lib/python3.11/json /tmp/t/a/ && cd /tmp/t && "
       "tar cf x.tar a && mkdir b && tar xf x.tar -C b && diff -r a b/a && "
       "gzip -k x.tar && gunzip -c x.tar.gz | cmp - x.tar && echo same")

SYSINFO = ("nproc; uname -a; cat /proc/uptime /proc/loadavg > /dev/null; date > /dev/null; "
           "free > /dev/null; df / > /dev/null; cat /proc/cpuinfo /proc/meminfo /proc/self/status "
           "/proc/self/maps /proc/self/mountinfo /proc/stat > /dev/null; ps -e > /dev/null; "
           "ls -l /proc/self/fd /dev > /dev/null; cat /dev/urandom | head -c 100 | wc -c; "
           "timeout 0.3 sleep 5; echo timeout=$?; sleep 0.1; id; hostname")

DATA_OPS = ("cd /data && mkdir d && echo hi > d/f && ln -s f d/l && ln d/f d/h && mv d/h d/h2 && "
            "(chmod 600 d/f || echo chmod-failed) && touch -d @0 d/f && touch -a d/f && truncate -s 10 d/f && cat d/l && "
            "ls -la d > /dev/null && readlink d/l && stat -f . > /dev/null && df /data > /dev/null && "
            "chown 1:1 d/h2 && (mkfifo d/p 2>/dev/null || true) && mv d d2 && cat d2/h2 | wc -c && "
            "dd if=/dev/zero of=d2/big bs=64k count=16 2>/dev/null && cp d2/big d2/big2 && "
            "cmp d2/big d2/big2 && rm -r d2 && mkdir many && cd many && seq -f file-with-a-long-name-%g "
            "1 3000 | xargs touch && cd .. && ls many | wc -l && ls -la many > /dev/null && "
            "rm -r many && ls -la && echo data-ok")

TTY = ("test -t 0 && test -t 1 && echo TTY-YES; stty size; stty -a | head -1; "
       "stty raw -echo; stty sane; tput cols 2>/dev/null || true; "
       "python3 -c 'import os,termios,fcntl,struct; fd=0; a=termios.tcgetattr(fd); "
       "termios.tcsetattr(fd, termios.TCSADRAIN, a); termios.tcflush(fd, termios.TCIFLUSH); "
       "termios.tcdrain(1); termios.tcflow(1, termios.TCOON); termios.tcsendbreak(1, 0); "
       "print(struct.unpack(\"hhhh\", fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8)))[:2]); "
       "fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack(\"hhhh\", 30, 100, 0, 0)); "
       "print(struct.unpack(\"i\", fcntl.ioctl(0, termios.FIONREAD, bytes(4)))[0] >= 0); "
       "print(struct.unpack(\"i\", fcntl.ioctl(1, termios.TIOCOUTQ, bytes(4)))[0] >= 0); "
       "print(os.tcgetpgrp(0) > 0)'")

BUSYBOX = ("busybox ls / >/dev/null; busybox wc -l /etc/passwd; busybox ps >/dev/null; "
           "busybox sha256sum /bin/busybox; echo bb-ok")

HOST_FILES = ("cat; echo one; echo two >> /dev/stdout; : > /dev/stdout; echo after-truncate; "
              "python3 -c 'import os,sys; sys.stdout.flush(); os.fsync(1); "
              "print(os.lseek(0, 0, 1) >= 0, \"synced\")'")

SIGTERM = "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done"


@dataclass
class Workload:
    """One sandbox run.  `args` are pyvisor CLI arguments; "{prog:NAME}",
    "{bundle}", "{state}" and "{data}" are filled in by the driver."""

    name: str
    args: list[str]
    input: str | None = None
    tty: bool = False
    sigterm: bool = False          # send SIGTERM to the Sentry once "ready" is printed
    input_delay: float = 0.0       # feed `input` only after this many seconds
    file_stdio: bool = False       # stdin from and stdout to host regular files
    expect_rc: int | None = 0
    expect_out: str = ""           # a substring of stdout
    timeout: float = 300
    programs: list[tuple[str, bool]] = field(default_factory=list)


def _do(cmd: str, *extra: str) -> list[str]:
    return [*extra, "do", "--", "/bin/sh", "-c", cmd]


def _prog(name: str, *argv: str, static: bool = False) -> Workload:
    stem = name.removesuffix(".c") + ("-static" if static else "")
    return Workload(f"prog-{stem}", ["do", "--", "{prog:" + name + (":static" if static else "")
                                     + "}", *argv], expect_out="ok",
                    programs=[(name, static)])


SELF_CHECKING = ["pipe.c", "fork_wait.c", "exec.c", "signals.c", "threads.c", "mmap.c",
                 "files.c", "dup_fcntl.c", "poll.c", "time.c", "misc.c", "tty.c", "efault.c"]
STATIC = ["pipe.c", "fork_wait.c", "exec.c", "signals.c", "threads.c", "mmap.c"]


def workloads() -> list[Workload]:
    """Every discovery workload, in run order."""
    w = [
        Workload("sh-pipeline", _do(SH_PIPE), expect_out="rc=3"),
        Workload("ls-usr", ["do", "--", "/bin/ls", "-la", "/usr"], expect_out="lib"),
        Workload("find", ["do", "--", "/usr/bin/find", "/usr/lib/python3.11/json", "-name",
                          "*.py"], expect_out="decoder.py"),
        Workload("tar-roundtrip", _do(TAR), expect_out="same"),
        Workload("python-threads-subprocess", ["do", "--", PYTHON, "-c", PY_THREADS],
                 expect_out="alarm"),
        Workload("python-multiprocessing", ["do", "--", PYTHON, "-c", POOL],
                 expect_out="exit 0"),
        Workload("python-memory", ["do", "--", PYTHON, "-c", MEMORY], expect_out="mem ok"),
        Workload("gcc-hello", _do(GCC), expect_out="hi from gcc"),
        Workload("busybox", ["do", "--", "/usr/bin/busybox", "sh", "-c", BUSYBOX],
                 expect_out="bb-ok"),
        Workload("sysinfo", _do(SYSINFO), expect_out="timeout=124"),
        Workload("stdin-pipe", _do("read a; read b; echo got=$a$b; wc -c"),
                 input="line1\nline2\n" + "x" * 100000 + "\n", expect_out="100001"),
        Workload("stdin-blocking", _do("read x; echo got=$x; read y; echo got=$y"),
                 input="first\nsecond\n", input_delay=0.5, expect_out="got=second"),
        Workload("host-file-stdio", _do(HOST_FILES), file_stdio=True, input="from a file\n",
                 expect_out="synced"),
        Workload("big-output", _do("head -c 3000000 /dev/zero | od | tail -2; yes | head -50000 "
                                   "| wc -l"), expect_out="50000"),
        Workload("exit-signals", _do("sh -c 'kill -9 $$'; echo k=$?; "
                                     "python3 -c 'import os; os.abort()'; echo a=$?; "
                                     "python3 -c 'import ctypes; ctypes.string_at(0)'; echo s=$?; "
                                     "exit 7"), expect_rc=7, expect_out="s=139"),
        Workload("strace-flag", _do("echo traced; ls / > /dev/null", "--strace"),
                 expect_out="traced"),
        Workload("debug-log", ["--debug", "--log", "{state}/debug.log", "--log-format", "json",
                               "do", "--", PYTHON, "-c",
                               "import ctypes; print(ctypes.CDLL(None).syscall(1000))"],
                 expect_out="-1"),
        Workload("oci-bind-rw", ["--root", "{state}", "run", "--bundle", "{bundle}", "cid"],
                 expect_out="data-ok"),
        Workload("tty", _do(TTY), tty=True, expect_out="TTY-YES"),
        Workload("sigterm-forward", _do(SIGTERM), sigterm=True, expect_rc=3,
                 expect_out="got-term"),
    ]
    w += [_prog(n) for n in SELF_CHECKING]
    w += [_prog(n, static=True) for n in STATIC]
    w.append(_prog("isolation.c", "sandbox"))
    w.append(Workload("prog-pid1", ["do", "--", "{prog:pid1.c}"], expect_out="1",
                      programs=[("pid1.c", False)]))
    return w


# -- running one workload -----------------------------------------------------------------

@dataclass
class Outcome:
    name: str
    returncode: int
    stdout: str
    stderr: str
    reports: list[str]
    sentry_pid: int = 0
    gofer_pids: list[int] = field(default_factory=list)
    traces: dict[int, Path] = field(default_factory=dict)   # pid -> strace file

    @property
    def killed_by_sigsys(self) -> bool:
        return self.returncode in (-signal.SIGSYS, 128 + signal.SIGSYS)


class Workspace:
    """Compiled test programs, an OCI bundle with a writable bind mount, a state dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for p in [root, *root.parents]:
            if p == Path("/tmp") or p == Path("/"):
                break
            p.chmod(0o755)
        self.bin = root / "bin"
        self.bin.mkdir(exist_ok=True)
        self.bin.chmod(0o755)
        self._built: dict[tuple[str, bool], str] = {}

    def program(self, name: str, static: bool = False) -> str:
        key = (name, static)
        if key not in self._built:
            out = self.bin / (name.removesuffix(".c") + ("-static" if static else ""))
            if not out.exists():
                cmd = ["gcc", *CFLAGS, *(["-static"] if static else []), "-o", str(out),
                       str(PROGRAMS / name)]
                subprocess.run(cmd, check=True, capture_output=True)
                out.chmod(0o755)
            self._built[key] = str(out)
        return self._built[key]

    def fresh(self, name: str) -> tuple[Path, Path, Path]:
        """(state dir, bundle dir, data dir) for one run."""
        base = self.root / "runs" / name
        shutil.rmtree(base, ignore_errors=True)
        state, bundle, data = base / "state", base / "bundle", base / "data"
        for d in (state, bundle, data):
            d.mkdir(parents=True)
            d.chmod(0o777)
        base.chmod(0o755)
        (base.parent).chmod(0o755)
        cfg = {"ociVersion": "1.0.2",
               "process": {"args": ["/bin/sh", "-c", DATA_OPS],
                           "env": ["PATH=/usr/bin:/bin"], "cwd": "/"},
               "root": {"path": "/"},
               "hostname": "seccomp",
               "mounts": [{"destination": "/data", "type": "bind", "source": str(data),
                           "options": ["rbind", "rw"]}]}
        (bundle / "config.json").write_text(json.dumps(cfg))
        return state, bundle, data

    def expand(self, w: Workload, state: Path, bundle: Path, data: Path) -> list[str]:
        out = []
        for a in w.args:
            m = re.fullmatch(r"\{prog:([\w.]+)(:static)?\}", a)
            if m:
                out.append(self.program(m.group(1), bool(m.group(2))))
                continue
            out.append(a.replace("{state}", str(state)).replace("{bundle}", str(bundle))
                       .replace("{data}", str(data)))
        return out


def _env() -> dict[str, str]:
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + old if old else "")
    return env


def _wait_traced(pids: list[int], tracer: int, deadline: float) -> None:
    for pid in pids:
        while True:
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                break            # gone already
            m = re.search(r"^TracerPid:\s*(\d+)", text, re.MULTILINE)
            if m and int(m.group(1)) == tracer:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"strace did not attach to {pid}")
            time.sleep(0.01)


def run_workload(w: Workload, ws: Workspace, *, trace_dir: Path | None = None,
                 sentry_action: str = "", gofer_action: str = "", force: str = "",
                 on_report: Callable[[str], None] | None = None) -> Outcome:
    """Runs one workload in a fresh pyvisor process through the harness.

    trace_dir: attach strace to the Sentry and Gofers at the filter point and
    write one trace file per pid there.  sentry_action/gofer_action: install
    the filters with that default action instead.  force: make that unlisted
    syscall in the Sentry after its filter.  on_report: called (from another
    thread) with each line the harness reports, as it comes.
    """
    state, bundle, data = ws.fresh(w.name)
    args = ws.expand(w, state, bundle, data)
    rep_r, rep_w = os.pipe()
    go_r, go_w = (os.pipe() if trace_dir is not None else (-1, -1))
    cmd = [PYTHON, "-m", "pyvisor.seccomp.harness", "--report-fd", str(rep_w)]
    if trace_dir is not None:
        cmd += ["--go-fd", str(go_r)]
    if sentry_action:
        cmd += ["--sentry", sentry_action]
    if gofer_action:
        cmd += ["--gofer", gofer_action]
    if force:
        cmd += ["--force", force]
    cmd += ["--", *args]
    pass_fds = [fd for fd in (rep_w, go_r) if fd >= 0]
    master = slave = -1
    if w.tty:
        import pty
        master, slave = pty.openpty()
        import fcntl
        import struct
        import termios
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("hhhh", 24, 80, 0, 0))
        stdio: dict[str, int] = {"stdin": slave, "stdout": slave, "stderr": slave}
    elif w.file_stdio:
        inp = state.parent / "stdin.txt"
        inp.write_text(w.input or "")
        out_path = state.parent / "stdout.txt"
        stdio = {"stdin": os.open(inp, os.O_RDONLY), "stdout": os.open(
            out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            "stderr": subprocess.PIPE}
    else:
        stdio = {"stdin": subprocess.PIPE if w.input is not None else subprocess.DEVNULL,
                 "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    deadline = time.monotonic() + w.timeout
    proc = subprocess.Popen(cmd, pass_fds=pass_fds, env=_env(), cwd="/",
                            start_new_session=not w.tty,
                            preexec_fn=_make_ctty(slave) if w.tty else None,  # noqa: PLW1509
                            **stdio)
    os.close(rep_w)
    if w.file_stdio:
        os.close(stdio["stdin"])
        os.close(stdio["stdout"])
    if go_r >= 0:
        os.close(go_r)
    if slave >= 0:
        os.close(slave)
    reports: list[str] = []
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    ready = threading.Event()
    saw_ready_line = threading.Event()

    def read_reports() -> None:
        with os.fdopen(rep_r, "r") as f:
            for line in f:
                reports.append(line.rstrip("\n"))
                if on_report is not None:
                    on_report(line.rstrip("\n"))
                if line.startswith("ready "):
                    ready.set()
        ready.set()

    def pump(src: int | None, sink: list[bytes], watch: Callable[[bytes], None] | None) -> None:
        if src is None:
            return
        while True:
            try:
                chunk = os.read(src, 65536)
            except OSError:
                break
            if not chunk:
                break
            sink.append(chunk)
            if watch is not None:
                watch(b"".join(sink))

    def watch_ready(buf: bytes) -> None:
        if b"ready" in buf:
            saw_ready_line.set()

    threads = [threading.Thread(target=read_reports, daemon=True)]
    if w.tty:
        threads.append(threading.Thread(target=pump, args=(master, out_chunks, watch_ready),
                                        daemon=True))
    else:
        assert proc.stderr is not None
        if proc.stdout is not None:
            threads.append(threading.Thread(target=pump, args=(proc.stdout.fileno(), out_chunks,
                                                               watch_ready), daemon=True))
        threads.append(threading.Thread(target=pump, args=(proc.stderr.fileno(), err_chunks,
                                                           None), daemon=True))
    for t in threads:
        t.start()
    if w.input is not None and proc.stdin is not None:
        def feed() -> None:
            time.sleep(w.input_delay)
            try:
                proc.stdin.write(w.input.encode())   # type: ignore[union-attr]
                proc.stdin.close()                   # type: ignore[union-attr]
            except OSError:
                pass
        threading.Thread(target=feed, daemon=True).start()

    strace: subprocess.Popen[bytes] | None = None
    outcome = Outcome(w.name, 0, "", "", reports)
    try:
        if trace_dir is not None:
            ready.wait(max(1.0, deadline - time.monotonic()))
            line = next((r for r in reports if r.startswith("ready ")), None)
            if line is not None:
                pids = [int(x) for x in line.split()[1:]]
                outcome.sentry_pid, outcome.gofer_pids = pids[0], pids[1:]
                prefix = trace_dir / w.name
                scmd = ["strace", "-qq", "-ff", "-o", str(prefix)]
                for pid in pids:
                    scmd += ["-p", str(pid)]
                strace = subprocess.Popen(scmd, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                _wait_traced(pids, strace.pid, deadline)
                outcome.traces = {pid: Path(f"{prefix}.{pid}") for pid in pids}
            os.write(go_w, b"g")
            os.close(go_w)
        if w.sigterm:
            saw_ready_line.wait(max(1.0, deadline - time.monotonic()))
            time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc, w.tty)
            proc.wait()
            err_chunks.append(b"\n[discover] timed out, killed\n")
        if strace is not None:
            try:
                strace.wait(timeout=30)
            except subprocess.TimeoutExpired:
                strace.kill()
                strace.wait()
    finally:
        if proc.poll() is None:
            _kill_group(proc, w.tty)
            proc.wait()
        for t in threads:
            t.join(timeout=10)
        if master >= 0:
            os.close(master)
    outcome.returncode = proc.returncode
    if w.file_stdio:
        out_chunks = [(state.parent / "stdout.txt").read_bytes()]
    outcome.stdout = b"".join(out_chunks).decode(errors="replace")
    outcome.stderr = b"".join(err_chunks).decode(errors="replace")
    return outcome


def _make_ctty(slave: int) -> Callable[[], None]:
    def pre() -> None:
        import fcntl
        import termios
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    return pre


def _kill_group(proc: subprocess.Popen[bytes], tty: bool) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def check(w: Workload, o: Outcome) -> str:
    """'' if the workload did what it should, else why not."""
    problems = []
    if o.killed_by_sigsys:
        problems.append("killed by SIGSYS")
    if w.expect_rc is not None and o.returncode != w.expect_rc:
        problems.append(f"exit status {o.returncode}, expected {w.expect_rc}")
    if w.expect_out and w.expect_out not in o.stdout:
        problems.append(f"{w.expect_out!r} not in stdout")
    return "; ".join(problems)


# -- reading strace output ----------------------------------------------------------------

_CALL = re.compile(r"^(?:\d+\s+)?(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)")

# For these syscalls the argument at this index is collected (for argument filters).
ARG_OF_INTEREST = {"ioctl": 1, "fcntl": 1, "prctl": 0, "ptrace": 0, "kill": 1, "tgkill": 2,
                   "mmap": 2, "mprotect": 2, "madvise": 2, "clock_gettime": 0, "socket": 0,
                   "futex": 1, "rt_sigaction": 0, "rt_sigprocmask": 0, "openat": 2,
                   "newfstatat": 3, "epoll_ctl": 1, "fallocate": 1, "clone": 1, "clone3": 0,
                   "sendmsg": 2, "recvmsg": 2, "sendto": 3, "recvfrom": 3, "mremap": 3,
                   "getrandom": 2, "unlinkat": 2, "fchmodat": 3, "fchownat": 4, "linkat": 4,
                   "utimensat": 3, "readlinkat": 0, "renameat2": 4, "wait4": 2,
                   "lseek": 2, "sched_setaffinity": 0, "prlimit64": 1}


def split_args(s: str) -> list[str]:
    """Splits strace's argument text at top-level commas."""
    out, depth, cur, quote, esc = [], 0, [], False, False
    for ch in s:
        if quote:
            cur.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                quote = False
            continue
        if ch == '"':
            quote = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if cur:
        out.append("".join(cur).strip())
    return out


def parse_trace(path: Path) -> dict[str, set[str]]:
    """{syscall name: set of interesting argument values} from one strace -o file."""
    calls: dict[str, set[str]] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return calls
    for line in lines:
        if line.startswith(("---", "+++")) or not line:
            continue
        m = _CALL.match(line)
        if not m:
            continue
        name = m.group(1)
        vals = calls.setdefault(name, set())
        idx = ARG_OF_INTEREST.get(name)
        if idx is not None and "(" in line and "resumed>" not in line:
            args = split_args(line[line.index("(") + 1:])
            if idx < len(args):
                v = args[idx]
                vals.add(v[:60])
    return calls


def merge(into: dict[str, set[str]], more: dict[str, set[str]]) -> None:
    for k, v in more.items():
        into.setdefault(k, set()).update(v)


# -- the command line ---------------------------------------------------------------------

def _dmesg_since(mark: int) -> list[str]:
    try:
        out = subprocess.run(["dmesg"], check=False, capture_output=True, text=True).stdout.splitlines()
    except OSError:
        return []
    return [ln for ln in out[mark:] if "type=1326" in ln or "seccomp" in ln]


def _dmesg_len() -> int:
    try:
        return len(subprocess.run(["dmesg"], check=False, capture_output=True, text=True).stdout.splitlines())
    except OSError:
        return 0


def syscall_name(nr: int) -> str:
    import seccomp
    try:
        name = seccomp.resolve_syscall(seccomp.Arch.X86_64, nr)
        return name.decode() if isinstance(name, bytes) else str(name)
    except (ValueError, RuntimeError):
        return f"syscall_{nr}"


def explain_audit(lines: list[str]) -> list[str]:
    """Audit records with the syscall number resolved to a name."""
    out = []
    for ln in lines:
        m = re.search(r"pid=(\d+).*?sig=(\d+).*?syscall=(\d+).*?code=(0x[0-9a-f]+)", ln)
        if m:
            out.append(f"pid {m.group(1)} syscall {syscall_name(int(m.group(3)))} "
                       f"(nr {m.group(3)}, sig {m.group(2)}, action {m.group(4)})")
        else:
            out.append(ln)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pyvisor.seccomp.discover", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", default=[], help="run only workloads with these names "
                   "(substring match)")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.add_argument("--keep", default="", help="keep traces and programs in this directory")
    p.add_argument("--enforce", nargs="?", const="kill", default="",
                   help="run with the filters installed (kill, log or errno) instead of strace")
    p.add_argument("--json", default="", help="write the discovered sets to this file")
    p.add_argument("--cmd", nargs=argparse.REMAINDER, help="one custom command (after --)")
    a = p.parse_args(argv)
    ws_list = workloads()
    if a.cmd:
        cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
        ws_list = [Workload("custom", ["do", "--", *cmd], expect_rc=None)]
    if a.only:
        ws_list = [w for w in ws_list if any(o in w.name for o in a.only)]
    if a.list:
        for w in ws_list:
            print(w.name)
        return 0
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="pyvisor-seccomp-",
                                                                 dir="/tmp"))
    ws = Workspace(root)
    trace_dir = root / "traces"
    trace_dir.mkdir(exist_ok=True)
    from pyvisor.seccomp.filters import (
        GOFER_REFUSED,
        GOFER_SYSCALLS,
        SENTRY_REFUSED,
        SENTRY_SYSCALLS,
    )
    sentry: dict[str, set[str]] = {}
    gofer: dict[str, set[str]] = {}
    failures = 0
    try:
        for w in ws_list:
            mark = _dmesg_len()
            t0 = time.monotonic()
            if a.enforce:
                o = run_workload(w, ws, sentry_action=a.enforce, gofer_action=a.enforce)
            else:
                o = run_workload(w, ws, trace_dir=trace_dir)
            why = check(w, o)
            status = "ok" if not why else f"FAILED: {why}"
            print(f"{w.name:28} rc={o.returncode:<4} {time.monotonic() - t0:6.1f}s  {status}",
                  flush=True)
            for r in o.reports:
                if not r.startswith("ready"):
                    print(f"    {r}")
            audit = _dmesg_since(mark)
            if audit:
                for ln in explain_audit(audit)[:20]:
                    print(f"    audit: {ln}")
            if why:
                failures += 1
                print("    stdout: " + o.stdout[-1500:].replace("\n", "\n            "))
                print("    stderr: " + o.stderr[-1500:].replace("\n", "\n            "))
            for pid, path in o.traces.items():
                calls = parse_trace(path)
                merge(sentry if pid == o.sentry_pid else gofer, calls)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    if a.enforce:
        print(f"{len(ws_list) - failures}/{len(ws_list)} workloads passed under the filters "
              f"({a.enforce})")
        return 1 if failures else 0
    for label, found, listed, refused in (("Sentry", sentry, SENTRY_SYSCALLS, SENTRY_REFUSED),
                                          ("Gofer", gofer, GOFER_SYSCALLS, GOFER_REFUSED)):
        print(f"\n{label}: {len(found)} distinct syscalls after start-up")
        for name in sorted(found):
            vals = sorted(found[name])
            mark = " " if name in listed else "~" if name in refused else "!"
            extra = f"  [{', '.join(vals[:12])}{', ...' if len(vals) > 12 else ''}]" \
                if vals else ""
            print(f"  {mark} {name}{extra}")
        missing = sorted(set(found) - set(listed) - set(refused))
        unused = sorted(set(listed) - set(found))
        print("  (~: refused with an errno by the filter, as a file-system probe)")
        print(f"  not on the {label} list: {missing or 'none'}")
        print(f"  on the list but not seen here: {unused or 'none'}")
    if a.json:
        Path(a.json).write_text(json.dumps(
            {"sentry": {k: sorted(v) for k, v in sorted(sentry.items())},
             "gofer": {k: sorted(v) for k, v in sorted(gofer.items())}}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
