"""The syscall fuzzer (sysfuzz.c) run inside a sandbox, judged from outside.

Each run is one `pyvisor do -- sysfuzz SEED SECONDS` (with a terminal or
/dev/null on stdin) or one `pyvisor run` of a bundle whose workers work in a
writable bind mount (so the Gofer serves their file calls): 4 worker processes
of 2 threads calling every syscall number with hostile arguments, with signals
flying (see sysfuzz.c's header).  A run fails on:
  * any internal error of the Sentry (its one-line report, or a Python
    traceback, or "sandbox failed" on stderr);
  * a hang: the run not over SECONDS + a margin after it started;
  * the sandbox ending other than by the fuzzer finishing (exit status 0 and
    its final `sysfuzz: done=1` line);
  * anything left behind: processes in the sandbox after the fuzzer killed
    and reaped everything (the fuzzer counts /proc), or host processes after
    the run (this test is a child subreaper while it runs).

Seeds differ per run (from the clock) and are printed; PYVISOR_FUZZ_SEED fixes
the first seed (the others follow it) and PYVISOR_FUZZ_SECONDS the duration of
each run (default 40).  The fuzzer never runs natively: as root it would
change the host.
"""

from __future__ import annotations

import ctypes
import json
import os
import pty
import re
import signal
import subprocess
import sys
import shutil
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from pvtest import c_builder, make_world_readable, pyvisor_env

HERE = Path(__file__).resolve().parent
SECONDS = float(os.environ.get("PYVISOR_FUZZ_SECONDS", "40"))
BASE_SEED = int(os.environ.get("PYVISOR_FUZZ_SEED", str(int(time.time()) % 1_000_000)))
MARGIN = 120.0                  # start-up, the final reaping, a loaded machine

# What a Sentry failure looks like on its stderr: its own one-line report
# (kernel.py: "pyvisor: internal error in syscall ..."), a traceback, or the launcher's
# "sandbox failed".  Not a bare "internal error": the fuzzer writes random memory to
# stderr, and the static binary's glibc holds that string (ld.so's "internal error").
SENTRY_FAILURE = re.compile(r"pyvisor: internal error|Traceback \(most recent call last\)|"
                            r"sandbox failed", re.IGNORECASE)

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture(scope="module")
def sysfuzz(tmp_path_factory: pytest.TempPathFactory) -> str:
    outdir = tmp_path_factory.mktemp("fuzz")
    make_world_readable(outdir, tmp_path_factory)
    return c_builder(HERE, outdir)("sysfuzz", static=True)


def _children() -> set[int]:
    out: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            out |= {int(p) for p in Path(f"/proc/self/task/{task}/children").read_text().split()}
        except OSError:
            pass
    return out


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    """Orphans of the run become our children (subreaper), so none can hide."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.fail("prctl(PR_SET_CHILD_SUBREAPER) failed")
    before = _children()
    try:
        yield
        left = []
        for pid in sorted(_children() - before):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if state == "Z":
                os.waitpid(pid, os.WNOHANG)
                continue
            left.append(f"{pid} [{state}] {cmd.decode(errors='replace')[:120]}")
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        assert not left, f"host processes left behind by the sandbox: {left}"
    finally:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


class Run:
    """One finished fuzz run: exit status, output, the Sentry's debug log."""

    def __init__(self, argv: list[str], rc: int | None, out: str, err: str, log: str,
                 seconds: float) -> None:
        self.argv, self.rc, self.out, self.err, self.log = argv, rc, out, err, log
        self.seconds = seconds
        self.report: dict[str, str] = {}
        # Workers write random bytes to stdout too: report lines are found anywhere.
        for m in re.finditer(r"sysfuzz: ([^\n]*)", out):
            for kv in m.group(1).split():
                k, _, v = kv.partition("=")
                self.report[k] = v

    def problems(self) -> list[str]:
        """Everything that makes this run a failure (empty: a good run)."""
        out = []
        if self.rc is None:
            out.append(f"hang: not finished {self.seconds:.0f}s after it started")
        # The fuzzer writes random bytes to stderr too: quote from the match on.
        found = [_rest_of_line(self.err, m.start()) for m in SENTRY_FAILURE.finditer(self.err)]
        if found:
            out.append("Sentry failure: " + " | ".join(found[:5]))
        if self.rc is not None and self.rc != 0:
            out.append(f"the sandbox ended with status {self.rc}, not the fuzzer's 0")
        if self.report.get("done") != "1":
            out.append("the fuzzer did not finish (no `sysfuzz: done=1`)")
        else:
            if self.report.get("leftover") != "0" or self.report.get("unreaped") != "0":
                out.append(f"processes left in the sandbox: leftover={self.report.get('leftover')}"
                           f" unreaped={self.report.get('unreaped')} "
                           f"pids={self.report.get('leftover_pids')}")
        return out

    def details(self) -> str:
        """The Sentry's internal-error traceback from its debug log, and the fuzzer's report."""
        tb = ""
        i = self.log.find("internal error in")
        if i < 0:
            i = self.log.find("sandbox failed")
        if i >= 0:
            tb = self.log[max(0, i - 200):i + 4000]
        report = "\n".join(re.findall(r"sysfuzz: [^\n]*", self.out))
        return (f"command: {' '.join(self.argv)}\n--- fuzzer report ---\n{report}\n"
                f"--- stderr (tail) ---\n{self.err[-3000:]}\n--- Sentry log ---\n{tb}")


