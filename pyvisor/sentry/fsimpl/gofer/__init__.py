"""pyvisor.sentry.fsimpl.gofer."""
