"""Coarse public numbers: what riders and journey planners see cannot follow one person
(docs/design.md, "Privacy"). Operators, signed in, see the exact counts.

For the public, a train's numbers are **sampled once per departure** and held until the next:
its latest scheduled stop departure when the static schedule says which trip it runs
(doors are closed then: every instance of the API samples the same count), else a window of
`window_s`. From that sample:

* the percentage is rounded to `step_pct` (10: a 300-place train moves one step per 30 people);
* the status level is drawn with its boundaries moved, per train and departure, by up to
  ±`jitter` (a ratio) from a secret seed, as Waltti's anonymizer draws the published category:
  an observer who knows the thresholds cannot tell from a change of level how many boarded;
* a train (or carriage) below `min_capacity` places publishes nothing.

Within a departure nothing changes, whatever boards: a ±1 change cannot be read. The draw is
a function of (seed, train, departure) only, never of the request: the same answer to
everyone, on every instance that holds the same seed.
"""

import datetime
import hashlib
import hmac
import threading
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

from occupancy import fleet

EXACT, COARSE = "exact", "coarse"


class Policy(NamedTuple):
    seed: bytes
    step_pct: int = 10
    min_capacity: int = 20
    jitter: float = 0.05
    window_s: int = 300


def _unit(seed: bytes, *parts: str) -> float:
    """A number in [0, 1) from the seed and the parts (HMAC-SHA256 from the standard library)."""
    digest = hmac.new(seed, "|".join(parts).encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def departure_key(at: datetime.datetime, policy: Policy, run=None, departures: Sequence[datetime.datetime] = ()) -> str:
    """Which departure `at` belongs to: the trip run's latest stop departure at or before it,
    else the `window_s` window it falls in."""
    if run is not None and departures:
        passed = [i for i, moment in enumerate(departures) if moment <= at]
        if passed:
            return f"{run.trip.trip_id}/{run.start_date}/{passed[-1]}"
    return f"w{int(at.timestamp()) // policy.window_s}"


def coarse_status(ratio: float, thresholds: fleet.Thresholds, policy: Policy, train_id: str, key: str) -> str:
    bounds = tuple(
        bound + (2 * _unit(policy.seed, train_id, key, str(i)) - 1) * policy.jitter
        for i, bound in enumerate(thresholds.bounds)
    )
    # Moved bounds stay in order: each moves at most `jitter`, defaults are 0.15 or more apart.
    return fleet.Thresholds(tuple(sorted(bounds))).status(ratio)


def coarse_ratio(ratio: float, policy: Policy) -> float:
    return policy.step_pct * round(100 * ratio / policy.step_pct) / 100


def coarse_fields(sample: fleet.TrainView, thresholds: fleet.Thresholds, policy: Policy, key: str) -> dict:
    """The published numbers of a departure's sample: a function of (sample, seed, key) only,
    so a Holder computes them once per departure (five HMACs a train: 0.8 s for 10,000 trains
    when it was done per request)."""
    fields = dict(
        current_value=None,
        occupancy_ratio=None,
        public_status=fleet.NO_DATA_AVAILABLE,
        devices_seen={},
        last_updated=sample.last_updated,
    )
    if sample.capacity and sample.capacity >= policy.min_capacity and sample.occupancy_ratio is not None:
        fields.update(
            occupancy_ratio=coarse_ratio(sample.occupancy_ratio, policy),
            public_status=coarse_status(sample.occupancy_ratio, thresholds, policy, sample.train_id, key),
        )
    return fields


def public_view(
    sample: fleet.TrainView, now_view: fleet.TrainView, thresholds: fleet.Thresholds, policy: Policy, key: str
) -> fleet.TrainView:
    """What the public sees of a train: the departure's sample, coarse; liveness (status,
    last_seen) from now. No count, no per-device numbers."""
    return now_view._replace(**coarse_fields(sample, thresholds, policy, key))


class Holder:
    """Per train, the view sampled at its current departure and what it publishes (one per API
    process; bounded by the fleet: one entry a train)."""

    def __init__(self, thresholds: fleet.Thresholds = fleet.Thresholds(), policy: Optional[Policy] = None):
        self._thresholds, self._policy = thresholds, policy
        self._held: Dict[str, Tuple[str, fleet.TrainView, Optional[dict]]] = {}
        self._lock = threading.Lock()

    def sample(self, view: fleet.TrainView, key: str) -> fleet.TrainView:
        with self._lock:
            return self._hold(view, key)[1]

    def public(self, view: fleet.TrainView, key: str) -> fleet.TrainView:
        """public_view(the departure's sample, view, ...), its coarse numbers computed once per departure."""
        if self._policy is None:
            raise ValueError("a Holder made without a policy cannot publish")
        with self._lock:
            held = self._hold(view, key)
            if held[2] is None:
                held = self._held[view.train_id] = (
                    key,
                    held[1],
                    coarse_fields(held[1], self._thresholds, self._policy, key),
                )
        return view._replace(**held[2])

    def _hold(self, view: fleet.TrainView, key: str):
        held = self._held.get(view.train_id)
        if held is None or held[0] != key:
            held = self._held[view.train_id] = (key, view, None)
        return held


def coarse_history_value(value: int, capacity: Optional[int], policy: Policy) -> Optional[int]:
    """A history bucket's value for the public: people at the step's granularity, or None
    below `min_capacity`."""
    if not capacity or capacity < policy.min_capacity:
        return None
    step_people = capacity * policy.step_pct / 100
    return int(round(round(value / step_people) * step_people))
