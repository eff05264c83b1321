"""`events [--stats] [--interval D] ID`: resource usage from the sandbox's cgroup, as runc
prints it ({"type": "stats", "id": ..., "data": {cpu, memory, pids}}); --stats prints once,
otherwise every interval until the container stops."""

from __future__ import annotations

import argparse
import json
import sys
import time

from pyvisor.runtime.errors import BootError


def _duration(text: str) -> float:
    units = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    for u in ("ms", "s", "m", "h"):
        if text.endswith(u) and text[:-len(u)].replace(".", "", 1).isdigit():
            return float(text[:-len(u)]) * units[u]
    if text.replace(".", "", 1).isdigit():
        return float(text)
    raise BootError(f"invalid --interval {text!r}", 1)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("events", help="resource usage statistics")
    p.add_argument("--stats", action="store_true", help="print once and exit")
    p.add_argument("--interval", default="5s")
    p.add_argument("id")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container
    interval = _duration(args.interval)
    if interval <= 0:
        raise BootError("--interval must be positive", 1)
    c = Container(args.root, args.id)
    while True:
        try:
            data = c.stats()
        except BootError:
            if args.stats:
                raise
            return 0          # the container stopped
        print(json.dumps({"type": "stats", "id": args.id, "data": data}))
        sys.stdout.flush()
        if args.stats:
            return 0
        time.sleep(interval)
