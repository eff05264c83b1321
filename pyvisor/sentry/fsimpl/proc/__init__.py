"""pyvisor.sentry.fsimpl.proc."""
