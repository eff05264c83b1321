"""pyvisor.sentry.fsimpl.host."""
