"""`features`: what this runtime supports, as OCI features JSON."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub.add_parser("features", help="print the supported features (JSON)")


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.spec import features
    print(json.dumps(features(), indent=4))
    return 0
