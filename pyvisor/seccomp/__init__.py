"""pyvisor.seccomp: the host seccomp allow-lists of the Sentry and the Gofer.

filters.py holds the lists and install_sentry_filter()/install_gofer_filter();
discover.py re-derives the lists from real workloads (strace at the filter
point) and runs workloads under the filters; harness.py is the hooked pyvisor
entry point both use.
"""
