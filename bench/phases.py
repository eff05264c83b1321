"""Where the start-up of `pyvisor do` goes: a phase breakdown (docs/startup.md).

    /usr/bin/python3 bench/phases.py [-n 10] [--pin] [--markdown] [-- CMD ...]

Runs `python3 -m pyvisor do -- CMD` (default /bin/true) N times with PYVISOR_PHASES=1,
which makes the launcher and the Sentry write a time-stamped line at each phase
(pyvisor/runtime/phases.py), and prints, for each phase, the median time since the
command was spawned and the median time since the previous phase.  The last row is
the whole run as a user sees it (spawn to exit).  `--pin` runs it under `taskset -c 0`
as bench/run.py's pinned rows do.  Modules are byte-compiled first, as installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_run(cmd: list[str], env: dict[str, str]) -> list[tuple[str, float]]:
    """[(phase, ms since spawn)] of one run, in time order, ending with 'exit'."""
    t0 = time.monotonic_ns()
    p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, check=False)
    t1 = time.monotonic_ns()
    if p.returncode != 0:
        sys.exit(f"phases.py: exit status {p.returncode}: {p.stderr.decode()[-500:]}")
    marks = []
    for line in p.stderr.decode(errors="replace").splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] == "pyvisor-phase":
            marks.append((f"{parts[1]}: {parts[3]}", (int(parts[2]) - t0) / 1e6))
    marks.sort(key=lambda m: m[1])
    marks.append(("exit (seen by the caller)", (t1 - t0) / 1e6))
    return marks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="runs (after one warm-up)")
    ap.add_argument("--pin", action="store_true", help="taskset -c 0")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="do not byte-compile first")
    ap.add_argument("cmd", nargs="*", default=["/bin/true"])
    args = ap.parse_args()
    python = "/usr/bin/python3"
    if not args.no_compile:
        subprocess.run([python, "-m", "compileall", "-q", os.path.join(REPO_ROOT, "pyvisor")],
                       check=True)
    env = dict(os.environ, PYVISOR_PHASES="1", PYTHONPATH=REPO_ROOT)
    cmd = ([ "taskset", "-c", "0"] if args.pin else []) + \
        [python, "-m", "pyvisor", "do", "--", *args.cmd]
    one_run(cmd, env)
    runs = [one_run(cmd, env) for _ in range(args.n)]
    names = [name for name, _ in runs[0]]
    rows = []
    prev: list[float] = [0.0] * len(runs)
    for name in names:
        at = [dict(r).get(name) for r in runs]
        if any(a is None for a in at):
            continue
        ats = [float(a) for a in at]          # type: ignore[arg-type]
        deltas = [a - p for a, p in zip(ats, prev)]
        rows.append((name, statistics.median(ats), statistics.median(deltas)))
        prev = ats
    load = os.getloadavg()[0]
    title = f"`pyvisor do -- {' '.join(args.cmd)}`, {'pinned' if args.pin else 'not pinned'}, " \
            f"median of {args.n} runs, load average {load:.1f}"
    if args.markdown:
        print(f"{title}\n\n| phase | at (ms) | took (ms) |\n| --- | ---: | ---: |")
        for name, at_ms, d in rows:
            print(f"| {name} | {at_ms:.1f} | {d:.1f} |")
    else:
        print(title)
        for name, at_ms, d in rows:
            print(f"{at_ms:8.1f} ms  {d:+7.1f} ms  {name}")


if __name__ == "__main__":
    main()
