"""pyvisor.abi.linux."""
