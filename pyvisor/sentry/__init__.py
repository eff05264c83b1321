"""pyvisor.sentry."""
