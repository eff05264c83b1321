"""pyvisor.seccomp."""
