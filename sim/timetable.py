"""The demo fleet's timetable: the static feed `make run` runs its trains on (docs/forecast.md,
"Seen in make run").

Each train of `sim.simulator.DEMO_FLEET` runs its own route of eight stations back and forth all
day, every day, in a compressed time: a stop every `STOP_S` seconds (doors open `DWELL_S`
before the departure), a trip of 4 min 40 s, the next one the other way `HEADWAY_S` after the
last began. Its trips' `trip_short_name` is the train's id, which the demo registers as the
train's number: the job and the API find the trip a train runs from it
(occupancy.schedule.trip_of).

Pure: `gtfs_files` is the feed as GTFS text files for a range of dates, `stops_from` the
stops a train is due at from a time on (what the simulated devices follow), `runs` a day's
runs of a train (what the seeded history is made of). `phase_s` moves every trip of the day:
`make run` has its trains begin a trip as it starts.
"""

import datetime
import zoneinfo
from typing import Dict, Iterator, List, NamedTuple, Tuple

TIMEZONE = "Europe/Zurich"
STOP_S = 40
DWELL_S = 8
STOPS_PER_TRIP = 8
HEADWAY_S = STOPS_PER_TRIP * STOP_S  # a trip and a layover of STOP_S at its terminus
DAY_S = 24 * 3600
SERVICE_ID = "daily"
_ZONE = zoneinfo.ZoneInfo(TIMEZONE)


class Station(NamedTuple):
    stop_id: str
    name: str
    lat: float
    lon: float


class Route(NamedTuple):
    route_id: str
    short_name: str
    stations: Tuple[Station, ...]  # in direction 0


def _stations(*rows) -> Tuple[Station, ...]:
    return tuple(Station(*row) for row in rows)


BASEL, LIESTAL = ("basel", "Basel SBB", 47.547, 7.589), ("liestal", "Liestal", 47.484, 7.731)
OLTEN, AARAU = ("olten", "Olten", 47.352, 7.907), ("aarau", "Aarau", 47.391, 8.051)
ZURICH, THALWIL = ("zurich", "Zuerich HB", 47.378, 8.540), ("thalwil", "Thalwil", 47.296, 8.564)
LAUSANNE = ("lausanne", "Lausanne", 46.517, 6.629)

# One route per train of the demo fleet (sim.simulator.DEMO_FLEET), by train id.
ROUTES: Dict[str, Route] = {
    "ic1832": Route(
        "ic-basel-chur",
        "IC",
        _stations(
            BASEL,
            LIESTAL,
            OLTEN,
            AARAU,
            ZURICH,
            THALWIL,
            ("sargans", "Sargans", 47.045, 9.446),
            ("chur", "Chur", 46.853, 9.529),
        ),
    ),
    "ic1840": Route(
        "ic-geneve-zuerich",
        "IC",
        _stations(
            ("geneve", "Geneve", 46.210, 6.142),
            ("nyon", "Nyon", 46.383, 6.239),
            LAUSANNE,
            ("fribourg", "Fribourg", 46.803, 7.151),
            ("bern", "Bern", 46.949, 7.439),
            OLTEN,
            AARAU,
            ZURICH,
        ),
    ),
    "re5": Route(
        "re-lausanne-vallorbe",
        "RE 5",
        _stations(
            LAUSANNE,
            ("renens", "Renens VD", 46.537, 6.578),
            ("bussigny", "Bussigny", 46.551, 6.552),
            ("cossonay", "Cossonay-Penthalaz", 46.613, 6.508),
            ("lasarraz", "La Sarraz", 46.659, 6.510),
            ("croy", "Croy-Romainmotier", 46.693, 6.477),
            ("leday", "Le Day", 46.716, 6.370),
            ("vallorbe", "Vallorbe", 46.712, 6.378),
        ),
    ),
    "s3": Route(
        "s-pfaeffikon-aarau",
        "S3",
        _stations(
            ("pfaeffikon", "Pfaeffikon SZ", 47.202, 8.778),
            ("waedenswil", "Waedenswil", 47.229, 8.675),
            THALWIL,
            ZURICH,
            ("dietikon", "Dietikon", 47.405, 8.401),
            ("killwangen", "Killwangen-Spreitenbach", 47.431, 8.351),
            ("baden", "Baden", 47.476, 8.308),
            AARAU,
        ),
    ),
}


class Run(NamedTuple):
    """One trip of a train on a service day: it leaves its first stop `start_s` after the day's
    reference (GTFS times), in `direction` (0: the route's order of stations)."""

    trip_id: str
    direction: int
    start_s: int

    def stations(self, route: Route) -> Tuple[Station, ...]:
        return route.stations if self.direction == 0 else route.stations[::-1]

    def departure_s(self, index: int) -> int:
        return self.start_s + index * STOP_S


