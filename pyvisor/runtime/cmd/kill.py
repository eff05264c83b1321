"""`kill ID [SIGNAL] [--all]`: signal the init (or every process)."""

from __future__ import annotations

import argparse

from pyvisor.runtime.cmd.common import parse_signal


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("kill", help="send a signal to a container's init")
    p.add_argument("--all", "-a", action="store_true", help="every process of the container")
    p.add_argument("id")
    p.add_argument("signal", nargs="?", default="SIGTERM")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container
    sig = parse_signal(args.signal)
    Container(args.root, args.id).kill(sig, args.all)
    return 0
