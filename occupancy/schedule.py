"""The static schedule (GTFS): which scheduled trip a train is running now (docs/design.md,
"Trips").

A journey planner matches real-time data to its timetable by trip: Google and the Transit app
need a `trip_id` on every VehiclePosition, OpenTripPlanner rejects a position without a
trip. A train is attached to its trip by its train number (the registry's `train_number`)
equal to a trip's `trip_short_name` on the service date, or by an operator's assignment
(`PUT /v1/trains/{train_id}/trip`) for rolling stock that runs several numbers a day.

Read with the csv module: the five files needed (agency, routes, trips, calendar,
calendar_dates, and the first and last stop time of each trip) are plain CSV, and the
libraries that read GTFS (partridge, gtfs-kit) bring pandas into the API for that.

GTFS times are seconds after "noon minus 12 h" of the service date in the agency's time
zone, and may pass 24:00:00: a trip leaving at 24:30:00 runs on the previous service date.
"""

import csv
import datetime
import io
import zipfile
from typing import Dict, List, NamedTuple, Optional, Set, Tuple
from zoneinfo import ZoneInfo

# A train counts as running its trip from this long before the first departure to this long
# after the last arrival (boarding before departure; a late arrival).
EARLY_S, LATE_S = 30 * 60, 60 * 60


class ScheduleError(ValueError):
    """The static feed cannot be used, with a reason."""


class StopTime(NamedTuple):
    """One stop of a trip, from stop_times.txt: times in seconds after the service day's
    reference (either may be missing from the feed, then the other stands for both)."""

    stop_sequence: int
    stop_id: str
    arrival_s: int
    departure_s: int
    # Its place among all the trip's stops, from 1 (those without times included, which a trip
    # keeps no StopTime of): what SIRI calls the call's Order. 0: not known.
    place: int = 0


class Trip(NamedTuple):
    trip_id: str
    route_id: str
    service_id: str
    short_name: str
    headsign: str
    direction_id: Optional[int]
    start_s: int  # first departure, seconds after the service day's reference
    end_s: int  # last arrival
    route_short_name: str
    route_long_name: str
    departures_s: tuple = ()  # every stop's departure, in stop order (the public sample points)
    stops: Tuple[StopTime, ...] = ()  # every stop with a time, in stop order (stop visits)


class TripRun(NamedTuple):
    """A trip on one service date: what a TripDescriptor names."""

    trip: Trip
    service_date: datetime.date
    starts_at: datetime.datetime
    ends_at: datetime.datetime

    @property
    def start_date(self) -> str:
        return self.service_date.strftime("%Y%m%d")

    def departure_times(self) -> List[datetime.datetime]:
        offset = self.starts_at - datetime.timedelta(seconds=self.trip.start_s)
        return [offset + datetime.timedelta(seconds=s) for s in self.trip.departures_s]

    def at(self, seconds: int) -> datetime.datetime:
        """A time of this run's service day (seconds after its reference), as a datetime."""
        return self.starts_at + datetime.timedelta(seconds=seconds - self.trip.start_s)

    @property
    def start_time(self) -> str:
        """HH:MM:SS as the schedule writes it (past 24:00:00 for a trip after midnight)."""
        s = self.trip.start_s
        return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


# A trip's times run past 24:00:00 after midnight, never days on; stop_sequence is what a
# GTFS-Realtime stop_sequence (uint32) and a SIRI Order can carry.
MAX_HOURS = 240
MAX_STOP_SEQUENCE = 2**31 - 1


def _seconds(text: str) -> int:
    parts = text.strip().split(":")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ScheduleError(f"not a GTFS time (H:MM:SS): {text!r}")
    h, m, s = map(int, parts)
    if h > MAX_HOURS or m > 59 or s > 59:
        raise ScheduleError(f"not a GTFS time (H:MM:SS, at most {MAX_HOURS} hours): {text!r}")
    return h * 3600 + m * 60 + s


def _stop_sequence(text: Optional[str]) -> int:
    text = (text or "").strip()
    sequence = int(text) if text.isascii() and text.isdigit() else 0
    if sequence > MAX_STOP_SEQUENCE:
        raise ScheduleError(f"stop_sequence {text} is past {MAX_STOP_SEQUENCE}")
    return sequence


