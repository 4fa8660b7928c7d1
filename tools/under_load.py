"""Run a command while every core is kept busy: how `make test-under-load` shows that no test
depends on how fast the machine is.

    python tools/under_load.py [--workers N] -- COMMAND [ARG ...]

Starts N busy loops (default: one per core), each a Python process spinning at normal priority,
runs COMMAND, and stops the loops however COMMAND ends (they also stop by themselves if this
process dies, even by kill -9). Prints COMMAND's wall time and exits with its status. Standard
library only.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

# a busy loop that ends when its parent is gone (it is then re-parented)
SPIN = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    sum(range(100_000))\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="tools/under_load.py")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="busy loops (default: one per core)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given (usage: under_load.py [--workers N] -- COMMAND ...)")
    if args.workers < 1:
        p.error(f"--workers: expected an integer >= 1, found {args.workers}")

    def stop(signum, frame):  # SIGTERM as Ctrl-C: the loops are stopped below
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    loops: list[subprocess.Popen] = []
    t0 = time.monotonic()
    rc = 1
    try:
        loops = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.workers)]
        print(f"under_load: {len(loops)} busy loops (pids {' '.join(str(q.pid) for q in loops)}); "
              f"running {' '.join(command)}", file=sys.stderr, flush=True)
        rc = subprocess.call(command)
    except KeyboardInterrupt:
        rc = 130
    finally:
        for q in loops:
            q.kill()
        for q in loops:
            q.wait()
        print(f"under_load: {' '.join(command)} exited {rc} after {time.monotonic() - t0:.0f} s "
              f"with {len(loops)} busy loops", file=sys.stderr, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
