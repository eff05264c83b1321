"""`pyvisor do -- CMD`: real programs in the sandbox, compared with the same
programs run natively (same stdout and exit status) where that is sensible.

Commands that write files use a fresh directory from mktemp, so the native
runs leave nothing behind and runs do not collide.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import CliRunner, Comparer, Runner

WHERE = ["native", "pyvisor"]
BUSYBOX = "/bin/busybox"
REPO = Path(__file__).resolve().parents[2]


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def in_tmpdir(script: str) -> list[str]:
    """script run with $D a fresh directory under /tmp, removed afterwards;
    the exit status is the script's."""
    return sh(f'D=$(mktemp -d) || exit 99\n{script}\ns=$?\nrm -rf "$D"\nexit $s')


# --- the shell -------------------------------------------------------------


def test_pipeline(compare: Comparer) -> None:
    _, sandboxed = compare(sh("for i in 1 2 3; do echo $i; done | wc -l"))
    assert sandboxed.stdout.strip() == "3"
    assert sandboxed.returncode == 0


def test_exit_status(compare: Comparer) -> None:
    _, sandboxed = compare(sh("exit 7"))
    assert sandboxed.returncode == 7


def test_killed_by_signal(compare: Comparer) -> None:
    # The shell kills itself: 128 + SIGTERM.
    _, sandboxed = compare(sh("kill -TERM $$"))
    assert sandboxed.returncode == 143


def test_bash_features(compare: Comparer) -> None:
    script = (
        'echo c b a | tr " " "\\n" | sort | tr "\\n" ,; echo\n'
        "(cd /; pwd); pwd\n"
        "echo $(echo nested $(echo deep))\n"
        "x=$( (echo sub; exit 4) ); echo \"$x $?\"\n"
        "f() { local v=$1; echo \"f:$v\"; return 2; }; f arg; echo $?\n"
        "{ echo one; echo two >&2; } 2>&1 | cat -n\n"
    )
    _, sandboxed = compare(["bash", "-c", script], cwd="/usr")
    assert sandboxed.stdout == (
        "a,b,c,\n/\n/usr\nnested deep\nsub 4\nf:arg\n2\n"
        "     1\tone\n     2\ttwo\n"
    ), sandboxed.output


# --- coreutils and friends ---------------------------------------------------


def test_ls(compare: Comparer, run: Runner) -> None:
    compare(["ls", "-1", "/usr"])
    result = run("pyvisor", ["ls", "-la", "/usr"])
    assert result.returncode == 0, result.output
    assert "bin" in result.stdout, result.output


def test_find_sort_head(compare: Comparer) -> None:
    _, sandboxed = compare(sh('find /usr/include -name "*.h" | sort | head'))
    assert len(sandboxed.stdout.splitlines()) == 10, sandboxed.output


def test_tar_round_trip(compare: Comparer) -> None:
    _, sandboxed = compare(in_tmpdir(
        'tar -C /usr/include -cf "$D/x.tar" linux && mkdir "$D/y" && '
        'tar -C "$D/y" -xf "$D/x.tar" && '
        'diff -r /usr/include/linux "$D/y/linux" && echo same'
    ), timeout=600)
    assert sandboxed.stdout == "same\n", sandboxed.output


PYTHON_SCRIPT = r"""
import json, os, subprocess, tempfile, threading

ls = subprocess.run(["ls", "/"], capture_output=True, text=True)
names = ls.stdout.split()

box = []
t = threading.Thread(target=lambda: box.append(sum(range(1000))))
t.start()
t.join()

with tempfile.TemporaryDirectory(dir="/tmp") as d:
    path = os.path.join(d, "f.json")
    with open(path, "w") as f:
        json.dump({"k": [1, 2, 3]}, f)
    with open(path) as f:
        data = json.load(f)

print(json.dumps({
    "ls_rc": ls.returncode,
    "ls_has_usr_and_tmp": "usr" in names and "tmp" in names,
    "thread": box,
    "file": data,
    "alive": t.is_alive(),
}, sort_keys=True))
"""


