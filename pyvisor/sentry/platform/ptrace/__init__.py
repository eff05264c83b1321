"""pyvisor.sentry.platform.ptrace."""
