"""`make bench-scale`: the job's steps at fleet sizes of 10 to 10,000 trains; state and document sizes.

1. The curve. For each fleet (10 doors a train; station bursts, heartbeats, 2 %
   duplicates, 3 % out of order: `SCALE_SIM`) a child process registers the
   fleet in the Firestore emulator (`adapters.fleet_import`), generates its
   messages with `sim.simulator`, and runs the job's own steps after the
   read (`pipeline.build.compose`, as bench/harness.py does) on `FnApiRunner`
   over them, then a pass-through over the same messages. Per core: messages
   over the child's CPU time (`time.process_time`) of the run. Peak RSS is the
   child's. Every train's final `realtime` must equal the simulator's truth.
2. State per train over a simulated hour of streaming, with 10, 50 and 200
   doors (bench/state_size.py), and the realtime document's size against
   Firestore's 1 MiB, typical and worst case (every device at
   documents.MAX_RANGES_PER_DEVICE seq ranges).
3. Where the time goes: cProfile of one fleet's run (no state cache), the top
   functions by own time, each marked ours / Beam / other.

Bigger fleets replay fewer simulated minutes (`FLEETS`) so that the whole run
stays within minutes; the messages per train differ accordingly (1,500 for 10
trains, 13 for 10,000), and so does the share of a train's first flush, which
reads its realtime document (seeding). A streaming job seeds a train once.

One fleet per child process (`python -m bench.scale_fleet --one N`), run by
bench/scale.py; bench/scale_report.py gathers them and writes the table.
"""

import argparse
import cProfile
import datetime
import io
import logging
import os
import pstats
import sys
import tempfile
import time
from typing import List, NamedTuple

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage

from adapters import fleet_import
from adapters.store import COUNT_OPS_ENV, make_client
from bench import fn_api, harness, measure
from occupancy import documents, registry_entries, state_codec
from pipeline.options import DEFAULT_FLUSH_INTERVAL_S, OccupancyOptions
from sim import simulator
from sim.keyring import Keyring
from transforms.occupancy import FoldOccupancy

_LOGGER = logging.getLogger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = harness.PROJECT
DOORS = 10


class Run(NamedTuple):
    """One fleet's run: its size, and how FnApiRunner runs it (bench/fn_api.py)."""

    trains: int
    minutes: float  # simulated
    state_cache_mb: int = 0  # the SDK harness's; Dataflow's default is none
    mode: str = "in_memory"  # or multi_threading: state over the Fn API, several bundle processors
    workers: int = 1  # bundle processors at once (multi_threading)
    per_bundle: int = 0  # messages per bundle, as a streaming job gets them; 0: the batch runner's
    device_auth: str = "require"  # the job's --device_auth (off: signatures not checked)
    alg: str = "EdDSA"  # the devices' keys: EdDSA (Ed25519) or ES256
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S  # the job's --flush_interval_s

    def args(self) -> List[str]:
        return [
            f"--one={self.trains}",
            f"--minutes={self.minutes}",
            f"--state_cache_mb={self.state_cache_mb}",
            f"--mode={self.mode}",
            f"--workers={self.workers}",
            f"--per_bundle={self.per_bundle}",
            f"--device_auth={self.device_auth}",
            f"--alg={self.alg}",
            f"--flush_interval_s={self.flush_interval_s}",
        ]


# About 12,000 to 130,000 messages each. First the job as Dataflow runs it (state over the Fn
# API, 4 bundle processors; then 1, for the CPU per message; then in bundles of 20 messages),
# then the curve in FnApiRunner's in-memory mode without a state cache, and one fleet with
# FnApiRunner's default cache of 100 MB.
FLEETS = (
    Run(100, 6.0, mode="multi_threading", workers=4),
    Run(100, 6.0, mode="multi_threading"),
    Run(100, 6.0, mode="multi_threading", workers=4, per_bundle=20),
    Run(10, 30.0),
    Run(100, 6.0),
    Run(1000, 1.0),
    Run(10000, 0.25),
    Run(1000, 1.0, 100),
)
SMOKE_FLEETS = (Run(3, 2.0, mode="multi_threading", workers=4, per_bundle=20), Run(10, 1.0, 100))
# The profiled run (a run of its own: the profiler slows it down).
PROFILED = Run(100, 2.0)
SCALE_SIM = simulator.SimConfig(
    stop_interval_s=(60.0, 120.0),
    dwell_s=(20.0, 40.0),
    heartbeat_s=(25.0, 35.0),
    faults=simulator.FaultRates(duplicate=0.02, out_of_order=0.03, malformed=0.0),
    reset_at_start=False,
)
SEED = 20261130
# The simulated devices' keys: the job verifies every message (--device_auth=require, its default).
KEYS = Keyring(seed=b"bench-scale")


def fleet(trains: int):
    return tuple(simulator.make_train(f"s{i:05d}", (320, 240, 180)[i % 3], doors=DOORS) for i in range(trains))


