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

Times are no finer than the hold either: the public `last_updated` is the moment the sample
stands for (the departure, or the window's start), `last_seen` is floored to `window_s`, and
the public history (`public_history`) is one sample per hold, at the moment the realtime
numbers would have sampled it.
"""

import datetime
import hashlib
import hmac
import threading
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from occupancy import fleet
from occupancy.levels import NO_DATA_AVAILABLE

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


class Hold(NamedTuple):
    """One departure (or window) of a train: the public numbers hold from `start` to `end`."""

    key: str
    start: datetime.datetime
    end: datetime.datetime


def hold_of(at: datetime.datetime, policy: Policy, run=None, departures: Sequence[datetime.datetime] = ()) -> Hold:
    """The hold `at` falls in: from the trip run's latest stop departure at or before it to its
    next one (the last departure holds for `window_s`), else the `window_s` window it falls in,
    cut at the run's first departure.

    Args:
        at: the time (timezone-aware) to find the hold of.
        policy: its `window_s`: the window's length, and how long the last departure holds.
        run: the TripRun the train is on (its trip id and start date name the hold); None: windows only.
        departures: the run's scheduled stop departures (timezone-aware), in order; empty: windows only.

    Returns:
        The Hold: key `<trip_id>/<start_date>/<departure index>` for a departure's, `w<window number>` for a
        window's.
    """
    window = datetime.timedelta(seconds=policy.window_s)
    if run is not None and departures:
        passed = [i for i, moment in enumerate(departures) if moment <= at]
        last_end = departures[-1] + window
        if passed and at < last_end:
            i = passed[-1]
            end = departures[i + 1] if i + 1 < len(departures) else last_end
            return Hold(f"{run.trip.trip_id}/{run.start_date}/{i}", departures[i], end)
    number = int(at.timestamp()) // policy.window_s
    start = datetime.datetime.fromtimestamp(number * policy.window_s, tz=datetime.timezone.utc)
    end = start + window
    if run is not None and departures:
        if at < departures[0]:
            end = min(end, departures[0])
        else:
            start = max(start, departures[-1] + window)
    return Hold(f"w{number}", start, end)


def coarse_status(ratio: float, thresholds: fleet.Thresholds, policy: Policy, train_id: str, key: str) -> str:
    """The OccupancyStatus name of `ratio` with each bound of `thresholds` moved by up to ±`policy.jitter`.

    Args:
        ratio: the train's occupancy as a fraction of its capacity.
        thresholds: the levels' bounds before they are moved.
        policy: its `seed` and `jitter` draw the moves.
        train_id: the train the moves are drawn for.
        key: the hold (Hold.key) they are drawn for: the same status within a hold, wherever the seed is the same.
    """
    bounds = tuple(
        bound + (2 * _unit(policy.seed, train_id, key, str(i)) - 1) * policy.jitter
        for i, bound in enumerate(thresholds.bounds)
    )
    # Moved bounds stay in order: each moves at most `jitter`, defaults are 0.15 or more apart.
    return fleet.Thresholds(tuple(sorted(bounds))).status(ratio)


def coarse_ratio(ratio: float, policy: Policy) -> float:
    return policy.step_pct * round(100 * ratio / policy.step_pct) / 100


def coarse_fields(sample: fleet.TrainView, thresholds: fleet.Thresholds, policy: Policy, hold: Hold) -> dict:
    """The published numbers of a departure's sample: a function of (sample, seed, hold) only,
    so a Holder computes them once per departure (five HMACs a train).

    Args:
        sample: the train's view sampled for the hold.
        thresholds: the status levels' bounds, moved per train and hold (coarse_status).
        policy: the rounding step, minimum capacity and jitter.
        hold: the departure (or window) the sample stands for; `last_updated` becomes its start.

    Returns:
        TrainView fields to replace: no count nor per-device numbers, the ratio and status coarse, or
        NO_DATA_AVAILABLE below `min_capacity` or without a ratio.
    """
    fields = dict(
        current_value=None,
        occupancy_ratio=None,
        public_status=NO_DATA_AVAILABLE,
        devices_seen={},
        last_updated=None if sample.last_updated is None else hold.start,
    )
    if sample.capacity and sample.capacity >= policy.min_capacity and sample.occupancy_ratio is not None:
        fields.update(
            occupancy_ratio=coarse_ratio(sample.occupancy_ratio, policy),
            public_status=coarse_status(sample.occupancy_ratio, thresholds, policy, sample.train_id, hold.key),
        )
    return fields


def coarse_liveness(view: fleet.TrainView, policy: Policy) -> dict:
    """`last_seen` floored to `window_s` (a count's second cannot be read from it), and the
    staleness from that; the status stays exact."""
    if view.last_seen is None:
        return {}
    seen = hold_of(view.last_seen, policy).start
    staleness = None if view.staleness_s is None else round(view.staleness_s + (view.last_seen - seen).total_seconds())
    return dict(last_seen=seen, staleness_s=staleness)


def public_view(
    sample: fleet.TrainView, now_view: fleet.TrainView, thresholds: fleet.Thresholds, policy: Policy, hold: Hold
) -> fleet.TrainView:
    """What the public sees of a train: the departure's sample, coarse; liveness (status,
    last_seen) from now, coarse. No count, no per-device numbers.

    Args:
        sample: the train's view sampled for `hold` (coarse_fields).
        now_view: the train's view now: its liveness and every field not made coarse.
        thresholds: the status levels' bounds, moved per train and hold (coarse_status).
        policy: the rounding step, minimum capacity, jitter and window.
        hold: the departure (or window) the sample stands for.
    """
    return now_view._replace(**coarse_fields(sample, thresholds, policy, hold), **coarse_liveness(now_view, policy))


class Holder:
    """Per train, the view sampled at its current departure and what it publishes (one per API
    process; bounded by the fleet: one entry a train)."""

    def __init__(self, thresholds: fleet.Thresholds = fleet.Thresholds(), policy: Optional[Policy] = None):
        self._thresholds, self._policy = thresholds, policy
        self._held: Dict[str, Tuple[str, fleet.TrainView, Optional[dict]]] = {}
        self._lock = threading.Lock()

    def sample(self, view: fleet.TrainView, hold: Hold) -> fleet.TrainView:
        with self._lock:
            return self._hold(view, hold)[1]

    def public(self, view: fleet.TrainView, hold: Hold) -> fleet.TrainView:
        """public_view(the departure's sample, view, ...), its coarse numbers computed once per departure."""
        if self._policy is None:
            raise ValueError("a Holder made without a policy cannot publish")
        with self._lock:
            held = self._hold(view, hold)
            if held[2] is None:
                held = self._held[view.train_id] = (
                    hold.key,
                    held[1],
                    coarse_fields(held[1], self._thresholds, self._policy, hold),
                )
        return view._replace(**held[2], **coarse_liveness(view, self._policy))

    def _hold(self, view: fleet.TrainView, hold: Hold):
        held = self._held.get(view.train_id)
        if held is None or held[0] != hold.key:
            held = self._held[view.train_id] = (hold.key, view, None)
        return held


def coarse_history_value(value: int, capacity: Optional[int], policy: Policy) -> Optional[int]:
    """A history value for the public: people at the step's granularity, or None below
    `min_capacity`.

    Args:
        value: the number of people on the train.
        capacity: the train's capacity in places; None: unknown (so None is returned).
        policy: its `step_pct` (the step, a percentage of capacity) and `min_capacity`.
    """
    if not capacity or capacity < policy.min_capacity:
        return None
    step_people = capacity * policy.step_pct / 100
    return int(round(round(value / step_people) * step_people))


class PublicSample(NamedTuple):
    """One public history sample: the value standing at `at`, which ended `hold`."""

    hold: Hold
    at: datetime.datetime
    value: int


def placed_in_holds(
    buckets: Iterable[Tuple[datetime.datetime, int]], hold_at: Callable[[datetime.datetime], Hold]
) -> Iterator[Tuple[Hold, Tuple[datetime.datetime, int]]]:
    """(the hold it is placed in, the bucket) of each of `buckets`, in time order: the hold of the
    bucket before while the bucket lies within it (the same object), else `hold_at`'s (a new
    one). Holds of the train's runs may overlap (a run's last departure holds on past the next
    run's first window): a bucket goes with the hold it lies in, not with whichever `hold_at`
    would give it alone."""
    current = None
    for bucket in buckets:
        if current is None or not current.start <= bucket[0] < current.end:
            current = hold_at(bucket[0])
        yield current, bucket


def public_history(
    buckets: Iterable[Tuple[datetime.datetime, int]],
    hold_at: Callable[[datetime.datetime], Hold],
    capacity: Optional[int],
    policy: Policy,
    now: datetime.datetime,
) -> List[PublicSample]:
    """The public history of a train's (timestamp, value) buckets, in time order: for each hold
    that holds a bucket and has ended by `now`, one sample at its end (the moment the realtime
    numbers sample the next departure) of the value standing then, coarse. What boarded within a
    hold, and when, cannot be read; nothing below `min_capacity`.

    Args:
        buckets: (timestamp, people on the train) in time order.
        hold_at: the Hold a time falls in (e.g. hold_of with the train's run and departures).
        capacity: the train's capacity in places; None: unknown (so no sample).
        policy: the rounding step and minimum capacity.
        now: the time now: a hold not ended by then gives no sample.

    Returns:
        One PublicSample per ended hold, its value coarse (coarse_history_value).
    """
    out: List[PublicSample] = []
    current, standing = None, None
    for hold, (_, value) in placed_in_holds(buckets, hold_at):
        # A hold ends where the next begins; one not ended by now (a bucket dated ahead of the
        # clock placed in the next) is not published.
        if current is not None and hold is not current and hold.key != current.key and current.end <= now:
            out.append(PublicSample(current, current.end, standing))
        current, standing = hold, value
    if current is not None and current.end <= now:
        out.append(PublicSample(current, current.end, standing))
    coarse = [s._replace(value=coarse_history_value(s.value, capacity, policy)) for s in out]
    return [s for s in coarse if s.value is not None]
