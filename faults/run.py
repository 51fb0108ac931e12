"""python -m faults [--short] [--scenarios a,b] [--output faults/results.json]

Starts its own Pub/Sub and Firestore emulators (Firestore behind a proxy that the
outage scenario cuts), runs each scenario against the real pipeline process, prints
one table and writes the results JSON:
  {"machine": ..., "short": bool, "scenarios": [{name, sent, accepted, dead_lettered,
   lost, double_counted, count_error, recovery_s, passed, ...}]}
Exit code 1 when a scenario did not pass.
"""

import argparse
import datetime
import json
import logging
import os
import platform
import shutil
import tempfile
import time

from bench.measure import machine
from bench.run import start_emulators
from faults import (
    bridge_kills,
    clock_trouble,
    duplicate_storm,
    firestore_outage,
    hostile,
    long_run,
    pipeline_kills,
    poison,
    publisher_kills,
    pubsub_restart,
    two_writers,
)
from faults.proxy import Proxy
from local.progress import Steps, last_durations

_LOGGER = logging.getLogger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = {
    m.NAME: m
    for m in (
        firestore_outage,
        pubsub_restart,
        pipeline_kills,
        two_writers,
        publisher_kills,
        duplicate_storm,
        hostile,
        clock_trouble,
        bridge_kills,
        poison,
        long_run,
    )
}
SHORT = ("firestore_outage", "pipeline_kills", "duplicate_storm", "hostile_input", "poison")  # make test
COLUMNS = ("name", "sent", "accepted", "dead_lettered", "lost", "double_counted", "count_error", "recovery_s", "passed")


class Context:
    """The emulators and the environment the pipeline gets (Firestore through the proxy)."""

    def __init__(self, work_dir: str):
        self.work_dir = work_dir
        self.firestore, self.pubsub = start_emulators()
        self.proxy = Proxy(self.firestore.host_port).start()
        # The harness reads Firestore directly; the pipeline goes through the proxy.
        os.environ.update({**self.firestore.env(), **self.pubsub.env()})
        self.pipeline_env = {
            "FIRESTORE_EMULATOR_HOST": self.proxy.host_port,
            "PUBSUB_EMULATOR_HOST": self.pubsub.host_port,
        }

    def close(self):
        self.proxy.stop()
        for emulator in (self.firestore, self.pubsub):
            emulator.stop()


def table(rows) -> str:
    cells = [COLUMNS] + [tuple("-" if r.get(c) is None else str(r.get(c)) for c in COLUMNS) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells
    ]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--short",
        action="store_true",
        help="The short form (make test): shorter outage, fewer kills, 1,000 hostile payloads.",
    )
    parser.add_argument(
        "--scenarios",
        default=None,
        help="Comma-separated scenarios (default: all; with --short: "
        + ", ".join(SHORT)
        + "): "
        + ", ".join(SCENARIOS),
    )
    parser.add_argument("--output", default=os.path.join(HERE, "results.json"), help="Results JSON file.")
    args = parser.parse_args(argv)
    names = [n for n in (args.scenarios or ",".join(SHORT if args.short else SCENARIOS)).split(",") if n]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("google", "urllib3", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    began = time.monotonic()
    rows = []
    work_dir = tempfile.mkdtemp(prefix="faults-")
    context = Context(work_dir)
    last = last_durations(args.output, "scenarios")
    progress = Steps("faults", [(name, last.get(name, 120.0)) for name in names])
    try:
        for name in names:
            progress.step(name)
            started = time.monotonic()
            try:
                row = SCENARIOS[name].run(context, args.short)
            except (RuntimeError, TimeoutError) as e:  # the pipeline died or never started
                row = {"name": name, "passed": False, "error": str(e)[-2000:]}
            row["duration_s"] = round(time.monotonic() - started, 1)
            rows.append(row)
            _LOGGER.info("%s: %s", name, "passed" if row["passed"] else "FAILED")
        progress.finished()
    finally:
        context.close()
    if all(r["passed"] for r in rows):
        shutil.rmtree(work_dir, ignore_errors=True)
    else:  # the pipelines' logs, for whoever looks into the failure
        _LOGGER.warning("A scenario failed: the pipelines' logs are kept in %s", work_dir)
    results = {
        "short": args.short,
        "machine": dict(machine(), python=platform.python_version()),
        "started_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.monotonic() - began, 1),
        "scenarios": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    print(table(rows))
    print(f"\n{args.output}; {results['duration_s']:.0f} s")
    return 0 if all(r["passed"] for r in rows) else 1
