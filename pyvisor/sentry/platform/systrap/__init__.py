"""pyvisor.sentry.platform.systrap."""
