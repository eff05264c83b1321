#!/usr/bin/python3
"""Benchmark pyvisor against the host (native) and gVisor's runsc.

Every benchmark runs in each environment:

  native        the command as is
  pyvisor       python3 -m pyvisor do -- CMD          (PYTHONPATH = this repository;
                --network=sandbox: pyvisor's own stack, netstack; --platform=ptrace)
  pyvisor-systrap  python3 -m pyvisor --platform=systrap do -- CMD  (every row but
                the network ones)
  runsc         runsc --network=none --platform=ptrace do CMD   (optional: "n/a"
                when runsc is not on PATH; loopback is served by gVisor's netstack)

and the network rows also in

  pyvisor-host  python3 -m pyvisor do --network=host -- CMD     (hostinet)
  runsc-host    runsc --network=host --platform=ptrace run (a bundle made here, with
                the host's root read-only), inside `unshare -n` with lo up: runsc's
                hostinet on a network namespace of its own.  (`runsc do` with any
                network but none would add a veth pair, iptables rules and
                ip_forward=1 to the host's own namespace, so it is not used.)

and every command is prefixed with `taskset -c 0`, so the launcher and all it
starts (Sentry, Gofer, stubs, application) share CPU 0, unless --no-pin.

Rows:
  getppid      mean latency of syscall(SYS_getppid)             microbench
  clock        mean latency of clock_gettime(CLOCK_MONOTONIC)   microbench
  openclose    open("/etc/hostname") + close                    microbench
  forkwait     fork + child _exit(0) + waitpid                  microbench
  forkexec     fork + child execv("/bin/true") + waitpid         microbench
  tcprr        1-byte ping-pong over loopback TCP (round trip)  microbench   network
  tcpstream    loopback TCP throughput, MiB/s (64 KiB writes)   microbench   network
  tcpconnect   TCP connect+accept+close rate                    microbench   network
  iperf3       iperf3 -c 127.0.0.1 (one stream), MiB/s          servers.sh   network
  redisset     redis-benchmark -t set -c 10, requests/s         servers.sh   network
  redisget     redis-benchmark -t get -c 10, requests/s         servers.sh   network
  http         nginx + wrk -t1 -c10 (612-byte page), requests/s servers.sh   network
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
import socket
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
SERVERS_SH = os.path.join(BENCH_DIR, "programs", "servers.sh")

ENVIRONMENTS = ("native", "pyvisor", "pyvisor-systrap", "pyvisor-host", "runsc", "runsc-host")
NET_ENVS = ("native", "pyvisor", "pyvisor-host", "runsc", "runsc-host")
HOST_ENVS = ("pyvisor-host", "runsc-host")     # network rows only
RATES = ("MiB/s", "req/s", "conn/s")           # units shown as 1e9 / (ns per unit)

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
    "tcpconnect": ((20_000, 2_000), (2_000, 200)),
}
# Server rows (servers.sh): what each run is given, (native, sandbox) for full and quick.
SERVER_ARGS = {
    #             full                       quick
    "iperf3": ((["5"], ["5"]), (["2"], ["2"])),                       # seconds
    "redisset": ((["200000", "set"], ["20000", "set"]), (["20000", "set"], ["5000", "set"])),
    "redisget": ((["200000", "get"], ["20000", "get"]), (["20000", "get"], ["5000", "get"])),
    "http": ((["5"], ["5"]), (["2"], ["2"])),                         # seconds
}
STARTUP_REPEATS = (10, 3)  # full, quick; plus one untimed warm-up run
CPU2_PY = os.path.join(BENCH_DIR, "programs", "cpu2.py")
CPU2_LOOPS = (10_000_000, 2_000_000)   # full, quick: iterations of each process's loop


@dataclass
class Benchmark:
    name: str
    description: str
    unit: str  # "µs" or "ms"
    kind: str  # "micro" (microbench, ns/iter), "startup" (wall s), "server" (servers.sh
    #            rate), "fs" (fsbench.c) or "script" (the command prints ns on its last line)
    mode: str = ""  # microbench mode, or servers.sh mode
    argv: Callable[["Context"], list[str]] = lambda ctx: []
    net: bool = False  # a network row: also run with host networking


BENCHMARKS = [
    Benchmark("getppid", "getppid latency", "µs", "micro", mode="getppid"),
    Benchmark("clock", "clock_gettime latency", "µs", "micro", mode="clock"),
    Benchmark("openclose", "open+close /etc/hostname", "µs", "micro", mode="openclose"),
    Benchmark("forkwait", "fork+exit+wait", "µs", "micro", mode="forkwait"),
    Benchmark("forkexec", "fork+exec(/bin/true)+wait", "µs", "micro", mode="forkexec"),
    Benchmark("tcprr", "loopback TCP 1-byte ping-pong", "µs", "micro", mode="tcprr", net=True),
    Benchmark("tcpstream", "loopback TCP stream", "MiB/s", "micro", mode="tcpstream", net=True),
    Benchmark("tcpconnect", "TCP connect+accept+close", "conn/s", "micro", mode="tcpconnect",
              net=True),
    Benchmark("iperf3", "iperf3 loopback TCP", "MiB/s", "server", mode="iperf3", net=True),
    Benchmark("redisset", "redis-benchmark SET", "req/s", "server", mode="redis", net=True),
    Benchmark("redisget", "redis-benchmark GET", "req/s", "server", mode="redis", net=True),
    Benchmark("http", "nginx + wrk (HTTP)", "req/s", "server", mode="http", net=True),
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
    setup = f"mkdir -p {where} && " if place == "tmpfs" else ""
    clean = f"; rmdir {where}" if place == "tmpfs" else ""
    script = f"{setup}{binary} {bench.mode} {n} {where}; s=$?{clean}; exit $s"
    cmd, penv = wrap(ctx, env, ["/bin/sh", "-c", script])
    _, out = run_cmd(cmd, penv, ctx.args.timeout)
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
    bundles: int = 0


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


def wrap(ctx: Context, env: str, argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Returns the command that runs argv in env, and its environment."""
    penv = dict(os.environ)
    pin = [] if ctx.args.no_pin else ["taskset", "-c", str(ctx.args.cpu)]
    if env == "native":
        return pin + argv, penv
    if env in ("pyvisor", "pyvisor-host", "pyvisor-systrap"):
        old = penv.get("PYTHONPATH")
        penv["PYTHONPATH"] = REPO_ROOT + (os.pathsep + old if old else "")
        penv.pop("PYVISOR_PLATFORM", None)
        net = ["--network=host"] if env == "pyvisor-host" else []
        plat = "systrap" if env == "pyvisor-systrap" else "ptrace"
        return pin + [sys.executable, "-m", "pyvisor", f"--platform={plat}", "do", *net, "--",
                      *argv], penv
    assert ctx.runsc is not None
    if env == "runsc":
        return pin + [ctx.runsc, "--network=none", "--platform=ptrace", "do", *argv], penv
    if env == "runsc-host":
        bundle = runsc_bundle(ctx, argv)
        cid = os.path.basename(bundle)
        return pin + ["unshare", "-n", "/bin/sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                      ctx.runsc, f"--root={ctx.workdir}/runsc-state", "--network=host",
                      "--platform=ptrace", "run", "--bundle", bundle, cid], penv
    raise ValueError(env)


