"""`syscalls`: the syscall table: supported, partly supported, refused, and why."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub.add_parser("syscalls", help="list the syscall table: supported, partial, refused")


def main(args: argparse.Namespace) -> int:
    from pyvisor.abi.linux.sysno_amd64 import Sysno
    from pyvisor.sentry.syscalls.linux.table_amd64 import AMD64
    counts: dict[str, int] = {}
    for nr in sorted(AMD64.entries):
        e = AMD64.entries[nr]
        counts[e.status] = counts.get(e.status, 0) + 1
        note = f"  ({e.note})" if e.note else ""
        print(f"{Sysno(nr).name:24} {e.status:9}{note}")
    known = len(Sysno)
    print(f"# {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}; "
          f"{known - len(AMD64.entries)} others: ENOSYS")
    return 0
