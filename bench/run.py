#!/usr/bin/python3
"""Benchmark pyvisor against the host (native) and gVisor's runsc.

Every benchmark runs in each environment:

  native   the command as is
  pyvisor  python3 -m pyvisor do -- CMD          (PYTHONPATH = this repository)
  runsc    runsc --network=none --platform=ptrace do CMD   (optional: "n/a"
           when runsc is not on PATH)

and every command is prefixed with `taskset -c 0`, so the launcher and all it
starts (Sentry, Gofer, stubs, application) share CPU 0, unless --no-pin.

Rows:
  getppid      mean latency of syscall(SYS_getppid)             microbench
  clock        mean latency of clock_gettime(CLOCK_MONOTONIC)   microbench
  openclose    open("/etc/hostname") + close                    microbench
  forkwait     fork + child _exit(0) + waitpid                  microbench
  forkexec     fork + child execv("/bin/true") + waitpid         microbench
  tcprr        1-byte ping-pong over loopback TCP (round trip)  microbench
  tcpstream    loopback TCP throughput, MiB/s (64 KiB writes)   microbench
  true         wall time of the whole `... /bin/true` command (median)
  python       wall time of the whole `... python3 -c pass` command (median)
  cpu2         two python3 processes each running a CPU-bound loop at once:
               the time from starting both to both done (programs/cpu2.py, median)

See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
MICROBENCH_C = os.path.join(BENCH_DIR, "programs", "microbench.c")

ENVIRONMENTS = ("native", "pyvisor", "runsc")

# Iteration counts: (native, sandbox) for the full run and for --quick.
# Natively a syscall costs ~0.1 µs and a fork ~100 µs, so the host gets more
# iterations to run for a comparable, measurable time.
MICRO_ITERS = {
    #              full               quick
    "getppid": ((1_000_000, 20_000), (100_000, 2_000)),
    "clock": ((10_000_000, 10_000_000), (1_000_000, 1_000_000)),
    "openclose": ((200_000, 5_000), (20_000, 500)),
    "forkwait": ((3_000, 300), (300, 30)),
    "forkexec": ((1_000, 300), (100, 30)),
    "tcprr": ((100_000, 3_000), (10_000, 300)),
    "tcpstream": ((2_048, 256), (256, 64)),      # MiB
}
STARTUP_REPEATS = (10, 3)  # full, quick; plus one untimed warm-up run
CPU2_PY = os.path.join(BENCH_DIR, "programs", "cpu2.py")
CPU2_LOOPS = (10_000_000, 2_000_000)   # full, quick: iterations of each process's loop


@dataclass
class Benchmark:
    name: str
    description: str
    unit: str  # "µs" or "ms"
    kind: str  # "micro" (value from microbench, ns/iter), "startup" (wall s) or
    #            "script" (the command prints ns on its last line)
    mode: str = ""  # microbench mode
    argv: Callable[["Context"], list[str]] = lambda ctx: []


BENCHMARKS = [
    Benchmark("getppid", "getppid latency", "µs", "micro", mode="getppid"),
    Benchmark("clock", "clock_gettime latency", "µs", "micro", mode="clock"),
    Benchmark("openclose", "open+close /etc/hostname", "µs", "micro", mode="openclose"),
    Benchmark("forkwait", "fork+exit+wait", "µs", "micro", mode="forkwait"),
    Benchmark("forkexec", "fork+exec(/bin/true)+wait", "µs", "micro", mode="forkexec"),
    Benchmark("tcprr", "loopback TCP 1-byte ping-pong", "µs", "micro", mode="tcprr"),
    Benchmark("tcpstream", "loopback TCP stream", "MiB/s", "micro", mode="tcpstream"),
    Benchmark("true", "start-up: do /bin/true", "ms", "startup", argv=lambda ctx: ["/bin/true"]),
    Benchmark(
        "python",
        "start-up: do python3 -c pass",
        "ms",
        "startup",
        argv=lambda ctx: [ctx.python, "-c", "pass"],
    ),
    Benchmark(
        "cpu2",
        "two CPU-bound python3 processes",
        "ms",
        "script",
        argv=lambda ctx: [ctx.python, CPU2_PY, str(CPU2_LOOPS[1 if ctx.args.quick else 0])],
    ),
]
# --- File-system rows (programs/fsbench.c) -------------------------------------------
# Kept apart from the rows above so that other row groups merge without conflicts.
# Each operation runs on a tmpfs (/dev/shm, inside each environment) and on the root
# file system: fixtures made on the host beforehand, under the work directory, so the
# sandboxes reach them through their Gofer (creates on the root land in the root
# overlay's upper layer in pyvisor and runsc, after lookups through the Gofer).
FSBENCH_C = os.path.join(BENCH_DIR, "programs", "fsbench.c")
FS_ITERS = {
    #             full               quick
    "stat": ((200_000, 3_000), (20_000, 300)),
    "read4k": ((200_000, 3_000), (20_000, 300)),
    "create": ((20_000, 500), (2_000, 50)),
    "readdir": ((5_000, 100), (500, 10)),
}
FS_OPS = {
    "stat": "stat",
    "read4k": "4 KiB pread",
    "create": "create+write+close+unlink",
    "readdir": "readdir 1,000 entries",
}
FS_PLACES = {"tmpfs": "tmpfs", "root": "gofer root"}


def fs_benchmarks() -> list[Benchmark]:
    return [Benchmark(f"fs-{op}-{place}", f"{desc} ({where})", "µs", "fs", mode=op)
            for place, where in FS_PLACES.items() for op, desc in FS_OPS.items()]


def _fs_setup(ctx: Context) -> tuple[str, str]:
    """Compiles fsbench once and makes the root fixtures on the host; returns
    (fsbench binary, root fixture directory)."""
    binary = os.path.join(ctx.workdir, "fsbench")
    fixtures = os.path.join(ctx.workdir, "fs")
    if not os.path.exists(binary):
        gcc = shutil.which("gcc") or shutil.which("cc") or "gcc"
        subprocess.run([gcc, "-O2", "-Wall", "-o", binary, FSBENCH_C], check=True, timeout=120)
        os.mkdir(fixtures)
        os.chmod(fixtures, 0o777)      # the sandboxes create and unlink in it
        subprocess.run([binary, "prepare", "1", fixtures], check=True, timeout=120)
    return binary, fixtures


def run_fs(ctx: Context, bench: Benchmark, env: str) -> Cell:
    binary, fixtures = _fs_setup(ctx)
    place = bench.name.rsplit("-", 1)[1]
    where = (fixtures if place == "root"
             else f"/dev/shm/{os.path.basename(ctx.workdir)}-{env}")
    full, quick = FS_ITERS[bench.mode]
    n = (quick if ctx.args.quick else full)[0 if env == "native" else 1]
    prefix, penv = env_prefix(ctx, env)
    setup = f"mkdir -p {where} && " if place == "tmpfs" else ""
    clean = f"; rmdir {where}" if place == "tmpfs" else ""
    script = f"{setup}{binary} {bench.mode} {n} {where}; s=$?{clean}; exit $s"
    _, out = run_cmd(prefix + ["/bin/sh", "-c", script], penv, ctx.args.timeout)
    try:
        value = float(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RunError(f"unexpected fsbench output: {out[-500:]!r}")
    return Cell(value_ns=value, samples_ns=[value], iterations=n)


BENCHMARKS += fs_benchmarks()


BENCHMARK_NAMES = [b.name for b in BENCHMARKS]


@dataclass
class Cell:
    """One benchmark in one environment."""

    value_ns: Optional[float] = None  # ns per iteration, or ns of wall time
    samples_ns: list[float] = field(default_factory=list)
    iterations: int = 0
    status: str = "ok"  # ok | error | n/a | skipped
    error: str = ""


@dataclass
class Context:
    args: argparse.Namespace
    workdir: str
    microbench: str
    python: str
    runsc: Optional[str]
    envs: list[str]
    timeouts: dict[str, int] = field(default_factory=dict)  # env -> count


class RunError(Exception):
    pass


def compile_microbench(workdir: str) -> str:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        sys.exit("run.py: gcc not found")
    out = os.path.join(workdir, "microbench")
    subprocess.run(
        [gcc, "-O2", "-Wall", "-o", out, MICROBENCH_C],
        check=True,
        timeout=120,
    )
    os.chmod(out, 0o755)
    return out


def env_prefix(ctx: Context, env: str) -> tuple[list[str], dict[str, str]]:
    """Returns the command prefix and the environment for env."""
    penv = dict(os.environ)
    pin = [] if ctx.args.no_pin else ["taskset", "-c", str(ctx.args.cpu)]
    if env == "native":
        return pin, penv
    if env == "pyvisor":
        old = penv.get("PYTHONPATH")
        penv["PYTHONPATH"] = REPO_ROOT + (os.pathsep + old if old else "")
        return pin + [sys.executable, "-m", "pyvisor", "do", "--"], penv
    if env == "runsc":
        assert ctx.runsc is not None
        return pin + [ctx.runsc, "--network=none", "--platform=ptrace", "do"], penv
    raise ValueError(env)


def run_cmd(cmd: list[str], penv: dict[str, str], timeout: float) -> tuple[float, str]:
    """Runs cmd; returns (wall seconds, stdout). Raises RunError on failure.

    The command gets its own process group, which is killed on timeout so that
    no sandbox process outlives its run.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=penv,
        cwd=BENCH_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        raise RunError(f"timed out after {timeout:g} s\n" + _tail(err))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RunError(f"exit status {proc.returncode}\n" + _tail(err))
    return wall, out.decode(errors="replace")


