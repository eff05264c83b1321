"""pyvisor.sentry.mm."""
