"""pyvisor.sentry.fsimpl.sys."""
