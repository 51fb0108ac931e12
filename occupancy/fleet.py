"""The fleet as people see it: one train's occupancy now, its freshness and status.

Beam-free and shared by everything that serves the numbers (the HTTP API, the
dashboard, the GTFS-Realtime feed, the benchmarks): they read the fleet with
`adapters.fleet_views` (one query on `realtime`, one on `trains`, whatever the
fleet's size) and classify with the functions here, never with a copy of them.

Freshness (docs/design.md, "Serving the numbers"): a train's newest device
`last_seen` (heartbeats included) says whether its number is current:
`ok`, `stale` (older than `stale_after_s`, default 90) or `no_data` (never seen).

Occupancy status: the GTFS-Realtime `OccupancyStatus` enum name for a ratio
count / capacity, from configurable thresholds. Default (HSL, Helsinki):
EMPTY < 0.05 <= MANY_SEATS_AVAILABLE < 0.2 <= FEW_SEATS_AVAILABLE < 0.5 <=
STANDING_ROOM_ONLY < 0.7 <= CRUSHED_STANDING_ROOM_ONLY < 0.9 <= FULL.
"""

import datetime
import re
from typing import Dict, NamedTuple, Optional, Tuple

from occupancy.levels import NO_DATA_AVAILABLE, OCCUPANCY_LEVELS
from occupancy.registry_entries import device_entry, train_entry
from occupancy.wire import to_micros

STATUS_OK, STATUS_STALE, STATUS_NO_DATA = "ok", "stale", "no_data"
DEFAULT_STALE_AFTER_S = 90.0

DEFAULT_THRESHOLDS = (0.05, 0.2, 0.5, 0.7, 0.9)

# A door named like "car3-door2" (or "car3_door2", "car3"): the carriage is "car3", number 3.
_CARRIAGE_RE = re.compile(r"^(car(\d+))(?:[-_].*)?$", re.IGNORECASE)
# More carriages than any train couples (two 16-car units make 32).
MAX_CARRIAGES = 64


class Thresholds(NamedTuple):
    """Lower bounds (ratios) of the levels after EMPTY; strictly increasing."""

    bounds: Tuple[float, ...] = DEFAULT_THRESHOLDS

    @classmethod
    def parse(cls, text: str) -> "Thresholds":
        """'0.05,0.2,0.5,0.7,0.9' -> Thresholds; raises ValueError with a readable message."""
        try:
            bounds = tuple(float(part) for part in text.split(","))
        except ValueError:
            raise ValueError(
                f"thresholds must be {len(DEFAULT_THRESHOLDS)} comma-separated numbers, got {text!r}"
            ) from None
        if len(bounds) != len(DEFAULT_THRESHOLDS):
            raise ValueError(
                f"thresholds need {len(DEFAULT_THRESHOLDS)} numbers (the lower bounds "
                f"of {', '.join(OCCUPANCY_LEVELS[1:])}), got {len(bounds)}"
            )
        if any(not (0 <= b < float("inf")) for b in bounds) or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"thresholds must be finite, >= 0 and strictly increasing, got {text!r}")
        return cls(bounds)

    def status(self, ratio: Optional[float]) -> str:
        """The OccupancyStatus name for a ratio; NO_DATA_AVAILABLE when there is none."""
        if ratio is None:
            return NO_DATA_AVAILABLE
        level = 0
        for bound in self.bounds:
            if ratio >= bound:
                level += 1
        return OCCUPANCY_LEVELS[level]


def occupancy_percentage(value: int, capacity: Optional[int]) -> Optional[int]:
    """count / capacity as a whole percentage, or None without a capacity.

    Not capped: a count above capacity gives more than 100 (the GTFS-RT feed
    decides how to publish that).
    """
    if not capacity:
        return None
    return int(round(100 * max(0, value) / capacity))


def carriage_of(door: Optional[str]) -> Optional[Tuple[str, int]]:
    """('car3', 3) for a door named 'car3-door2'; None for a door not mapped to a carriage
    (carriages are numbered 1 to MAX_CARRIAGES: a feed lists every carriage up to the highest)."""
    match = _CARRIAGE_RE.match(door or "")
    if not match or not 1 <= int(match.group(2)) <= MAX_CARRIAGES:
        return None
    return match.group(1).lower(), int(match.group(2))


class TrainView(NamedTuple):
    """One train as served: the registry's `trains/` entry joined with its `realtime` document."""

    train_id: str
    name: Optional[str]
    capacity: Optional[int]
    current_value: Optional[int]  # None: no realtime document yet
    occupancy_ratio: Optional[float]
    last_updated: Optional[datetime.datetime]
    last_seen: Optional[datetime.datetime]  # newest last_seen of its devices
    staleness_s: Optional[float]
    status: str  # ok / stale / no_data
    devices_seen: Dict[str, dict]  # as in realtime/{train_id}.devices_seen
    trains_doc: Dict[str, object]  # the train's registry document (extra fields, e.g. seats)
    public_status: Optional[str] = None  # set in a public view (occupancy.privacy): what is published


