"""Per-core efficiency on the SDK harness, and a pure-Python parse + fold microbenchmark.

Both Beam jobs run in batch on `FnApiRunner` (embedded SDK harness: runner and
worker in this one process), over the same workload as PubsubMessage objects,
stamped 1 ms apart (so a train's events fall into a handful of one-second
buckets, as when they are published as fast as possible). The messages are read
from a pickle file by the worker (`ReplayMessages`), not given to `beam.Create`:
Create pickles and bz2-compresses its values several times while the pipeline is
translated (~1 s of CPU for 9,000 messages, measured), a cost of the harness
that a job reading Pub/Sub does not have and that would be counted in both jobs:

* pipeline: the pipeline's own composites, ParseEvents -> EnrichWithTrain ->
  RunningOccupancy -> WriteToFirestore, against the Firestore emulator (the
  registry must be loaded there; the emulator's own CPU is not counted);
* pass-through: decode JSON -> key by train (a dict) -> stateful sum.

Messages per second per core = messages / CPU time of this process
(`time.process_time`, every thread) for `run().wait_until_finish()`,
pipeline construction included. In batch, RunningOccupancy's event-time timers
fire once the input is exhausted: fine for throughput.

    python -m bench.harness --output harness.json     # FIRESTORE_EMULATOR_HOST from the environment
"""

import argparse
import json
import logging
import os
import pickle
import sys
import tempfile
import time
from collections import defaultdict
from typing import Tuple

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindow

from adapters.store import make_client
from bench import measure, workload
from bench.measure import peak_rss_mb
from occupancy import fold, identity, train_state, wire
from pipeline.build import compose, fold_config
from pipeline.options import OccupancyOptions

_LOGGER = logging.getLogger(__name__)
PROJECT = "demo-occupancy"


def messages(spec: workload.WorkloadSpec, spacing_s: float = 0.001):
    """(PubsubMessages, sent events) of the workload, stamped `spacing_s` apart, ending now."""
    items = workload.build(spec)
    ticks = iter(range(len(items)))
    start = time.time() - len(items) * spacing_s
    stamped = list(workload.stamp(items, clock=lambda: start + next(ticks) * spacing_s, keys=workload.KEYS))
    return (
        [PubsubMessage(p, a, message_id=str(i)) for i, (p, a, _, _) in enumerate(stamped)],
        [sent for _, _, sent, _ in stamped],
    )


class ReplayMessages(beam.PTransform):
    """PBegin -> PCollection[PubsubMessage]: the messages pickled in `path`, read by the worker."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, pbegin):
        return pbegin | "Path" >> beam.Create([self._path], reshuffle=False) | "Load" >> beam.FlatMap(_load_messages)


def _load_messages(path: str):
    with open(path, "rb") as f:
        yield from pickle.load(f)


def save_messages(msgs, directory: str, name: str = "messages.pickle") -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        pickle.dump(msgs, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def build_pipeline(p, path: str, options: OccupancyOptions, source=None):
    """The job's own steps after its read (pipeline.build.compose), fed from `path` (by
    `source`, a PTransform of PBegin, if given)."""
    compose(p | "Replay" >> (source or ReplayMessages(path)), options)


class StatefulSum(beam.DoFn):
    """(train, delta) -> (train, sum) once, when the input ends."""

    TOTAL = ReadModifyWriteStateSpec("total", coders.VarIntCoder())
    END = TimerSpec("end", TimeDomain.WATERMARK)

    def process(self, element, total=beam.DoFn.StateParam(TOTAL), end=beam.DoFn.TimerParam(END)):
        value = total.read()
        if value is None:
            end.set(GlobalWindow().max_timestamp())
        total.write((value or 0) + element[1])

    @on_timer(END)
    def on_end(self, key=beam.DoFn.KeyParam, total=beam.DoFn.StateParam(TOTAL)):
        yield key, total.read() or 0


def build_passthrough(p, path: str, train_of: dict, source=None):
    def key(message):
        # The same signed messages as the job's: the envelope opened (not verified).
        body = json.loads(identity.open_envelope(message.data)[1])
        return train_of[body["device_id"]], body["delta"]

    (
        p
        | "Replay" >> (source or ReplayMessages(path))
        | "Decode" >> beam.Map(key).with_output_types(Tuple[str, int])
        | "Sum" >> beam.ParDo(StatefulSum())
    )


def timed_run(build, *args, profiler=None, options=None) -> tuple:
    """(CPU s, wall s, PipelineResult) of building and running one batch pipeline on FnApiRunner.

    `profiler` (a cProfile.Profile), if given, runs over the same span; `options`: the
    runner's (bench.fn_api.runner_options), its in-memory mode if not given.
    """
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    p = beam.Pipeline(runner=FnApiRunner(), options=options)
    build(p, *args)
    result = p.run()
    result.wait_until_finish()
    if profiler is not None:
        profiler.disable()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def microbenchmark(msgs, train_of: dict, config: fold.FoldConfig, min_cpu_s: float = 1.0) -> dict:
    """parse_message + apply_events (per train, one call per bucket) over the messages, repeated."""
    rounds, cpu = 0, 0.0
    while cpu < min_cpu_s:
        began = time.process_time()
        now_us = int(time.time() * 1e6)
        buckets = defaultdict(list)
        for m in msgs:
            event = wire.parse_message(m.data, m.message_id, now_us=now_us, max_abs_delta=100, max_future_skew_s=300)
            buckets[(train_of[event.device_id], config.bucket_start(event.event_time_us))].append(event)
        states = defaultdict(train_state.TrainState)
        for (train, start), events in sorted(buckets.items(), key=lambda kv: kv[0][1]):
            fold.apply_events(states[train], events, config, start + config.flush_interval_us + config.reorder_delay_us)
        cpu += time.process_time() - began
        rounds += 1
    return {"parse_fold_msgs_per_s_per_core": round(rounds * len(msgs) / cpu, 1), "rounds": rounds}


def _finals(truth) -> dict:
    client = make_client(PROJECT)
    return {t: (client.collection("realtime").document(t).get().to_dict() or {}).get("current_value") for t in truth}


def _fresh_firestore(spec: workload.WorkloadSpec) -> None:
    """An emptied emulator with the workload's fleet registered again (the next job starts afresh)."""
    import urllib.request

    host = os.environ["FIRESTORE_EMULATOR_HOST"]
    urllib.request.urlopen(
        urllib.request.Request(
            f"http://{host}/emulator/v1/projects/{PROJECT}/databases/(default)/documents", method="DELETE"
        ),
        timeout=10,
    ).close()
    workload.register(make_client(PROJECT), spec)


