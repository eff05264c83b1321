"""`state ID`: the OCI state as JSON."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("state", help="print a container's state (JSON)")
    p.add_argument("id")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.state import oci_state
    print(json.dumps(oci_state(args.root, args.id), indent=2))
    return 0
