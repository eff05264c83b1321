"""pyvisor.runtime."""
