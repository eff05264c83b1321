"""pyvisor.sentry.loader."""
