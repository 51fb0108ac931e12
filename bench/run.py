"""`make bench`: every measurement in one run, on the real emulators; one table, results.json, results.md.

Steps (each on an emptied Firestore with the fleet registered):
  1. the pipeline, streaming, on the local runner (throughput, latency, its Firestore cost, counts);
  2. the runner ceiling (bench/ceiling.py), the same way;
  3. the naive baseline, sequential (its cost and error without concurrency);
  4. the naive baseline, 8 concurrent workers on one subscription (lost updates);
  5. the SDK harness (FnApiRunner, batch): the pipeline's composites vs a pass-through,
     per core, and the parse + fold microbenchmark;
  5a. the flush policy (bench/flush_policy.py): flushes, realtime writes per stop and how soon a
     stop's first and last counts are applied, at several --flush_interval_s and for the policy
     before, replayed in event time over the scale workload (pure Python, no runner);
  5b. the job as Dataflow runs it (bench/fn_api_levers.py): FnApiRunner's multi_threading mode,
     state over the Fn API, against a stateful pass-through, and the levers on its cost side by
     side (signatures off, ES256 keys, Beam's state cache);
  5c. the replay (bench/tides_replay.py): a fleet's service on a timetable, archived and
     replayed in batch into the TIDES tables; rows/s per core and how many stops come out exact;
  6. serving (bench/serving.py): the API's GET /v1/trains with 1,000 and 10,000 trains, p50/p95
     and Firestore reads per request, with the fleet cache off and on and with the fleet
     listeners (still, and with documents changing: reads per change); the GTFS-RT feed
     through the listeners, and its build time and size; the dashboard's first paint with
     100 trains (Chromium).
"""

import argparse
import contextlib
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from importlib.metadata import version

from adapters.store import make_client
from bench import flush_policy, fn_api_levers, report, streaming, workload
from bench.measure import machine
from local.emulators import Emulator
from local.progress import Steps
from local.stack import PROJECT
from pipeline.options import DEFAULT_FLUSH_INTERVAL_S

_LOGGER = logging.getLogger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the occupancy pipeline against the naive "
        "baseline and the runner ceiling on the local emulators (see docs/benchmarks.md).",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="A seconds-long run (3 trains x 2 doors, 20 simulated seconds): checks "
        "that everything runs; its numbers mean little.",
    )
    parser.add_argument(
        "--output",
        type=str,
        default=os.path.join(HERE, "results.json"),
        help="Where to write the results: a .json file, or a directory to write results.json in.",
    )
    parser.add_argument(
        "--markdown",
        type=str,
        default=None,
        help="Where to write the markdown table (default: results.md beside --output).",
    )
    parser.add_argument(
        "--flush_interval_s",
        type=float,
        default=DEFAULT_FLUSH_INTERVAL_S,
        help="The pipeline's and the ceiling's --flush_interval_s.",
    )
    parser.add_argument(
        "--reorder_delay_s", type=float, default=2.0, help="The pipeline's and the ceiling's --reorder_delay_s."
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="Concurrent workers of the naive baseline (Cloud Functions instances)."
    )
    parser.add_argument(
        "--timeout_s",
        type=float,
        default=600.0,
        help="Longest wait for one step (a streaming job's start or completion).",
    )
    parser.add_argument(
        "--serving_timeout_s",
        type=float,
        default=3600.0,
        help="Longest wait for the serving step: 1,000 then 10,000 trains, each seeded and served "
        "six ways (about 25 minutes here).",
    )
    workload.add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.output.endswith(".json"):  # a directory
        args.output = os.path.join(args.output, "results.json")
    args.markdown = args.markdown or os.path.join(os.path.dirname(os.path.abspath(args.output)), "results.md")
    return args


