"""A benchmark step for tests/test_bench_child.py: starts a server-like child in a process group of
its own (as a step starts the API), writes its pid, waits for ever; stops the child on the way out."""

import argparse
import subprocess
import sys
import time

from local import stack

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid_file")
    parser.add_argument("--output")
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    with open(args.pid_file, "w") as f:
        f.write(str(server.pid))
    try:
        time.sleep(600)
    finally:
        stack.stop_process(server)
