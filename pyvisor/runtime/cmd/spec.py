"""`spec [--bundle DIR] [--rootless]`: write a default config.json (runc's example)."""

from __future__ import annotations

import argparse
import json
import os

from pyvisor.runtime.errors import BootError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("spec", help="write a default config.json")
    p.add_argument("--bundle", "-b", default=".")
    p.add_argument("--rootless", action="store_true")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.spec import default_spec
    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise BootError("File config.json exists. Remove it first", 1)
    try:
        with open(path, "x") as f:
            json.dump(default_spec(None, args.rootless), f, indent="\t")
    except OSError as e:
        raise BootError(f"{path}: {e.strerror}", 1) from None
    return 0
