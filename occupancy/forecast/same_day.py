"""The same day: for a train on its trip now, the departure load at each stop still to come
(docs/forecast.md, "Same day").

Two corrections of the day-ahead forecast at each stop to come:

* **today's ratio**: how today's loads have compared with the forecast at the stops passed
  (the ratio of their sums, drawn towards 1 while few stops are seen: `PRIOR_STOPS` stops'
  worth of "as forecast"; bounded) scales the forecast;
* **who is on board now**: the live load's departure from that scaled forecast, as the train
  left its last stop, stays with the riders who made it: at a later stop, only the share of
  them still on board, at most the forecast's lowest load on the way over its load at the
  last stop.
"""

import datetime
from typing import Dict, List, Optional, Sequence, Tuple

PRIOR_STOPS = 2.0
BOUNDS = (0.5, 2.0)


def today_ratio(seen: Sequence[Tuple[float, float]]) -> float:
    """(forecast, counted) at the stops passed -> how today runs against the forecast."""
    forecast = sum(f for f, _ in seen)
    counted = sum(c for _, c in seen)
    if forecast <= 0:
        return 1.0
    weight = len(seen) / (len(seen) + PRIOR_STOPS)
    ratio = 1.0 + weight * (counted / forecast - 1.0)
    return min(max(ratio, BOUNDS[0]), BOUNDS[1])


def ahead(
    forecast: Sequence[Tuple[int, float]], left: int, live_load: float, seen: Sequence[Tuple[float, float]]
) -> List[Tuple[int, float]]:
    """`forecast`: (stop_sequence, day-ahead load) of the trip's stops in order; `left`: the
    stop_sequence the train left last; `seen`: (forecast, counted) at the stops passed.
    Returns (stop_sequence, predicted load) of each stop after `left`."""
    ratio = today_ratio(seen)
    loads: Dict[int, float] = dict(forecast)
    order = [s for s, _ in forecast]
    if left not in loads:
        return []
    surplus = live_load - ratio * loads[left]
    out, lowest = [], loads[left]
    for stop in order[order.index(left) + 1 :]:
        lowest = min(lowest, loads[stop])
        stays = min(1.0, lowest / loads[left]) if loads[left] > 0 else 0.0
        out.append((stop, max(0.0, ratio * loads[stop] + surplus * stays)))
    return out


def left_last(run, now: datetime.datetime) -> Optional[int]:
    """The stop_sequence of the last stop of `run` (occupancy.schedule.Run) whose scheduled
    departure has passed at `now`; None before its first departure."""
    passed = [t.stop_sequence for t in run.trip.stops if run.at(t.departure_s) <= now]
    return passed[-1] if passed else None


def stops_to_come(
    run, forecast: dict, on_board: Optional[float], now: datetime.datetime
) -> List[Tuple[int, str, float]]:
    """(stop_sequence, stop_id, predicted load) at each stop of `run` (occupancy.schedule.Run)
    still to come at `now`, from the trip's forecast document (occupancy.forecast.rows
    .trip_document) and the load on board (None: not known, the day-ahead forecast as is)."""
    stops = [
        s
        for s in forecast.get("stops") or []
        if isinstance(s, dict) and isinstance(s.get("stop_sequence"), int) and isinstance(s.get("predicted_load"), int)
    ]
    if not stops:
        return []
    ids = {s["stop_sequence"]: str(s.get("stop_id") or "") for s in stops}
    left = left_last(run, now)
    day_ahead = [(s["stop_sequence"], float(s["predicted_load"])) for s in stops]
    if left is None:  # not left its first stop yet: the day-ahead forecast
        return [(seq, ids[seq], load) for seq, load in day_ahead]
    if on_board is None:
        return [(seq, ids[seq], load) for seq, load in day_ahead if seq > left]
    return [(seq, ids[seq], load) for seq, load in ahead(day_ahead, left, on_board, [])]
