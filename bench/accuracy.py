"""`make accuracy`: what real door-sensor error does to the numbers users see, with and
without terminus balancing, and whether door health finds the faulty doors.

Service days (sim/service_day.py: trips terminus to terminus, stops with bursts,
empty at each terminus, every door counting through a DoorError) run through the
job's own steps (pipeline.build.compose) on FnApiRunner over a bounded replay,
against the Firestore emulator it starts: the same transforms as the streaming job.
From `history` (the pipeline's occupancy over time) against the truth, sampled 90 s
after every stop (when all doors have reported it: counting error, not reporting lag):
  mae_pct_capacity        mean |pipeline - truth| / capacity, per train-day, in %
  max_error_pct_capacity  the largest such error
  drift_at_terminus_mean  mean |count| the pipeline shows just before each terminus
                          (the truth there is 0), people
Door health (occupancy/door_health.py) over a simulated week of 4 trains with a biased
(+10 %), an under-counting (-10 %) and a dead door among 29 healthy ones: the confusion
matrix and the trips each faulty door took to be flagged.

    python -m bench.accuracy [--smoke] [--output bench/accuracy.json]
"""

import argparse
import datetime
import json
import logging
import os
import statistics
import sys
import time

from adapters import registry
from adapters.store import make_client
from bench import plots
from bench.measure import machine
from local.emulators import Emulator
from local.progress import Steps, last_durations
from local.stack import PROJECT
from occupancy import door_health
from sim import service_day
from sim.keyring import Keyring
from sim.service_day import DoorError

_LOGGER = logging.getLogger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
DATE = datetime.date(2026, 11, 2)  # a Monday; event times well in the past for the parser
LEVELS = {
    "exact": DoorError(),
    "2% missed + 1% double": DoorError(miss=0.02, double=0.01),
    "5% missed + 2% double + 1% swapped": DoorError(miss=0.05, double=0.02, swap=0.01),
    "10% missed + 3% double + 2% swapped": DoorError(miss=0.10, double=0.03, swap=0.02),
}
TARGET_LEVEL = "2% missed + 1% double"


# The simulated doors' and the operator's keys: every replayed message is signed.
KEYS = Keyring()


def register(client, trains) -> None:
    for train in trains:
        registry.set_train(client, "trains", train.train_id, train.capacity)
        for device, door in zip(train.doors, train.door_names):
            registry.register_device(client, "devices", device, train.train_id, door)
    KEYS.register(client, "devices", [d for train in trains for d in train.doors], control_trains=["*"])


def replay(messages) -> float:
    """Runs the job's own steps over the messages on FnApiRunner; returns wall seconds."""
    import apache_beam as beam
    from apache_beam.io.gcp.pubsub import PubsubMessage
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipeline.build import compose
    from pipeline.options import OccupancyOptions

    # One-minute buckets: the replay's cost is per flush, and a stop's counts (within 30 s of
    # it) are in by the time occupancy is sampled (90 s after it).
    options = OccupancyOptions(
        [f"--firestore_project={PROJECT}", "--flush_interval_s=60", "--reorder_delay_s=2", "--max_abs_delta=1000"]
    )
    msgs = [
        PubsubMessage(KEYS.sign_message(payload), attributes, message_id=str(i))
        for i, (payload, attributes) in enumerate(messages)
    ]
    began = time.perf_counter()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        compose(p | beam.Create(msgs, reshuffle=False), options)
    return time.perf_counter() - began


def pipeline_series(client, train_id: str):
    from google.cloud.firestore_v1.base_query import FieldFilter

    from occupancy.wire import to_micros

    docs = [
        d.to_dict() for d in client.collection("history").where(filter=FieldFilter("train", "==", train_id)).stream()
    ]
    return sorted((to_micros(d["timestamp"]), d["value"]) for d in docs)


