"""`python3 -m pyvisor`: the OCI runtime command line."""

from pyvisor.runtime.cli import main

raise SystemExit(main())
