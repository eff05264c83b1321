"""Application seccomp filters used through libseccomp (Debian's python3-seccomp, which
scripts/install.sh installs): the same script natively and in the sandbox, identical
output.  libseccomp probes the kernel's API level (SECCOMP_GET_ACTION_AVAIL,
SECCOMP_GET_NOTIF_SIZES, TSYNC_ESRCH, ...) and generates its own BPF, so this checks
that a real user's filters verify and act as on Linux."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Comparer

SCRIPT = textwrap.dedent('''
    import errno, os, signal
    import seccomp
    print("api", seccomp.get_api())
    f = seccomp.SyscallFilter(seccomp.ALLOW)
    f.add_rule(seccomp.ERRNO(errno.EPERM), "getcwd")
    f.add_rule(seccomp.ERRNO(errno.EROFS), "mkdir", seccomp.Arg(1, seccomp.EQ, 0o700))
    f.add_rule(seccomp.TRAP, "getpgid", seccomp.Arg(0, seccomp.EQ, 4242))
    f.load()
    try:
        os.getcwd()
    except PermissionError:
        print("getcwd EPERM")
    for mode in (0o700, 0o701):
        try:
            os.mkdir("/nonexistent-dir/x", mode)
        except OSError as e:
            print("mkdir", oct(mode), errno.errorcode[e.errno])
    pid = os.fork()
    if pid == 0:
        try:
            os.getcwd()
            os._exit(1)
        except PermissionError:
            pass
        os.getpgid(4242)              # SIGSYS (default action: death)
        os._exit(2)
    _, status = os.waitpid(pid, 0)
    print("child signalled", os.WIFSIGNALED(status), os.WTERMSIG(status) == signal.SIGSYS)
    status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
    print("Seccomp", status["Seccomp"].strip(), "NoNewPrivs", status["NoNewPrivs"].strip())
''')


def test_libseccomp_python(compare: Comparer, tmp_path: Path) -> None:
    script = tmp_path / "libseccomp_user.py"
    script.write_text(SCRIPT)
    native, sandboxed = compare(["/usr/bin/python3", str(script)])
    assert native.returncode == 0, native.output
    assert "getcwd EPERM" in native.stdout
    assert "mkdir 0o700 EROFS" in native.stdout and "mkdir 0o701 ENOENT" in native.stdout
    assert "child signalled True True" in native.stdout
    assert "Seccomp 2 NoNewPrivs 1" in native.stdout
