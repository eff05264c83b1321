"""pyvisor.sentry.syscalls."""
