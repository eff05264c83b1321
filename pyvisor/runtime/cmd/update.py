"""`update ID [--memory M] [--pids-limit N] [--cpu-quota Q] [--cpu-period P] [-r FILE]`:
change the sandbox's limits (its cgroup, and the Sentry's task limit)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pyvisor.runtime.errors import BootError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("update", help="update a container's resource limits")
    p.add_argument("--resources", "-r", default="", help="linux.resources JSON ('-': stdin)")
    p.add_argument("--memory", default=None)
    p.add_argument("--pids-limit", dest="upd_pids", type=int, default=None)
    p.add_argument("--cpu-quota", type=int, default=None)
    p.add_argument("--cpu-period", type=int, default=None)
    p.add_argument("--cpu-share", "--cpu-shares", dest="cpu_shares", type=int, default=None)
    p.add_argument("--blkio-weight", type=int, default=None)
    for ignored in ("--memory-swap", "--memory-reservation", "--kernel-memory",
                    "--kernel-memory-tcp", "--cpu-rt-period",
                    "--cpu-rt-runtime", "--cpuset-cpus", "--cpuset-mems",
                    "--l3-cache-schema", "--mem-bw-schema"):
        p.add_argument(ignored, default=None, help=argparse.SUPPRESS)
    p.add_argument("id")


def _from_resources(text: str) -> dict[str, Any]:
    try:
        res = json.loads(text)
    except ValueError as e:
        raise BootError(f"update: invalid resources JSON: {e}", 1) from None
    if not isinstance(res, dict):
        raise BootError("update: resources must be a JSON object", 1)
    out: dict[str, Any] = {}
    mem, pids, cpu = res.get("memory") or {}, res.get("pids") or {}, res.get("cpu") or {}
    blkio = res.get("blockIO") or {}
    for key, v in (("memory", mem.get("limit")), ("pids", pids.get("limit")),
                   ("cpu_quota", cpu.get("quota")), ("cpu_period", cpu.get("period")),
                   ("cpu_shares", cpu.get("shares")), ("blkio_weight", blkio.get("weight"))):
        if v is not None:
            if not isinstance(v, int) or isinstance(v, bool):
                raise BootError(f"update: {key} must be an integer", 1)
            # 0 leaves a limit as it is (as runc: docker sends every field, unset ones 0).
            if v != 0:
                out[key] = v
    return out


def main(args: argparse.Namespace) -> int:
    from pyvisor.runtime.cgroup import parse_size
    from pyvisor.runtime.container import Container
    vals: dict[str, Any] = {}
    if args.resources:
        text = sys.stdin.read() if args.resources == "-" else _read(args.resources)
        vals = _from_resources(text)
    if args.memory is not None:
        try:
            vals["memory"] = parse_size(args.memory)
        except ValueError as e:
            raise BootError(f"update: bad --memory: {e}", 1) from None
    for key, v in (("pids", args.upd_pids), ("cpu_quota", args.cpu_quota),
                   ("cpu_period", args.cpu_period), ("cpu_shares", args.cpu_shares),
                   ("blkio_weight", args.blkio_weight)):
        if v is not None:
            vals[key] = v
    if vals.get("pids") is not None and vals["pids"] < 1:
        raise BootError("update: the pids limit must be positive", 1)
    if vals.get("blkio_weight") is not None and not 10 <= vals["blkio_weight"] <= 1000:
        raise BootError("update: the blkio weight must be from 10 to 1000", 1)
    if vals.get("cpu_shares") is not None and not 2 <= vals["cpu_shares"] <= 262144:
        raise BootError("update: the cpu shares must be from 2 to 262144", 1)
    Container(args.root, args.id).update(vals.get("memory"), vals.get("pids"),
                                         vals.get("cpu_quota"), vals.get("cpu_period"),
                                         vals.get("cpu_shares"), vals.get("blkio_weight"))
    return 0


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise BootError(f"update: {path}: {e.strerror}", 1) from None
