"""`python3 -m pyvisor`: the OCI runtime command line."""

import sys

if sys.version_info < (3, 11):
    sys.stderr.write("pyvisor: needs Python 3.11 or later (this is %s); run it with "
                     "/usr/bin/python3\n" % sys.version.split()[0])
    raise SystemExit(125)

from pyvisor.runtime.phases import mark  # noqa: E402

mark("launcher", "interpreter up")
from pyvisor.runtime.cli import exit_fast, main  # noqa: E402

exit_fast(main())
