"""Real programs inside the sandbox (issue #10): an interactive bash on the
sandbox's pty with job control, Python's process pools, timers and asyncio
subprocesses, stress-ng stressors, sqlite3 in WAL mode with two writers, git,
make -j2 with gcc, and the procps tools.  Each compares with Linux where the
output is deterministic, and otherwise checks the program's own verdict."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from pvtest import Comparer, Runner, execute, pyvisor_env

PV = [sys.executable, "-m", "pyvisor", "do", "--"]


class Pty:
    """`pyvisor do -- argv` on a fresh pseudo-terminal (the user's terminal),
    driven like expect(1)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child
            os.environ.update(pyvisor_env(None))
            os.environ.update(env or {})
            os.execv(PV[0], [*PV, *argv])
        self.buf = b""
        self.seen = b""

    def expect(self, pattern: str, timeout: float = 60) -> str:
        """Reads until `pattern` (a regex) appears; returns the text before it
        and drops everything up to its end."""
        rx = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while not (m := rx.search(self.buf)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in {self.seen[-600:]!r}")
            r, _, _ = select.select([self.master], [], [], min(left, 1))
            if r:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"EOF before {pattern!r} in {self.seen[-600:]!r}")
                self.buf += chunk
                self.seen += chunk
        before = self.buf[:m.start()].decode(errors="replace")
        self.buf = self.buf[m.end():]
        return before

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> int:
        """Waits for pyvisor (killing it after 30 s); returns its exit status."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.master)
                return os.waitstatus_to_exitcode(status)
            try:  # keep draining so the program never blocks on a full pty
                if select.select([self.master], [], [], 0.2)[0]:
                    os.read(self.master, 4096)
            except OSError:
                time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.master)
        raise AssertionError("pyvisor did not exit")


PROMPT = r"PV\$ "
# A foreground job that says when it runs: the quotes keep the echoed command
# line from matching.
FG_SLEEP = "sh -c 'echo re\"\"ady; exec sleep 100'\n"
FG_READY = "ready"


def test_interactive_bash_job_control() -> None:
    """bash -i on the sandbox's pty: a command, ^C a sleep, a background job
    listed and killed with %1, ^Z and fg then ^C.  Each step is what Linux's
    line discipline and bash's job control do natively."""
    sh = Pty(["/bin/bash", "--norc", "--noprofile", "-i"], {"PS1": "PV$ "})
    try:
        sh.expect(PROMPT)
        sh.send("echo sum=$((40+2))\n")
        sh.expect("sum=42")
        sh.expect(PROMPT)

        sh.send(FG_SLEEP)
        sh.expect(FG_READY)                   # the job is the terminal's foreground now
        sh.send("\x03")                       # ^C: SIGINT to the foreground group
        sh.expect(PROMPT)
        sh.send("echo rc=$?\n")
        sh.expect("rc=130")                   # 128 + SIGINT
        sh.expect(PROMPT)

        sh.send("sleep 100 &\n")
        sh.expect(r"\[1\] \d+")
        sh.expect(PROMPT)
        sh.send("jobs\n")
        sh.expect(r"\[1\]\+  Running +sleep 100 &")
        sh.expect(PROMPT)
        sh.send("kill %1; wait %1; echo killed=$?\n")
        sh.expect("killed=143")               # 128 + SIGTERM
        sh.expect(PROMPT)
        sh.send("jobs; echo nojobs\n")
        assert "Running" not in sh.expect("nojobs\r?\n")
        sh.expect(PROMPT)

        sh.send(FG_SLEEP)
        sh.expect(FG_READY)
        sh.send("\x1a")                       # ^Z: SIGTSTP, bash reports the stop
        sh.expect(r"\[1\]\+  Stopped +sh -c")
        sh.expect(PROMPT)
        sh.send("fg\n")
        sh.expect(r"sh -c .*\r?\n")           # bash echoes the job it resumes
        time.sleep(0.5)                       # for fg to hand the job the terminal
        sh.send("\x03")
        sh.expect(PROMPT)
        sh.send("echo rc=$?\n")
        sh.expect("rc=130")
        sh.expect(PROMPT)
        sh.send("exit 7\n")
    finally:
        status = sh.close()
    assert status == 7


PYTHON_PROCS = r"""
import asyncio, concurrent.futures as cf, multiprocessing as mp, signal

def sq(x):
    return x * x

async def children():
    p = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", "echo out; echo err >&2; exit 3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate()
    q = await asyncio.create_subprocess_shell(
        "tr a-z A-Z", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    up, _ = await q.communicate(b"piped")
    many = await asyncio.gather(*[asyncio.create_subprocess_exec("/bin/sh", "-c", f"exit {i}")
                                  for i in range(4)])
    return out, err, p.returncode, up, q.returncode, [await c.wait() for c in many]

if __name__ == "__main__":
    with mp.Pool(2) as pool:
        print("pool", sum(pool.map(sq, range(100))), pool.apply(sq, (7,)))
    with cf.ProcessPoolExecutor(2) as ex:
        print("executor", list(ex.map(sq, range(8))))
    for method in ("spawn", "forkserver"):
        with mp.get_context(method).Pool(2) as pool:
            print(method, pool.map(sq, [3, 4]))
    ticks = []
    signal.signal(signal.SIGALRM, lambda s, f: ticks.append(s))
    signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
    while len(ticks) < 5:
        signal.pause()
    signal.setitimer(signal.ITIMER_REAL, 0)
    print("itimer", len(ticks) >= 5, signal.getitimer(signal.ITIMER_REAL))
    print("asyncio", asyncio.run(children()))
"""


def test_python_process_pools_timers_asyncio(compare: Comparer, world_tmp: Path) -> None:
    """multiprocessing (fork, spawn, forkserver), ProcessPoolExecutor,
    setitimer and asyncio subprocesses (pidfd or SIGCHLD child watchers)."""
    script = world_tmp / "procs.py"       # spawn and forkserver re-import __main__
    script.write_text(PYTHON_PROCS)
    script.chmod(0o644)
    _, sandboxed = compare(["/usr/bin/python3", str(script)], timeout=120)
    assert "pool 328350 49" in sandboxed.stdout
    assert "asyncio (b'out\\n', b'err\\n', 3, b'PIPED', 0, [0, 1, 2, 3])" in sandboxed.stdout


# stress-ng stressors by class, each bounded by --timeout; stress-ng's own
# verdict ("successful run") and no "fail:" lines are the check.
STRESSORS = {
    "fork": ["--fork", "1", "--vfork", "1"],
    "clone": ["--clone", "1"],
    "signal": ["--signal", "1", "--sigq", "1"],
    "futex": ["--futex", "1"],
    "nanosleep": ["--nanosleep", "1"],
    "itimer": ["--itimer", "1"],
    "timer": ["--timer", "1"],
    "pthread": ["--pthread", "1", "--pthread-max", "32"],
    "sem": ["--sem", "1"],
    "file-hdd": ["--hdd", "1", "--hdd-bytes", "1M"],
    "file-misc": ["--rename", "1", "--fstat", "1", "--seek", "1", "--seek-size", "1M",
                  "--fallocate", "1", "--fallocate-bytes", "1M"],
    "dir": ["--dir", "1", "--dentry", "1"],
    "lockf": ["--lockf", "1"],
    "flock": ["--flock", "1"],
    "mmap": ["--mmap", "1", "--mmap-bytes", "4M", "--malloc", "1"],
    "fifo": ["--fifo", "1"],
    "shm-sysv": ["--shm-sysv", "2", "--shm-sysv-ops", "200"],
    "sigio": ["--sigio", "1"],
}


@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng missing: run scripts/install.sh")
@pytest.mark.parametrize("name", list(STRESSORS))
def test_stress_ng(name: str, run: Runner, world_tmp: Path) -> None:
    argv = ["stress-ng", *STRESSORS[name], "--timeout", "1s", "--temp-path", str(world_tmp)]
    result = run("pyvisor", argv, timeout=120)
    assert result.returncode == 0, result.output
    assert "successful run completed" in result.output, result.output
    assert " fail: " not in result.output, result.output


SQLITE_WAL = r"""
set -e
cd "$1"
sqlite3 db "PRAGMA journal_mode=WAL; CREATE TABLE t(w TEXT, i INT);" >/dev/null
for w in a b; do
    ( for i in $(seq 1 40); do
          sqlite3 -cmd ".timeout 10000" db "BEGIN IMMEDIATE; INSERT INTO t VALUES('$w', $i); COMMIT;"
      done ) &
done
wait
sqlite3 db "PRAGMA journal_mode; SELECT w, count(*), sum(i) FROM t GROUP BY w; PRAGMA integrity_check;"
"""


def test_sqlite_wal_two_writers(world_tmp: Path) -> None:
    """Two writer processes on one WAL database: shared-memory index (db-shm
    mmap'd MAP_SHARED by both), fcntl record locks, fsync."""
    native_dir, sandbox_dir = world_tmp / "n", world_tmp / "s"
    native_dir.mkdir()
    sandbox_dir.mkdir()
    os.chmod(sandbox_dir, 0o777)
    native = execute(["/bin/sh", "-c", SQLITE_WAL, "sh", str(native_dir)], timeout=120)
    sandboxed = execute([*PV, "/bin/sh", "-c", SQLITE_WAL, "sh", str(sandbox_dir)],
                        timeout=120, env=pyvisor_env(None))
    assert native.returncode == 0, native.output
    assert sandboxed.returncode == 0, sandboxed.output
    assert sandboxed.stdout == native.stdout == "wal\na|40|820\nb|40|820\nok\n"


GIT = r"""
set -e
cd "$1"
export HOME="$1" GIT_AUTHOR_DATE=@1700000000 GIT_COMMITTER_DATE=@1700000000
git init -q -b main repo
cd repo
git config user.email t@example.com
git config user.name Tester
mkdir -p src && echo hello > src/a.txt && echo world > b.txt
git add . && git commit -q -m first
echo again >> b.txt && git mv src/a.txt a.txt && git commit -q -am second
git log --format='%H %s' && git status --porcelain | wc -l
git show --stat --format=%s HEAD | tail -n 3
git gc -q && git fsck --strict 2>&1 | wc -l
"""


def test_git_init_add_commit_log(world_tmp: Path) -> None:
    """git: object hashes equal Linux's (same content and dates), packs, fsck."""
    native_dir, sandbox_dir = world_tmp / "n", world_tmp / "s"
    for d in (native_dir, sandbox_dir):
        d.mkdir()
        os.chmod(d, 0o777)
    native = execute(["/bin/sh", "-c", GIT, "sh", str(native_dir)], timeout=120)
    sandboxed = execute([*PV, "/bin/sh", "-c", GIT, "sh", str(sandbox_dir)],
                        timeout=120, env=pyvisor_env(None))
    assert native.returncode == 0, native.output
    assert sandboxed.returncode == 0, sandboxed.output
    assert sandboxed.stdout == native.stdout
    assert len(sandboxed.stdout.splitlines()[0].split()[0]) == 40


MAKE = r"""
set -e
cd "$1"
for i in 1 2 3 4; do printf 'int f%d(int x){return x*%d;}\n' $i $i > f$i.c; done
cat > main.c <<'EOF'
#include <stdio.h>
int f1(int), f2(int), f3(int), f4(int);
int main(void) { printf("%d\n", f1(1) + f2(2) + f3(3) + f4(4)); return 0; }
EOF
cat > Makefile <<'EOF'
OBJS = main.o f1.o f2.o f3.o f4.o
prog: $(OBJS)
	gcc -o $@ $(OBJS)
%.o: %.c
	gcc -O1 -c -o $@ $<
EOF
make -s -j2
./prog
make -q prog && echo uptodate
"""


def test_make_j2_gcc(world_tmp: Path) -> None:
    """make -j2 runs gcc jobs in parallel (jobserver pipe, cc1/as/ld children)."""
    os.chmod(world_tmp, 0o777)
    sandboxed = execute([*PV, "/bin/sh", "-c", MAKE, "sh", str(world_tmp)],
                        timeout=180, env=pyvisor_env(None))
    assert sandboxed.returncode == 0, sandboxed.output
    assert sandboxed.stdout == "30\nuptodate\n"


def test_procps_and_mounts(run: Runner) -> None:
    """ps aux, top -b -n1, free, df -h and mount give sane output about the
    sandbox: its own processes, memory totals, its mounts."""
    script = ("sleep 30 & "
              "ps aux; echo =top; top -b -n1; echo =free; free -k; echo =df; df -h; "
              "echo =mount; mount; echo =end; kill $!")
    result = run("pyvisor", ["/bin/bash", "-c", script], timeout=60)
    assert result.returncode == 0, result.output
    out = result.stdout
    ps, rest = out.split("=top\n")
    top, rest = rest.split("=free\n")
    free, rest = rest.split("=df\n")
    df, rest = rest.split("=mount\n")
    mounts, _ = rest.split("=end\n")

    lines = ps.splitlines()
    assert lines[0].split()[:4] == ["USER", "PID", "%CPU", "%MEM"]
    rows = [line.split(None, 10) for line in lines[1:]]
    assert [r[1] for r in rows][:1] == ["1"]
    assert any(r[10] == "sleep 30" for r in rows), ps
    assert any(r[10] == "ps aux" for r in rows), ps
    assert all(int(r[4]) >= int(r[5]) > 0 for r in rows), ps     # VSZ >= RSS > 0
    assert 2 <= len(rows) <= 6, ps

    assert re.search(r"^Tasks: +\d+ total", top, re.M), top
    assert re.search(r"^ +PID USER .* COMMAND$", top, re.M), top
    assert re.search(r"^ +\d+ root .* top$", top, re.M), top

    mem = free.splitlines()[1].split()
    assert mem[0] == "Mem:" and int(mem[1]) > 0 and 0 < int(mem[6]) <= int(mem[1]), free

    assert df.splitlines()[0].split()[0] == "Filesystem"
    assert re.search(r" /$", df, re.M) and re.search(r" /dev/shm$", df, re.M), df

    table = {line.split()[2]: line.split()[4] for line in mounts.splitlines()}
    assert table["/proc"] == "proc" and table["/sys"] == "sysfs", mounts
    assert table["/"] in ("overlay", "9p", "tmpfs"), mounts
