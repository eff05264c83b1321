"""The packet-path tests' fixtures live in netpair.py (a uniquely named module)."""

from netpair import box, netpair  # noqa: F401 - registers the fixtures
