#!/usr/bin/python3
"""Container start-up through the real engines: pyvisor vs runc vs runsc.

Rows (each the median wall time of N runs after one untimed warm-up):

  podman   podman run --rm --network none IMG /bin/true
  docker   docker run --rm --network none --runtime=R IMG /bin/true
  oci      the runtime's own verbs, as an engine calls them, on a busybox bundle whose
           init is /bin/true: `create`, `start`, `state` (of the stopped container)
           and `delete`, one row each (--engines oci; no engine involved)

Columns: the OCI runtime the engine drives (runc, pyvisor, runsc), then the
ratios pyvisor/runc and pyvisor/runsc.  Everything runs on this machine in one
invocation, with the engines' state of their own under a temp dir, as the tests
run them (tests/runtime/engines.py: podman with --root/--runroot/--tmpdir and the
vfs driver; a dockerd of its own with its own data root, exec root and socket,
no host networking changes).  Each runtime is a launcher script with a --root
of its own; the image is the tests' busybox-static tree (`podman import`,
`docker import`).  Unlike bench/run.py, nothing is pinned: an engine, its
daemon and shim and the runtime all run where the scheduler puts them, as in use.

    /usr/bin/python3 bench/startup.py [--runs 5] [--engines podman,docker] [--markdown]

See bench/README.md ("Engines").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "runtime"))

from engines import (EngineHostDirs, busybox_tar, kill_leftovers,  # noqa: E402
                     stop_process, unmount_under, wait_for_socket, write_launcher)

RUNTIMES = ("runc", "pyvisor", "runsc")
IMAGE = "localhost/pv-bench:latest"


def launcher(base: Path, runtime: str) -> Optional[Path]:
    """A script running `runtime` with a --root of its own (None: not installed)."""
    root = base / f"state-{runtime}"
    if runtime == "pyvisor":
        return write_launcher(base / "pyvisor-launcher", "--root", str(root))
    exe = shutil.which(runtime)
    if exe is None:
        return None
    # runsc needs --network=none when the engine gives it no network namespace of
    # its own to take over (podman's and docker's --network none).
    flags = " --network=none" if runtime == "runsc" else ""
    path = base / f"{runtime}-launcher"
    path.write_text(f"#!/bin/sh\nexec {exe} --root {root}{flags} \"$@\"\n")
    path.chmod(0o755)
    return path


def timed(cmd: list[str], runs: int, timeout: float) -> tuple[Optional[float], str]:
    """Median wall time (s) of `runs` runs after a warm-up, or (None, why)."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            return None, (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        if i:
            times.append(dt)
    return statistics.median(times), ""


