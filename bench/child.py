"""python -m bench.child MODULE ARGS...: runs `python -m MODULE ARGS...` so that SIGTERM unwinds it.

`make bench` runs each step in a child process with a time limit. Python's default
SIGTERM ends a process at once, without its `finally` blocks, and a step's servers
(the API it measures, a browser) lead process groups of their own: a step stopped
at its time limit left them running. Here SIGTERM raises SystemExit, so the step
stops what it started before it exits.
"""

import runpy
import signal
import sys


def _exit(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit)
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