def test_python(compare: Comparer) -> None:
    _, sandboxed = compare(["python3", "-c", PYTHON_SCRIPT], timeout=300)
    assert json.loads(sandboxed.stdout) == {
        "alive": False,
        "file": {"k": [1, 2, 3]},
        "ls_has_usr_and_tmp": True,
        "ls_rc": 0,
        "thread": [499500],
    }, sandboxed.output


def test_gcc_hello(compare: Comparer) -> None:
    # gcc runs cc1, as, collect2 and ld: posix_spawn (vfork-style clone)
    # and execve of dynamically linked programs, pipes, temp files.
    _, sandboxed = compare(in_tmpdir(
        "printf '#include <stdio.h>\\nint main(void) { puts(\"hello\"); return 0; }\\n'"
        ' > "$D/h.c" && gcc -o "$D/h" "$D/h.c" && "$D/h"'
    ), timeout=600)
    assert sandboxed.stdout == "hello\n", sandboxed.output


# --- busybox (static) --------------------------------------------------------


def test_busybox_sh(compare: Comparer) -> None:
    _, sandboxed = compare(
        [BUSYBOX, "sh", "-c", "echo $((6*7)); busybox ls / | busybox wc -l"])
    first, count = sandboxed.stdout.split()
    assert first == "42" and int(count) > 3, sandboxed.output


def test_busybox_sed(compare: Comparer) -> None:
    _, sandboxed = compare([BUSYBOX, "sed", "-e", "s/world/there/", "-e", "2d"],
                           input="hello world\ndrop me\nlast\n")
    assert sandboxed.stdout == "hello there\nlast\n", sandboxed.output


def test_busybox_awk(compare: Comparer) -> None:
    _, sandboxed = compare(
        [BUSYBOX, "awk", '{ s += $1; n++ } END { printf "%d %d %.1f\\n", n, s, s / n }'],
        input="1\n2\n3\n4\n")
    assert sandboxed.stdout == "4 10 2.5\n", sandboxed.output


# --- what passes in and out --------------------------------------------------


def test_stdin(compare: Comparer) -> None:
    _, sandboxed = compare(["cat"], input="hello\n")
    assert sandboxed.stdout == "hello\n"


def test_large_stdin_stdout(compare: Comparer) -> None:
    data = "".join(f"line {i}\n" for i in range(50000))
    _, sandboxed = compare(["wc", "-l"], input=data)
    assert sandboxed.stdout.strip() == "50000"
    _, sandboxed = compare(["cat"], input=data)


def test_stderr(run: Runner) -> None:
    result = run("pyvisor", sh("echo out; echo err >&2"))
    assert result.returncode == 0, result.output
    assert result.stdout == "out\n", result.output
    assert "err\n" in result.stderr, result.output


def test_cwd(compare: Comparer) -> None:
    _, sandboxed = compare(["pwd"], cwd="/usr")
    assert sandboxed.stdout == "/usr\n"


def test_env(compare: Comparer) -> None:
    env = dict(os.environ, FOO="bar")
    _, sandboxed = compare(sh("echo $FOO"), env=env)
    assert sandboxed.stdout == "bar\n"


# --- isolation ---------------------------------------------------------------


def test_root_writes_stay_in_sandbox(run: Runner) -> None:
    name = f"pyvisor-test-file-{uuid.uuid4().hex}"
    top, usr = Path("/") / name, Path("/usr") / name
    result = run("pyvisor", sh(
        f"echo x > /{name}; echo y > /usr/{name}; cat /{name} /usr/{name}"))
    try:
        assert result.stdout == "x\ny\n", result.output
        assert result.returncode == 0, result.output
        assert not top.exists(), f"{top} was written on the host"
        assert not usr.exists(), f"{usr} was written on the host"
    finally:
        for p in (top, usr):
            p.unlink(missing_ok=True)


