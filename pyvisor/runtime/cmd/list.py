"""`list [--format table|json] [-q]`: the containers under --root (runc's columns)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("list", aliases=["ls"], help="list containers")
    p.add_argument("--format", "-f", default="table", choices=["table", "json"])
    p.add_argument("--quiet", "-q", action="store_true", help="ids only")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import list_containers
    states = list_containers(args.root)
    if args.quiet:
        for s in states:
            print(s["id"])
        return 0
    if args.format == "json":
        print(json.dumps(states or None))       # runc prints null for none
        return 0
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
             for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)) + "   " + r[5])
    return 0