def as_utc(value) -> Optional[datetime.datetime]:
    """A datetime with its zone (naive ones taken as UTC); None for anything else."""
    if not isinstance(value, datetime.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def newest_last_seen(devices_seen: Dict[str, dict]) -> Optional[datetime.datetime]:
    seen = [as_utc((entry or {}).get("last_seen")) for entry in (devices_seen or {}).values()]
    seen = [t for t in seen if t is not None and to_micros(t) > 0]
    return max(seen) if seen else None


def train_status(
    last_seen: Optional[datetime.datetime], now: datetime.datetime, stale_after_s: float = DEFAULT_STALE_AFTER_S
) -> Tuple[str, Optional[float]]:
    """(status, staleness in seconds) from the newest last_seen of a train's devices."""
    if last_seen is None:
        return STATUS_NO_DATA, None
    staleness = max(0.0, (now - last_seen).total_seconds())
    return (STATUS_STALE if staleness > stale_after_s else STATUS_OK), staleness


def train_view(
    train_id: str,
    realtime: Optional[dict],
    train_doc: Optional[dict],
    now: datetime.datetime,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
) -> TrainView:
    """Joins one train's documents (either may be missing) into what is served."""
    realtime = realtime or {}
    entry = train_entry(train_doc)
    capacity = entry.capacity or realtime.get("capacity")
    value = realtime.get("current_value")
    value = int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    ratio = round(value / capacity, 4) if capacity and value is not None else None
    devices_seen = dict(realtime.get("devices_seen") or {})
    last_seen = newest_last_seen(devices_seen)
    status, staleness = train_status(last_seen, now, stale_after_s)
    return TrainView(
        train_id=train_id,
        name=entry.name,
        capacity=capacity,
        current_value=value,
        occupancy_ratio=ratio,
        last_updated=as_utc(realtime.get("last_updated")),
        last_seen=last_seen,
        staleness_s=staleness,
        status=status,
        devices_seen=devices_seen,
        trains_doc=dict(train_doc or {}),
    )


def restated(view: TrainView, now: datetime.datetime, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> TrainView:
    """`view` with its status and staleness as of `now` (its documents unchanged): what a view
    kept across requests re-derives instead of joining the documents again."""
    status, staleness = train_status(view.last_seen, now, stale_after_s)
    return view._replace(status=status, staleness_s=staleness)


def doors_by_train(devices) -> Dict[str, Dict[str, Optional[str]]]:
    """train_id -> {device_id: door} of the enabled door devices among `devices`, (device_id,
    registry document) pairs: what the feed's carriage estimates need from the registry."""
    doors: Dict[str, Dict[str, Optional[str]]] = {}
    for device_id, data in devices:
        entry = device_entry(data)
        if entry is not None and entry.enabled and entry.train_id:
            doors.setdefault(entry.train_id, {})[device_id] = entry.door
    return doors


def carriage_counts(devices_seen: Dict[str, dict], doors: Dict[str, Optional[str]]) -> Dict[Tuple[str, int], int]:
    """Estimated people per carriage: per door, boarded - alighted since the train's last
    reset or terminus (`devices_seen[d].trip_boarded/trip_alighted`, written by the
    pipeline), summed over the carriage's doors and clamped at 0. `doors` maps
    device_id -> registry door name. Doors not named like 'car3-door2', and doors that
    never reported (none do in a public view), are left out: their carriage has no count.

    An estimate: people who walk between carriages are counted where they boarded.
    """
    totals: Dict[Tuple[str, int], int] = {}
    for device_id, door in doors.items():
        carriage = carriage_of(door)
        entry = (devices_seen or {}).get(device_id)
        if carriage is None or entry is None:  # no door of it reported (or a public view): no count
            continue
        net = int(entry.get("trip_boarded") or 0) - int(entry.get("trip_alighted") or 0)
        totals[carriage] = totals.get(carriage, 0) + net
    return {carriage: max(0, net) for carriage, net in sorted(totals.items(), key=lambda kv: kv[0][1])}


def published_status(view: TrainView, thresholds: Thresholds) -> str:
    """What riders are told: the level from the ratio, but NO_DATA_AVAILABLE for a train that
    is stale or never seen (never an old number) or has no capacity to divide by."""
    if view.status != STATUS_OK:
        return NO_DATA_AVAILABLE
    if view.public_status is not None:
        return view.public_status
    return thresholds.status(view.occupancy_ratio)
