"""Stop visits: a train's door counts grouped into the stops it made, each matched to a stop of
the trip it runs (docs/design.md, "Stop visits").

Doors count people only while a train stands at a stop, so the counts come in bursts: a
burst ends when no door has counted for `gap_us` of event time (the train has left), and is
one visit. Its stop is found in the trip's stop times (occupancy.schedule.StopTime):

* among the stops after the last one matched (a train does not go back), the one whose
  scheduled departure, moved by the train's delay at its last matched stop, is nearest the
  burst's last count: a train running late by more than the time between two stops still
  matches the right one. Passing a stop costs half the time from it to the next: a train
  stops at every stop of its trip unless the clock says clearly otherwise, so a delay that
  grows between two stops is not read as a stop skipped (nor a stop where nobody got on or
  off, on a line of stops close together, as its neighbour's visit); before a run's first
  visit, four times that: a trip begins at its first stop;
* within `window_us` of it; a burst outside every stop's window is an unscheduled visit
  (no stop), as a burst of a train that runs no known trip is, after the stops it must
  have passed (their windows over before it began);
* stops passed between two matched visits, where no door counted, are visits with nobody
  through the doors (TIDES asks for one record per stop served);
* a burst is on the run its first count's time falls in (occupancy.schedule.trip_of),
  unless the train's current run still has a stop due then (delay-adjusted, within the
  window): a late train ends its trip after the next one's scheduled start.

The state is small and bounded (the open burst's counts, at most `MAX_BURST_COUNTS`, the last
matched stop, the delay),
and everything is decided in event time from the counts alone, so a replay of the same
counts makes the same visits whatever the bundles (`tests/test_stop_visits.py`).
"""

import dataclasses
import datetime
from typing import List, NamedTuple, Optional, Tuple

from occupancy.schedule import StopTime, TripRun

# A burst ends after this long without a count: shorter than the shortest run between two
# stops, longer than the quietest moment of a dwell (--stop_gap_s).
DEFAULT_GAP_US = 30_000_000
# How far from a stop's (delay-adjusted) scheduled departure a burst still matches it.
DEFAULT_WINDOW_US = 15 * 60_000_000
# A burst of this many counts is a visit even while its doors go on counting: four times the door
# messages of a full double-deck train emptying and filling at one stop (about 4,000), it bounds
# what a door that never pauses (a chattering sensor, a hostile device) keeps in the train's
# state, about 16 bytes a count (256 KB).
MAX_BURST_COUNTS = 16_384


class DoorCount(NamedTuple):
    """One applied count: the train's occupancy after it is `load_after` (the fold's value)."""

    device_id: str
    seq: int
    event_time_us: int
    delta: int
    load_after: int


class StopVisit(NamedTuple):
    """A stop made (or passed) on a trip. `run` None: the train runs no known trip; `stop`
    None: a burst matching no stop of the run (unscheduled)."""

    run: Optional[TripRun]
    trip_stop_sequence: int  # 1, 2, ... along the run, unscheduled visits included
    stop: Optional[StopTime]
    arrived_us: Optional[int]  # the first count (None: nobody through the doors)
    departed_us: Optional[int]  # the last count
    boarded: int
    alighted: int
    departure_load: Optional[int]  # None: no count of this train seen yet
    counts: Tuple[DoorCount, ...]


def run_key(run: Optional[TripRun], day: str = "") -> Tuple[str, str]:
    """What the visits are numbered along: (trip_id, start date YYYYMMDD) of a run, or ("",
    the local service day YYYY-MM-DD) for a train on no known trip (its day is one trip)."""
    return (run.trip.trip_id, run.start_date) if run is not None else ("", day)


