#!/usr/bin/env python3
"""Measure pyvisor with gVisor's syscall test suite (issue #10's yardstick).

Given a directory of already-built gtest binaries from gVisor's
test/syscalls/linux (built outside this repository: see docs/syscall-suite.md),
run every case in three modes and compare:

  native   the host kernel, in fresh user/PID/UTS/IPC/mount/net namespaces
           (some tests rename the host or signal every process: never run them
           natively without the namespaces)
  pyvisor  `python3 -m pyvisor do -- BIN ...` from a pyvisor checkout
  runsc    gVisor's own runsc: `runsc --root TMP --network=none --platform=ptrace do BIN ...`

Usage:
  run.py run --bin-dir DIR [--modes native,pyvisor,runsc] [--only NAME ...]
             [--order FILE] [--out results.json] [--resume]
  run.py report results.json [--md out.md]

A shard runs up to --shard-size cases of one binary in one sandbox, with
--gtest_filter. Progress is read from gtest's output as it comes: a case
that prints nothing for --case-timeout seconds is a timeout, the shard is
killed, and the cases after it run in a new shard; a process that dies in a
case marks that case a crash and the rest run again. So a hang or a crash
costs one case, never the binary. Stdlib only.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

MODES = ("native", "pyvisor", "runsc")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What gVisor's bazel rules pass as GVISOR_PLATFORM_SUPPORT (test/runner/defs.bzl):
# native supports everything; sandboxes on ptrace have no 32-bit syscalls.
PLATFORM_SUPPORT = {
    "native": "32BIT:TRUE,ALIGNMENT_CHECK:TRUE,INT3:TRUE,MULTIPROCESS:TRUE,VSYSCALL:TRUE",
    "pyvisor": "32BIT:FALSE,ALIGNMENT_CHECK:TRUE,INT3:TRUE,MULTIPROCESS:TRUE,VSYSCALL:TRUE",
    "runsc": "32BIT:FALSE,ALIGNMENT_CHECK:TRUE,INT3:TRUE,MULTIPROCESS:TRUE,VSYSCALL:TRUE",
}

# Inside the namespaces: bring loopback up (gVisor's own native runner does the
# same), then run the test as a child of a shell so that it is not PID 1 (init
# ignores signals it has no handler for; the tests expect an ordinary process).
NATIVE_WRAPPER = 'ip link set lo up 2>/dev/null; "$@"; exit $?'

RE_RUN = re.compile(r"\[ RUN      \] (\S+)")
RE_OK = re.compile(r"\[       OK \] (\S+)")
RE_FAILED = re.compile(r"\[  FAILED  \] ([^\s,]+)")
RE_SKIPPED = re.compile(r"\[  SKIPPED \] (\S+)")

PASS, FAIL, SKIP, TIMEOUT, CRASH, ERROR, NOTRUN = (
    "pass", "fail", "skip", "timeout", "crash", "error", "notrun")


@dataclass
class CaseResult:
    status: str
    ms: int = 0
    msg: str = ""
    stderr: str = ""

    def to_json(self) -> dict:
        d = {"status": self.status, "ms": self.ms}
        if self.msg:
            d["msg"] = self.msg
        if self.stderr:
            d["stderr"] = self.stderr
        return d


@dataclass
class Options:
    bin_dir: str
    pyvisor: str
    runsc: str
    python: str
    shard_size: int
    case_timeout: float
    start_timeout: float
    tmp: str
    gvisor_env: bool
    nice: int
    max_timeouts: int
    verbose: bool


# -- commands per mode ------------------------------------------------------------


def mode_argv(mode: str, opts: Options, binary: str, args: list[str], runsc_root: str) -> list[str]:
    nice = ["nice", "-n", str(opts.nice)]
    if mode == "native":
        return nice + [opts.python, os.path.abspath(__file__), "_userns", "--",
                       "unshare", "--fork", "--pid", "--mount-proc",
                       "--uts", "--ipc", "--net", "--mount", "--",
                       "/bin/sh", "-c", NATIVE_WRAPPER, "sh", binary, *args]
    if mode == "pyvisor":
        return nice + [opts.python, "-m", "pyvisor", "do", "--", binary, *args]
    if mode == "runsc":
        return nice + [opts.runsc, "--root", runsc_root, "--network=none", "--platform=ptrace",
                       "do", binary, *args]
    raise ValueError(mode)


def mode_env(mode: str, opts: Options, tmpdir: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root" if os.getuid() == 0 else os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
        "TEST_TMPDIR": tmpdir,
        "GVISOR_PLATFORM_SUPPORT": PLATFORM_SUPPORT[mode],
        "YARDSTICK_RUNFILES_DIR": opts.bin_dir,
    }
    if mode == "pyvisor":
        env["PYTHONPATH"] = opts.pyvisor
    if opts.gvisor_env and mode != "native":
        env["TEST_ON_GVISOR"] = "ptrace"
    return env


# -- one shard --------------------------------------------------------------------


@dataclass
class ShardOutcome:
    results: dict[str, CaseResult] = field(default_factory=dict)
    started: bool = False          # at least one case began
    ended: str = "exit"            # exit | timeout | start-timeout
    rc: int | None = None
    stderr_tail: str = ""


def _child_limits() -> None:
    """Runs in the forked child before exec: the same fd limit in every mode, as
    high as we may (gVisor's CI runs in Docker with 1048576; pipe_test's
    PipeFdCount needs more than 66000)."""
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for lim in (1048576, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (lim, lim))
            return
        except (ValueError, OSError):
            continue


_ACTIVE: set[subprocess.Popen] = set()     # shards running now (their process groups are ours)
_ACTIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()      # set on SIGTERM: no new shard starts


def _on_term(signum, _frame) -> None:
    """Stopping the runner stops every shard it started, then exits."""
    _STOPPING.set()
    with _ACTIVE_LOCK:
        procs = list(_ACTIVE)
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    time.sleep(3)
    with _ACTIVE_LOCK:
        procs = list(_ACTIVE)
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    os._exit(128 + signum)


def _kill_group(proc: subprocess.Popen) -> None:
    """Stops the process group we made for this shard: TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _runsc_cleanup(opts: Options, root: str) -> None:
    """Deletes any container left in this shard's own runsc state directory."""
    if not os.path.isdir(root):
        return
    try:
        out = subprocess.run([opts.runsc, "--root", root, "list", "-quiet"], capture_output=True,
                             text=True, timeout=30).stdout
        for cid in out.split():
            subprocess.run([opts.runsc, "--root", root, "delete", "-force", cid],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass
    shutil.rmtree(root, ignore_errors=True)


def run_shard(mode: str, opts: Options, binary: str, cases: list[str],
              timeouts: dict[str, float] | None = None) -> ShardOutcome:
    """Runs `cases` of `binary` in one process (one sandbox). `timeouts` gives a
    case's own limit on silence (default --case-timeout)."""
    timeouts = timeouts or {}
    out = ShardOutcome()
    tmpdir = tempfile.mkdtemp(prefix=f"{mode}-", dir=opts.tmp)
    os.chmod(tmpdir, 0o777)
    runsc_root = tempfile.mkdtemp(prefix="runsc-root-", dir=opts.tmp) if mode == "runsc" else ""
    args = ["--gtest_color=no", "--gtest_filter=" + ":".join(cases)]
    argv = mode_argv(mode, opts, binary, args, runsc_root)
    with _ACTIVE_LOCK:
        if _STOPPING.is_set():
            raise SystemExit(1)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=mode_env(mode, opts, tmpdir),
                                cwd=tmpdir, start_new_session=True, preexec_fn=_child_limits)
        _ACTIVE.add(proc)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    bufs = {"out": b"", "err": b""}
    current: str | None = None
    cur_start = 0.0
    cur_lines: list[str] = []
    cur_err: list[str] = []
    stderr_all: list[str] = []
    last = time.monotonic()
    open_streams = 2

    def finish(name: str, status: str) -> None:
        nonlocal current
        msg = "\n".join(cur_lines)[-2000:]
        err = "\n".join(cur_err)[-2000:]
        out.results[name] = CaseResult(status, int((time.monotonic() - cur_start) * 1000), msg, err)
        current = None

    def line_out(line: str) -> None:
        nonlocal current, cur_start, cur_lines, cur_err, last
        m = RE_RUN.search(line)
        if m:
            if current is not None:      # a case that never ended: the process restarted?
                finish(current, CRASH)
            current, cur_start, cur_lines, cur_err = m.group(1), time.monotonic(), [], []
            out.started = True
            last = time.monotonic()
            return
        for rx, st in ((RE_OK, PASS), (RE_FAILED, FAIL), (RE_SKIPPED, SKIP)):
            m = rx.search(line)
            if m and current is not None and m.group(1) == current:
                finish(current, st)
                last = time.monotonic()
                return
        if current is not None and len(cur_lines) < 40:
            cur_lines.append(line[:400])

    def line_err(line: str) -> None:
        stderr_all.append(line[:400])
        if current is not None and len(cur_err) < 40:
            cur_err.append(line[:400])

    while open_streams:
        if current is not None:
            limit = timeouts.get(current, opts.case_timeout)
        elif out.started:
            limit = opts.case_timeout       # between cases (a test's global tear-down)
        else:
            limit = opts.start_timeout
        remaining = last + limit - time.monotonic()
        if remaining <= 0:
            out.ended = "timeout" if out.started else "start-timeout"
            _kill_group(proc)
            break
        for key, _ in sel.select(timeout=min(remaining, 5.0)):
            data = os.read(key.fileobj.fileno(), 65536)
            if not data:
                sel.unregister(key.fileobj)
                open_streams -= 1
                continue
            bufs[key.data] += data
            *lines, bufs[key.data] = bufs[key.data].split(b"\n")
            for raw in lines:
                (line_out if key.data == "out" else line_err)(raw.decode("utf-8", "replace"))
    for k, rest in bufs.items():
        if rest:
            (line_out if k == "out" else line_err)(rest.decode("utf-8", "replace"))
    try:
        out.rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out.rc = proc.returncode
    # Nothing of ours may outlive the shard (a daemonised test child, a sandbox).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    with _ACTIVE_LOCK:
        _ACTIVE.discard(proc)
    proc.stdout.close()
    proc.stderr.close()
    if current is not None:
        cur_lines.append(f"[yardstick] shard ended ({out.ended}, rc={out.rc}) during this case")
        finish(current, TIMEOUT if out.ended == "timeout" else CRASH)
    out.stderr_tail = "\n".join(stderr_all[-30:])[-3000:]
    if runsc_root:
        _runsc_cleanup(opts, runsc_root)
    shutil.rmtree(tmpdir, ignore_errors=True)
    return out


