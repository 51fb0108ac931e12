"""`make bench`'s `replay` step, and the data of docs/analysis.md: a fleet's service on a
timetable, archived, replayed into the TIDES tables; how fast, and how right.

    python -m bench.tides_replay [--smoke] [--output F] [--analysis DIR]

1. `sim.simulator` runs the fleet (bench.scale_fleet's model: a stop every 60-120 s, 20-40 s
   dwell, 2 % duplicates, 3 % out of order, 0.5 % malformed) and records each stop it makes;
2. a static GTFS feed is made from those stops: a trip per run from origin to terminus
   (trip_short_name the train's number), its times the real ones moved by a delay of 0-3
   minutes (carried from trip to trip, give or take 30 s) and up to 20 s per stop, so that
   the job matches stops by their times and not by having been told them;
3. the messages are archived as a Cloud Storage subscription writes them (a line each);
4. `python -m pipeline.main --runner=FnApiRunner --archive=... --gtfs_static=...` replays
   them, as an operator runs a backfill; its CPU (the child's) over the rows it wrote is the
   replay's rows/s per core;
5. every stop the simulator made is looked for among the stop_visits rows (the train, the
   stop's sequence, counts through the doors equal to the truth), and every boarding among
   the passenger_events: `stops_exact` and `boardings_exact`.

With `--analysis DIR`: boardings per stop and hour, the table and a figure (DIR/analysis.png),
from the Parquet files alone (pyarrow), as docs/analysis.md shows.
"""

import argparse
import dataclasses
import datetime
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

from adapters import fleet_import, registry, tides_parquet
from adapters.store import make_client
from bench.report_cells import cell
from bench.scale_fleet import DOORS, SCALE_SIM
from local.stack import PROJECT
from occupancy import tides
from occupancy.schedule import Schedule
from sim import simulator
from sim.keyring import Keyring
from sim.truth import StopTruth

FLEET, MINUTES = 10, 90.0
SMOKE_FLEET, SMOKE_MINUTES = 2, 20.0
SEED = 20261203
SIM = dataclasses.replace(SCALE_SIM, faults=simulator.FaultRates(duplicate=0.02, out_of_order=0.03, malformed=0.005))
KEYS = Keyring(seed=b"bench-replay")