def fuzz(binary: str, seed: int, seconds: float, tmp: Path, tty: bool = False,
         extra: tuple[str, ...] = (), bundle: Path | None = None) -> Run:
    """Runs the fuzzer in a sandbox: `pyvisor do` over the host root, stdin a
    pty (tty=True) or /dev/null; or `pyvisor run` of `bundle` (see make_bundle)."""
    log = tmp / "sentry.log"
    args = [str(seed), f"{seconds:g}", "4", "2"]
    if bundle is None:
        argv = [sys.executable, "-m", "pyvisor", "--debug", "--log", str(log), "do", *extra,
                "--", binary, *args]
    else:
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["args"] = ["/sysfuzz", *args, "/data"]
        (bundle / "config.json").write_text(json.dumps(config))
        state = tmp / "state"
        state.mkdir(mode=0o700, exist_ok=True)
        argv = [sys.executable, "-m", "pyvisor", "--debug", "--log", str(log), "--root",
                str(state), "run", "--bundle", str(bundle), f"sysfuzz-{seed}-{os.getpid()}"]
    master = slave = -1
    if tty:
        master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave if tty else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=pyvisor_env(None), start_new_session=True)
    if tty:
        os.close(slave)
        # Whatever the fuzzer writes to the terminal is read, so writes never block on it.
        threading.Thread(target=_drain, args=(master,), daemon=True).start()
    t0 = time.monotonic()
    rc: int | None
    try:
        out, err = proc.communicate(timeout=seconds + MARGIN)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = None
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    finally:
        if tty:
            os.close(master)
    text = log.read_text(errors="replace") if log.exists() else ""
    return Run(argv, rc, out.decode(errors="replace"), err.decode(errors="replace"), text,
               time.monotonic() - t0)


def make_bundle(binary: str, base: Path) -> Path:
    """An OCI bundle: a read-only root holding only the fuzzer (and a few files
    it opens), /proc, a tmpfs /tmp, and a writable bind mount of a fresh host
    directory at /data, where the workers work: their file calls go to the Gofer."""
    bundle = base / "bundle"
    root = bundle / "rootfs"
    for d in ("dev", "proc", "sys", "tmp", "data", "etc", "usr/bin"):
        (root / d).mkdir(parents=True, mode=0o755)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/sysfuzz\n")
    (root / "etc" / "hostname").write_text("sysfuzz\n")
    shutil.copy2(binary, root / "sysfuzz")
    data = base / "data"
    data.mkdir(mode=0o777)
    config = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "cwd": "/",
                    "args": ["/sysfuzz"], "env": ["PATH=/"]},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "sysfuzz",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]},
            {"destination": "/data", "type": "bind", "source": str(data),
             "options": ["rbind", "rw"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in
                                 ("pid", "mount", "ipc", "uts", "network")]},
    }
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def _rest_of_line(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass


MODES = ("tty", "devnull", "bind")      # one run each, seeds BASE_SEED + 0, 1, 2


@pytest.mark.parametrize("mode", MODES)
def test_syscall_fuzz(mode: str, sysfuzz: str, world_tmp: Path, no_leftovers: None) -> None:
    """One fuzz run per seed: the Sentry must survive it with nothing left behind.
    `tty`: `pyvisor do` with a terminal on stdin; `devnull`: /dev/null; `bind`:
    `pyvisor run` of a bundle whose workers work in a writable bind mount."""
    seed = BASE_SEED + MODES.index(mode)
    print(f"sysfuzz seed {seed} ({mode}, {SECONDS:g}s); reproduce with "
          f"PYVISOR_FUZZ_SEED={BASE_SEED} PYVISOR_FUZZ_SECONDS={SECONDS:g} "
          f"pytest tests/fuzz -k '{mode}'")
    bundle = make_bundle(sysfuzz, world_tmp) if mode == "bind" else None
    r = fuzz(sysfuzz, seed, SECONDS, world_tmp, tty=mode == "tty", bundle=bundle)
    problems = r.problems()
    assert not problems, (f"sysfuzz seed {seed}: " + "; ".join(problems) + "\n" + r.details())
    assert int(r.report["calls"]) > 0, r.details()
    print("sysfuzz: " + " ".join(f"{k}={r.report[k]}" for k in (
        "calls", "succeeded", "numbers_called", "numbers_succeeded", "workers_spawned",
        "signals", "stalls") if k in r.report))


def test_fuzz_harness_sees_a_sentry_crash(sysfuzz: str, tmp_path: Path,
                                          no_leftovers: None) -> None:
    """The judge can fail: with the Sentry made to fail in uname (the --test-panic
    hook), the fuzzer soon calls it and the run is reported as a Sentry failure
    that ended the sandbox."""
    r = fuzz(sysfuzz, BASE_SEED, 60, tmp_path, extra=("--test-panic", "uname"))
    problems = r.problems()
    assert any(p.startswith("Sentry failure") and "uname" in p for p in problems), problems
    assert any("did not finish" in p for p in problems), problems
    assert "internal error in uname" in r.details(), r.details()