# -- one binary in one mode -------------------------------------------------------


def list_cases(opts: Options, binary: str) -> list[str]:
    """The binary's cases (--gtest_list_tests, run natively in the namespaces)."""
    argv = mode_argv("native", opts, binary, ["--gtest_list_tests"], "")
    with tempfile.TemporaryDirectory(dir=opts.tmp) as tmpdir:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                           env=mode_env("native", opts, tmpdir), cwd=tmpdir)
    cases, suite = [], None
    for line in p.stdout.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            suite = line.split("#")[0].strip()
            continue
        name = line.split("#")[0].strip()
        if suite is None or not name:
            continue
        full = suite + name
        if "DISABLED_" in full:
            continue
        cases.append(full)
    if p.returncode != 0 and not cases:
        raise RuntimeError(f"--gtest_list_tests failed (rc={p.returncode}): {p.stderr[-500:]}")
    return cases


def case_timeouts(opts: Options, native: dict | None) -> dict[str, float]:
    """In a sandbox, a case may be silent for 10x its native time plus 15 s (at
    most --case-timeout); a hang so costs seconds, not minutes."""
    if not native:
        return {}
    out = {}
    for c, r in native.get("cases", {}).items():
        if r["status"] in (PASS, FAIL, SKIP):
            out[c] = min(opts.case_timeout, 15.0 + 10.0 * r.get("ms", 0) / 1000.0)
    return out


