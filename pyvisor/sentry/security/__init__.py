"""Security modules the VFS and the kernel consult.  Linux: security/."""