def _gtfs_time(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def timetable(stops: List[StopTruth], numbers: Dict[str, str], day: datetime.date, seed: int) -> dict:
    """GTFS files whose trips are the simulated runs (agency time zone UTC, one service)."""
    rng = random.Random(seed)
    midnight = datetime.datetime.combine(day, datetime.time(), datetime.timezone.utc).timestamp()
    last = SIM.stops_per_route - 1
    lines, trips, runs = [], [], {}
    for stop in stops:
        run = runs.get(stop.train_id)
        if run is None or run["ended"]:
            # A delay carries over from trip to trip, give or take half a minute (0-3 minutes).
            delay = min(180, max(0, (run["delay"] if run else rng.randint(0, 180)) + rng.randint(-30, 30)))
            run = runs[stop.train_id] = {"id": f"{stop.train_id}-{len(trips)}", "delay": delay, "ended": False}
            trips.append(f"line,all,{run['id']},{numbers[stop.train_id]},Terminus,0")
        departure = int(stop.end_us / 1e6 - midnight) - run["delay"] + rng.randint(-20, 20)
        arrival = departure - int((stop.end_us - stop.begin_us) / 1e6)
        lines.append(
            f"{run['id']},{_gtfs_time(arrival)},{_gtfs_time(departure)},s{stop.stop_index + 1},{stop.stop_index + 1}"
        )
        run["ended"] = stop.stop_index == last
    ymd = day.strftime("%Y%m%d")
    return {
        "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\nb,Bench Rail,https://example.com,UTC\n",
        "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n"
        + "".join(f"s{i + 1},Stop {i + 1},47.{i},8.{i}\n" for i in range(SIM.stops_per_route)),
        "routes.txt": "route_id,agency_id,route_short_name,route_long_name,route_type\nline,b,L,The line,2\n",
        "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
        f"all,1,1,1,1,1,1,1,{ymd},{ymd}\n",
        "trips.txt": "route_id,service_id,trip_id,trip_short_name,trip_headsign,direction_id\n"
        + "\n".join(trips)
        + "\n",
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n" + "\n".join(lines) + "\n",
    }


def prepare(trains: int, minutes: float, directory: str):
    """Registers the fleet, simulates it, writes the feed and the archive; (messages, truth stops)."""
    client = make_client(PROJECT)
    fleet = tuple(simulator.make_train(f"r{i:03d}", 300, doors=DOORS) for i in range(trains))
    numbers = {t.train_id: str(7000 + i) for i, t in enumerate(fleet)}
    fleet_import.import_fleet(
        client,
        "devices",
        "trains",
        [(t.train_id, t.capacity, None) for t in fleet],
        [(d, t.train_id, None) for t in fleet for d in t.devices],
    )
    for train in fleet:
        registry.set_train(client, "trains", train.train_id, train.capacity, train_number=numbers[train.train_id])
    KEYS.register(client, "devices", [d for t in fleet for d in t.devices])
    day = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).date()
    start_us = int(datetime.datetime.combine(day, datetime.time(6), datetime.timezone.utc).timestamp() * 1e6)
    sim = simulator.Simulation(fleet, SEED, SIM, keys=KEYS)
    messages = list(sim.messages(start_us, minutes * 60))
    os.makedirs(os.path.join(directory, "archive"), exist_ok=True)
    with open(os.path.join(directory, "archive", "part-0000.txt"), "wb") as f:
        for message in messages:
            f.write(message.payload + b"\n")
    Schedule.write_zip(os.path.join(directory, "gtfs.zip"), timetable(sim.truth.stops, numbers, day, SEED))
    return messages, list(sim.truth.stops)


