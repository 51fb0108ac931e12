"""Past days of the demo's timetable (sim/timetable.py) as TIDES `stop_visits` and
`trips_performed` rows: the history `make run` seeds for its forecast (docs/forecast.md, "Seen
in make run").

The riders are the live simulator's (sim.simulator.stop_flows: early stops board more, later
stops alight more, the terminus empties the train), scaled by the day: fewer at weekends, more
on Fridays, a shock per day and per trip; a few visits are missing, as counted history has
gaps. Pure and seeded: the same arguments give the same rows.
"""

import datetime
import math
import random
from typing import List, NamedTuple, Sequence, Tuple

from sim import timetable
from sim.simulator import SimConfig, TrainSpec, stop_flows

# Riders wanting to board, relative to a Monday-Thursday.
DAY_DEMAND = {4: 1.1, 5: 0.7, 6: 0.5}
DAY_SHOCK, TRIP_SHOCK, MISSING_VISIT = 0.05, 0.1, 0.02


class History(NamedTuple):
    stop_visits: List[dict]
    trips_performed: List[dict]


def history(
    fleet: Sequence[TrainSpec],
    days: Sequence[datetime.date],
    window_s: Tuple[int, int],
    seed: int = 0,
    config: SimConfig = SimConfig(),
    phase_s: int = 0,
) -> History:
    """Every run of the fleet's trains (sim.timetable.runs with `phase_s`) that leaves its first
    stop within `window_s` (seconds of the service day, GTFS times) on each of `days`, as TIDES
    rows."""
    rng = random.Random(seed)
    out = History([], [])
    for day in days:
        level = DAY_DEMAND.get(day.weekday(), 1.0) * math.exp(rng.gauss(0, DAY_SHOCK))
        reference = timetable.reference(day)
        for train in fleet:
            route = timetable.ROUTES[train.train_id]
            for run in timetable.runs(train.train_id, phase_s):
                if window_s[0] <= run.start_s < window_s[1]:
                    demand = level * math.exp(rng.gauss(0, TRIP_SHOCK))
                    _run_rows(out, rng, config, train, route, run, day, reference, demand)
    return out


def _run_rows(out: History, rng, config, train, route, run, day, reference, demand: float) -> None:
    performed = f"{day.isoformat()}:{run.trip_id}:{train.train_id}"
    load = 0
    for index, station in enumerate(run.stations(route)):
        alighted, boarded = stop_flows(rng, config, train.capacity, load, index, demand)
        load += boarded - alighted
        if rng.random() < MISSING_VISIT:
            continue
        out.stop_visits.append(
            {
                "service_date": day,
                "trip_id_performed": performed,
                "trip_stop_sequence": index + 1,
                "scheduled_stop_sequence": index + 1,
                "vehicle_id": train.train_id,
                "stop_id": station.stop_id,
                "schedule_departure_time": reference + datetime.timedelta(seconds=run.departure_s(index)),
                "boarding_1": boarded,
                "alighting_1": alighted,
                "departure_load": load,
                "schedule_relationship": "Scheduled",
            }
        )
    out.trips_performed.append(
        {
            "service_date": day,
            "trip_id_performed": performed,
            "vehicle_id": train.train_id,
            "trip_id_scheduled": run.trip_id,
            "route_id": route.route_id,
            "direction_id": run.direction,
            "trip_type": "In service",
            "schedule_relationship": "Scheduled",
        }
    )