def runsc_bundle(ctx: Context, argv: list[str]) -> str:
    """An OCI bundle for `runsc run`: the host's root read-only (as `runsc do`), a tmpfs
    /tmp, this run's work directory and bench/ bound at their own paths, root's
    capabilities (nginx changes user), and argv run in bench/."""
    ctx.bundles += 1
    bundle = os.path.join(ctx.workdir, f"bench-{os.getpid()}-{ctx.bundles}")
    os.mkdir(bundle)
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID",
            "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_RESOURCE"]
    spec = {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": argv,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME=/root"],
            "cwd": BENCH_DIR,
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}],
        },
        "root": {"path": "/", "readonly": True},
        "hostname": "runsc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
            {"destination": ctx.workdir, "type": "bind", "source": ctx.workdir,
             "options": ["rbind", "ro"]},
            {"destination": BENCH_DIR, "type": "bind", "source": BENCH_DIR,
             "options": ["rbind", "ro"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")]},
    }
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return bundle


def free_port() -> int:
    """A TCP port free on the host's loopback (the host-networking runs bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    cmd, penv = wrap(ctx, env, [ctx.microbench, bench.mode, str(n)])
    _, out = run_cmd(cmd, penv, ctx.args.timeout)
    lines = out.strip().splitlines()
    try:
        value = float(lines[-1])
    except (IndexError, ValueError):
        raise RunError(f"unexpected microbench output: {out[-500:]!r}")
    return Cell(value_ns=value, samples_ns=[value], iterations=n)


def run_server(ctx: Context, bench: Benchmark, env: str) -> Cell:
    """servers.sh MODE PORT ARGS: its last line is a rate (per second); the cell keeps
    ns per unit (per request, per MiB), like the microbench rows."""
    full, quick = SERVER_ARGS[bench.name]
    native_a, sandbox_a = quick if ctx.args.quick else full
    extra = native_a if env == "native" else sandbox_a
    cmd, penv = wrap(ctx, env, ["/bin/sh", SERVERS_SH, bench.mode, str(free_port()), *extra])
    _, out = run_cmd(cmd, penv, ctx.args.timeout)
    try:
        rate = float(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RunError(f"unexpected servers.sh output: {out[-500:]!r}")
    if rate <= 0:
        raise RunError(f"servers.sh reported {rate}")
    n = int(extra[0]) if bench.mode == "redis" else 0
    return Cell(value_ns=1e9 / rate, samples_ns=[1e9 / rate], iterations=n)


def run_startup(ctx: Context, bench: Benchmark, env: str) -> Cell:
    repeats = STARTUP_REPEATS[1 if ctx.args.quick else 0]
    cmd, penv = wrap(ctx, env, bench.argv(ctx))
    run_cmd(cmd, penv, ctx.args.timeout)  # warm-up: page cache, runsc's first start
    samples = [run_cmd(cmd, penv, ctx.args.timeout)[0] * 1e9 for _ in range(repeats)]
    return Cell(value_ns=statistics.median(samples), samples_ns=samples, iterations=repeats)


def run_script(ctx: Context, bench: Benchmark, env: str) -> Cell:
    repeats = STARTUP_REPEATS[1 if ctx.args.quick else 0] // 2 + 1
    cmd, penv = wrap(ctx, env, bench.argv(ctx))
    samples = []
    for _ in range(repeats):
        _, out = run_cmd(cmd, penv, ctx.args.timeout)
        try:
            samples.append(float(out.strip().splitlines()[-1]))
        except (IndexError, ValueError):
            raise RunError(f"unexpected output: {out[-500:]!r}")
    return Cell(value_ns=statistics.median(samples), samples_ns=samples, iterations=repeats)


def run_cell(ctx: Context, bench: Benchmark, env: str) -> Cell:
    if env in HOST_ENVS and not bench.net:
        return Cell(status="n/a", error="not a network benchmark")
    if env == "pyvisor-systrap" and bench.net:
        return Cell(status="n/a", error="network rows run on ptrace only")
    if env.startswith("runsc") and ctx.runsc is None:
        return Cell(status="n/a", error="runsc not on PATH")
    if ctx.timeouts.get(env, 0) >= 2:
        return Cell(status="skipped", error=f"{env} timed out twice; not run")
    try:
        if bench.kind == "micro":
            return run_micro(ctx, bench, env)
        if bench.kind == "script":
            return run_script(ctx, bench, env)
        if bench.kind == "server":
            return run_server(ctx, bench, env)
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
    if unit in RATES:            # value_ns is ns per MiB, request or connection
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
        if b.net:
            continue
        cells = results[b.name]
        rows.append(
            [
                b.description,
                fmt_value(cells["native"], b.unit),
                fmt_value(cells["pyvisor"], b.unit),
                fmt_value(cells["pyvisor-systrap"], b.unit),
                fmt_value(cells["runsc"], b.unit),
                fmt_ratio(cells["pyvisor"], cells["native"]),
                fmt_ratio(cells["pyvisor"], cells["runsc"]),
                fmt_ratio(cells["pyvisor-systrap"], cells["runsc"]),
            ]
        )
    return rows


HEADER = ["benchmark", "native", "pyvisor", "pyvisor-systrap", "runsc", "pyvisor/native",
          "pyvisor/runsc", "systrap/runsc"]
NET_HEADER = ["network benchmark", "native", "pyvisor", "pyvisor-host", "runsc", "runsc-host",
              "pyvisor/runsc", "pyvisor-host/runsc-host"]


def net_table_rows(results: dict[str, dict[str, Cell]],
                   benches: list[Benchmark]) -> list[list[str]]:
    """The network rows in all five environments.  Ratios are of costs (time per round
    trip, MiB, request or connection), as in the other table: above 1, pyvisor is slower."""
    rows = []
    for b in benches:
        if not b.net:
            continue
        c = results[b.name]
        rows.append([b.description, *(fmt_value(c[e], b.unit) for e in NET_ENVS),
                     fmt_ratio(c["pyvisor"], c["runsc"]),
                     fmt_ratio(c["pyvisor-host"], c["runsc-host"])])
    return rows


def print_table(rows: list[list[str]], markdown: bool, header: list[str] = HEADER) -> None:
    if not rows:
        return
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("| --- |" + " ---: |" * (len(header) - 1))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    line = "  ".join("-" * w for w in widths)

    def fmt(r: list[str]) -> str:
        return "  ".join(
            x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths))
        )

    print(fmt(header))
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
        help="run only this environment: native, pyvisor, pyvisor-systrap, pyvisor-host, "
        "runsc, runsc-host "
        "(repeatable or comma-separated)",
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
    subprocess.run([python, "-m", "pyvisor.runtime.modcache"], cwd=REPO_ROOT, check=False)
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
    net_rows = net_table_rows(results, benches)
    if net_rows and any(not b.net for b in benches):
        print()
    print_table(net_rows, args.markdown, NET_HEADER)
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
                    "unit": {"micro": "ns per iteration", "server": "ns per request or MiB"}
                    .get(b.kind, "ns wall time (median)"),
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