def run_binary(mode: str, opts: Options, binary: str, cases: list[str], log,
               native: dict | None = None, previous: dict | None = None) -> dict:
    """Runs `cases` in `mode`. With `previous` (an earlier result of this mode), only
    its cases that were not run are run again, and merged in."""
    t0 = time.monotonic()
    limits = case_timeouts(opts, native) if mode != "native" else {}
    if previous:
        cases_all = cases
        cases = [c for c in cases if previous["cases"].get(c, {}).get("status") == NOTRUN]
    results: dict[str, CaseResult] = {}
    remaining = list(cases)
    remaining_at_start = list(cases)
    timeouts = 0
    dead_starts = 0
    shards = 0
    notes: list[str] = []
    while remaining:
        shard = remaining[: opts.shard_size]
        o = run_shard(mode, opts, binary, shard, limits)
        shards += 1
        results.update(o.results)
        if not o.started:
            # The sandbox (or the binary) failed before any case began.
            dead_starts += 1
            first = shard[0]
            results[first] = CaseResult(ERROR, 0, f"no case started ({o.ended}, rc={o.rc})",
                                        o.stderr_tail)
            if dead_starts >= 3:
                for c in remaining:
                    if c not in results:
                        results[c] = CaseResult(ERROR, 0, "not run: the sandbox failed to start "
                                                "three times in a row", o.stderr_tail)
                notes.append("gave up after three start failures")
                break
        else:
            dead_starts = 0
        if o.ended == "timeout":
            timeouts += 1
        remaining = [c for c in remaining if c not in results]
        if timeouts >= opts.max_timeouts and remaining:
            for c in remaining:
                results[c] = CaseResult(NOTRUN, 0, f"not run: {timeouts} timeouts in this binary")
            notes.append(f"stopped after {timeouts} timeouts")
            break
    wall = time.monotonic() - t0
    if previous:
        merged = {c: CaseResult(**{k: v for k, v in r.items()})
                  for c, r in previous["cases"].items()}
        merged.update(results)
        results, cases = merged, cases_all
        wall += previous.get("wall", 0)
        shards += previous.get("shards", 0)
        notes = previous.get("notes", []) + [f"re-ran {len(remaining_at_start)} not-run cases"]
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    log(f"{os.path.basename(binary):45s} {mode:8s} {wall:7.1f}s shards={shards} "
        + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return {"wall": round(wall, 1), "shards": shards, "notes": notes,
            "cases": {c: results[c].to_json() for c in cases if c in results}}


# -- driver -----------------------------------------------------------------------


def discover(opts: Options, only: list[str], order_file: str | None) -> list[str]:
    names = sorted(n for n in os.listdir(opts.bin_dir)
                   if n.endswith("_test") and os.access(os.path.join(opts.bin_dir, n), os.X_OK))
    if order_file:
        with open(order_file) as fp:
            wanted = [ln.strip() for ln in fp if ln.strip() and not ln.startswith("#")]
        rank = {n: i for i, n in enumerate(wanted)}
        names.sort(key=lambda n: (rank.get(n, len(rank)), n))
    if only:
        names = [n for n in names if any(re.fullmatch(p, n) for p in only)]
    return names


def host_meta(opts: Options, modes: list[str]) -> dict:
    def cmd(argv: list[str], cwd: str | None = None) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                  cwd=cwd).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "pyvisor": opts.pyvisor,
        "pyvisor_commit": cmd(["git", "-C", opts.pyvisor, "rev-parse", "--short", "HEAD"]),
        "runsc_version": cmd([opts.runsc, "--version"]).splitlines()[0] if "runsc" in modes else "",
        "modes": modes,
        "shard_size": opts.shard_size,
        "case_timeout": opts.case_timeout,
        "gvisor_env": opts.gvisor_env,
        "bin_dir": opts.bin_dir,
    }