@dataclasses.dataclass
class VisitState:
    """One train's: the run its visits belong to, the open burst, what was matched last."""

    key: Tuple[str, str] = ("", "")  # run_key: what the visits are numbered along (stored)
    run: Optional[TripRun] = None  # the run the key names (not stored: looked up again)
    counts: List[DoorCount] = dataclasses.field(default_factory=list)  # the open burst
    visits: int = 0  # visits emitted on this run (the last trip_stop_sequence)
    next_stop: int = 0  # index into run.trip.stops of the first stop not matched yet
    delay_us: int = 0  # actual minus scheduled departure at the last matched stop
    load: Optional[int] = None  # the train's occupancy after its last count


class StopVisits:
    """The rules above, as functions of a train's VisitState: `add` each count in event-time
    order with the run the train is on at that time, `close` when `gap_us` has passed."""

    def __init__(
        self,
        gap_us: int = DEFAULT_GAP_US,
        window_us: int = DEFAULT_WINDOW_US,
        skip_weight: float = 0.5,
        timezone: datetime.tzinfo = datetime.timezone.utc,
    ):
        self.gap_us, self.window_us, self.skip_weight = gap_us, window_us, skip_weight
        self.timezone = timezone  # where a train on no trip starts a new day

    def _key(self, run: Optional[TripRun], t_us: int) -> Tuple[str, str]:
        if run is not None:
            return run_key(run)
        local = datetime.datetime.fromtimestamp(t_us / 1_000_000, self.timezone)
        return run_key(None, local.date().isoformat())

    def _start(self, state: VisitState, run: Optional[TripRun], key: Tuple[str, str]) -> None:
        state.key, state.run = key, run
        # The delay stays: a train late at the end of one trip starts the next one late.
        state.visits, state.next_stop = 0, 0
        if run is None:
            state.delay_us = 0

    def add(self, state: VisitState, count: DoorCount, run: Optional[TripRun]) -> List[StopVisit]:
        """Adds a count; returns the visits it closes (the burst before it, if the train left
        since; a finished run's remaining stops, when a new burst is on another run).

        Args:
            state: the train's state, updated in place.
            count: the next count, in event-time order.
            run: the run the train is on at the count's time (occupancy.schedule.trip_of); None: no known trip.

        Returns:
            The visits closed, in order; often empty.
        """
        out = []
        if state.counts and count.event_time_us - state.counts[-1].event_time_us > self.gap_us:
            out += self._close_burst(state)
        elif len(state.counts) >= MAX_BURST_COUNTS:
            out += self._close_burst(state)
        key = self._key(run, count.event_time_us)
        if key != state.key and not (state.counts or self._keeps(state, count.event_time_us)):
            out += self._finish_run(state)
            self._start(state, run, key)
        state.counts.append(count)
        state.load = count.load_after
        return out

    def due_us(self, state: VisitState) -> Optional[int]:
        """When the open burst ends if no count comes (None: no burst open)."""
        return state.counts[-1].event_time_us + self.gap_us if state.counts else None

    def close(self, state: VisitState, now_us: int, run_now: Optional[TripRun]) -> List[StopVisit]:
        """At `now_us` of event time: the open burst if it has ended, and the rest of the run's
        stops if the train is no longer on that run (`run_now`). The train is then on no run
        until its next count: a run begins with a count (`add`), so a train that stopped counting
        (parked, its doors off) makes no visits of the trips its number runs later.

        Args:
            state: the train's state, updated in place.
            now_us: the event time now, in microseconds since the epoch.
            run_now: the run the train's schedule puts it on at `now_us`; None: no known trip.

        Returns:
            The visits closed, in order; often empty.
        """
        out = []
        due = self.due_us(state)
        if due is not None and now_us >= due:
            out += self._close_burst(state)
        key = self._key(run_now, now_us)
        if not state.counts and state.run is not None and key != state.key and not self._keeps(state, now_us):
            out += self._finish_run(state)
            # On no run until its next count. The delay is kept while the train's number has a
            # run now (late at the end of one trip, it starts the next late), not past its day.
            state.key, state.run, state.visits, state.next_stop = ("", ""), None, 0, 0
            if run_now is None:
                state.delay_us = 0
        return out

    def _keeps(self, state: VisitState, t_us: int) -> bool:
        """Whether the train is still on its run at `t_us` whatever the schedule says of that
        time: a stop of the run not yet visited is due within the window (its time moved by
        the delay). A late train runs the end of its trip after the next one's scheduled start."""
        if state.run is None:
            return False
        stops = state.run.trip.stops
        return any(
            abs(t_us - (_at_us(state.run, stops[i].departure_s) + state.delay_us)) <= self.window_us
            for i in range(state.next_stop, len(stops))
        )

    def next_close_us(self, state: VisitState, late_us: int) -> Optional[int]:
        """When `close` has something to do if no count comes: the open burst's end, else (the
        run's stops not all visited) `late_us` after the run's scheduled end; None: nothing."""
        due = self.due_us(state)
        if due is not None:
            return due
        if state.run is not None and state.next_stop < len(state.run.trip.stops):
            ends = int(state.run.ends_at.timestamp() * 1_000_000)
            return max(ends + late_us, ends + state.delay_us + self.window_us + 1)
        return None

    def _visit(self, state, stop, counts, load: Optional[int]) -> StopVisit:
        """The next visit of the run; `load`: the train's occupancy as it left."""
        state.visits += 1
        boarded = sum(c.delta for c in counts if c.delta > 0)
        alighted = -sum(c.delta for c in counts if c.delta < 0)
        return StopVisit(
            state.run,
            state.visits,
            stop,
            counts[0].event_time_us if counts else None,
            counts[-1].event_time_us if counts else None,
            boarded,
            alighted,
            None if load is None else max(0, load),
            tuple(counts),
        )

    def _close_burst(self, state: VisitState) -> List[StopVisit]:
        counts, state.counts = state.counts, []
        if not counts:
            return []
        run = state.run
        load = counts[-1].load_after
        if run is None:
            return [self._visit(state, None, counts, load)]
        departed = counts[-1].event_time_us
        stops = run.trip.stops
        best, best_cost, skipped_us = None, None, 0.0
        for i in range(state.next_stop, len(stops)):
            if i > state.next_stop:  # passing stop i-1 on the way to i
                # A trip begins at its first stop, where people board: passing stops before the
                # run's first visit takes the clock saying so four times as clearly.
                weight = self.skip_weight * (4 if state.visits == 0 else 1)
                skipped_us += weight * 1_000_000 * (stops[i].departure_s - stops[i - 1].departure_s)
            off = abs(departed - (_at_us(run, stops[i].departure_s) + state.delay_us))
            if off <= self.window_us and (best_cost is None or off + skipped_us < best_cost):
                best, best_cost = i, off + skipped_us
        before = counts[0].load_after - counts[0].delta  # as the train came to this stop
        if best is None:  # unscheduled; the stops it must have passed to be this late first
            passed = []
            while state.next_stop < len(stops) and (
                _at_us(run, stops[state.next_stop].departure_s) + state.delay_us + self.window_us
                < counts[0].event_time_us
            ):
                passed.append(self._visit(state, stops[state.next_stop], [], before))
                state.next_stop += 1
            return passed + [self._visit(state, None, counts, load)]
        passed = [self._visit(state, stops[i], [], before) for i in range(state.next_stop, best)]
        state.next_stop = best + 1
        state.delay_us = departed - _at_us(run, stops[best].departure_s)
        return passed + [self._visit(state, stops[best], counts, load)]

    def _finish_run(self, state: VisitState) -> List[StopVisit]:
        if state.run is None:
            return []
        stops = state.run.trip.stops
        passed = [self._visit(state, stops[i], [], state.load) for i in range(state.next_stop, len(stops))]
        state.next_stop = len(stops)
        return passed


def _at_us(run: TripRun, seconds: int) -> int:
    return int(run.at(seconds).timestamp() * 1_000_000)
