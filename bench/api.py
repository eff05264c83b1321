"""Benchmark the Python API: a run in a warm pyvisor.Sandbox vs a fresh `pyvisor do`.

    /usr/bin/python3 bench/api.py              # default: 200 warm runs, 10 fresh ones
    /usr/bin/python3 bench/api.py --quick      # 50 / 3
    /usr/bin/python3 bench/api.py --json out.json --markdown

Rows (medians; pinned to CPU 0 like bench/run.py unless --no-pin, so the caller, the
Sentry and its stubs share one CPU):

| row | what one iteration is |
| --- | --- |
| warm run: Sandbox.run(["true"]) | exec over the control socket, /bin/true (dynamic) runs, wait, stdio pipes drained |
| warm run CPU: caller / sandbox | CPU time per warm run of the caller (process_time) and of the sandbox's cgroup (cpuacct): unlike wall time, not inflated by a loaded machine |
| warm run: Sandbox.run("exit 3") | the same through /bin/sh -c |
| warm run: busybox true | a static binary: no dynamic loader (the exec path's floor) |
| warm run, 4 threads: runs/s | Sandbox.run(["true"]) from 4 threads at once, throughput |
| fresh: pyvisor do /bin/true | a new sandbox per command: CLI start, Sentry and Gofer boot, teardown |
| fresh: Sandbox() + run + close | the API's cost of a brand-new sandbox (create, one run, delete) |
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import pyvisor  # noqa: E402


def _median_ms(fn: Callable[[], object], n: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("--json", default="")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    warm_n, fresh_n = (50, 3) if args.quick else (200, 10)
    if not args.no_pin:
        os.sched_setaffinity(0, {args.cpu})
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(REPO, "pyvisor")],
                   check=False)
    rows: list[tuple[str, float, str]] = []
    env = dict(os.environ, PYTHONPATH=REPO)
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

    with pyvisor.Sandbox() as sb:
        def check(r: pyvisor.Result, code: int) -> None:
            if r.returncode != code:
                raise SystemExit(f"bench: unexpected result {r}")
        rows.append(("warm run: Sandbox.run([\"true\"])",
                     _median_ms(lambda: check(sb.run(["true"]), 0), warm_n), "ms"))
        # CPU time per run, which the machine's load does not inflate as it does wall time:
        # the caller's (this process) and the sandbox's (its cgroup: Sentry, Gofers, stubs).
        c0, u0 = time.process_time(), sb.stats()["cpu"]["usage"]
        for _ in range(warm_n):
            sb.run(["true"])
        c1, u1 = time.process_time(), sb.stats()["cpu"]["usage"]
        rows.append(("warm run CPU: caller (API side)", (c1 - c0) / warm_n * 1000, "ms"))
        rows.append(("warm run CPU: sandbox (Sentry + stubs)", (u1 - u0) / warm_n * 1000,
                     "ms"))
        rows.append(("warm run: Sandbox.run(\"exit 3\")",
                     _median_ms(lambda: check(sb.run("exit 3"), 3), warm_n), "ms"))
        if os.path.exists("/bin/busybox"):
            rows.append(("warm run: busybox true (static)",
                         _median_ms(lambda: check(sb.run(["/bin/busybox", "true"]), 0),
                                    warm_n), "ms"))
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda _: sb.run(["true"]), range(8)))
            t = time.perf_counter()
            list(ex.map(lambda _: check(sb.run(["true"]), 0), range(warm_n)))
            rows.append(("warm run, 4 threads: runs per second",
                         warm_n / (time.perf_counter() - t), "/s"))

    def fresh_do() -> None:
        subprocess.run([python, "-m", "pyvisor", "do", "--", "/bin/true"], env=env,
                       check=True, cwd="/")
    rows.append(("fresh: pyvisor do /bin/true", _median_ms(fresh_do, fresh_n, 1), "ms"))
    rows.append(("load average (1 min) during the run", os.getloadavg()[0], ""))

    def fresh_api() -> None:
        with pyvisor.Sandbox() as s:
            s.run(["true"])
    rows.append(("fresh: Sandbox() + run + close", _median_ms(fresh_api, fresh_n, 1), "ms"))

    if args.markdown:
        print("| benchmark | value |\n| --- | ---: |")
        for name, v, unit in rows:
            print(f"| {name} | {v:.1f} {unit} |")
    else:
        for name, v, unit in rows:
            print(f"{name:45s} {v:9.1f} {unit}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"benchmark": n, "value": v, "unit": u} for n, v, u in rows], f,
                      indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
