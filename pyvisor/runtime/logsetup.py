"""Where pyvisor's log records go: the command line's --log, --debug-log, --log-format
and --debug, applied in the launcher (cli.py) and, the same way, in a Sentry forked
before they were parsed (prefork.py)."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass

from pyvisor.runtime.errors import BootError


@dataclass(frozen=True)
class LogSetup:
    """The logging flags of one command line."""

    debug: bool = False
    paths: tuple[str, ...] = ()        # log files, appended to; none: stderr
    json_format: bool = False


class JSONFormatter(logging.Formatter):
    """logrus-style JSON lines, as runc writes with --log-format json (engines parse them)."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        return json.dumps({"level": record.levelname.lower(), "msg": record.getMessage(),
                           "time": t})


def configure(setup: LogSetup) -> None:
    """Sends this process's log records where `setup` says; a log file that cannot be
    opened is a BootError (one line)."""
    handlers: list[logging.Handler] = []
    for path in setup.paths:
        try:
            handlers.append(logging.FileHandler(path))
        except (OSError, ValueError) as e:
            raise BootError(f"log file {path!r}: {getattr(e, 'strerror', None) or e}",
                            125) from None
    if not handlers:
        handlers.append(logging.StreamHandler(sys.stderr))
    fmt: logging.Formatter = JSONFormatter() if setup.json_format else \
        logging.Formatter("pyvisor %(levelname)s %(name)s: %(message)s")
    for h in handlers:
        h.setFormatter(fmt)
    logging.basicConfig(level=logging.DEBUG if setup.debug else logging.WARNING,
                        handlers=handlers, force=True)
