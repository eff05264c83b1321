"""The sandbox's stdio shares the caller's open file descriptions, as a child's would.

Each test runs the same shell line twice, once with the program run natively
and once through `pyvisor do`, with stdout/stderr redirected to files, and
compares the files byte for byte (issue #6: `> log 2>&1` used to lose output
because stdout and stderr were written at offsets of their own).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pvtest import REPO, Builder, pyvisor_env

PV = f"{shlex.quote(sys.executable)} -m pyvisor do --"


def _sh(script: str, cwd: Path) -> None:
    """Runs a shell line (with PV and the programs in it) in `cwd`; it must succeed."""
    p = subprocess.run(["/bin/sh", "-c", script], cwd=cwd, env=pyvisor_env(None),
                       capture_output=True, timeout=120)
    assert p.returncode == 0, (script, p.stdout, p.stderr)


def _both(tmp_path: Path, script: str, files: tuple[str, ...] = ("log",),
          setup: str = "") -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Runs `script` with RUN replaced by nothing (native) and by pyvisor; returns the
    contents of `files` after each run."""
    out = []
    for where, run in (("native", ""), ("pyvisor", PV)):
        d = tmp_path / where
        d.mkdir()
        if setup:
            _sh(setup, d)
        _sh(script.replace("RUN", run), d)
        out.append({name: (d / name).read_bytes() for name in files})
    return out[0], out[1]


@pytest.mark.parametrize("redir", [">", ">>"])
@pytest.mark.parametrize("mode", ["interleave", "lseek", "append"])
def test_stdout_and_stderr_share_one_file(mode: str, redir: str, program: Builder,
                                          tmp_path: Path) -> None:
    """`prog > log 2>&1` and `prog >> log 2>&1`: one description, one offset."""
    prog = shlex.quote(program("stdio_share.c"))
    native, sandboxed = _both(tmp_path, f"RUN {prog} {mode} {redir} log 2>&1",
                              setup="echo previous line > log")
    assert sandboxed == native
    if mode == "interleave":
        assert native["log"].count(b"\n") == 40 + (redir == ">>")


def test_shell_and_program_interleave(program: Builder, tmp_path: Path) -> None:
    """Writes from the shell and from a C program, on both streams, stay in order."""
    prog = shlex.quote(program("stdio_share.c"))
    script = ("RUN /bin/sh -c 'for i in 1 2 3; do echo out $i; echo err $i >&2; done; "
              f"{prog} interleave; echo done; echo done-err >&2' > log 2>&1; "
              "echo after >> log")
    native, sandboxed = _both(tmp_path, script)
    assert sandboxed == native
    assert native["log"].endswith(b"err 19\ndone\ndone-err\nafter\n")


def test_separate_files_and_outer_writes(program: Builder, tmp_path: Path) -> None:
    """The caller writes to the same descriptions before and after the sandbox."""
    prog = shlex.quote(program("stdio_share.c"))
    script = (f"{{ echo before; echo before-err >&2; RUN {prog} lseek; "
              "echo after; echo after-err >&2; } > out 2> err")
    native, sandboxed = _both(tmp_path, script, files=("out", "err"))
    assert sandboxed == native
    assert native["out"].startswith(b"before\n012abc6789\n")


def test_stdin_offset_is_shared(tmp_path: Path) -> None:
    """A program reading part of a stdin file leaves the offset where the next reader
    continues, as natively (dash's `read` reads byte by byte; `head -c` reads and
    stops)."""
    script = ("printf 'one\\ntwo\\nthree\\nfour\\n' > in; "
              "{ RUN /bin/sh -c 'read a; echo \"got $a\"'; RUN head -c 4; "
              "echo; cat; } < in > log")
    native, sandboxed = _both(tmp_path, script)
    assert sandboxed == native
    assert native["log"] == b"got one\ntwo\n\nthree\nfour\n"


def test_many_writers_share_a_log(program: Builder, tmp_path: Path) -> None:
    """Several sandboxes and a native writer on one description (no O_APPEND), and
    on separate O_APPEND descriptions: no line is lost or overwritten."""
    prog = shlex.quote(program("stdio_share.c"))
    shared = (f"{{ {PV} {prog} lines 200 A & {prog} lines 200 B & "
              f"{PV} {prog} lines 200 C & {PV} /bin/sh -c 'for i in $(seq 200); do "
              "echo D $i; done'; wait; } > shared")
    appended = (f"{PV} {prog} lines 200 A >> app & {prog} lines 200 B >> app & "
                f"{PV} {prog} lines 200 C >> app; wait")
    _sh(shared, tmp_path)
    _sh(appended, tmp_path)
    for name, tags in (("shared", "ABC"), ("app", "ABC")):
        lines = (tmp_path / name).read_bytes().decode().splitlines()
        want = [f"{t} {i}" for t in tags for i in range(200)]
        if name == "shared":
            want += [f"D {i}" for i in range(1, 201)]
        assert sorted(lines) == sorted(want), name


def test_run_shares_stdio(tmp_path: Path, program: Builder) -> None:
    """`pyvisor run` (an OCI bundle) gives the container the same stdio sharing."""
    import json
    import os
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2", "root": {"path": "/", "readonly": True},
        "process": {"args": ["/bin/sh", "-c", "echo out; echo err >&2; echo out2"],
                    "cwd": "/", "env": ["PATH=/usr/bin:/bin"]}}))
    state = tmp_path / "state"
    cid = f"stdio-{os.getpid()}"
    with open(tmp_path / "log", "wb") as log:
        log.write(b"first\n")
        log.flush()
        subprocess.run([sys.executable, "-m", "pyvisor", "--root", str(state), "run",
                        "--bundle", str(bundle), cid], stdout=log, stderr=subprocess.STDOUT,
                       env=pyvisor_env(None), cwd=REPO, timeout=120, check=True)
        log.write(b"last\n")
    assert (tmp_path / "log").read_bytes() == b"first\nout\nerr\nout2\nlast\n"