def options(device_auth: str = "require", flush_interval_s: float = 1.0) -> OccupancyOptions:
    return OccupancyOptions(
        [f"--firestore_project={PROJECT}", f"--device_auth={device_auth}", f"--flush_interval_s={flush_interval_s}"]
    )


def keyring(alg: str) -> Keyring:
    """The devices' keys: KEYS (seeded Ed25519), or new keys of `alg`."""
    return KEYS if alg == "EdDSA" else Keyring(alg=alg)


def _counter(result, name: str) -> int:
    counters = result.metrics().query(beam.metrics.MetricsFilter().with_name(name))["counters"]
    return sum(c.committed or 0 for c in counters)


def run_fleet(run: Run, profile: bool = False) -> dict:
    """One fleet, in this process: register, generate, run the job's steps and the pass-through
    the same way (`run`), count their state requests, check the counts."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    worker_handlers.STATE_CACHE_SIZE_MB = run.state_cache_mb
    trains, minutes = run.trains, run.minutes
    ops_path = os.path.join(tempfile.mkdtemp(), "ops")
    os.environ[COUNT_OPS_ENV] = ops_path  # Firestore reads and writes, counted by adapters.store
    client = make_client(PROJECT)
    trains_spec = fleet(trains)
    began = time.perf_counter()
    fleet_import.import_fleet(
        client,
        "devices",
        "trains",
        [(t.train_id, t.capacity, None) for t in trains_spec],
        [(d, t.train_id, None) for t in trains_spec for d in t.devices],
    )
    keys = keyring(run.alg)
    keys.register(client, "devices", [d for t in trains_spec for d in t.devices])
    register_s = time.perf_counter() - began
    sim = simulator.Simulation(trains_spec, SEED, SCALE_SIM, keys=keys)
    start_us = (int(time.time()) - int(minutes * 60) - 600) * 1_000_000
    msgs = [
        PubsubMessage(m.payload, m.attributes, message_id=str(i), publish_time=_utc(start_us / 1e6 + m.send_at))
        for i, m in enumerate(sim.messages(start_us, minutes * 60))
    ]
    truth = sim.truth.final()
    train_of = {d: t.train_id for t in trains_spec for d in t.devices}
    with tempfile.TemporaryDirectory() as directory:
        path = harness.save_messages(msgs, directory)
        profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not waiting
        runner = fn_api.runner_options(run.mode, run.workers)

        def source():
            return fn_api.ReplayMessagesInBundles(path, run.per_bundle) if run.per_bundle else None

        reads_before = measure.read_ops(ops_path)[0]
        with fn_api.StateTraffic(run.mode, {"FoldOccupancy": FoldOccupancy}) as job_traffic:
            cpu, wall, result = harness.timed_run(
                harness.build_pipeline,
                path,
                options(run.device_auth, run.flush_interval_s),
                source(),
                profiler=profiler,
                options=runner,
            )
        reads = measure.read_ops(ops_path)[0] - reads_before
        with fn_api.StateTraffic(run.mode, {"Sum": harness.StatefulSum}) as pass_traffic:
            pass_cpu, _, _ = harness.timed_run(harness.build_passthrough, path, train_of, source(), options=runner)
    finals = _realtime_values(client, sorted(truth))
    realtime_writes = _counter(result, "realtime_writes")
    out = {
        "trains": trains,
        "doors": DOORS,
        "simulated_minutes": minutes,
        "messages": len(msgs),
        "state_cache_mb": run.state_cache_mb,
        "mode": run.mode,
        "workers": run.workers,
        "per_bundle": run.per_bundle,
        "device_auth": run.device_auth,
        "flush_interval_s": run.flush_interval_s,
        "alg": run.alg,
        "register_s": round(register_s, 1),
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "msgs_per_s_per_core": round(len(msgs) / cpu, 1),
        "passthrough_msgs_per_s_per_core": round(len(msgs) / pass_cpu, 1),
        "peak_rss_mb": measure.peak_rss_mb(os.getpid()),
        "flushes": _counter(result, "flushes"),
        "realtime_writes": realtime_writes,
        "history_writes": _counter(result, "history_writes"),
        "realtime_write_conflicts": _counter(result, "realtime_write_conflicts"),
        "fenced_writes": _counter(result, "fenced_writes"),
        "registry_loads": _counter(result, "registry_loads"),
        "firestore_reads": reads,
        "firestore_reads_per_realtime_write": round(reads / realtime_writes, 3) if realtime_writes else None,
        "state_requests": job_traffic.summary("FoldOccupancy"),
        "passthrough_state_requests": pass_traffic.summary("Sum"),
        "counts_exact": finals == truth,
        "count_errors": sum(1 for t in truth if finals.get(t) != truth[t]),
    }
    if profiler:
        out["profile"] = top_functions(profiler)
    return out


def _utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def _realtime_values(client, train_ids) -> dict:
    values = {}
    for i in range(0, len(train_ids), 500):
        refs = [client.collection("realtime").document(t) for t in train_ids[i : i + 500]]
        for snap in client.get_all(refs):
            if snap.exists:
                values[snap.id] = (snap.to_dict() or {}).get("current_value")
    return values


def top_functions(profiler: cProfile.Profile, n: int = 10) -> list:
    """The n functions with the most own time: [{function, owner, own_s, calls}]."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(row[2] for row in stats.stats.values())
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    repo = os.path.dirname(HERE)
    out = []
    for (path, line, name), (_, calls, own, _, callers) in rows:
        # A builtin (path "~") is charged to the caller that spent the most in it.
        origin = max(callers, key=lambda c: callers[c][3])[0] if path == "~" and callers else path
        owner = (
            "ours"
            if origin.startswith(repo) and ".venv" not in origin
            else "Beam (state cache: objsize)"
            if "objsize" in origin or "statecache" in origin
            else "Beam"
            if "apache_beam" in origin
            else "Firestore client"
            if "google/cloud/firestore" in origin or "/proto/" in origin
            else "other"
        )
        where = os.path.relpath(path, repo) if path.startswith(repo) else os.path.basename(path)
        out.append(
            {
                "function": f"{name} ({where.split('site-packages/')[-1]}:{line})",
                "owner": owner,
                "own_s": round(own, 3),
                "share": round(own / total, 3),
                "calls": calls,
            }
        )
    return out


