"""Two processes, each a CPU-bound Python loop of N iterations, started together.

Prints the ns from starting both to both finished: on two free CPUs that is the
time of one loop; serialised on one CPU, twice that.  Usage: cpu2.py N
"""

import os
import sys
import time


def loop(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i
    return x


def main() -> int:
    n = int(sys.argv[1])
    t0 = time.monotonic_ns()
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            loop(n)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if status != 0:
            print(f"cpu2: a loop failed: status {status}", file=sys.stderr)
            return 1
    print(time.monotonic_ns() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