def errors(client, trains, day) -> dict:
    """MAE and max error (% of capacity) and terminus drift, over the trains of one day."""
    maes, maxes, drifts = [], [], []
    for train in trains:
        ours = pipeline_series(client, train.train_id)
        truth = day.truth[train.train_id]
        samples = [
            abs(service_day.value_at(ours, t) - service_day.value_at(truth, t)) for t in day.settled[train.train_id]
        ]
        maes.append(100 * statistics.mean(samples) / train.capacity)
        maxes.append(100 * max(samples) / train.capacity)
        drifts += [abs(service_day.value_at(ours, t - 1)) for t in day.termini[train.train_id]]
    capacity = trains[0].capacity
    drift = statistics.mean(drifts) if drifts else 0.0
    return {
        "mae_pct_capacity": round(statistics.mean(maes), 3),
        "max_error_pct_capacity": round(max(maxes), 2),
        "drift_at_terminus_mean": round(drift, 2),
        "drift_at_terminus_mean_pct_capacity": round(100 * drift / capacity, 3),
        "termini": len(drifts),
    }


def run_level(emulator, client, name, error, balancing, n_trains, doors, hours) -> dict:
    emulator.reset()
    trains = service_day.fleet(n_trains, doors, 300, lambda i, d: error)
    register(client, trains)
    day = service_day.simulate_day(trains, DATE, seed=11, balancing=balancing, first_hour=hours[0], last_hour=hours[1])
    wall = replay(day.messages)
    row = {
        "level": name,
        "error": error.__dict__ if hasattr(error, "__dict__") else error._asdict(),
        "balancing": balancing,
        "trains": n_trains,
        "doors": doors,
        "messages": len(day.messages),
        "replay_s": round(wall, 1),
        **errors(client, trains, day),
    }
    _LOGGER.info("%s, balancing %s: MAE %.2f %% of capacity", name, balancing, row["mae_pct_capacity"])
    return row


def run_door_health(emulator, client, days: int, n_trains: int, doors: int, hours) -> dict:
    """A week of service with three faulty doors; health evaluated after every trip."""
    faulty = {
        (0, 1): DoorError(miss=0.02, double=0.01, bias_in=0.10),
        (1, 2): DoorError(miss=0.02, double=0.01, bias_in=-0.10),
        (2, 0): DoorError(dead=True),
    }
    normal = DoorError(miss=0.02, double=0.01)
    emulator.reset()
    trains = service_day.fleet(n_trains, doors, 300, lambda i, d: faulty.get((i, d), normal))
    register(client, trains)
    seqs, messages, wall = {}, 0, 0.0
    for k in range(days):
        # A job per day, each new job seeded from realtime as after a drain: a bounded replay
        # of a whole week at once would hold every train's week in the pending buffer, which
        # is rewritten at each flush (quadratic; docs/accuracy.md).
        day = service_day.simulate_day(
            trains, DATE + datetime.timedelta(days=k), seed=100 + k, seqs=seqs, first_hour=hours[0], last_hour=hours[1]
        )
        messages += len(day.messages)
        wall += replay(day.messages)
    truly_faulty = {train.doors[d] for train in trains for d in range(doors) if train.errors[d].faulty}
    first_flagged, ever_flagged, final = {}, set(), {}
    for train in trains:
        from google.cloud.firestore_v1.base_query import FieldFilter

        trips = sorted(
            (
                d.to_dict()
                for d in client.collection("trips").where(filter=FieldFilter("train", "==", train.train_id)).stream()
            ),
            key=lambda t: t["ended_at"],
        )
        for n in range(1, len(trips) + 1):
            health = door_health.assess(trips[:n], train.doors)
            for device in door_health.flagged(health):
                ever_flagged.add(device)
                first_flagged.setdefault(device, n)
        final.update(door_health.assess(trips, train.doors))
    flagged_now = {d for d, h in final.items() if h.status in (door_health.BIASED, door_health.SILENT)}
    all_devices = {d for train in trains for d in train.doors}
    return {
        "days": days,
        "trains": n_trains,
        "doors": doors,
        "messages": messages,
        "replay_s": round(wall, 1),
        "faulty": {
            d: next(t.errors[i] for t in trains for i, x in enumerate(t.doors) if x == d).__dict__
            for d in sorted(truly_faulty)
        },
        "confusion_end_of_week": {
            "flagged_faulty": len(flagged_now & truly_faulty),
            "missed_faulty": len(truly_faulty - flagged_now),
            "flagged_healthy": len(flagged_now - truly_faulty),
            "healthy_not_flagged": len(all_devices - truly_faulty - flagged_now),
        },
        "healthy_ever_flagged": sorted(ever_flagged - truly_faulty),
        "trips_to_flag": {d: first_flagged.get(d) for d in sorted(truly_faulty)},
        "bias_estimates": {d: round(final[d].bias_estimate, 3) for d in sorted(truly_faulty)},
        "trips_per_train": statistics.mean(final[d].trips for d in final),
    }


