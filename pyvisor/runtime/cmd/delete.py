"""`delete [--force] ID`: remove a stopped (or, with --force, any) container: its
processes, cgroups and state.  runc: a created container is deleted without --force;
with --force an unknown id is not an error."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("delete", help="remove a container's state, killing what is left of it")
    p.add_argument("--force", "-f", action="store_true", help="kill it if it still runs")
    p.add_argument("id")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container
    Container(args.root, args.id).delete(args.force)
    return 0
