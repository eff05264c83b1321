"""pyvisor.sentry.fsimpl.dev."""
