"""Helpers of the escape test suite (see conftest.py)."""

from __future__ import annotations

import ctypes
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "programs"

# What an internal error of the Sentry looks like on its stderr.
INTERNAL_ERROR = re.compile(r"Traceback \(most recent call last\)|internal error",
                            re.IGNORECASE)

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36


def kvs(text: str) -> dict[str, str]:
    """The key=value lines of an attack program's output (last one wins)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and " " not in key:
            out[key] = value
    return out


def assert_no_internal_error(result) -> None:  # noqa: ANN001 - conftest.Result
    m = INTERNAL_ERROR.search(result.stderr)
    assert m is None, f"the Sentry reported an internal error:\n{result.output}"


def assert_sandbox_ran(result, rc: int = 0) -> dict[str, str]:  # noqa: ANN001
    """The sandboxed program ran to its end (exit rc) and the Sentry logged no
    internal error; returns its key=value report."""
    assert_no_internal_error(result)
    assert result.returncode == rc, (
        f"sandboxed attack program: exit {result.returncode}, expected {rc}\n"
        f"{result.output}")
    return kvs(result.stdout)


def assert_native_ran(result, rc: int = 0) -> dict[str, str]:  # noqa: ANN001
    assert result.returncode == rc, (
        f"native attack program: exit {result.returncode}, expected {rc}\n"
        f"{result.output}")
    return kvs(result.stdout)


# -- building the attack programs ----------------------------------------------------




# -- host state ----------------------------------------------------------------------


@dataclass(frozen=True)
class FileState:
    """Everything about a host file an attack could change (not atime)."""

    exists: bool
    content: bytes = b""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    ino: int = 0
    nlink: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()
    link: str | None = None


def file_state(path: os.PathLike[str] | str) -> FileState:
    p = os.fspath(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return FileState(False)
    content = b""
    link = None
    if stat.S_ISREG(st.st_mode):
        with open(p, "rb") as f:
            content = f.read()
    elif stat.S_ISLNK(st.st_mode):
        link = os.readlink(p)
    xattrs: tuple[tuple[str, bytes], ...] = ()
    if not stat.S_ISLNK(st.st_mode):
        try:
            xattrs = tuple(sorted((n, os.getxattr(p, n)) for n in os.listxattr(p)))
        except OSError:
            pass
    return FileState(True, content, st.st_mode, st.st_uid, st.st_gid, st.st_size,
                     st.st_ino, st.st_nlink, st.st_mtime_ns, st.st_ctime_ns, xattrs, link)


def tree_state(root: os.PathLike[str] | str) -> dict[str, FileState]:
    """file_state of root and everything beneath it (no symlinks followed)."""
    out: dict[str, FileState] = {}
    root = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        out[dirpath] = file_state(dirpath)
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if os.path.islink(p) or n in filenames:
                out[p] = file_state(p)
    return out


def assert_same_tree(before: dict[str, FileState], after: dict[str, FileState]) -> None:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert not (added or removed or changed), (
        f"the host changed: added {added}, removed {removed}, changed "
        + "; ".join(f"{p}: {before[p]} -> {after[p]}" for p in changed))


def host_mounts() -> list[str]:
    """The host mount table, without the per-mount ids (which are stable anyway)."""
    return Path("/proc/self/mountinfo").read_text().splitlines()


def children_of_self() -> set[int]:
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            text = Path(f"/proc/self/task/{task}/children").read_text()
        except OSError:
            continue
        pids.update(int(x) for x in text.split())
    return pids


def proc_state(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return text.rpartition(")")[2].split()[0]


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return "?"


# -- host processes ------------------------------------------------------------------


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None and proc_state(proc.pid) not in ("Z", "gone", "X")


# -- running pyvisor with global options ------------------------------------------------

REPO = HERE.parent.parent


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def pyvisor(options: list[str], argv: list[str], timeout: float = 120,
            do_options: tuple[str, ...] = ()) -> Run:
    """`python -m pyvisor OPTIONS do DO_OPTIONS -- ARGV` in a new session; on
    timeout the session's process group is killed and the test fails."""
    import signal as _signal
    import subprocess
    import sys
    import time

    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + old if old else "")
    cmd = [sys.executable, "-m", "pyvisor", *options, "do", *do_options, "--", *argv]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, _signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout}s: {cmd}\n{out.decode(errors='replace')}"
                    f"{err.decode(errors='replace')}", pytrace=False)
    return Run(tuple(cmd), proc.returncode, out.decode(errors="replace"),
               err.decode(errors="replace"), time.monotonic() - t0)


_HELP: list[str] = []


def mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0
