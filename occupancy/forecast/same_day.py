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

from typing import Dict, List, Sequence, Tuple

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