class DueStop(NamedTuple):
    """A stop a train is due at: doors open at `arrive_us`, it leaves at `depart_us` (epoch
    microseconds); `index` 0 is the trip's first stop, STOPS_PER_TRIP - 1 its terminus."""

    arrive_us: int
    depart_us: int
    index: int
    trip_id: str


def _hhmmss(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def runs(train_id: str, phase_s: int = 0) -> List[Run]:
    """The train's runs of a service day (every day alike), alternating directions, the first
    leaving `phase_s` into the day (mod HEADWAY_S); the trains of the fleet a quarter of STOP_S
    apart, so that they do not all stop at the same moment."""
    offset = (phase_s + list(ROUTES).index(train_id) * STOP_S // 4) % HEADWAY_S
    return [
        Run(f"{train_id}-{_hhmmss(start)[:5].replace(':', '')}", k % 2, start)
        for k, start in enumerate(range(offset, DAY_S, HEADWAY_S))
    ]


def reference(day: datetime.date) -> datetime.datetime:
    """What a service day's GTFS times count from: noon minus 12 h (midnight but on the days
    clocks change)."""
    noon = datetime.datetime.combine(day, datetime.time(12), tzinfo=_ZONE)
    return noon.astimezone(datetime.timezone.utc) - datetime.timedelta(hours=12)


def service_seconds(moment: datetime.datetime, day: datetime.date) -> int:
    """`moment` in GTFS seconds of service day `day`: from its reference, not the wall clock (an
    hour apart on the nights clocks change)."""
    return int((moment - reference(day)).total_seconds())


def stops_from(train_id: str, start_us: int, phase_s: int = 0) -> Iterator[DueStop]:
    """The stops the train is due at from the first trip whose first stop's doors open at or
    after `start_us`, in order, for ever. A train begins at a trip's first stop: the stop
    visits of a trip joined halfway would be matched to the stops it begins with (a trip begins
    at its first stop, occupancy/stop_visits.py)."""
    day = datetime.datetime.fromtimestamp(start_us / 1e6, _ZONE).date() - datetime.timedelta(days=1)
    day_runs = runs(train_id, phase_s)
    free_us = start_us  # when the train can begin a trip: the start, then its last trip's end
    while True:
        base_us = int(reference(day).timestamp()) * 1_000_000
        for run in day_runs:
            stops = [base_us + run.departure_s(index) * 1_000_000 for index in range(STOPS_PER_TRIP)]
            # Before the start, or before the last trip ended: a day of 23 hours (clocks forward)
            # ends after the next one's first trips begin, and a train runs one trip at a time.
            if stops[0] - DWELL_S * 1_000_000 < free_us:
                continue
            for index, depart_us in enumerate(stops):
                yield DueStop(depart_us - DWELL_S * 1_000_000, depart_us, index, run.trip_id)
            free_us = stops[-1]
        day += datetime.timedelta(days=1)


def gtfs_files(first: datetime.date, last: datetime.date, phase_s: int = 0) -> Dict[str, str]:
    """The static feed (GTFS text files), its service running every day from `first` to `last`
    (`phase_s`: as for `runs`)."""
    stations = {s.stop_id: s for route in ROUTES.values() for s in route.stations}
    trips, times = [], []
    for train_id, route in ROUTES.items():
        for run in runs(train_id, phase_s):
            stops = run.stations(route)
            trips.append(f"{route.route_id},{SERVICE_ID},{run.trip_id},{train_id},{stops[-1].name},{run.direction}\n")
            for index, station in enumerate(stops):
                departs = run.departure_s(index)
                arrives = departs if index == 0 else departs - DWELL_S
                times.append(f"{run.trip_id},{_hhmmss(arrives)},{_hhmmss(departs)},{station.stop_id},{index + 1}\n")
    return {
        "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\n"
        f"demo,Demo Rail (make run),https://example.com,{TIMEZONE}\n",
        "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n"
        + "".join(f"{s.stop_id},{s.name},{s.lat},{s.lon}\n" for s in stations.values()),
        "routes.txt": "route_id,agency_id,route_short_name,route_long_name,route_type\n"
        + "".join(
            f"{r.route_id},demo,{r.short_name},{r.stations[0].name} - {r.stations[-1].name},2\n"
            for r in ROUTES.values()
        ),
        "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n"
        f"{SERVICE_ID},1,1,1,1,1,1,1,{first:%Y%m%d},{last:%Y%m%d}\n",
        "trips.txt": "route_id,service_id,trip_id,trip_short_name,trip_headsign,direction_id\n" + "".join(trips),
        "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n" + "".join(times),
    }
