"""pyvisor.sentry.fsimpl.tmpfs."""