def start_emulators():
    """Both emulators on free ports, started side by side (each takes ~10 s)."""
    emulators = [Emulator("firestore", project=PROJECT), Emulator("pubsub", project=PROJECT)]
    errors = []

    def start(emulator):
        try:
            emulator.start()
        except Exception as e:  # noqa: BLE001 - re-raised below, after both have finished starting
            errors.append(e)

    threads = [threading.Thread(target=start, args=(e,)) for e in emulators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for emulator in emulators:
            emulator.stop()
        raise errors[0]
    return emulators


def fresh_firestore(emulator: Emulator, spec: workload.WorkloadSpec) -> None:
    emulator.reset()
    workload.register(make_client(PROJECT), spec)


# The steps, in order (their durations in the last results file make the estimate of time left).
STEPS = ("pipeline", "ceiling", "naive", "naive_concurrent", "harness", "flush_policy", "fn_api", "replay", "serving")


def _last_results(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


# Seconds a timed-out step gets to stop what it started before it is killed.
STOP_TIMEOUT_S = 30


def run_child(module: str, args: list, env: dict, out_path: str, timeout_s: float) -> dict:
    """Runs `python -m module ... --output out_path` and returns the JSON it wrote."""
    command = [sys.executable, "-m", "bench.child", module, *args, f"--output={out_path}"]
    process = subprocess.Popen(
        command, env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the child (bench.child) unwinds and stops the servers it started.
        process.terminate()
        try:
            process.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{module} failed ({process.returncode}):\n{stderr[-3000:]}")
    with open(out_path) as f:
        return json.load(f)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("google", "urllib3", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args(argv)
    spec = workload.spec_from_args(args, args.smoke)
    began, started_at = time.monotonic(), datetime.datetime.now(datetime.timezone.utc)
    results = {
        "smoke": args.smoke,
        "started_at": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": dict(machine(), python=platform.python_version(), beam=version("apache-beam")),
        "flush_interval_s": args.flush_interval_s,
        "reorder_delay_s": args.reorder_delay_s,
    }
    work_dir = streaming.work_dir()
    _LOGGER.info("Logs and intermediate files in %s", work_dir)
    emulators = start_emulators()
    firestore = emulators[0]
    env = {k: v for e in emulators for k, v in e.env().items()}
    os.environ.update(env)
    timings = (args.flush_interval_s, args.reorder_delay_s)
    last = _last_results(args.output).get("step_durations") or {}
    progress = Steps("bench", [(name, last.get(name, 120.0)) for name in STEPS])
    results["step_durations"] = {}

    @contextlib.contextmanager
    def step(name):
        progress.step(name)
        started = time.monotonic()
        yield
        results["step_durations"][name] = round(time.monotonic() - started, 1)

    try:
        for job in ("pipeline", "ceiling"):
            fresh_firestore(firestore, spec)
            with step(job):
                results[job] = streaming.run_streaming(job, spec, env, work_dir, *timings, args.timeout_s)
        for mode, key in (("sequential", "naive"), ("concurrent", "naive_concurrent")):
            fresh_firestore(firestore, spec)
            with step(key):
                results[key] = run_child(
                    "bench.naive",
                    [f"--mode={mode}", f"--workers={args.workers}", *workload.spec_arguments(spec)],
                    env,
                    os.path.join(work_dir, f"{key}.json"),
                    args.timeout_s,
                )
        fresh_firestore(firestore, spec)
        with step("harness"):
            results["harness"] = run_child(
                "bench.harness",
                [
                    f"--flush_interval_s={args.flush_interval_s}",
                    f"--reorder_delay_s={args.reorder_delay_s}",
                    *workload.spec_arguments(spec),
                ],
                env,
                os.path.join(work_dir, "harness.json"),
                args.timeout_s,
            )
        with step("flush_policy"):
            results["flush_policy"] = flush_policy.run(*((5, 5.0) if args.smoke else (100, 30.0)))
        with step("fn_api"):
            results["fn_api"] = fn_api_levers.run_all(
                firestore.reset, run_child, env, work_dir, args.smoke, args.timeout_s, repeats=1 if args.smoke else 2
            )
        firestore.reset()
        with step("replay"):
            results["replay"] = run_child(
                "bench.tides_replay",
                ["--smoke"] if args.smoke else [],
                env,
                os.path.join(work_dir, "replay.json"),
                args.timeout_s,
            )
        firestore.reset()
        with step("serving"):
            results["serving"] = run_child(
                "bench.serving",
                [
                    f"--trains={10 if args.smoke else 1000}",
                    f"--requests={20 if args.smoke else 1000}",
                    f"--uncached_requests={5 if args.smoke else 100}",
                    f"--dashboard_trains={5 if args.smoke else 100}",
                    f"--large_trains={0 if args.smoke else 10000}",
                    f"--changes_per_s={5 if args.smoke else 50}",
                    f"--listener_cost_s={4 if args.smoke else 30}",
                    "--large_requests=100",
                    f"--visible_trains={10 if args.smoke else 3000}",
                    f"--visible_changes_per_s={5 if args.smoke else 20}",
                    f"--visible_s={4 if args.smoke else 30}",
                ],
                env,
                os.path.join(work_dir, "serving.json"),
                args.serving_timeout_s,
            )
        progress.finished()
    finally:
        for emulator in emulators:
            emulator.stop()
    results["workload"] = {
        "trains": spec.trains,
        "doors": spec.doors,
        "messages": results["pipeline"]["messages"],
        "seed": spec.seed,
        "simulated_seconds": spec.seconds,
        "duplicate_rate": spec.duplicate_rate,
    }
    results["ratios"] = report.ratios(results)
    results["targets"] = report.targets(results)
    results["duration_s"] = round(time.monotonic() - began, 1)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    with open(args.markdown, "w") as f:
        f.write(report.markdown(results))
    print(report.table(results))
    print(f"\n{args.output}, {args.markdown}; {results['duration_s']:.0f} s in all")
    return 0