def cmd_run(a: argparse.Namespace) -> int:
    opts = Options(bin_dir=os.path.abspath(a.bin_dir), pyvisor=os.path.abspath(a.pyvisor),
                   runsc=a.runsc, python=a.python, shard_size=a.shard_size,
                   case_timeout=a.case_timeout, start_timeout=a.start_timeout,
                   tmp=os.path.abspath(a.tmp), gvisor_env=a.gvisor_env, nice=a.nice,
                   max_timeouts=a.max_timeouts, verbose=a.verbose)
    os.makedirs(opts.tmp, exist_ok=True)
    os.chmod(opts.tmp, 0o777)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_term)
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            print(f"unknown mode {m!r}", file=sys.stderr)
            return 2
    meta = host_meta(opts, modes)
    data = {"meta": dict(meta, runs=[meta]), "binaries": {}}
    if a.resume and os.path.exists(a.out):
        with open(a.out) as fp:
            old = json.load(fp)
        data["binaries"] = old.get("binaries", {})
        # The first run's description stays; later runs are listed after it.
        om = old.get("meta", {})
        if om:
            runs = om.get("runs", [{k: v for k, v in om.items() if k != "runs"}])
            data["meta"] = dict(om, runs=runs + [meta],
                                modes=[m for m in MODES if m in set(om.get("modes", [])) | set(modes)])
    lock = threading.Lock()

    def log(msg: str) -> None:
        with lock:
            print(time.strftime("%H:%M:%S"), msg, flush=True)

    def save() -> None:
        with lock:
            tmp = a.out + ".tmp"
            with open(tmp, "w") as fp:
                json.dump(data, fp, indent=1, sort_keys=True)
            os.replace(tmp, a.out)

    names = discover(opts, a.only, a.order)
    log(f"{len(names)} binaries, modes {modes}")

    def one(name: str) -> None:
        binary = os.path.join(opts.bin_dir, name)
        entry = data["binaries"].setdefault(name, {"modes": {}})
        if "cases" not in entry:
            try:
                entry["cases"] = list_cases(opts, binary)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                entry["cases"] = []
                entry["list_error"] = str(e)[-500:]
                log(f"{name}: cannot list cases: {e}")
                save()
                return
        for mode in modes:
            have = entry["modes"].get(mode)
            native = entry["modes"].get("native") if mode != "native" else None
            if have and a.resume and mode not in a.redo.split(","):
                if a.retry_notrun and any(r["status"] == NOTRUN for r in have["cases"].values()):
                    entry["modes"][mode] = run_binary(mode, opts, binary, entry["cases"], log,
                                                      native, previous=have)
                    save()
                continue
            entry["modes"][mode] = run_binary(mode, opts, binary, entry["cases"], log, native)
            save()

    if a.jobs <= 1:
        for n in names:
            one(n)
    else:
        with ThreadPoolExecutor(a.jobs) as ex:
            list(ex.map(one, names))
    save()
    log(f"done: {a.out}")
    return 0