def _tail(data: bytes, lines: int = 15) -> str:
    text = data.decode(errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:])


def run_micro(ctx: Context, bench: Benchmark, env: str) -> Cell:
    full, quick = MICRO_ITERS[bench.mode]
    native_n, sandbox_n = quick if ctx.args.quick else full
    n = native_n if env == "native" else sandbox_n
    prefix, penv = env_prefix(ctx, env)
    _, out = run_cmd(prefix + [ctx.microbench, bench.mode, str(n)], penv, ctx.args.timeout)
    lines = out.strip().splitlines()
    try:
        value = float(lines[-1])
    except (IndexError, ValueError):
        raise RunError(f"unexpected microbench output: {out[-500:]!r}")
    return Cell(value_ns=value, samples_ns=[value], iterations=n)


def run_startup(ctx: Context, bench: Benchmark, env: str) -> Cell:
    repeats = STARTUP_REPEATS[1 if ctx.args.quick else 0]
    prefix, penv = env_prefix(ctx, env)
    cmd = prefix + bench.argv(ctx)
    run_cmd(cmd, penv, ctx.args.timeout)  # warm-up: page cache, runsc's first start
    samples = [run_cmd(cmd, penv, ctx.args.timeout)[0] * 1e9 for _ in range(repeats)]
    return Cell(value_ns=statistics.median(samples), samples_ns=samples, iterations=repeats)