def run(spec: workload.WorkloadSpec, flush_interval_s: float, reorder_delay_s: float) -> dict:
    """The job (verifying every signature, --device_auth=require), the same job with
    --device_auth=off, and the pass-through, over the same signed messages, side by side."""
    base = [
        f"--firestore_project={PROJECT}",
        f"--flush_interval_s={flush_interval_s}",
        f"--reorder_delay_s={reorder_delay_s}",
    ]
    options = OccupancyOptions(base)
    unverified = OccupancyOptions(base + ["--device_auth=off"])
    config = fold_config(options)
    msgs, sent = messages(spec)
    train_of = workload.train_of_devices(spec)
    truth = workload.truth(sent)
    with tempfile.TemporaryDirectory() as directory:
        # A tiny run first: imports, pickling paths and the client's channel are not per message.
        timed_run(build_passthrough, save_messages(msgs[:20], directory, "warmup.pickle"), train_of)
        path = save_messages(msgs, directory)
        pass_cpu, pass_wall, _ = timed_run(build_passthrough, path, train_of)
        pipe_cpu, pipe_wall, _ = timed_run(build_pipeline, path, options)
        exact = _finals(truth) == truth
        _fresh_firestore(spec)
        off_cpu, off_wall, _ = timed_run(build_pipeline, path, unverified)
        exact_off = _finals(truth) == truth
    n = len(msgs)
    return {
        "messages": n,
        "cpu_measure": "time.process_time() of the harness process (runner + SDK harness threads)",
        "pipeline_msgs_per_s_per_core": round(n / pipe_cpu, 1),
        "pipeline_unverified_msgs_per_s_per_core": round(n / off_cpu, 1),
        "passthrough_msgs_per_s_per_core": round(n / pass_cpu, 1),
        "pipeline_cpu_s": round(pipe_cpu, 2),
        "pipeline_wall_s": round(pipe_wall, 2),
        "pipeline_unverified_cpu_s": round(off_cpu, 2),
        "pipeline_unverified_wall_s": round(off_wall, 2),
        # The cost of verifying every device's signature: CPU per message, require over off.
        "device_auth_cpu_overhead_pct": round(100 * (pipe_cpu / off_cpu - 1), 1),
        "passthrough_cpu_s": round(pass_cpu, 2),
        "passthrough_wall_s": round(pass_wall, 2),
        "pipeline_counts_exact": exact and exact_off,
        **microbenchmark(msgs, train_of, config),
        "peak_rss_mb": peak_rss_mb(os.getpid()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.harness", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="The smoke workload's defaults.")
    parser.add_argument("--flush_interval_s", type=float, default=1.0, help="Pipeline flush interval.")
    parser.add_argument("--reorder_delay_s", type=float, default=2.0, help="Pipeline reorder delay.")
    parser.add_argument("--output", type=str, default="-", help="Where to write the JSON result.")
    workload.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(workload.spec_from_args(args, args.smoke), args.flush_interval_s, args.reorder_delay_s)
    measure.emit(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
