"""Shared fixtures: build the C test programs, run commands natively or
under pyvisor, and compare the two.

Linux is the oracle: a test runs a command natively and in the sandbox and
expects the same result. Commands run in a new session so that a timeout can
kill the whole process group; stdin is /dev/null unless `input` is given.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import pytest

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = REPO / "tests" / "programs"
WHERE = ("native", "pyvisor")
CFLAGS = ["-O1", "-Wall", "-pthread"]


@dataclass(frozen=True)
class Result:
    """What a command did.

    returncode is the exit status as a shell reports it. For native runs a
    death by signal N is turned into 128+N, which is what `pyvisor do`
    promises for the program it runs. A pyvisor run keeps Popen's value, so
    a pyvisor process that itself dies by a signal shows as negative and
    never matches.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout then stderr, for assertion messages."""
        return self.stdout + self.stderr


class Builder(Protocol):
    def __call__(self, name: str, static: bool = False) -> str: ...


class Runner(Protocol):
    def __call__(
        self,
        where: str,
        argv: Sequence[str],
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Result: ...


class CliRunner(Protocol):
    def __call__(
        self,
        args: Sequence[str],
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Result: ...


class Comparer(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> tuple[Result, Result]: ...


def is_stub(pid: int) -> bool:
    """Whether host process `pid` is a pyvisor stub.  By its executable (the stub's memfd):
    its comm is the program it runs once that has exec'd (kernel/exec.py name_host_stub)."""
    try:
        return os.readlink(f"/proc/{pid}/exe").startswith("/memfd:pyvisor")
    except OSError:
        return False


def pyvisor_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment for a pyvisor process: env (default: ours) with the
    repository on PYTHONPATH. The program in the sandbox sees it too."""
    out = dict(os.environ if env is None else env)
    old = out.get("PYTHONPATH")
    out["PYTHONPATH"] = str(REPO) + (os.pathsep + old if old else "")
    return out


def execute(
    argv: Sequence[str],
    *,
    input: str | None = None,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    normalize_signals: bool = False,
) -> Result:
    """Runs argv in a new session; on timeout kills its process group and
    fails the test."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(
            None if input is None else input.encode(), timeout=timeout
        )
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            # Something outside the group still holds the pipes.
            proc.kill()
            proc.wait()
            out, err = b"", b"(output unavailable: pipes held open)"
    if timed_out:  # outside the except block: no exception chain to show
        pytest.fail(
            f"timed out after {timeout}s, process group killed: {list(argv)!r}\n"
            f"--- stdout ---\n{out.decode(errors='replace')}"
            f"--- stderr ---\n{err.decode(errors='replace')}",
            pytrace=False,
        )
    rc = proc.returncode
    if normalize_signals and rc < 0:
        rc = 128 - rc
    return Result(
        argv=tuple(argv),
        returncode=rc,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
    )


def make_world_readable(path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """chmod 0755 path and its parents up to pytest's per-user temp root,
    which pytest creates 0700: the sandbox reads files through its own VFS,
    possibly without root's privileges. pytest makes that root private
    again at the start of its next session."""
    top = tmp_path_factory.getbasetemp().resolve().parent
    path = path.resolve()
    for p in [path, *path.parents]:
        p.chmod(0o755)
        if p == top:
            break


def c_builder(src_dir: Path, outdir: Path) -> Builder:
    """Compiles `src_dir`/NAME (".c" optional) once into `outdir`; returns the binary."""
    built: dict[tuple[str, bool], str] = {}

    def build(name: str, static: bool = False) -> str:
        key = (name, static)
        if key not in built:
            src = src_dir / (name if name.endswith(".c") else name + ".c")
            if not src.is_file():
                raise FileNotFoundError(src)
            out = outdir / (src.stem + ("-static" if static else ""))
            cmd = ["gcc", *CFLAGS, *(["-static"] if static else []),
                   "-o", str(out), str(src)]
            cc = subprocess.run(cmd, capture_output=True, text=True)
            if cc.returncode != 0:
                pytest.fail(f"{' '.join(cmd)} failed:\n{cc.stdout}{cc.stderr}",
                            pytrace=False)
            out.chmod(0o755)
            built[key] = str(out)
        return built[key]

    return build


@pytest.fixture(scope="session")
def program(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    """Compiles tests/programs/NAME once per session into a world-readable directory."""
    outdir = tmp_path_factory.mktemp("programs")
    make_world_readable(outdir, tmp_path_factory)
    return c_builder(PROGRAMS, outdir)


@pytest.fixture(scope="session")
def run() -> Runner:
    """run(where, argv, input=None, timeout=120, env=None, cwd=None) -> Result.

    where is "native" (argv as is) or "pyvisor"
    (`python -m pyvisor do -- argv`, with the repository on PYTHONPATH)."""

    def runner(
        where: str,
        argv: Sequence[str],
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Result:
        if where == "native":
            return execute(argv, input=input, timeout=timeout, env=env, cwd=cwd,
                           normalize_signals=True)
        if where == "pyvisor":
            cmd = [sys.executable, "-m", "pyvisor", "do", "--", *argv]
            return execute(cmd, input=input, timeout=timeout,
                           env=pyvisor_env(env), cwd=cwd)
        raise ValueError(f"where must be one of {WHERE}, not {where!r}")

    return runner


@pytest.fixture(scope="session")
def pyvisor_cli() -> CliRunner:
    """pyvisor_cli(args, ...) runs `python -m pyvisor *args` (any verb)."""

    def runner(
        args: Sequence[str],
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Result:
        cmd = [sys.executable, "-m", "pyvisor", *args]
        return execute(cmd, input=input, timeout=timeout, env=pyvisor_env(env),
                       cwd=cwd)

    return runner


@pytest.fixture(scope="session")
def compare(run: Runner) -> Comparer:
    """compare(argv, ...) runs argv natively and under pyvisor, asserts the
    same returncode and stdout, and returns (native, sandboxed)."""

    def comparer(
        argv: Sequence[str],
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> tuple[Result, Result]:
        native = run("native", argv, input=input, timeout=timeout, env=env, cwd=cwd)
        sandboxed = run("pyvisor", argv, input=input, timeout=timeout, env=env,
                        cwd=cwd)
        detail = (f"{list(argv)!r}\n=== native ===\n{native.output}"
                  f"=== pyvisor ===\n{sandboxed.output}")
        assert sandboxed.returncode == native.returncode, (
            f"returncode: native {native.returncode}, "
            f"pyvisor {sandboxed.returncode}\n{detail}")
        assert sandboxed.stdout == native.stdout, f"stdout differs\n{detail}"
        return native, sandboxed

    return comparer


@pytest.fixture
def world_tmp(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tmp_path, made readable by anyone (with its parents), for files the
    sandbox must see."""
    make_world_readable(tmp_path, tmp_path_factory)
    return tmp_path


def proc_status(pid: int) -> dict[str, str]:
    """The fields of the host's /proc/PID/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def descendants(pid: int) -> list[int]:
    """Every host process below `pid` (children of any of its threads, recursively)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                kids = Path(f"/proc/{p}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for k in map(int, kids):
                out.append(k)
                todo.append(k)
    return out
