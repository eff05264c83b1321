"""pyvisor.sentry.arch."""
