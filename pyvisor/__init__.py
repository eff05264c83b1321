"""pyvisor: an application kernel for sandboxing untrusted programs, after gVisor."""

__version__ = "0.1.0"