def document_limits(sizes: dict) -> dict:
    """Realtime document bytes per device (typical, measured; worst, every device at the range cap)."""
    d10, d200 = sizes["10"]["end"]["realtime_doc_bytes"], sizes["200"]["end"]["realtime_doc_bytes"]
    typical = (d200 - d10) / 190
    device = "t00001-car10-door2"
    seen = {"seq": 10**6, "last_seen": None, "trip_boarded": 1, "trip_alighted": 1}
    # Its checkpoint at the range cap, each range a gap of a de-duplication window's width away.
    ranges = [[10**6 + 1000 * i, 10**6 + 1000 * i] for i in range(documents.MAX_RANGES_PER_DEVICE)]
    checkpoint = len(state_codec.encode_dedup({device: (10**15, ranges)})) - len(state_codec.encode_dedup({}))
    worst = (
        documents.storage_size("x/y", {"devices_seen": {device: seen}})
        - documents.storage_size("x/y", {"devices_seen": {}})
        + checkpoint
    )
    base = d10 - 10 * typical
    return {
        "typical_bytes_per_device": round(typical),
        "worst_bytes_per_device": worst,
        "devices_at_1_mib_typical": int((documents.MAX_DOCUMENT_BYTES - base) // typical),
        "devices_at_1_mib_worst": int((documents.MAX_DOCUMENT_BYTES - base) // worst),
        "max_devices_per_train": registry_entries.MAX_DEVICES_PER_TRAIN,
        "worst_doc_bytes_at_max_devices": int(base + worst * registry_entries.MAX_DEVICES_PER_TRAIN),
    }


def main(argv=None) -> int:
    """A child of `make bench-scale` (bench/scale.py): one fleet, its result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale_fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--one", type=int, required=True, help="Trains in the fleet.")
    parser.add_argument("--minutes", type=float, default=1.0, help="Simulated minutes.")
    parser.add_argument("--profile", action="store_true", help="Profile the run (cProfile, CPU).")
    parser.add_argument("--state_cache_mb", type=int, default=0, help="The SDK harness's state cache.")
    parser.add_argument("--mode", choices=fn_api.MODES, default="in_memory", help="FnApiRunner's running mode.")
    parser.add_argument("--workers", type=int, default=1, help="Bundle processors at once (multi_threading).")
    parser.add_argument(
        "--per_bundle", type=int, default=0, help="Messages per bundle (0: the batch runner's few large bundles)."
    )
    parser.add_argument("--device_auth", choices=("require", "off"), default="require", help="The job's --device_auth.")
    parser.add_argument("--alg", choices=("EdDSA", "ES256"), default="EdDSA", help="The devices' key algorithm.")
    parser.add_argument("--flush_interval_s", type=float, default=1.0, help="The job's --flush_interval_s.")
    parser.add_argument("--output", default="-", help="Where to write the JSON.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # FnApiRunner merges each bundle's metrics into the last merge, one level deeper per bundle:
    # a run in bundles of 20 messages has over a thousand (RecursionError at the default 1,000).
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))
    run = Run(args.one, args.minutes, args.state_cache_mb, args.mode, args.workers, args.per_bundle)
    run = run._replace(device_auth=args.device_auth, alg=args.alg, flush_interval_s=args.flush_interval_s)
    measure.emit(run_fleet(run, args.profile), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