# -- report -----------------------------------------------------------------------

RE_ERRNO = re.compile(r"errno=(\d+)")
RE_INTERNAL = re.compile(r"pyvisor: internal error in syscall (\w+)|Traceback \(most recent")


RE_CALL = [re.compile(r"Value of: (?:RetryEINTR\((\w+)\)|(\w+))\("),
           re.compile(r"errno=\d+ [^)]*\) (\w+)")]


def failing_call(msg: str) -> str:
    """The call a gtest failure message names first (best effort)."""
    for rx in RE_CALL:
        m = rx.search(msg)
        if m:
            return next(g for g in m.groups() if g)
    return ""


def classify(r: dict) -> str:
    """The cause of a sandbox failure, coarsely, from gtest's message and stderr."""
    st, msg, err = r["status"], r.get("msg", ""), r.get("stderr", "")
    m = RE_INTERNAL.search(err) or RE_INTERNAL.search(msg)
    if m:
        return "Sentry internal error" + (f" in {m.group(1)}" if m.group(1) else "")
    if st == ERROR:
        return "sandbox failed to start / binary did not run"
    if st == TIMEOUT:
        return "hang (case timeout)"
    if st == NOTRUN:
        return "not run (the binary was given up after repeated hangs)"
    if st == CRASH:
        return "test process died (crash, signal or exit)"
    if st == SKIP:
        return "skipped in the sandbox (feature reported absent)"
    errs = RE_ERRNO.findall(msg)
    if "38" in errs or "Function not implemented" in msg:
        return "ENOSYS (syscall or operation not implemented)"
    if "97" in errs:
        return "EAFNOSUPPORT (no such socket family: IPv4/IPv6, netlink, packet)"
    if "95" in errs or "Operation not supported" in msg:
        return "EOPNOTSUPP"
    if errs:
        e = int(errs[0])
        return f"unexpected errno {errno.errorcode.get(e, e)}"
    return "wrong result (value/state differs from Linux)"


