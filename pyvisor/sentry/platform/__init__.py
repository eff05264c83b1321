"""pyvisor.sentry.platform."""
