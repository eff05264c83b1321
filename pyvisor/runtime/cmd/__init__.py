"""pyvisor.runtime.cmd."""