def _date(text: str) -> datetime.date:
    try:
        return datetime.datetime.strptime(text.strip(), "%Y%m%d").date()
    except ValueError:
        raise ScheduleError(f"not a GTFS date (YYYYMMDD): {text!r}") from None


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Schedule:
    """The trips of a static feed and the days each runs."""

    def __init__(self, files: Dict[str, str]):
        def rows(name, required=True):
            if name not in files:
                if required:
                    raise ScheduleError(f"the static feed has no {name}")
                return []
            return list(csv.DictReader(io.StringIO(files[name].lstrip("\ufeff"))))

        agencies = rows("agency.txt")
        if not agencies or not agencies[0].get("agency_timezone"):
            raise ScheduleError("agency.txt names no agency_timezone")
        self.timezone = ZoneInfo(agencies[0]["agency_timezone"])
        routes = {r["route_id"]: r for r in rows("routes.txt")}
        times: Dict[str, List[int]] = {}
        departures: Dict[str, List[Tuple[int, int]]] = {}
        stops: Dict[str, List[StopTime]] = {}
        sequences: Dict[str, List[int]] = {}  # every stop's, timed or not
        for r in rows("stop_times.txt"):
            for field in ("departure_time", "arrival_time"):
                if r.get(field):
                    times.setdefault(r["trip_id"], []).append(_seconds(r[field]))
            sequence = _stop_sequence(r.get("stop_sequence"))
            sequences.setdefault(r["trip_id"], []).append(sequence)
            if r.get("departure_time"):
                departures.setdefault(r["trip_id"], []).append((sequence, _seconds(r["departure_time"])))
            arrival, departure = r.get("arrival_time"), r.get("departure_time")
            if arrival or departure:  # a stop without times is interpolated by planners: not visited here
                arrival_s = _seconds(arrival or departure)
                departure_s = _seconds(departure or arrival)
                stop = StopTime(sequence, (r.get("stop_id") or "").strip(), arrival_s, departure_s)
                stops.setdefault(r["trip_id"], []).append(stop)
        for trip_id, timed in stops.items():
            place = {sequence: i for i, sequence in enumerate(sorted(set(sequences[trip_id])), start=1)}
            stops[trip_id] = [stop._replace(place=place[stop.stop_sequence]) for stop in timed]
        self.trips: Dict[str, Trip] = {}
        self.by_short_name: Dict[str, List[Trip]] = {}
        for r in rows("trips.txt"):
            if r["trip_id"] not in times:
                continue  # a trip without stop times cannot be placed in time
            route = routes.get(r["route_id"], {})
            direction = r.get("direction_id", "").strip()
            trip = Trip(
                r["trip_id"],
                r["route_id"],
                r["service_id"],
                (r.get("trip_short_name") or "").strip(),
                r.get("trip_headsign") or "",
                int(direction) if direction in ("0", "1") else None,  # GTFS has no other
                min(times[r["trip_id"]]),
                max(times[r["trip_id"]]),
                route.get("route_short_name") or "",
                route.get("route_long_name") or "",
                tuple(t for _, t in sorted(departures.get(r["trip_id"], ()))),
                tuple(sorted(stops.get(r["trip_id"], ()))),
            )
            self.trips[trip.trip_id] = trip
            if trip.short_name:
                self.by_short_name.setdefault(trip.short_name, []).append(trip)
        self.stop_names: Dict[str, str] = {
            r["stop_id"].strip(): (r.get("stop_name") or "").strip()
            for r in rows("stops.txt", required=False)
            if r.get("stop_id")
        }
        self._calendar = {r["service_id"]: r for r in rows("calendar.txt", required=False)}
        self._exceptions: Dict[str, Dict[datetime.date, str]] = {}
        for r in rows("calendar_dates.txt", required=False):
            self._exceptions.setdefault(r["service_id"], {})[_date(r["date"])] = r["exception_type"].strip()
        if not self._calendar and not self._exceptions:
            raise ScheduleError("the static feed has neither calendar.txt nor calendar_dates.txt")

    @staticmethod
    def write_zip(path, files: Dict[str, str]) -> str:
        """A static feed's files (name -> text) as the zip from_zip reads; returns the path."""
        with zipfile.ZipFile(path, "w") as z:
            for name, text in files.items():
                z.writestr(name, text)
        return str(path)

    @classmethod
    def from_zip(cls, path: str) -> "Schedule":
        try:
            with zipfile.ZipFile(path) as z:
                return cls(
                    {
                        name.rsplit("/", 1)[-1]: z.read(name).decode("utf-8-sig")
                        for name in z.namelist()
                        if name.endswith(".txt")
                    }
                )
        except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as e:
            raise ScheduleError(f"cannot read the static feed {path}: {e}") from None

    def runs_on(self, service_id: str, day: datetime.date) -> bool:
        """calendar.txt's weekly pattern, with calendar_dates.txt's additions (1) and removals (2)."""
        exception = self._exceptions.get(service_id, {}).get(day)
        if exception == "1":
            return True
        if exception == "2":
            return False
        row = self._calendar.get(service_id)
        return bool(
            row
            and _date(row["start_date"]) <= day <= _date(row["end_date"])
            and row.get(_WEEKDAYS[day.weekday()], "0").strip() == "1"
        )

    def _reference(self, day: datetime.date) -> datetime.datetime:
        """Noon minus 12 h of the service date: what GTFS times count from (midnight, but for
        the days clocks change)."""
        noon = datetime.datetime.combine(day, datetime.time(12), tzinfo=self.timezone)
        return noon.astimezone(datetime.timezone.utc) - datetime.timedelta(hours=12)

    def run(self, trip: Trip, day: datetime.date) -> TripRun:
        reference = self._reference(day)
        return TripRun(
            trip,
            day,
            reference + datetime.timedelta(seconds=trip.start_s),
            reference + datetime.timedelta(seconds=trip.end_s),
        )

    def current_run(self, short_name: str, at: datetime.datetime) -> Optional[TripRun]:
        """The run of the trip with this `trip_short_name` that is under way at `at` (within
        EARLY_S before its start to LATE_S after its end), on the service date it runs: today's,
        or yesterday's for a trip past midnight. A run between its first departure and last
        arrival wins (the latest started, when a train runs its number several times a day);
        else the nearest start."""
        local_day = at.astimezone(self.timezone).date()
        candidates = []
        for trip in self.by_short_name.get(short_name, ()):
            for day in (local_day - datetime.timedelta(days=1), local_day):
                if self.runs_on(trip.service_id, day):
                    run = self.run(trip, day)
                    if (
                        run.starts_at - datetime.timedelta(seconds=EARLY_S)
                        <= at
                        <= run.ends_at + datetime.timedelta(seconds=LATE_S)
                    ):
                        candidates.append(run)
        running = [r for r in candidates if r.starts_at <= at <= r.ends_at]
        if running:
            return max(running, key=lambda r: r.starts_at)
        return min(candidates, key=lambda r: abs((r.starts_at - at).total_seconds()), default=None)

    def service_date_of(self, trip_id: str, at: datetime.datetime) -> Optional[datetime.date]:
        """The service date a rider at `at` means by this trip without naming one: yesterday's
        run while it is still under way past midnight (until LATE_S after its end), else today's
        (the feed's zone). None: no such trip."""
        trip = self.trips.get(trip_id)
        if trip is None:
            return None
        today = at.astimezone(self.timezone).date()
        yesterday = today - datetime.timedelta(days=1)
        if self.runs_on(trip.service_id, yesterday):
            late = self.run(trip, yesterday).ends_at + datetime.timedelta(seconds=LATE_S)
            if at <= late and trip.end_s >= 24 * 3600:
                return yesterday
        return today

    def assigned_run(self, trip_id: str, start_date: str) -> TripRun:
        """The run an operator assigned; ScheduleError if the trip does not run that date."""
        trip = self.trips.get(trip_id)
        if trip is None:
            raise ScheduleError(f"no trip {trip_id!r} in the static feed")
        day = _date(start_date)
        if not self.runs_on(trip.service_id, day):
            raise ScheduleError(f"trip {trip_id} does not run on {start_date}")
        return self.run(trip, day)

    def exception_days(self) -> Set[datetime.date]:
        """The days calendar_dates.txt adds or removes a service on (holidays, special days)."""
        return {day for days in self._exceptions.values() for day in days}

    def weekly_pattern(self, service_id: str) -> int:
        """calendar.txt's week of a service as bits, Monday the lowest (0: only calendar_dates)."""
        row = self._calendar.get(service_id) or {}
        return sum(1 << i for i, name in enumerate(_WEEKDAYS) if row.get(name, "0").strip() == "1")

    def services_on(self, day: datetime.date) -> Set[str]:
        return {sid for sid in set(self._calendar) | set(self._exceptions) if self.runs_on(sid, day)}