def summarize(data: dict) -> dict:
    bins = data["binaries"]
    modes = data["meta"].get("modes", list(MODES))
    rows = []
    tot = {"cases": 0, **{m: 0 for m in modes}, **{f"{m}_ran": 0 for m in modes}}
    causes: dict[str, list[tuple[str, str, str]]] = {}
    enosys_calls: dict[str, int] = {}
    runsc_causes: dict[str, int] = {}
    for name in sorted(bins):
        e = bins[name]
        cases = e.get("cases", [])
        row = {"name": name, "cases": len(cases), "list_error": e.get("list_error", "")}
        for m in modes:
            res = e.get("modes", {}).get(m)
            if res is None:
                row[m] = None
                continue
            row[m] = sum(1 for c in res["cases"].values() if c["status"] == PASS)
            row[m + "_skip"] = sum(1 for c in res["cases"].values() if c["status"] == SKIP)
            tot[m] += row[m]
            tot[m + "_ran"] += len(cases)
        tot["cases"] += len(cases)
        rows.append(row)
        nat = e.get("modes", {}).get("native")
        for sb in ("pyvisor", "runsc"):
            pv = e.get("modes", {}).get(sb)
            if not nat or not pv:
                continue
            for c in cases:
                n, p = nat["cases"].get(c), pv["cases"].get(c)
                if not n or n["status"] != PASS or not p or p["status"] == PASS:
                    continue
                cause = classify(p)
                if sb == "pyvisor" and cause.startswith("ENOSYS"):
                    call = failing_call(p.get("msg", "")) or "?"
                    enosys_calls[call] = enosys_calls.get(call, 0) + 1
                if sb == "pyvisor":
                    first = (p.get("msg", "") or p.get("stderr", "")).strip().splitlines()
                    hint = next((ln for ln in first if "Failure" not in ln), "")[:160]
                    causes.setdefault(cause, []).append((name, c, hint))
                else:
                    runsc_causes[cause] = runsc_causes.get(cause, 0) + 1
    return {"rows": rows, "totals": tot, "causes": causes, "runsc_causes": runsc_causes,
            "enosys_calls": enosys_calls,
            "modes": modes}


