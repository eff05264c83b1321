"""pyvisor.sentry.fsimpl."""