def targets(levels, health) -> list:
    by = {(r["level"], r["balancing"]): r for r in levels}
    out = []
    target = by.get((TARGET_LEVEL, True))
    if target:
        out.append(
            {
                "target": f"MAE < 3 % of capacity at {TARGET_LEVEL}, with balancing",
                "value": target["mae_pct_capacity"],
                "limit": 3.0,
                "pass": target["mae_pct_capacity"] < 3.0,
            }
        )
        without = by.get((TARGET_LEVEL, False))
        if without:
            out.append(
                {
                    "target": "without balancing (reported, not a target)",
                    "value": without["mae_pct_capacity"],
                    "limit": None,
                    "pass": True,
                }
            )
    if health:
        slow = {d: n for d, n in health["trips_to_flag"].items() if n is None or n > 3}
        out.append(
            {
                "target": "faulty doors flagged within 3 trips",
                "value": health["trips_to_flag"],
                "limit": 3,
                "pass": not slow,
            }
        )
        out.append(
            {
                "target": "no healthy door flagged over the week",
                "value": health["healthy_ever_flagged"],
                "limit": [],
                "pass": not health["healthy_ever_flagged"],
            }
        )
    return out


def table(results) -> str:
    lines = [f"{'error level':38} {'balancing':>9} {'MAE % cap':>9} {'max % cap':>9} {'drift@terminus':>14}", "-" * 83]
    for r in results["levels"]:
        lines.append(
            f"{r['level']:38} {str(r['balancing']):>9} {r['mae_pct_capacity']:>9.2f} "
            f"{r['max_error_pct_capacity']:>9.1f} {r['drift_at_terminus_mean']:>14.1f}"
        )
    health = results.get("door_health")
    if health:
        lines += [
            "",
            f"door health over {health['days']} days: {health['confusion_end_of_week']}",
            f"trips to flag each faulty door: {health['trips_to_flag']}",
            f"healthy doors ever flagged: {health['healthy_ever_flagged'] or 'none'}",
        ]
    lines += [""] + [f"{'pass' if t['pass'] else 'MISS'}: {t['target']}: {t['value']}" for t in results["targets"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="Seconds long: 2 trains, 3 hours, 2 levels, 1 day.")
    parser.add_argument("--output", default=os.path.join(HERE, "accuracy.json"), help="Results JSON.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("google", "urllib3", "grpc", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    n_trains, doors, hours, days = (2, 4, (6, 9), 1) if args.smoke else (8, 8, (6, 22), 7)
    levels = {k: LEVELS[k] for k in ("exact", TARGET_LEVEL)} if args.smoke else LEVELS
    began = time.monotonic()
    emulator = Emulator("firestore", project=PROJECT).start()
    os.environ.update(emulator.env())
    try:
        client = make_client(PROJECT)
        last = last_durations(args.output, "levels", name_key="label")
        runs = [
            (name, error, balancing, f"{name}, balancing {'on' if balancing else 'off'}")
            for name, error in levels.items()
            for balancing in (True, False)
        ]
        progress = Steps(
            "accuracy", [(label, last.get(label, 60.0)) for *_, label in runs] + [("door health", 60.0 * days)]
        )
        rows = []
        for name, error, balancing, label in runs:
            progress.step(label)
            started = time.monotonic()
            row = run_level(emulator, client, name, error, balancing, n_trains, doors, hours)
            rows.append(dict(row, label=label, duration_s=round(time.monotonic() - started, 1)))
        progress.step("door health")
        health = run_door_health(emulator, client, days, 4, doors, hours)  # 3 with a faulty door + 1
        progress.finished()
    finally:
        emulator.stop()
    results = {
        "smoke": args.smoke,
        "machine": machine(),
        "levels": rows,
        "door_health": health,
        "started_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    results["targets"] = targets(rows, health)
    results["duration_s"] = round(time.monotonic() - began, 1)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True, default=str)
    print(plots.accuracy_plot(results, plots.png_beside(args.output)))
    print(table(results))
    print(f"\n{args.output}; {results['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