def render_md(data: dict, s: dict, full: bool = True) -> str:
    meta, modes, tot = data["meta"], s["modes"], s["totals"]
    out = []
    out.append(f"Measured {meta.get('date', '')} on Linux {meta.get('kernel', '')}, "
               f"{meta.get('cpus', '')} CPUs; pyvisor {meta.get('pyvisor_commit', '')}; "
               f"{meta.get('runsc_version', '')}; shard size {meta.get('shard_size')}, "
               f"case timeout {meta.get('case_timeout')} s"
               f"{', TEST_ON_GVISOR set in sandboxes' if meta.get('gvisor_env') else ''}.\n")
    hdr = "| binary | cases | " + " | ".join(f"{m} pass" for m in modes) + " |"
    out.append(hdr)
    out.append("|" + "---|" * (2 + len(modes)))

    def cell(row, m):
        v = row.get(m)
        if v is None:
            return "–"
        sk = row.get(m + "_skip", 0)
        return f"{v}" + (f" (+{sk} skip)" if sk else "")
    for r in s["rows"]:
        if r["list_error"]:
            out.append(f"| {r['name']} | list failed | " + " | ".join("–" for _ in modes) + " |")
            continue
        out.append(f"| {r['name']} | {r['cases']} | " + " | ".join(cell(r, m) for m in modes) + " |")
    out.append(f"| **total** | **{tot['cases']}** | "
               + " | ".join(f"**{tot[m]}**" for m in modes) + " |")
    out.append("")
    if "native" in modes:
        nat = tot["native"]
        for m in modes:
            if m != "native" and nat:
                out.append(f"* {m}: {tot[m]} of {tot['cases']} cases pass "
                           f"({100.0 * tot[m] / max(1, tot['cases']):.1f}%; native passes {nat}).")
    out.append("")
    causes = s["causes"]
    if causes:
        out.append("### pyvisor failures of cases that pass natively, by cause\n")
        out.append("| cause | cases |")
        out.append("|---|---|")
        for cause, items in sorted(causes.items(), key=lambda kv: -len(kv[1])):
            out.append(f"| {cause} | {len(items)} |")
        out.append("")
        if s["enosys_calls"]:
            out.append("ENOSYS in pyvisor, by the call the failing assertion names: "
                       + ", ".join(f"`{k}` {v}" for k, v in sorted(
                           s["enosys_calls"].items(), key=lambda kv: -kv[1])) + ".\n")
        if s["runsc_causes"]:
            out.append("For comparison, runsc's failures of natively passing cases: "
                       + ", ".join(f"{k}: {v}" for k, v in sorted(s["runsc_causes"].items(),
                                                                  key=lambda kv: -kv[1])) + ".\n")
        severe = ("Sentry", "hang", "died", "failed to start")
        if True:
            for cause, items in sorted(causes.items(), key=lambda kv: -len(kv[1])):
                if not full and not any(w in cause for w in severe):
                    continue
                out.append(f"#### {cause} ({len(items)})\n")
                per_bin: dict[str, list[tuple[str, str]]] = {}
                for b, c, h in items:
                    per_bin.setdefault(b, []).append((c, h))
                if cause.startswith("not run"):
                    out.append(", ".join(f"`{b}` {len(lst)}" for b, lst in sorted(per_bin.items()))
                               + "\n")
                    continue
                for b, lst in sorted(per_bin.items()):
                    out.append(f"* `{b}` ({len(lst)}): " + ", ".join(
                        f"`{c}`" for c, _ in lst[:12]) + (" ..." if len(lst) > 12 else ""))
                    hints = sorted({h for _, h in lst if h and not h.startswith(("[yardstick]",
                                                                               "not run"))})[:2]
                    for h in hints:
                        out.append(f"  * {h.replace('|', '/')}")
                out.append("")
    return "\n".join(out)