def bench_podman(base: Path, runs: int, timeout: float) -> dict[str, tuple[Optional[float], str]]:
    if shutil.which("podman") is None:
        return {rt: (None, "podman not installed") for rt in RUNTIMES}
    pbase = base / "pm"
    pbase.mkdir()
    common = ["podman", "--root", str(pbase / "storage"), "--runroot", str(pbase / "run"),
              "--tmpdir", str(pbase / "tmp"), "--storage-driver", "vfs",
              "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    out: dict[str, tuple[Optional[float], str]] = {}
    try:
        r = subprocess.run([*common, "import", str(busybox_tar(pbase)), IMAGE],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            return {rt: (None, r.stderr.strip()[-200:]) for rt in RUNTIMES}
        for rt in RUNTIMES:
            exe = launcher(pbase, rt)
            if exe is None:
                out[rt] = (None, f"{rt} not installed")
                continue
            # --ulimit: podman's default nofile/nproc are above this host's hard limits, which
            # runc may not raise here (no CAP_SYS_RESOURCE); the same for every runtime.
            out[rt] = timed([*common, "--runtime", str(exe), "run", "--rm", "--network",
                             "none", "--ipc", "host", "--ulimit", "nofile=1024:1024", "--ulimit",
                             "nproc=4096:4096", IMAGE,
                             "/bin/true"], runs, timeout)
    finally:
        subprocess.run([*common, "rm", "--all", "--force", "--time", "0"],
                       capture_output=True, timeout=timeout)
        kill_leftovers(pbase)
        unmount_under(pbase)
    return out


def bench_docker(base: Path, runs: int, timeout: float) -> dict[str, tuple[Optional[float], str]]:
    if shutil.which("dockerd") is None or shutil.which("containerd") is None:
        return {rt: (None, "docker not installed") for rt in RUNTIMES}
    host_dirs = EngineHostDirs("/run/docker/plugins", "/run/docker", "/run/containerd/s",
                               "/run/containerd")
    dbase = base / "dk"
    dbase.mkdir()
    runtimes = {}
    for rt in ("pyvisor", "runsc"):
        exe = launcher(dbase, rt)
        if exe is not None:
            runtimes[f"bench-{rt}"] = {"path": str(exe)}
    config = dbase / "daemon.json"
    config.write_text(json.dumps({"runtimes": runtimes,
                                  "deprecated-key-path": str(dbase / "key.json")}))
    log = dbase / "dockerd.log"
    sock = dbase / "docker.sock"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            ["dockerd", "--config-file", str(config), "--data-root", str(dbase / "data"),
             "--exec-root", str(dbase / "exec"), "--pidfile", str(dbase / "docker.pid"),
             "-H", f"unix://{sock}", "--storage-driver", "vfs", "--iptables=false",
             "--ip-masq=false", "--ip-forward=false", "--bridge=none",
             "--userland-proxy=false", "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    client = ["docker", "--host", f"unix://{sock}"]
    out: dict[str, tuple[Optional[float], str]] = {}
    try:
        wait_for_socket(sock, proc, log)
        r = subprocess.run([*client, "import", str(busybox_tar(dbase)), IMAGE],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            return {rt: (None, r.stderr.strip()[-200:]) for rt in RUNTIMES}
        for rt in RUNTIMES:
            name = "runc" if rt == "runc" else f"bench-{rt}"
            if rt != "runc" and name not in runtimes:
                out[rt] = (None, f"{rt} not installed")
                continue
            out[rt] = timed([*client, "run", "--rm", f"--runtime={name}", "--network", "none",
                             IMAGE, "/bin/true"], runs, timeout)
    finally:
        ids = subprocess.run([*client, "ps", "-aq"], capture_output=True, text=True).stdout
        if ids.split():
            subprocess.run([*client, "rm", "--force", *ids.split()], capture_output=True)
        stop_process(proc.pid, timeout=30)
        kill_leftovers(dbase)
        unmount_under(dbase)
        host_dirs.remove()
    return out


def _oci_bundle(base: Path) -> Path:
    """A busybox bundle every runtime accepts; its init is /bin/true."""
    from engines import busybox_rootfs
    bundle = base / "oci-bundle"
    busybox_rootfs(bundle / "rootfs")
    for d in ("proc", "dev", "sys", "tmp", "etc"):
        (bundle / "rootfs" / d).mkdir(exist_ok=True)
    config = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
                    "env": ["PATH=/bin"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "bench",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts",
                                                        "network")]},
    }
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


OCI_VERBS = ("create", "start", "state", "delete")


def bench_oci(base: Path, runs: int,
              timeout: float) -> dict[str, dict[str, tuple[Optional[float], str]]]:
    """The runtimes' create/start/state/delete, each timed alone (median of `runs` after a
    warm-up).  Between start and state the init (/bin/true) is left to exit: state and
    delete see a stopped container, as an engine's `run --rm` does."""
    obase = base / "oci"
    obase.mkdir()
    bundle = _oci_bundle(obase)
    rows: dict[str, dict[str, tuple[Optional[float], str]]] = {f"oci {v}": {} for v in OCI_VERBS}
    for rt in RUNTIMES:
        exe = launcher(obase, rt)
        if exe is None:
            for v in OCI_VERBS:
                rows[f"oci {v}"][rt] = (None, f"{rt} not installed")
            continue
        times: dict[str, list[float]] = {v: [] for v in OCI_VERBS}
        err = ""
        for i in range(runs + 1):
            cid = f"bench-{rt}-{i}"
            for verb in OCI_VERBS:
                if verb == "state":      # the init has exited: wait for `stopped`, untimed
                    deadline = time.monotonic() + timeout
                    while time.monotonic() < deadline:
                        r = subprocess.run([str(exe), "state", cid], capture_output=True,
                                           text=True, timeout=timeout)
                        if r.returncode != 0 or '"stopped"' in r.stdout:
                            break
                        time.sleep(0.01)
                argv = [str(exe), verb, *(["--bundle", str(bundle)] if verb == "create"
                                          else []), cid]
                with tempfile.TemporaryFile() as errf:
                    t0 = time.perf_counter()
                    # The container's stdio is the runtime's: no pipe, or `create` would
                    # seem to last until the container is deleted.
                    r2 = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=errf,
                                        timeout=timeout)
                    dt = time.perf_counter() - t0
                    errf.seek(0)
                    why = errf.read().decode(errors="replace").strip()
                if r2.returncode != 0:
                    err = f"{verb}: " + ((why.splitlines() or [f"exit {r2.returncode}"])[-1])
                    subprocess.run([str(exe), "delete", "--force", cid], capture_output=True,
                                   timeout=timeout)
                    break
                if i:
                    times[verb].append(dt)
            if err:
                break
        for v in OCI_VERBS:
            rows[f"oci {v}"][rt] = (statistics.median(times[v]), "") if not err else (None, err)
    kill_leftovers(obase)
    return rows


BENCHES: dict[str, Callable[[Path, int, float], dict[str, tuple[Optional[float], str]]]] = {
    "podman": bench_podman, "docker": bench_docker}


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs per cell (median)")
    p.add_argument("--engines", default="podman,docker")
    p.add_argument("--timeout", type=float, default=180)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("startup.py: run as root (the engines need it)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="pvbe-", dir="/tmp"))     # short: socket paths
    base.chmod(0o755)
    results: dict[str, dict[str, tuple[Optional[float], str]]] = {}
    try:
        for name in args.engines.split(","):
            if name == "oci":
                results.update(bench_oci(base, args.runs, args.timeout))
            else:
                results[name] = BENCHES[name](base, args.runs, args.timeout)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    header = ["engine: run --rm IMG /bin/true (oci: the verb)", *RUNTIMES, "pyvisor/runc",
              "pyvisor/runsc"]
    rows = []
    for name, cells in results.items():
        vals = {rt: cells.get(rt, (None, ""))[0] for rt in RUNTIMES}
        rows.append([name, *(f"{v * 1000:.0f} ms" if v is not None else "n/a"
                             for v in vals.values()),
                     _ratio(vals["pyvisor"], vals["runc"]), _ratio(vals["pyvisor"], vals["runsc"])])
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + " --- |" * len(header))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for r in [header, *rows]:
            print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    for name, cells in results.items():
        for rt, (v, why) in cells.items():
            if v is None and why:
                print(f"note: {name}/{rt}: {why}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {n: {rt: {"seconds": v, "error": why} for rt, (v, why) in c.items()}
             for n, c in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
