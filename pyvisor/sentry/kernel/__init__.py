"""pyvisor.sentry.kernel."""