def cmd_report(a: argparse.Namespace) -> int:
    with open(a.results) as fp:
        data = json.load(fp)
    s = summarize(data)
    md = render_md(data, s, full=not a.brief)
    if a.md:
        with open(a.md, "w") as fp:
            fp.write(md + "\n")
    else:
        print(md)
    return 0


# -- native: a user namespace with many ids ----------------------------------------

USERNS_BASE = 100000     # host uid/gid of the namespace's root
USERNS_COUNT = 65536
CLONE_NEWUSER = 0x10000000


def userns_exec(argv: list[str]) -> int:
    """Runs argv as root of a new user namespace mapping ids 0..65535 to host ids
    100000..165535, so that the tests may switch between ids (setuid, chown) while
    holding no privilege over the host (no clock, no host-owned files, ...).
    `unshare --map-users` would need newuidmap and /etc/subuid; a privileged
    parent may write the maps itself."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r1)
            os.close(w2)
            if libc.unshare(CLONE_NEWUSER) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
            os.write(w1, b"u")
            if os.read(r2, 1) != b"m":
                os._exit(126)
            os.setresgid(0, 0, 0)
            os.setgroups([])
            os.setresuid(0, 0, 0)
            os.execvp(argv[0], argv)
        except OSError as e:
            print(f"userns: {e}", file=sys.stderr)
        os._exit(127)
    os.close(w1)
    os.close(r2)
    ok = os.read(r1, 1) == b"u"
    if ok:
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as fp:
                fp.write(f"0 {USERNS_BASE} {USERNS_COUNT}\n")
        os.write(w2, b"m")
    os.close(w2)
    # Forward what we are asked to stop with; the child is in our process group anyway.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: os.kill(pid, s))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            return 127
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["_userns", "--"]:
        return userns_exec(argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the binaries in the chosen modes")
    r.add_argument("--bin-dir", required=True, help="directory of built gtest binaries (*_test)")
    r.add_argument("--modes", default="native,pyvisor,runsc")
    r.add_argument("--only", nargs="*", default=[], help="regexps of binary names to run")
    r.add_argument("--order", default=None, help="file of binary names, run first in this order")
    r.add_argument("--out", default="syscall-suite-results.json")
    r.add_argument("--resume", action="store_true", help="skip (binary, mode) pairs already in --out")
    r.add_argument("--redo", default="", help="with --resume: modes to run again anyway")
    r.add_argument("--retry-notrun", action="store_true",
                   help="with --resume: run again the cases given up after repeated hangs")
    r.add_argument("--pyvisor", default=REPO, help="pyvisor checkout (default: this one)")
    r.add_argument("--python", default="/usr/bin/python3")
    r.add_argument("--runsc", default=shutil.which("runsc") or "runsc")
    r.add_argument("--shard-size", type=int, default=100)
    r.add_argument("--case-timeout", type=float, default=30.0,
                   help="seconds without gtest progress before a case counts as hung")
    r.add_argument("--start-timeout", type=float, default=60.0,
                   help="seconds for a shard to start its first case")
    r.add_argument("--max-timeouts", type=int, default=6,
                   help="timeouts per binary and mode before its other cases are given up")
    r.add_argument("--jobs", type=int, default=1, help="binaries run in parallel")
    r.add_argument("--nice", type=int, default=10)
    r.add_argument("--tmp", default=os.path.join(tempfile.gettempdir(), "syscall-suite"))
    r.add_argument("--gvisor-env", action="store_true",
                   help="set TEST_ON_GVISOR in the sandboxes (accept gVisor's documented "
                        "deviations, as gVisor's own CI does)")
    r.add_argument("--verbose", action="store_true")
    r.set_defaults(func=cmd_run)
    rp = sub.add_parser("report", help="Markdown table and failure causes from a results file")
    rp.add_argument("results")
    rp.add_argument("--md", default=None)
    rp.add_argument("--brief", action="store_true", help="totals and causes, no per-case lists")
    rp.set_defaults(func=cmd_report)
    a = p.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
