"""Programs that make pseudo-terminals of their own, inside the sandbox: script(1),
Python's pty module, expect and tmux.  Each runs natively and in pyvisor; the
output must be the same but for the pty's number (/dev/pts/N)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from pvtest import Runner

_PTS = re.compile(r"/dev/pts/\d+")


def _same(run: Runner, argv: list[str], timeout: float = 120) -> str:
    native = run("native", argv, timeout=60)
    sandboxed = run("pyvisor", argv, timeout=timeout)
    detail = f"{argv}\n=== native ===\n{native.output}=== pyvisor ===\n{sandboxed.output}"
    assert native.returncode == 0 and sandboxed.returncode == 0, detail
    assert _PTS.sub("/dev/pts/N", sandboxed.stdout) == _PTS.sub("/dev/pts/N", native.stdout), \
        detail
    return sandboxed.stdout


@pytest.mark.skipif(shutil.which("script") is None, reason="bsdutils missing: scripts/install.sh")
def test_script(run: Runner) -> None:
    out = _same(run, ["script", "-qc", "tty; stty -a; echo done", "/dev/null"])
    assert "/dev/pts/" in out and "icanon" in out and "done" in out


PY_PTY = r'''
import os, pty, sys, termios
out = []
def rd(fd):
    data = os.read(fd, 1024)
    out.append(data)
    return data
status = pty.spawn(["sh", "-c", "echo hi; tty; stty -echo; echo quiet"], rd)
print(repr(b"".join(out).replace(os.ttyname(0).encode() if os.isatty(0) else b"-", b"")))
print("status", status)
m, s = os.openpty()
os.write(m, b"typed\n")
print(os.read(s, 100), os.read(m, 100))
attrs = termios.tcgetattr(s)
attrs[3] &= ~(termios.ICANON | termios.ECHO)
termios.tcsetattr(s, termios.TCSANOW, attrs)
os.write(m, b"raw\x7f")
print(os.read(s, 100))
os.close(s)
try:
    os.read(m, 100)
except OSError as e:
    print("master after close:", e.strerror)
'''


def test_python_pty(run: Runner, world_tmp: Path) -> None:
    script = world_tmp / "pypty.py"
    script.write_text(PY_PTY)
    out = _same(run, ["python3", str(script)])
    assert "hi\\r\\n/dev/pts/" in out and "status 0" in out
    assert "b'typed\\n' b'typed\\r\\n'" in out and "b'raw\\x7f'" in out
    assert "master after close: Input/output error" in out


EXPECT = r'''
set timeout 30
spawn sh -c {printf "name? "; read n; echo "hello $n"; stty -a | grep -o icanon}
expect "name? "
send "pyvisor\r"
expect "hello pyvisor"
expect eof
puts "status [lindex [wait] 3]"
'''


@pytest.mark.skipif(shutil.which("expect") is None, reason="expect missing: scripts/install.sh")
def test_expect(run: Runner, world_tmp: Path) -> None:
    script = world_tmp / "session.exp"
    script.write_text(EXPECT)
    out = _same(run, ["expect", str(script)])
    assert "hello pyvisor" in out and "status 0" in out


TMUX = r'''
S=$(mktemp -u /tmp/pyvisor-tmux.XXXXXX)
tmux -S $S -f /dev/null new-session -d -x 40 -y 10 'printf "hi from tmux\n"; tty; stty size; cat' || exit 1
until tmux -S $S capture-pane -p | grep -q '^10 40$'; do sleep 0.1; done
tmux -S $S send-keys 'typed' Enter
until tmux -S $S capture-pane -p | grep -c typed | grep -q 2; do sleep 0.1; done
tmux -S $S capture-pane -p | grep -v '^$'
tmux -S $S resize-window -x 50 -y 12 2>/dev/null || true
tmux -S $S list-sessions -F '#{session_name} #{session_windows}'
tmux -S $S kill-server
echo done
'''


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux missing: scripts/install.sh")
def test_tmux(run: Runner, world_tmp: Path) -> None:
    script = world_tmp / "tmux.sh"
    script.write_text(TMUX)
    out = _same(run, ["sh", str(script)])
    assert "hi from tmux" in out and "10 40" in out and out.count("typed") == 2


BASH_JOBS = r'''
set timeout 30
spawn env PS1=PROMPT> TERM=dumb bash --norc --noprofile -i
expect "PROMPT>"
send "sleep 100\r"
sleep 0.5
send "\003"
expect "PROMPT>"
send "echo status=\$?\r"
expect -re "status=(\[0-9]+)" { puts "\nINT $expect_out(1,string)" }
expect "PROMPT>"
send "sleep 100\r"
sleep 0.5
send "\032"
expect -re "Stopped.*PROMPT>" { puts "\nSTOPPED" }
send "jobs\r"
expect -re "\\\[1\\\]\\+ *Stopped" { puts "\nJOBS" }
expect "PROMPT>"
send "fg\r"
expect "sleep 100"
sleep 0.5
send "\003"
expect "PROMPT>"
send "exit 7\r"
expect eof
puts "\nEXIT [lindex [wait] 3]"
'''


@pytest.mark.skipif(shutil.which("expect") is None, reason="expect missing: scripts/install.sh")
def test_bash_job_control_on_inner_pty(run: Runner, world_tmp: Path) -> None:
    """An interactive bash on a pty that expect makes inside the sandbox: ^C a sleep
    (status 130), ^Z one (Stopped, jobs), fg and ^C it, exit 7."""
    script = world_tmp / "bash.exp"
    script.write_text(BASH_JOBS)
    for where in ("native", "pyvisor"):
        res = run(where, ["expect", str(script)], timeout=120)
        marks = [ln for ln in res.stdout.splitlines()
                 if ln.startswith(("INT ", "STOPPED", "JOBS", "EXIT "))]
        assert marks == ["INT 130", "STOPPED", "JOBS", "EXIT 7"], f"{where}\n{res.output}"
