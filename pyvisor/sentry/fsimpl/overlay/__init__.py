"""pyvisor.sentry.fsimpl.overlay."""
