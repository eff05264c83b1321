"""pyvisor.sentry.syscalls.linux."""