# Runs argv as the child of a child subreaper, so that anything argv leaves
# running is reparented to it; waits (up to 10 s) for leftovers to die,
# then reports the result and the survivors, and kills them.
REAPER = r"""
import ctypes, json, os, signal, subprocess, sys, time

PR_SET_CHILD_SUBREAPER = 36
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
try:
    p = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=float(sys.argv[1]))
    rc, out, err = p.returncode, p.stdout, p.stderr
except subprocess.TimeoutExpired as e:
    rc, out, err = "timeout", e.stdout or b"", e.stderr or b""

def children():
    me, out = str(os.getpid()), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm, rest = stat.split("(", 1)[1].rsplit(")", 1)
        state, ppid = rest.split()[:2]
        if ppid == me and state != "Z":
            out.append({"pid": int(pid), "comm": comm, "cmdline": cmdline})
    return out

def reap():
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass

deadline = time.monotonic() + 10
while True:
    reap()
    left = children()
    if not left or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print(json.dumps({"returncode": rc,
                  "stdout": out.decode(errors="replace"),
                  "stderr": err.decode(errors="replace"),
                  "left": left}))
for _ in range(20):
    for c in children():
        try:
            os.kill(c["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.05)
    reap()
"""


def run_reaped(where: str, argv: list[str], timeout: float = 120) -> dict[str, Any]:
    """Runs argv (natively or under pyvisor) below a subreaper; returns
    {returncode, stdout, stderr, left}, left being the processes it left
    behind (returncode as Popen has it)."""
    if where == "pyvisor":
        argv = [sys.executable, "-m", "pyvisor", "do", "--", *argv]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    helper = subprocess.run([sys.executable, "-c", REAPER, str(timeout), *argv],
                            capture_output=True, text=True, env=env,
                            timeout=timeout + 60)
    assert helper.returncode == 0, helper.stdout + helper.stderr
    report: dict[str, Any] = json.loads(helper.stdout)
    return report


def pgrep(marker: str) -> str:
    p = subprocess.run(["pgrep", "-a", "-f", marker], capture_output=True, text=True)
    return p.stdout


@pytest.mark.parametrize("where", WHERE)
def test_no_stray_processes(where: str) -> None:
    marker = f"pyvisor-marker-{uuid.uuid4().hex}"
    report = run_reaped(where, sh(f"sleep 0.1 # {marker}"))
    assert report["returncode"] == 0, report
    assert report["left"] == [], f"processes left behind: {report}"
    assert pgrep(marker) == ""


def test_background_process_dies_with_sandbox() -> None:
    # When the sandbox's init exits the sandbox ends, taking a background
    # process with it (as a PID namespace does); `do` must not wait for it.
    marker = f"pyvisor-marker-{uuid.uuid4().hex}"
    report = run_reaped("pyvisor", sh(f"(sleep 300; : {marker}) & echo started"),
                        timeout=60)
    assert report["returncode"] == 0, report
    assert report["stdout"] == "started\n", report
    assert report["left"] == [], f"processes left behind: {report}"
    assert pgrep(marker) == ""


# --- bad input ---------------------------------------------------------------


@pytest.fixture
def garbage(world_tmp: Path) -> str:
    """An executable file of random bytes (with a NUL early, so shells see
    a binary and do not try it as a script)."""
    path = world_tmp / "garbage"
    path.write_bytes(b"\x01\x00\x02\x03" + random.Random(1234).randbytes(4092))
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("shell", ["/bin/sh", "bash"])
def test_exec_garbage_from_shell(shell: str, garbage: str, compare: Comparer) -> None:
    native, sandboxed = compare([shell, "-c", garbage])
    assert sandboxed.returncode == 126
    assert "exec format error" in sandboxed.stderr.lower(), sandboxed.output


def test_do_garbage(garbage: str, run: Runner) -> None:
    result = run("pyvisor", [garbage])
    assert result.returncode != 0, result.output
    assert result.stderr.strip(), result.output


def test_do_nonexistent_command(run: Runner) -> None:
    result = run("pyvisor", ["/nonexistent/pyvisor-no-such-command"])
    assert result.returncode != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error:\n{result.stderr}"
    assert "Traceback" not in result.stderr


# --- flags ---------------------------------------------------------------------


def test_strace(pyvisor_cli: CliRunner) -> None:
    result = pyvisor_cli(["do", "--strace", "--", "/bin/echo", "hi"])
    assert result.returncode == 0, result.output
    assert result.stdout == "hi\n", result.output
    assert "write" in result.stderr, result.output


def test_network_none(pyvisor_cli: CliRunner) -> None:
    result = pyvisor_cli(["do", "--network=none", "--", "/bin/echo", "hi"])
    assert result.returncode == 0, result.output
    assert result.stdout == "hi\n", result.output
