"""Moved to pyvisor/sentry/waitqueue.py (below vfs and mm, so they need not import the
kernel package).  This re-export keeps code written against the old path working;
import from pyvisor.sentry.waitqueue in new code."""

from pyvisor.sentry.waitqueue import (EVENT_ALL, EVENT_ERR, EVENT_HUP, EVENT_IN,  # noqa: F401
                                      EVENT_OUT, EVENT_PRI, EVENT_RDHUP, WaitQueue, Waiter)
