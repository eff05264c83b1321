"""`state ID`: the OCI state as JSON."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("state", help="print a container's state (JSON)")
    p.add_argument("id")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container
    print(json.dumps(Container(args.root, args.id).state(), indent=2))
    return 0
