"""runtime/prefork.py: `pyvisor do` forks its Sentry before parsing the command line.

The early Sentry must behave exactly as the one forked after parsing (PYVISOR_PREFORK=0):
same output, exit codes, logging, platform and network variants; it must actually start
early (the phase marks say when); and a command line that only looks like `do` must
leave no process behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pvtest import execute, pyvisor_env

PV = [sys.executable, "-m", "pyvisor"]


def _env(prefork: bool, **extra: str) -> dict[str, str]:
    env = pyvisor_env(None)
    env["PYVISOR_PREFORK"] = "1" if prefork else "0"
    env.update(extra)
    return env


def _phases(stderr: str) -> list[tuple[int, str]]:
    """(CLOCK_MONOTONIC ns, "process: phase") of PYVISOR_PHASES=1's marks, in time order."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("pyvisor-phase "):
            _, proc, ns, phase = line.split(" ", 3)
            out.append((int(ns), f"{proc}: {phase}"))
    return sorted(out)


needs_two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                                    reason="prefork needs a second CPU (runtime/prefork.py)")


@needs_two_cpus
@pytest.mark.parametrize("prefork", [True, False])
def test_sentry_forked_before_or_after_parsing(prefork: bool) -> None:
    """With prefork the Sentry's first mark precedes the launcher's parsed arguments;
    without, it follows the launcher's namespaces, as every other verb's."""
    r = execute([*PV, "do", "/bin/true"], env=_env(prefork, PYVISOR_PHASES="1"))
    assert r.returncode == 0, r.output
    order = [p for _, p in _phases(r.stderr)]
    forked = order.index("sentry: forked")
    parsed = order.index("launcher: arguments parsed")
    assert (forked < parsed) == prefork, order
    assert ("launcher: configuration handed over" in order) == prefork, order


@needs_two_cpus
@pytest.mark.parametrize("globals_", [["--root", "{root}"], ["--platform", "ptrace", "--log-format",
                                                             "text"], ["--root={root}", "--debug"]])
def test_global_options_with_separate_values(globals_: list[str], tmp_path: Path) -> None:
    """`--root DIR do` is a `do` too: the Sentry is forked before parsing."""
    argv = [a.format(root=tmp_path) for a in globals_]
    r = execute([*PV, *argv, "do", "/bin/true"], env=_env(True, PYVISOR_PHASES="1"))
    assert r.returncode == 0, r.output
    order = [p for _, p in _phases(r.stderr)]
    assert order.index("sentry: forked") < order.index("launcher: arguments parsed"), order


def test_value_options_match_the_parser() -> None:
    """prefork.VALUE_OPTIONS is every global option argparse gives exactly one value."""
    from pyvisor.runtime import cli, prefork
    parser = cli._parser(["do"])
    taking = {o for a in parser._actions if a.nargs is None and a.option_strings
              and a.const is None and not isinstance(a, cli.argparse._VersionAction)
              and a.__class__.__name__ == "_StoreAction" for o in a.option_strings}
    assert taking == prefork.VALUE_OPTIONS
    assert prefork.verb_of(["--root", "do", "run"]) == "run"
    assert prefork.verb_of(["--root=/x", "--debug", "do", "x"]) == "do"
    assert prefork.verb_of(["--", "do"]) == "do"
    assert prefork.verb_of(["--root"]) is None


@pytest.mark.parametrize("prefork", [True, False])
@pytest.mark.parametrize("argv, code, out", [
    (["/bin/sh", "-c", "echo $$ $PPID; pwd; echo err >&2"], 0, "1 0\n{cwd}\n"),
    (["/bin/sh", "-c", "exit 7"], 7, ""),
    (["/bin/sh", "-c", "kill -9 $$"], 137, ""),
    (["/no/such/program"], 127, ""),
])
def test_same_results(prefork: bool, argv: list[str], code: int, out: str,
                      tmp_path: Path) -> None:
    r = execute([*PV, "do", "--", *argv], env=_env(prefork), cwd=tmp_path)
    assert r.returncode == code, r.output
    assert r.stdout == out.format(cwd=tmp_path), r.output
    if argv[-1].endswith("echo err >&2"):
        assert r.stderr == "err\n"


@pytest.mark.parametrize("flags", [["--platform=systrap"], ["--network=host"],
                                   ["--network=none"]])
def test_configurations_that_preload_more(flags: list[str]) -> None:
    """The early Sentry imports the default configuration's modules first; systrap and
    hostinet come after the hand-over.  Loopback works in each network mode."""
    r = execute([*PV, *flags, "do", "/bin/sh", "-c", "cat /proc/self/comm; exit 3"],
                env=_env(True))
    assert (r.returncode, r.stdout) == (3, "cat\n"), r.output


def test_logging_reaches_the_early_sentry(tmp_path: Path) -> None:
    """--debug-log, parsed after the fork, is where the Sentry's debug records go."""
    log = tmp_path / "debug.log"
    r = execute([*PV, "--debug-log", str(log), "do", "--test-panic", "getppid",
                 "/bin/sh", "-c", "echo x"], env=_env(True))
    assert r.returncode == 137, r.output         # an internal error kills the sandbox
    assert "internal error in getppid" in log.read_text()


@needs_two_cpus
@pytest.mark.parametrize("argv", [
    ["do", "--no-such-flag"],          # argparse's error: exit 2
    ["do"],                            # no command: exit 126
    ["--platform=kvm", "do", "true"],  # a planned platform: exit 125
])
def test_cancelled_early_sentry_leaves_nothing(argv: list[str]) -> None:
    """A `do` that fails before launch kills and reaps its early Sentry: no process
    carrying this command line survives the launcher."""
    marker = f"PYVISOR_TEST_MARKER={uuid.uuid4().hex}"
    r = execute([*PV, *argv], env=_env(True, PYVISOR_PHASES="1", MARKER=marker))
    assert r.returncode in (2, 125, 126), r.output
    assert "sentry: forked" in [p for _, p in _phases(r.stderr)], r.stderr
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() in f.read():
                    left.append(pid)
        except OSError:
            pass
    assert not left, f"processes left behind: {left}"


def test_one_cpu_forks_after_parsing() -> None:
    """Pinned to one CPU the two processes would only take turns: no early fork."""
    cpu = min(os.sched_getaffinity(0))
    r = execute(["taskset", "-c", str(cpu), *PV, "do", "/bin/true"],
                env=_env(True, PYVISOR_PHASES="1"))
    assert r.returncode == 0, r.output
    order = [p for _, p in _phases(r.stderr)]
    assert order.index("sentry: forked") > order.index("launcher: namespaces unshared")


@needs_two_cpus
def test_early_sentry_dead_before_hand_over() -> None:
    """An early Sentry that died before its configuration reached it: the launcher
    neither dies of SIGPIPE nor leaves its cgroup behind, and says what happened."""
    proc = subprocess.Popen([*PV, "do", "/bin/true"],
                            env=_env(True, PYVISOR_TEST_PREFORK_DIE="1"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    out, err = proc.communicate(timeout=60)
    text = err.decode(errors="replace")
    # Usually the Sentry is gone before the launcher sends (125 and the line below); on a
    # loaded machine the send may still land in the socket first (then its own status).
    assert proc.returncode in (125, 70), text
    if proc.returncode == 125:
        assert "Sentry ended (status 70) before its configuration reached it" in text, text
    assert "Traceback" not in text, text
    left = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        left += [os.path.join(root, d) for d in dirs if d.startswith(f"pyvisor-{proc.pid}-")]
        if root.count("/") > 5:
            dirs[:] = []
    assert not left, left
