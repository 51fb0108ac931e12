"""`make api` without PROJECT: the API alone against local emulators.

    python -m local.api_alone [--port P] [python -m api flags...]

Reuses the Firestore and Auth emulators named by FIRESTORE_EMULATOR_HOST /
FIREBASE_AUTH_EMULATOR_HOST when they answer (e.g. those of a running
`make run`), else starts them (and stops them at the end); creates the demo
operator on the Auth emulator and serves the API in the foreground.
"""

import argparse
import os
import sys

from local import stack
from local.auth_emulator import AuthEmulator
from local.emulators import Emulator, is_up
from local.processes import stop_group
from local.stack import DEMO_OPERATOR, PROJECT


def _reuse_or_start(emulator, started: list):
    host = os.environ.get(emulator.env_var)
    if host and is_up(host):
        print(f"[api] reusing {emulator.env_var}={host}", flush=True)
        emulator.host_port = host
        return emulator
    print(f"[api] starting the {emulator.env_var.split('_')[0].lower()} emulator...", flush=True)
    emulator.start()
    started.append(emulator)
    os.environ[emulator.env_var] = emulator.host_port
    return emulator


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.api_alone", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="Port of the API (default: 8080).")
    args, api_args = parser.parse_known_args(argv)
    started = []
    process = None
    try:
        _reuse_or_start(Emulator("firestore", project=PROJECT), started)
        auth = _reuse_or_start(AuthEmulator(project=PROJECT), started)
        stack.create_operator(auth, *DEMO_OPERATOR)
        url = f"http://127.0.0.1:{args.port}"
        print(
            f"[api] {url}  (OpenAPI docs: {url}/docs); operator sign-in: {DEMO_OPERATOR[0]} / "
            f"{DEMO_OPERATOR[1]} on the Auth emulator at {auth.host_port}",
            flush=True,
        )
        process = stack.start_api(PROJECT, args.port, *api_args)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if process is not None:
            stop_group(process)
        for emulator in reversed(started):
            emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
