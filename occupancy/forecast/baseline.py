"""The references a forecast is measured against, from the history before the forecast is made:

* `last_week`: the load of the same trip at the same stop on the latest same weekday;
* `weekday_mean`: the mean of the latest `weeks` (4) same weekdays, as the GTFS-Occupancies
  draft recommends publishing.

Each is None for a slot whose trip and stop ran on no such day before the origin.
"""

import bisect
import datetime
from typing import Dict, Iterable, List, Optional, Tuple

from occupancy.forecast.history import Observation, Slot


class History:
    """Loads by (trip, stop sequence, weekday), in date order."""

    def __init__(self, observations: Iterable[Observation]):
        self._loads: Dict[Tuple[str, int, int], Tuple[List[datetime.date], List[int]]] = {}
        for o in sorted(observations, key=lambda o: o.service_date):
            days, loads = self._loads.setdefault((o.trip_id, o.stop_sequence, o.service_date.weekday()), ([], []))
            days.append(o.service_date)
            loads.append(o.load)

    def latest(self, slot: Slot, origin: datetime.date, count: int) -> List[int]:
        """The loads of the slot's trip and stop on up to `count` latest same weekdays before `origin`."""
        days, loads = self._loads.get((slot.trip_id, slot.stop_sequence, slot.service_date.weekday()), ((), ()))
        end = bisect.bisect_left(days, origin)
        return list(loads[max(0, end - count) : end])


def last_week(history: History, slot: Slot, origin: datetime.date) -> Optional[float]:
    loads = history.latest(slot, origin, 1)
    return float(loads[0]) if loads else None


def weekday_mean(history: History, slot: Slot, origin: datetime.date, weeks: int = 4) -> Optional[float]:
    loads = history.latest(slot, origin, weeks)
    return sum(loads) / len(loads) if loads else None