def run_script(ctx: Context, bench: Benchmark, env: str) -> Cell:
    repeats = STARTUP_REPEATS[1 if ctx.args.quick else 0] // 2 + 1
    prefix, penv = env_prefix(ctx, env)
    samples = []
    for _ in range(repeats):
        _, out = run_cmd(prefix + bench.argv(ctx), penv, ctx.args.timeout)
        try:
            samples.append(float(out.strip().splitlines()[-1]))
        except (IndexError, ValueError):
            raise RunError(f"unexpected output: {out[-500:]!r}")
    return Cell(value_ns=statistics.median(samples), samples_ns=samples, iterations=repeats)


def run_cell(ctx: Context, bench: Benchmark, env: str) -> Cell:
    if env == "runsc" and ctx.runsc is None:
        return Cell(status="n/a", error="runsc not on PATH")
    if ctx.timeouts.get(env, 0) >= 2:
        return Cell(status="skipped", error=f"{env} timed out twice; not run")
    try:
        if bench.kind == "micro":
            return run_micro(ctx, bench, env)
        if bench.kind == "script":
            return run_script(ctx, bench, env)
        if bench.kind == "fs":
            return run_fs(ctx, bench, env)
        return run_startup(ctx, bench, env)
    except RunError as e:
        msg = str(e)
        if msg.startswith("timed out"):
            ctx.timeouts[env] = ctx.timeouts.get(env, 0) + 1
        print(f"--- {bench.name} / {env}: error: {msg}", file=sys.stderr, flush=True)
        return Cell(status="error", error=msg)
    except OSError as e:
        print(f"--- {bench.name} / {env}: error: {e}", file=sys.stderr, flush=True)
        return Cell(status="error", error=str(e))


# Formatting.


def fmt_value(cell: Cell, unit: str) -> str:
    if cell.status != "ok" or cell.value_ns is None:
        return "error" if cell.status == "skipped" else cell.status
    if unit == "MiB/s":          # value_ns is ns per MiB
        return f"{_sig3(1e9 / cell.value_ns)} {unit}"
    v = cell.value_ns / (1e3 if unit == "µs" else 1e6)
    return f"{_sig3(v)} {unit}"


def _sig3(v: float) -> str:
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_ratio(a: Cell, b: Cell) -> str:
    if a.status != "ok" or b.status != "ok" or not a.value_ns or not b.value_ns:
        return "n/a"
    return f"{_sig3(a.value_ns / b.value_ns)}×"


def table_rows(results: dict[str, dict[str, Cell]], benches: list[Benchmark]) -> list[list[str]]:
    rows = []
    for b in benches:
        cells = results[b.name]
        rows.append(
            [
                b.description,
                fmt_value(cells["native"], b.unit),
                fmt_value(cells["pyvisor"], b.unit),
                fmt_value(cells["runsc"], b.unit),
                fmt_ratio(cells["pyvisor"], cells["native"]),
                fmt_ratio(cells["pyvisor"], cells["runsc"]),
            ]
        )
    return rows


HEADER = ["benchmark", "native", "pyvisor", "runsc", "pyvisor/native", "pyvisor/runsc"]


