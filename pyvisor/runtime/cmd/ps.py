"""`ps ID [--format table|json]`: the container's processes.

The table lists them as the sandbox sees them (sandbox pids and command lines, as
runsc's ps).  `--format json` is runc's: a JSON array of host pids (what the containerd
shim parses, for `docker top` and `ctr task ps`): those of the container's own
processes, each one's stub, named after its program on the host (container.py
host_pids)."""

from __future__ import annotations

import argparse
import json
import time


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ps", help="list the processes of a container")
    p.add_argument("--format", "-f", default="table", choices=["table", "json"])
    p.add_argument("id")
    p.add_argument("ps_args", nargs=argparse.REMAINDER, help="ignored (runc passes them to ps)")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container
    if args.format == "json":
        print(json.dumps(Container(args.root, args.id).host_pids()))
        return 0
    procs = Container(args.root, args.id).processes()
    print(f"{'UID':<8} {'PID':>6} {'PPID':>6} {'C':>2} {'STIME':<6} {'STAT':<4} CMD")
    for p in procs:
        print(f"{p['uid']:<8} {p['pid']:>6} {p['ppid']:>6} {0:>2} {_stime(p['started']):<6} "
              f"{p['state']:<4} {' '.join(p['args']) or p['comm']}")
    return 0


def _stime(started: float) -> str:
    return time.strftime("%H:%M", time.localtime(started))
