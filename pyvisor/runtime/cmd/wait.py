"""`wait ID`: wait for the init to exit; print runsc's JSON and exit with its code."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("wait", help="wait for a container's init to exit")
    p.add_argument("id")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container
    code = Container(args.root, args.id).wait()
    print(json.dumps({"id": args.id, "exitStatus": code}))
    return 0
