"""Door counts on the tests' feed with stops (tests/schedule_feed.py WITH_STOPS: trip r1 calls at
a, b, c and d from 08:00 on a weekday), and every stop visit they make (occupancy.stop_visits)."""

import datetime
from zoneinfo import ZoneInfo

from occupancy.stop_visits import DoorCount, StopVisits, VisitState
from tests import schedule_feed

ZURICH = ZoneInfo("Europe/Zurich")
DAY = datetime.date(2026, 12, 3)  # a Thursday: the weekday service runs
FILES = schedule_feed.WITH_STOPS


def at_us(hh_mm_ss: str) -> int:
    h, m, s = map(int, hh_mm_ss.split(":"))
    return int(datetime.datetime(2026, 12, 3, h, m, s, tzinfo=ZURICH).timestamp() * 1_000_000)


class Doors:
    """Counts as a train's doors send them, with the train's running load after each."""

    def __init__(self, load=0):
        self.load, self.seq = load, 0

    def burst(self, hh_mm_ss: str, *deltas, device="t1-d1"):
        out = []
        for k, delta in enumerate(deltas):
            self.load += delta
            self.seq += 1
            out.append(DoorCount(device, self.seq, at_us(hh_mm_ss) + k * 5_000_000, delta, self.load))
        return out


def visit_all(counts, run_of, close_after_each=False):
    """Every visit the counts make, closed at the end (at the last count + 2 hours)."""
    rules, state, visits = StopVisits(), VisitState(), []
    for count in counts:
        visits += rules.add(state, count, run_of(count.event_time_us))
        if close_after_each:  # as a timer at the burst's end would, when no count came first
            due = rules.due_us(state)
            visits += rules.close(state, due - 1, run_of(due - 1))
    end = counts[-1].event_time_us + 7_200_000_000
    return visits + rules.close(state, end, run_of(end))


def r1_then_nothing(schedule):
    run = schedule.run(schedule.trips["r1"], DAY)
    return lambda t_us: run if t_us < at_us("09:00:00") else None


def summary(visits):
    return [
        (v.trip_stop_sequence, v.stop.stop_id if v.stop else None, v.boarded, v.alighted, v.departure_load)
        for v in visits
    ]
