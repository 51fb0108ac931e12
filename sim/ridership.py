"""Weeks of ridership on one line, as TIDES tables and the GTFS feed they ran on: the workload
of `make forecast` (docs/forecast.md).

A generative model of its own, written without the forecast's code:

* **The line**: `stops` stops, trips both ways every 20 minutes on weekdays (06:00-22:40) and
  every 30 minutes at weekends and on public holidays (07:00-22:30), 3 minutes between stops.
  Public holidays are in calendar_dates.txt: the weekday service removed, the weekend one added.
* **Who rides**: at each stop, riders board at a rate that depends on where the stop is (the
  suburbs at one end, the centre at the other), the direction, the time of day (a morning peak
  into the centre, an evening one out, a midday one at weekends) and the day (Fridays less in
  the morning and more in the evening, Saturdays and Sundays fewer); a share of those on board
  alight at each stop, more in the centre. Loads are what boarded minus what alighted.
* **What moves it**: a level that grows and shrinks week over week (`growth`, a rate per week
  for each stretch of weeks); a shock per day (weather) and per trip; special event days
  (an evening match at the stadium stop, never announced in the schedule).
* **Who rides when**: most riders at the weekday peaks are regulars, who take the same train
  on most days (each on 9 days in 10); the rest ride now and then (Poisson). Regulars are
  fewer off-peak and at weekends.
* **What is measured**: binomial alightings, the departure load as counted (a few per cent of
  counting error), and some visits or whole trips missing.

Pure and seeded: the same scenario gives the same rows.
"""

import dataclasses
import datetime
import math
import zoneinfo
from typing import Dict, List, NamedTuple, Tuple

import numpy as np

ROUTE = "l1"
TIMEZONE = "Europe/Zurich"


@dataclasses.dataclass(frozen=True)
class Scenario:
    start: datetime.date = datetime.date(2026, 1, 5)  # a Monday
    weeks: int = 30
    stops: int = 12
    capacity: int = 400
    vehicles: int = 14
    seed: int = 7
    # (weeks, growth a week): the level's course, stretch by stretch.
    growth: Tuple[Tuple[int, float], ...] = ((10, 0.015), (8, 0.0), (12, -0.01))
    holidays: Tuple[datetime.date, ...] = (
        datetime.date(2026, 4, 3),
        datetime.date(2026, 4, 6),
        datetime.date(2026, 5, 1),
        datetime.date(2026, 5, 14),
        datetime.date(2026, 5, 25),
        datetime.date(2026, 7, 1),
    )
    event_chance: float = 0.3  # a week's chance of one event day
    day_shock: float = 0.04  # log-normal sigma of a day's level
    trip_shock: float = 0.06  # of a trip's riders on a day
    count_error: float = 0.03  # relative counting error of a departure load
    missing_visit: float = 0.03
    missing_trip: float = 0.01
    base_rate: float = 35.0  # riders boarding at a suburban stop at the peak, per trip
    regulars_peak: float = 0.7  # the share of regulars among weekday peak riders
    regulars_off_peak: float = 0.3
    regulars_weekend: float = 0.1
    regular_shows: float = 0.9  # a regular's chance of riding on a given day


