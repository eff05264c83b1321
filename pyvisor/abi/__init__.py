"""pyvisor.abi."""