def print_table(rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("| --- |" + " ---: |" * (len(HEADER) - 1))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(x) for x in col) for col in zip(HEADER, *rows)]
    line = "  ".join("-" * w for w in widths)

    def fmt(r: list[str]) -> str:
        return "  ".join(
            x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths))
        )

    print(fmt(HEADER))
    print(line)
    for r in rows:
        print(fmt(r))


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark native vs pyvisor vs runsc (gVisor).",
        epilog="benchmarks: " + ", ".join(BENCHMARK_NAMES),
    )
    p.add_argument("--quick", action="store_true", help="fewer iterations (about 10x)")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this benchmark (repeatable, or comma-separated)",
    )
    p.add_argument(
        "--env",
        action="append",
        metavar="ENV",
        help="run only this environment: native, pyvisor, runsc (repeatable or comma-separated)",
    )
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--json", metavar="FILE", help="also write all results to FILE as JSON")
    p.add_argument("--no-pin", action="store_true", help="do not pin commands to one CPU")
    p.add_argument("--cpu", type=int, default=0, help="CPU to pin to (default 0)")
    p.add_argument(
        "--timeout",
        type=float,
        default=180,
        help="timeout in seconds for each command (default 180)",
    )
    p.add_argument(
        "--python",
        default=None,
        help="python for the `python3 -c pass` row (default: /usr/bin/python3)",
    )
    p.add_argument("--runsc", default=None, help="path to runsc (default: from PATH)")
    return p.parse_args(argv)


def _split(values: Optional[list[str]], allowed: list[str] | tuple[str, ...], what: str) -> list[str]:
    if not values:
        return list(allowed)
    chosen = [v for item in values for v in item.split(",") if v]
    for v in chosen:
        if v not in allowed:
            sys.exit(f"run.py: unknown {what} {v!r}; choose from {', '.join(allowed)}")
    return [v for v in allowed if v in chosen]


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    names = _split(args.only, BENCHMARK_NAMES, "benchmark")
    envs = _split(args.env, ENVIRONMENTS, "environment")
    benches = [b for b in BENCHMARKS if b.name in names]
    if not args.no_pin and shutil.which("taskset") is None:
        sys.exit("run.py: taskset not found (install util-linux or use --no-pin)")

    runsc = args.runsc or shutil.which("runsc")
    python = args.python or ("/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable)

    # Measure pyvisor as installed: byte-compiled (scripts/install.sh does the same).
    # Without .pyc files (PYTHONDONTWRITEBYTECODE=1) every start-up recompiles ~90 modules.
    subprocess.run([python, "-m", "compileall", "-q", os.path.join(REPO_ROOT, "pyvisor")],
                   stdout=subprocess.DEVNULL, check=False)
    workdir = tempfile.mkdtemp(prefix="pyvisor-bench-")
    try:
        os.chmod(workdir, 0o755)  # the sandboxes must be able to reach it
        microbench = compile_microbench(workdir)
        ctx = Context(args, workdir, microbench, python, runsc, envs)
        pin = "not pinned" if args.no_pin else f"pinned to CPU {args.cpu}"
        print(
            f"# {platform.node()} {platform.release()}, {os.cpu_count()} CPUs, {pin}"
            f"{', quick' if args.quick else ''}; runsc: {runsc or 'n/a'}",
            file=sys.stderr,
            flush=True,
        )

        results: dict[str, dict[str, Cell]] = {}
        started = time.perf_counter()
        for b in benches:
            results[b.name] = {}
            for env in ENVIRONMENTS:
                if env not in envs:
                    cell = Cell(status="n/a", error="not selected")
                else:
                    t0 = time.perf_counter()
                    cell = run_cell(ctx, b, env)
                    print(
                        f"# {b.name:<10} {env:<8} {fmt_value(cell, b.unit):>12}"
                        f"  ({time.perf_counter() - t0:.1f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                results[b.name][env] = cell
        elapsed = time.perf_counter() - started
        print(f"# total {elapsed:.1f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(file=sys.stderr, flush=True)
    print_table(table_rows(results, benches), args.markdown)
    sys.stdout.flush()

    if args.json:
        doc = {
            "host": {
                "node": platform.node(),
                "kernel": platform.release(),
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
            },
            "pinned_cpu": None if args.no_pin else args.cpu,
            "quick": args.quick,
            "runsc": runsc,
            "elapsed_s": elapsed,
            "benchmarks": {
                b.name: {
                    "description": b.description,
                    "kind": b.kind,
                    "unit": "ns per iteration" if b.kind == "micro" else "ns wall time (median)",
                    "results": {env: vars(c) for env, c in results[b.name].items()},
                }
                for b in benches
            },
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False)
            f.write("\n")

    return 0


if __name__ == "__main__":
    sys.exit(main())