def _hhmmss(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _departures(service: str) -> List[int]:
    if service == "wd":
        return list(range(6 * 3600, 22 * 3600 + 41 * 60, 20 * 60))
    return list(range(7 * 3600, 22 * 3600 + 31 * 60, 30 * 60))


def gtfs_files(scenario: Scenario) -> Dict[str, str]:
    """The line's static feed (GTFS text files)."""
    end = scenario.start + datetime.timedelta(weeks=scenario.weeks + 8)
    stops = "".join(f"s{i:02d},Stop {i},{47 + i / 100:.3f},{8 + i / 100:.3f}\n" for i in range(scenario.stops))
    trips, times = [], []
    for service in ("wd", "we"):
        for direction in (0, 1):
            for first in _departures(service):
                trip_id = f"{service}-{direction}-{_hhmmss(first).replace(':', '')[:4]}"
                trips.append(f"{ROUTE},{service},{trip_id},{direction}\n")
                order = range(scenario.stops) if direction == 0 else range(scenario.stops - 1, -1, -1)
                for sequence, stop in enumerate(order, start=1):
                    at = _hhmmss(first + (sequence - 1) * 180)
                    times.append(f"{trip_id},{at},{at},s{stop:02d},{sequence}\n")
    holidays = "".join(f"wd,{day:%Y%m%d},2\nwe,{day:%Y%m%d},1\n" for day in scenario.holidays if day.weekday() < 5)
    return {
        "agency.txt": f"agency_id,agency_name,agency_url,agency_timezone\na,Line One,https://example.com,{TIMEZONE}\n",
        "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n" + stops,
        "routes.txt": f"route_id,agency_id,route_short_name,route_long_name,route_type\n{ROUTE},a,1,Line One,2\n",
        "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
        f"wd,1,1,1,1,1,0,0,{scenario.start:%Y%m%d},{end:%Y%m%d}\n"
        f"we,0,0,0,0,0,1,1,{scenario.start:%Y%m%d},{end:%Y%m%d}\n",
        "calendar_dates.txt": "service_id,date,exception_type\n" + holidays,
        "trips.txt": "route_id,service_id,trip_id,direction_id\n" + "".join(trips),
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n" + "".join(times),
    }


def _peak(hours: float, at: float, width: float) -> float:
    return math.exp(-0.5 * ((hours - at) / width) ** 2)


def _time_profile(kind: str, direction: int, hours: float) -> float:
    """Riders per trip relative to the weekday morning peak, by day kind and direction."""
    if kind in ("sat", "sun", "holiday"):
        scale = {"sat": 0.55, "sun": 0.4, "holiday": 0.38}[kind]
        return scale * (0.25 + _peak(hours, 13.5, 2.5) + 0.3 * _peak(hours, 19.0, 1.5))
    morning = {0: 1.0, 1: 0.25}[direction] * (0.85 if kind == "fri" else 1.0)
    evening = {0: 0.3, 1: 0.9}[direction] * (1.15 if kind == "fri" else 1.0)
    late = 0.35 if kind == "fri" else 0.15
    return 0.2 + morning * _peak(hours, 7.75, 0.8) + evening * _peak(hours, 17.5, 1.1) + late * _peak(hours, 21.5, 1)


def _day_kind(day: datetime.date, scenario: Scenario) -> str:
    if day in scenario.holidays:
        return "holiday"
    return {4: "fri", 5: "sat", 6: "sun"}.get(day.weekday(), "wd")


def _levels(scenario: Scenario) -> List[float]:
    out, level = [], 1.0
    for weeks, rate in scenario.growth:
        for _ in range(weeks):
            out.append(level)
            level *= math.exp(rate)
    while len(out) < scenario.weeks:
        out.append(level)
    return out


def _regulars(scenario: Scenario, kind: str, hours: float) -> float:
    if kind in ("sat", "sun", "holiday"):
        return scenario.regulars_weekend
    peak = max(_peak(hours, 7.75, 0.8), _peak(hours, 17.5, 1.1))
    return scenario.regulars_off_peak + (scenario.regulars_peak - scenario.regulars_off_peak) * peak


def _boarding(rng, rate: float, regular_share: float, scenario: Scenario) -> int:
    """Regulars (as many as ride on an average day, each riding on `regular_shows` of days)
    and occasional riders."""
    regulars = round(rate * regular_share / scenario.regular_shows)
    return int(rng.binomial(regulars, scenario.regular_shows) + rng.poisson(rate * (1 - regular_share)))


class Simulated(NamedTuple):
    stop_visits: List[dict]
    trips_performed: List[dict]
    # (service date, trip_id, stop sequence) -> the load the model expects there, knowing the
    # level and calendar but neither the day's shocks nor its events: the best a forecast can do.
    expected: Dict[Tuple[datetime.date, str, int], float]


def _event(rng, day: datetime.date, scenario: Scenario) -> bool:
    """An evening match at the stadium on some Wednesdays and Saturdays."""
    return day.weekday() in (2, 5) and rng.random() < scenario.event_chance / 2


def simulate(scenario: Scenario) -> Simulated:
    """Every service day of the scenario as TIDES rows, and what was to be expected."""
    rng = np.random.default_rng(scenario.seed)
    zone = zoneinfo.ZoneInfo(TIMEZONE)
    n = scenario.stops
    # Where riders board and alight, towards the centre (direction 0: stop 0 -> n-1).
    board_where = [1.0 if i < n * 0.6 else 0.35 for i in range(n)]
    alight_share = [0.04 if i < n * 0.5 else 0.25 + 0.4 * (i - n * 0.5) / n for i in range(n)]
    mean_shock = math.exp((scenario.day_shock**2 + scenario.trip_shock**2) / 2)
    levels = _levels(scenario)
    stadium = n // 2
    out = Simulated([], [], {})
    for day_index in range(scenario.weeks * 7):
        day = scenario.start + datetime.timedelta(days=day_index)
        kind = _day_kind(day, scenario)
        service = "we" if kind in ("sat", "sun", "holiday") else "wd"
        level = levels[day_index // 7] * math.exp(rng.normal(0, scenario.day_shock))
        event = _event(rng, day, scenario)
        midnight = datetime.datetime.combine(day, datetime.time(0), tzinfo=zone)
        for direction in (0, 1):
            order = list(range(n)) if direction == 0 else list(range(n - 1, -1, -1))
            for first in _departures(service):
                trip_id = f"{service}-{direction}-{_hhmmss(first).replace(':', '')[:4]}"
                if rng.random() < scenario.missing_trip:
                    continue
                vehicle = f"u{(first // 1200 + direction) % scenario.vehicles:02d}"
                performed = f"{day.isoformat()}:{trip_id}:{vehicle}"
                shock = math.exp(rng.normal(0, scenario.trip_shock))
                load, expected = 0, 0.0
                for sequence, stop in enumerate(order, start=1):
                    seconds = first + (sequence - 1) * 180
                    hours = seconds / 3600
                    place = stop if direction == 0 else n - 1 - stop
                    usual = scenario.base_rate * board_where[place] * _time_profile(kind, direction, hours)
                    share = 1.0 if sequence == n else alight_share[place]
                    expected = expected * (1 - share) + (
                        0 if sequence == n else usual * levels[day_index // 7] * mean_shock
                    )
                    out.expected[(day, trip_id, sequence)] = expected
                    if event and stop == stadium and direction == 0 and 17.5 <= hours <= 19.0:
                        share = 0.7  # to the match
                    alighted = int(rng.binomial(load, share))
                    boarded = 0
                    if sequence < n:
                        boarded = _boarding(rng, usual * level * shock, _regulars(scenario, kind, hours), scenario)
                        if event and direction == 0 and 17.0 <= hours <= 18.8 and sequence <= stadium:
                            boarded += int(rng.poisson(25))
                        if event and stop == stadium and 21.0 <= hours <= 22.5:
                            boarded += int(rng.poisson(140))
                    load = min(int(scenario.capacity * 1.4), load - alighted + boarded)
                    if rng.random() < scenario.missing_visit:
                        continue
                    departure = midnight + datetime.timedelta(seconds=seconds)
                    out.stop_visits.append(
                        {
                            "service_date": day,
                            "trip_id_performed": performed,
                            "trip_stop_sequence": sequence,
                            "scheduled_stop_sequence": sequence,
                            "vehicle_id": vehicle,
                            "stop_id": f"s{stop:02d}",
                            "schedule_departure_time": departure.astimezone(datetime.timezone.utc),
                            "boarding_1": boarded,
                            "alighting_1": alighted,
                            "departure_load": max(0, round(load * (1 + rng.normal(0, scenario.count_error)))),
                            "schedule_relationship": "Scheduled",
                        }
                    )
                out.trips_performed.append(
                    {
                        "service_date": day,
                        "trip_id_performed": performed,
                        "vehicle_id": vehicle,
                        "trip_id_scheduled": trip_id,
                        "route_id": ROUTE,
                        "direction_id": direction,
                        "trip_type": "In service",
                        "schedule_relationship": "Scheduled",
                    }
                )
    return out
