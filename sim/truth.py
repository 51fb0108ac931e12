"""The truth a simulation must add up to: each train's occupancy as it evolves in event time,
and the stops it made (sim.simulator records them as it generates the messages; the demo's
table, the benchmarks and the tests read them)."""

import bisect
import threading
from typing import Dict, List, NamedTuple, Optional, Tuple


def step_value(points: List[Tuple[int, int]], t_us: int) -> Optional[int]:
    """The value of a step function given as sorted (time, value) points at t: the last point at
    or before t (None before the first)."""
    i = bisect.bisect_right(points, (t_us, float("inf")))
    return points[i - 1][1] if i else None


class StopTruth(NamedTuple):
    """A stop a train made: the route's stop (0 = origin), its dwell and who went through."""

    train_id: str
    stop_index: int
    begin_us: int
    end_us: int
    boarded: int
    alighted: int


class Truth:
    """The occupancy the pipeline must arrive at, per train, as it evolves in event time.

    Thread-safe: the publisher thread generates while the demo reads it.
    """

    def __init__(self, max_points: int = 20_000):
        self._points: Dict[str, List[Tuple[int, int]]] = {}
        self._max_points = max_points
        self._lock = threading.Lock()
        self.stops: List[StopTruth] = []  # the stops made, in the order generated (bounded too)

    def record_stop(self, stop: StopTruth) -> None:
        with self._lock:
            self.stops.append(stop)
            if len(self.stops) > self._max_points:
                del self.stops[: len(self.stops) - self._max_points // 2]

    def record(self, train_id: str, event_time_us: int, value: int) -> None:
        with self._lock:
            points = self._points.setdefault(train_id, [])
            points.append((event_time_us, value))
            # Bounded memory for an endless demo: only recent values are ever asked for.
            if len(points) > self._max_points:
                del points[: len(points) - self._max_points // 2]

    def value_at(self, train_id: str, event_time_us: int) -> Optional[int]:
        """Occupancy after every event with an event time <= `event_time_us` (None: none yet)."""
        with self._lock:
            return step_value(self._points.get(train_id) or [], event_time_us)

    def final(self) -> Dict[str, int]:
        """The occupancy after every event generated so far, per train."""
        with self._lock:
            return {train: points[-1][1] for train, points in self._points.items() if points}
