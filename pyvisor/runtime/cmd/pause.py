"""`pause ID` / `resume ID`: freeze and thaw the whole sandbox (its cgroup's freezer)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub.add_parser("pause", help="freeze a container").add_argument("id")
    sub.add_parser("resume", help="thaw a paused container").add_argument("id")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.container import Container
    c = Container(args.root, args.id)
    if args.verb == "pause":
        c.pause()
    else:
        c.resume()
    return 0