def replay(directory: str) -> dict:
    """The replay as an operator runs it; the child's CPU and wall time."""
    command = [
        sys.executable,
        "-m",
        "pipeline.main",
        "--runner=FnApiRunner",
        f"--project={PROJECT}",
        f"--archive={directory}/archive/*.txt",
        f"--gtfs_static={directory}/gtfs.zip",
        f"--tides_output={directory}/tides",
        "--timezone=UTC",
        "--stop_gap_s=15",  # the model's shortest run between two stops is 20 s
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"the replay failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2)}


def accuracy(directory: str, stops: List[StopTruth]) -> dict:
    """How many of the simulator's stops the stop_visits rows give exactly, and its boardings."""
    visits = tides_parquet.read_table(os.path.join(directory, "tides"), "stop_visits").to_pylist()
    events = tides_parquet.read_table(os.path.join(directory, "tides"), "passenger_events").to_pylist()
    by_train: Dict[str, list] = {}
    for v in visits:
        by_train.setdefault(v["vehicle_id"], []).append(v)
    counted = [s for s in stops if s.boarded or s.alighted]  # a stop nobody used leaves no trace
    exact = 0
    for stop in counted:
        begin = datetime.datetime.fromtimestamp(stop.begin_us / 1e6, datetime.timezone.utc)
        end = datetime.datetime.fromtimestamp(stop.end_us / 1e6, datetime.timezone.utc)
        exact += any(
            v["scheduled_stop_sequence"] == stop.stop_index + 1
            and v["actual_arrival_time"] is not None
            and begin <= v["actual_arrival_time"] <= end
            and (v["boarding_1"], v["alighting_1"]) == (stop.boarded, stop.alighted)
            for v in by_train.get(stop.train_id, ())
        )
    boarded = sum(e["event_count"] for e in events if e["event_type"] == "Passenger boarded")
    return {
        "stops": len(counted),
        "stops_exact": exact,
        "stops_exact_share": round(exact / len(counted), 4) if counted else None,
        "unscheduled_visits": sum(v["schedule_relationship"] == tides.ADDED for v in visits),
        "boardings": boarded,
        "boardings_truth": sum(s.boarded for s in stops),
        "stop_visit_rows": len(visits),
        "passenger_event_rows": len(events),
    }


def boardings_per_stop_hour(root: str):
    """{(stop_id, hour UTC): boardings} from the passenger_events files (pyarrow only)."""
    import pyarrow.compute as pc

    table = tides_parquet.read_table(root, "passenger_events")
    table = table.filter(pc.equal(table["event_type"], "Passenger boarded"))
    table = table.append_column("hour", pc.hour(table["event_timestamp"]))
    grouped = table.group_by(["stop_id", "hour"]).aggregate([("event_count", "sum")])
    return {(r["stop_id"], r["hour"]): r["event_count_sum"] for r in grouped.to_pylist()}


def plot(per_stop_hour: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stops = sorted({s for s, _ in per_stop_hour if s}, key=lambda s: int(s[1:]))
    hours = sorted({h for _, h in per_stop_hour})
    fig, ax = plt.subplots(figsize=(8, 4))
    bottom = [0] * len(stops)
    for hour in hours:
        values = [per_stop_hour.get((s, hour), 0) for s in stops]
        ax.bar(stops, values, bottom=bottom, label=f"{hour:02d}:00")
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xlabel("stop (stop_id)")
    ax.set_ylabel("boardings")
    ax.set_title("Boardings per stop and hour (TIDES passenger_events)")
    ax.legend(title="hour (UTC)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(trains: int, minutes: float, analysis_dir: str = None) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        messages, stops = prepare(trains, minutes, directory)
        timing = replay(directory)
        found = accuracy(directory, stops)
        rows = found["stop_visit_rows"] + found["passenger_event_rows"]
        out = {
            "trains": trains,
            "simulated_minutes": minutes,
            "messages": len(messages),
            **timing,
            **found,
            "rows_per_s_per_core": round(rows / timing["cpu_s"], 1),
            "msgs_per_s_per_core": round(len(messages) / timing["cpu_s"], 1),
        }
        if analysis_dir:
            per = boardings_per_stop_hour(os.path.join(directory, "tides"))
            plot(per, os.path.join(analysis_dir, "analysis.png"))
            out["boardings_per_stop_hour"] = {f"{s}@{h:02d}": n for (s, h), n in sorted(per.items(), key=str)}
        return out


REPLAY_HEADER = (
    "replay (batch, FnApiRunner)",
    "messages",
    "rows",
    "CPU s",
    "rows/s per core",
    "msgs/s per core",
    "stops exact",
    "boardings",
)


def replay_rows(results: dict) -> List[tuple]:
    r = results.get("replay")
    if not r:
        return []
    return [
        (
            f"{r['trains']} trains, {r['simulated_minutes']:g} simulated min",
            cell(r["messages"]),
            cell(r["stop_visit_rows"] + r["passenger_event_rows"]),
            cell(r["cpu_s"]),
            cell(r["rows_per_s_per_core"]),
            cell(r["msgs_per_s_per_core"]),
            f"{r['stops_exact']} of {r['stops']}",
            f"{r['boardings']} of {r['boardings_truth']}",
        )
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tides_replay", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="2 trains, 20 simulated minutes.")
    parser.add_argument("--output", default="-", help="Where to write the JSON.")
    parser.add_argument("--analysis", default=None, help="A directory for analysis.png (docs/analysis.md).")
    args = parser.parse_args(argv)
    trains, minutes = (SMOKE_FLEET, SMOKE_MINUTES) if args.smoke else (FLEET, MINUTES)
    emulator = None
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        from local.emulators import Emulator

        emulator = Emulator("firestore", project=PROJECT).start()
        os.environ.update(emulator.env())
    try:
        out = run(trains, minutes, args.analysis)
    finally:
        if emulator is not None:
            emulator.stop()
    text = json.dumps(out, indent=1, sort_keys=True)
    if args.output == "-":
        print(text)
    else:
        with open(args.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
