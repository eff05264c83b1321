"""`start ID`: the created container's init runs."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("start", help="start a created container")
    p.add_argument("id")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container
    Container(args.root, args.id).start()
    return 0
