"""pyvisor.sentry.vfs."""
