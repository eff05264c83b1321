"""The Gofer: a separate process serving file operations on the container root.

The Sentry never opens host files itself; it asks the Gofer over a Unix stream
socket and receives host file descriptors (SCM_RIGHTS) for data I/O. The wire
format lives in `protocol`, the serving process in `server`, and the client in
`pyvisor.sentry.fsimpl.gofer.client`. gVisor analogue: runsc/fsgofer + lisafs.
"""
