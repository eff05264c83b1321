"""`python3 -m pyvisor`: the OCI runtime command line."""

import gc
import sys

# No cyclic garbage collection while the modules load: imports make objects, not garbage,
# and the collector would walk them ~50 times (~10% of start-up).  It is enabled again
# once start-up is over: by the CLI for verbs that boot nothing, in the monitor after it
# forked the Sentry, in the Sentry and each Gofer after their start-up (with the start-up
# objects frozen out of its way): runtime/phases.py, startup_done().
gc.disable()

if sys.version_info < (3, 11):
    sys.stderr.write("pyvisor: needs Python 3.11 or later (this is %s); run it with "
                     "/usr/bin/python3\n" % sys.version.split()[0])
    raise SystemExit(125)

# `python3 -m pyvisor` puts the working directory first on sys.path; run from inside the
# package (or any directory holding a `seccomp` or `socket` of its own) that would
# shadow the libseccomp binding and the standard library.  The package is found by now:
# keep only its parent's entry.
import os  # noqa: E402

_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path and sys.path[0] in ("", os.getcwd()) and os.path.abspath(sys.path[0]) != _here:
    del sys.path[0]

try:
    from pyvisor.runtime import modcache

    modcache.install()      # pyvisor's byte code from one file: runtime/modcache.py
    from pyvisor.runtime import codecache

    codecache.install()     # before any dataclass is made: runtime/codecache.py

    from pyvisor.runtime.phases import mark

    mark("launcher", "interpreter up")
    from pyvisor.runtime import prefork
    from pyvisor.runtime.interp import seccomp_here

    # `do`: the Sentry starts importing now (runtime/prefork.py).
    prefork.start(sys.argv[1:], seccomp_ok=seccomp_here)
    from pyvisor.runtime.cli import exit_fast, main
except KeyboardInterrupt:
    # ^C before the command line is up: quietly, as a shell tool (an early Sentry dies
    # with us: PR_SET_PDEATHSIG).
    os._exit(130)

try:
    code = main()
except KeyboardInterrupt:       # ^C outside the verbs' own handling (parsing, say)
    code = 130
exit_fast(code)