def trip_of(schedule: Optional[Schedule], train_doc: dict, at: datetime.datetime):
    """(run, "assignment" | "schedule") for a train at `at`, or (None, None).

    An operator's assignment (`trip: {trip_id, start_date}` in the train's registry document)
    wins while that run is under way or yet to come; otherwise the train number's scheduled
    trip under way now.

    Args:
        schedule: the static feed's schedule; None: no feed, so no run.
        train_doc: the train's registry document (`trip`, `train_number`; others are ignored).
        at: the time (timezone-aware) the train's run is wanted for.

    Returns:
        (the TripRun, how it was found), or (None, None): no assignment under way and no run of its number.
    """
    if schedule is None:
        return None, None
    assignment = train_doc.get("trip") or {}
    if isinstance(assignment, dict) and assignment.get("trip_id") and assignment.get("start_date"):
        try:
            run = schedule.assigned_run(str(assignment["trip_id"]), str(assignment["start_date"]))
        except ScheduleError:
            run = None  # the static feed changed under the assignment: fall back to the number
        if run is not None and at <= run.ends_at + datetime.timedelta(seconds=LATE_S):
            return run, "assignment"
    number = train_doc.get("train_number")
    if number:
        run = schedule.current_run(str(number), at)
        if run is not None:
            return run, "schedule"
    return None, None
