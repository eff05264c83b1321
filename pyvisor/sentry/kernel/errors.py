"""Moved to pyvisor/sentry/errors.py (below vfs and mm, so they need not import the
kernel package).  This re-export keeps code written against the old path working;
import from pyvisor.sentry.errors in new code."""

from pyvisor.sentry.errors import (Interrupted, SyscallControl, SyscallError,  # noqa: F401
                                   TimedOut, WouldBlock)
